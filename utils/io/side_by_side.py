"""Side-by-side pair files (Rain800, DID-MDN Rain1200, the HCN authors' files): one image holds
the clean and the rainy version of a scene next to each other.

Which half is which differs between sets (Rain800 and the HCN files: clean on the left;
DID-MDN: rainy on the left), so `side_order_of` tells them apart from the pixels: rain adds
light (bright streaks, haze), so the difference rainy - clean has a long positive tail and
almost no negative one. Functions here take decoded images; reading files is the caller's.
"""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

SIDE_ORDERS = ("clean-rainy", "rainy-clean")
SAMPLED = 5  # images looked at to recognise the layout and its order
MIN_CORRELATION = 0.35  # median band-pass correlation of the halves of a side-by-side set
MIN_ASYMMETRY = 0.01  # |1st + 99th percentile of left - right| of an image that takes a side


def halves(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left and right half; an odd width drops the last column."""
    half = image.shape[1] // 2
    return image[:, :half], image[:, half:2 * half]


def sample(items: Sequence, count: int = SAMPLED) -> list:
    """Up to `count` items spread evenly over the sequence, first and last included."""
    if not items:
        return []
    last = len(items) - 1
    return [items[i] for i in sorted({round(k * last / max(count - 1, 1)) for k in range(count)})]


def halves_correlation(image: np.ndarray) -> float:
    """Band-pass correlation of the left and right halves: ~1 for a side-by-side pair."""
    if image.shape[1] < 4 or image.shape[0] < 2:
        return 0.0
    bands = []
    for part in halves(image):
        small = cv2.resize(np.ascontiguousarray(part.mean(axis=2)), (32, 32), interpolation=cv2.INTER_AREA)
        # Remove the smooth part: sky-above-ground photos must not look like pairs.
        band = small - cv2.GaussianBlur(small, (0, 0), 4.0)
        bands.append(band.ravel() - band.mean())
    denom = float(np.linalg.norm(bands[0]) * np.linalg.norm(bands[1]))
    return float(bands[0] @ bands[1]) / denom if denom > 1e-8 else 0.0


def looks_side_by_side(images: Sequence[np.ndarray]) -> bool:
    """Whether the halves of the sampled images show the same scene (the median tolerates a
    flat image or two)."""
    return bool(images) and float(np.median([halves_correlation(i) for i in images])) > MIN_CORRELATION


def rain_asymmetry(image: np.ndarray) -> float:
    """1st + 99th percentile of left - right (gray): > 0 when the left half holds the rain."""
    left, right = halves(image)
    low, high = np.quantile(left.mean(axis=2) - right.mean(axis=2), [0.01, 0.99])
    return float(high + low)


def side_order_of(images: Sequence[np.ndarray]) -> tuple[Optional[str], list[float]]:
    """(order, per-image asymmetries): the order on which every image that takes a side agrees
    (at least half of them must); None when they disagree or too few take a side."""
    scores = [rain_asymmetry(i) for i in images]
    sides = [s for s in scores if abs(s) > MIN_ASYMMETRY]
    if not sides or 2 * len(sides) < len(scores):
        return None, scores
    if all(s > 0 for s in sides):
        return "rainy-clean", scores
    if all(s < 0 for s in sides):
        return "clean-rainy", scores
    return None, scores
