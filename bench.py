"""Speed and memory benchmark of an HCN preset: forward at several sizes, a training step,
params and GMACs, in one or several precisions. Prints a table and writes JSON.

    python bench.py                         # paper preset, CPU or GPU (auto), fp32
    python bench.py --sizes 64x64 --train-size 64 --repeats 1 --preset demo   # quick check
    python bench.py --tile-4k               # add a 3000x4000 photo through tiled inference
    python bench.py --preset standard --checkpoint weights/standard.pth --precisions fp32,bf16
    python bench.py --gpu                   # CUDA: 512x512 forward, training at 224 batch 8,
                                            # each in fp32, bf16 and bf16+torch.compile

--precisions takes fp32, bf16 and auto (utils/engine/precision.py), each optionally with
+compile (torch.compile'd model); fp32 is always measured as the reference when another
precision is, and each forward's output in another precision is compared with the fp32
output of the same weights and input (PSNR in dB, outputs clipped to [0, 1]). The weights
are --checkpoint's (its model config replaces the preset's) or a random initialisation
(seed 0). --gpu needs CUDA and fills in the sizes, batch and precisions above unless given.

Every measurement runs in a fresh subprocess, so peak memory is that measurement's own:
CPU peak RSS (getrusage) and, on CUDA, max allocated. Times are the median of `--repeats`
runs after one warm-up (which also absorbs torch.compile's compilation).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from config import PRECISIONS, add_config_args, config_from_args
from losses import HCNLoss
from networks import build_model
from utils import logs
from utils.cli import UsageError, add_device_arg, open_model, pick_device, run_main, sync
from utils.engine.precision import Precision
from utils.io.files import write_text
from utils.io.images import to_image
from utils.inference import derain
from utils.metrics.complexity import complexity
from utils.metrics.protocols import psnr

DEFAULT_SIZES = "224x224,321x481,512x512,1024x1024"
SIZE_4K = (3000, 4000)
COMPILE = "+compile"
REFERENCE = "fp32"
# What --gpu measures unless the flags say otherwise.
GPU_DEFAULTS = {"sizes": "512x512", "train_size": 224, "train_batch": 8,
                "precisions": f"fp32,bf16,bf16{COMPILE}"}
CPU_DEFAULTS = {"sizes": DEFAULT_SIZES, "train_size": 224, "train_batch": 1, "precisions": REFERENCE}


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} must look like HxW, e.g. 321x481") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive")
    return h, w


def parse_precisions(text: str) -> list[str]:
    """'fp32,bf16,bf16+compile' -> the modes, fp32 first when another precision is measured
    (the reference of the PSNR column)."""
    modes = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    for mode in modes:
        if mode.removesuffix(COMPILE) not in PRECISIONS:
            raise UsageError(f"--precisions: {mode!r} is not one of "
                             f"{', '.join(PRECISIONS)} (each optionally with {COMPILE})")
    if not modes:
        raise UsageError("--precisions: give at least one precision, e.g. fp32,bf16")
    if REFERENCE not in modes and any(m.removesuffix(COMPILE) != REFERENCE for m in modes):
        modes.insert(0, REFERENCE)
    return modes


log = logs.get("bench")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser, default_preset="paper")
    parser.add_argument("--sizes", default=None, help=f"forward sizes (default {DEFAULT_SIZES}; "
                                                      f"--gpu: {GPU_DEFAULTS['sizes']})")
    parser.add_argument("--train-size", type=int, default=None, help="training patch side (0: skip; "
                        f"default {CPU_DEFAULTS['train_size']})")
    parser.add_argument("--train-batch", type=int, default=None,
                        help=f"training batch (default 1; --gpu: {GPU_DEFAULTS['train_batch']})")
    parser.add_argument("--precisions", default=None, metavar="LIST",
                        help=f"comma-separated, from {', '.join(PRECISIONS)}, each optionally with "
                             f"{COMPILE}; fp32 is added as the reference of the PSNR column "
                             f"(default {REFERENCE}; --gpu: {GPU_DEFAULTS['precisions']})")
    parser.add_argument("--checkpoint", default=None,
                        help="weights to measure (its model config replaces the preset's); default: "
                             "a random initialisation, seed 0")
    parser.add_argument("--gpu", action="store_true",
                        help="the CUDA benchmark: device cuda and the --gpu defaults above")
    parser.add_argument("--tile-4k", action="store_true", help="also derain a 3000x4000 image tiled")
    parser.add_argument("--tile", type=int, default=512, help="tile side for the 4K run")
    parser.add_argument("--repeats", type=int, default=3)
    add_device_arg(parser)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--out", default="runs/bench/bench.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one measurement as JSON
    parser.add_argument("--dump", help=argparse.SUPPRESS)  # internal: where a forward saves its output
    logs.add_log_args(parser)
    args = parser.parse_args(argv)
    if args.gpu:
        if not torch.cuda.is_available():
            raise UsageError(f"--gpu needs a CUDA GPU, and torch {torch.__version__} sees none on "
                             "this machine; run without --gpu to measure the CPU")
        if args.device == "auto":
            args.device = "cuda"
        elif not args.device.startswith("cuda"):
            raise UsageError(f"--gpu measures a CUDA device, not --device {args.device}")
    for key, value in (GPU_DEFAULTS if args.gpu else CPU_DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    logs.setup(args)
    if args.worker:
        print(json.dumps(run_worker(args)))
        return 0
    config_from_args(args)  # a bad --preset/--config/--set fails here, before any worker runs
    device = pick_device(args.device)
    modes = parse_precisions(args.precisions)
    for mode in modes:  # bf16 on a device without bf16 autocast: refused before any worker runs
        Precision(device, mode.removesuffix(COMPILE))
    if args.checkpoint:
        open_model(args.checkpoint, torch.device("cpu"))  # a missing or foreign file: one line, now

    jobs = [("forward", s) for s in args.sizes.split(",") if s]
    if args.tile_4k:
        jobs.append(("tiled", f"{SIZE_4K[0]}x{SIZE_4K[1]}"))
    if args.train_size:
        jobs.append(("train", f"{args.train_size}x{args.train_size}"))
    for kind, size in jobs:
        try:
            parse_size(size)  # fail early on a typo, before any subprocess runs
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"--sizes: {exc}") from None
    jobs = [(kind, size, mode) for kind, size in jobs for mode in modes]
    jobs.append(("complexity", "256x256", REFERENCE))

    passthrough = list(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_") as outputs:
        for kind, size, mode in jobs:
            log.info(f"measuring {kind} {size} {mode} ...")
            worker = ["--worker", f"{kind}:{size}:{mode}"]
            if kind == "forward" and len(modes) > 1:
                worker += ["--dump", str(Path(outputs) / f"{size}_{mode}.pt")]
            proc = subprocess.run([sys.executable, __file__, *passthrough, *worker],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                results.append({"kind": kind, "size": size, "precision": mode, "error": tail[0]})
            else:
                results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        add_agreement(results, Path(outputs))
    print(format_table(results))
    settings = vars(args) | {"worker": None, "dump": None, "precisions": modes}
    write_text(args.out, json.dumps({"settings": settings, "results": results}, indent=2) + "\n")
    log.info(f"wrote {args.out}")
    return 0


def add_agreement(results: list[dict], outputs: Path) -> None:
    """`psnr_vs_fp32_db` on every forward result in another precision: its output against the
    fp32 output of the same size (files the workers saved under `outputs`)."""
    for r in results:
        if r["kind"] != "forward" or "error" in r or r["precision"] == REFERENCE:
            continue
        mine, reference = outputs / f"{r['size']}_{r['precision']}.pt", outputs / f"{r['size']}_{REFERENCE}.pt"
        if mine.is_file() and reference.is_file():
            r["psnr_vs_fp32_db"] = psnr(to_image(torch.load(mine)), to_image(torch.load(reference)))


def bench_image(height: int, width: int, device: torch.device) -> torch.Tensor:
    """A fixed image-like input (seed 1): a smooth random field with sparse bright pixels, the
    same in every worker, so outputs in different precisions can be compared."""
    generator = torch.Generator().manual_seed(1)
    coarse = torch.rand(1, 3, height // 16 + 2, width // 16 + 2, generator=generator)
    image = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    drops = (torch.rand(1, 1, height, width, generator=generator) > 0.98).float()
    return (0.8 * image + 0.4 * drops).clamp(0, 1).to(device)


def build(args, cfg, device: torch.device):
    """(model, model config): --checkpoint's weights, or the preset's model seeded with 0."""
    if args.checkpoint:
        model, stored = open_model(args.checkpoint, device)
        return model, stored.model
    torch.manual_seed(0)
    return build_model(cfg.model).to(device), cfg.model


def run_worker(args) -> dict:
    kind, size, mode = args.worker.split(":")
    h, w = parse_size(size)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config_from_args(args)
    device = pick_device(args.device)
    model, cfg.model = build(args, cfg, device)
    precision = Precision(device, mode.removesuffix(COMPILE), training=kind == "train")
    compiled = mode.endswith(COMPILE) or cfg.train.compile  # or --set train.compile=true
    result = {"kind": kind, "size": size, "precision": mode, "autocast": precision.name,
              "compile": compiled, "device": device_name(device), "threads": torch.get_num_threads()}

    if kind == "complexity":
        result.update(complexity(model.eval(), (h, w)))
        return result

    if compiled:
        model = torch.compile(model)
    if kind == "train":
        loss_fn = HCNLoss(cfg.loss.weights).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
        scaler = precision.scaler  # enabled for fp16 only (auto on a GPU without native bf16)
        rainy = torch.rand(args.train_batch, 3, h, w, device=device)
        clean = torch.rand_like(rainy)
        model.train()

        def step():
            optimizer.zero_grad(set_to_none=True)
            with precision.autocast():
                out = model(rainy, branches=True)
            out = type(out)(*(t.float() if t is not None else None for t in out))
            loss, _ = loss_fn(out, clean)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

        times = timed(step, args.repeats, device)
        result.update(batch=args.train_batch, patches_per_s=args.train_batch / times["median_s"])
    else:
        model.eval()
        rainy = bench_image(h, w, device)
        tile = args.tile if kind == "tiled" else None
        outputs = []

        def step():
            outputs[:] = [derain(model, rainy, tile=tile, precision=precision)]

        if kind == "tiled":
            # Warm up on one tile only: a second full 4K pass would double a long run.
            derain(model, rainy[..., :tile, :tile], precision=precision)
        times = timed(step, args.repeats if kind == "forward" else 1, device,
                      warmup=kind == "forward")
        result.update(images_per_s=1.0 / times["median_s"], tile=tile)
        if args.dump:
            torch.save(outputs[0].cpu(), args.dump)
    result.update(times)
    result.update(peak_memory(device))
    return result


def timed(fn, repeats: int, device: torch.device, warmup: bool = True) -> dict:
    if warmup:  # allocator, oneDNN/cuDNN algorithm selection
        fn()
        sync(device)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs": len(times)}


def peak_memory(device: torch.device) -> dict:
    # ru_maxrss is in KiB on Linux.
    peak = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        peak["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({torch.get_num_threads()} threads)"


def _precision_cell(r: dict) -> str:
    mode = r.get("precision", REFERENCE)
    resolved = r.get("autocast")
    return mode if resolved is None or mode.removesuffix(COMPILE) == resolved else f"{mode} ({resolved})"


def format_table(results: list[dict]) -> str:
    lines = ["| measurement | size | precision | median s | min-max s | throughput | peak RSS MiB "
             "| CUDA MiB | PSNR vs fp32 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['kind']} | {r['size']} | {_precision_cell(r)} | failed: {r['error']} "
                         "| | | | | |")
        elif r["kind"] == "complexity":
            lines.append(f"| params / GMACs | {r['size']} | | {r['params'] / 1e6:.3f} M params | "
                         f"{r['gmacs']:.1f} GMACs | | | | |")
        else:
            rate = (f"{r['patches_per_s']:.2f} patches/s (batch {r['batch']})" if r["kind"] == "train"
                    else f"{r['images_per_s']:.3f} img/s")
            cuda = f"{r['cuda_max_allocated_mib']:.0f}" if "cuda_max_allocated_mib" in r else "-"
            agree = f"{r['psnr_vs_fp32_db']:.2f} dB" if "psnr_vs_fp32_db" in r else ""
            lines.append(f"| {r['kind']} | {r['size']} | {_precision_cell(r)} | {r['median_s']:.3f} "
                         f"| {r['min_s']:.3f}-{r['max_s']:.3f} | {rate} | {r['peak_rss_mib']:.0f} | {cuda} "
                         f"| {agree} |")
    device = next((r["device"] for r in results if "device" in r), "?")
    return f"device: {device}\n" + "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_main(main))
