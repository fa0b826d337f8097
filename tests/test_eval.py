"""eval.py: tables in md/csv/json, the 'no deraining' row, per-image output, clear errors."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import eval as evaluate_script
from config import demo
from networks import build_model
from utils.errors import UserError
from utils.io.checkpoints import save_checkpoint
from utils.io.images import read_image, write_image
from utils.metrics.protocols import image_metrics


def make_checkpoint(path: Path) -> Path:
    cfg = demo()
    cfg.model.channels, cfg.model.encoder_blocks = 4, (1, 1, 1)
    cfg.data.synthetic_size = 48
    torch.manual_seed(0)
    save_checkpoint({"config": cfg.to_dict(), "model": build_model(cfg.model).state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth")


@pytest.fixture
def paired(tmp_path):
    """A tiny data set in the input/target layout: clean images plus 'rain' streaks."""
    root = tmp_path / "tinyset"
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 48), (36, 52)]):
        clean = rng.random((h, w, 3)) * 0.5 + 0.25
        rainy = clean.copy()
        rainy[:, ::7] = 0.95
        write_image(root / "target" / f"{i}.png", clean)
        write_image(root / "input" / f"{i}.png", rainy)
    return root


def run(argv, checkpoint):
    args = evaluate_script.parse_args([*argv, "--checkpoint", str(checkpoint), "--device", "cpu",
                                       "--workers", "0", "--macs-size", "64"])
    return evaluate_script.run(args)


def test_eval_folder_writes_tables_and_input_row(paired, tmp_path, checkpoint):
    out = tmp_path / "ev"
    result = run(["--data", f"tiny={paired}", "--out", str(out), "--per-image", "--save-images"],
                 checkpoint)
    for name in ("results.md", "results.csv", "results.json", "settings.json", "per_image.csv"):
        assert (out / name).is_file(), name
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["dataset"], r["model"]) for r in rows] == [("tiny", rows[0]["model"]),
                                                         ("tiny", "no deraining")]
    assert rows[0]["model"].startswith("HCN") and all(r["images"] == 2 for r in rows)
    assert rows[0]["runtime_s"] > 0 and rows[1]["runtime_s"] is None

    # The "no deraining" row is exactly the metrics of the rainy inputs.
    expected = [image_metrics(read_image(paired / "input" / f"{i}.png"),
                              read_image(paired / "target" / f"{i}.png")) for i in range(2)]
    for key in expected[0]:
        assert rows[1][key] == pytest.approx(np.mean([e[key] for e in expected]), abs=1e-9)

    md = (out / "results.md").read_text()
    assert "PSNR (rgb)" in md and "SSIM (y-float)" in md and "no deraining" in md and "GMACs at 64x64" in md
    with (out / "results.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 2 and float(table[0]["params"]) == result["complexity"]["params"]
    with (out / "per_image.csv").open() as handle:
        per_image = list(csv.DictReader(handle))
    assert sorted(r["name"] for r in per_image) == ["0", "1"]
    assert len(list((out / "images" / "tiny").glob("*.png"))) == 2
    settings = json.loads((out / "settings.json").read_text())
    assert settings["model_config"]["model"]["channels"] == 4 and settings["tile"] is None


def test_eval_several_sets_tiled_one_protocol(paired, tmp_path, checkpoint):
    out = tmp_path / "ev2"
    run(["--data", str(paired), "--data", f"again={paired}", "--protocols", "rgb", "--tile", "32",
         "--overlap", "8", "--crop-border", "2", "--no-input-row", "--out", str(out)], checkpoint)
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["dataset"] for r in rows] == ["tinyset", "again"]
    assert set(k for k in rows[0] if "/" in k) == {"rgb/psnr", "rgb/ssim"}
    assert rows[0]["rgb/psnr"] == pytest.approx(rows[1]["rgb/psnr"])


def test_eval_default_is_embedded_synthetic_sets(tmp_path, checkpoint):
    out = tmp_path / "ev3"
    run(["--synthetic-count", "2", "--protocols", "rgb", "--out", str(out)], checkpoint)
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["dataset"], r["model"] == "no deraining") for r in rows] == [
        (f"synthetic-{p}", flag) for p in ("light", "heavy", "shifted") for flag in (False, True)]


def test_eval_errors(tmp_path, checkpoint, monkeypatch):
    with pytest.raises(UserError, match="python train.py"):
        monkeypatch.chdir(tmp_path)
        evaluate_script.run(evaluate_script.parse_args([]))
    with pytest.raises(UserError, match="no such"):
        run(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x")], checkpoint)
    with pytest.raises(UserError, match="unknown protocol"):
        run(["--protocols", "rgb,psnr-hvs"], checkpoint)
