"""Temporal steadiness for derained clips (`--steady`): a motion-compensated running average.

Each frame is derained on its own, so what the model leaves (faint streaks, a tone that
follows the rain) differs from frame to frame and flickers, while the scene itself moves
smoothly. The steadied frame t is

    S_t = D_t + w * (warp(S_{t-1}) - D_t),    w = strength * exp(-(d / TOLERANCE)^2)

D_t the derained frame, warp() the previous steadied frame moved onto frame t by the optical
flow between D_{t-1} and D_t (utils/motion.py; on their luma after a 3x3 median, which takes
out thin residue that would pull the flow with it), d the mean over channels of |G(D_t) -
G(warp(S_{t-1}))|, G a Gaussian blur of SIGMA px. A streak left in one frame is thin, so the
blur hides it from d and the average takes it out. Where the flow failed (something moved on
its own, a cut, an occlusion) whole regions differ and w falls to 0, as it is where the scene
has just entered the view: there D_t stays. Causal, one frame of state: any clip length in
bounded memory.

Averaging only the rain layer's low frequencies over time (the rainy frame minus D_t,
blurred, with an exponential window), without motion compensation, did not lower the
flicker: it comes from the fine residue, not the tone (docs/video.md#steadiness).
"""
from __future__ import annotations

import cv2
import numpy as np

from utils.motion import luma, previous_positions, seen_before, warp

DEFAULT_STRENGTH = 0.6  # chosen on another clip than the one reported (docs/video.md#steadiness)
TOLERANCE = 0.1  # blurred difference (0-1 scale) at which the past weighs e^-1 of its full weight
SIGMA = 3.0  # px; residual streaks are 1-4 px wide


class Steadier:
    """Call with each derained frame (RGB float32 HWC in [0, 1]) in order; returns it steadied.
    `strength` in [0, 1): the weight of the past where the frames agree (0: off)."""

    def __init__(self, strength: float = DEFAULT_STRENGTH, tolerance: float = TOLERANCE,
                 sigma: float = SIGMA):
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"steadiness strength must be in [0, 1), got {strength}")
        if tolerance <= 0 or sigma <= 0:
            raise ValueError(f"tolerance and sigma must be > 0, got {tolerance}, {sigma}")
        self.strength, self.tolerance, self.sigma = strength, tolerance, sigma
        self._previous: tuple[np.ndarray, np.ndarray] | None = None  # (luma of D_{t-1}, S_{t-1})

    def reset(self) -> None:
        """Forget the past (the next frame starts a new shot)."""
        self._previous = None

    def __call__(self, derained: np.ndarray) -> np.ndarray:
        frame = np.clip(np.asarray(derained, dtype=np.float32), 0.0, 1.0)
        grey = cv2.medianBlur(luma(frame), 3)  # thin residue would pull the flow along with it
        if self.strength == 0 or self._previous is None or self._previous[0].shape != grey.shape:
            self._previous = (grey, frame)
            return frame
        previous_grey, previous_steady = self._previous
        positions = previous_positions(grey, previous_grey)
        past = warp(previous_steady, positions)
        blur = lambda image: cv2.GaussianBlur(image, (0, 0), self.sigma)  # noqa: E731
        gap = np.abs(blur(frame) - blur(past)).mean(axis=2, keepdims=True)
        weight = self.strength * np.exp(-(gap / self.tolerance) ** 2) * seen_before(positions)[:, :, None]
        steady = frame + weight * (past - frame)
        self._previous = (grey, steady)
        return steady
