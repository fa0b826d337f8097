"""Evaluate a checkpoint: PSNR/SSIM tables like the paper's, under named protocols.

    python eval.py                                  # demo checkpoint on the embedded synthetic test sets
    python eval.py --checkpoint runs/hcn/best.pth --data Rain200H=data/Rain200H/test --data data/Rain12
    python eval.py --data DDN=data/DDN/test --layout ddn --protocols y-float --crop-border 0

Every data set is evaluated on full-size images, batch 1 (the HCN authors' protocol),
on the GPU when there is one. Each row reports mean PSNR/SSIM per protocol (`rgb` is the
HCN authors' table; `y` and `y-float` are the two MATLAB scripts other papers use,
docs/method.md#metric-protocols), the image count and the mean runtime per image; a
"no deraining" row gives the rainy input's own scores. Results go to --out as
results.md / results.csv / results.json, plus settings.json (what was run).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from tqdm import tqdm

import dataset
from dataset import DatasetError
from utils import logs
from utils.cli import (UsageError, add_inference_args, open_model, pick_device, resolve_checkpoint,
                       resolve_tile, run_main, sync, trained_on)
from utils.inference import derain
from utils.io.files import write_text
from utils.io.images import ImageReadError, is_image_file, write_image
from utils.io.tables import markdown_table, write_csv
from utils.metrics.complexity import complexity
from utils.metrics.protocols import PROTOCOLS
from utils.metrics.scoring import mean_metrics, score_pair

SYNTHETIC_PRESETS = ("light", "heavy", "shifted")
INPUT_ROW = "no deraining"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    add_inference_args(parser, default_tile=None)
    parser.add_argument("--data", action="append", default=[], metavar="NAME=PATH",
                        help="a paired data set (any layout dataset.py reads); repeatable; "
                             "NAME= is optional (default: the folder name)")
    parser.add_argument("--synthetic", default=None, metavar="PRESETS",
                        help="embedded synthetic test sets to evaluate, comma-separated from "
                             f"{','.join(SYNTHETIC_PRESETS)} (default: all three when no --data)")
    parser.add_argument("--synthetic-count", type=int, default=None,
                        help="images per synthetic test set (default: the checkpoint config's "
                             "data.synthetic_test_count)")
    parser.add_argument("--layout", default="auto", help="layout of every --data set (default: auto)")
    parser.add_argument("--side-order", default="clean-rainy",
                        help="for side-by-side pair files: clean-rainy or rainy-clean")
    parser.add_argument("--protocols", default="rgb,y,y-float",
                        help="comma-separated metric protocols (default: rgb,y,y-float)")
    parser.add_argument("--crop-border", type=int, default=0, help="pixels cropped from each side before metrics")
    parser.add_argument("--no-input-row", action="store_true", help="skip the 'no deraining' rows")
    parser.add_argument("--macs-size", type=int, default=256, help="square input size for the GMACs column (default 256)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: runs/eval/<checkpoint folder>_<checkpoint stem>)")
    parser.add_argument("--save-images", action="store_true", help="also save the derained images as PNG")
    parser.add_argument("--per-image", action="store_true", help="also write per-image metrics (per_image.csv)")
    parser.add_argument("--workers", type=int, default=2, help="data loading workers (default 2)")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- data sets
def parse_data_arg(text: str) -> tuple[str, str]:
    """'NAME=PATH' or 'PATH' -> (name, path); an existing path containing '=' stays a path."""
    if "=" in text and not Path(text).exists():
        name, path = text.split("=", 1)
        if not name or not path:
            raise UsageError(f"--data {text!r}: expected NAME=PATH or PATH")
        return name, path
    return Path(text.rstrip("/\\")).name or text, text


def open_datasets(args, cfg) -> list[tuple[str, str, object]]:
    """[(name, source description, dataset)] in command-line order."""
    sets, names = [], set()
    for text in args.data:
        name, path = parse_data_arg(text)
        base, i = name, 2
        while name in names:  # two folders called "test": test, test-2
            name, i = f"{base}-{i}", i + 1
        names.add(name)
        pairs = dataset.open_pairs(path, layout=args.layout, side_order=args.side_order)
        if len(pairs) == 0:
            raise dataset.DatasetError(f"{path}: no image pairs found (layout {args.layout})")
        sets.append((name, str(path), pairs))

    presets = args.synthetic.split(",") if args.synthetic else ([] if args.data else list(SYNTHETIC_PRESETS))
    for preset in presets:
        preset = preset.strip()
        if preset not in SYNTHETIC_PRESETS:
            raise UsageError(f"--synthetic: unknown preset {preset!r}; choose from {SYNTHETIC_PRESETS}")
        # Size, count and generation seed of the checkpoint's config: the set it was built for.
        pairs = dataset.synthetic_from_config(cfg.data, "test", preset=preset, count=args.synthetic_count)
        sets.append((f"synthetic-{preset}", f"embedded synthetic test split, preset {preset}, "
                                              f"{len(pairs)} images of {cfg.data.synthetic_size} px, "
                                              f"seed {cfg.data.synthetic_seed}", pairs))
    return sets


# ----------------------------------------------------------------------------- evaluation
def _png_name(name: str) -> str:
    name = name.replace("/", "_").replace("\\", "_")
    return (Path(name).stem if is_image_file(name) else name) + ".png"


def evaluate_set(model, name: str, pairs, args, device, image_dir: Path | None):
    """Derain every pair of one set; returns per-image rows (metrics of output and of input)."""
    loader = torch.utils.data.DataLoader(pairs, batch_size=None, shuffle=False,
                                         num_workers=args.workers if len(pairs) > 1 else 0)
    rows = []
    bar = tqdm(loader, total=len(pairs), desc=name, unit="img", dynamic_ncols=True,
               disable=not logs.bars_enabled())
    for item in bar:
        rainy = item["rainy"].unsqueeze(0)
        tile = resolve_tile(args.tile, *rainy.shape[-2:])
        sync(device)
        start = time.perf_counter()
        pred = derain(model, rainy, tile=tile, overlap=args.overlap, ensemble=args.ensemble,
                      tile_batch=args.tile_batch)
        sync(device)
        runtime = time.perf_counter() - start
        pred_img, out, inp = score_pair(pred, item, args.protocol_list, args.crop_border,
                                        with_input=not args.no_input_row)
        row = {"dataset": name, "name": item["name"], "height": pred_img.shape[0],
               "width": pred_img.shape[1], "runtime_s": runtime, **out}
        if inp is not None:
            row.update({f"input:{k}": v for k, v in inp.items()})
        if image_dir is not None:
            write_image(image_dir / name / _png_name(item["name"]), pred_img)
        rows.append(row)
        first = f"{args.protocol_list[0]}/psnr"
        bar.set_postfix({f"PSNR {args.protocol_list[0]}": f"{sum(r[first] for r in rows) / len(rows):.2f}"})
    bar.close()
    return rows


def summarise(name: str, rows: list[dict], metric_keys: list[str], model_label: str,
              with_input: bool) -> list[dict]:
    """Mean per metric: one row for the model, one for the rainy input ('no deraining')."""
    count = len(rows)
    out = [{"dataset": name, "model": model_label, "images": count,
            **mean_metrics(rows, [*metric_keys, "runtime_s"])}]
    if with_input:
        out.append({"dataset": name, "model": INPUT_ROW, "images": count,
                    **mean_metrics(rows, metric_keys, prefix="input:"), "runtime_s": None})
    return out


# ----------------------------------------------------------------------------- reports
def metric_columns(protocols: list[str]) -> list[str]:
    return [f"{p}/{m}" for p in protocols for m in ("psnr", "ssim")]


def write_reports(out: Path, summary: list[dict], per_image: list[dict] | None, info: dict) -> str:
    """results.md/csv/json (and per_image.csv); returns the Markdown text."""
    metrics = metric_columns(info["protocols"])
    columns = ["dataset", "model", *metrics, "images", "runtime_s"]
    headers = {"dataset": "data set", "images": "images", "runtime_s": "s / image"}
    headers.update({c: f"{c.split('/')[1].upper()} ({c.split('/')[0]})" for c in metrics})
    digits = {c: (2 if c.endswith("psnr") else 4) for c in metrics}
    digits["runtime_s"] = 3
    size = info["complexity"]
    text = (f"# Evaluation of `{info['checkpoint']}`\n\n"
            + markdown_table(summary, columns, headers, digits)
            + f"\nTrained on: {info['trained_on']}.\n"
            + f"Model: {size['params']:,} parameters ({size['params'] / 1e6:.3f} M), "
              f"{size['gmacs']:.2f} GMACs at {size['size']} (inference path, torch.utils.flop_counter, "
              f"MACs = FLOPs/2).\n"
            + f"Settings: device {info['device']}, full-size images, batch 1, "
              f"tile {info['tile'] or 'none'}, ensemble {'x8' if info['ensemble'] else 'off'}, "
              f"crop border {info['crop_border']}; runtime = mean derain time per image "
              f"(excludes loading and metrics).\n\nProtocols:\n"
            + "".join(f"- `{p}`: {info['protocol_notes'].get(p, '')}\n" for p in info["protocols"]))
    write_text(out / "results.md", text)
    csv_rows = [dict(r, params=size["params"] if r["model"] != INPUT_ROW else None,
                     **{f"gmacs@{size['size']}": size["gmacs"] if r["model"] != INPUT_ROW else None})
                for r in summary]
    write_csv(out / "results.csv", csv_rows, columns + ["params", f"gmacs@{size['size']}"])
    write_text(out / "results.json", json.dumps({**info, "rows": summary}, indent=2) + "\n")
    if per_image is not None:
        keys = [k for k in per_image[0] if k not in ("dataset", "name", "height", "width", "runtime_s")]
        write_csv(out / "per_image.csv", per_image,
                  ["dataset", "name", "height", "width", "runtime_s", *keys])
    return text


PROTOCOL_NOTES = {
    "rgb": "RGB, float prediction (not rounded); PSNR on values clipped to [0,1], SSIM (Gaussian 11/1.5) "
           "on the unclipped prediction (the HCN authors' table)",
    "y": "MATLAB Restormer/MSPFN script: uint8 image, rounded uint8 Y of rgb2ycbcr, PSNR peak 255, "
         "Wang's ssim_index (Rain100H/L, Test100/1200/2800, Rain200H/L, SPA)",
    "y-float": "MATLAB RCDNet/PReNet script: float Y, PSNR peak 1, ssim.m with box-filter "
               "downsampling by max(1, round(min(H,W)/256)) (Rain1200, Rain1400, Rain12)",
}


def _last_line(exc: Exception) -> str:
    """A DataLoader worker re-raises with the worker's traceback in the message: keep the error."""
    text = str(exc).strip()
    return text.splitlines()[-1] if "Original Traceback" in text else text


def default_out_dir(checkpoint: Path) -> Path:
    label = f"{checkpoint.parent.name}_{checkpoint.stem}" if checkpoint.parent.name else checkpoint.stem
    return Path("runs") / "eval" / (label or datetime.now().strftime("%Y%m%d-%H%M%S"))


# ----------------------------------------------------------------------------- main
def run(args) -> dict:
    args.protocol_list = [p.strip() for p in args.protocols.split(",") if p.strip()]
    unknown = [p for p in args.protocol_list if p not in PROTOCOLS]
    if unknown or not args.protocol_list:
        raise UsageError(f"--protocols: unknown protocol(s) {unknown}; choose from {list(PROTOCOLS)}")
    tile = resolve_tile(args.tile, 0, 0)  # a fixed size, or None for 0/none/auto
    if (tile and not 0 <= args.overlap < tile) or args.overlap < 0 or args.tile_batch < 1:
        raise UsageError("need 0 <= --overlap < --tile and --tile-batch >= 1")

    device = pick_device(args.device)
    checkpoint = resolve_checkpoint(args.checkpoint)
    model, cfg = open_model(checkpoint, device, use_ema=not args.no_ema)  # UserErrors: exit 2
    sets = open_datasets(args, cfg)

    out = Path(args.out) if args.out else default_out_dir(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    model_label = f"HCN ({checkpoint.parent.name + '/' if checkpoint.parent.name else ''}{checkpoint.name})"
    info = {
        "checkpoint": str(checkpoint), "trained_on": trained_on(cfg), "device": str(device),
        "tile": "auto (512 above 1 megapixel)" if args.tile == "auto" else tile, "overlap": args.overlap,
        "tile_batch": args.tile_batch, "ensemble": args.ensemble, "crop_border": args.crop_border,
        "protocols": args.protocol_list,
        "protocol_notes": {p: PROTOCOL_NOTES.get(p, "") for p in args.protocol_list},
        "complexity": complexity(model, args.macs_size),
        "datasets": [{"name": n, "source": s, "images": len(d)} for n, s, d in sets],
    }
    settings = {**info, "args": {k: v for k, v in vars(args).items() if k != "protocol_list"},
                "model_config": cfg.to_dict(), "torch": torch.__version__,
                "python": platform.python_version(),
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_text(out / "settings.json", json.dumps(settings, indent=2) + "\n")

    if device.type == "cuda" and sets:  # untimed warm-up: CUDA context, cuDNN algorithm choice
        first = sets[0][2][0]["rainy"].unsqueeze(0)
        derain(model, first, tile=resolve_tile(args.tile, *first.shape[-2:]), overlap=args.overlap,
               tile_batch=args.tile_batch)

    summary, per_image = [], []
    metric_keys = metric_columns(args.protocol_list)
    for name, _, pairs in sets:
        try:
            rows = evaluate_set(model, name, pairs, args, device,
                                out / "images" if args.save_images else None)
        except (DatasetError, ImageReadError) as exc:
            raise DatasetError(f"data set {name}: {_last_line(exc)}") from None
        summary += summarise(name, rows, metric_keys, model_label, not args.no_input_row)
        per_image += rows
    text = write_reports(out, summary, per_image if args.per_image else None, info)
    print("\n" + text)
    print(f"Wrote {out}/results.md, results.csv, results.json, settings.json"
          + (", per_image.csv" if args.per_image else "") + (", images/" if args.save_images else ""))
    return {**info, "rows": summary, "out": str(out)}


def main(argv=None) -> int:
    args = parse_args(argv)
    logs.setup(args)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
