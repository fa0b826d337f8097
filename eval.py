"""Evaluate checkpoints and other methods' result folders: PSNR/SSIM tables under named protocols.

    python eval.py                                  # default weights on the embedded synthetic test sets
    python eval.py --checkpoint demo=runs/demo/best.pth --checkpoint standard=weights/standard.pth
    python eval.py --checkpoint runs/hcn/best.pth --data Rain200H=data/Rain200H/test --data data/Rain12
    python eval.py --data Rain100L=data/Rain100L --results PReNet=res/prenet --results HCN=res/hcn --compare
    python eval.py --data DDN=data/DDN/test --layout ddn --protocols y-float --crop-border 0
    python eval.py --synthetic dry --dry mine=photos/clean   # does the model leave dry photos alone?
    python eval.py --synthetic-clip --steady          # the embedded rainy clip: per frame + flicker
    python eval.py --clip rain=rainy.mp4 clean.mp4     # a rainy clip against its clean clip

Rows, per data set: the rainy input, then each --checkpoint (derained here: full-size images,
batch 1 unless --batch, the HCN authors' protocol, on the GPU when there is one, in fp32 unless
--precision says otherwise; the next images are read and the last ones scored in background
threads meanwhile), then each --results folder
(another method's derained images, read from disk and paired with the ground truth by name;
no model is built or loaded when no checkpoint is given). Columns: mean PSNR/SSIM per protocol
(`rgb` is the HCN authors' table; `y` and `y-float` are the two MATLAB scripts other papers
use, docs/method.md#metric-protocols), the image count, the runtime per image and the model
size, and the brightness error (mean output minus mean ground truth: negative = darker).
Dry sets (`--synthetic dry`, `--dry DIR`) are rain-free photos scored against themselves: a
derainer should return them unchanged (no input row: it would be the photo itself). --compare adds paired bootstrap intervals of every PSNR gap (utils.metrics.bootstrap).
Results go to --out as results.md / .csv / .json / .tex (booktabs, best bold, second
underlined), plus settings.json (what was run). Errors: one line, exit status 2.
Clips are scored frame by frame (the table averages the frames) and get a flicker column:
change between consecutive frames where the scene did not move, beyond the clean clip's
(8-bit levels, utils/metrics/flicker.py); --steady adds each checkpoint steadied.
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

import dataset
from config import demo
from dataset import DatasetError
from utils import logs, threads
from utils.background import Background, prefetch
from utils.cli import (MissingCheckpoint, add_inference_args, open_model, pick_device,
                       pick_precision, resolve_checkpoint, resolve_tile, run_main, sync, trained_on)
from utils.errors import UserError
from utils.inference import derain
from utils.io.checkpoints import CheckpointError
from utils.io.files import write_text
from utils.io.images import (ImageReadError, as_saved, is_image_file, read_image, set_max_pixels,
                             to_image, to_tensor, write_image)
from utils.io.latex import latex_table
from utils.io.tables import markdown_table, write_csv
from utils.clips import FrameDerainer
from utils.io.video import VideoReadError
from utils.metrics.bootstrap import RESAMPLES, SEED, paired_bootstrap
from utils.metrics.clip_scores import STEADY_SUFFIX, clip_sets, score_clip
from utils.metrics.complexity import complexity
from utils.metrics.protocols import PROTOCOLS
from utils.metrics.result_folders import (ALIGNS, ResultsError, align, check_sizes, folder_for_set,
                                          pair_results)
from utils.metrics.scoring import mean_metrics, score_pair, scores
from utils.progress import progress
from utils.steady import DEFAULT_STRENGTH
from utils.synthetic.styles import HELD_OUT, PRESET_NAMES

DRY = "dry"  # the embedded test photos without rain
# Every rain style, the held-out ones last (they measure generalisation), then no rain at all.
SYNTHETIC_PRESETS = tuple(["light", "heavy", "shifted", "mixed"]
                          + [p for p in PRESET_NAMES if p not in ("light", "heavy", "shifted", "mixed")
                             and p not in HELD_OUT] + list(HELD_OUT) + [DRY])
INPUT_ROW = "rainy input"
BATCH_PIXELS = 4 * 1024 * 1024  # pixels per model call with --batch: 4 MP (16 images of 512x512)


class EvalError(UserError, ValueError):
    """A user error: the scripts' wrapper prints 'error: <message>' (one line) and exits with 2."""


log = logs.get("eval")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    add_inference_args(parser, default_tile=None, several_checkpoints=True)
    parser.add_argument("--results", action="append", default=[], metavar="NAME=DIR",
                        help="another method's derained images, scored against the ground truth of "
                             "--data; repeatable; with several data sets DIR holds one subfolder per set")
    parser.add_argument("--match", default=None, metavar="REGEX",
                        help="for result file names no built-in rule pairs: a regex searched in each "
                             "stem whose first group is the ground truth's name or number")
    parser.add_argument("--align", default="error", choices=ALIGNS,
                        help="result and ground truth of different sizes: error (default) or crop both "
                             "to their common top-left region (methods that crop or pad)")
    parser.add_argument("--bits", type=int, choices=(8, 16), default=None,
                        help="score each checkpoint's prediction as saved to an 8/16-bit PNG (what "
                             "show.py and --save-images write) instead of as floats")
    parser.add_argument("--compare", action="store_true",
                        help="paired bootstrap 95%% interval of the PSNR gap of every pair of rows")
    parser.add_argument("--bootstrap", type=int, default=RESAMPLES,
                        help=f"bootstrap resamples for --compare (default {RESAMPLES}, seed {SEED})")
    parser.add_argument("--data", action="append", default=[], metavar="NAME=PATH",
                        help="a paired data set (any layout of utils/io/layouts.py); repeatable; "
                             "NAME= is optional (default: the folder name)")
    parser.add_argument("--dry", action="append", default=[], metavar="NAME=DIR",
                        help="a folder of rain-free photos, each scored against itself (what the "
                             "model does to a dry photo); repeatable; NAME= is optional")
    parser.add_argument("--synthetic", default=None, metavar="PRESETS",
                        help="embedded synthetic test sets to evaluate, comma-separated from "
                             f"{','.join(SYNTHETIC_PRESETS)} ({DRY}: the test photos without "
                             "rain; default: all when no --data or --dry)")
    parser.add_argument("--synthetic-count", type=int, default=None,
                        help="images per synthetic test set (default: the first checkpoint config's "
                             "data.synthetic_test_count; the demo preset's without a checkpoint)")
    parser.add_argument("--clip", nargs=2, action="append", default=[], metavar=("[NAME=]RAINY", "CLEAN"),
                        help="a rainy clip and its clean clip (any format OpenCV reads, one size, "
                             "frame for frame); repeatable; checkpoints only, not --results")
    parser.add_argument("--synthetic-clip", action="store_true",
                        help="the embedded rainy clip, made in memory (python -m utils.synthetic.video)")
    parser.add_argument("--steady", type=float, nargs="?", const=DEFAULT_STRENGTH, default=0.0,
                        metavar="STRENGTH", help="clips: also score each checkpoint steadied "
                                                 f"(default {DEFAULT_STRENGTH} without a value)")
    parser.add_argument("--layout", default="auto", help="layout of every --data set (default: auto)")
    parser.add_argument("--side-order", default="auto",
                        help="for side-by-side pair files: clean-rainy, rainy-clean or auto (default: "
                             "the rainy half is the one rain brightens, judged on a few images)")
    parser.add_argument("--protocols", default="rgb,y,y-float",
                        help="comma-separated metric protocols (default: rgb,y,y-float)")
    parser.add_argument("--crop-border", type=int, default=0, help="pixels cropped from each side before metrics")
    parser.add_argument("--no-input-row", action="store_true", help="skip the rainy input rows")
    parser.add_argument("--macs-size", type=int, default=256, help="square input size for the GMACs column (default 256)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: runs/eval/<method names>)")
    parser.add_argument("--save-images", action="store_true",
                        help="also save each checkpoint's derained images as PNG under "
                             "images/<method>/<data set>/ (a folder --results reads back)")
    parser.add_argument("--per-image", action="store_true", help="also write per-image metrics (per_image.csv)")
    parser.add_argument("--workers", type=int, default=2,
                        help="threads reading the next images while the model runs (default 2)")
    parser.add_argument("--batch", type=int, default=1,
                        help="images of one size per model call (default 1; at most "
                             f"{BATCH_PIXELS // 10**6} megapixels per call). More can be faster on a "
                             "GPU, but moves the predictions by float rounding (~1e-7), so the "
                             "tables' last digits may differ from --batch 1")
    parser.add_argument("--sequential", action="store_true",
                        help="read, derain and score one image after the other in one thread "
                             "(same numbers; slower: for comparison and debugging)")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- methods and data sets
@dataclass
class Method:
    """One table row per data set: a checkpoint derained here, or a folder of results."""
    name: str
    kind: str  # "checkpoint" | "results"
    source: str
    model: object = None
    cfg: object = None
    size: dict | None = None  # complexity(): params, gmacs, size
    files: dict = field(default_factory=dict)  # results: data set name -> result file per image


def parse_named(text: str, flag: str = "--data") -> tuple[str | None, str]:
    """'NAME=PATH' or 'PATH' -> (name or None, path); an existing path containing '=' stays a path."""
    if "=" in text and not Path(text).exists():
        name, path = text.split("=", 1)
        if not name or not path:
            raise ValueError(f"{flag} {text!r}: expected NAME=PATH or PATH")
        return name, path
    return None, text


def parse_data_arg(text: str) -> tuple[str, str]:
    name, path = parse_named(text)
    return name or Path(text.rstrip("/\\")).name or text, path


def checkpoint_name(path: Path) -> str:
    """A checkpoint's default row name: its folder (runs/demo/best.pth -> demo); the file's stem
    for files in weights/ (weights/standard.pth -> standard) or without a folder."""
    folder = path.parent.name
    return path.stem if folder in ("", ".", "weights") else folder


def unique(name: str, taken: set) -> str:
    base, i = name, 2
    while name in taken or name == INPUT_ROW:  # two folders called "test": test, test-2
        name, i = f"{base}-{i}", i + 1
    taken.add(name)
    return name


def open_checkpoints(args, device, taken: set) -> list[Method]:
    specs = [parse_named(t, "--checkpoint") for t in args.checkpoint]
    if not specs and not args.results:
        specs = [(None, str(resolve_checkpoint(None)))]  # today's default weights
    methods, sizes = [], {}
    for name, text in specs:
        path = Path(text)
        model, cfg = open_model(path, device, use_ema=not args.no_ema,
                                position_extent=args.position_extent)
        arch = json.dumps(cfg.to_dict()["model"], sort_keys=True)  # counted once per architecture
        sizes.setdefault(arch, complexity(model, args.macs_size))
        methods.append(Method(unique(name or checkpoint_name(path), taken), "checkpoint", str(path),
                              model, cfg, sizes[arch]))
    return methods


def open_datasets(args, data_cfg) -> list[tuple[str, str, object]]:
    """[(name, source description, dataset)] in command-line order."""
    sets, names = [], set()
    for text in args.data:
        name, path = parse_data_arg(text)
        name = unique(name, names)
        pairs = dataset.open_pairs(path, layout=args.layout, side_order=args.side_order)
        pairs.verify()  # every header before the model runs: all broken files at once
        sets.append((name, str(path), pairs))
    for text in args.dry:
        name, path = parse_data_arg(text)
        photos = dataset.DryPhotos(dataset.open_rainy(path))
        if len(photos) == 0:
            raise dataset.DatasetError(f"{path}: no images found")
        sets.append((unique(f"dry-{name}", names), f"{path} (rain-free photos)", photos))

    clips = args.clip or args.synthetic_clip
    presets = (args.synthetic.split(",") if args.synthetic
               else [] if args.data or args.dry or clips else list(SYNTHETIC_PRESETS))
    for preset in presets:
        preset = preset.strip()
        if preset not in SYNTHETIC_PRESETS:
            raise ValueError(f"--synthetic: unknown preset {preset!r}; choose from {SYNTHETIC_PRESETS}")
        # Size, count and generation seed of the checkpoint's config: the set it was built for.
        # Every preset's set has the same clean images: the dry set is their clean side.
        pairs = dataset.synthetic_from_config(data_cfg, "test", preset="light" if preset == DRY else preset,
                                              count=args.synthetic_count)
        held = " (held out from training)" if preset in HELD_OUT else ""
        what = "the test photos without rain" if preset == DRY else f"preset {preset}{held}"
        sets.append((f"synthetic-{preset}", f"embedded synthetic test split, {what}, "
                                              f"{len(pairs)} images of {data_cfg.synthetic_size} px, "
                                              f"seed {data_cfg.synthetic_seed}",
                     dataset.DryPhotos(pairs) if preset == DRY else pairs))
    return sets


def truth_shapes(pairs) -> list[tuple]:
    if hasattr(pairs, "clean_images"):  # in memory
        return [c.shape for c in pairs.clean_images]
    return [(height, width, 3) for height, width in pairs.verify()]  # from the headers


def open_results(args, sets, taken: set) -> list[Method]:
    """Pair every result folder with every data set and check sizes, before any scoring."""
    methods = []
    for text in args.results:
        name, folder = parse_named(text, "--results")
        method = Method(unique(name or Path(folder.rstrip("/\\")).name, taken), "results", folder)
        for set_name, _, pairs in sets:
            where = folder_for_set(folder, set_name, len(sets))
            method.files[set_name] = pair_results(where, pairs.names, args.match)
        methods.append(method)
    for set_name, _, pairs in sets:
        shapes = truth_shapes(pairs) if methods else []
        for method in methods:
            check_sizes(method.files[set_name], shapes, args.align,
                        f"--results {method.name}, data set {set_name}")
    return methods


# ----------------------------------------------------------------------------- evaluation
def _png_name(name: str) -> str:
    name = name.replace("/", "_").replace("\\", "_")
    return (Path(name).stem if is_image_file(name) else name) + ".png"


def evaluate_set(name: str, pairs, methods: list[Method], args, device, image_dir: Path | None) -> list[dict]:
    """Per-image rows (long format: one per image and row of the table), reading each pair once.

    The model runs in this thread, batches of `--batch` images of one size at a time; the next
    images are read by `--workers` background threads and every image is scored (and saved)
    by one background thread while the next batch runs (utils.background): loading and
    metrics hide behind the network. Rows keep the images' order; the numbers equal those of
    `--sequential`, which does everything in turn in this thread.
    """
    checkpoints = [m for m in methods if m.kind == "checkpoint"]
    first = next((m.name for m in methods), None)
    metric, psnr_sum, scored = f"{args.protocol_list[0]}/psnr", 0.0, 0
    rows: list[dict] = []
    bar = progress(len(pairs), desc=name, unit="img")
    readers = 0 if args.sequential or len(pairs) < 2 else args.workers
    with Background(readers, "read") as reader, Background(0 if args.sequential else 1, "score") as scorer:
        pending: deque[Future] = deque()

        def collect(limit: int) -> None:
            nonlocal psnr_sum, scored
            while len(pending) > limit:
                image_rows = pending.popleft().result()
                rows.extend(image_rows)
                bar.update(1)
                mine = [r[metric] for r in image_rows if r["method"] == first]
                if mine:
                    psnr_sum, scored = psnr_sum + mine[0], scored + 1
                    bar.set_postfix({f"PSNR {first}": f"{psnr_sum / scored:.2f}"})

        items = enumerate(prefetch(reader, pairs.__getitem__, len(pairs), ahead=2 * readers or 1))
        for batch in equal_size_batches(items, args.batch, lambda h, w: whole_image(args.tile, h, w)):
            preds = {m.name: derain_batch(m, batch, args, device, pairs) for m in checkpoints}
            for k, (index, item) in enumerate(batch):
                outputs = {m: (pred[k:k + 1], runtime) for m, (pred, runtime) in preds.items()}
                pending.append(scorer.submit(score_image, name, index, item, outputs, methods, args,
                                             pairs, image_dir))
            collect(limit=args.batch + 1)  # bounded memory: a batch in flight, one being scored
        collect(limit=0)
    bar.close()
    return rows


def evaluate_clip(clip, checkpoints: list[Method], args, metric_keys: list[str], by_name: dict
                  ) -> tuple[list[dict], list[dict]]:
    """(summary rows with the flicker column, per-frame rows) of one clip (utils.metrics.clip_scores)."""
    derainers = {m.name: FrameDerainer(m.model, args.tile, args.overlap, args.tile_batch, args.ensemble,
                                       args.precision_used) for m in checkpoints}
    try:
        rows, flicker = score_clip(clip, derainers, args.protocol_list, args.crop_border, args.steady,
                                   None if args.no_input_row else INPUT_ROW)
    except VideoReadError as exc:
        raise EvalError(f"clip {clip.name}: {exc}") from None
    labels = list(dict.fromkeys(r["method"] for r in rows))
    summary = summarise(clip.name, rows, metric_keys, labels, by_name)
    return [dict(row, flicker=flicker[row["method"]]) for row in summary], rows


def whole_image(tile_flag, height: int, width: int) -> bool:
    """Whether --tile runs this image in one piece (only such images share a batch)."""
    tile = resolve_tile(tile_flag, height, width)
    return tile is None or (height <= tile and width <= tile)


def equal_size_batches(items, size: int, untiled):
    """Consecutive (index, item) pairs grouped into lists of up to `size` images of one size,
    BATCH_PIXELS pixels at most in all (memory); an image that `untiled(h, w)` says is tiled
    goes alone (tiling batches its tiles itself)."""
    batch: list = []
    for index, item in items:
        shape = tuple(item["rainy"].shape)
        fits = (untiled(*shape[-2:]) and len(batch) < size and shape[-1] * shape[-2] * (len(batch) + 1)
                <= BATCH_PIXELS)
        if batch and not (fits and tuple(batch[0][1]["rainy"].shape) == shape):
            yield batch
            batch = []
        batch.append((index, item))
    if batch:
        yield batch


def derain_batch(method: Method, batch: list, args, device, pairs) -> tuple[torch.Tensor, float]:
    """(predictions [B,3,H,W], seconds per image) of one checkpoint on a batch of one size."""
    rainy = torch.stack([item["rainy"] for _, item in batch])
    tile = resolve_tile(args.tile, *rainy.shape[-2:])
    sync(device)
    start = time.perf_counter()
    try:
        pred = derain(method.model, rainy, tile=tile, overlap=args.overlap, ensemble=args.ensemble,
                      tile_batch=args.tile_batch, precision=args.precision_used)
    except ValueError as exc:
        raise _cannot_score(pairs, batch[0][0], batch[0][1], exc) from None
    sync(device)
    return pred, (time.perf_counter() - start) / len(batch)


def score_image(name: str, index: int, item: dict, outputs: dict, methods: list[Method], args,
                pairs, image_dir: Path | None) -> list[dict]:
    """The rows of one image: the rainy input, then each method (a checkpoint's prediction in
    `outputs` as (tensor, seconds), or its file in a result folder); saves the prediction."""
    protocols = args.protocol_list
    try:
        clean = to_image(item["clean"])
        base = {"dataset": name, "name": item["name"]}
        rows = []
        if not args.no_input_row and not isinstance(pairs, dataset.DryPhotos):
            rows.append({**base, "method": INPUT_ROW, "height": clean.shape[0], "width": clean.shape[1],
                         "runtime_s": None,
                         **scores(to_image(item["rainy"]), clean, protocols, args.crop_border)})
        for method in methods:
            if method.kind == "checkpoint":
                pred, runtime = outputs[method.name]
                if args.bits:
                    pred = to_tensor(as_saved(to_image(pred), args.bits))
                result, metrics, _ = score_pair(pred, item, protocols, args.crop_border, with_input=False)
                if image_dir is not None:
                    write_image(image_dir / method.name / name / _png_name(item["name"]), result)
            else:
                path = method.files[name][index]
                result, truth = align(read_image(path), clean, args.align)
                metrics, runtime = scores(result, truth, protocols, args.crop_border), None
            rows.append({**base, "method": method.name, "height": result.shape[0],
                         "width": result.shape[1], "runtime_s": runtime, **metrics})
        return rows
    except (ResultsError, ImageReadError, DatasetError):
        raise
    except ValueError as exc:  # e.g. an image smaller than an SSIM window: name the file
        raise _cannot_score(pairs, index, item, exc) from None


def _cannot_score(pairs, index: int, item: dict, exc: Exception) -> DatasetError:
    entries = getattr(pairs, "entries", None)
    source = entries[index].rainy if entries is not None else item["name"]
    return DatasetError(f"{source}: cannot be scored: {exc}")


def summarise(name: str, rows: list[dict], metric_keys: list[str], labels: list[str],
              methods: dict) -> list[dict]:
    """Mean per metric and table row (the rainy input first, then each method)."""
    out = []
    for label in labels:
        mine = [r for r in rows if r["method"] == label]
        if not mine:  # the rainy input of a dry set
            continue
        times = [r["runtime_s"] for r in mine if r["runtime_s"] is not None]
        size = methods[label].size if label in methods else None
        out.append({"dataset": name, "method": label, "images": len(mine),
                    **mean_metrics(mine, metric_keys),
                    "runtime_s": sum(times) / len(times) if times else None,
                    "params": size["params"] if size else None, "gmacs": size["gmacs"] if size else None})
    return out


def compare(per_image: list[dict], set_names: list[str], labels: list[str], protocols: list[str],
            resamples: int) -> list[dict]:
    """For each data set and pair of rows (earlier A, later B): the paired PSNR gap B - A."""
    out = []
    for set_name in set_names:
        present = [label for label in labels
                   if any(r["dataset"] == set_name and r["method"] == label for r in per_image)]
        psnr = {label: {p: np.array([r[f"{p}/psnr"] for r in per_image
                                     if r["dataset"] == set_name and r["method"] == label])
                        for p in protocols} for label in present}
        for i, a in enumerate(present):
            for b in present[i + 1:]:
                row = {"dataset": set_name, "a": a, "b": b}
                for p in protocols:
                    stats = paired_bootstrap(psnr[a][p], psnr[b][p], resamples=resamples)
                    row.update({f"{p}/{k}": v for k, v in stats.items()})
                out.append(row)
    return out


# ----------------------------------------------------------------------------- reports
def metric_columns(protocols: list[str]) -> list[str]:
    return [f"{p}/{m}" for p in protocols for m in ("psnr", "ssim")]


def _signed(value: float) -> str:
    return "—" if value != value else f"{value:+.2f}"


def compare_markdown(comparisons: list[dict], protocols: list[str], resamples: int) -> str:
    rows = []
    for c in comparisons:
        row = {"dataset": c["dataset"], "a": c["a"], "b": c["b"]}
        for p in protocols:
            noise = " ≈" if c[f"{p}/within_noise"] else ""
            row[p] = (f"{_signed(c[f'{p}/mean'])} [{_signed(c[f'{p}/low'])}, {_signed(c[f'{p}/high'])}]"
                      f"{noise}")
        rows.append(row)
    excluded = sorted({c[f"{p}/excluded"] for c in comparisons for p in protocols} - {0})
    headers = {"dataset": "data set", "a": "A", "b": "B", **{p: f"ΔPSNR B − A ({p}), 95% CI" for p in protocols}}
    return ("\n## Is a gap real? (--compare)\n\n"
            + markdown_table(rows, ["dataset", "a", "b", *protocols], headers)
            + f"\nPer-image paired PSNR difference B − A (dB): mean and percentile-bootstrap 95% "
              f"interval ({resamples:,} resamples of the images, seed {SEED}). **≈ marks a gap within "
              f"noise**: the interval contains 0.\n"
            + ("Images where a PSNR is infinite (output identical to the ground truth) are left out "
               "of the differences (see results.json, `excluded`).\n" if excluded else ""))


def write_reports(out: Path, summary: list[dict], per_image: list[dict], comparisons: list[dict] | None,
                  methods: list[Method], info: dict, write_per_image: bool) -> str:
    """results.md/csv/json/tex (and per_image.csv); returns the Markdown text."""
    protocols = info["protocols"]
    metrics = metric_columns(protocols)
    sizes = [m.size for m in methods if m.size]
    macs_at = sizes[0]["size"] if sizes else None
    flicker = ["flicker"] if any("flicker" in r for r in summary) else []
    columns = (["dataset", "method", *metrics, "brightness", *flicker, "images", "runtime_s"]
               + (["params_m", "gmacs"] if sizes else []))
    headers = {"dataset": "data set", "images": "images", "runtime_s": "s / image", "params_m": "params (M)",
               "gmacs": f"GMACs at {macs_at}", "brightness": "Δ brightness", "flicker": "flicker (levels)"}
    headers.update({c: f"{c.split('/')[1].upper()} ({c.split('/')[0]})" for c in metrics})
    digits = {c: (2 if c.endswith("psnr") else 4) for c in metrics}
    digits.update(runtime_s=3, params_m=3, gmacs=2, flicker=2)
    md_rows = [dict(r, params_m=r["params"] / 1e6 if r["params"] is not None else None) for r in summary]
    lines = []
    for m in methods:
        if m.kind == "checkpoint":
            lines.append(f"- `{m.name}`: checkpoint `{m.source}`, {m.size['params']:,} parameters, "
                         f"{m.size['gmacs']:.2f} GMACs at {m.size['size']} (inference path, "
                         "torch.utils.flop_counter, MACs = FLOPs/2)"
                         + (f", scored as saved to {info['bits']}-bit PNG" if info["bits"] else "")
                         + f"; trained on {info['trained_on'][m.name]}"
                         + (f"; position code squeezed beyond {m.cfg.model.position_extent} px"
                            if m.cfg.model.position_extent else "") + "\n")
        else:
            lines.append(f"- `{m.name}`: result folder `{m.source}` (files as read; align {info['align']})\n")
    text = ("# Evaluation\n\n" + markdown_table(md_rows, columns, headers, digits)
            + (compare_markdown(comparisons, protocols, info["bootstrap"]) if comparisons is not None else "")
            + "\nRows:\n" + (f"- `{INPUT_ROW}`: the rainy images themselves (no deraining)\n"
                             if not info["no_input_row"] else "") + "".join(lines)
            + (f"- `NAME{STEADY_SUFFIX}`: that checkpoint's frames steadied (strength {info['steady']:g}, "
               "utils/steady.py)\n" if info["steady"] and flicker else "") + (CLIP_NOTE if flicker else "")
            + "\n`Δ brightness`: mean of the output minus mean of the ground truth (0 to 1 scale; "
              "negative = darker). Dry sets are rain-free photos scored against themselves: the "
              "model should return them unchanged.\n"
            + f"\nSettings: device {info['device']} ({info['threads']['count']} CPU "
              f"thread{'' if info['threads']['count'] == 1 else 's'}, {info['threads']['source']}), "
              f"precision {info['precision']}, full-size images, batch {info['batch']}, "
              f"tile {info['tile'] or 'none'}, ensemble {'flips x4' if info['ensemble'] else 'off'}, "
              f"crop border {info['crop_border']}; runtime = mean derain time per image "
              f"(excludes loading and metrics). An identical image has PSNR inf, and a mean over "
              f"a set containing one is inf.\n\nProtocols:\n"
            + "".join(f"- `{p}`: {info['protocol_notes'].get(p, '')}\n" for p in protocols))
    write_text(out / "results.md", text)
    csv_columns = ["dataset", "method", *metrics, "brightness", *flicker, "images", "runtime_s", "params", "gmacs"]
    write_csv(out / "results.csv", summary, csv_columns)
    write_text(out / "results.json", json.dumps({**info, "rows": summary, "comparisons": comparisons},
                                                indent=2) + "\n")
    set_names = [d["name"] for d in info["datasets"]]
    labels = list(dict.fromkeys(r["method"] for r in summary))
    tex = ["% Generated by eval.py; needs \\usepackage{booktabs}. Best bold, second underlined.\n"]
    for p in protocols:
        caption = (f"PSNR/SSIM, protocol \\texttt{{{p}}}"
                   + (f"; GMACs at {macs_at}" if macs_at else "") + ".")
        tex.append(latex_table(summary, set_names, labels, p, unranked=(INPUT_ROW,), caption=caption,
                               label=f"tab:results-{p}"))
    write_text(out / "results.tex", "\n".join(tex))
    if write_per_image:
        keys = [k for k in per_image[0] if "/" in k] + ["brightness"]
        write_csv(out / "per_image.csv", per_image,
                  ["dataset", "method", "name", "height", "width", "runtime_s", *keys])
    return text


CLIP_NOTE = ("\nClips: every frame is scored as an image, as written (clipped to [0, 1]); a row averages "
             "the frames (`images` counts them). `flicker`: the mean change between consecutive frames "
             "after moving the previous one along the clean clip's optical flow, minus the clean clip's "
             "own, in 8-bit levels (utils/metrics/flicker.py): 0 is as steady as the truth.\n")
PROTOCOL_NOTES = {
    "rgb": "RGB, float prediction (not rounded); PSNR on values clipped to [0,1], SSIM (Gaussian 11/1.5) "
           "on the unclipped prediction (the HCN authors' table)",
    "y": "MATLAB Restormer/MSPFN script: uint8 image, rounded uint8 Y of rgb2ycbcr, PSNR peak 255, "
         "Wang's ssim_index (Rain100H/L, Test100/1200/2800, Rain200H/L, SPA)",
    "y-float": "MATLAB RCDNet/PReNet script: float Y, PSNR peak 1, ssim.m with box-filter "
               "downsampling by max(1, round(min(H,W)/256)) (Rain1200, Rain1400, Rain12)",
}


def default_out_dir(methods: list[Method]) -> Path:
    if len(methods) == 1 and methods[0].kind == "checkpoint":
        checkpoint = Path(methods[0].source)
        label = f"{checkpoint.parent.name}_{checkpoint.stem}" if checkpoint.parent.name else checkpoint.stem
    else:
        label = re.sub(r"[^\w.-]+", "_", "-vs-".join(m.name for m in methods))[:80]
    return Path("runs") / "eval" / (label or datetime.now().strftime("%Y%m%d-%H%M%S"))


# ----------------------------------------------------------------------------- main
def run(args) -> dict:
    args.protocol_list = [p.strip() for p in args.protocols.split(",") if p.strip()]
    unknown = [p for p in args.protocol_list if p not in PROTOCOLS]
    if unknown or not args.protocol_list:
        raise EvalError(f"unknown protocol(s) {unknown}; choose from {list(PROTOCOLS)}")
    try:
        tile = resolve_tile(args.tile, 0, 0)  # a fixed size, or None for 0/none/auto
    except ValueError as exc:
        raise EvalError(str(exc)) from None
    if (tile and not 0 <= args.overlap < tile) or args.overlap < 0 or args.tile_batch < 1:
        raise EvalError("need 0 <= --overlap < --tile and --tile-batch >= 1")
    if args.bootstrap < 1:
        raise EvalError("--bootstrap must be >= 1")
    if args.batch < 1 or args.workers < 0:
        raise EvalError("need --batch >= 1 and --workers >= 0")
    if (args.clip or args.synthetic_clip) and args.results:
        raise EvalError("--results folders hold images: clips are scored for --checkpoint rows only")
    if not 0.0 <= args.steady < 1.0:
        raise EvalError(f"--steady must be in [0, 1), got {args.steady}")

    try:
        set_max_pixels(args.max_pixels)
    except ImageReadError as exc:
        raise EvalError(str(exc)) from None
    device = pick_device(args.device)
    taken: set = set()
    try:
        methods = open_checkpoints(args, device, taken)
        # Synthetic sets are made with the first checkpoint's data settings (size, count, seed).
        data_cfg = methods[0].cfg.data if methods else demo().data
        sets = open_datasets(args, data_cfg)
        methods += open_results(args, sets, taken)
        clips = clip_sets([(*parse_named(rainy, "--clip"), clean) for rainy, clean in args.clip],
                          args.synthetic_clip)
    except (MissingCheckpoint, CheckpointError, DatasetError, ResultsError, ValueError) as exc:
        raise EvalError(str(exc)) from None
    # fp32 by default: a table's numbers should not depend on the machine's bf16 support.
    args.precision_used = pick_precision(args.precision, device)
    checkpoints = [m for m in methods if m.kind == "checkpoint"]
    others = [m.name for m in checkpoints[1:] if not args.data and
              (m.cfg.data.synthetic_size, m.cfg.data.synthetic_seed) !=
              (data_cfg.synthetic_size, data_cfg.synthetic_seed)]
    if others:
        log.warning(f"the synthetic sets use {checkpoints[0].name}'s data settings "
                    f"({data_cfg.synthetic_size} px, seed {data_cfg.synthetic_seed}); "
                    f"{', '.join(others)} were trained with others")

    out = Path(args.out) if args.out else default_out_dir(methods)
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "checkpoints": {m.name: m.source for m in checkpoints},
        "results": {m.name: m.source for m in methods if m.kind == "results"},
        "device": str(device),
        "threads": threads.in_use().as_dict(), "batch": args.batch,
        "precision": args.precision_used.name, "precision_reason": args.precision_used.reason,
        "tile": "auto (512 above 1 megapixel)" if args.tile == "auto" else tile, "overlap": args.overlap,
        "tile_batch": args.tile_batch, "ensemble": args.ensemble, "crop_border": args.crop_border,
        "bits": args.bits, "align": args.align, "no_input_row": args.no_input_row,
        "bootstrap": args.bootstrap if args.compare else None,
        "protocols": args.protocol_list,
        "protocol_notes": {p: PROTOCOL_NOTES.get(p, "") for p in args.protocol_list},
        "complexity": {m.name: m.size for m in checkpoints},
        "trained_on": {m.name: trained_on(m.cfg) for m in checkpoints},
        "datasets": [{"name": n, "source": s, "images": len(d)} for n, s, d in sets]
                    + [{"name": c.name, "source": c.source, "images": c.frames} for c in clips],
        "steady": args.steady,
    }
    settings = {**info, "args": {k: v for k, v in vars(args).items()
                                 if k not in ("protocol_list", "precision_used")},
                "model_configs": {m.name: m.cfg.to_dict() for m in checkpoints},
                "torch": torch.__version__, "python": platform.python_version(),
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_text(out / "settings.json", json.dumps(settings, indent=2) + "\n")

    if device.type == "cuda" and sets:  # untimed warm-up: CUDA context, cuDNN algorithm choice
        first = sets[0][2][0]["rainy"].unsqueeze(0)
        for m in checkpoints:
            derain(m.model, first, tile=resolve_tile(args.tile, *first.shape[-2:]), overlap=args.overlap,
                   tile_batch=args.tile_batch, precision=args.precision_used)

    labels = ([] if args.no_input_row else [INPUT_ROW]) + [m.name for m in methods]
    by_name = {m.name: m for m in methods}
    summary, per_image = [], []
    metric_keys = metric_columns(args.protocol_list) + ["brightness"]
    info["wall_s"] = {}
    for name, _, pairs in sets:
        start = time.perf_counter()
        try:
            rows = evaluate_set(name, pairs, methods, args, device,
                                out / "images" if args.save_images else None)
        except (DatasetError, ImageReadError, ResultsError) as exc:
            raise EvalError(f"data set {name}: {exc}") from None
        info["wall_s"][name] = time.perf_counter() - start  # reading, deraining and scoring
        summary += summarise(name, rows, metric_keys, labels, by_name)
        per_image += rows
    for clip in clips:
        start = time.perf_counter()
        clip_summary, rows = evaluate_clip(clip, checkpoints, args, metric_keys, by_name)
        info["wall_s"][clip.name] = time.perf_counter() - start
        summary += clip_summary
        per_image += rows
    set_names = [n for n, _, _ in sets] + [c.name for c in clips]
    comparisons = (compare(per_image, set_names, list(dict.fromkeys(r["method"] for r in summary)),
                           args.protocol_list, args.bootstrap) if args.compare else None)
    text = write_reports(out, summary, per_image, comparisons, methods, info, args.per_image)
    print("\n" + text)
    print(f"Wrote {out}/results.md, results.csv, results.json, results.tex, settings.json"
          + (", per_image.csv" if args.per_image else "") + (", images/" if args.save_images else ""))
    return {**info, "rows": summary, "comparisons": comparisons, "out": str(out)}


def main(argv=None) -> int:
    args = parse_args(argv)
    logs.setup(args)
    threads.apply_threads(args.threads)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
