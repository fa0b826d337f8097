"""HCN: the high-order collaborative network (docs/method.md#architecture), top level.

Bottom B = {N11, N12, N13}, middle M = {N21, N22}, top T = {N31}; each sub-network has
its own feature-extraction head on the rainy image O, and every output is O minus a
predicted rain layer. Wiring (first operand = first channels):
  F11 = N11(E_B)                     F21 = N21(up2(cat[F11, E_M]))
  F31 = N31(up3(cat[F21, E_T]))      F12 = N12(fusion11(cat[F21, F11]))
  F22 = N22(fusion21(cat[F31, F21])) F13 = N13(fusion12(cat[F22, F12]))
  bottom = O - IC1(F13), middle = O - IC2(F22), top = O - IC3(F31).
Multi-scale compact constraint branches (training only; they never affect `bottom`):
  half    = O/2 - IC_half(N12(N21(up2(cat[N11(FE_half_a(O/2)), FE_half_b(O/2)]))))
  quarter = O/4 - IC_quarter(N11(FE_quarter(O/4)))
with O/2 = pyr_down(O), O/4 = pyr_down(O/2) (Gaussian pyramid, docs/method.md#losses).
`legacy_code_quirks` restores the released code's bugs (docs/method.md#released-code-bugs): N31 runs in N13's place, the
decoder reuses one fusion, one MINE per direction is shared, the top Up2Down query is A2
(the released 1/2 branch, without fusion11, is the default in both modes). All parameters stay
registered, so state dicts have the same keys either way.
`position_extent` (0: off) squeezes BiSCSM's position code on inputs larger than that many
pixels into the range a model trained on such patches saw (docs/method.md#input-size).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn as nn

from .blocks import SLOPE
from .module import DerainModule
from .pyramid import pyr_down
from .resize import cat_channels

SUBNETWORKS = ("N11", "N12", "N13", "N21", "N22", "N31")


class HCNOutput(NamedTuple):
    bottom: torch.Tensor  # THE prediction [B, 3, H, W]
    middle: torch.Tensor
    top: torch.Tensor
    half: Optional[torch.Tensor]  # [B, 3, ceil(H/2), ceil(W/2)] or None
    quarter: Optional[torch.Tensor]  # size of pyr_down(pyr_down(rainy)) or None


class _ConvAct(nn.Sequential):
    """Conv (3x3 or 1x1, 'same' padding) + LeakyReLU(0.2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3):
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2),
                         nn.LeakyReLU(SLOPE))


class HCN(nn.Module):
    def __init__(self, channels: int = 20, encoder_blocks=(12, 2, 1), attention_reduction: int = 4,
                 attention_softmax_scale: float = 10.0, attention_chunk: int = 256,
                 checkpoint_activations: bool = False, legacy_code_quirks: bool = False,
                 position_extent: int = 0):
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.legacy = legacy_code_quirks
        c = channels

        def module() -> DerainModule:
            return DerainModule(c, tuple(encoder_blocks), attention_reduction,
                                attention_softmax_scale, attention_chunk, legacy_code_quirks,
                                checkpoint_activations, position_extent)

        self.N11, self.N12, self.N13 = module(), module(), module()
        self.N21, self.N22 = module(), module()
        self.N31 = module()
        # Feature-extraction heads (Conv3x3 3->C + LReLU).
        self.fe_bottom, self.fe_middle, self.fe_top = _ConvAct(3, c), _ConvAct(3, c), _ConvAct(3, c)
        self.fe_half_a, self.fe_half_b = _ConvAct(3, c), _ConvAct(3, c)
        self.fe_quarter = _ConvAct(3, c)
        # Image-conversion heads (Conv3x3 C->3, no activation): predicted rain layers.
        self.ic_bottom, self.ic_middle, self.ic_top = (nn.Conv2d(c, 3, 3, padding=1)
                                                       for _ in range(3))
        self.ic_half, self.ic_quarter = nn.Conv2d(c, 3, 3, padding=1), nn.Conv2d(c, 3, 3, padding=1)
        # Glue between sub-networks.
        self.up2 = _ConvAct(2 * c, c)  # B -> M
        self.up3 = _ConvAct(2 * c, c)  # M -> T
        self.fusion11 = _ConvAct(2 * c, c)  # M -> B (before N12)
        self.fusion21 = _ConvAct(2 * c, c, kernel=1)  # T -> M (before N22)
        self.fusion12 = _ConvAct(2 * c, c)  # M -> B (before N13)

    def forward(self, rainy: torch.Tensor, branches: bool = False) -> HCNOutput:
        _check_input(rainy)
        weight = self.fe_bottom[0].weight
        if rainy.device != weight.device:
            raise ValueError(f"HCN weights are on {weight.device} but the input is on "
                             f"{rainy.device}; move one of them with .to(device)")
        if rainy.dtype != weight.dtype and not torch.is_autocast_enabled(rainy.device.type):
            raise ValueError(f"HCN weights are {weight.dtype} but the input is {rainy.dtype}; "
                             f"convert the input (e.g. rainy.to({weight.dtype}))")
        # Channels-last is faster for these narrow convs on CPU (oneDNN; docs/performance.md)
        # and suits tensor cores on GPU; outputs are returned in the default layout.
        o = rainy.contiguous(memory_format=torch.channels_last)
        n13 = self.N31 if self.legacy else self.N13
        # Scratch buffers shared by the modules of this call (inference only, see blocks.py).
        ws = None if torch.is_grad_enabled() else {}

        f11 = self.N11(self.fe_bottom(o), ws)
        f21 = self.N21(self.up2(cat_channels([f11, self.fe_middle(o)])), ws)
        f12 = self.N12(self.fusion11(cat_channels([f21, f11])), ws)
        del f11
        f31 = self.N31(self.up3(cat_channels([f21, self.fe_top(o)])), ws)
        f22 = self.N22(self.fusion21(cat_channels([f31, f21])), ws)
        del f21
        top = o - self.ic_top(f31)
        del f31
        f13 = n13(self.fusion12(cat_channels([f22, f12])), ws)
        del f12
        middle = o - self.ic_middle(f22)
        del f22
        bottom = o - self.ic_bottom(f13)
        del f13

        half = quarter = None
        if branches:
            o_half = pyr_down(rainy).contiguous(memory_format=torch.channels_last)
            o_quarter = pyr_down(o_half).contiguous(memory_format=torch.channels_last)
            g11 = self.N11(self.fe_half_a(o_half), ws)
            g21 = self.N21(self.up2(cat_channels([g11, self.fe_half_b(o_half)])), ws)
            half = (o_half - self.ic_half(self.N12(g21, ws))).contiguous()
            g11_quarter = self.N11(self.fe_quarter(o_quarter), ws)
            quarter = (o_quarter - self.ic_quarter(g11_quarter)).contiguous()
        return HCNOutput(bottom.contiguous(), middle.contiguous(), top.contiguous(), half, quarter)


def _check_input(rainy) -> None:
    if not isinstance(rainy, torch.Tensor):
        raise ValueError(f"HCN expects a torch.Tensor [B, 3, H, W], got {type(rainy).__name__}")
    if rainy.dim() != 4 or rainy.shape[1] != 3:
        raise ValueError(f"HCN expects an RGB batch [B, 3, H, W], got shape {tuple(rainy.shape)}")
    if not rainy.is_floating_point():
        raise ValueError(f"HCN expects a floating-point image in [0, 1], got dtype {rainy.dtype}")
    if rainy.numel() == 0:
        raise ValueError(f"HCN got an empty batch, shape {tuple(rainy.shape)}")


def build_model(model_cfg) -> HCN:
    """The HCN described by a `config.ModelConfig`."""
    return HCN(channels=model_cfg.channels, encoder_blocks=tuple(model_cfg.encoder_blocks),
               attention_reduction=model_cfg.attention_reduction,
               attention_softmax_scale=model_cfg.attention_softmax_scale,
               attention_chunk=model_cfg.attention_chunk,
               checkpoint_activations=model_cfg.checkpoint_activations,
               legacy_code_quirks=model_cfg.legacy_code_quirks,
               position_extent=model_cfg.position_extent)
