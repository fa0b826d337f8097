"""N_mn: the encoder-decoder building block of every sub-network
(docs/method.md#architecture).

Enc: DRG(n1) at full size -> pool -> DRG(n2) at 1/2 -> pool -> DRG(n3) at 1/4 -> BiSCSM.
Dec: DRG(n3) at 1/4 -> Conv1x1(cat[X2, up]) -> DRG(n2) at 1/2 -> Conv1x1(cat[X1, up])
-> DRG(n1) at full size. Each decoder group adds the mirrored encoder features to its
blocks' inputs (its i-th block gets the encoder group's (n+1-i)-th output). No residual
around the module. Any size works: pooling pads odd sides (see resize.py).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from .biscsm import BiSCSM
from .blocks import DenseResidualGroup
from .resize import cat_channels, pool2, upsample_to


class DerainModule(nn.Module):
    def __init__(self, channels: int, encoder_blocks: Sequence[int] = (12, 2, 1),
                 reduction: int = 4, softmax_scale: float = 10.0, chunk: int = 256,
                 legacy: bool = False, checkpoint_activations: bool = False,
                 position_extent: float = 0.0):
        super().__init__()
        if len(encoder_blocks) != 3:
            raise ValueError(f"encoder_blocks must give 3 group sizes (full, 1/2, 1/4 scale), "
                             f"got {tuple(encoder_blocks)}")
        self.legacy = legacy
        self.checkpoint_activations = checkpoint_activations
        self.encoder = nn.ModuleList(DenseResidualGroup(channels, n) for n in encoder_blocks)
        # BiSCSM sees the input after two 2x poolings, so its extent is a quarter of ours.
        self.similarity = BiSCSM(channels, reduction, softmax_scale, chunk, legacy,
                                 position_extent / 4)
        # decoder[k] mirrors encoder[k] (decoder[2] runs first, at 1/4 scale).
        self.decoder = nn.ModuleList(DenseResidualGroup(channels, n) for n in encoder_blocks)
        self.fuse_half = nn.Conv2d(2 * channels, channels, 1)  # authors' fusion1 (no activation)
        self.fuse_full = nn.Conv2d(2 * channels, channels, 1)  # the released fusion2 (unused there)

    def _group(self, group: DenseResidualGroup, x: torch.Tensor, skips=None,
               keep_members: bool = True, workspace=None):
        if self.checkpoint_activations and torch.is_grad_enabled():
            # Recompute the group in backward instead of storing its activations.
            def run(inp, *skip_list):
                state, members = group(inp, list(skip_list) if skip_list else None)
                return (state, *members)
            out = checkpoint(run, x, *(skips or ()), use_reentrant=False)
            return out[0], list(out[1:])
        return group(x, skips, keep_members, workspace)

    def forward(self, x: torch.Tensor, workspace: Optional[dict] = None) -> torch.Tensor:
        """`workspace`: optional dict shared by the modules of one no-grad forward."""
        x1, e1 = self._group(self.encoder[0], x, workspace=workspace)
        x2, e2 = self._group(self.encoder[1], pool2(x1), workspace=workspace)
        x3, e3 = self._group(self.encoder[2], pool2(x2), workspace=workspace)
        # Mirrored skips; the lists are handed over so inference can free each skip once used.
        skips3, skips2, skips1 = e3[::-1], e2[::-1], e1[::-1]
        del e1, e2, e3
        d1, _ = self._group(self.decoder[2], self.similarity(x3), skips3, False, workspace)
        del x3
        d2_in = self.fuse_half(cat_channels([x2, upsample_to(d1, 2, x2.shape[-2:])]))
        del d1, x2
        d2, _ = self._group(self.decoder[1], d2_in, skips2, False, workspace)
        del d2_in
        fuse = self.fuse_half if self.legacy else self.fuse_full
        d3_in = fuse(cat_channels([x1, upsample_to(d2, 2, x1.shape[-2:])]))
        del d2, x1
        out, _ = self._group(self.decoder[0], d3_in, skips1, False, workspace)
        return out
