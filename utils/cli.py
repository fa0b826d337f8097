"""What the five scripts share on the command line: `run_main` (exit codes), the device,
--threads, --resume, the inference flags, the default checkpoint, and opening a checkpoint's model with
messages fit for a user.

Exit codes, the same for every script (`sys.exit(run_main(main))`):
  0  done;
  1  a runtime failure (a traceback on stderr and in the run's log);
  2  a usage or data error: one line `error: ...` naming the file or field, no traceback
     (any `utils.errors.UserError`; argparse's own usage errors exit 2 too);
  130 Ctrl-C where the script does not handle it (the training scripts save a checkpoint
     and exit 128 + the signal number instead: 130 SIGINT, 143 SIGTERM, 129 SIGHUP);
  124 (training scripts) stopped at the time limit (--time-limit, train.max_hours), resumable.
"""
from __future__ import annotations

import argparse
import logging
import sys
import traceback
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from config import PRECISIONS
from utils import logs, threads
from utils.engine.precision import Precision
from utils.engine.time_limit import parse_duration
from utils.errors import UserError
from utils.io import shipped
from utils.io.checkpoints import CheckpointError, load_checkpoint, load_model
from utils.io.images import DEFAULT_MAX_PIXELS

log = logs.get("cli")

DEMO_CHECKPOINT = "runs/demo/best.pth"  # what `python train.py` (the demo preset) writes
AUTO_TILE = 512
AUTO_TILE_PIXELS = 1024 * 1024


# ----------------------------------------------------------------------------- exit codes
def run_main(main: Callable[[Optional[Sequence[str]]], Optional[int]],
             argv: Optional[Sequence[str]] = None) -> int:
    """Run a script's `main(argv)` and map its outcome to the exit code (module docstring)."""
    try:
        code = main(argv)
    except UserError as exc:
        message = one_line(exc)
        print(f"error: {message}", file=sys.stderr, flush=True)
        logs.to_files(logging.ERROR, message)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        logs.to_files(logging.ERROR, "interrupted (Ctrl-C)")
        return 130
    except SystemExit:
        raise  # argparse (2 on a usage error, 0 for --help), or an explicit exit
    except Exception as exc:  # noqa: BLE001 - a runtime failure: traceback, exit 1
        logs.to_files(logging.ERROR, f"failed: {exc!r}", exc_info=sys.exc_info())
        traceback.print_exc()
        return 1
    return int(code or 0)


def one_line(exc: BaseException) -> str:
    """The message of an error on one line (a DataLoader worker's re-raise keeps its last line)."""
    text = str(exc).strip() or type(exc).__name__
    if "Traceback" in text:
        text = text.splitlines()[-1]
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


# ----------------------------------------------------------------------------- device
def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, ...")


def threads_flag(text: str) -> int:
    """argparse type of --threads: N >= 0 or "auto" (0 and auto: threads.AUTO)."""
    try:
        return threads.parse_count(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a thread count >= 0 or 'auto', got {text!r}") from None


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=threads_flag, default=None, metavar="N|auto",
                        help="CPU threads for torch: N, or auto (also 0) = as many as CPUs are "
                             "free right now; default: $OMP_NUM_THREADS if set, else auto "
                             "(utils/threads.py)")


def pick_device(name: str = "auto") -> torch.device:
    """`auto` prefers CUDA, then MPS, then CPU; an explicit name is validated."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name}: not a device name (auto, cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine")
    return device


def add_precision_arg(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--precision", default=default, choices=PRECISIONS,
                        help="forward pass in fp32, in bf16 autocast, or auto: bf16 where the "
                             "device computes it natively (a GPU of compute capability 8.0+, a CPU "
                             f"with avx512_bf16 or amx_bf16), else fp32 (default {default})")


def pick_precision(name: str, device: torch.device) -> Precision:
    """The --precision flag resolved for `device`, logged ('precision: fp32 (auto: ...)'); a
    warning when bf16 is requested where it is only emulated."""
    precision = Precision(device, name)
    log.log(logging.WARNING if precision.emulated else logging.INFO, precision.describe())
    return precision


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (before reading a timer)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- training scripts
def add_max_pixels_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-pixels", type=int, default=None, metavar="N",
                        help=f"refuse images whose header declares more than N pixels, before "
                             f"decoding them (default {DEFAULT_MAX_PIXELS:,})")


class _TimeLimit(argparse.Action):
    """--time-limit DURATION: the override train.max_hours=HOURS, in order among the --set ones."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            seconds = parse_duration(values)
        except ValueError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None
        namespace.overrides = [*(getattr(namespace, "overrides", None) or []),
                               f"train.max_hours={seconds / 3600!r}"]


def add_run_args(parser: argparse.ArgumentParser, run_dir: str) -> None:
    """--resume, --overwrite, --time-limit, --device, --max-pixels and --quiet/--verbose,
    shared by the training scripts; `run_dir` names the run folder."""
    parser.add_argument("--resume", default=None, metavar="PATH|auto",
                        help=f"continue from a checkpoint, writing next to it; 'auto' = "
                             f"{run_dir}/latest.pth if it exists")
    parser.add_argument("--overwrite", action="store_true",
                        help=f"start afresh even if {run_dir} holds a run (its checkpoints are deleted)")
    parser.add_argument("--time-limit", action=_TimeLimit, metavar="DURATION",
                        help="stop cleanly, latest.pth saved, before this much wall time has passed "
                             "since the start (3h30m, 90m, 5400 seconds, 23:30:00; sets "
                             "train.max_hours); exit code 124, continue with --resume auto")
    add_device_arg(parser)
    add_threads_arg(parser)
    add_max_pixels_arg(parser)
    logs.add_log_args(parser)


# ----------------------------------------------------------------------------- inference scripts
class UsageError(UserError, ValueError):
    """A bad flag value (exit 2); still a ValueError for callers that catch those."""


class MissingCheckpoint(UserError, FileNotFoundError):
    """The checkpoint file does not exist (the message says how to make one)."""


def missing_checkpoint_hint(path: str | Path) -> str:
    """How to make the checkpoint: train the demo model when it is the default one."""
    if str(path) == DEMO_CHECKPOINT:
        return "train the demo model first with `python train.py` (a few minutes on a CPU), "
    return ""


def default_checkpoint() -> tuple[Path, str]:
    """(path, description) of the weights used when the user names none: the demo run when
    `python train.py` has written one here, else the model shipped in weights/."""
    if Path(DEMO_CHECKPOINT).is_file():
        return Path(DEMO_CHECKPOINT), (f"the demo model {DEMO_CHECKPOINT} (light synthetic rain "
                                       "only; pass --checkpoint weights/standard.pth for real photos)")
    return shipped.SHIPPED, f"the shipped model {shipped.SHIPPED.name} (mixed synthetic rain)"


def resolve_checkpoint(value: str | Path | None) -> Path:
    """The --checkpoint/--init flag, or the default weights; says which weights are used."""
    if value:
        return Path(value)
    path, description = default_checkpoint()
    log.info(f"weights: {description}")
    return path


def open_model(path: str | Path, device: torch.device, use_ema: bool = True,
               position_extent: int | None = None):
    """`load_model` with a hint to train first when the file is missing.

    Returns (model in eval mode on `device`, Config). Raises MissingCheckpoint or
    CheckpointError (both with messages fit for the user).
    """
    path = Path(path)
    if path.resolve() == shipped.SHIPPED:
        shipped.verify(path)  # a truncated or replaced file is an error, not a silent wrong model
    if not path.is_file():
        hint = missing_checkpoint_hint(path)
        raise MissingCheckpoint(f"checkpoint {path} not found: {hint}{'or ' if hint else ''}pass "
                                f"--checkpoint PATH to a checkpoint written by train.py or real_train.py")
    try:
        return load_model(path, device, use_ema=use_ema, position_extent=position_extent)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}{_describe_model_config(path)}") from None


def _describe_model_config(path: Path) -> str:
    """'; its config says: channels=20, ...' so a mismatch names what the file holds."""
    try:
        model_cfg = load_checkpoint(path)["config"].get("model", {})
    except (CheckpointError, AttributeError):
        return ""
    if not isinstance(model_cfg, dict) or not model_cfg:
        return ""
    keys = ("channels", "encoder_blocks", "legacy_code_quirks")
    held = ", ".join(f"{k}={model_cfg[k]}" for k in keys if k in model_cfg)
    return f" (its config says model {held})" if held else ""


def add_inference_args(parser: argparse.ArgumentParser, default_tile: str | None = None,
                       several_checkpoints: bool = False, default_precision: str = "fp32") -> None:
    """Flags shared by eval.py and show.py: checkpoint, device, precision, tiling, ensemble,
    --quiet/--verbose. `several_checkpoints`: --checkpoint [NAME=]PATH is repeatable (a list,
    default [])."""
    default = (f"default: {DEMO_CHECKPOINT} if it exists, else the shipped weights/standard.pth")
    if several_checkpoints:
        parser.add_argument("--checkpoint", action="append", default=[], metavar="[NAME=]PATH",
                            help="checkpoint written by train.py/real_train.py, or "
                                 "weights/standard.pth; repeatable, one table row each; NAME= is "
                                 f"optional (default: the file's folder) ({default})")
    else:
        parser.add_argument("--checkpoint", default=None,
                            help="checkpoint written by train.py/real_train.py, or "
                                 f"weights/standard.pth ({default})")
    parser.add_argument("--no-ema", action="store_true",
                        help="use the raw weights even when the checkpoint holds EMA weights")
    add_device_arg(parser)
    add_precision_arg(parser, default_precision)
    parser.add_argument("--tile", default=default_tile,
                        help="tile side for tiled inference (0: whole image; auto: tiles of 512 "
                             f"for images above 1 megapixel; default {default_tile or 0})")
    parser.add_argument("--overlap", type=int, default=32, help="minimum tile overlap in pixels (default 32)")
    parser.add_argument("--tile-batch", type=int, default=4, help="tiles per model call (default 4)")
    parser.add_argument("--ensemble", action="store_true",
                        help="flip self-ensemble: average the 4 flips (4x slower; no quarter "
                             "turns: they make near-vertical rain horizontal)")
    parser.add_argument("--position-extent", type=_non_negative_int, default=None, metavar="N",
                        help="squeeze BiSCSM's position code of inputs larger than N px into the "
                             "range of N px training patches (position interpolation); 0: raw "
                             "positions, as the paper (default: the checkpoint's "
                             "model.position_extent)")
    add_threads_arg(parser)
    add_max_pixels_arg(parser)
    logs.add_log_args(parser)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def trained_on(cfg) -> str:
    """What a checkpoint's model was trained on, from its config (for tables a user reads)."""
    data = cfg.data
    if data.root is not None:
        return f"data set {data.root} (layout {data.layout})"
    how = "made on the fly" if data.synthetic_fresh else f"{data.synthetic_count} images"
    style = ("random rain styles (`mixed`)" if data.synthetic_preset == "mixed"
             else f"`{data.synthetic_preset}` rain")
    return (f"embedded synthetic {style}, {how} of {data.synthetic_size} px "
            f"(data.synthetic_preset={data.synthetic_preset})")


def resolve_tile(value: str | int | None, height: int, width: int) -> int | None:
    """Turn the --tile flag into a tile side (None: whole image)."""
    if value is None:
        return None
    if isinstance(value, str):
        if value == "auto":
            return AUTO_TILE if height * width > AUTO_TILE_PIXELS else None
        try:
            value = int(value)
        except ValueError:
            raise UsageError(f"--tile must be an integer or 'auto', got {value!r}") from None
    if value < 0:
        raise UsageError(f"--tile must be >= 0, got {value}")
    return value or None
