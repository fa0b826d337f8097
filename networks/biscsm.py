"""BiSCSM: bidirectional scale-content similarity mining at a module's bottleneck
(docs/method.md#biscsm).

Pyramid P1 (input) -> P2 -> P3 -> P4 by 2x max pooling. Down2Up (coarse to fine):
A1 = PEC(P4); D_k = MINE(q = finer level, o = processed coarser level); A_{k+1} = PEC(D_k).
Up2Down (fine to coarse): U0 = PEC(A4); E_k = MINE(q = A at the coarser level, o = U);
U_k = PEC(E_k), ending at the top level with query A1 (the figure; the authors' code
used A2, docs/method.md#released-code-bugs). Output: LReLU(Conv1x1(cat[P1, A4, U0, up(P4), up(A1), up(U3)])).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import MINE
from .blocks import SLOPE
from .resize import cat_channels, pool2, upsample_to

LEVELS = 4  # pyramid levels P1..P4
_PE_BASE = 10000.0


def positional_embedding(channels: int, height: int, width: int, dtype=torch.float32,
                         device=None, scale: tuple[float, float] = (1.0, 1.0)) -> torch.Tensor:
    """Fixed 2-D sinusoidal embedding [1, channels, height, width] (docs/method.md#biscsm).

    With n = ceil(channels / 4) frequencies f_k = 10000^(-2k / (2n)): channels [0, n) are
    sin(row * f_k), [n, 2n) cos(row * f_k), [2n, 3n) sin(col * f_k), [3n, 4n) cos(col * f_k),
    truncated to `channels`. For 20 channels: f = 1, 0.158, 0.0251, 0.00398, 0.000631.
    `scale` (rows, columns) multiplies the positions: below 1 it squeezes a large map's
    positions into the range seen in training (position interpolation, `position_scale`).
    """
    n = math.ceil(channels / 4)
    freqs = _PE_BASE ** (-torch.arange(0, 2 * n, 2, dtype=torch.float64, device=device) / (2 * n))
    rows = torch.arange(height, dtype=torch.float64, device=device)[:, None] * (scale[0] * freqs)
    cols = torch.arange(width, dtype=torch.float64, device=device)[:, None] * (scale[1] * freqs)
    row_emb = torch.cat([rows.sin(), rows.cos()], dim=1)  # [H, 2n]
    col_emb = torch.cat([cols.sin(), cols.cos()], dim=1)  # [W, 2n]
    emb = torch.cat([row_emb[:, None, :].expand(height, width, 2 * n),
                     col_emb[None, :, :].expand(height, width, 2 * n)], dim=2)
    return emb[..., :channels].permute(2, 0, 1).unsqueeze(0).to(dtype)


def position_scale(extent: float, height: int, width: int) -> tuple[float, float]:
    """Per-axis factor that makes a height x width map's positions span at most `extent`
    positions: 1 when the map is no larger (or `extent` is 0, the paper's raw positions).

    The code's slow frequencies only ever saw positions up to the training patch's extent;
    on a larger input they take values never trained on, and the output changes with the
    input size (docs/method.md#input-size)."""
    if extent <= 0:
        return 1.0, 1.0
    return min(1.0, extent / height), min(1.0, extent / width)


class PEC(nn.Module):
    """LReLU(Conv3x3(Conv1x1(cat[z, PE(z)]))): positional embedding concat + conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.mix = nn.Conv2d(2 * channels, channels, 1)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, z: torch.Tensor, scale: tuple[float, float] = (1.0, 1.0)) -> torch.Tensor:
        batch, channels, height, width = z.shape
        pe = positional_embedding(channels, height, width, z.dtype, z.device, scale)
        z = cat_channels([z, pe.expand(batch, -1, -1, -1)])
        return F.leaky_relu(self.conv(self.mix(z)), SLOPE)


class BiSCSM(nn.Module):
    def __init__(self, channels: int, reduction: int = 4, softmax_scale: float = 10.0,
                 chunk: int = 256, legacy: bool = False, position_extent: float = 0.0):
        super().__init__()
        self.legacy = legacy
        # Side of the module input (P1) over which positions are laid out; 0: raw positions.
        self.position_extent = float(position_extent)
        self.down_pec = nn.ModuleList(PEC(channels) for _ in range(LEVELS))  # PEC11..PEC14
        self.up_pec = nn.ModuleList(PEC(channels) for _ in range(LEVELS))  # PEC21..PEC24
        # One MINE per level and direction; legacy mode shares index 0 (as the released code).
        self.down_mine = nn.ModuleList(MINE(channels, reduction, softmax_scale, chunk)
                                       for _ in range(LEVELS - 1))
        self.up_mine = nn.ModuleList(MINE(channels, reduction, softmax_scale, chunk)
                                     for _ in range(LEVELS - 1))
        self.fusion = nn.Conv2d(6 * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pyramid = [x]  # P1..P4, finest first
        for _ in range(LEVELS - 1):
            pyramid.append(pool2(pyramid[-1]))

        # One factor for every level: each level's training extent shrinks with its size.
        scale = position_scale(self.position_extent, *x.shape[-2:])

        # Down2Up: A[0] = A1 at the coarsest level, A[k] at level LEVELS-1-k.
        a = [self.down_pec[0](pyramid[-1], scale)]
        for k in range(LEVELS - 1):
            mine = self.down_mine[0 if self.legacy else k]
            a.append(self.down_pec[k + 1](mine(pyramid[LEVELS - 2 - k], a[-1]), scale))

        # Up2Down: queries A3, A2, then A1 (legacy: A2 again, as the released code). a[j] lives at pyramid
        # level LEVELS-1-j (0 = finest), and so does the U computed from it.
        u = [self.up_pec[0](a[-1], scale)]
        top_level = LEVELS - 1
        for k in range(LEVELS - 1):
            mine = self.up_mine[0 if self.legacy else k]
            query_index = LEVELS - 2 - k
            if self.legacy and k == LEVELS - 2:
                query_index = 1
            top_level = LEVELS - 1 - query_index
            u.append(self.up_pec[k + 1](mine(a[query_index], u[-1]), scale))

        size = x.shape[-2:]
        coarsest = 2 ** (LEVELS - 1)
        fused = cat_channels([x, a[-1], u[0], upsample_to(pyramid[-1], coarsest, size),
                              upsample_to(a[0], coarsest, size),
                              upsample_to(u[-1], 2 ** top_level, size)])
        return F.leaky_relu(self.fusion(fused), SLOPE)
