"""scripts/bench.py's measurements, each run in its own process (`--worker`): a forward at
one size, a tiled 4K forward, a training step, params and GMACs, or eval.py's overhead. Each
returns a dict of times (median of --repeats after a warm-up) and peak memory."""
from __future__ import annotations

import argparse
import contextlib
import io
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import eval as eval_script
from losses import HCNLoss
from networks import build_model
from utils import threads
from utils.cli import open_model, pick_device, sync
from utils.config_parse import config_from_args
from utils.engine.precision import Precision
from utils.inference import derain
from utils.io.checkpoints import save_checkpoint
from utils.io.images import to_tensor
from utils.metrics.complexity import complexity
from utils.synthetic.sets import make_rainy_set, write_rainy_set

COMPILE = "+compile"  # a precision with this suffix runs a torch.compile'd model


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} must look like HxW, e.g. 321x481") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive")
    return h, w


def run_worker(args) -> dict:
    """One measurement (`--worker KIND:HxW:PRECISION[:THREADS]`) in this process, as a dict."""
    kind, size, precision_mode, mode = (args.worker.split(":") + ["flag"])[:4]
    h, w = parse_size(size)
    # First, before any torch work (which would count as load): the thread count.
    choice = (threads.apply_threads(args.threads) if mode == "flag"
              else threads.ThreadChoice(torch.get_num_threads(), "torch default"))
    cfg = config_from_args(args)
    device = pick_device(args.device)
    model, cfg.model = build(args, cfg, device)
    precision = Precision(device, precision_mode.removesuffix(COMPILE), training=kind == "train")
    compiled = precision_mode.endswith(COMPILE) or cfg.train.compile  # or --set train.compile=true
    result = {"kind": kind, "size": size, "precision": precision_mode, "autocast": precision.name,
              "compile": compiled, "device": device_name(device), "threads": torch.get_num_threads(),
              "thread_choice": str(choice)}
    if kind == "eval":
        return result | eval_overlap(args, cfg, device, (h, w))
    if kind == "complexity":
        return result | complexity(model.eval(), (h, w))
    if compiled:
        model = torch.compile(model)
    measure = train_step_times if kind == "train" else forward_times
    return result | measure(args, kind, cfg, model, precision, (h, w)) | peak_memory(device)


def train_step_times(args, kind: str, cfg, model, precision: Precision, shape: tuple[int, int]) -> dict:
    """Times of a training step (forward, loss, backward, Adam) at batch --train-batch."""
    device = precision.device
    loss_fn = HCNLoss(cfg.loss.weights).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    scaler = precision.scaler  # as in training: loss scaling for fp16, skips inf/NaN steps
    rainy = torch.rand(args.train_batch, 3, *shape, device=device)
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
        precision.update_scale()

    times = timed(step, args.repeats, device)
    return times | {"batch": args.train_batch, "patches_per_s": args.train_batch / times["median_s"]}


def forward_times(args, kind: str, cfg, model, precision: Precision, shape: tuple[int, int]) -> dict:
    """Times of one derain (`tiled`: in --tile tiles, one run); --dump saves the output."""
    device = precision.device
    model.eval()
    rainy = bench_image(*shape, device)
    tile = args.tile if kind == "tiled" else None
    outputs = []

    def step():
        outputs[:] = [derain(model, rainy, tile=tile, precision=precision)]

    if kind == "tiled":
        # Warm up on one tile only: a second full 4K pass would double a long run.
        derain(model, rainy[..., :tile, :tile], precision=precision)
    times = timed(step, args.repeats if kind == "forward" else 1, device, warmup=kind == "forward")
    if args.dump:
        torch.save(outputs[0].cpu(), args.dump)
    return times | {"images_per_s": 1.0 / times["median_s"], "tile": tile}


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
        passes = (("eval", []),) if args.no_sequential else (("eval", []), ("sequential", ["--sequential"]))
        for key, extra in passes:
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
