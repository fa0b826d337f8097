"""Exponential moving average of model weights (cfg.train.ema_decay > 0 enables it).

Why not `torch.optim.swa_utils.AveragedModel` with `get_ema_multi_avg_fn`: it lists and
detaches every tensor on each call, where this builds the tensor lists once and then does
a few foreach operations, faster per update (docs/performance.md). The results are
bit-identical to a per-tensor lerp.
It would also change the checkpoint's "ema" entry (a "module." prefix and a counter) and
start the average with a copy instead of a first averaging step.
"""
from __future__ import annotations

import copy

import torch


class ModelEMA:
    """Shadow copy updated after every optimizer step: ema = d * ema + (1 - d) * weights.

    Floating-point tensors (parameters and buffers) are averaged, other buffers copied. The
    shadow is a full module, so validation can run it. The averaged model's tensors must be
    updated in place (as optimizers and load_state_dict do): they are looked up once.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must be in (0, 1) to enable EMA, got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._source: torch.nn.Module | None = None
        self._averaged: tuple[list, list] = ([], [])
        self._copied: tuple[list, list] = ([], [])

    def _bind(self, model: torch.nn.Module) -> None:
        shadow = self.module.state_dict(keep_vars=True)
        live = model.state_dict(keep_vars=True)
        if shadow.keys() != live.keys():
            raise ValueError("ModelEMA.update: the model's tensors differ from the shadow's")
        self._averaged, self._copied = ([], []), ([], [])
        for key, value in live.items():
            target = self._averaged if value.dtype.is_floating_point else self._copied
            target[0].append(shadow[key])
            target[1].append(value)
        self._source = model

    @torch.no_grad()
    def update(self, model: torch.nn.Module, stepped: torch.Tensor) -> None:
        """One averaging step if `stepped` (a boolean tensor), else none: decided on the device,
        so a skipped optimizer step costs no wait for it."""
        if model is not self._source:
            self._bind(model)
        shadow, live = self._averaged
        if shadow:
            # The lerp's target is the live weights, or the shadow itself (a lerp that changes
            # nothing) after a skipped step; x * 1 + y * 0 is x exactly for finite weights.
            keep = stepped.to(shadow[0].dtype)
            target = torch._foreach_mul(live, keep)
            torch._foreach_add_(target, torch._foreach_mul(shadow, 1 - keep))
            torch._foreach_lerp_(shadow, target, 1.0 - self.decay)
        for target, value in zip(*self._copied):
            target.copy_(torch.where(stepped, value, target))

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
