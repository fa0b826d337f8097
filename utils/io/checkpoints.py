"""Checkpoint files: atomic writes, safe loading, and opening one as a validated model.

A checkpoint is a dict with at least `config` (the full resolved `Config.to_dict()`)
and `model` (a state dict). Training adds `optimizer`, `scheduler`, `step`, `rng`,
and optionally `ema`. Everything in it is loadable with `weights_only=True`.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch

from config import Config, validate
from networks import build_model
from utils.config_parse import config_from_dict
from utils.errors import UserError
from utils.io.files import atomic_write


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file is missing, unreadable or does not fit the model."""


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write to a temp file in the same folder, fsync, then rename: never a torn file."""
    with atomic_write(path) as handle:
        torch.save(state, handle)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise CheckpointError(f"checkpoint {path} cannot be read: {_load_failure(exc)}") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path} is not an HCN checkpoint (expected keys 'config' and "
                              f"'model', found {sorted(state) if isinstance(state, dict) else type(state).__name__})")
    return state


def _load_failure(exc: Exception) -> str:
    """torch's reason in one line, without its advice to re-run with weights_only=False (that
    would execute whatever code the file carries: never suggested here)."""
    text = str(exc)
    if "Weights only load failed" in text or "weights_only" in text:
        if "Unsupported global" in text:
            return ("it holds pickled Python objects, not plain tensors and numbers; this code "
                    "only loads plain-data checkpoints (as written by train.py/real_train.py)")
        return "not a PyTorch checkpoint of plain data (corrupt, truncated or another kind of file)"
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


TRAINING_KEYS = ("optimizer", "scheduler", "step")


def check_resumable(state: dict, path: str | Path) -> None:
    """A checkpoint `--resume` can continue: the full training state, not weights only."""
    missing = [k for k in TRAINING_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path} holds weights only (no {', '.join(missing)}), so it cannot be "
                              f"resumed; resume from the run's latest.pth, or start a new run from "
                              f"these weights (real_train.py --init {path})")


def check_fits(model_cfg, weights: dict, source: str) -> None:
    """load_weights' checks against the model a config describes, built on the meta device:
    a crafted config (a huge width) is refused before any memory is allocated."""
    with torch.device("meta"):
        model = build_model(model_cfg)
    _check_weights(model.state_dict(), weights, source)


class OpenedCheckpoint(NamedTuple):
    """A checkpoint whose config is valid for this code and whose weights fit that config."""

    state: dict  # everything the file holds (optimizer state, step, ...)
    config: Config
    weights: dict  # the published weights (`published_weights`), checked against config.model


def open_checkpoint(path: str | Path, use_ema: bool = True, source: str | None = None) -> OpenedCheckpoint:
    """Read a checkpoint, validate its stored config and check its weights fit the model that
    config describes (on the meta device: nothing is allocated for a crafted config).
    Every problem is a CheckpointError that names `source` (default: the path)."""
    source = source or str(path)
    state = load_checkpoint(path)
    try:
        cfg = config_from_dict(state["config"])
    except (ValueError, TypeError) as exc:  # TypeError: keys of mixed types cannot be listed
        raise CheckpointError(f"{source}: its config is not valid for this code: {exc}") from None
    weights = published_weights(state, use_ema)
    if not isinstance(weights, dict):
        raise CheckpointError(f"{source}: its weights are not a state dict")
    check_fits(cfg.model, weights, source)
    return OpenedCheckpoint(state, cfg, weights)


def load_model(path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True,
               position_extent: int | None = None):
    """Rebuild the model a checkpoint was trained with and load its weights (EMA if present).

    `position_extent` replaces the config's `model.position_extent` (an inference choice: it
    changes no weight). Returns (model in eval mode on `device`, Config of the checkpoint, with
    that replacement).
    """
    _, cfg, weights = open_checkpoint(path, use_ema)
    if position_extent is not None:
        cfg.model.position_extent = position_extent
        validate(cfg)  # the config's own bounds, as for any override
    model = build_model(cfg.model)
    load_weights(model, weights, source=str(path))
    return model.to(device).eval(), cfg


def published_weights(state: dict, use_ema: bool = True) -> dict:
    """The weights a checkpoint publishes: its EMA shadow if present (and wanted), else the
    trained weights."""
    return state["ema"] if use_ema and state.get("ema") is not None else state["model"]


def load_weights(model: torch.nn.Module, weights: dict, source: str) -> None:
    """load_state_dict with a message that says what the checkpoint holds."""
    weights = _check_weights(model.state_dict(), weights, source)
    model.load_state_dict(weights)


def _check_weights(expected: dict, weights: dict, source: str) -> dict:
    """`weights` without DDP/compile prefixes; CheckpointError unless they match `expected`."""
    weights = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in weights.items()
               if isinstance(k, str)}
    bad = sorted(k for k, v in weights.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise CheckpointError(f"{source}: weight entries that are not tensors (e.g. {bad[:3]})")
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = sorted(k for k in set(expected) & set(weights) if expected[k].shape != weights[k].shape)
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if wrong:
            k = wrong[0]
            details.append(f"{len(wrong)} with other shapes (e.g. {k}: checkpoint "
                           f"{tuple(weights[k].shape)} vs model {tuple(expected[k].shape)})")
        raise CheckpointError(f"{source} does not fit this model: " + "; ".join(details))
    return weights
