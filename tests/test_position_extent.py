"""model.position_extent: BiSCSM's position code squeezed on inputs larger than the training
patches (position interpolation); unchanged on inputs no larger, so training is the paper's."""
import subprocess
import sys

import pytest
import torch

from config import ConfigError
from networks import HCN
from networks.biscsm import position_scale, positional_embedding
from utils.config_parse import build_config
from utils.io import shipped
from utils.io.checkpoints import load_model

SMALL = dict(channels=6, encoder_blocks=(1, 1, 1), attention_chunk=64)


def small_model(extent: int) -> HCN:
    torch.manual_seed(0)
    return HCN(**SMALL, position_extent=extent).eval()


def image(size: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_position_scale_only_shrinks_maps_larger_than_the_extent():
    assert position_scale(0, 64, 64) == (1.0, 1.0)  # off: the paper's raw positions
    assert position_scale(24, 24, 10) == (1.0, 1.0)  # no larger than in training
    assert position_scale(24, 64, 48) == (24 / 64, 0.5)  # per axis


def test_a_squeezed_code_samples_the_trained_code():
    # A 2x larger map squeezed by 1/2 has, at every other position, exactly the code the
    # smaller map had: no position value outside the trained range, none invented.
    small = positional_embedding(16, 12, 10)
    large = positional_embedding(16, 24, 20, scale=(0.5, 0.5))
    torch.testing.assert_close(large[..., ::2, ::2], small, rtol=0, atol=1e-6)
    assert not torch.allclose(positional_embedding(16, 24, 20)[..., ::2, ::2], small)


def test_inputs_no_larger_than_the_extent_give_the_papers_output():
    x = image(32)
    with torch.no_grad():
        torch.testing.assert_close(small_model(32)(x).bottom, small_model(0)(x).bottom, rtol=0, atol=0)
        torch.testing.assert_close(small_model(48)(x).bottom, small_model(0)(x).bottom, rtol=0, atol=0)


def test_larger_inputs_change_and_stay_finite():
    x = image(64)
    with torch.no_grad():
        squeezed, raw = small_model(32)(x).bottom, small_model(0)(x).bottom
    assert torch.isfinite(squeezed).all()
    assert (squeezed - raw).abs().max() > 1e-4


def test_config_refuses_a_negative_extent():
    with pytest.raises(ConfigError, match="model.position_extent"):
        build_config("demo", ["model.position_extent=-1"])
    assert build_config("standard").model.position_extent == 96


def test_the_shipped_model_squeezes_beyond_its_patch_size_and_the_override_turns_it_off():
    model, cfg = load_model(shipped.SHIPPED)
    extent = cfg.model.position_extent
    assert extent == cfg.data.patch_size == 160
    x = image(extent + 32)
    raw, raw_cfg = load_model(shipped.SHIPPED, position_extent=0)
    assert raw_cfg.model.position_extent == 0
    with torch.no_grad():
        assert (model(x).bottom - raw(x).bottom).abs().max() > 1e-4
        small = image(extent)
        torch.testing.assert_close(model(small).bottom, raw(small).bottom, rtol=0, atol=0)


@pytest.mark.parametrize("script", ["eval.py", "show.py"])
def test_scripts_refuse_a_negative_extent_before_any_work(script, tmp_path):
    done = subprocess.run([sys.executable, script, "--position-extent", "-3", "--out", str(tmp_path / "o")]
                          + (["x.png"] if script == "show.py" else []),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--position-extent" in done.stderr and "must be >= 0" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()
