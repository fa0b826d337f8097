"""Exponential moving average of model weights (cfg.train.ema_decay > 0 enables it)."""
from __future__ import annotations

import copy

import torch


class ModelEMA:
    """Shadow copy updated after every optimizer step: ema = d * ema + (1 - d) * weights.

    Buffers are copied as they are. The shadow is a full module, so validation can run it.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must be in (0, 1) to enable EMA, got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        ema_state = self.module.state_dict()
        for key, value in model.state_dict().items():
            shadow = ema_state[key]
            if value.dtype.is_floating_point:
                shadow.lerp_(value.detach(), 1.0 - self.decay)
            else:
                shadow.copy_(value)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
