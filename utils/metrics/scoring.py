"""Scoring a derained image against its ground truth, and averaging scores over a set.

Shared by validation during training (utils.engine.validation), eval.py and real_train.py,
so every report scores and averages images the same way.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import torch

from utils.io.images import to_image
from utils.metrics.protocols import image_metrics
from utils.metrics.tone import brightness_shift


def scores(pred: np.ndarray, target: np.ndarray, protocols=("rgb",), crop_border: int = 0) -> dict:
    """`image_metrics` (PSNR/SSIM per protocol) plus `brightness`, the tone error
    mean(pred) - mean(target) (utils.metrics.tone), of HWC images."""
    return {**image_metrics(pred, target, protocols=protocols, crop_border=crop_border),
            "brightness": brightness_shift(pred, target)}


def score_pair(pred: torch.Tensor, item: dict, protocols=("rgb",), crop_border: int = 0,
               with_input: bool = True) -> tuple[np.ndarray, dict, dict | None]:
    """(prediction as HWC, its `scores`, the rainy input's scores or None) against item["clean"].

    The prediction is scored unclipped: each protocol clips/quantises as its script does.
    """
    pred_img, clean_img = to_image(pred), to_image(item["clean"])
    out = scores(pred_img, clean_img, protocols, crop_border)
    inp = scores(to_image(item["rainy"]), clean_img, protocols, crop_border) if with_input else None
    return pred_img, out, inp


def mean_metrics(rows: Iterable[Mapping[str, float]], keys: Iterable[str] | None = None,
                 prefix: str = "") -> dict[str, float]:
    """{key: mean over rows of row[prefix + key]} for `keys` (default: every key of the first
    row); an empty set gives {}. inf stays inf (see utils.metrics.protocols)."""
    rows = list(rows)
    if not rows:
        return {}
    keys = list(rows[0]) if keys is None else list(keys)
    return {k: sum(float(r[prefix + k]) for r in rows) / len(rows) for k in keys}
