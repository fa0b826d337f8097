"""Checkpoint files: atomic writes, safe loading, and model reconstruction.

A checkpoint is a dict with at least `config` (the full resolved `Config.to_dict()`)
and `model` (a state dict). Training adds `optimizer`, `scheduler`, `step`, `rng`,
and optionally `ema`. Everything in it is loadable with `weights_only=True`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from config import Config
from networks import build_model
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
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc}") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path} is not an HCN checkpoint (expected keys 'config' and "
                              f"'model', found {sorted(state) if isinstance(state, dict) else type(state).__name__})")
    return state


def load_model(path: str | Path, device: str | torch.device = "cpu", use_ema: bool = True):
    """Rebuild the model a checkpoint was trained with and load its weights (EMA if present).

    Returns (model in eval mode on `device`, Config of the checkpoint).
    """
    state = load_checkpoint(path)
    try:
        cfg = Config.from_dict(state["config"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: its config is not valid for this code: {exc}") from None
    model = build_model(cfg.model)
    load_weights(model, published_weights(state, use_ema), source=str(path))
    return model.to(device).eval(), cfg


def published_weights(state: dict, use_ema: bool = True) -> dict:
    """The weights a checkpoint publishes: its EMA shadow if present (and wanted), else the
    trained weights."""
    return state["ema"] if use_ema and state.get("ema") is not None else state["model"]


def load_weights(model: torch.nn.Module, weights: dict, source: str) -> None:
    """load_state_dict with a message that says what the checkpoint holds."""
    weights = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in weights.items()}
    expected = model.state_dict()
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
    model.load_state_dict(weights)
