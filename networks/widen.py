"""Widen trained HCN weights to a multiple of their width without changing the function.

A model that underfits needs more channels, and training a wider one from scratch throws
away hours of training. Widening keeps every trained channel and adds new ones that start
out invisible (docs/method.md#widening-a-trained-model):

- old output channels see only old inputs (the weights from new inputs to them are zero),
  so every old activation, and therefore every output, is exactly what it was;
- new output channels get the fresh initialisation of the wider model, so they carry
  signal and the zero weights leaving them get gradients from the first step;
- BiSCSM's key embeddings start at zero in their new dimensions (new query dimensions stay
  random), so the similarity scores, and the key norms, do not change;
- the positional code of a wider model holds every frequency of the narrower one when the
  width grows by an integer factor (4 x the number of frequencies): each old code channel
  is mapped to the new channel that carries the same sine or cosine.
"""
from __future__ import annotations

import torch

from .attention import MINE
from .biscsm import PEC, positional_embedding
from .hcn import build_model

_PROBE = 23  # rows and columns of the position grid used to match code channels


class WidenError(ValueError):
    """The weights cannot be widened to the requested width."""


def _position_code_map(old: int, new: int) -> list[int]:
    """Index, in a `new`-channel positional code, of each channel of an `old`-channel one."""
    old_code = positional_embedding(old, _PROBE, _PROBE, torch.float64)[0].flatten(1)
    new_code = positional_embedding(new, _PROBE, _PROBE, torch.float64)[0].flatten(1)
    match = torch.cdist(old_code, new_code).argmin(dim=1)
    if not torch.allclose(new_code[match], old_code, atol=1e-9):
        raise WidenError(f"the {new}-channel position code does not contain every frequency of "
                         f"the {old}-channel one; widen by an integer factor of a width that "
                         f"is a multiple of 4")
    return match.tolist()


def _channel_map(size_old: int, size_new: int, old: int, new: int) -> list[int]:
    """Where each index of a dimension made of width-sized blocks lands after widening
    (a dimension that does not change, such as RGB, keeps its indices)."""
    if size_old == size_new:
        return list(range(size_old))
    if size_old % old or size_new * old != size_old * new:
        raise WidenError(f"a dimension of {size_old} does not scale with the width")
    return [block * new + i for block in range(size_old // old) for i in range(old)]


def widen_weights(weights: dict, old_channels: int, model_cfg, seed: int = 0) -> dict:
    """`weights` of an HCN of width `old_channels`, widened to `model_cfg` (same blocks,
    `model_cfg.channels` an integer multiple). New channels take the initialisation of a
    fresh model drawn with `seed` (the global random state is left alone)."""
    new_channels = model_cfg.channels
    if new_channels % old_channels or new_channels <= old_channels:
        raise WidenError(f"width {new_channels} is not a multiple of {old_channels} larger than it")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = build_model(model_cfg)
    code_map = _position_code_map(old_channels, new_channels)
    mixes = {f"{name}.mix.weight" for name, m in fresh.named_modules() if isinstance(m, PEC)}
    mines = [name for name, m in fresh.named_modules() if isinstance(m, MINE)]
    keys = {f"{name}.g.0" for name in mines}
    embeddings = keys | {f"{name}.theta.0" for name in mines}  # C // r wide

    out = {}
    for name, init in fresh.state_dict().items():
        old = weights[name].to(init.dtype)
        new = init.clone()
        module = name.rsplit(".", 1)[0]
        if module in keys:
            new.zero_()  # new key dimensions add nothing to any score
        if module in embeddings:  # the old dimensions first
            rows = list(range(old.shape[0]))
        else:
            rows = _channel_map(old.shape[0], new.shape[0], old_channels, new_channels)
        rows = torch.tensor(rows)
        if new.dim() == 1:
            new[rows] = old
        else:
            cols = _channel_map(old.shape[1], new.shape[1], old_channels, new_channels)
            if name in mixes:  # input = [features | positional code]
                cols = cols[:old_channels] + [new_channels + j for j in code_map]
            block = torch.zeros((len(rows), new.shape[1]) + tuple(new.shape[2:]), dtype=new.dtype)
            block[:, cols] = old
            new[rows] = block
        out[name] = new
    return out


__all__ = ["WidenError", "widen_weights"]
