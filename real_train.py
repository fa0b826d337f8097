"""Online-update fine-tuning on real rainy images (docs/method.md#online-update).

    python real_train.py                                  # demo: embedded held-out "gusty" rain, (b)/(c)/(d) table
    python real_train.py --data DIR [--init CKPT]          # a folder of real rainy photos (read-only)
    python real_train.py --data clip.mp4 --every 4 --max-frames 12   # frames of a clip, then the whole clip
    python real_train.py --resume auto                     # continue runs/<online.name>/latest.pth

Round 0 pseudo-labels B^0 are the synthetic model's outputs on the real images. Round k
(k = 1..online.rounds) fine-tunes online.epochs_per_round epochs on random crops (at most
the largest image) with
    L1(pred, B^{k-1}) + lambda * rain term against a random other image's O_j - B_j^{k-1}
(online.method and online.loss choose the variant, online.replay adds synthetic pairs),
then refreshes every pseudo-label at full resolution (tiled above online.tile px): B^k,
with B^0's low frequencies when online.keep_tone is set, at online.refresh_precision
(fp32 | bf16 | auto; the update's steps follow train.precision).
The lr starts at online.lr; online.lr_steps = ((r, lr), ...) switch it when round index r
(counted from 0, as the authors' real-epoch index) starts.

Outputs in runs/<online.name>/: pseudo_labels/ (float32 .npy, current round and, with
keep_tone, round 0),
rounds/round_<k>/*.png (8-bit previews of the outputs f_k(O)) and panels/, rounds.jsonl (per-round
statistics: scores, and the outputs' brightness and tone change against round 0), rounds.png,
real_train.log, tb/, latest.pth (resumable), round_<k>.pth (weights after round k), final.json
(the before/after scores on the embedded set). With a clip as --data, the update trains on
frames sampled from it (online.clip_every, online.clip_frames), then the adapted model
derains the whole clip into <stem>.mp4 (steadied: online.clip_steady; docs/video.md). Nothing
is written before the config, the synthetic checkpoint and the images are checked. Exit
codes: utils/cli.py.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from config import Config
from dataset import SyntheticRainStream, open_rainy, synthetic_pairs
from losses import online_update_loss
from networks import build_model
from utils import logs, threads
from utils.cli import (DEMO_CHECKPOINT, MissingCheckpoint, add_run_args, open_model, pick_device,
                       resolve_checkpoint, run_main)
from utils.clips import FrameDerainer, derain_clip, sample_frames
from utils.config_parse import add_config_args, preset_of
from utils.errors import UserError
from utils.io import shipped
from utils.engine import distributed
from utils.engine.interrupt import StopRequest
from utils.engine.precision import Precision
from utils.engine.resume import resolve_config as resolve_run_config
from utils.engine.rng import seed_everything
from utils.engine.run_dir import RunDir, format_metrics
from utils.engine.sampler import ResumableSampler
from utils.engine.time_limit import TimeLimit, process_start
from utils.engine.trainer import Trainer, TrainingAborted
from utils.inference import derain
from utils.io.checkpoints import OpenedCheckpoint, load_weights, open_checkpoint
from utils.io.files import check_outside, copy_file, write_text
from utils.io.images import read_image, set_max_pixels, to_image, to_tensor, write_image
from utils.io.panels import fit_within, side_by_side
from utils.io.video import is_video_file
from utils.metrics import noref
from utils.metrics.protocols import image_metrics
from utils.metrics.tone import tone_change
from utils.online import (OnlineCrops, PseudoLabels, keep_tone, largest_side, replay_batch,
                          training_input)
from utils.online_report import comparison, report, round_stats
from utils.progress import progress
from utils.synthetic.photos import load_split

log = logs.get("real_train")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser, default_preset="standard")
    parser.add_argument("--init", default=None, metavar="CKPT",
                        help=f"synthetic checkpoint to start from (default: online.init, else {DEMO_CHECKPOINT} "
                             "if it exists, else the shipped weights/standard.pth)")
    parser.add_argument("--data", default=None, metavar="DIR",
                        help="folder (or file) of real rainy images, or a clip (.mp4, .avi, .mkv, ...); "
                             "default: the embedded demonstration (online.target rain on held-out "
                             "test photos, ground truth hidden)")
    parser.add_argument("--every", type=int, default=None, metavar="N",
                        help="a clip: train on every N-th frame (online.clip_every)")
    parser.add_argument("--max-frames", type=int, default=None, metavar="M",
                        help="a clip: at most M frames, spread over the clip (online.clip_frames)")
    add_run_args(parser, run_dir="runs/<online.name>")
    return parser.parse_args(argv)


def resolve_config(args) -> tuple[Config, dict | None, Path | None]:
    overrides = list(args.overrides)
    overrides += [f"online.init={args.init}"] if args.init else []
    overrides += [f"online.data={args.data}"] if args.data else []
    overrides += [f"online.clip_every={args.every}"] if args.every is not None else []
    overrides += [f"online.clip_frames={args.max_frames}"] if args.max_frames is not None else []
    cfg, state, path = resolve_run_config(preset_of(args), overrides, args.resume,
                                          "online.name", args.config)
    if state is not None:
        epochs = cfg.online.rounds * cfg.online.epochs_per_round
        labels = PseudoLabels(Path(cfg.train.out_dir) / cfg.online.name / "pseudo_labels")
        comparing = cfg.online.data is None and bool(cfg.online.compare)  # resume goes on to the comparison runs
        if int(state.get("epoch", 0)) >= epochs and labels.complete(cfg.online.rounds) and not comparing:
            raise UserError(f"{path}: this online update is finished ({cfg.online.rounds} rounds); "
                            f"to run more rounds: python real_train.py --resume {args.resume} "
                            f"--set online.rounds=N with N > {cfg.online.rounds}")
    return cfg, state, path


def load_images(cfg: Config):
    """(names, rainy [3,H,W] tensors, clean tensors or None). The input is only ever read."""
    oc = cfg.online
    if oc.data is None:
        pairs = synthetic_pairs("test", oc.target, oc.target_size, oc.target_count,
                                cfg.data.synthetic_seed, cfg.data.clean_photos)
        items = [pairs[i] for i in range(len(pairs))]
        # The ground truth is kept aside for the report only.
        return [str(it["name"]) for it in items], [it["rainy"] for it in items], [it["clean"] for it in items]

    if is_video_file(oc.data):  # frames of a clip are the real rainy photos
        frames = sample_frames(Path(oc.data), oc.clip_every, oc.clip_frames)
        names = [f"{Path(oc.data).stem}_frame{index:06d}" for index, _ in frames]
        items = [{"name": name, "rainy": to_tensor(frame)} for name, (_, frame) in zip(names, frames)]
    else:
        images = open_rainy(oc.data)
        items = [images[i] for i in range(len(images))]
    rainy = [it["rainy"] for it in items]
    if oc.max_side > 0:
        rainy = [to_tensor(fit_within(to_image(r), oc.max_side)) for r in rainy]
    return [str(it["name"]) for it in items], rainy, None


def in_domain_set(cfg: Config, split: str):
    """The synthetic model's own rain (data.synthetic_preset) on held-out photos of `split`:
    "test" (the same photos as the demonstration) reports forgetting, "val" (other photos) is
    the guard that stops the update (online.guard_db)."""
    oc = cfg.online
    pairs = synthetic_pairs(split, cfg.data.synthetic_preset, oc.target_size, oc.target_count,
                            cfg.data.synthetic_seed, cfg.data.clean_photos)
    return [(pairs[i]["rainy"], pairs[i]["clean"]) for i in range(len(pairs))]


def label_key(name: str) -> str:
    """A file-name-safe, unique key per image (keeps the suffix: a.jpg and a.png differ)."""
    return name.replace(os.sep, "__").replace("/", "__")


def lr_for_round(cfg: Config, r: int) -> float:
    lr = cfg.online.lr
    for start, value in sorted(cfg.online.lr_steps):
        if r >= start:
            lr = value
    return lr


# Rain transfer: the partner's rain layer is turned by up to this many degrees (either way):
# the photos' own streaks in directions the model has not learned to remove.
TRANSFER_ROTATE = 40.0


def _derain(trainer: Trainer, model, image: torch.Tensor, precision: Precision) -> torch.Tensor:
    """The model's output on one image (float32, clamped, on the CPU); `precision`:
    online.refresh_precision resolved for the device."""
    _, h, w = image.shape
    tile = trainer.cfg.online.tile
    return derain(model, image[None].to(trainer.device), tile=tile if tile and max(h, w) > tile else None,
                  precision=precision)[0].cpu().clamp(0, 1)


def _rgb(pred: torch.Tensor, clean: torch.Tensor) -> dict:
    m = image_metrics(to_image(pred), to_image(clean), protocols=("rgb",))
    return {"psnr": m["rgb/psnr"], "ssim": m["rgb/ssim"]}


def refresh_labels(trainer: Trainer, labels: PseudoLabels, k: int, keys, rainy, clean, run: RunDir,
                   stop: StopRequest, in_domain=None, guard=None, precision: Precision | None = None
                   ) -> bool:
    """Write B^k for every image not yet written (online.method says how), with the current
    model's output f_k(O) as preview and side-by-side panel (input | round 0 | round k); log the outputs'
    PSNR/SSIM with ground truth, their BRISQUE when online.nr_score, and the labels' change
    from B^{k-1}. False if stopped."""
    oc = trainer.cfg.online
    precision = precision or Precision(trainer.device, oc.refresh_precision)
    model = trainer.eval_model()
    model.eval()
    score_nr = oc.nr_score and noref.available()
    todo = [i for i, key in enumerate(keys)
            if not (labels.has(k, key) and labels.stats_path(k, key).is_file())]
    with progress(len(todo), desc=f"pseudo-labels B^{k}", leave=False) as bar:
        for i in todo:
            if stop.requested:
                return False
            out = _derain(trainer, model, rainy[i], precision)
            if k > 0 and oc.method == "direct":
                label = labels.load(k - 1, keys[i])
            elif k > 0 and oc.method == "chain":
                label = _derain(trainer, model, labels.load(k - 1, keys[i]), precision)
            else:
                label = out
            if k > 0 and oc.keep_tone:
                label = keep_tone(label, labels.load(0, keys[i]))
            item = {}
            if clean is not None:
                item.update(_rgb(out, clean[i]))
                item["label_psnr"] = _rgb(label, clean[i])["psnr"]
                if k == 0:
                    item["input_psnr"], item["input_ssim"] = _rgb(rainy[i], clean[i]).values()
            if score_nr:
                item["brisque"] = noref.brisque(to_image(out))
                if k == 0:
                    item["input_brisque"] = noref.brisque(to_image(rainy[i]))
            item["brightness"] = float(out.float().mean())
            if k == 0:
                item["input_brightness"] = float(rainy[i].float().mean())
            if k > 0:
                item["label_change_l1"] = float((label - labels.load(k - 1, keys[i])).abs().mean())
            labels.save(k, keys[i], label)
            rounds = run.path / "rounds"
            write_image(rounds / f"round_{k:03d}" / f"{keys[i]}.png", to_image(out))
            # Round 0 (the synthetic model alone) stays in view: the question a round answers
            # is whether it removed more than that.
            cells, names = [rainy[i], out], ["input", f"round {k}"]
            if k > 0:
                # Its 8-bit preview: rounding moves a mean by far less than the drift reported.
                round_0 = to_tensor(read_image(rounds / "round_000" / f"{keys[i]}.png"))
                item.update(tone_change(out, round_0))
                cells.insert(1, round_0)
                names.insert(1, "round 0")
            panel = side_by_side([fit_within(to_image(c), 480) for c in cells], names)
            write_image(rounds / f"round_{k:03d}" / "panels" / f"{keys[i]}.png", panel)
            labels.save_stats(k, keys[i], item)
            bar.update(1)
    stats = {"round": k, "step": trainer.step, "lr": trainer.lr}
    per_image = [labels.load_stats(k, key) for key in keys]
    for name in per_image[0]:
        if all(name in p for p in per_image):  # a refresh resumed across versions may lack one
            stats[name] = float(np.mean([p[name] for p in per_image]))
    for key, pairs in (("in_domain_psnr", in_domain), ("guard_psnr", guard)):
        if pairs:
            stats[key] = float(np.mean([_rgb(_derain(trainer, model, x, precision), c)["psnr"]
                                        for x, c in pairs]))
    if "psnr" in stats:
        run.scalars({"online/psnr_vs_hidden_gt": stats["psnr"], "online/ssim_vs_hidden_gt": stats["ssim"]}, k)
    if "brisque" in stats:
        run.scalars({"online/brisque": stats["brisque"]}, k)
    if run.active:
        with open(run.path / "rounds.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(stats) + "\n")
    run.log(f"round {k} outputs ({len(keys)} images) " + format_metrics(
        {key: v for key, v in stats.items() if key not in ("round",)}))
    labels.mark_complete(k)
    labels.prune(keep={k, 0} if oc.keep_tone else {k})  # keep_tone reads B^0
    return True


def guard_failed(run_path: Path, k: int, guard_db: float) -> bool:
    """Round k lost more than guard_db on the synthetic guard set compared with round 0."""
    stats = round_stats(run_path)
    if k == 0 or guard_db <= 0 or "guard_psnr" not in stats.get(k, {}):
        return False
    return stats[k]["guard_psnr"] < stats[0]["guard_psnr"] - guard_db


def online_update(cfg: Config, state: dict | None, state_path: Path | None, device: torch.device,
                  overwrite: bool = False, started: float | None = None) -> int:
    oc = cfg.online
    cfg.train.ema_decay = oc.ema_decay
    # Refuses bf16 on a device without bf16 autocast before anything is written.
    Precision(device, cfg.train.precision, training=True), Precision(device, oc.refresh_precision)
    init = None
    init_path = resolve_checkpoint(oc.init) if state is None else Path(oc.init or DEMO_CHECKPOINT)
    if state is None:
        if init_path.resolve() == shipped.SHIPPED:
            shipped.verify(init_path)
        if not init_path.is_file():
            hint = ("train it first with `python train.py` (the demo preset, a few minutes on a CPU)"
                    if oc.init is None else "pass --init with a checkpoint written by train.py")
            raise MissingCheckpoint(f"synthetic checkpoint {init_path} not found: {hint}.")
        init = open_checkpoint(init_path)
        cfg.model = init.config.model  # the architecture of the weights
    names, rainy, clean = load_images(cfg)
    in_domain = in_domain_set(cfg, "test") if oc.data is None else None
    guard = in_domain_set(cfg, "val") if oc.guard_db > 0 else None
    keys = [label_key(n) for n in names]
    if len(set(keys)) != len(keys):
        raise UserError("two input images map to the same name; rename one of them")

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
        return _online_update(cfg, state, state_path, device, run, init, init_path, keys, rainy, clean,
                              in_domain, guard, TimeLimit.from_hours(cfg.train.max_hours, started))
    finally:
        run.close()


CHECKPOINTS = ("latest.pth", "round_*.pth", "final.pth")


def _online_update(cfg: Config, state: dict | None, state_path: Path | None, device: torch.device,
                   run: RunDir, init: OpenedCheckpoint | None, init_path: Path, keys, rainy, clean,
                   in_domain, guard, limit: TimeLimit | None = None) -> int:
    oc = cfg.online
    info = distributed.DistInfo()
    model = build_model(cfg.model)
    trainer = Trainer(cfg, model, device, info, run, lr=oc.lr)
    labels = PseudoLabels(run.path / "pseudo_labels")
    if state is not None:
        trainer.load_state_dict(state, str(state_path))
        run.log(f"resumed from {state_path} at step {trainer.step} (epoch {trainer.epoch})")
    else:
        load_weights(trainer.model, init.weights, str(init_path))
        if trainer.ema is not None:
            trainer.ema.load_state_dict(trainer.model.state_dict())
        try:  # Adam continues from the synthetic state, as in the released code
            trainer.load_optimizer_state(init.state["optimizer"])
            run.log(f"Adam state continued from {init_path}")
        except (KeyError, ValueError, TypeError):
            run.log(f"{init_path} has no usable optimizer state: Adam starts fresh")
        if labels.root.exists():
            shutil.rmtree(labels.root)
        for stale in ("rounds.jsonl", "accepted.json", "final.json", "final.pth"):  # from an earlier run here
            (run.path / stale).unlink(missing_ok=True)
        run.log(f"init {init_path}; method {oc.method}; {len(rainy)} images from "
                f"{oc.data or f'the embedded {oc.target} rain on held-out test photos (ground truth hidden)'}")
    run.log(f"device {device}, {threads.in_use()}")
    refresh = Precision(device, oc.refresh_precision)
    run.log(f"training {trainer.precision.describe()}; pseudo-label refresh "
            f"{refresh.describe()} (online.refresh_precision)")
    loss_text = (f" (L1 to the pseudo-labels + {cfg.loss.online_lambda:.2e} x rain term)" if oc.loss == "paper"
                 else " (L1 to the pseudo-labels)")
    replay_text = f"; replay {oc.replay}" + (f" ({oc.replay_clean:g} of it clean -> clean)" if oc.replay else "")
    tone_text = "; labels keep B^0's tone" if oc.keep_tone else ""
    run.log(f"method {oc.method}; loss {oc.loss}{loss_text}{replay_text}{tone_text} (docs/method.md#online-update)")
    largest = largest_side(rainy)
    label_view = min(oc.tile or largest, largest)  # what the model saw when it made a label
    if min(oc.patch_size, largest) < label_view:
        run.log(f"online.patch_size {oc.patch_size} is smaller than the labels' field of view "
                f"({label_view} px: online.tile or the whole image): training on smaller crops than "
                "that shifts the tone of the outputs (docs/online_update.md#real-photos); "
                f"set online.patch_size={label_view}", logging.WARNING)
    epochs = oc.rounds * oc.epochs_per_round
    # Fewer photos than a batch (one photo: test-time adaptation): more crops per photo.
    crops_per_epoch = max(len(rainy), oc.batch_size)
    steps_per_epoch = crops_per_epoch // oc.batch_size
    memory_format = torch.channels_last if device.type == "cuda" and cfg.train.channels_last else torch.contiguous_format
    lam = cfg.loss.online_lambda
    generator = torch.Generator()
    replay = None
    if oc.replay > 0:  # fresh synthetic pairs of the synthetic model's own rain; sample = f(step)
        replay = SyntheticRainStream([photo for _, photo in load_split("train", cfg.data.clean_photos)],
                                     cfg.data.patch_size, 1 << 30, cfg.data.synthetic_preset, seed=cfg.train.seed)
    crops, crops_round = None, -1
    bar = progress(epochs * steps_per_epoch, min(trainer.step, epochs * steps_per_epoch), oc.name)
    try:
        with StopRequest(limit) as stop:
            while True:
                r = trainer.epoch // oc.epochs_per_round  # the round trains on B^r
                if not labels.complete(r):
                    if not refresh_labels(trainer, labels, r, keys, rainy, clean, run, stop, in_domain, guard,
                                          refresh):
                        with stop.writing(final=True):
                            trainer.save(trainer.state_dict(), run.path / "latest.pth")
                        run.log(f"stopped by {stop.reason} while writing B^{r}; resume with "
                                f"python real_train.py --resume {run.path / 'latest.pth'}")
                        return stop.exit_code
                    trainer.save({"config": cfg.to_dict(), "model": trainer.model.state_dict(),
                                  "ema": trainer.ema.state_dict() if trainer.ema else None,
                                  "step": trainer.step}, run.path / f"round_{r:03d}.pth")
                if guard_failed(run.path, r, oc.guard_db):
                    accepted = r - 1
                    run.log(f"round {r} lost more than {oc.guard_db} dB on the synthetic guard set "
                            f"({cfg.data.synthetic_preset} rain, val photos): stopping; the result is round {accepted}")
                    break
                accepted = r
                if trainer.epoch >= epochs:
                    break
                if crops_round != r:
                    crops = OnlineCrops(rainy, [labels.load(r, key) for key in keys], oc.patch_size,
                                        seed=cfg.train.seed, length=crops_per_epoch,
                                        rotate=TRANSFER_ROTATE if oc.method == "transfer" else 0.0)
                    sampler = ResumableSampler(crops, 1, 0, oc.batch_size, cfg.train.seed)
                    loader = DataLoader(crops, batch_size=oc.batch_size, sampler=sampler,
                                        num_workers=0, drop_last=True, generator=generator)
                    crops_round = r
                    run.log(f"round {r + 1}/{oc.rounds}: fine-tuning on B^{r}, lr {lr_for_round(cfg, r):.2e}")
                trainer.set_lr(lr_for_round(cfg, r))
                crops.set_epoch(trainer.epoch)
                sampler.set_position(trainer.epoch, trainer.batch_in_epoch)
                for batch in loader:
                    pseudo = batch["pseudo"].to(device)
                    partner = batch["partner_rain"].to(device)
                    x = training_input(oc.method, batch).to(device).contiguous(memory_format=memory_format)
                    extra = None
                    if replay is not None:  # item index = f(step): resumes exactly
                        replayed, extra = replay_batch(replay, trainer.step * oc.batch_size, oc.batch_size,
                                                       oc.replay_clean)
                        replayed = replayed.to(device).contiguous(memory_format=memory_format)
                        extra = extra.to(device)

                    def compute(net):
                        pred = net(x, branches=False).bottom.float()
                        if oc.loss == "paper":
                            total, terms = online_update_loss(pred, pseudo, x.float(), partner, lam)
                        else:
                            total = (pred - pseudo).abs().mean()
                            terms = {"l1": total.detach()}
                        if extra is not None:
                            # Its own forward: the synthetic patches (data.patch_size) need not
                            # match the crops' size.
                            replay_l1 = (net(replayed, branches=False).bottom.float() - extra).abs().mean()
                            total = total + oc.replay * replay_l1
                            terms["replay_l1"] = replay_l1.detach()
                        return total, terms

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
                        with stop.writing():
                            trainer.save(trainer.state_dict(), run.path / "latest.pth")
                    if stop.step_done():
                        with stop.writing(final=True):
                            trainer.save(trainer.state_dict(), run.path / "latest.pth")
                        run.log(f"stopped by {stop.reason} at step {trainer.step}; resume with "
                                f"python real_train.py --resume {run.path / 'latest.pth'}")
                        return stop.exit_code
                trainer.epoch += 1
                trainer.batch_in_epoch = 0
                # Saved before the refresh, so an interrupted refresh resumes from these weights.
                with stop.writing():
                    trainer.save(trainer.state_dict(), run.path / "latest.pth")
        bar.close()
        trainer.save(trainer.state_dict(), run.path / "latest.pth")
        if info.is_main:
            copy_file(run.path / f"round_{accepted:03d}.pth", run.path / "final.pth")
            write_text(run.path / "accepted.json", json.dumps(
                {"accepted_round": accepted, "stopped_by_guard": accepted < oc.rounds}) + "\n")
        report(cfg, run)
        return 0
    except TrainingAborted:  # the trainer has logged why
        return 1
    finally:
        bar.close()
        run.close()


def derain_whole_clip(cfg: Config, device: torch.device) -> int:
    """The adapted model (final.pth) on every frame of the clip it adapted to: <run>/<stem>.mp4."""
    oc, source = cfg.online, Path(cfg.online.data)
    model, _ = open_model(Path(cfg.train.out_dir) / oc.name / "final.pth", device)
    derainer = FrameDerainer(model, oc.tile or None, precision=Precision(device, oc.refresh_precision))
    result = derain_clip(source, Path(cfg.train.out_dir) / oc.name / f"{source.stem}.mp4", derainer,
                         steady=oc.clip_steady)
    return 0 if result.report("derained with the adapted model") else 1


def main(argv=None) -> int:
    started = process_start()  # train.max_hours counts from here
    args = parse_args(argv)
    logs.setup(args)
    threads.apply_threads(args.threads)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("real_train.py runs as a single process (its data set is a handful of real "
                        "images); launch it with python, not torchrun")
    set_max_pixels(args.max_pixels)
    cfg, state, path = resolve_config(args)
    device = pick_device(args.device)
    code = online_update(cfg, state, path, device, overwrite=args.overwrite, started=started)
    if not code and cfg.online.data is not None and is_video_file(cfg.online.data):
        return derain_whole_clip(cfg, device)
    if code or cfg.online.data is not None or not cfg.online.compare:
        return code
    out = Path(cfg.train.out_dir)
    runs = {cfg.online.method: out / cfg.online.name}
    for method in cfg.online.compare:  # (c) and other rows: the same run, other labels
        sub = copy.deepcopy(cfg)
        sub.online.method, sub.online.compare = method, ()
        sub.online.name = f"{cfg.online.name}/compare_{method}"
        sub_state, sub_path = None, out / sub.online.name / "latest.pth"
        if args.resume and sub_path.is_file():
            sub_state, sub, _ = open_checkpoint(sub_path, use_ema=False)
        print(f"\ncomparison run: online.method={method} in {out / sub.online.name}")
        code = online_update(sub, sub_state, sub_path if sub_state else None, device,
                             overwrite=args.overwrite or bool(args.resume), started=started)
        if code:
            return code
        runs[method] = out / sub.online.name
    comparison(cfg, runs)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
