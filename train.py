"""Supervised training on rainy/clean pairs (docs/method.md#losses).

    python train.py                                    # demo preset, embedded synthetic set (CPU minutes)
    python train.py --preset paper --data PATH          # the paper recipe on a data set folder
    python train.py --resume auto                       # continue runs/<name>/latest.pth exactly
    torchrun --nproc_per_node=4 train.py --preset paper --data PATH   # DDP, one process per GPU

Outputs go to runs/<name>/ (name = train.name): config.json, latest.pth (periodic, end,
on SIGINT/SIGTERM), best.pth (best PSNR on the held-out val split), train.log, tb/.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from config import Config, add_config_args
from dataset import PatchDataset, build_train_val, synthetic_from_config, synthetic_stream_from_config
from losses import HCNLoss
from networks import build_model, parameter_summary
from utils.cli import add_run_args
from utils.engine import distributed
from utils.engine.interrupt import StopRequest
from utils.engine.resume import resolve_config as resolve_run_config
from utils.engine.rng import seed_everything
from utils.engine.run_dir import RunDir, format_metrics, progress
from utils.engine.sampler import ResumableSampler
from utils.engine.trainer import Trainer, TrainingAborted, milestone_steps
from utils.engine.validation import evaluate
from utils.io.checkpoints import CheckpointError, load_model
from utils.io.panels import side_by_side


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser, default_preset="demo")
    parser.add_argument("--data", default=None, metavar="PATH",
                        help="training data set folder (shortcut for --set data.root=PATH)")
    add_run_args(parser, run_dir="runs/<name>")
    return parser.parse_args(argv)


def resolve_config(args) -> tuple[Config, dict | None, Path | None]:
    overrides = list(args.overrides) + ([f"data.root={args.data}"] if args.data else [])
    return resolve_run_config(args.preset, overrides, args.resume, lambda cfg: cfg.train.name)


def build_data(cfg: Config, info: distributed.DistInfo, pin: bool):
    train_pairs, val_pairs = build_train_val(cfg.data, seed=cfg.train.seed)
    if train_pairs is None:  # embedded rain made on the fly (data.synthetic_fresh)
        patches = synthetic_stream_from_config(cfg.data, seed=cfg.train.seed)
    else:
        patches = PatchDataset(train_pairs, cfg.data.patch_size, cfg.data.augment, seed=cfg.train.seed)
    per_rank = len(patches) // info.world_size
    if per_rank < cfg.train.batch_size:
        raise SystemExit(f"training set too small: {len(patches)} patches per epoch for "
                         f"{info.world_size} process(es) x batch {cfg.train.batch_size}; lower "
                         f"train.batch_size or add images")
    sampler = ResumableSampler(patches, num_replicas=info.world_size, rank=info.rank,
                               batch_size=cfg.train.batch_size, seed=cfg.train.seed)
    # Own generator: worker seeds depend on (seed, epoch) only, and the global torch RNG is
    # not consumed when an iterator is created (which would break exact resume).
    generator = torch.Generator()
    loader = DataLoader(patches, batch_size=cfg.train.batch_size, sampler=sampler,
                        num_workers=cfg.data.num_workers, drop_last=True, pin_memory=pin,
                        generator=generator)
    return patches, sampler, loader, generator, val_pairs


def start_epoch(trainer: Trainer, patches, sampler: ResumableSampler, generator, seed: int) -> None:
    sampler.set_position(trainer.epoch, trainer.batch_in_epoch)
    generator.manual_seed(seed * 100_003 + trainer.epoch)
    if hasattr(patches, "set_epoch"):
        patches.set_epoch(trainer.epoch)


def validate(trainer: Trainer, val_pairs, run: RunDir, images: bool) -> float | None:
    """Rank 0 evaluates the val split; every rank gets its PSNR (for the best-checkpoint choice)."""
    psnr = None
    if trainer.info.is_main and len(val_pairs):
        result = evaluate(trainer.eval_model(), val_pairs, trainer.device,
                          autocast=trainer.precision.autocast, panels=2 if images else 0)
        out = result["output"]
        psnr = out["rgb/psnr"]
        run.scalars({"val/psnr": psnr, "val/ssim": out["rgb/ssim"]}, trainer.step)
        for i, panel in enumerate(result["panels"]):
            run.image(f"val/rainy_derained_clean_{i}",
                      side_by_side(list(panel), labels=("rainy", "derained", "clean")), trainer.step)
        run.log(f"step {trainer.step}: val PSNR {psnr:.3f} dB SSIM {out['rgb/ssim']:.4f} "
                f"(input {result['input']['rgb/psnr']:.3f} dB, {result['count']} images)")
    return distributed.broadcast_object(trainer.info, psnr)


def checkpoint(trainer: Trainer, run: RunDir, best: bool = False) -> None:
    state = trainer.state_dict()  # collective: every rank takes part
    trainer.save(state, run.path / "latest.pth")
    if best:
        trainer.save(state, run.path / "best.pth")


def train(cfg: Config, resume_state: dict | None, resume_path: Path | None,
          info: distributed.DistInfo, device: torch.device) -> int:
    tc = cfg.train
    seed_everything(tc.seed)  # the same initial weights on every rank
    run = RunDir(Path(tc.out_dir) / tc.name, active=info.is_main,
                 purge_step=resume_state["step"] if resume_state else 0)
    run.save_config(cfg)
    patches, sampler, loader, generator, val_pairs = build_data(cfg, info, pin=device.type == "cuda")
    model = build_model(cfg.model)
    trainer = Trainer(cfg, model, device, info, run, lr=tc.lr,
                      milestones=milestone_steps(tc.iterations, tc.milestones))
    if resume_state is not None:
        trainer.load_state_dict(resume_state, str(resume_path))
        run.log(f"resumed from {resume_path} at step {trainer.step} (epoch {trainer.epoch}, "
                f"batch {trainer.batch_in_epoch})")
    elif (run.path / "latest.pth").is_file():
        run.log(f"note: {run.path} already holds a run; this fresh start overwrites its "
                f"checkpoints (use --resume auto to continue it instead)")
    run.log(f"device {device} ({trainer.precision.name}), {info.world_size} process(es); "
            f"{len(patches)} training patches/epoch, {len(val_pairs)} val images; "
            f"{tc.iterations} iterations at batch {tc.batch_size} x {info.world_size}")
    run.log(parameter_summary(model))
    criterion = HCNLoss(cfg.loss.weights).to(device)
    memory_format = torch.channels_last if device.type == "cuda" and tc.channels_last else torch.contiguous_format

    def loss_on(batch):
        rainy = batch["rainy"].to(device, non_blocking=True).contiguous(memory_format=memory_format)
        clean = batch["clean"].to(device, non_blocking=True)

        def compute(net):
            out = net(rainy, branches=True)
            # The loss runs in float32 even under autocast (SSIM variances need it).
            out = type(out)(*(t.float() if t is not None else None for t in out))
            on = cfg.loss.l1_weight if trainer.step >= cfg.loss.l1_start else 0.0
            return criterion(out, clean, l1_weight=on)
        return compute

    bar = progress(tc.iterations, trainer.step, tc.name, active=info.is_main)
    try:
        with StopRequest() as stop:
            while trainer.step < tc.iterations:
                start_epoch(trainer, patches, sampler, generator, tc.seed)
                for batch in loader:
                    result = trainer.train_step(loss_on(batch))
                    bar.update(1)
                    bar.set_postfix(loss=f"{result.loss:.4f}", lr=f"{result.lr:.2e}", refresh=False)
                    step = trainer.step
                    if step % tc.log_every == 0 or step == tc.iterations:
                        scalars = {"train/loss": result.loss, "train/lr": result.lr,
                                   "train/grad_norm": result.grad_norm}
                        scalars.update({f"train/{k}": v for k, v in result.terms.items()})
                        run.scalars(scalars, step)
                        run.log(f"step {step} " + format_metrics(
                            {"loss": result.loss, "lr": result.lr, **result.terms}))
                    improved = False
                    if step % tc.val_every == 0 or step == tc.iterations:
                        psnr = validate(trainer, val_pairs, run, images=step % tc.image_every == 0
                                        or step == tc.iterations)
                        if psnr is not None and psnr > trainer.best_metric:
                            trainer.best_metric, trainer.best_step, improved = psnr, step, True
                    if improved or step % tc.ckpt_every == 0 or step == tc.iterations:
                        checkpoint(trainer, run, best=improved)
                    if trainer.should_stop(stop.requested):
                        checkpoint(trainer, run)
                        run.log(f"stopped by {stop.signal_name or 'a signal on another rank'} at "
                                f"step {step}; checkpoint saved to {run.path / 'latest.pth'}. "
                                f"Continue with: python train.py --resume {run.path / 'latest.pth'}")
                        return stop.exit_code or 143
                    if trainer.step >= tc.iterations:
                        break
                else:
                    trainer.epoch += 1
                    trainer.batch_in_epoch = 0
    except TrainingAborted:  # the trainer has logged why
        return 1
    finally:
        bar.close()
        run.close()
    if trainer.best_step < 0:  # no val split (data.val_fraction=0): best = last
        trainer.save(trainer.state_dict(), run.path / "best.pth")
    if info.is_main:
        report_test(cfg, run.path, device)
    return 0


def report_test(cfg: Config, run_path: Path, device: torch.device) -> None:
    """Rainy input vs derained output on the embedded test split (model: best.pth)."""
    print(f"best checkpoint: {run_path / 'best.pth'}")
    if cfg.data.root is not None:
        print("evaluate it on your test sets with: python eval.py --checkpoint "
              f"{run_path / 'best.pth'} --data TEST_FOLDER")
        return

    model, _ = load_model(run_path / "best.pth", device)
    # The trained style, plus the held-out style when training used randomised rain.
    presets = [cfg.data.synthetic_preset] + (["gusty"] if cfg.data.synthetic_preset == "mixed" else [])
    for preset in presets:
        test = synthetic_from_config(cfg.data, "test", preset=preset)
        result = evaluate(model, test, device, protocols=("rgb", "y"), panels=0)
        fin, fout = result["input"], result["output"]
        print(f"\nembedded test split ({preset} rain, {result['count']} images, "
              f"{cfg.data.synthetic_size}px):")
        print(f"  {'':16s}{'PSNR rgb':>10s}{'SSIM rgb':>10s}{'PSNR y':>10s}{'SSIM y':>10s}")
        for label, m in (("rainy input", fin), ("derained output", fout)):
            print(f"  {label:16s}{m['rgb/psnr']:10.2f}{m['rgb/ssim']:10.4f}{m['y/psnr']:10.2f}{m['y/ssim']:10.4f}")
        print(f"  gain: {fout['rgb/psnr'] - fin['rgb/psnr']:+.2f} dB PSNR (rgb), "
              f"{fout['rgb/ssim'] - fin['rgb/ssim']:+.4f} SSIM")


def main(argv=None) -> int:
    args = parse_args(argv)

    try:
        cfg, state, path = resolve_config(args)
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info, device = distributed.setup(args.device)
    try:
        return train(cfg, state, path, info, device)
    finally:
        distributed.cleanup(info)


if __name__ == "__main__":
    sys.exit(main())
