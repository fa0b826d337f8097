"""Numeric precision of the model's forward pass, shared by every script: fp32, bf16, or auto.

    show.py / eval.py / scripts/bench.py   --precision fp32|bf16|auto   (show: auto, eval: fp32)
    real_train.py label refresh    online.refresh_precision     (default auto)
    training (train.py, real_train.py's updates)  train.precision  (default auto)

fp32 runs without autocast. bf16 runs the forward pass under
`torch.autocast(device_type, dtype=torch.bfloat16)`; outputs are cast back to float32
before losses, metrics and files (`derain` and the training loss functions do so). `auto`
picks bf16 only where it is fast: a CUDA GPU with native bf16 (compute capability 8.0+),
or a CPU whose flags include native bf16 (`avx512_bf16` or `amx_bf16`). Elsewhere it is
fp32: on a CPU without them bf16 is emulated, and on the AVX2 machine this code was
developed on a 256x256 forward of the `standard` model took 41 s in bf16 against 2.4 s in
fp32. For training on a GPU without native bf16, `auto` is fp16 autocast with loss scaling
(inference on such a GPU stays fp32).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from config import PRECISIONS
from utils.errors import UserError

FAST_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
_CPUINFO = Path("/proc/cpuinfo")
_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def cpu_flags(cpuinfo: str) -> set[str]:
    """The CPU feature flags in the text of /proc/cpuinfo (its `flags`/`Features` lines), or in a
    bare whitespace-separated list of flags."""
    flags, found = set(), False
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            flags.update(value.lower().split())
            found = True
    return flags if found else set(cpuinfo.lower().split())


def cpu_has_fast_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16), so that bf16
    autocast is faster than fp32. `cpuinfo`: the text of /proc/cpuinfo or a list of flags
    (tests inject it); None reads /proc/cpuinfo, or asks torch where there is none."""
    if cpuinfo is None:
        try:
            cpuinfo = _CPUINFO.read_text(errors="replace")
        except OSError:  # not Linux: torch's own view of the CPU
            capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
            text = capability().upper() if capability is not None else ""
            return "BF16" in text or "AMX" in text
    return bool(cpu_flags(cpuinfo) & set(FAST_BF16_CPU_FLAGS))


def cuda_has_fast_bf16(device: torch.device) -> bool:
    """Native bf16 on this GPU: compute capability 8.0+ (Ampere on); torch's
    `is_bf16_supported()` also counts emulated bf16, which is slower than fp32."""
    return torch.cuda.get_device_capability(device) >= (8, 0)


def resolve(requested: str, device: torch.device, training: bool = False,
            cpuinfo: str | None = None) -> tuple[torch.dtype | None, str]:
    """(autocast dtype or None for fp32, why) for a `requested` precision on `device`.
    `training`: `auto` on a GPU without native bf16 gives fp16 (with a GradScaler)."""
    if requested not in PRECISIONS:
        raise UserError(f"precision {requested!r}: choose one of {', '.join(PRECISIONS)}")
    kind = device.type
    if requested == "fp32":
        return None, "requested"
    if requested == "bf16":
        if kind not in ("cpu", "cuda"):
            raise UserError(f"precision bf16: autocast in bf16 is supported here on cpu and cuda, "
                            f"not on {kind}; use fp32")
        fast = cuda_has_fast_bf16(device) if kind == "cuda" else cpu_has_fast_bf16(cpuinfo)
        return torch.bfloat16, "requested" + ("" if fast else
                                              f"; this {'GPU' if kind == 'cuda' else 'CPU'} has no "
                                              "native bf16: emulated, slower than fp32")
    if kind == "cuda":
        if cuda_has_fast_bf16(device):
            return torch.bfloat16, "auto: this GPU has native bf16"
        if training:
            return torch.float16, "auto: this GPU has no native bf16; fp16 with loss scaling"
        return None, "auto: this GPU has no native bf16"
    if kind == "cpu":
        if cpu_has_fast_bf16(cpuinfo):
            return torch.bfloat16, "auto: this CPU has native bf16"
        return None, "auto: this CPU has no native bf16"
    return None, f"auto: no bf16 autocast on {kind}"


class Precision:
    """A resolved precision: `autocast()` for the forward pass, `describe()` for the log, and
    the GradScaler of a training step (`scaler`, `update_scale`)."""

    def __init__(self, device: torch.device | str, requested: str = "fp32",
                 training: bool = False, cpuinfo: str | None = None):
        self.device = torch.device(device)
        self.requested = requested
        self.dtype, self.reason = resolve(requested, self.device, training, cpuinfo)
        # The GradScaler skips an optimizer step whose gradients hold inf/NaN (its documented
        # behaviour, on CPU and CUDA; with fused Adam the skip is decided on the device). It
        # scales the loss for fp16 only: bf16 has float32's exponent range, and at a scale of 1
        # the gradients are exactly the unscaled ones.
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           init_scale=2.0 ** 16 if self.scales_loss else 1.0,
                                           enabled=self.device.type in ("cpu", "cuda"))

    @property
    def scales_loss(self) -> bool:
        return self.dtype == torch.float16

    def update_scale(self) -> None:
        """After each `scaler.step`: fp16's loss scale follows the overflows; any other
        precision keeps the scale at 1."""
        self.scaler.update(None if self.scales_loss else 1.0)

    @property
    def name(self) -> str:
        return _NAMES[self.dtype]

    @property
    def emulated(self) -> bool:
        return "emulated" in self.reason

    def describe(self) -> str:
        """'precision: fp32 (auto: this CPU has no native bf16)', for the scripts' logs."""
        return f"precision: {self.name} ({self.reason})"

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

