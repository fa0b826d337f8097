"""Online-update fine-tuning on real rainy images (docs/method.md#online-update).

    python real_train.py                                  # demo: embedded "shifted" rain, PSNR before/after
    python real_train.py --data DIR [--init CKPT]          # a folder of real rainy photos (read-only)
    python real_train.py --resume auto                     # continue runs/<online.name>/latest.pth

Round 0 pseudo-labels B^0 are the synthetic model's outputs on the real images. Round k
(k = 1..online.rounds) fine-tunes online.epochs_per_round epochs on random crops with
    L1(pred, B^{k-1}) + lambda * rain term against a random other image's O_j - B_j^{k-1},
then refreshes every pseudo-label at full resolution (tiled above online.tile px): B^k,
with the x8 self-ensemble of the current model when online.ensemble_labels is set.
The lr starts at online.lr; online.lr_steps = ((r, lr), ...) switch it when round index r
(counted from 0, as the authors' real-epoch index) starts.

Outputs in runs/<online.name>/: pseudo_labels/ (float32 .npy, current round only),
rounds/round_<k>/*.png (8-bit previews of B^k), rounds.jsonl (per-round statistics),
real_train.log, tb/, latest.pth (resumable), round_<k>.pth (weights after round k), final.json
(the before/after scores on the embedded set). Nothing is written before the config, the
synthetic checkpoint and the images are checked. Exit codes: utils/cli.py.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from config import Config, add_config_args, preset_of
from dataset import open_rainy, synthetic_from_config
from losses import online_update_loss
from networks import build_model
from utils import logs
from utils.cli import DEMO_CHECKPOINT, MissingCheckpoint, add_run_args, pick_device, resolve_checkpoint, run_main
from utils.errors import UserError
from utils.io import shipped
from utils.engine import distributed
from utils.engine.interrupt import StopRequest
from utils.engine.resume import resolve_config as resolve_run_config
from utils.engine.rng import seed_everything
from utils.engine.run_dir import RunDir, format_metrics, progress
from utils.engine.sampler import ResumableSampler
from utils.engine.trainer import Trainer, TrainingAborted
from utils.inference import derain
from utils.io.checkpoints import CheckpointError, check_fits, load_checkpoint, load_weights, published_weights
from utils.io.files import check_outside
from utils.io.images import set_max_pixels, to_image, write_image
from utils.metrics.protocols import image_metrics
from utils.metrics.scoring import mean_metrics
from utils.online import OnlineCrops, PseudoLabels

log = logs.get("real_train")

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser, default_preset="demo")
    parser.add_argument("--init", default=None, metavar="CKPT",
                        help=f"synthetic checkpoint to start from (default: online.init, else {DEMO_CHECKPOINT} "
                             "if it exists, else the shipped weights/standard.pth)")
    parser.add_argument("--data", default=None, metavar="DIR",
                        help="folder (or file) of real rainy images; default: the embedded shifted-rain set")
    add_run_args(parser, run_dir="runs/<online.name>")
    return parser.parse_args(argv)


def resolve_config(args) -> tuple[Config, dict | None, Path | None]:
    overrides = list(args.overrides)
    overrides += [f"online.init={args.init}"] if args.init else []
    overrides += [f"online.data={args.data}"] if args.data else []
    cfg, state, path = resolve_run_config(preset_of(args), overrides, args.resume,
                                          "online.name", args.config)
    if state is not None:
        epochs = cfg.online.rounds * cfg.online.epochs_per_round
        labels = PseudoLabels(Path(cfg.train.out_dir) / cfg.online.name / "pseudo_labels")
        if int(state.get("epoch", 0)) >= epochs and labels.complete(cfg.online.rounds):
            raise UserError(f"{path}: this online update is finished ({cfg.online.rounds} rounds); "
                            f"to run more rounds: python real_train.py --resume {args.resume} "
                            f"--set online.rounds=N with N > {cfg.online.rounds}")
    return cfg, state, path


def load_images(cfg: Config):
    """(names, rainy [3,H,W] tensors, clean tensors or None). The input is only ever read."""
    if cfg.online.data is None:
        pairs = synthetic_from_config(cfg.data, "test", preset="shifted")
        items = [pairs[i] for i in range(len(pairs))]
        # The ground truth is kept aside for the before/after report only.
        return [str(it["name"]) for it in items], [it["rainy"] for it in items], [it["clean"] for it in items]

    images = open_rainy(cfg.online.data)
    items = [images[i] for i in range(len(images))]
    return [str(it["name"]) for it in items], [it["rainy"] for it in items], None


def label_key(name: str) -> str:
    """A file-name-safe, unique key per image (keeps the suffix: a.jpg and a.png differ)."""
    return name.replace(os.sep, "__").replace("/", "__")


def lr_for_round(cfg: Config, r: int) -> float:
    lr = cfg.online.lr
    for start, value in sorted(cfg.online.lr_steps):
        if r >= start:
            lr = value
    return lr


def refresh_labels(trainer: Trainer, labels: PseudoLabels, k: int, keys, rainy, clean, run: RunDir,
                   stop: StopRequest) -> bool:
    """Write B^k (current model, full resolution, tiled when large) for every image not yet
    written; log its change from B^{k-1} and, with ground truth, its PSNR/SSIM. False if stopped."""
    model = trainer.eval_model()
    model.eval()
    tile = trainer.cfg.online.tile
    todo = [i for i, key in enumerate(keys) if not labels.has(k, key)]
    with progress(len(todo), desc=f"pseudo-labels B^{k}", leave=False) as bar:
        for i in todo:
            if stop.requested:
                return False
            _, h, w = rainy[i].shape
            with trainer.precision.autocast():
                pred = derain(model, rainy[i][None].to(trainer.device),
                              tile=tile if tile and max(h, w) > tile else None,
                              ensemble=trainer.cfg.online.ensemble_labels)[0].cpu()
            labels.save(k, keys[i], pred)
            write_image(run.path / "rounds" / f"round_{k:03d}" / f"{keys[i]}.png",
                        to_image(pred.clamp(0, 1)))
            bar.update(1)
    stats = {"round": k, "step": trainer.step, "lr": trainer.lr}
    if k > 0 and labels.complete(k - 1):
        stats["label_change_l1"] = float(np.mean(
            [(labels.load(k, key) - labels.load(k - 1, key)).abs().mean().item() for key in keys]))
    if clean is not None:
        mean = mean_metrics(image_metrics(to_image(labels.load(k, key)), to_image(c), protocols=("rgb",))
                            for key, c in zip(keys, clean))
        stats["psnr"], stats["ssim"] = mean["rgb/psnr"], mean["rgb/ssim"]
        run.scalars({"online/psnr_vs_hidden_gt": stats["psnr"], "online/ssim_vs_hidden_gt": stats["ssim"]}, k)
    if run.active:
        with open(run.path / "rounds.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(stats) + "\n")
    run.log(f"pseudo-labels B^{k} written ({len(keys)} images) " + format_metrics(
        {key: v for key, v in stats.items() if key not in ("round",)}))
    labels.mark_complete(k)
    labels.prune(keep={k})
    return True


def round_stats(run_path: Path) -> dict[int, dict]:
    path = run_path / "rounds.jsonl"
    out = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                out[entry["round"]] = entry  # the last entry of a round wins
    return out


def online_update(cfg: Config, state: dict | None, state_path: Path | None, device: torch.device,
                  overwrite: bool = False) -> int:
    oc = cfg.online
    init = None
    init_path = resolve_checkpoint(oc.init) if state is None else Path(oc.init or DEMO_CHECKPOINT)
    if state is None:
        if init_path.resolve() == shipped.SHIPPED:
            shipped.verify(init_path)
        if not init_path.is_file():
            hint = ("train it first with `python train.py` (the demo preset, a few minutes on a CPU)"
                    if oc.init is None else "pass --init with a checkpoint written by train.py")
            raise MissingCheckpoint(f"synthetic checkpoint {init_path} not found: {hint}.")
        init = load_checkpoint(init_path)
        try:
            cfg.model = Config.from_dict(init["config"]).model  # the architecture of the weights
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{init_path}: its config is not valid for this code: {exc}") from None
        check_fits(cfg.model, published_weights(init), str(init_path))
    names, rainy, clean = load_images(cfg)
    keys = [label_key(n) for n in names]
    if len(set(keys)) != len(keys):
        raise UserError("two input images map to the same name; rename one of them")
    if len(rainy) < oc.batch_size:
        raise UserError(f"{len(rainy)} images but online.batch_size={oc.batch_size}")

    run_path = Path(cfg.train.out_dir) / oc.name
    if oc.data is not None:  # the input is only read: never write into (or around) it
        data = Path(oc.data)
        check_outside(run_path, data if data.is_dir() else data.parent,
                      what="the run folder (train.out_dir/online.name)", both_ways=True)
    seed_everything(cfg.train.seed)
    run = RunDir(run_path, log_name="real_train.log", purge_step=state["step"] if state else 0,
                 lock=True)
    try:
        run.claim(fresh=state is None, overwrite=overwrite, checkpoints=CHECKPOINTS)
        run.save_config(cfg)
        return _online_update(cfg, state, state_path, device, run, init, init_path, keys, rainy, clean)
    finally:
        run.close()


CHECKPOINTS = ("latest.pth", "round_*.pth")


def _online_update(cfg: Config, state: dict | None, state_path: Path | None, device: torch.device,
                   run: RunDir, init: dict | None, init_path: Path, keys, rainy, clean) -> int:
    oc = cfg.online
    info = distributed.DistInfo()
    model = build_model(cfg.model)
    trainer = Trainer(cfg, model, device, info, run, lr=oc.lr)
    labels = PseudoLabels(run.path / "pseudo_labels")
    if state is not None:
        trainer.load_state_dict(state, str(state_path))
        run.log(f"resumed from {state_path} at step {trainer.step} (epoch {trainer.epoch})")
    else:
        load_weights(trainer.model, published_weights(init), str(init_path))
        if trainer.ema is not None:
            trainer.ema.load_state_dict(trainer.model.state_dict())
        try:  # Adam continues from the synthetic state, as in the released code
            trainer.load_optimizer_state(init["optimizer"])
            run.log(f"Adam state continued from {init_path}")
        except (KeyError, ValueError, TypeError):
            run.log(f"{init_path} has no usable optimizer state: Adam starts fresh")
        if labels.root.exists():
            shutil.rmtree(labels.root)
            (run.path / "rounds.jsonl").unlink(missing_ok=True)
        run.log(f"init {init_path}; {len(rainy)} images from "
                f"{oc.data or 'the embedded shifted-rain set (ground truth hidden)'}")
    run.log(f"loss = L1 to the previous pseudo-labels + {cfg.loss.online_lambda:.2e} x rain term "
            "(docs/method.md#online-update)")
    epochs = oc.rounds * oc.epochs_per_round
    steps_per_epoch = len(rainy) // oc.batch_size
    memory_format = torch.channels_last if device.type == "cuda" and cfg.train.channels_last else torch.contiguous_format
    lam = cfg.loss.online_lambda
    generator = torch.Generator()
    crops, crops_round = None, -1
    bar = progress(epochs * steps_per_epoch, min(trainer.step, epochs * steps_per_epoch), oc.name)
    try:
        with StopRequest() as stop:
            while True:
                r = trainer.epoch // oc.epochs_per_round  # the round trains on B^r
                if not labels.complete(r):
                    if not refresh_labels(trainer, labels, r, keys, rainy, clean, run, stop):
                        run.log(f"stopped by {stop.signal_name} while writing B^{r}; resume with "
                                f"python real_train.py --resume {run.path / 'latest.pth'}")
                        trainer.save(trainer.state_dict(), run.path / "latest.pth")
                        return stop.exit_code
                    if r > 0:
                        trainer.save({"config": cfg.to_dict(), "model": trainer.model.state_dict(),
                                      "ema": trainer.ema.state_dict() if trainer.ema else None,
                                      "step": trainer.step}, run.path / f"round_{r:03d}.pth")
                if trainer.epoch >= epochs:
                    break
                if crops_round != r:
                    crops = OnlineCrops(rainy, [labels.load(r, key) for key in keys], oc.patch_size,
                                        seed=cfg.train.seed)
                    sampler = ResumableSampler(crops, 1, 0, oc.batch_size, cfg.train.seed)
                    loader = DataLoader(crops, batch_size=oc.batch_size, sampler=sampler,
                                        num_workers=0, drop_last=True, generator=generator)
                    crops_round = r
                    run.log(f"round {r + 1}/{oc.rounds}: fine-tuning on B^{r}, lr {lr_for_round(cfg, r):.2e}")
                trainer.set_lr(lr_for_round(cfg, r))
                crops.set_epoch(trainer.epoch)
                sampler.set_position(trainer.epoch, trainer.batch_in_epoch)
                for batch in loader:
                    x = batch["rainy"].to(device).contiguous(memory_format=memory_format)
                    pseudo = batch["pseudo"].to(device)
                    partner = batch["partner_rain"].to(device)

                    def compute(net):
                        pred = net(x, branches=False).bottom.float()
                        return online_update_loss(pred, pseudo, x.float(), partner, lam)

                    result = trainer.train_step(compute)
                    bar.update(1)
                    if trainer.step % cfg.train.log_every == 0:  # reading the loss waits for the device
                        bar.set_postfix(loss=f"{result.loss:.4f}", lr=f"{result.lr:.1e}", round=r + 1,
                                        refresh=False)
                        run.scalars({"online/loss": result.loss, "online/lr": result.lr,
                                     **{f"online/{k}": v for k, v in result.terms.items()}}, trainer.step)
                        run.log(f"round {r + 1} step {trainer.step} " + format_metrics(
                            {"loss": result.loss, "lr": result.lr, **result.terms}))
                    if trainer.step % cfg.train.ckpt_every == 0:
                        trainer.save(trainer.state_dict(), run.path / "latest.pth")
                    if stop.requested:
                        trainer.save(trainer.state_dict(), run.path / "latest.pth")
                        run.log(f"stopped by {stop.signal_name} at step {trainer.step}; resume with "
                                f"python real_train.py --resume {run.path / 'latest.pth'}")
                        return stop.exit_code
                trainer.epoch += 1
                trainer.batch_in_epoch = 0
                # Saved before the refresh, so an interrupted refresh resumes from these weights.
                trainer.save(trainer.state_dict(), run.path / "latest.pth")
        bar.close()
        trainer.save(trainer.state_dict(), run.path / "latest.pth")
        report(cfg, run)
        return 0
    except TrainingAborted:  # the trainer has logged why
        return 1
    finally:
        bar.close()
        run.close()


def report(cfg: Config, run: RunDir) -> dict:
    """The before/after scores: printed on stdout, logged, and written to final.json."""
    stats = round_stats(run.path)
    last = max(stats) if stats else 0
    final = {"rounds": cfg.online.rounds, "final_weights": str(run.path / "latest.pth"),
             "previews": str(run.path / "rounds")}
    lines = [f"\nonline update finished: {cfg.online.rounds} rounds; final weights {run.path / 'latest.pth'}, "
             f"pseudo-label previews in {run.path / 'rounds'}"]
    if 0 in stats and "psnr" in stats[0]:
        before, after = stats[0], stats[last]
        final["hidden_ground_truth"] = {
            "set": "embedded shifted rain", "protocol": "rgb",
            "before": {"round": 0, "psnr": before["psnr"], "ssim": before["ssim"]},
            "after": {"round": last, "psnr": after["psnr"], "ssim": after["ssim"]},
            "change_psnr": after["psnr"] - before["psnr"]}
        lines.append("PSNR/SSIM on the hidden ground truth of the shifted-rain set (rgb protocol):")
        if cfg.online.ensemble_labels:
            lines.append("  (pseudo-labels are x8 self-ensemble outputs, B^0 included)")
        lines += [f"  before online update (synthetic model, B^0): {before['psnr']:.2f} dB / {before['ssim']:.4f}",
                  f"  after {last} rounds (B^{last}):                 {after['psnr']:.2f} dB / {after['ssim']:.4f}",
                  f"  change: {after['psnr'] - before['psnr']:+.2f} dB"]
    text = "\n".join(lines)
    print(text, flush=True)  # the results: stdout; the log file gets them too, and final.json
    logs.to_files(logging.INFO, "final results (also in final.json):" + text)
    run.write_final(final)
    return final


def main(argv=None) -> int:
    args = parse_args(argv)
    logs.setup(args)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("real_train.py runs as a single process (its data set is a handful of real "
                        "images); launch it with python, not torchrun")
    set_max_pixels(args.max_pixels)
    cfg, state, path = resolve_config(args)
    return online_update(cfg, state, path, pick_device(args.device), overwrite=args.overwrite)


if __name__ == "__main__":
    sys.exit(run_main(main))
