"""Speed and memory benchmark of an HCN preset: forward at several sizes, a training step,
params and GMACs, in one or several precisions. Prints a table and writes JSON.

    python scripts/bench.py                         # paper preset, CPU or GPU (auto), fp32
    python scripts/bench.py --sizes 64x64 --train-size 64 --repeats 1 --preset demo   # quick check
    python scripts/bench.py --tile-4k               # add a 3000x4000 photo through tiled inference
    python scripts/bench.py --preset standard --checkpoint weights/standard.pth --precisions fp32,bf16
    python scripts/bench.py --load 1                # every measurement next to 1 busy process
    python scripts/bench.py --load-test             # 224x224 forward idle vs under load, thread choices
    python scripts/bench.py --eval-overlap --preset demo --images 100 --size 321x481   # eval.py's overhead
    python scripts/bench.py --gpu                   # CUDA: 512x512 forward, training at 224 batch 8,
                                                    # each in fp32, bf16 and bf16+torch.compile

--precisions takes fp32, bf16 and auto (utils/engine/precision.py), each optionally with
+compile (torch.compile'd model); fp32 is always measured as the reference when another
precision is, and each forward's output in another precision is compared with the fp32
output of the same weights and input (PSNR in dB, outputs clipped to [0, 1]). The weights
are --checkpoint's (its model config replaces the preset's) or a random initialisation
(seed 0). --gpu needs CUDA and fills in the sizes, batch and precisions above unless given.

Every measurement runs in a fresh subprocess, so peak memory is that measurement's own:
CPU peak RSS (getrusage) and, on CUDA, max allocated. Times are the median of `--repeats`
runs after one warm-up (which also absorbs torch.compile's compilation). Threads: --threads, else
$OMP_NUM_THREADS, else as many as CPUs are free (utils/threads.py), chosen in each subprocess.

--load N starts N busy processes (pure-Python spin loops) for the whole run and always stops
them. --load-test measures the forward at the first --sizes entry (default 224x224) idle and
next to max(1, --load) busy processes, each with the load-aware thread choice, torch's own
default (what the scripts did before), and torch's default with OMP_WAIT_POLICY=PASSIVE; its
subprocesses ignore OMP_NUM_THREADS. --eval-overlap writes --images rainy/clean pairs of --size
(the preset's synthetic rain) to a temporary folder and reports the bare forward time per
image, then eval.py's time per image (reading, deraining and scoring all three protocols), and
eval.py --sequential's (unless --no-sequential), on the same images in the same subprocess.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from config import PRECISIONS  # noqa: E402
from scripts.bench_worker import COMPILE, parse_size, run_worker  # noqa: E402
from utils import cpu_load, logs  # noqa: E402
from utils.cli import (UsageError, add_device_arg, add_threads_arg, open_model,  # noqa: E402
                       pick_device, run_main)
from utils.config_parse import add_config_args, config_from_args  # noqa: E402
from utils.engine.precision import Precision  # noqa: E402
from utils.io.files import write_text  # noqa: E402
from utils.io.images import to_image  # noqa: E402
from utils.metrics.protocols import psnr  # noqa: E402

DEFAULT_SIZES = "224x224,321x481,512x512,1024x1024"
LOAD_TEST_SIZE = "224x224"
SIZE_4K = (3000, 4000)
# --load-test variants: (name, thread mode of the worker, extra environment)
#   "flag": the scripts' choice (--threads, else auto: OMP_NUM_THREADS is removed);
#   "torch": torch's own default, as every script ran before utils/threads.py.
LOAD_VARIANTS = (("auto", "flag", {}), ("torch default", "torch", {}),
                 ("torch default, OMP_WAIT_POLICY=PASSIVE", "torch", {"OMP_WAIT_POLICY": "PASSIVE"}))
REFERENCE = "fp32"
# What --gpu measures unless the flags say otherwise.
GPU_DEFAULTS = {"sizes": "512x512", "train_size": 224, "train_batch": 8,
                "precisions": f"fp32,bf16,bf16{COMPILE}"}
CPU_DEFAULTS = {"sizes": DEFAULT_SIZES, "train_size": 224, "train_batch": 1, "precisions": REFERENCE}


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
    add_threads_arg(parser)
    parser.add_argument("--load", type=int, default=0, metavar="N",
                        help="run the measurements next to N busy processes (stopped at the end)")
    parser.add_argument("--load-test", action="store_true",
                        help="forward idle and under load, with each thread choice (see above)")
    parser.add_argument("--eval-overlap", action="store_true",
                        help="bare forward vs eval.py per image on --images pairs of --size")
    parser.add_argument("--images", type=int, default=100, help="--eval-overlap: pairs (default 100)")
    parser.add_argument("--size", default="321x481", help="--eval-overlap: image size HxW (default 321x481)")
    parser.add_argument("--no-sequential", action="store_true",
                        help="--eval-overlap: skip the eval.py --sequential pass (a third of the time)")
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
    if args.load < 0 or args.images < 1:
        raise UsageError("need --load >= 0 and --images >= 1")
    if args.load_test and args.eval_overlap:
        raise UsageError("--load-test and --eval-overlap are separate runs: give one of them")

    jobs = plan_jobs(args, modes)
    for job in jobs:
        try:
            parse_size(job["size"])  # fail early on a typo, before any subprocess runs
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"--sizes/--size: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="bench_") as outputs:
        results = [run_job(argv, job, Path(outputs), compare=len(modes) > 1) for job in jobs]
        add_agreement(results, Path(outputs))
    if args.load_test:
        print(format_load_test(results))
    elif args.eval_overlap:
        print(format_eval_overlap(results))
    else:
        print(format_table(results))
    settings = vars(args) | {"worker": None, "dump": None, "precisions": modes}
    write_text(args.out, json.dumps({"settings": settings, "results": results}, indent=2) + "\n")
    log.info(f"wrote {args.out}")
    return 0


def plan_jobs(args, modes: list[str]) -> list[dict]:
    """The measurements: {kind, size, precision, mode ("flag" | "torch": the worker's thread
    choice), env (set in the worker's environment), drop_env (names removed from it), load
    (busy processes next to it), label}. --load-test and --eval-overlap measure fp32 only."""
    def job(kind, size, mode="flag", env=None, load=args.load, label="", drop_env=(), precision=REFERENCE):
        return {"kind": kind, "size": size, "precision": precision, "mode": mode, "env": env or {},
                "load": load, "label": label, "drop_env": list(drop_env)}

    if args.eval_overlap:
        return [job("eval", args.size)]
    if args.load_test:
        size = (args.sizes or LOAD_TEST_SIZE).split(",")[0]
        load = max(1, args.load)
        return [job("forward", size, mode, env, busy, drop_env=("OMP_NUM_THREADS", "MKL_NUM_THREADS"),
                    label=f"{busy or 'no'} busy process{'es' if busy != 1 else ''}, {name}")
                for busy in (0, load) for name, mode, env in LOAD_VARIANTS]
    shapes = [("forward", s) for s in (args.sizes or DEFAULT_SIZES).split(",") if s]
    if args.tile_4k:
        shapes.append(("tiled", f"{SIZE_4K[0]}x{SIZE_4K[1]}"))
    if args.train_size:
        shapes.append(("train", f"{args.train_size}x{args.train_size}"))
    jobs = [job(kind, size, precision=mode) for kind, size in shapes for mode in modes]
    return jobs + [job("complexity", "256x256")]


def run_job(argv: list[str], job: dict, outputs: Path, compare: bool) -> dict:
    """One measurement in a fresh subprocess, next to job["load"] busy processes; with `compare`
    a forward saves its output under `outputs` (for the PSNR-vs-fp32 column)."""
    log.info(f"measuring {job['kind']} {job['size']}" + (f" ({job['label']})" if job["label"] else "")
             + (f" next to {job['load']} busy process(es)" if job["load"] and not job["label"] else "") + " ...")
    env = {k: v for k, v in os.environ.items() if k not in job["drop_env"]} | job["env"]
    spec = f"{job['kind']}:{job['size']}:{job['precision']}:{job['mode']}"
    worker = ["--worker", spec]
    if job["kind"] == "forward" and compare:
        worker += ["--dump", str(outputs / f"{job['size']}_{job['precision']}.pt")]
    with cpu_load.busy_processes(job["load"]) as busy_pids:
        proc = subprocess.run([sys.executable, __file__, *argv, *worker],
                              capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        result = {"kind": job["kind"], "size": job["size"], "precision": job["precision"], "error": tail[0]}
    else:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result | {"load": job["load"], "busy_pids": busy_pids, "label": job["label"], "env": job["env"]}




def add_agreement(results: list[dict], outputs: Path) -> None:
    """`psnr_vs_fp32_db` on every forward result in another precision: its output against the
    fp32 output of the same size (files the workers saved under `outputs`)."""
    for r in results:
        if r["kind"] != "forward" or "error" in r or r["precision"] == REFERENCE:
            continue
        mine, reference = outputs / f"{r['size']}_{r['precision']}.pt", outputs / f"{r['size']}_{REFERENCE}.pt"
        if mine.is_file() and reference.is_file():
            r["psnr_vs_fp32_db"] = psnr(to_image(torch.load(mine, weights_only=True)),
                                           to_image(torch.load(reference, weights_only=True)))


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



def format_load_test(results: list[dict]) -> str:
    """The --load-test table: each condition's median and its ratio to the first (idle) row."""
    ok = [r for r in results if "error" not in r]
    idle = ok[0]["median_s"] if ok and ok[0]["load"] == 0 else None
    lines = [f"forward {results[0]['size']}, batch 1, median of the runs after a warm-up; busy processes "
             "are pure-Python spin loops started by this run, on top of whatever else runs:",
             "| condition | threads | median s | x first row |", "|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['label']} | | failed: {r['error']} | |")
            continue
        ratio = f"{r['median_s'] / idle:.2f}" if idle else "-"
        lines.append(f"| {r['label']} | {r['thread_choice']} | {r['median_s']:.3f} | {ratio} |")
    by_label = {r["label"]: r["median_s"] for r in ok}
    loaded = [r for r in ok if r["load"]]
    if len(loaded) >= 2 and loaded[0]["label"].endswith(", auto"):
        prefix = loaded[0]["label"][:-len(", auto")]
        before = by_label.get(f"{prefix}, torch default")
        if before:
            lines.append(f"\n{prefix}: the load-aware choice takes {loaded[0]['median_s']:.3f} s, torch's "
                         f"default {before:.3f} s ({before / loaded[0]['median_s']:.2f}x slower)")
    device = next((r["device"] for r in ok), "?")
    return f"device: {device}\n" + "\n".join(lines)


def format_eval_overlap(results: list[dict]) -> str:
    r = results[0]
    if "error" in r:
        return f"eval overlap: failed: {r['error']}"
    return "\n".join([
        f"device: {r['device']}, {r['thread_choice']}",
        f"{r['images']} images of {r['size']} ({r['preset_rain']} rain), protocols "
        f"{','.join(r['protocols'])}, batch 1:",
        "| | s / image | x bare forward |", "|---|---|---|",
        f"| bare forward (images in memory, model only) | {r['bare_forward_s']:.3f} | 1.00 |",
        f"| eval.py (read, derain, score; overlapped) | {r['eval_s']:.3f} | {r['eval_ratio']:.2f} |",
        *([f"| eval.py --sequential | {r['sequential_s']:.3f} | {r['sequential_ratio']:.2f} |"]
          if "sequential_s" in r else []),
        f"\nforward time inside eval.py: {r['eval_forward_s']:.3f} s/image overlapped"
        + (f", {r['sequential_forward_s']:.3f} sequential" if "sequential_s" in r else "")
        + " (the runtime column of its table)",
    ])

if __name__ == "__main__":
    sys.exit(run_main(main))
