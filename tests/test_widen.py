"""Widening trained weights (networks/widen.py): same function, trainable new channels."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from config import ModelConfig
from networks import build_model
from networks.widen import WidenError, widen_weights


def _narrow(channels: int = 8, **kw) -> tuple[ModelConfig, torch.nn.Module]:
    cfg = ModelConfig(channels=channels, encoder_blocks=(2, 1, 1), **kw)
    torch.manual_seed(3)
    model = build_model(cfg).eval()
    # Trained weights are not the fresh initialisation: move every one of them.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return cfg, model


def _widened(cfg: ModelConfig, model: torch.nn.Module, channels: int, seed: int = 1):
    wide_cfg = dataclasses.replace(cfg, channels=channels)
    wide = build_model(wide_cfg)
    wide.load_state_dict(widen_weights(model.state_dict(), cfg.channels, wide_cfg, seed=seed))
    return wide.eval()


@pytest.mark.parametrize("factor", [2, 3])
@pytest.mark.parametrize("legacy", [False, True])
def test_widened_model_computes_the_same_outputs(factor, legacy):
    cfg, narrow = _narrow(legacy_code_quirks=legacy)
    wide = _widened(cfg, narrow, cfg.channels * factor)
    assert sum(p.numel() for p in wide.parameters()) > 3 * sum(p.numel() for p in narrow.parameters())
    x = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for a, b in zip(narrow(x, branches=True), wide(x, branches=True)):
            torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


def test_widened_model_keeps_squeezed_positions():
    # position_extent squeezes the positional code: the mapped channels must follow it.
    cfg, narrow = _narrow(position_extent=16)
    wide = _widened(cfg, narrow, 16)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(wide(x).bottom, narrow(x).bottom, atol=1e-5, rtol=0)


def test_new_channels_learn_from_the_first_step():
    """The zero blocks (new -> old) and the new key dimensions get gradients at once:
    widening does not leave the new channels dead."""
    cfg, narrow = _narrow()
    wide = _widened(cfg, narrow, 16).train()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    (wide(x).bottom - x).abs().mean().backward()
    conv = wide.N13.decoder[0].blocks[0].conv2
    assert torch.count_nonzero(conv.weight[:8, 8:]) == 0  # old outputs ignore new inputs...
    assert conv.weight.grad[:8, 8:].abs().sum() > 0  # ...until training says otherwise
    assert conv.weight[8:].abs().sum() > 0  # new channels start with the fresh initialisation
    key = wide.N11.similarity.down_mine[0].g[0]
    assert torch.count_nonzero(key.weight[2:]) == 0 and torch.count_nonzero(key.bias[2:]) == 0
    assert key.weight.grad[2:].abs().sum() > 0  # through the random new query dimensions
    assert wide.N11.similarity.down_mine[0].theta[0].weight[2:].abs().sum() > 0


def test_widening_is_deterministic_and_leaves_the_global_random_state_alone():
    cfg, narrow = _narrow()
    wide_cfg = dataclasses.replace(cfg, channels=16)
    before = torch.random.get_rng_state()
    a = widen_weights(narrow.state_dict(), 8, wide_cfg, seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = widen_weights(narrow.state_dict(), 8, wide_cfg, seed=5)
    c = widen_weights(narrow.state_dict(), 8, wide_cfg, seed=6)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("old, new, match", [
    (8, 12, "not a multiple of 8"),
    (8, 8, "not a multiple of 8 larger"),
    (8, 4, "not a multiple"),
    (6, 12, "position code does not contain"),  # 6 channels: a truncated code
])
def test_widths_that_cannot_be_widened_are_refused(old, new, match):
    cfg, narrow = _narrow(channels=old)
    with pytest.raises(WidenError, match=match):
        widen_weights(narrow.state_dict(), old, dataclasses.replace(cfg, channels=new))
