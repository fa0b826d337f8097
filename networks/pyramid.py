"""Gaussian image pyramid, matching OpenCV's pyrDown (the paper's "Laplacian"
levels, docs/method.md#losses).

pyrDown = 5x5 binomial [1, 4, 6, 4, 1]^2 / 256 with reflect-101 borders, keeping every
second pixel, so a side of n becomes ceil(n / 2). Done in torch so the losses and the
model build their own pyramids on any device, not in the data loader.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)


def pyr_down(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, ceil(H/2), ceil(W/2)], equal to cv2.pyrDown per channel."""
    if x.dim() != 4:
        raise ValueError(f"pyr_down expects a [B, C, H, W] tensor, got shape {tuple(x.shape)}")
    channels = x.shape[1]
    taps = torch.tensor(_BINOMIAL, dtype=x.dtype, device=x.device) / 16.0
    # Separable filter: one horizontal and one vertical depth-wise pass.
    horizontal = taps.view(1, 1, 1, 5).repeat(channels, 1, 1, 1)
    vertical = taps.view(1, 1, 5, 1).repeat(channels, 1, 1, 1)
    # reflect == OpenCV's BORDER_REFLECT_101; it needs a side of at least 3 pixels.
    mode = "reflect" if min(x.shape[-2:]) >= 3 else "replicate"
    padded = F.pad(x, (2, 2, 2, 2), mode=mode)
    out = F.conv2d(padded, horizontal, stride=(1, 2), groups=channels)
    return F.conv2d(out, vertical, stride=(2, 1), groups=channels)


def gaussian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """[x, pyr_down(x), pyr_down^2(x), ...] with `levels` entries in total."""
    pyramid = [x]
    for _ in range(levels - 1):
        pyramid.append(pyr_down(pyramid[-1]))
    return pyramid
