"""The training engine shared by train.py and real_train.py.

`Trainer` owns what evolves during training (model, Adam, lr schedule, EMA, GradScaler,
counters, RNG states) and does one guarded optimisation step at a time. The scripts keep
only their data handling and their outer loop (iterations for train.py, online-update
rounds for real_train.py).

Exact resume: the checkpoint holds every piece of state above plus the data position
(`epoch`, `batch_in_epoch`); with `ResumableSampler` and per-epoch loader seeding the
continued run sees the same batches and produces bit-identical weights on CPU.
"""
from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections import Counter
from typing import Callable, Sequence

import torch

from config import Config
from utils.engine import distributed
from utils.engine.ema import ModelEMA
from utils.engine.precision import Precision
from utils.engine.rng import capture_rng, restore_rng
from utils.engine.run_dir import RunDir
from utils.io.checkpoints import load_weights, save_checkpoint

LossFn = Callable[[torch.nn.Module], tuple[torch.Tensor, dict]]


class TrainingAborted(RuntimeError):
    """Too many consecutive non-finite losses or gradients; the message says what to try."""


class StepResult:
    """One step's loss, terms, lr and gradient norm. The values stay on the device until
    read (reading one waits for the device), so read them at logging steps only."""

    def __init__(self, loss: torch.Tensor, terms: dict, lr: float, grad_norm, skipped):
        self._loss, self._terms, self.lr = loss, terms, lr
        self._grad_norm, self._skipped = grad_norm, skipped

    @property
    def loss(self) -> float:
        return float(self._loss)

    @property
    def terms(self) -> dict:
        return {k: float(v) for k, v in self._terms.items()}

    @property
    def grad_norm(self) -> float:
        return float("nan") if self._grad_norm is None else float(self._grad_norm)

    @property
    def skipped(self) -> bool:
        return bool(self._skipped)


def milestone_steps(iterations: int, fractions) -> list[int]:
    """MultiStepLR milestones from fractions of the run (paper: 60% and 80%)."""
    return sorted({max(1, int(round(f * iterations))) for f in fractions})


class Trainer:
    def __init__(self, cfg: Config, model: torch.nn.Module, device: torch.device,
                 info: distributed.DistInfo, run: RunDir, lr: float,
                 milestones: list[int] = (), find_unused_parameters: bool = False,
                 fused: bool | None = None):
        """`fused` (default: on CUDA): fused Adam, which takes the GradScaler's skip on the
        device, so a step never waits for it. Off: the plain Adam, whose skip the GradScaler
        decides on the host (free on a CPU)."""
        self.cfg = cfg
        self.device = device
        self.info = info
        self.run = run
        tc = cfg.train
        self.precision = Precision(device, tc.precision, training=True)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed patch size: autotuning pays off
            if tc.channels_last:
                model = model.to(memory_format=torch.channels_last)
        self.model = model.to(device)  # the plain module: checkpoints, EMA, validation
        self.ema = ModelEMA(self.model, tc.ema_decay) if tc.ema_decay > 0 else None
        net = self.model
        if tc.compile:
            net = torch.compile(net)
        if info.enabled:
            ids = [device.index] if device.type == "cuda" else None
            net = torch.nn.parallel.DistributedDataParallel(
                net, device_ids=ids, find_unused_parameters=find_unused_parameters)
        self.net = net  # what the forward pass goes through
        fused = device.type == "cuda" if fused is None else fused
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr, fused=fused or None)
        # Stepped once per iteration (after the optimizer), so milestones are iterations.
        self._milestones = list(milestones)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(milestones), gamma=tc.gamma)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        # Non-finite step bookkeeping, on the device: the current run of bad steps, the longest
        # run and the count since the last check, and the reason of the last bad step.
        self._bad = torch.zeros(4, dtype=torch.int64, device=device)
        self._checked_step = 0
        self.best_metric = -math.inf
        self.best_step = -1

    # ------------------------------------------------------------------ optimisation
    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def load_optimizer_state(self, state: dict) -> None:
        """Adam's state from a checkpoint; the implementation (fused or not) stays this run's."""
        keep = [(g["fused"], g["foreach"]) for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state)
        for group, (fused, foreach) in zip(self.optimizer.param_groups, keep):
            group["fused"], group["foreach"] = fused, foreach

    def set_lr(self, lr: float) -> None:
        """Manual lr (real_train's per-round steps); persists under a milestone-free scheduler."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def eval_model(self) -> torch.nn.Module:
        """The weights to validate and publish: the EMA shadow when enabled."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def bad_steps(self) -> int:
        """Consecutive non-finite steps up to now (reading it waits for the device)."""
        return int(self._bad[0])

    def train_step(self, compute_loss: LossFn | Sequence[LossFn]) -> StepResult:
        """Forward + loss (autocast) and backward, clipping, then the optimizer step, skipped
        when the loss or a gradient is not finite.

        A sequence of loss functions is one step over that many micro-batches (gradient
        accumulation): each one's loss is divided by their number and back-propagated at once
        (so only one micro-batch's activations are alive), under DDP without the gradient
        all-reduce until the last. The reported loss and terms are the micro-batches' means.

        A skipped step counts as a bad step (every rank agrees, so DDP stays in step). The
        count is checked at logging steps (`train.log_every`, or `check_bad_steps()`): a
        longest run of `train.max_bad_steps` raises TrainingAborted there. Between them
        nothing is read back from the device. The iteration counter and lr schedule advance
        either way (the batches are consumed).
        """
        tc = self.cfg.train
        parts = [compute_loss] if callable(compute_loss) else list(compute_loss)
        lr = self.lr
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss, terms, finite_loss = self._backward(parts)
        self.precision.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                              tc.grad_clip if tc.grad_clip > 0 else float("inf"))
        stepped = finite_loss & torch.isfinite(norm)
        self._optimizer_step(stepped)
        if self.ema is not None:
            self.ema.update(self.model, stepped)
        self.optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # a skipped first step is intended, not an ordering bug
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)`")
            self.scheduler.step()
        self.step += 1
        self.batch_in_epoch += len(parts)  # the data position counts micro-batches
        # In fp16 an overflowing gradient is the loss scale being found, not a bad step.
        bad = ~finite_loss if self.precision.scales_loss else ~stepped
        self._count_bad(bad, torch.where(finite_loss, 2, 1))
        result = StepResult(loss, terms, lr, norm, bad)
        if self.step % tc.log_every == 0:
            self.check_bad_steps(result)
        return result

    def _backward(self, parts: list[LossFn]) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """Each micro-batch's forward and backward; (mean loss, mean terms, whether every loss
        was finite on every rank)."""
        loss, terms, finite = 0.0, {}, torch.ones((), dtype=torch.bool, device=self.device)
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            with self.net.no_sync() if self.info.enabled and not last else contextlib.nullcontext():
                with self.precision.autocast():
                    part_loss, part_terms = part(self.net)
                part_loss = part_loss.float() / len(parts)
                ok = distributed.all_true(self.info, torch.isfinite(part_loss.detach()))
                finite = finite & ok
                # A loss can be non-finite where its gradient is not (a detached term): times
                # NaN then, so the GradScaler sees it in the gradients and skips the step.
                seed = torch.where(ok, 1.0, float("nan"))
                self.precision.scaler.scale(part_loss * seed).backward()
            loss = loss + part_loss.detach()
            for k, v in part_terms.items():
                v = (v.detach() if torch.is_tensor(v) else v) / len(parts)
                terms[k] = v if k not in terms else terms[k] + v
        return loss, terms, finite

    def _optimizer_step(self, stepped: torch.Tensor) -> None:
        """Adam's step unless `stepped` is false: the GradScaler skips it on the device where
        torch provides one (CPU, CUDA); elsewhere (MPS) the host decides."""
        scaler = self.precision.scaler
        if scaler.is_enabled():
            scaler.step(self.optimizer)
            self.precision.update_scale()
        elif bool(stepped):
            self.optimizer.step()

    def _count_bad(self, bad: torch.Tensor, reason: torch.Tensor) -> None:
        run = (self._bad[0] + 1) * bad
        self._bad = torch.stack([run, torch.maximum(self._bad[1], run), self._bad[2] + bad,
                                 torch.where(bad, reason, self._bad[3])])

    def check_bad_steps(self, last: StepResult | None = None) -> None:
        """Log the non-finite steps since the last check; abort after too many in a row.
        Waits for the device (call it at logging steps)."""
        tc = self.cfg.train
        run, longest, count, reason = self._bad.tolist()
        first, self._checked_step = self._checked_step + 1, self.step
        self._bad = torch.stack([self._bad[0], self._bad[0], torch.zeros_like(self._bad[2]),
                                 self._bad[3]])
        if count == 0:
            return
        what = {1: "loss", 2: "gradient"}.get(reason, "loss or gradient")
        if first == self.step:
            loss = f" (loss {last.loss})" if last is not None else ""
            self.run.log(f"step {self.step}: non-finite {what}{loss}, update skipped "
                         f"({run} in a row, limit {tc.max_bad_steps})", logging.WARNING)
        else:
            self.run.log(f"steps {first}-{self.step}: {count} update(s) skipped for a non-finite "
                         f"loss or gradient (last: {what}; longest run {longest}, limit "
                         f"{tc.max_bad_steps})", logging.WARNING)
        if longest >= tc.max_bad_steps:
            message = (f"training aborted at step {self.step}: {longest} non-finite losses "
                       f"or gradients in a row (train.max_bad_steps={tc.max_bad_steps}). Try a "
                       f"lower train.lr, gradient clipping (--set train.grad_clip=1.0), or check "
                       f"the data for corrupt images. The last periodic checkpoint is still valid.")
            self.run.log(message, logging.ERROR)
            raise TrainingAborted(message)

    def should_stop(self, stop_requested: bool) -> bool:
        """True on every rank as soon as any rank received SIGINT/SIGTERM."""
        return distributed.any_flags(self.info, [stop_requested], self.device)[0]

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, extra: dict | None = None) -> dict:
        """The full training state. Collective under DDP (gathers every rank's RNG state):
        call it on all ranks, save on rank 0."""
        rng = distributed.gather_objects(self.info, capture_rng())
        state = {
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.precision.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "bad_steps": self.bad_steps,
            "best_metric": self.best_metric,
            "best_step": self.best_step,
            "world_size": self.info.world_size,
            "rng": rng,
        }
        if extra:
            state.update(extra)
        return state

    def save(self, state: dict, path) -> None:
        if self.info.is_main:
            save_checkpoint(state, path)

    def load_state_dict(self, state: dict, source: str) -> None:
        """Restore everything `state_dict` wrote (weights via load_weights' clear errors)."""
        load_weights(self.model, state["model"], source)
        if self.ema is not None:
            if state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
            else:  # EMA switched on when resuming: start the shadow from the weights
                self.ema.load_state_dict(self.model.state_dict())
        self.load_optimizer_state(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # The schedule follows the config, so `--resume --set train.iterations=N` moves the
        # lr milestones with the new length (unchanged config: the same milestones).
        self.scheduler.milestones = Counter(self._milestones)
        if state.get("scaler") and self.precision.scales_loss:  # elsewhere the scale stays 1
            self.precision.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.epoch = int(state.get("epoch", 0))
        self.batch_in_epoch = int(state.get("batch_in_epoch", 0))
        bad = int(state.get("bad_steps", 0))
        self._bad = torch.tensor([bad, bad, 0, 0], dtype=torch.int64, device=self.device)
        self._checked_step = self.step
        self.best_metric = float(state.get("best_metric", -math.inf))
        self.best_step = int(state.get("best_step", -1))
        rng = state.get("rng")
        if rng:
            same_layout = len(rng) == self.info.world_size
            if not same_layout:
                self.run.log(f"{source} was written by {len(rng)} process(es), this run has "
                             f"{self.info.world_size}: data order and RNG streams will differ")
            restore_rng(rng[self.info.rank] if same_layout else rng[0])
