"""scripts/error_analysis.py: the ridge, the global statistics and a small end-to-end run."""
import re

import numpy as np

from scripts import error_analysis as ea


def test_ridge_recovers_a_linear_map_and_shrinks_with_the_penalty():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)) * [1, 2, 3, 4, 5] + 7
    w = rng.normal(size=(5, 3))
    y = x @ w + [0.1, -0.2, 0.3]
    assert np.allclose(ea.Ridge(x, y, 1e-9)(x), y, atol=1e-6)
    assert np.allclose(ea.Ridge(x, y, 1e9)(x), y.mean(0), atol=1e-3)  # all penalty: the mean


def test_global_stats_see_a_haze_veil():
    rng = np.random.default_rng(1)
    scene = rng.uniform(0.0, 0.6, size=(64, 64, 3)).astype(np.float32)
    hazed = scene * 0.6 + 0.9 * 0.4
    plain, veiled = ea.global_stats(scene), ea.global_stats(hazed)
    assert plain.shape == veiled.shape == (3 + 3 + 3 * len(ea.PERCENTILES) + 1 + 3 + 1,)
    dark = 3 + 3 + 3 * len(ea.PERCENTILES)
    assert veiled[dark] > plain[dark] + 0.3  # the dark channel rises under the veil
    assert np.allclose(veiled[:3], plain[:3] * 0.6 + 0.36, atol=1e-5)


def test_small_run_prints_every_set_and_the_tone_oracle_never_loses(capsys):
    assert ea.main(["--size", "40", "--fit-count", "8", "--alphas", "1,100", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"using (1|100)\n", out)
    rows = {m.group(1).strip(): [float(v) for v in m.group(2).split()]
            for m in re.finditer(r"^((?:train|val|test) [a-z ,]+?)\s+((?:-?\d+\.\d+\s+){5})", out, re.M)}
    assert set(rows) == {"train photos, new rain", "val mixed", *(f"test {s}" for s in ea.TEST_STYLES)}
    for name, (rainy, output, tone, low, ridge) in rows.items():
        assert tone >= output - 1e-9, name  # removing the mean error never adds error
        assert all(np.isfinite([rainy, output, tone, low, ridge])), name
