"""Supervised training on rainy/clean pairs (docs/method.md#losses).

    python train.py                                    # demo preset, embedded synthetic set (CPU minutes)
    python train.py --preset paper --data PATH          # the paper recipe on a data set folder
    python train.py --resume auto                       # continue runs/<name>/latest.pth exactly
    torchrun --nproc_per_node=4 train.py --preset paper --data PATH   # DDP, one process per GPU

Outputs go to runs/<name>/ (name = train.name): config.json, latest.pth (periodic, end, on
a stop signal or at --time-limit), best.pth (best PSNR on the held-out val split), train.log,
tb/, and final.json (the input-vs-output table on the embedded test split). Nothing is written
before the config, the data and the resumed checkpoint are checked. SIGINT, SIGTERM and
SIGHUP, to this process or its whole group (SLURM, `timeout`), end the step under way, save
latest.pth and exit 128 + the signal number (docs/reliability.md).

--data needs --preset (or --config): a data set folder with the tiny demo model by default
would train the wrong model silently. Exit codes: utils/cli.py (0 ok, 2 usage or data error,
1 runtime failure, 124 time limit).
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from config import PRESETS, RUNTIME_MODEL_FIELDS, Config
from dataset import (DryPhotos, PatchDataset, build_train_val, synthetic_from_config,
                     synthetic_stream_from_config)
from losses import HCNLoss
from networks import build_model, parameter_summary
from networks.widen import WidenError, widen_weights
from utils import logs, threads
from utils.cli import add_run_args, run_main, sync
from utils.config_parse import add_config_args, preset_of
from utils.errors import UserError
from utils.engine import distributed
from utils.engine.interrupt import StopRequest, ignore_stop_signals, is_worker_death
from utils.engine.pace import Pace
from utils.engine.precision import Precision
from utils.engine.resume import reconcile_best, resolve_config as resolve_run_config
from utils.engine.rng import seed_everything
from utils.engine.run_dir import RunDir, format_metrics, open_run
from utils.engine.sampler import ResumableSampler, micro_batches
from utils.engine.time_limit import TimeLimit, format_duration, process_start
from utils.engine.trainer import Trainer, TrainingAborted, milestone_steps
from utils.engine.validation import evaluate, validate
from utils.io.checkpoints import (CheckpointError, load_model, load_weights, open_checkpoint,
                                  save_checkpoint)
from utils.io.images import set_max_pixels
from utils.progress import progress

log = logs.get("train")
PRESET_HELP = {"demo": "a tiny model for a CPU, minutes", "standard": "the shipped model's "
               "recipe, ~90 CPU minutes", "paper": "the published recipe, 75k iterations, a GPU"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser, default_preset="demo")
    parser.add_argument("--data", default=None, metavar="PATH",
                        help="training data set folder (shortcut for --set data.root=PATH)")
    add_run_args(parser, run_dir="runs/<name>")
    return parser.parse_args(argv)


def resolve_config(args) -> tuple[Config, dict | None, Path | None]:
    overrides = list(args.overrides) + ([f"data.root={args.data}"] if args.data else [])
    names_data = args.data or any(o.strip().startswith("data.root=") for o in args.overrides)
    if names_data and args.preset is None and args.config is None and not args.resume:
        raise UserError("a data set needs a model: add --preset "
                        + " or ".join(f"{name} ({PRESET_HELP.get(name, '')})" for name in
                                      ("paper", "standard", "demo") if name in PRESETS)
                        + ", or --config FILE")
    cfg, state, path = resolve_run_config(preset_of(args), overrides, args.resume,
                                          "train.name", args.config)
    # (A best.pth ahead of latest.pth is a kill between the two writes: train() catches up.)
    if state is not None and int(state["step"]) >= cfg.train.iterations and path.name != "best.pth":
        raise UserError(f"{path}: this run is finished ({state['step']} of {cfg.train.iterations} "
                        f"iterations); to train it longer: python train.py --resume {args.resume} "
                        f"--set train.iterations=N with N > {state['step']}")
    return cfg, state, path


def initial_weights(cfg: Config, resumed: bool) -> dict | None:
    """The weights `train.init` names (its EMA shadow if present), checked against the model
    before anything is written; None for random weights or a resumed run (its own weights)."""
    if cfg.train.init is None or resumed:
        return None
    path = Path(cfg.train.init)
    _, trained_cfg, weights = open_checkpoint(path, source=f"train.init {path}")
    trained = trained_cfg.model
    # Runtime settings may differ (a larger-patch stage moves position_extent), and a
    # narrower model is widened to a multiple of its width; the rest is what the weights mean.
    differ = [f"model.{k}: {v} in the checkpoint, {getattr(cfg.model, k)} here"
              for k, v in vars(trained).items()
              if k not in (*RUNTIME_MODEL_FIELDS, "channels") and getattr(cfg.model, k) != v]
    if differ:
        raise CheckpointError(f"train.init {path} was trained with another model ("
                              + "; ".join(differ) + "); set the same model.* values")
    if trained.channels != cfg.model.channels:
        try:
            weights = widen_weights(weights, trained.channels, cfg.model, seed=cfg.train.seed)
        except WidenError as exc:
            raise CheckpointError(f"train.init {path} has width {trained.channels} and "
                                  f"model.channels is {cfg.model.channels}: {exc}") from None
        logs.get("train").info(f"train.init {path}: widened from {trained.channels} to "
                               f"{cfg.model.channels} channels (same outputs, new channels "
                               f"start invisible)")
    return weights


def build_data(cfg: Config, info: distributed.DistInfo, pin: bool):
    train_pairs, val_pairs = build_train_val(cfg.data, seed=cfg.train.seed)
    if train_pairs is None:  # embedded rain made on the fly (data.synthetic_fresh)
        patches = synthetic_stream_from_config(cfg.data, seed=cfg.train.seed)
    else:
        patches = PatchDataset(train_pairs, cfg.data.patch_size, cfg.data.augment, seed=cfg.train.seed)
    per_rank = len(patches) // info.world_size
    per_step = cfg.train.batch_size * cfg.train.accumulate
    if per_rank < per_step:
        raise UserError(f"training set too small: {len(patches)} patches per epoch for "
                        f"{info.world_size} process(es) x batch {cfg.train.batch_size} x accumulate "
                        f"{cfg.train.accumulate}; lower train.batch_size or train.accumulate, or add images")
    sampler = ResumableSampler(patches, num_replicas=info.world_size, rank=info.rank,
                               batch_size=cfg.train.batch_size, seed=cfg.train.seed)
    # Own generator: worker seeds depend on (seed, epoch) only, and the global torch RNG is
    # not consumed when an iterator is created (which would break exact resume).
    generator = torch.Generator()
    # Workers ignore stop signals: the main process saves, then ends them (utils/engine/interrupt.py).
    loader = DataLoader(patches, batch_size=cfg.train.batch_size, sampler=sampler,
                        num_workers=cfg.data.num_workers, drop_last=True, pin_memory=pin,
                        generator=generator, worker_init_fn=ignore_stop_signals)
    return patches, sampler, loader, generator, val_pairs


def start_epoch(trainer: Trainer, patches, sampler: ResumableSampler, generator, seed: int) -> None:
    sampler.set_position(trainer.epoch, trainer.batch_in_epoch)
    generator.manual_seed(seed * 100_003 + trainer.epoch)
    if hasattr(patches, "set_epoch"):
        patches.set_epoch(trainer.epoch)


CHECKPOINTS = ("latest.pth", "best.pth")
CPU_ADVICE = ("for a result today, use a GPU (CUDA is used when present), --preset standard (the "
              "shipped model's recipe, about 90 CPU minutes), or fewer iterations "
              "(--set train.iterations=N)")


def checkpoint(trainer: Trainer, run: RunDir, stop: StopRequest, best=False, final=False) -> None:
    state = trainer.state_dict()  # collective: every rank takes part
    with stop.writing(final):  # a second Ctrl-C waits for the write
        if best:  # first: a latest.pth never refers to a best.pth that is not on disk yet
            trainer.save(state, run.path / "best.pth")
        trainer.save(state, run.path / "latest.pth")


def train(cfg: Config, resume_state: dict | None, resume_path: Path | None,
          info: distributed.DistInfo, device: torch.device, data, overwrite: bool = False,
          init: dict | None = None, started: float | None = None) -> int:
    """`data` = build_data(...) and `init` = initial_weights(...): built (and so validated)
    before the run folder is touched. `started`: the process's start (time_limit.process_start),
    where train.max_hours counts from."""
    tc = cfg.train
    seed_everything(tc.seed)  # the same initial weights on every rank
    run = open_run(Path(tc.out_dir) / tc.name, info, fresh=resume_state is None, overwrite=overwrite,
                   checkpoints=CHECKPOINTS, purge_step=resume_state["step"] if resume_state else 0)
    try:
        return _train(cfg, resume_state, resume_path, info, device, data, run, init, started)
    finally:
        run.close()


def _trainer(cfg: Config, resume_state: dict | None, resume_path: Path | None,
             info: distributed.DistInfo, device: torch.device, run: RunDir, init: dict | None) -> Trainer:
    """The model (from train.init's weights, if any) and its Trainer, resumed when asked."""
    tc = cfg.train
    model = build_model(cfg.model)
    if init is not None:  # before the Trainer: its EMA shadow starts from these weights too
        load_weights(model, init, f"train.init {tc.init}")
        run.log(f"initial weights from {tc.init}")
    trainer = Trainer(cfg, model, device, info, run, lr=tc.lr,
                      milestones=milestone_steps(tc.iterations, tc.milestones))
    if resume_state is not None:
        trainer.load_state_dict(resume_state, str(resume_path))
        run.log(f"resumed from {resume_path} at step {trainer.step} (epoch {trainer.epoch}, "
                f"batch {trainer.batch_in_epoch})")
        if info.is_main:
            best_step, best_metric, note = reconcile_best(run.path, resume_state, save_checkpoint,
                                                       source=resume_path)
            if note:
                run.log(note)
        trainer.best_step, trainer.best_metric = distributed.broadcast_object(
            info, (best_step, best_metric) if info.is_main else None)
    return trainer


def _train(cfg: Config, resume_state: dict | None, resume_path: Path | None,
           info: distributed.DistInfo, device: torch.device, data, run: RunDir,
           init: dict | None = None, started: float | None = None) -> int:
    tc = cfg.train
    patches, _, _, _, val_pairs = data
    run.save_config(cfg)
    trainer = _trainer(cfg, resume_state, resume_path, info, device, run, init)
    run.log(f"device {device}, {trainer.precision.describe()}, {threads.in_use()}; {info.world_size} process(es); "
            f"{len(patches)} training patches/epoch, {len(val_pairs)} val images; "
            f"{tc.iterations} iterations at batch {tc.batch_size} x {info.world_size}"
            + (f" x {tc.accumulate} accumulated" if tc.accumulate > 1 else ""))
    run.log(parameter_summary(trainer.model))
    run.log("loss = -(weighted sum of the five outputs' SSIMs): negative, lower is better, "
            f"-{sum(cfg.loss.weights):.3f} at best{pixel_terms(cfg.loss)} (docs/method.md#losses)")
    limit = TimeLimit.from_hours(tc.max_hours, started)
    if limit is not None:
        run.log(f"time limit {limit.describe()}: {format_duration(limit.left())} left to stop in, latest.pth saved")
    bar = progress(tc.iterations, trainer.step, tc.name, active=info.is_main)
    pace = Pace(tc.iterations, trainer.step, device.type, run.log, CPU_ADVICE, sync=lambda: sync(device))
    try:
        with StopRequest(limit) as stop, pace:
            try:
                finished = train_steps(cfg, trainer, data, run, stop, bar, pace)
            except RuntimeError as exc:  # a worker's death after the stop request: at a fetch
                if not (stop.requested and is_worker_death(exc)):
                    raise
                finished = False
            if not finished:
                return stop_run(trainer, run, stop)
            bar.close()
            if trainer.best_step < 0:  # no val split (data.val_fraction=0): best = last
                with stop.writing(final=True):
                    trainer.save(trainer.state_dict(), run.path / "best.pth")
            if info.is_main:  # a stop signal now lets the report finish: the run is complete
                report_test(cfg, run, device)
            return 0
    except TrainingAborted:  # the trainer has logged why
        return 1
    finally:
        bar.close()


def stop_run(trainer: Trainer, run: RunDir, stop: StopRequest) -> int:
    """latest.pth at the step reached, one line on how to continue; the exit code."""
    trainer.check_bad_steps()
    checkpoint(trainer, run, stop, final=True)
    latest = run.path / "latest.pth"
    run.log(f"stopped by {stop.reason or 'a stop on another rank'} at step {trainer.step}; "
            f"checkpoint saved to {latest}. Continue with: python train.py --resume {latest}")
    return stop.exit_code or 128 + signal.SIGTERM


def train_steps(cfg: Config, trainer: Trainer, data, run: RunDir, stop: StopRequest, bar, pace: Pace) -> bool:
    """Steps up to train.iterations, with logging, validation and checkpoints; False when a
    stop (a signal, the time limit; on any rank) ends them at a step's end."""
    tc = cfg.train
    patches, sampler, loader, generator, val_pairs = data
    loss_on = loss_function(cfg, trainer)
    while trainer.step < tc.iterations:
        start_epoch(trainer, patches, sampler, generator, tc.seed)
        for batches in micro_batches(stop.iterate(loader), tc.accumulate):
            result = trainer.train_step([loss_on(batch) for batch in batches])
            bar.update(1)
            pace.step_done(trainer.step)
            step = trainer.step
            # Reading the loss waits for the device: only at logging steps.
            if step % tc.log_every == 0 or step == tc.iterations:
                log_step(trainer, run, bar, result)
            improved = False
            if step % tc.val_every == 0 or step == tc.iterations:
                psnr = validate(trainer, val_pairs, run, images=step % tc.image_every == 0
                                or step == tc.iterations, dry_pairs=DryPhotos(val_pairs))
                if psnr is not None and psnr > trainer.best_metric:
                    trainer.best_metric, trainer.best_step, improved = psnr, step, True
            if improved or step % tc.ckpt_every == 0 or step == tc.iterations:
                checkpoint(trainer, run, stop, best=improved)
            if step == tc.iterations:
                return True
            if trainer.should_stop(stop.step_done()):
                return False
        trainer.epoch += 1
        trainer.batch_in_epoch = 0
    return True


def loss_function(cfg: Config, trainer: Trainer):
    """batch -> the Trainer's loss function of that micro-batch (moved to the device when called)."""
    criterion = HCNLoss(cfg.loss.weights).to(trainer.device)
    device = trainer.device
    channels_last = device.type == "cuda" and cfg.train.channels_last
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def loss_on(batch):
        def compute(net):  # moves its batch to the device when called: one micro-batch at a time
            rainy = batch["rainy"].to(device, non_blocking=True).contiguous(memory_format=memory_format)
            clean = batch["clean"].to(device, non_blocking=True)
            out = net(rainy, branches=True)
            # The loss runs in float32 even under autocast (SSIM variances need it).
            out = type(out)(*(t.float() if t is not None else None for t in out))
            on = cfg.loss.l1_weight if trainer.step >= cfg.loss.l1_start else 0.0
            return criterion(out, clean, l1_weight=on, psnr_weight=cfg.loss.psnr_weight)
        return compute
    return loss_on


def log_step(trainer: Trainer, run: RunDir, bar, result) -> None:
    """A logging step: the bad-step check, the bar's postfix, tensorboard and the log line."""
    if trainer.step % trainer.cfg.train.log_every:  # the last step: train_step did not check
        trainer.check_bad_steps(result)
    bar.set_postfix(loss=f"{result.loss:.4f}", lr=f"{result.lr:.2e}", refresh=False)
    scalars = {"train/loss": result.loss, "train/lr": result.lr, "train/grad_norm": result.grad_norm}
    scalars.update({f"train/{k}": v for k, v in result.terms.items()})
    run.scalars(scalars, trainer.step)
    run.log(f"step {trainer.step} " + format_metrics({"loss": result.loss, "lr": result.lr, **result.terms}))


def report_test(cfg: Config, run: RunDir, device: torch.device) -> dict:
    """Rainy input vs derained output on the embedded test split (model: best.pth): printed
    on stdout, logged, and written to runs/<name>/final.json."""
    run_path = run.path
    final = {"best_checkpoint": str(run_path / "best.pth"), "test": []}
    lines = [f"best checkpoint: {run_path / 'best.pth'}"]
    if cfg.data.root is not None:
        lines.append("evaluate it on your test sets with: python eval.py --checkpoint "
                     f"{run_path / 'best.pth'} --data TEST_FOLDER")
    else:
        model, _ = load_model(run_path / "best.pth", device)
        # The trained style, plus the held-out style when training used randomised rain.
        presets = [cfg.data.synthetic_preset] + (["gusty"] if cfg.data.synthetic_preset == "mixed" else [])
        for preset in presets:
            test = synthetic_from_config(cfg.data, "test", preset=preset)
            result = evaluate(model, test, device, protocols=("rgb", "y"), panels=0)
            fin, fout = result["input"], result["output"]
            final["test"].append({"split": "embedded synthetic test", "preset": preset,
                                  "images": result["count"], "size": cfg.data.synthetic_size,
                                  "input": fin, "output": fout})
            lines += [f"\nembedded test split ({preset} rain, {result['count']} images, "
                      f"{cfg.data.synthetic_size}px):",
                      f"  {'':16s}{'PSNR rgb':>10s}{'SSIM rgb':>10s}{'PSNR y':>10s}{'SSIM y':>10s}"]
            for label, m in (("rainy input", fin), ("derained output", fout)):
                lines.append(f"  {label:16s}{m['rgb/psnr']:10.2f}{m['rgb/ssim']:10.4f}"
                             f"{m['y/psnr']:10.2f}{m['y/ssim']:10.4f}")
            lines.append(f"  gain: {fout['rgb/psnr'] - fin['rgb/psnr']:+.2f} dB PSNR (rgb), "
                         f"{fout['rgb/ssim'] - fin['rgb/ssim']:+.4f} SSIM")
        dry = evaluate(model, DryPhotos(test), device, panels=0)
        final["test"].append({"split": "embedded test photos without rain", "preset": "dry",
                              "images": dry["count"], "size": cfg.data.synthetic_size,
                              "output": dry["output"]})
        lines.append(f"\nthe same test photos without rain come back at {dry['output']['rgb/psnr']:.2f} dB "
                     f"(brightness {dry['output']['brightness']:+.4f}): the harm done to a dry photo")
    text = "\n".join(lines)
    print(text, flush=True)  # the results: stdout; the log file gets them too, and final.json
    logs.to_files(logging.INFO, "final results (also in final.json):\n" + text)
    run.write_final(final)
    return final


def pixel_terms(loss) -> str:
    """The optional pixel terms of a LossConfig, as the training log names them."""
    terms = []
    if loss.l1_weight > 0:
        terms.append(f"{loss.l1_weight:g} x L1" + (f" from step {loss.l1_start}" if loss.l1_start else ""))
    if loss.psnr_weight > 0:
        terms.append(f"{loss.psnr_weight:g} x (-PSNR in dB)")
    return f"; plus {' + '.join(terms)} of the bottom output" if terms else ""


def main(argv=None) -> int:
    started = process_start()  # train.max_hours counts from here
    args = parse_args(argv)
    logs.setup(args)
    threads.apply_threads(args.threads)
    set_max_pixels(args.max_pixels)
    cfg, state, path = resolve_config(args)  # config, --resume checkpoint: UserError -> exit 2
    info, device = distributed.setup(args.device)
    if args.preset == "paper" and cfg.data.root is None and state is None and info.is_main:
        log.warning(f"--preset paper without --data trains on the embedded synthetic set "
                    f"({cfg.data.synthetic_count} images of {cfg.data.synthetic_size} px): a smoke "
                    f"test of the recipe, not its data; pass --data PATH (e.g. Rain200H/train)")
    try:
        Precision(device, cfg.train.precision, training=True)  # bf16 where unsupported: before any file
        data = build_data(cfg, info, pin=device.type == "cuda")  # the data: before any file is written
        init = initial_weights(cfg, resumed=state is not None)
        return train(cfg, state, path, info, device, data, overwrite=args.overwrite, init=init,
                     started=started)
    finally:
        distributed.cleanup(info)


if __name__ == "__main__":
    sys.exit(run_main(main))
