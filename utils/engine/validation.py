"""Validation during training: full-size images, batch 1, PSNR/SSIM of input and output.

Used for model selection on the held-out val split (never the test split) and for the
final "rainy input vs derained output" report of train.py and real_train.py.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from utils.engine import distributed
from utils.inference import derain
from utils.io.images import to_image
from utils.io.panels import side_by_side
from utils.metrics.scoring import mean_metrics, score_pair

if TYPE_CHECKING:
    from utils.engine.run_dir import RunDir
    from utils.engine.trainer import Trainer


def evaluate(model: torch.nn.Module, pairs, device: torch.device, protocols=("rgb",),
             tile: int | None = None, precision=None, panels: int = 1,
             max_images: int | None = None) -> dict:
    """Mean metrics over `pairs` (items with "rainy" and "clean" [3,H,W] tensors).

    Returns {"output": {"rgb/psnr": ..}, "input": {..}, "count": n, "panels": [(rainy, derained,
    clean) HWC arrays for the first `panels` images]}. The model's train/eval mode is restored.
    `precision`: a utils.engine.precision.Precision for the forward passes (None: fp32).
    """
    was_training = model.training
    model.eval()
    outs, inps, shown = [], [], []
    count = len(pairs) if max_images is None else min(len(pairs), max_images)
    try:
        for i in range(count):
            item = pairs[i]
            rainy = item["rainy"].unsqueeze(0)
            pred = derain(model, rainy.to(device), tile=tile, precision=precision).cpu()
            pred_img, out, inp = score_pair(pred, item, protocols)
            outs.append(out)
            inps.append(inp)
            if len(shown) < panels:
                shown.append((to_image(rainy[0]), np.clip(pred_img, 0, 1), to_image(item["clean"])))
    finally:
        model.train(was_training)
    return {"output": mean_metrics(outs), "input": mean_metrics(inps), "count": count, "panels": shown}


def validate(trainer: "Trainer", val_pairs, run: "RunDir", images: bool, dry_pairs=None) -> float | None:
    """Rank 0 evaluates the val split, and `dry_pairs` (the same photos without rain, if given);
    every rank gets the val PSNR (for the best-checkpoint choice)."""
    psnr = None
    if trainer.info.is_main and len(val_pairs):
        result = evaluate(trainer.eval_model(), val_pairs, trainer.device,
                          precision=trainer.precision, panels=2 if images else 0)
        out = result["output"]
        psnr = out["rgb/psnr"]
        run.scalars({"val/psnr": psnr, "val/ssim": out["rgb/ssim"]}, trainer.step)
        for i, panel in enumerate(result["panels"]):
            run.image(f"val/rainy_derained_clean_{i}",
                      side_by_side(list(panel), labels=("rainy", "derained", "clean")), trainer.step)
        run.log(f"step {trainer.step}: val PSNR {psnr:.3f} dB SSIM {out['rgb/ssim']:.4f} "
                f"(input {result['input']['rgb/psnr']:.3f} dB, {result['count']} images)")
    if trainer.info.is_main and dry_pairs is not None and len(dry_pairs):
        # A recipe that darkens or "dehazes" dry photos shows here, not after training.
        dry = evaluate(trainer.eval_model(), dry_pairs, trainer.device,
                       precision=trainer.precision, panels=0)["output"]
        run.scalars({"val/dry_psnr": dry["rgb/psnr"], "val/dry_brightness": dry["brightness"]},
                    trainer.step)
        run.log(f"step {trainer.step}: val photos without rain come back at {dry['rgb/psnr']:.2f} dB, "
                f"brightness {dry['brightness']:+.4f}")
    return distributed.broadcast_object(trainer.info, psnr)
