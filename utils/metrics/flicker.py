"""Flicker of a derained clip against its clean clip (eval.py --clip, docs/video.md#flicker).

    flicker = mean |E_t - warp(E_{t-1})|,    E_t = G(O_t - C_t)

over consecutive frames t, pixels and channels, in 8-bit levels (0-255), with O the derained
frames (clipped to [0, 1]), C the clean ones and G a Gaussian blur of SIGMA px: how much of
the frame-to-frame change of the derained clip the clean clip does not have. warp() moves
frame t-1 onto frame t by the optical flow of the *clean* clip (utils/motion.py; bicubic), so
an error that moves with the scene (a blur, a tone offset) does not count, nor do pixels that
just entered the view: what is left is change where the scene did not move, which a viewer
sees as flicker. A perfect result and a steady error both score about 0; the rainy clip
scores high. G and the bicubic warp keep resampling's own error out: the clean clip blurred
by 1 px, an output steady by construction, scores 0.23 on the embedded clip (2.33 without
them).

Why not the plain difference of the two clips' mean changes (derained minus clean): a camera
pan dominates it, and an output with less contrast than the truth changes less and scores
below 0 (the shipped model on the embedded clip: -3.6 levels without alignment).
"""
from __future__ import annotations

from typing import Mapping

import cv2
import numpy as np

from utils.motion import luma, previous_positions, seen_before, warp


SIGMA = 1.0  # px


class FlickerMeter:
    """Feed every frame in order: `add(clean, {row: output})`; `scores()` per row. Keeps one
    previous frame per row: bounded memory for any clip length."""

    def __init__(self):
        self._errors: dict[str, np.ndarray] = {}
        self._clean_luma: np.ndarray | None = None
        self._sums: dict[str, float] = {}
        self._pairs = 0

    def add(self, clean: np.ndarray, outputs: Mapping[str, np.ndarray]) -> None:
        clean = np.clip(np.asarray(clean, dtype=np.float32), 0.0, 1.0)
        errors = {name: cv2.GaussianBlur(np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0) - clean,
                                         (0, 0), SIGMA) for name, image in outputs.items()}
        grey = luma(clean)
        if self._clean_luma is not None:
            positions = previous_positions(grey, self._clean_luma)
            seen = seen_before(positions)
            for name, error in errors.items():
                change = np.abs(error - warp(self._errors[name], positions, cv2.INTER_CUBIC))[seen].mean()
                self._sums[name] = self._sums.get(name, 0.0) + float(change)
            self._pairs += 1
        self._clean_luma, self._errors = grey, errors

    def scores(self) -> dict[str, float]:
        """{row: flicker in 8-bit levels}; NaN for every row before two frames were added."""
        if not self._pairs:
            return {name: float("nan") for name in self._errors}
        return {name: 255.0 * total / self._pairs for name, total in self._sums.items()}
