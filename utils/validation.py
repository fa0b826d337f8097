"""Validation during training: full-size images, batch 1, PSNR/SSIM of input and output.

Used for model selection on the held-out val split (never the test split) and for the
final "rainy input vs derained output" report of train.py and real_train.py.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from utils.image_io import to_image
from utils.inference import derain


def score_pair(pred: torch.Tensor, item: dict, protocols=("rgb",), crop_border: int = 0,
               with_input: bool = True) -> tuple[np.ndarray, dict, dict | None]:
    """(prediction as HWC, its metrics, the rainy input's metrics or None) against item["clean"].

    The prediction is scored unclipped: each protocol clips/quantises as its script does.
    Shared by validation here and eval.py, so both score images the same way.
    """
    from utils.metrics import image_metrics

    pred_img, clean_img = to_image(pred), to_image(item["clean"])
    out = image_metrics(pred_img, clean_img, protocols=protocols, crop_border=crop_border)
    inp = (image_metrics(to_image(item["rainy"]), clean_img, protocols=protocols,
                         crop_border=crop_border) if with_input else None)
    return pred_img, out, inp


def evaluate(model: torch.nn.Module, pairs, device: torch.device, protocols=("rgb",),
             tile: int | None = None, autocast=None, panels: int = 1,
             max_images: int | None = None) -> dict:
    """Mean metrics over `pairs` (items with "rainy" and "clean" [3,H,W] tensors).

    Returns {"output": {"rgb/psnr": ..}, "input": {..}, "count": n, "panels": [(rainy, derained,
    clean) HWC arrays for the first `panels` images]}. The model's train/eval mode is restored.
    """
    was_training = model.training
    model.eval()
    sums_out: dict[str, float] = {}
    sums_in: dict[str, float] = {}
    shown = []
    count = len(pairs) if max_images is None else min(len(pairs), max_images)
    try:
        for i in range(count):
            item = pairs[i]
            rainy = item["rainy"].unsqueeze(0)
            with autocast() if autocast is not None else contextlib.nullcontext():
                pred = derain(model, rainy.to(device), tile=tile).cpu()
            pred_img, out, inp = score_pair(pred, item, protocols)
            for key, value in out.items():
                sums_out[key] = sums_out.get(key, 0.0) + float(value)
            for key, value in inp.items():
                sums_in[key] = sums_in.get(key, 0.0) + float(value)
            if len(shown) < panels:
                shown.append((to_image(rainy[0]), np.clip(pred_img, 0, 1), to_image(item["clean"])))
    finally:
        model.train(was_training)
    n = max(count, 1)
    return {"output": {k: v / n for k, v in sums_out.items()},
            "input": {k: v / n for k, v in sums_in.items()},
            "count": count, "panels": shown}
