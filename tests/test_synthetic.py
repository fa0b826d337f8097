"""The rain synthesizer, the clean photo sources and the data set CLI (CPU, seconds)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from utils.clean_photos import SPLIT_SOURCES, clean_backgrounds
from utils.image_io import read_image
from utils.synthetic_rain import (RAIN_PRESETS, add_rain, main, make_rainy_set, preset_panel,
                                  streak_kernel)


@pytest.fixture(scope="module")
def clean():
    return clean_backgrounds("train", 64, 1, seed=0)[0][1]


def test_presets_exist():
    assert set(RAIN_PRESETS) == {"light", "heavy", "shifted"}


@pytest.mark.parametrize("preset", sorted(RAIN_PRESETS))
@pytest.mark.parametrize("shape", [(64, 64), (40, 71), (5, 9), (1, 1)])
def test_output_shape_dtype_range(preset, shape):
    image = np.random.default_rng(0).random((*shape, 3), dtype=np.float32)
    rainy = add_rain(image, preset, np.random.default_rng(1))
    assert rainy.shape == image.shape and rainy.dtype == np.float32
    assert np.isfinite(rainy).all() and rainy.min() >= 0.0 and rainy.max() <= 1.0


@pytest.mark.parametrize("preset", sorted(RAIN_PRESETS))
def test_same_seed_same_rain_different_seed_different_rain(clean, preset):
    a = add_rain(clean, preset, np.random.default_rng(7))
    b = add_rain(clean, preset, np.random.default_rng(7))
    c = add_rain(clean, preset, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 1e-3
    assert np.abs(a - clean).mean() > 1e-3  # there is rain at all


def test_heavy_has_more_rain_than_light_and_shifted_differs():
    backgrounds = [c for _, c in clean_backgrounds("val", 64, 6, seed=3)]
    amount = {}
    for preset in RAIN_PRESETS:
        amount[preset] = np.mean([np.abs(add_rain(c, preset, np.random.default_rng(i)) - c).mean()
                                  for i, c in enumerate(backgrounds)])
    assert amount["heavy"] > 2.0 * amount["light"], amount
    # shifted is a different style, not just a scaled one: its colour balance shifts (tint/haze).
    tinted = [add_rain(c, "shifted", np.random.default_rng(i)) - c for i, c in enumerate(backgrounds)]
    channel_means = np.array([t.reshape(-1, 3).mean(axis=0) for t in tinted])
    assert np.abs(channel_means - channel_means.mean(axis=1, keepdims=True)).max() > 0.01


def test_light_rain_is_additive_only_brightens(clean):
    rainy = add_rain(clean, "light", np.random.default_rng(0))
    assert (rainy >= clean - 1e-6).all()


@pytest.mark.parametrize("angle", [0.0, 30.0, -30.0])
def test_streak_kernel_points_along_its_angle(angle):
    kernel = streak_kernel(21.0, 1.0, angle)
    ys, xs = np.nonzero(kernel > 0.1 * kernel.max())
    w = kernel[ys, xs]
    cy, cx = np.average(ys, weights=w), np.average(xs, weights=w)
    cov = np.cov(np.stack([ys - cy, xs - cx]), aweights=w)
    evals, evecs = np.linalg.eigh(cov)
    dy, dx = evecs[:, -1] * np.sign(evecs[0, -1])  # main axis, pointing down
    measured = np.rad2deg(np.arctan2(-dx, dy))  # positive = leaning right at the top
    assert abs(measured - angle) < 2.0, measured
    assert evals[-1] > 20 * evals[0]  # a thin line, not a blob


def test_comet_kernel_is_brightest_at_the_bottom():
    kernel = streak_kernel(21.0, 1.0, 0.0, shape="comet")
    rows = kernel.sum(axis=1)
    assert np.argmax(rows) > len(rows) // 2


def test_unknown_preset_is_a_clear_error(clean):
    with pytest.raises(ValueError, match="unknown rain preset 'drizzle'"):
        add_rain(clean, "drizzle", np.random.default_rng(0))


def test_split_sources_are_disjoint_and_crops_differ():
    seen = {}
    for split, names in SPLIT_SOURCES.items():
        for name in names:
            assert name not in seen, f"{name} in {seen.get(name)} and {split}"
            seen[name] = split
    train = {c.tobytes() for _, c in clean_backgrounds("train", 16, 12, seed=0)}
    test = {c.tobytes() for _, c in clean_backgrounds("test", 16, 6, seed=0)}
    assert len(train) == 12 and not train & test


def test_rainy_set_prefix_property_and_shared_clean_images():
    names, rainy, clean = make_rainy_set("test", "light", 24, 5, seed=4)
    names3, rainy3, clean3 = make_rainy_set("test", "light", 24, 3, seed=4)
    assert names[:3] == names3 and len(set(names)) == 5
    for a, b in zip(rainy[:3] + clean[:3], rainy3 + clean3):
        np.testing.assert_array_equal(a, b)
    _, rainy_h, clean_h = make_rainy_set("test", "heavy", 24, 3, seed=4)
    for a, b in zip(clean3, clean_h):
        np.testing.assert_array_equal(a, b)  # same backgrounds, different rain
    assert not np.array_equal(rainy3[0], rainy_h[0])
    _, _, other_seed = make_rainy_set("test", "light", 24, 3, seed=5)
    assert not np.array_equal(other_seed[0], clean3[0])


def test_default_sets_generate_fast():
    start = time.perf_counter()
    make_rainy_set("train", "heavy", 96, 48, seed=0)
    make_rainy_set("val", "heavy", 96, 12, seed=0)
    make_rainy_set("test", "shifted", 96, 24, seed=0)
    assert time.perf_counter() - start < 10.0  # ~1 s on a 2-core CPU


def test_cli_writes_input_target_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "set"
    assert main(["--preset", "heavy", "--out", str(out), "--size", "24", "--count", "3",
                 "--seed", "1", "--split", "val"]) == 0
    inputs = sorted(p.name for p in (out / "input").iterdir())
    targets = sorted(p.name for p in (out / "target").iterdir())
    assert inputs == targets and len(inputs) == 3
    first = out / "input" / inputs[0]
    assert read_image(first).shape == (24, 24, 3)
    before = first.read_bytes()
    assert main(["--preset", "light", "--out", str(out), "--size", "24", "--count", "3",
                 "--seed", "1", "--split", "val"]) == 2
    assert "already exist" in capsys.readouterr().err
    assert first.read_bytes() == before
    assert main(["--preset", "heavy", "--out", str(out), "--size", "24", "--count", "3",
                 "--seed", "2", "--split", "val", "--overwrite"]) == 0
    assert first.read_bytes() != before
    assert sorted(p.name for p in (out / "input").iterdir()) == inputs

    from dataset import open_pairs

    pairs = open_pairs(out)
    assert pairs.layout == "folders" and len(pairs) == 3


def test_panel(tmp_path):
    panel = preset_panel(size=32, seed=0)
    assert panel.shape[1] == 4 * 32 + 3 * 4 and panel.shape[2] == 3
    path = tmp_path / "panel.png"
    assert main(["--panel", str(path), "--size", "32"]) == 0
    assert read_image(path).shape == panel.shape
    with pytest.raises(SystemExit):
        main(["--panel", str(path), "--size", "32"])  # exists, no --overwrite
