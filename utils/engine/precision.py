"""Mixed precision on CUDA: bf16 autocast where the GPU supports it, else fp16 + GradScaler.

On CPU/MPS (or with train.amp off) everything runs in float32 and the scaler is disabled,
so the same training code serves every device.
"""
from __future__ import annotations

import contextlib

import torch


class Precision:
    def __init__(self, device: torch.device, amp: bool):
        self.device = device
        self.dtype: torch.dtype | None = None
        if amp and device.type == "cuda":
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        # Only fp16 needs loss scaling; bf16 has float32's exponent range.
        enabled = self.dtype == torch.float16
        if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
            self.scaler = torch.amp.GradScaler("cuda" if enabled else "cpu", enabled=enabled)
        else:
            self.scaler = torch.cuda.amp.GradScaler(enabled=enabled)

    @property
    def name(self) -> str:
        return {None: "float32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)
