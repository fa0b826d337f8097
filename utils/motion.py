"""Motion between consecutive frames: dense optical flow, and warping the previous frame onto
the current one. Used to steady derained clips (utils/steady.py) and to score their flicker
(utils/metrics/flicker.py): both compare a frame with the previous one where the scene moved.

The flow is Farneback's (OpenCV, deterministic) on 8-bit luma, with the usual settings:
a 3-level pyramid of scale 0.5, 15 px windows, 3 iterations, polynomial expansion of 5 px.
"""
from __future__ import annotations

import cv2
import numpy as np

FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def luma(frame: np.ndarray) -> np.ndarray:
    """8-bit grey of an RGB float frame in [0, 1] (what the flow is computed on)."""
    pixels = np.round(np.clip(frame, 0.0, 1.0) * 255.0).astype(np.uint8)
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)


def previous_positions(current: np.ndarray, previous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) float32 maps: where each pixel of `current` was in `previous` (8-bit luma frames
    of one size)."""
    flow = cv2.calcOpticalFlowFarneback(current, previous, None, **FARNEBACK)
    height, width = current.shape
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    return grid_x + flow[..., 0], grid_y + flow[..., 1]


def warp(image: np.ndarray, positions: tuple[np.ndarray, np.ndarray],
         interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """`image` (a previous frame, HWC float) resampled at `positions`: aligned to the current
    frame (bilinear by default; positions outside are mirrored back in)."""
    return cv2.remap(np.ascontiguousarray(image, dtype=np.float32), positions[0], positions[1],
                     interpolation, borderMode=cv2.BORDER_REFLECT_101)


def seen_before(positions: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """[H, W] bool: the pixels whose previous position lies inside the previous frame (the
    others entered the view just now: the previous frame has nothing of them)."""
    x, y = positions
    height, width = x.shape
    return (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
