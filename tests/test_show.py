"""show.py: outputs named after inputs, never into the input folder, no silent overwrite, clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import show
from config import demo
from networks import build_model
from utils.cli import run_main
from utils.io.checkpoints import save_checkpoint
from utils.io.images import read_image, write_image


def make_checkpoint(path: Path, channels: int = 4, weights_channels: int | None = None) -> Path:
    """A tiny checkpoint; `weights_channels` != channels fakes a checkpoint of another width."""
    cfg = demo()
    cfg.model.channels, cfg.model.encoder_blocks = channels, (1, 1, 1)
    weights_cfg = demo().model
    weights_cfg.channels, weights_cfg.encoder_blocks = weights_channels or channels, (1, 1, 1)
    torch.manual_seed(0)
    save_checkpoint({"config": cfg.to_dict(), "model": build_model(weights_cfg).state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth")


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    rng = np.random.default_rng(0)
    write_image(folder / "a.png", rng.random((40, 56, 3)))
    write_image(folder / "b.jpg", rng.random((36, 30, 3)))
    return folder


def run(argv, checkpoint):
    """The script's exit code (usage errors: 2, through the scripts' shared wrapper)."""
    return run_main(show.main, [*argv, "--checkpoint", str(checkpoint), "--device", "cpu"])


def test_folder_to_pngs_named_after_inputs_with_panels_and_sheet(photos, tmp_path, checkpoint):
    out = tmp_path / "out"
    clean = tmp_path / "clean"
    write_image(clean / "a.png", np.full((40, 56, 3), 0.5))
    before = sorted(p.name for p in photos.iterdir())
    assert run([str(photos), "--out", str(out), "--panels", "--clean", str(clean),
                "--contact-sheet", "--tile", "32", "--overlap", "8"], checkpoint) == 0
    assert sorted(p.name for p in photos.iterdir()) == before  # input folder untouched
    assert read_image(out / "a.png").shape == (40, 56, 3)
    assert read_image(out / "b.png").shape == (36, 30, 3)
    # a has ground truth: rainy | derained | clean; b has none: rainy | derained.
    assert read_image(out / "panels" / "a.png").shape[1] == 3 * 56 + 2 * 4
    assert read_image(out / "panels" / "b.png").shape[1] == 2 * 30 + 4
    assert (out / "contact_sheet.png").is_file()


def test_glob_and_single_file(photos, tmp_path, checkpoint):
    out = tmp_path / "g"
    assert run([str(photos / "*.jpg"), "--out", str(out)], checkpoint) == 0
    assert [p.name for p in out.iterdir() if p.name != show.RUN_LOG_NAME] == ["b.png"]
    assert run([str(photos / "a.png"), "--out", str(out), "--ensemble"], checkpoint) == 0
    assert sorted(p.name for p in out.iterdir() if p.name != show.RUN_LOG_NAME) == ["a.png", "b.png"]
    runs = [json.loads(line) for line in (out / show.RUN_LOG_NAME).read_text().splitlines()]
    assert [r["outputs"] for r in runs] == [["b.png"], ["a.png"]]  # appended, never overwritten
    assert runs[1]["args"]["ensemble"] is True and runs[1]["model_config"]["model"]["channels"] > 0


def test_refuses_input_folder_and_overwrite(photos, tmp_path, checkpoint, capsys):
    before = sorted(p.name for p in photos.iterdir())
    assert run([str(photos), "--out", str(photos)], checkpoint) == 2
    assert run([str(photos), "--out", str(photos / "sub")], checkpoint) == 2
    assert "input folder" in capsys.readouterr().err
    assert sorted(p.name for p in photos.iterdir()) == before

    out = tmp_path / "out"
    assert run([str(photos), "--out", str(out)], checkpoint) == 0
    write_image(out / "a.png", np.zeros((4, 4, 3)))  # a marker the second run must not replace
    assert run([str(photos), "--out", str(out)], checkpoint) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert read_image(out / "a.png").shape == (4, 4, 3)
    assert run([str(photos), "--out", str(out), "--overwrite"], checkpoint) == 0
    assert read_image(out / "a.png").shape == (40, 56, 3)


def test_unreadable_image_skipped_with_nonzero_exit(photos, tmp_path, checkpoint, capsys):
    (photos / "broken.png").write_bytes(b"not an image at all")
    out = tmp_path / "out"
    assert run([str(photos), "--out", str(out)], checkpoint) == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "skipped" in err
    assert sorted(p.name for p in out.iterdir() if p.name != show.RUN_LOG_NAME) == ["a.png", "b.png"]


def test_stem_collisions_get_distinct_names(tmp_path, checkpoint):
    folder = tmp_path / "in"
    write_image(folder / "x.png", np.zeros((16, 16, 3)))
    write_image(folder / "x.jpg", np.ones((16, 16, 3)))
    out = tmp_path / "out"
    assert run([str(folder), "--out", str(out)], checkpoint) == 0
    assert sorted(p.name for p in out.iterdir() if p.name != show.RUN_LOG_NAME) == ["x_jpg.png", "x_png.png"]


def test_checkpoint_errors_are_clear(photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert run([str(photos), "--out", str(out)], tmp_path / "nope.pth") == 2
    assert "nope.pth not found" in capsys.readouterr().err

    wrong = make_checkpoint(tmp_path / "wide.pth", channels=4, weights_channels=6)
    assert run([str(photos), "--out", str(out)], wrong) == 2
    err = capsys.readouterr().err
    assert "wide.pth does not fit this model" in err and "other shapes" in err
    assert "channels=4" in err  # says what the checkpoint's config holds
    assert "Traceback" not in err

    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": {"conv.weight": torch.zeros(3)}}, foreign)
    assert run([str(photos), "--out", str(out)], foreign) == 2
    assert "not an HCN checkpoint" in capsys.readouterr().err
    assert not out.exists()  # nothing written before the model loaded


def test_default_checkpoint_missing_says_train_first(photos, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_main(show.main, [str(photos), "--device", "cpu", "--checkpoint", "runs/demo/best.pth"]) == 2
    assert "python train.py" in capsys.readouterr().err
