"""A no-reference quality score for photos without ground truth: BRISQUE (lower is better).

BRISQUE (Mittal, Moorthy and Bovik, IEEE TIP 2012): natural-scene statistics of
mean-subtracted contrast-normalised luminance at two scales, mapped to a 0-100 quality
score by an SVR trained on human opinion scores (LIVE). The implementation and its
trained parameters come from the `brisque` package on PyPI (rehanguha/brisque, with
`libsvm-official`): the SVR model (`brisque/models/svm.txt`) and the feature scaling
(`normalize.pickle`) are inside its wheel, so scoring needs no download (the package's
`url=True` mode, which fetches images, is never used here).

Checked here (docs/online_update.md, "No-reference score"): the package's own test
(`score()` returns a float) and the expected ordering on distortions of scikit-image's
sample photos (Gaussian noise, blur and JPEG all raise the score, monotonically in strength).

The package (0.2.0) stores some features as 1-element arrays, which numpy >= 2.4 refuses to
turn into floats; `_Brisque` flattens them first (the same numbers, no change to the method).
"""
from __future__ import annotations

import warnings
from functools import lru_cache
from typing import Optional

import numpy as np

__all__ = ["available", "brisque", "NoReferenceUnavailable"]


class NoReferenceUnavailable(ImportError):
    """The `brisque` package is not installed."""


@lru_cache(maxsize=1)
def _scorer():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy.ndimage.filters deprecation inside the package
            from brisque import BRISQUE
    except ImportError as exc:
        raise NoReferenceUnavailable(
            "the no-reference score needs the `brisque` package: pip install brisque libsvm-official "
            f"({exc})") from None

    class _Brisque(BRISQUE):
        def calculate_brisque_features(self, image, kernel_size=7, sigma=7 / 6):
            features = super().calculate_brisque_features(image, kernel_size, sigma)
            return np.array([np.asarray(f, dtype=np.float64).reshape(-1)[0] for f in features])

    return _Brisque(url=False)


def available() -> bool:
    try:
        _scorer()
    except NoReferenceUnavailable:
        return False
    return True


def brisque(image: np.ndarray) -> float:
    """BRISQUE of an RGB HWC image, float in [0, 1] or uint8 (0 best, ~100 worst)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"brisque expects an RGB HWC image, got shape {image.shape}")
    if image.dtype != np.uint8:
        image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)  # as a saved photo
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(_scorer().score(image))


def mean_brisque(images) -> Optional[float]:
    """Mean BRISQUE of several images, or None when the package is missing."""
    if not available():
        return None
    return float(np.mean([brisque(im) for im in images]))
