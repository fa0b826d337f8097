"""Model size and compute: parameter count and multiply-accumulates (MACs).

MACs come from `torch.utils.flop_counter.FlopCounterMode` (MACs = FLOPs / 2), which counts
convolutions *and* the attention matmuls, unlike conv-only counters (thop, ptflops) that
under-count attention models (docs/method.md#metric-protocols). The count runs the inference path
(`forward(x, branches=False)`, what eval.py times) on meta tensors when the model allows
it, so it costs no real compute even for the paper model.
"""
from __future__ import annotations

import copy

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_parameters", "count_macs", "complexity"]


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (shared parameters counted once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def _run_counted(model: torch.nn.Module, x: torch.Tensor, branches: bool) -> int:
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x, branches=branches)
    return counter.get_total_flops()


def _input_shape(shape: int | tuple[int, ...]) -> tuple[int, int, int, int]:
    """256 -> (1,3,256,256); (H, W) -> (1,3,H,W); (B,3,H,W) as is."""
    if isinstance(shape, int):
        return (1, 3, shape, shape)
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        return (1, 3) + shape
    if len(shape) == 4:
        return shape
    raise ValueError(f"input shape must be S, (H, W) or (B, 3, H, W), got {shape}")


def count_macs(model: torch.nn.Module, shape: int | tuple[int, ...] = 256,
               branches: bool = False) -> int:
    """MACs (FLOPs/2) of one forward pass on an input of `shape` (S, (H, W) or (B,3,H,W)).

    Tries a meta-device copy first (shapes only, instant); models whose forward needs real
    values fall back to a real pass on the model's device.
    """
    shape = _input_shape(shape)
    try:
        meta = copy.deepcopy(model).to("meta")
        flops = _run_counted(meta, torch.zeros(shape, device="meta"), branches)
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        # Some op has no meta kernel or reads a value: count a real pass instead.
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        was_training = model.training
        model.eval()
        try:
            flops = _run_counted(model, torch.rand(shape, device=device), branches)
        finally:
            model.train(was_training)
    return flops // 2


def complexity(model: torch.nn.Module, size: int | tuple[int, int] = 256,
               branches: bool = False) -> dict:
    """{'params', 'macs', 'gmacs', 'size'} for reports (size is 'HxW' of the counted input)."""
    shape = _input_shape(size)
    macs = count_macs(model, shape, branches=branches)
    return {"params": count_parameters(model), "macs": macs, "gmacs": macs / 1e9,
            "size": f"{shape[2]}x{shape[3]}"}
