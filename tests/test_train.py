"""Training engine and train.py: loss goes down, exact resume, signals, bad steps, DDP (CPU, tiny)."""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.utils._python_dispatch

import losses
import train
from config import Config
from dataset import DryPhotos, synthetic_from_config, synthetic_pairs
from losses import HCNLoss
from networks import build_model
from utils.config_parse import build_config, load_config_file
from utils.engine.distributed import DistInfo
from utils.engine.rng import capture_rng, restore_rng, seed_everything
from utils.engine.run_dir import RunDir
from utils.engine.sampler import ResumableSampler
from utils.engine.trainer import Trainer, TrainingAborted
from utils.engine.validation import evaluate
from utils.errors import UserError
from utils.io.checkpoints import load_checkpoint, load_model

ROOT = Path(__file__).resolve().parents[1]


def tiny_args(out_dir: Path, iterations: int, *extra: str) -> list[str]:
    """A model and data set small enough for a few CPU seconds."""
    sets = [
        "model.channels=4", "model.encoder_blocks=(1,1,1)", "data.patch_size=32",
        "data.synthetic_size=40", "data.synthetic_count=6", "data.synthetic_val_count=2",
        "data.synthetic_test_count=2",
        "data.num_workers=0", "train.batch_size=2", f"train.iterations={iterations}",
        f"train.out_dir={out_dir}", "train.name=tiny", "train.val_every=2", "train.ckpt_every=3",
        "train.log_every=1", "train.image_every=2",
    ]
    argv = ["--preset", "demo"]
    for item in sets + list(extra):
        argv += ["--set", item]
    return argv


def tiny_config() -> Config:
    return build_config("demo", ["model.channels=4", "model.encoder_blocks=(1,1,1)"])


def test_rng_state_roundtrip_through_weights_only_checkpoint(tmp_path):
    seed_everything(3)
    state = capture_rng()
    torch.save(state, tmp_path / "rng.pth")
    expected = (random.random(), np.random.rand(), torch.rand(2))
    random.random(), np.random.rand(), torch.rand(5)  # move every stream on
    restore_rng(torch.load(tmp_path / "rng.pth", weights_only=True))
    again = (random.random(), np.random.rand(), torch.rand(2))
    assert expected[0] == again[0] and expected[1] == again[1] and torch.equal(expected[2], again[2])


def test_resumable_sampler_continues_mid_epoch():
    data = list(range(10))
    full = ResumableSampler(data, num_replicas=1, rank=0, batch_size=3, seed=5)
    full.set_position(epoch=2)
    order = list(full)
    assert len(order) == 9 and sorted(order) != order  # shuffled, last partial batch dropped
    part = ResumableSampler(data, num_replicas=1, rank=0, batch_size=3, seed=5)
    part.set_position(epoch=2, start_batch=2)
    assert list(part) == order[6:] and len(part) == 3


def _tiny_trainer(tmp_path, fused=None, **train_overrides):
    cfg = tiny_config()
    for key, value in train_overrides.items():
        setattr(cfg.train, key, value)
    seed_everything(0)
    model = build_model(cfg.model)
    run = RunDir(tmp_path / "run", echo=False)
    return cfg, Trainer(cfg, model, torch.device("cpu"), DistInfo(), run, lr=3e-3, fused=fused)


def test_a_few_steps_reduce_the_loss(tmp_path):
    cfg, trainer = _tiny_trainer(tmp_path)
    pairs = synthetic_pairs("train", preset="light", size=32, count=2, seed=1)
    rainy = torch.stack([pairs[i]["rainy"] for i in range(2)])
    clean = torch.stack([pairs[i]["clean"] for i in range(2)])
    criterion = HCNLoss(cfg.loss.weights)
    losses = [trainer.train_step(lambda net: criterion(net(rainy, branches=True), clean)).loss
              for _ in range(12)]
    assert losses[-1] < losses[0] - 0.02, losses


@pytest.mark.parametrize("fused", [False, True])
def test_accumulated_micro_batches_step_like_one_full_batch(tmp_path, fused):
    pairs = synthetic_pairs("train", preset="heavy", size=32, count=4, seed=2)
    rainy = torch.stack([pairs[i]["rainy"] for i in range(4)])
    clean = torch.stack([pairs[i]["clean"] for i in range(4)])

    def loss_of(rows):
        return lambda net: criterion(net(rainy[rows], branches=True), clean[rows])

    steps = {}
    for name, parts in (("full", loss_of(slice(0, 4))), ("accumulated", [loss_of(slice(0, 2)), loss_of(slice(2, 4))])):
        # fp32: bf16 (`auto` on a CPU with native bf16) rounds each micro-batch on its own.
        cfg, trainer = _tiny_trainer(tmp_path / name, fused=fused, precision="fp32")
        criterion = HCNLoss(cfg.loss.weights)
        result = trainer.train_step(parts)
        steps[name] = (result, trainer.model.state_dict(), trainer.batch_in_epoch)
    (full, full_weights, full_batches), (acc, acc_weights, acc_batches) = steps["full"], steps["accumulated"]
    # The mean loss and the gradient (its norm) of the whole batch, not their sums.
    assert acc.loss == pytest.approx(full.loss, rel=1e-5)
    assert acc.grad_norm == pytest.approx(full.grad_norm, rel=1e-4)
    assert acc.terms.keys() == full.terms.keys()
    assert all(acc.terms[k] == pytest.approx(full.terms[k], rel=1e-4, abs=1e-6) for k in full.terms)
    assert all(torch.allclose(full_weights[k], acc_weights[k], atol=1e-6) for k in full_weights)
    assert (full_batches, acc_batches) == (1, 2)  # the data position counts micro-batches


def test_accumulating_run_resumes_bit_identically(tmp_path, monkeypatch):
    # 6 micro-batches of 1 per epoch, 2 per step: the interruption after step 2 is mid-epoch.
    extra = ("train.batch_size=1", "train.accumulate=2", "train.milestones=(0.5,)")
    reference, stopped, resumed = _whole_and_resumed_runs(tmp_path, monkeypatch, 5, 2, extra)
    assert (stopped["step"], stopped["epoch"], stopped["batch_in_epoch"]) == (2, 0, 4)
    assert resumed["step"] == reference["step"] == 5 and resumed["epoch"] == reference["epoch"] == 1
    for name, tensor in reference["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), f"model.{name} differs after resume"
    log = (tmp_path / "b" / "tiny" / "train.log").read_text()
    assert "5 iterations at batch 1 x 1 x 2 accumulated" in log


def test_too_small_a_set_for_one_accumulated_step_is_refused(tmp_path):
    with pytest.raises(UserError, match="6 patches per epoch .* x batch 2 x accumulate 4"):
        train.main(tiny_args(tmp_path, 3, "train.accumulate=4"))
    assert not (tmp_path / "tiny").exists()


@pytest.mark.parametrize("fused", [False, True])
def test_non_finite_loss_is_skipped_then_aborts(tmp_path, fused):
    # fused: the CUDA path (the GradScaler's skip inside fused Adam, no host wait), here on CPU.
    cfg, trainer = _tiny_trainer(tmp_path, max_bad_steps=3, log_every=1, ema_decay=0.9,
                                 fused=fused)
    x = torch.rand(1, 3, 32, 32)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    def nan_loss(net):
        return net(x).bottom.mean() * float("nan"), {}

    result = trainer.train_step(nan_loss)
    assert result.skipped and trainer.bad_steps == 1
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert all(torch.equal(before[k], v) for k, v in trainer.ema.module.state_dict().items())
    assert all(torch.isfinite(s["exp_avg"]).all() for s in trainer.optimizer.state.values())
    ok = trainer.train_step(lambda net: (((net(x).bottom - x) ** 2).mean(), {}))
    assert not ok.skipped and trainer.bad_steps == 0  # a good step resets the count
    trainer.train_step(nan_loss)
    trainer.train_step(nan_loss)
    with pytest.raises(TrainingAborted, match="3 non-finite losses"):
        trainer.train_step(nan_loss)



@pytest.mark.parametrize("fused", [False, True])
def test_a_non_finite_loss_skips_the_step_even_where_its_gradient_is_finite(tmp_path, fused):
    # A detached non-finite term leaves the gradient finite; the step is skipped all the same.
    cfg, trainer = _tiny_trainer(tmp_path, fused=fused, ema_decay=0.9)
    x = torch.rand(1, 3, 32, 32)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = trainer.train_step(lambda net: ((net(x).bottom - x).abs().mean() + torch.tensor(float("inf")), {}))
    assert result.skipped and trainer.bad_steps == 1
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert all(torch.equal(before[k], v) for k, v in trainer.ema.module.state_dict().items())
    assert trainer.optimizer.state == {} or all(int(s["step"]) == 0 for s in trainer.optimizer.state.values())

class _HostReads(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the operators that make the host wait for a device (a tensor read as a Python
    number or bool, a data-dependent shape): `_local_scalar_dense` is what .item(), float(),
    bool() and a tensor passed where a number is expected all end in."""

    SYNCING = {"_local_scalar_dense", "item", "is_nonzero", "nonzero", "masked_select", "equal"}

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name in self.SYNCING:
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


def test_fused_train_step_never_reads_a_device_value_between_logging_steps(tmp_path, monkeypatch):
    """The CUDA path (fused Adam), here on CPU: outside logging steps a step queues its work and
    returns; loss, terms, gradient norm and the bad-step count stay on the device until read."""
    cfg, trainer = _tiny_trainer(tmp_path, fused=True, log_every=3, ema_decay=0.9, grad_clip=1.0)
    x = torch.rand(1, 3, 16, 16)
    compute = lambda net: (((net(x).bottom - x) ** 2).mean(), {"mse": torch.ones(())})  # noqa: E731
    reads = []
    for method in ("item", "tolist", "__float__", "__bool__", "__int__", "numpy"):  # CPU tensors'
        original = getattr(torch.Tensor, method)  # Python-level reads that skip the dispatcher

        def counted(self, *args, _original=original, _method=method, **kwargs):
            reads.append(_method)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, method, counted)
    for step in (1, 2):
        with _HostReads() as probe:
            result = trainer.train_step(compute)
        assert probe.calls == [] and reads == [], (step, probe.calls, reads)
    with _HostReads() as probe:  # step 3 logs: the bad-step count is read, so the probe sees it
        trainer.train_step(compute)
    assert reads or probe.calls
    reads.clear()
    assert result.loss > 0 and result.terms == {"mse": 1.0} and result.grad_norm > 0
    assert "item" in reads or "__float__" in reads  # reading a StepResult is where the wait is


def _stop_after(monkeypatch, step: int) -> None:
    """Deliver SIGINT to this process right after optimisation step `step` (a real signal)."""
    original = Trainer.train_step

    def patched(self, compute_loss):
        result = original(self, compute_loss)
        if self.step == step:
            os.kill(os.getpid(), signal.SIGINT)
        return result

    monkeypatch.setattr(Trainer, "train_step", patched)


def _whole_and_resumed_runs(tmp_path, monkeypatch, iterations: int, stop_at: int, extra) -> tuple:
    """latest.pth of an uninterrupted run (a/), and of a run (b/) stopped by SIGINT after step
    `stop_at` (as saved then) and resumed to the end."""
    assert train.main(tiny_args(tmp_path / "a", iterations, *extra)) == 0
    reference = load_checkpoint(tmp_path / "a" / "tiny" / "latest.pth")
    with monkeypatch.context() as patch:
        _stop_after(patch, stop_at)
        assert train.main(tiny_args(tmp_path / "b", iterations, *extra)) == 128 + signal.SIGINT
    stopped = load_checkpoint(tmp_path / "b" / "tiny" / "latest.pth")
    assert train.main(tiny_args(tmp_path / "b", iterations, *extra) + ["--resume", "auto"]) == 0
    return reference, stopped, load_checkpoint(tmp_path / "b" / "tiny" / "latest.pth")


def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, monkeypatch):
    # 7 iterations over 3 batches/epoch: the interruption at step 4 is mid-epoch.
    extra = ("train.ema_decay=0.9", "train.milestones=(0.5,)")
    reference, stopped, resumed = _whole_and_resumed_runs(tmp_path, monkeypatch, 7, 4, extra)
    assert stopped["step"] == 4 and stopped["batch_in_epoch"] == 1

    assert resumed["step"] == reference["step"] == 7
    for key in ("model", "ema"):
        for name, tensor in reference[key].items():
            assert torch.equal(tensor, resumed[key][name]), f"{key}.{name} differs after resume"
    ref_opt, res_opt = reference["optimizer"]["state"], resumed["optimizer"]["state"]
    assert all(torch.equal(ref_opt[i]["exp_avg"], res_opt[i]["exp_avg"]) for i in ref_opt)
    assert resumed["scheduler"]["last_epoch"] == 7
    run = tmp_path / "b" / "tiny"
    assert load_config_file(run / "config.json").train.iterations == 7
    assert (run / "best.pth").is_file() and (run / "train.log").is_file()
    assert any((run / "tb").iterdir())
    model, cfg = load_model(run / "best.pth")
    assert cfg.model.channels == 4


def test_the_psnr_term_trains_and_is_logged(tmp_path):
    assert train.main(tiny_args(tmp_path, 2, "loss.psnr_weight=0.02", "loss.l1_weight=0")) == 0
    log = (tmp_path / "tiny" / "train.log").read_text()
    assert "plus 0.02 x (-PSNR in dB) of the bottom output" in log and "x L1" not in log
    assert "psnr_bottom=" in log  # the term's value, in dB, on the step lines


def test_nan_in_the_loss_is_survived_by_train_py(tmp_path, monkeypatch):
    original = losses.HCNLoss.forward
    calls = {"n": 0}

    def sometimes_nan(self, out, clean, l1_weight=0.0, psnr_weight=0.0):
        total, terms = original(self, out, clean, l1_weight, psnr_weight)
        calls["n"] += 1
        return (total * float("nan"), terms) if calls["n"] in (2, 3) else (total, terms)

    monkeypatch.setattr(losses.HCNLoss, "forward", sometimes_nan)
    assert train.main(tiny_args(tmp_path, 4)) == 0
    log = (tmp_path / "tiny" / "train.log").read_text()
    assert "step 2: non-finite loss" in log and "step 3: non-finite loss" in log
    assert load_checkpoint(tmp_path / "tiny" / "latest.pth")["step"] == 4

    monkeypatch.setattr(losses.HCNLoss, "forward",
                        lambda self, out, clean, l1_weight=0.0, psnr_weight=0.0: (out.bottom.sum() * float("nan"), {}))
    assert train.main(tiny_args(tmp_path, 20, "train.max_bad_steps=2", "train.name=nan")) == 1
    assert "training aborted at step 2" in (tmp_path / "nan" / "train.log").read_text()


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def test_sigterm_leaves_a_loadable_checkpoint(tmp_path):
    proc = subprocess.Popen([sys.executable, "train.py", *tiny_args(tmp_path, 100_000, "train.ckpt_every=100000")],
                            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = tmp_path / "tiny" / "train.log"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and "step 2 " in log.read_text():
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[0]
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "Traceback" not in output
    state = load_checkpoint(tmp_path / "tiny" / "latest.pth")
    assert state["step"] >= 2
    load_model(tmp_path / "tiny" / "latest.pth")


@pytest.mark.parametrize("accumulate", [(), ("train.batch_size=1", "train.accumulate=2")],
                         ids=["one-batch", "accumulated"])
def test_two_process_gloo_ddp(tmp_path, accumulate):
    # Accumulated: the first micro-batch's backward runs under no_sync, the last all-reduces.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "train.py", *tiny_args(tmp_path, 3, *accumulate)]
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    state = load_checkpoint(tmp_path / "tiny" / "latest.pth")
    assert state["world_size"] == 2 and state["step"] == 3 and len(state["rng"]) == 2
    # The two ranks drew different crops, but DDP kept one set of weights: resume works on 2.
    cmd2 = cmd + ["--resume", "auto", "--set", "train.iterations=4"]
    done = subprocess.run(cmd2, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert load_checkpoint(tmp_path / "tiny" / "latest.pth")["step"] == 4


def test_resume_with_a_new_length_moves_the_lr_milestones(tmp_path):
    """`--resume --set train.iterations=N`: the schedule follows the config, not the file."""
    cfg = tiny_config()
    seed_everything(0)
    long_run = Trainer(cfg, build_model(cfg.model), torch.device("cpu"), DistInfo(),
                       RunDir(tmp_path / "a", echo=False), lr=1e-3, milestones=[10, 20])
    state = long_run.state_dict()
    short_run = Trainer(cfg, build_model(cfg.model), torch.device("cpu"), DistInfo(),
                        RunDir(tmp_path / "b", echo=False), lr=1e-3, milestones=[2, 4])
    short_run.load_state_dict(state, "long run")
    lrs = []
    for _ in range(5):
        lrs.append(short_run.train_step(lambda net: (sum(p.sum() for p in net.parameters()) * 0.0, {})).lr)
    lrs.append(short_run.lr)
    gamma = cfg.train.gamma
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-3 * gamma, 1e-3 * gamma, 1e-3 * gamma ** 2, 1e-3 * gamma ** 2])


def test_train_init_widens_a_narrower_model_without_changing_its_outputs(tmp_path):
    """model.channels a multiple of the checkpoint's: the run starts from the widened weights,
    which compute exactly what the narrow model did (lr 0 keeps them), and says so."""
    assert train.main(tiny_args(tmp_path, 2)) == 0
    argv = tiny_args(tmp_path, 1, f"train.init={tmp_path / 'tiny' / 'best.pth'}", "train.name=wide",
                     "model.channels=8", "train.lr=0.0")
    assert train.main(argv) == 0
    narrow, _ = load_model(tmp_path / "tiny" / "best.pth")
    wide, cfg = load_model(tmp_path / "wide" / "latest.pth")
    assert cfg.model.channels == 8
    x = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(wide(x).bottom, narrow(x).bottom, atol=1e-5, rtol=0)
    assert "widened from 4 to 8 channels" in (tmp_path / "wide" / "train.log").read_text()


def test_train_init_starts_from_the_weights_with_a_fresh_schedule(tmp_path):
    """train.init: stage two starts at stage one's published weights (EMA shadow), with step 0,
    a fresh optimizer and the configured lr; a mismatched model is refused before any write,
    a new position_extent is not a mismatch."""
    assert train.main(tiny_args(tmp_path, 2, "train.ema_decay=0.9")) == 0
    first = load_checkpoint(tmp_path / "tiny" / "best.pth")
    # Zero steps: the stage-two run's checkpoint must hold exactly the initial weights.
    argv = tiny_args(tmp_path, 1, f"train.init={tmp_path / 'tiny' / 'best.pth'}", "train.name=stage2",
                     "train.lr=0.0", "train.ema_decay=0.9")
    assert train.main(argv) == 0
    second = load_checkpoint(tmp_path / "stage2" / "latest.pth")
    assert second["step"] == 1
    for key, value in first["ema"].items():  # lr 0: the weights did not move from stage one's EMA
        assert torch.equal(second["model"][key], value), key
    assert "initial weights from" in (tmp_path / "stage2" / "train.log").read_text()
    # A larger-patch stage moves position_extent: no weight depends on it, so it is accepted.
    larger = tiny_args(tmp_path, 1, f"train.init={tmp_path / 'tiny' / 'best.pth'}", "train.name=larger",
                       "model.position_extent=48")
    assert train.main(larger) == 0
    assert load_checkpoint(tmp_path / "larger" / "latest.pth")["config"]["model"]["position_extent"] == 48

    wrong = tiny_args(tmp_path, 1, f"train.init={tmp_path / 'tiny' / 'best.pth'}", "train.name=wrong",
                      "model.encoder_blocks=(2,1,1)")
    with pytest.raises(UserError, match=r"model.encoder_blocks: \(1, 1, 1\) in the checkpoint"):
        train.main(wrong)
    assert not (tmp_path / "wrong").exists()  # refused before the run folder is made
    odd = tiny_args(tmp_path, 1, f"train.init={tmp_path / 'tiny' / 'best.pth'}", "train.name=odd",
                    "model.channels=6")
    with pytest.raises(UserError, match="has width 4 and model.channels is 6: width 6 is not a multiple"):
        train.main(odd)
    assert not (tmp_path / "odd").exists()
    missing = tiny_args(tmp_path, 1, f"train.init={tmp_path / 'nope.pth'}", "train.name=missing")
    with pytest.raises(UserError, match="nope.pth does not exist"):
        train.main(missing)


def test_validation_and_the_final_report_measure_the_harm_done_to_dry_photos(tmp_path):
    """A recipe that darkens rain-free photos is seen during training: each validation scores
    the val photos without rain (PSNR against themselves, brightness shift), and final.json
    holds the same for the test photos; the numbers match a direct evaluation."""
    assert train.main(tiny_args(tmp_path, 2, "data.synthetic_fresh=true", "data.dry_share=0.5",
                                       "data.streak_share=0.25")) == 0
    log = (tmp_path / "tiny" / "train.log").read_text()
    found = re.findall(r"step 2: val photos without rain come back at ([\d.]+) dB, brightness ([-+][\d.]+)", log)
    assert found, log
    final = json.loads((tmp_path / "tiny" / "final.json").read_text())
    dry = [t for t in final["test"] if t["preset"] == "dry"]
    assert len(dry) == 1 and dry[0]["images"] == 2
    model, cfg = load_model(tmp_path / "tiny" / "best.pth")
    test = synthetic_from_config(cfg.data, "test", preset="light")
    expected = evaluate(model, DryPhotos(test), torch.device("cpu"), panels=0)["output"]
    assert dry[0]["output"]["rgb/psnr"] == pytest.approx(expected["rgb/psnr"], abs=1e-4)
    assert dry[0]["output"]["brightness"] == pytest.approx(expected["brightness"], abs=1e-6)
