"""Pick the compute device: CUDA when present, then Apple MPS, else CPU."""
from __future__ import annotations

import torch


def pick_device(name: str = "auto") -> torch.device:
    """`auto` prefers CUDA, then MPS, then CPU; an explicit name is validated."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available on this machine")
    return device
