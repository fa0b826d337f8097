"""The no-reference score (BRISQUE from the `brisque` wheel): runs offline, orders distortions."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("brisque")

from utils.metrics import noref  # noqa: E402


def _scene(size: int = 128) -> np.ndarray:
    """A clean background of the embedded synthetic sets (scikit-image's sample photos)."""
    from utils.synthetic.photos import clean_backgrounds

    return clean_backgrounds("test", size, 1, 0)[0][1]


def test_brisque_is_a_float_and_rises_with_noise():
    clean = _scene()
    rng = np.random.default_rng(1)
    scores = [noref.brisque(np.clip(clean + rng.normal(0, s, clean.shape), 0, 1)) for s in (0.0, 0.04, 0.12)]
    assert all(isinstance(v, float) and np.isfinite(v) for v in scores)
    assert scores[0] < scores[1] < scores[2]
    assert noref.brisque((clean * 255).round().astype(np.uint8)) == pytest.approx(scores[0])


def test_brisque_rejects_non_rgb():
    with pytest.raises(ValueError):
        noref.brisque(np.zeros((8, 8)))
