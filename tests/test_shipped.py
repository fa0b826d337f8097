"""The shipped model in weights/: present, hash-checked, loadable with weights_only, useful."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from dataset import synthetic_pairs
from utils.cli import open_model
from utils.inference import derain
from utils.io import shipped
from utils.io.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from utils.io.images import to_image, to_tensor
from utils.metrics.protocols import psnr


def test_shipped_weights_match_their_record_and_are_small():
    record = shipped.verify()
    assert record["sha256"] == shipped.sha256(shipped.SHIPPED)
    assert shipped.SHIPPED.stat().st_size <= 10 * 1024 * 1024
    assert record["trained_by"] == shipped.TRAINED_BY
    state = torch.load(shipped.SHIPPED, map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state["model"].values() if v.is_floating_point())
    assert state["config"]["data"]["synthetic_preset"] == "mixed"


def test_shipped_model_removes_rain_on_held_out_images():
    model, cfg = open_model(shipped.SHIPPED, "cpu")
    assert next(model.parameters()).dtype == torch.float32
    pairs = synthetic_pairs("test", "mixed", 64, 3, seed=5)
    gains = []
    for rainy, clean in zip(pairs.rainy_images, pairs.clean_images):
        out = np.clip(to_image(derain(model, to_tensor(rainy)[None])[0]), 0.0, 1.0)
        gains.append(psnr(out, clean) - psnr(rainy, clean))
    assert np.mean(gains) > 0.5, gains


def test_a_tampered_copy_is_refused(tmp_path):
    copy = tmp_path / "standard.pth"
    shutil.copy(shipped.SHIPPED, copy)
    shutil.copy(shipped.record_path(shipped.SHIPPED), shipped.record_path(copy))
    shipped.verify(copy)
    with open(copy, "r+b") as handle:
        handle.seek(-10, 2)
        handle.write(b"0123456789")
    with pytest.raises(CheckpointError, match="does not match"):
        shipped.verify(copy)
    shipped.record_path(copy).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        shipped.verify(copy)


def test_export_writes_half_precision_ema_weights_and_a_record(tmp_path):
    state = load_checkpoint(shipped.SHIPPED)
    full = {k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()}
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in full.items()}
    source = tmp_path / "best.pth"
    save_checkpoint({"config": state["config"], "model": full, "ema": ema, "step": 7,
                     "best_step": 5, "best_metric": 21.5}, source)
    out = tmp_path / "out.pth"
    record = shipped.export(source, out)
    assert json.loads(shipped.record_path(out).read_text())["sha256"] == shipped.sha256(out)
    assert record["step"] == 7 and record["best_step"] == 5 and record["best_val_psnr_rgb"] == 21.5
    exported = load_checkpoint(out)["model"]
    name = next(k for k, v in ema.items() if v.is_floating_point())
    assert exported[name].dtype == torch.float16
    assert torch.allclose(exported[name].float(), ema[name], atol=1e-2)  # the EMA weights


def test_export_script_writes_the_weights_and_stores_a_position_extent(tmp_path, capsys):
    from scripts import export_weights

    out = tmp_path / "exported.pth"
    assert export_weights.main([str(shipped.SHIPPED), "--out", str(out), "--position-extent", "96"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert load_checkpoint(out)["config"]["model"]["position_extent"] == 96
    assert shipped.verify(out)["sha256"] == shipped.sha256(out)
