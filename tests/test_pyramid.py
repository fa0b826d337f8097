import cv2
import numpy as np
import pytest
import torch

from networks.pyramid import gaussian_pyramid, pyr_down


@pytest.mark.parametrize("h, w", [(3, 3), (7, 9), (64, 64), (33, 50)])
def test_pyr_down_matches_opencv(h, w):
    image = np.random.default_rng(h * w).random((h, w, 3), dtype=np.float32)
    expected = cv2.pyrDown(image)
    got = pyr_down(torch.from_numpy(image).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    assert got.shape == expected.shape == ((h + 1) // 2, (w + 1) // 2, 3)
    assert np.abs(got - expected).max() < 1e-6


def test_tiny_inputs_and_constant_preserved():
    x = torch.full((2, 3, 1, 2), 0.25)
    y = pyr_down(x)
    assert y.shape == (2, 3, 1, 1) and torch.allclose(y, torch.full_like(y, 0.25))


def test_pyramid_levels_and_errors():
    levels = gaussian_pyramid(torch.rand(1, 3, 20, 12), 3)
    assert [tuple(t.shape[-2:]) for t in levels] == [(20, 12), (10, 6), (5, 3)]
    with pytest.raises(ValueError, match="B, C, H, W"):
        pyr_down(torch.rand(3, 8, 8))
