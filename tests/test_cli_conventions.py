"""The five scripts' shared conventions (utils/cli.py): a usage or data error exits with 2 and
one line `error: ...` on stderr, no traceback, and nothing is created or changed before the
inputs are validated. Each case is one subprocess started in a scratch folder holding
finished-looking runs (the original bug rewrote runs/demo/config.json on a bad --data)."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import train
from networks import build_model
from utils.config_parse import build_config, config_from_dict
from utils.io.checkpoints import save_checkpoint
from utils.io.images import write_image

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.channels=4", "model.encoder_blocks=(1,1,1)"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A cwd with runs/demo (finished: step 5 of 5) and runs/demo_online, and a checkpoint."""
    root = tmp_path_factory.mktemp("cwd")
    cfg = build_config("demo", TINY + ["train.iterations=5"])
    # A resumable latest.pth holds the training state too (a weights-only file is refused).
    state = {"config": cfg.to_dict(), "model": build_model(cfg.model).state_dict(), "step": 5,
             "optimizer": {}, "scheduler": {}}
    for name in ("demo", "demo_online"):
        (root / "runs" / name).mkdir(parents=True)
        cfg.save(root / "runs" / name / "config.json")
    save_checkpoint(state, root / "runs" / "demo" / "latest.pth")
    save_checkpoint(state, root / "tiny.pth")
    (root / "tiny.pth").rename(root / "tiny.ckpt")
    write_image(root / "photos" / "rainy.png", np.full((8, 8, 3), 0.5))
    (root / "clips").mkdir()
    (root / "clips" / "broken.mp4").write_bytes(b"not a video at all" * 20)
    return root


def tree_digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def run_script(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("PYTHONPATH", None)  # the scripts find their modules from any working directory
    return subprocess.run([sys.executable, str(ROOT / argv[0]), *argv[1:]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


CASES = {
    # script: [(argv, text the message must contain)]
    "train": [
        (["--preset", "demo", "--data", "/nonexistent"], "/nonexistent"),
        (["--data", "/nonexistent"], "--preset paper"),  # refuses, naming the presets
        (["--set", "train.lr=abc"], "train.lr expects a number"),
        (["--set", "train.nofield=1"], "no field 'nofield'"),
        (["--preset", "demo", "--set", "data.root=2024"], "2024: no such"),  # a string, not an int
        (["--config", "missing.json"], "missing.json"),
        (["--resume", "auto"], "--set train.iterations=N"),  # runs/demo is finished
    ],
    "real_train": [
        (["--init", "missing.pth"], "missing.pth"),
        (["--init", "tiny.ckpt", "--data", "/nonexistent"], "/nonexistent"),
        (["--set", "online.rounds=x"], "online.rounds expects an integer"),
        (["--init", "tiny.ckpt", "--data", "clips/broken.mp4"], "broken.mp4: not a readable video"),
    ],
    "eval": [
        (["--checkpoint", "missing.pth"], "missing.pth"),
        (["--checkpoint", "tiny.ckpt", "--data", "/nonexistent", "--device", "cpu"], "/nonexistent"),
        (["--checkpoint", "tiny.ckpt", "--protocols", "psnr-hvs"], "psnr-hvs"),
        (["--checkpoint", "tiny.ckpt", "--clip", "clips/broken.mp4", "clips/broken.mp4", "--device", "cpu"],
         "broken.mp4: not a readable video"),
    ],
    "show": [
        (["missing.jpg", "--checkpoint", "tiny.ckpt"], "missing.jpg"),
        (["photos", "--checkpoint", "missing.pth"], "missing.pth"),
        (["photos", "--tile", "big"], "--tile"),
        (["clips/broken.mp4", "--checkpoint", "tiny.ckpt"], "broken.mp4: not a readable video"),
        (["clips/broken.mp4", "--checkpoint", "tiny.ckpt", "--frames", "9:3"], "--frames 9:3"),
    ],
    "scripts/bench": [
        (["--config", "missing.json"], "missing.json"),
        (["--set", "model.nofield=1"], "no field 'nofield'"),
    ],
}


@pytest.mark.parametrize("script, argv, needle", [
    (script, argv, needle) for script, cases in CASES.items() for argv, needle in cases],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_usage_and_data_errors_exit_2_with_one_line_and_touch_nothing(workdir, script, argv, needle):
    before = tree_digest(workdir)
    proc = run_script(workdir, f"{script}.py", *argv)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert needle in lines[0] and "Traceback" not in proc.stderr + proc.stdout
    assert tree_digest(workdir) == before  # no run folder created or changed


def test_argparse_usage_errors_keep_exit_2(workdir):
    proc = run_script(workdir, "train.py", "--no-such-flag")
    assert proc.returncode == 2 and "usage:" in proc.stderr and "Traceback" not in proc.stderr


def test_train_config_file_round_trip(tmp_path):
    saved = build_config("demo", TINY + ["train.lr=3e-4", "data.root=2024"])
    saved.save(tmp_path / "config.json")
    args = train.parse_args(["--config", str(tmp_path / "config.json"), "--set", "train.iterations=9"])
    cfg, state, _ = train.resolve_config(args)
    assert state is None and cfg.train.iterations == 9 and cfg.data.root == "2024"
    assert config_from_dict({**cfg.to_dict(), "train": {**cfg.to_dict()["train"], "iterations":
                                                        saved.train.iterations}}) == saved


def test_runtime_failure_is_exit_1_with_traceback(tmp_path):
    from utils.cli import run_main

    def broken(argv):
        raise RuntimeError("boom")

    def interrupted(argv):
        raise KeyboardInterrupt

    assert run_main(broken, []) == 1
    assert run_main(interrupted, []) == 130
    assert run_main(lambda argv: None, []) == 0


def test_learning_rates_log_in_scientific_notation():
    from utils.engine.run_dir import format_metrics

    line = format_metrics({"loss": -2.5, "lr": 1e-5, "grad": 2e-5, "step": 3})
    assert line == "loss=-2.5000 lr=1.00e-05 grad=2.000e-05 step=3"


def test_fused_trainer_counts_bad_steps_at_logging_steps(tmp_path):
    """The device-side path: a run of non-finite steps is found at the next logging step."""
    from utils.engine.distributed import DistInfo
    from utils.engine.run_dir import RunDir
    from utils.engine.trainer import Trainer, TrainingAborted

    cfg = build_config("demo", TINY + ["train.log_every=4", "train.max_bad_steps=2"])
    run = RunDir(tmp_path / "run")
    trainer = Trainer(cfg, build_model(cfg.model), torch.device("cpu"), DistInfo(), run, lr=1e-3,
                      fused=True)
    # Adam state from a plain (non-fused) optimizer, as real_train.py continues it: stays fused.
    trainer.load_optimizer_state(torch.optim.Adam(trainer.model.parameters()).state_dict())
    assert trainer.optimizer.param_groups[0]["fused"]
    x = torch.rand(1, 3, 16, 16)
    good = lambda net: (((net(x).bottom - x) ** 2).mean(), {})  # noqa: E731
    bad = lambda net: (net(x).bottom.mean() * float("nan"), {})  # noqa: E731
    for compute in (bad, good, good):  # one bad step: logged at step 4, no abort
        trainer.train_step(compute)
    trainer.train_step(good)
    for compute in (bad, bad, good):  # two in a row: abort at the next logging step (8)
        trainer.train_step(compute)
    with pytest.raises(TrainingAborted, match="training aborted at step 8: 2 non-finite"):
        trainer.train_step(good)
    run.close()
    log = (tmp_path / "run" / "train.log").read_text()
    assert "steps 1-4: 1 update(s) skipped" in log and "steps 5-8: 2 update(s) skipped" in log
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_eval_table_says_what_the_model_was_trained_on(workdir, tmp_path):
    import eval as evaluate_script
    from utils.cli import trained_on

    cfg = build_config("standard")
    assert "random rain styles" in trained_on(cfg) and "synthetic_preset=mixed" in trained_on(cfg)
    cfg.data.root = "data/Rain200H/train"
    assert trained_on(cfg).startswith("data set data/Rain200H/train")
    args = evaluate_script.parse_args(["--checkpoint", str(workdir / "tiny.ckpt"), "--device", "cpu",
                                       "--synthetic", "light", "--synthetic-count", "1", "--protocols",
                                       "rgb", "--workers", "0", "--macs-size", "32",
                                       "--out", str(tmp_path / "ev")])
    evaluate_script.run(args)
    text = (tmp_path / "ev" / "results.md").read_text()
    assert "trained on embedded synthetic `light` rain" in text
