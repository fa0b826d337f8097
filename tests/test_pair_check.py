"""The header check of a pair data set (utils/io/pair_headers.py): it runs before the first
training step and before eval scores anything, names every bad file, and reads headers only."""
from __future__ import annotations

import logging

import numpy as np
import pytest

import eval as evaluate_script
import train
import utils.io.images
from dataset import DatasetError, open_pairs
from test_train import tiny_args
from utils.errors import UserError
from utils.io.images import write_image


def _set_with_bad_files(root, good: int = 6):
    """`good` sound pairs, 4 unreadable rainy files, 3 pairs of two sizes; the bad files' names."""
    rng = np.random.default_rng(0)
    for i in range(good):
        clean = rng.random((40, 48, 3)).astype(np.float32)
        write_image(root / "target" / f"{i}.png", clean)
        write_image(root / "input" / f"{i}.png", np.clip(clean + 0.1, 0, 1))
    bad = []
    for i in range(good, good + 4):  # a broken header, an empty file, text, cut short at 20 bytes
        write_image(root / "target" / f"{i}.png", rng.random((40, 48, 3)))
        bad.append(f"input/{i}.png")
    (root / "input" / f"{good}.png").write_bytes(b"\x89PNG but not really")
    (root / "input" / f"{good + 1}.png").write_bytes(b"")
    (root / "input" / f"{good + 2}.png").write_text("not an image")
    write_image(root / "input" / f"{good + 3}.png", rng.random((40, 48, 3)))
    (root / "input" / f"{good + 3}.png").write_bytes((root / "input" / f"{good + 3}.png").read_bytes()[:20])
    for i in range(good + 4, good + 7):
        write_image(root / "target" / f"{i}.png", rng.random((40, 48, 3)))
        write_image(root / "input" / f"{i}.png", rng.random((40, 50, 3)))
        bad.append(f"input/{i}.png is 50x40")
    return bad


def test_training_stops_before_the_first_step_naming_every_bad_file(tmp_path, caplog):
    data = tmp_path / "data"
    bad = _set_with_bad_files(data)
    out = tmp_path / "runs"
    with caplog.at_level(logging.WARNING), pytest.raises(UserError) as info:
        train.main(tiny_args(out, 3, f"data.root={data}", "data.patch_size=16"))
    message = str(info.value)
    assert "7 of 13 pairs cannot be used" in message and "(7 in all)" in message
    warned = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    for problem in bad:  # the error shows the first few, the log every one
        assert problem in warned, problem
    assert not out.exists()  # no run folder: nothing was trained


def test_eval_checks_headers_before_scoring_and_the_pixel_limit(tmp_path, monkeypatch):
    data = tmp_path / "data"
    _set_with_bad_files(data, good=2)
    monkeypatch.setattr(evaluate_script, "evaluate_set", lambda *a, **k: pytest.fail("scored a broken set"))
    monkeypatch.setenv("HCN_MAX_PIXELS", "100000000")  # --max-pixels sets it: restored after the test
    argv = ["--data", str(data), "--results", f"M={data / 'target'}", "--device", "cpu", "--out",
            str(tmp_path / "o"), "--max-pixels", "1000"]
    with pytest.raises(UserError, match=r"9 of 9 pairs cannot be used.*input/0.png: 48x40 = .* over the limit of 0.001 megapixels"):
        evaluate_script.run(evaluate_script.parse_args(argv))


def test_the_check_reads_headers_not_pixels(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    for i in range(3):
        write_image(tmp_path / "input" / f"{i}.png", rng.random((30 + i, 20, 3)))
        write_image(tmp_path / "target" / f"{i}.jpg", rng.random((30 + i, 20, 3)))
    pairs = open_pairs(tmp_path)
    monkeypatch.setattr(utils.io.images.cv2, "imdecode", lambda *a: pytest.fail("decoded an image"))
    assert pairs.verify() == [(30, 20), (31, 20), (32, 20)]
    # A header no parser knows is decoded instead (and then named if that fails too).
    (tmp_path / "input" / "1.png").write_bytes(b"garbage")
    monkeypatch.undo()
    with pytest.raises(DatasetError, match=r"1 of 3 pairs cannot be used.*input/1.png: not a readable image"):
        open_pairs(tmp_path).verify()
