"""Speed and memory benchmark of an HCN preset: forward at several sizes, a training step,
params and GMACs. Prints a table and writes JSON.

    python bench.py                         # paper preset, CPU or GPU (auto)
    python bench.py --sizes 64x64 --train-size 64 --repeats 1 --preset demo   # quick check
    python bench.py --tile-4k               # add a 3000x4000 photo through tiled inference
    python bench.py --amp --set train.compile=true   # CUDA: bf16 autocast, torch.compile

Every measurement runs in a fresh subprocess, so peak memory is that measurement's own:
CPU peak RSS (getrusage) or CUDA max allocated. Times are the median of `--repeats` runs
after one warm-up.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from config import add_config_args, config_from_args
from losses import HCNLoss
from networks import build_model
from utils import logs
from utils.cli import UsageError, add_device_arg, pick_device, run_main, sync
from utils.io.files import write_text
from utils.inference import derain
from utils.metrics.complexity import complexity

DEFAULT_SIZES = "224x224,321x481,512x512,1024x1024"
SIZE_4K = (3000, 4000)


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} must look like HxW, e.g. 321x481") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive")
    return h, w


log = logs.get("bench")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser, default_preset="paper")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help=f"forward sizes (default {DEFAULT_SIZES})")
    parser.add_argument("--train-size", type=int, default=224, help="training patch side (0: skip)")
    parser.add_argument("--train-batch", type=int, default=1)
    parser.add_argument("--tile-4k", action="store_true", help="also derain a 3000x4000 image tiled")
    parser.add_argument("--tile", type=int, default=512, help="tile side for the 4K run")
    parser.add_argument("--repeats", type=int, default=3)
    add_device_arg(parser)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--amp", action="store_true", help="CUDA only: bf16 autocast")
    parser.add_argument("--out", default="runs/bench/bench.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one measurement as JSON
    logs.add_log_args(parser)
    args = parser.parse_args(argv)
    logs.setup(args)
    if args.worker:
        print(json.dumps(run_worker(args)))
        return 0
    config_from_args(args)  # a bad --preset/--config/--set fails here, before any worker runs
    pick_device(args.device)

    jobs = [("forward", s) for s in args.sizes.split(",") if s]
    if args.tile_4k:
        jobs.append(("tiled", f"{SIZE_4K[0]}x{SIZE_4K[1]}"))
    if args.train_size:
        jobs.append(("train", f"{args.train_size}x{args.train_size}"))
    jobs.append(("complexity", "256x256"))
    for kind, size in jobs:
        try:
            parse_size(size)  # fail early on a typo, before any subprocess runs
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"--sizes: {exc}") from None

    passthrough = list(argv)
    results = []
    for kind, size in jobs:
        log.info(f"measuring {kind} {size} ...")
        proc = subprocess.run([sys.executable, __file__, *passthrough, "--worker", f"{kind}:{size}"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            results.append({"kind": kind, "size": size, "error": tail[0]})
        else:
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(format_table(results))
    write_text(args.out, json.dumps({"settings": vars(args) | {"worker": None}, "results": results}, indent=2) + "\n")
    log.info(f"wrote {args.out}")
    return 0


def run_worker(args) -> dict:
    kind, _, size = args.worker.partition(":")
    h, w = parse_size(size)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config_from_args(args)
    device = pick_device(args.device)
    torch.manual_seed(0)
    model = build_model(cfg.model).to(device)
    result = {"kind": kind, "size": size, "device": device_name(device), "threads": torch.get_num_threads()}

    if kind == "complexity":
        result.update(complexity(model.eval(), (h, w)))
        return result

    if cfg.train.compile:  # --set train.compile=true: measure the torch.compile'd model
        model = torch.compile(model)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.amp and device.type == "cuda")
    if kind == "train":
        loss_fn = HCNLoss(cfg.loss.weights).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
        rainy = torch.rand(args.train_batch, 3, h, w, device=device)
        clean = torch.rand_like(rainy)
        model.train()

        def step():
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss, _ = loss_fn(model(rainy, branches=True), clean)
            loss.backward()
            optimizer.step()

        times = timed(step, args.repeats, device)
        result.update(batch=args.train_batch, patches_per_s=args.train_batch / times["median_s"])
    else:
        model.eval()
        rainy = torch.rand(1, 3, h, w, device=device)
        tile = args.tile if kind == "tiled" else None

        def step():
            with autocast:
                derain(model, rainy, tile=tile)

        if kind == "tiled":
            # Warm up on one tile only: a second full 4K pass would double a long run.
            derain(model, rainy[..., :tile, :tile])
        times = timed(step, args.repeats if kind == "forward" else 1, device,
                      warmup=kind == "forward")
        result.update(images_per_s=1.0 / times["median_s"], tile=tile)
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


def format_table(results: list[dict]) -> str:
    lines = ["| measurement | size | median s | min-max s | throughput | peak RSS MiB | CUDA MiB |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['kind']} | {r['size']} | failed: {r['error']} | | | | |")
        elif r["kind"] == "complexity":
            lines.append(f"| params / GMACs | {r['size']} | {r['params'] / 1e6:.3f} M params | "
                         f"{r['gmacs']:.1f} GMACs | | | |")
        else:
            rate = (f"{r['patches_per_s']:.2f} patches/s (batch {r['batch']})" if r["kind"] == "train"
                    else f"{r['images_per_s']:.3f} img/s")
            cuda = f"{r['cuda_max_allocated_mib']:.0f}" if "cuda_max_allocated_mib" in r else "-"
            lines.append(f"| {r['kind']} | {r['size']} | {r['median_s']:.3f} | {r['min_s']:.3f}-{r['max_s']:.3f} "
                         f"| {rate} | {r['peak_rss_mib']:.0f} | {cuda} |")
    device = next((r["device"] for r in results if "device" in r), "?")
    return f"device: {device}\n" + "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_main(main))
