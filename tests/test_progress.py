"""Progress output that suits where stderr goes: plain lines (count, rate, ETA) into a file or
a pipe, never a bar's carriage returns, in all four scripts."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tqdm import tqdm

from test_real_train import make_init, online_args
from test_show import make_checkpoint
from test_train import tiny_args
from utils import logs
from utils.io.images import write_image
from utils.progress import ProgressLines, progress

ROOT = Path(__file__).resolve().parents[1]


def test_lines_every_interval_with_rate_eta_and_postfix(capsys):
    now = [0.0]
    lines = ProgressLines(100, initial=20, desc="demo", line_seconds=30, clock=lambda: now[0])
    for _ in range(10):  # 10 steps of 4 s: a line once 30 s have passed
        now[0] += 4.0
        lines.update(1)
    lines.set_postfix(loss="-2.9100", lr="1.00e-03")
    for _ in range(10):
        now[0] += 4.0
        lines.update(1)
    lines.close()
    lines.close()  # idempotent
    out = capsys.readouterr().err.splitlines()
    assert out == ["demo: 28/100 (28%), 4 s/it, 00:32 elapsed, ETA 04:48",
                   "demo: 36/100 (36%), 4 s/it, 01:04 elapsed, ETA 04:16, loss=-2.9100, lr=1.00e-03",
                   "demo: 40/100 (40%), 4 s/it, 01:20 elapsed, ETA 04:00, loss=-2.9100, lr=1.00e-03"]


def test_fast_work_iterable_and_transient_lines(capsys):
    now = [0.0]
    items = ProgressLines(3, desc="derain", unit="img", iterable=["a", "b", "c"], clock=lambda: now[0])
    seen = []
    for item in items:
        now[0] += 0.25
        seen.append(item)
    items.close()
    transient = ProgressLines(5, desc="labels", leave=False, clock=lambda: now[0])
    transient.update(5)
    transient.close()  # leave=False: no closing line
    assert seen == ["a", "b", "c"]
    assert capsys.readouterr().err == "derain: 3/3 (100%), 4 img/s, 00:00 elapsed\n"


def test_a_terminal_gets_a_bar_a_file_gets_lines_quiet_gets_nothing(monkeypatch):
    logs.setup(level=logging.INFO)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert isinstance(progress(10, desc="x"), ProgressLines)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = progress(10, desc="x")
    assert isinstance(bar, tqdm) and not bar.disable
    bar.close()
    assert progress(10, active=False).disable  # a non-zero DDP rank
    logs.setup(level=logging.WARNING)  # --quiet
    try:
        monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
        assert progress(10).disable
    finally:
        logs.setup(level=logging.INFO)


# ----------------------------------------------------------------------------- the four scripts
@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    for i in range(2):
        write_image(root / "photos" / f"{i}.png", np.random.default_rng(i).random((24, 24, 3)))
    return {"root": root, "checkpoint": make_checkpoint(root / "tiny.pth"),
            "init": make_init(root / "init.pth")}


def _argv(script: str, inputs, tmp_path: Path) -> list[str]:
    if script == "train.py":
        return tiny_args(tmp_path, 4)
    if script == "real_train.py":
        return online_args(tmp_path, inputs["init"], "online.nr_score=false", "online.rounds=1")
    if script == "eval.py":
        return ["--checkpoint", str(inputs["checkpoint"]), "--device", "cpu", "--synthetic", "light",
                "--synthetic-count", "2", "--protocols", "rgb", "--workers", "0", "--macs-size", "32",
                "--out", str(tmp_path / "ev")]
    return [str(inputs["root"] / "photos"), "--checkpoint", str(inputs["checkpoint"]), "--device", "cpu",
            "--out", str(tmp_path / "out")]


@pytest.mark.parametrize("script", ["train.py", "real_train.py", "eval.py", "show.py"])
def test_stderr_redirected_to_a_file_has_no_carriage_returns(script, inputs, tmp_path):
    err = tmp_path / "stderr.log"
    with open(err, "w") as handle:
        done = subprocess.run([sys.executable, script, *_argv(script, inputs, tmp_path)], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
                              stdout=subprocess.DEVNULL, stderr=handle, timeout=600)
    text = err.read_text()
    assert done.returncode == 0, text[-3000:]
    assert "\r" not in text and "\x1b[" not in text
    finished = {"train.py": "tiny: 4/4 (100%)", "real_train.py": "rt: 4/4 (100%)",
                "eval.py": ": 2/2 (100%)", "show.py": "derain: 2/2 (100%)"}[script]
    assert finished in text, text[-3000:]
