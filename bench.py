"""Speed and memory benchmark of an HCN preset: forward at several sizes, a training step,
params and GMACs. Prints a table and writes JSON.

    python bench.py                         # paper preset, CPU or GPU (auto)
    python bench.py --sizes 64x64 --train-size 64 --repeats 1 --preset demo   # quick check
    python bench.py --tile-4k               # add a 3000x4000 photo through tiled inference
    python bench.py --amp --set train.compile=true   # CUDA: bf16 autocast, torch.compile
    python bench.py --load 1                # every measurement next to 1 busy process
    python bench.py --load-test             # 224x224 forward idle vs under load, thread choices
    python bench.py --eval-overlap --preset demo --images 100 --size 321x481   # eval.py's overhead

Every measurement runs in a fresh subprocess, so peak memory is that measurement's own:
CPU peak RSS (getrusage) or CUDA max allocated. Times are the median of `--repeats` runs
after one warm-up. Threads: --threads, else $OMP_NUM_THREADS, else as many as CPUs are free
(utils/threads.py), chosen in each subprocess.

--load N starts N busy processes (pure-Python spin loops) for the whole run and always stops
them. --load-test measures the forward at the first --sizes entry (default 224x224) idle and
next to max(1, --load) busy processes, each with the load-aware thread choice, torch's own
default (what the scripts did before), and torch's default with OMP_WAIT_POLICY=PASSIVE; its
subprocesses ignore OMP_NUM_THREADS. --eval-overlap writes --images rainy/clean pairs of --size
(the preset's synthetic rain) to a temporary folder and reports the bare forward time per
image, then eval.py's time per image (reading, deraining and scoring all three protocols), and
eval.py --sequential's, on the same images in the same subprocess.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import eval as eval_script
from config import add_config_args, config_from_args
from losses import HCNLoss
from networks import build_model
from utils import cpu_load, logs, threads
from utils.cli import UsageError, add_device_arg, add_threads_arg, pick_device, run_main, sync
from utils.io.checkpoints import save_checkpoint
from utils.io.files import write_text
from utils.io.images import to_tensor
from utils.inference import derain
from utils.metrics.complexity import complexity
from utils.synthetic.sets import make_rainy_set, write_rainy_set

DEFAULT_SIZES = "224x224,321x481,512x512,1024x1024"
LOAD_TEST_SIZE = "224x224"
SIZE_4K = (3000, 4000)
# --load-test variants: (name, thread mode of the worker, extra environment)
#   "flag": the scripts' choice (--threads, else auto: OMP_NUM_THREADS is removed);
#   "torch": torch's own default, as every script ran before utils/threads.py.
LOAD_VARIANTS = (("auto", "flag", {}), ("torch default", "torch", {}),
                 ("torch default, OMP_WAIT_POLICY=PASSIVE", "torch", {"OMP_WAIT_POLICY": "PASSIVE"}))


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
    parser.add_argument("--sizes", default=None,
                        help=f"forward sizes (default {DEFAULT_SIZES}; --load-test: {LOAD_TEST_SIZE})")
    parser.add_argument("--train-size", type=int, default=224, help="training patch side (0: skip)")
    parser.add_argument("--train-batch", type=int, default=1)
    parser.add_argument("--tile-4k", action="store_true", help="also derain a 3000x4000 image tiled")
    parser.add_argument("--tile", type=int, default=512, help="tile side for the 4K run")
    parser.add_argument("--repeats", type=int, default=3)
    add_device_arg(parser)
    add_threads_arg(parser)
    parser.add_argument("--amp", action="store_true", help="CUDA only: bf16 autocast")
    parser.add_argument("--load", type=int, default=0, metavar="N",
                        help="run the measurements next to N busy processes (stopped at the end)")
    parser.add_argument("--load-test", action="store_true",
                        help="forward idle and under load, with each thread choice (see above)")
    parser.add_argument("--eval-overlap", action="store_true",
                        help="bare forward vs eval.py per image on --images pairs of --size")
    parser.add_argument("--images", type=int, default=100, help="--eval-overlap: pairs (default 100)")
    parser.add_argument("--size", default="321x481", help="--eval-overlap: image size HxW (default 321x481)")
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
    if args.load < 0 or args.images < 1:
        raise UsageError("need --load >= 0 and --images >= 1")
    if args.load_test and args.eval_overlap:
        raise UsageError("--load-test and --eval-overlap are separate runs: give one of them")

    jobs = plan_jobs(args)
    for job in jobs:
        try:
            parse_size(job["size"])  # fail early on a typo, before any subprocess runs
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"--sizes/--size: {exc}") from None
    results = [run_job(argv, job) for job in jobs]
    if args.load_test:
        print(format_load_test(results))
    elif args.eval_overlap:
        print(format_eval_overlap(results))
    else:
        print(format_table(results))
    write_text(args.out, json.dumps({"settings": vars(args) | {"worker": None}, "results": results}, indent=2) + "\n")
    log.info(f"wrote {args.out}")
    return 0


def plan_jobs(args) -> list[dict]:
    """The measurements: {kind, size, mode ("flag" | "torch": the worker's thread choice),
    env (set in the worker's environment), drop_env (names removed from it), load (busy
    processes next to it), label}."""
    def job(kind, size, mode="flag", env=None, load=args.load, label="", drop_env=()):
        return {"kind": kind, "size": size, "mode": mode, "env": env or {}, "load": load,
                "label": label, "drop_env": list(drop_env)}

    if args.eval_overlap:
        return [job("eval", args.size)]
    if args.load_test:
        size = (args.sizes or LOAD_TEST_SIZE).split(",")[0]
        load = max(1, args.load)
        return [job("forward", size, mode, env, busy, drop_env=("OMP_NUM_THREADS", "MKL_NUM_THREADS"),
                    label=f"{busy or 'no'} busy process{'es' if busy != 1 else ''}, {name}")
                for busy in (0, load) for name, mode, env in LOAD_VARIANTS]
    jobs = [job("forward", s) for s in (args.sizes or DEFAULT_SIZES).split(",") if s]
    if args.tile_4k:
        jobs.append(job("tiled", f"{SIZE_4K[0]}x{SIZE_4K[1]}"))
    if args.train_size:
        jobs.append(job("train", f"{args.train_size}x{args.train_size}"))
    jobs.append(job("complexity", "256x256"))
    return jobs


def run_job(argv: list[str], job: dict) -> dict:
    """One measurement in a fresh subprocess, next to job["load"] busy processes."""
    log.info(f"measuring {job['kind']} {job['size']}" + (f" ({job['label']})" if job["label"] else "")
             + (f" next to {job['load']} busy process(es)" if job["load"] and not job["label"] else "") + " ...")
    env = {k: v for k, v in os.environ.items() if k not in job["drop_env"]} | job["env"]
    spec = f"{job['kind']}:{job['size']}:{job['mode']}"
    with cpu_load.busy_processes(job["load"]) as busy_pids:
        proc = subprocess.run([sys.executable, __file__, *argv, "--worker", spec],
                              capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        result = {"kind": job["kind"], "size": job["size"], "error": tail[0]}
    else:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result | {"load": job["load"], "busy_pids": busy_pids, "label": job["label"], "env": job["env"]}


def run_worker(args) -> dict:
    kind, size, mode = (args.worker.split(":") + ["flag"])[:3]
    h, w = parse_size(size)
    # First, before any torch work (which would count as load): the thread count.
    choice = (threads.apply_threads(args.threads) if mode == "flag"
              else threads.ThreadChoice(torch.get_num_threads(), "torch default"))
    cfg = config_from_args(args)
    device = pick_device(args.device)
    result = {"kind": kind, "size": size, "device": device_name(device), "threads": torch.get_num_threads(),
              "thread_choice": str(choice)}
    if kind == "eval":
        return result | eval_overlap(args, cfg, device, (h, w))
    torch.manual_seed(0)
    model = build_model(cfg.model).to(device)

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


def eval_overlap(args, cfg, device: torch.device, shape: tuple[int, int]) -> dict:
    """Bare forward vs eval.py (overlapped, then --sequential) per image, on the same pairs:
    the preset's synthetic rain on held-out test photos, written as PNGs to a temp folder."""
    with tempfile.TemporaryDirectory(prefix="hcn-bench-") as tmp:
        folder = Path(tmp)
        names, rainy, clean = make_rainy_set("test", cfg.data.synthetic_preset, shape, args.images,
                                             cfg.data.synthetic_seed)
        write_rainy_set(folder / "set", names, rainy, clean)
        torch.manual_seed(0)
        model = build_model(cfg.model).to(device).eval()
        save_checkpoint({"config": cfg.to_dict(), "model": model.state_dict()}, folder / "model.pth")
        inputs = [to_tensor(image).unsqueeze(0) for image in rainy]
        del rainy, clean
        derain(model, inputs[0])  # warm-up (oneDNN primitives, allocator), as eval's first image
        sync(device)
        start = time.perf_counter()
        for x in inputs:
            derain(model, x)
            sync(device)
        bare = (time.perf_counter() - start) / len(inputs)
        del inputs, model
        out = {"images": args.images, "preset_rain": cfg.data.synthetic_preset, "bare_forward_s": bare}
        for key, extra in (("eval", []), ("sequential", ["--sequential"])):
            eval_args = eval_script.parse_args(
                ["--checkpoint", f"model={folder / 'model.pth'}", "--data", f"bench={folder / 'set'}",
                 "--out", str(folder / key), "--device", args.device, "--macs-size", "64", "-q", *extra])
            with contextlib.redirect_stdout(io.StringIO()):  # its table: only JSON on stdout here
                report = eval_script.run(eval_args)
            out[f"{key}_s"] = report["wall_s"]["bench"] / args.images
            out[f"{key}_ratio"] = out[f"{key}_s"] / bare
            out[f"{key}_forward_s"] = next(r["runtime_s"] for r in report["rows"] if r["method"] == "model")
            out["protocols"] = report["protocols"]
    out.update(peak_memory(device))
    return out


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
        f"| eval.py --sequential | {r['sequential_s']:.3f} | {r['sequential_ratio']:.2f} |",
        f"\nforward time inside eval.py: {r['eval_forward_s']:.3f} s/image overlapped, "
        f"{r['sequential_forward_s']:.3f} sequential (the runtime column of its table)",
    ])

if __name__ == "__main__":
    sys.exit(run_main(main))
