"""Tone: how far an image's overall brightness and colour moved from a reference.

Deraining should remove streaks and haze, not relight the scene: a model that darkens every
photo by a few grey levels loses PSNR on every image and looks wrong on a dry (rain-free)
photo at once. Two uses:
- against the ground truth (eval tables, validation): `brightness`, mean(output) - mean(truth);
- against the same photo's earlier output (the online update's tone check, no ground truth).
"""
from __future__ import annotations

import numpy as np
import torch


def tone_change(output: torch.Tensor, reference: torch.Tensor) -> dict:
    """How far `output` ([3,H,W]) moved in tone from `reference`: `brightness_change`, the change
    of the mean over all pixels and channels (negative: darker), and `colour_shift`, the largest
    gap between one channel's change of mean and that mean change (a tint: channels moving
    apart). Needs no ground truth, so it works on real photos."""
    delta = output.float().mean(dim=(-2, -1)) - reference.float().mean(dim=(-2, -1))
    return {"brightness_change": float(delta.mean()),
            "colour_shift": float((delta - delta.mean()).abs().max())}


def brightness_shift(pred: np.ndarray, target: np.ndarray) -> float:
    """mean(pred) - mean(target) of HWC images in [0, 1], the prediction clipped as it would be
    shown or saved (negative: darker than the truth)."""
    return float(np.clip(pred, 0.0, 1.0).mean(dtype=np.float64) - np.asarray(target).mean(dtype=np.float64))
