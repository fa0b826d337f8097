"""Size bookkeeping for arbitrary input sizes: padded 2x max pooling and cropped upsampling.

The authors pool with floor semantics (dropping odd rows) and upsample back with
non-integer nearest-neighbour ratios, and they crash when a side falls below 1 pixel
(docs/method.md#faithfulness). Here every pooling first pads its input to even sides (reflect, or
replicate when a side is 1 pixel and reflect is impossible), so a side n becomes
ceil(n / 2) and never reaches 0. Upsampling is exact nearest by 2**k followed by a crop,
so pixel i of a level always lines up with pixel i // 2**k of the coarser one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def cat_channels(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Channel concatenation that returns a channels-last tensor.

    The whole network runs channels-last (3-4x faster narrow convs on CPU); a concat of
    mixed or strided layouts may come back NCHW and silently slow every later conv down.
    """
    return torch.cat(tensors, dim=1).contiguous(memory_format=torch.channels_last)


def pad_bottom_right(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """Pad the last two dims at the bottom/right with reflect (replicate if a side is too small)."""
    if pad_h == 0 and pad_w == 0:
        return x
    height, width = x.shape[-2:]
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def pool2(x: torch.Tensor) -> torch.Tensor:
    """2x2 max pooling, stride 2, of [B, C, H, W] to [B, C, ceil(H/2), ceil(W/2)]."""
    height, width = x.shape[-2:]
    x = pad_bottom_right(x, height % 2, width % 2)
    return F.max_pool2d(x, kernel_size=2, stride=2)


def upsample_to(x: torch.Tensor, factor: int, size: tuple[int, int]) -> torch.Tensor:
    """Nearest upsampling by an integer `factor`, cropped to `size` (the finer level's size)."""
    if factor != 1:
        x = F.interpolate(x, scale_factor=factor, mode="nearest")
    height, width = size
    if x.shape[-2] != height or x.shape[-1] != width:
        x = x[..., :height, :width]
    return x
