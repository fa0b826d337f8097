"""Gaussian-window SSIM map in torch: the one SSIM core shared by the loss and the metrics.

`losses.ssim` (training, float32, zero 'same' padding, data range 1: the authors' SSIM) and
`utils.metrics.protocols` (evaluation, float64, MATLAB 'valid' filtering, data range 255) differ only
in padding, constants and dtype, so both call `ssim_map` instead of keeping two copies.

SSIM(x, y) = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)),
with mu/s the Gaussian-weighted local means/(co)variances (population form, as Wang et al.)
and C1 = (k1 L)^2, C2 = (k2 L)^2 for data range L.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

PADDINGS = ("same", "valid")


def gaussian_taps(window_size: int, sigma: float, dtype: torch.dtype,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian of odd length; its outer product is MATLAB's
    fspecial('gaussian', window_size, sigma). Built per call: it is tiny, and a cache would be
    global mutable state."""
    if window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"SSIM window_size must be a positive odd integer, got {window_size}")
    if not sigma > 0:
        raise ValueError(f"SSIM sigma must be positive, got {sigma}")
    # Built in float64 then cast, so float32 and float64 callers get the same taps.
    offsets = torch.arange(window_size, dtype=torch.float64, device=device) - window_size // 2
    taps = torch.exp(-(offsets ** 2) / (2.0 * sigma ** 2))
    return (taps / taps.sum()).to(dtype)


def _autocast_off(device_type: str):
    # The variance (E[x^2] - mu^2) cancels badly in fp16/bf16: keep SSIM in full precision even
    # when the caller runs inside an autocast region.
    try:
        return torch.autocast(device_type=device_type, enabled=False)
    except (RuntimeError, ValueError):  # device type without autocast support
        return contextlib.nullcontext()


def ssim_map(x: torch.Tensor, y: torch.Tensor, window_size: int = 11, sigma: float = 1.5,
             data_range: float = 1.0, k1: float = 0.01, k2: float = 0.03,
             padding: str = "same") -> torch.Tensor:
    """Per-pixel, per-channel SSIM of two [B, C, H, W] tensors.

    padding="same": zero padding of window_size // 2, output [B, C, H, W] (any H, W >= 1, also
    smaller than the window; the authors' training SSIM). padding="valid": no padding, output
    [B, C, H - window_size + 1, W - window_size + 1] (MATLAB filter2(..., 'valid'); needs
    H, W >= window_size). Half-precision inputs are computed in float32. Differentiable.
    """
    if x.shape != y.shape:
        raise ValueError(f"SSIM needs two tensors of the same shape, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    if x.dim() != 4:
        raise ValueError(f"SSIM expects [B, C, H, W] tensors, got shape {tuple(x.shape)}")
    if padding not in PADDINGS:
        raise ValueError(f"SSIM padding must be one of {PADDINGS}, got {padding!r}")
    height, width = x.shape[-2:]
    if padding == "valid" and (height < window_size or width < window_size):
        raise ValueError(f"'valid' SSIM needs images of at least {window_size}x{window_size} "
                         f"pixels, got {height}x{width}")
    if x.dtype in (torch.float16, torch.bfloat16) or y.dtype in (torch.float16, torch.bfloat16):
        x, y = x.float(), y.float()
    dtype = torch.promote_types(x.dtype, y.dtype)
    x, y = x.to(dtype), y.to(dtype)

    with _autocast_off(x.device.type):
        taps = gaussian_taps(window_size, sigma, dtype, x.device)
        channels = x.shape[1]
        # All five local statistics in one depth-wise pass: [x, y, x^2, y^2, xy].
        stats = torch.cat([x, y, x * x, y * y, x * y], dim=1)
        groups = 5 * channels
        pad = window_size // 2 if padding == "same" else 0
        # The 2-D Gaussian is separable; zero padding per axis equals zero padding in 2-D.
        vertical = taps.view(1, 1, window_size, 1).expand(groups, 1, window_size, 1)
        horizontal = taps.view(1, 1, 1, window_size).expand(groups, 1, 1, window_size)
        stats = F.conv2d(stats, vertical, padding=(pad, 0), groups=groups)
        stats = F.conv2d(stats, horizontal, padding=(0, pad), groups=groups)
        mu_x, mu_y, xx, yy, xy = stats.split(channels, dim=1)

        c1 = (k1 * data_range) ** 2
        c2 = (k2 * data_range) ** 2
        mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
        var_x, var_y, cov = xx - mu_xx, yy - mu_yy, xy - mu_xy
        numerator = (2.0 * mu_xy + c1) * (2.0 * cov + c2)
        denominator = (mu_xx + mu_yy + c1) * (var_x + var_y + c2)
        return numerator / denominator
