"""Which config a run uses: preset + overrides, or, on --resume, the checkpoint's own config;
and which checkpoint a resume continues from.

Shared by train.py and real_train.py so both resume the same way (the flag itself is in
utils.cli.add_run_args).

Crash safety: train.py writes best.pth *before* the latest.pth that refers to it, both
atomically. A kill between the two leaves a best.pth one checkpoint ahead of latest.pth;
since best.pth holds the same full training state, resuming picks the newer of the two
(`pick_resume_file`). `reconcile_best` then checks that best.pth is the model of the
resumed `best_step` (re-saving it from the resumed state when that state is the best one,
e.g. for a folder written by an older version that saved latest.pth first).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

from config import Config
from utils import logs
from utils.config_parse import apply_override, build_config
from utils.io.checkpoints import CheckpointError, check_resumable, load_checkpoint, open_checkpoint

log = logs.get("resume")


def _get(cfg: Config, dotted: str):
    section, name = dotted.split(".")
    return getattr(getattr(cfg, section), name)


def _set(cfg: Config, dotted: str, value) -> None:
    section, name = dotted.split(".")
    setattr(getattr(cfg, section), name, value)


def _step_of(path: Path) -> int | None:
    try:
        state = load_checkpoint(path)
        check_resumable(state, path)
        return int(state["step"])
    except (CheckpointError, TypeError, ValueError):
        return None


def pick_resume_file(path: Path) -> Path:
    """`path`, or its sibling best.pth when `path` is a latest.pth and best.pth is a full state
    at a later step (a kill landed between the two writes)."""
    best = path.parent / "best.pth"
    if path.name != "latest.pth" or not best.is_file():
        return path
    best_step = _step_of(best)
    if best_step is None:
        return path
    latest_step = _step_of(path) if path.is_file() else None
    return best if latest_step is None or best_step > latest_step else path


def resolve_config(preset: str, overrides: list[str], resume: Optional[str],
                   name_field: str, config_file: Optional[str] = None,
                   ) -> tuple[Config, Optional[dict], Optional[Path]]:
    """(config, checkpoint state or None, checkpoint path or None).

    `resume` is None, a checkpoint path, or 'auto' (= runs/<name>/latest.pth, or best.pth when
    newer, if either exists, else a fresh run). `name_field` ("train.name", "online.name")
    names the run folder under train.out_dir. A resumed run keeps the checkpoint's config and
    writes next to the checkpoint (not where its stored config points); the same overrides
    are applied on top (e.g. --set train.iterations=... to extend a finished run, or
    --set train.out_dir=... to write elsewhere). `config_file` (--config) replaces the preset.
    Reads only: nothing is written here.
    """
    cfg = build_config(preset, overrides, config_file)
    if not resume:
        return cfg, None, None
    path = Path(resume)
    if resume == "auto":
        path = Path(cfg.train.out_dir) / _get(cfg, name_field) / "latest.pth"
        path = pick_resume_file(path)
        if not path.is_file():
            log.info(f"--resume auto: no {path} yet, starting a new run")
            return cfg, None, None
    else:
        path = pick_resume_file(path)
    state, cfg, _ = open_checkpoint(path, use_ema=False)  # the weights the optimizer trains
    check_resumable(state, path)
    run_dir = path.parent if path.parent.name else path.resolve().parent
    cfg.train.out_dir = str(run_dir.parent)
    _set(cfg, name_field, run_dir.name)
    for item in overrides:
        apply_override(cfg, item)
    return cfg, state, path


def reconcile_best(run_path: Path, state: dict, save: Callable[[dict, Path], None],
                   source: Path | None = None) -> tuple[int, float, str | None]:
    """(best_step, best_metric, note) to continue with, after checking run_path/best.pth against
    the resumed `state`; `save(state, path)` re-saves best.pth when the state is the best one,
    and latest.pth when the state came from a best.pth ahead of it (`source`)."""
    best_step = int(state.get("best_step", -1))
    best_metric = float(state.get("best_metric", -math.inf))
    latest = Path(run_path) / "latest.pth"
    if source is not None and Path(source).name == "best.pth":
        latest_step = _step_of(latest) if latest.is_file() else None
        if latest_step is None or latest_step < int(state["step"]):
            save(state, latest)  # latest.pth (older or torn) catches up with the state resumed from
    if best_step < 0:
        return best_step, best_metric, None
    path = Path(run_path) / "best.pth"
    try:
        best = load_checkpoint(path)
        best_at = int(best.get("step", -1))
    except (CheckpointError, TypeError, ValueError):
        best, best_at = None, None
    if best_at == best_step:
        return best_step, best_metric, None
    found = "is missing" if not path.is_file() else (
        "is unreadable" if best is None else f"is from step {best_at}")
    if int(state["step"]) == best_step:
        save(state, path)
        return best_step, best_metric, (f"{path} {found} but the resumed state (step {best_step}) is "
                                        f"the best one: best.pth re-saved from it")
    if best is not None and 0 <= best_at <= int(state["step"]) and "best_metric" in best:
        return best_at, float(best["best_metric"]), (
            f"{path} {found}, not the recorded best step {best_step} (that model is lost): "
            f"model selection continues from best.pth's own step {best_at}")
    return -1, -math.inf, (f"{path} {found} and the best model of step {best_step} is lost: "
                           f"the next validation writes a new best.pth")
