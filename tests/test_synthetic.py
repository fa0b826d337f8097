"""The rain synthesizer, the clean photo sources and the data set CLI (CPU, seconds)."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

import torch

from dataset import DatasetError, synthetic_pairs
from utils.cli import run_main
from utils.io.images import read_image
from utils.synthetic.__main__ import main
from utils.synthetic.photos import (SPLIT_SOURCES, PhotoError, augment_photo, clean_backgrounds,
                                    folder_splits, load_split)
from utils.synthetic.rain import add_rain, streak_kernel
from utils.synthetic.sets import make_rainy_set, preset_panel
from utils.synthetic.stream import SyntheticRainStream
from utils.synthetic.styles import HELD_OUT, PRESET_NAMES, RAIN_PRESETS, sample_style


@pytest.fixture(scope="module")
def clean():
    return clean_backgrounds("train", 64, 1, seed=0)[0][1]


def test_presets_exist():
    assert set(RAIN_PRESETS) == {"light", "streaks", "heavy", "shifted", "gusty"}
    assert set(PRESET_NAMES) == {"light", "streaks", "heavy", "shifted", "gusty", "mixed"}
    assert HELD_OUT == ("gusty",)


@pytest.mark.parametrize("preset", PRESET_NAMES)
@pytest.mark.parametrize("shape", [(64, 64), (40, 71), (5, 9), (1, 1)])
def test_output_shape_dtype_range(preset, shape):
    image = np.random.default_rng(0).random((*shape, 3), dtype=np.float32)
    rainy = add_rain(image, preset, np.random.default_rng(1))
    assert rainy.shape == image.shape and rainy.dtype == np.float32
    assert np.isfinite(rainy).all() and rainy.min() >= 0.0 and rainy.max() <= 1.0


@pytest.mark.parametrize("preset", PRESET_NAMES)
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
    _, rainy_m, clean_m = make_rainy_set("test", "mixed", 24, 3, seed=4)
    _, rainy_m2, _ = make_rainy_set("test", "mixed", 24, 3, seed=4)
    for a, b in zip(clean3 + rainy_m, clean_m + rainy_m2):
        np.testing.assert_array_equal(a, b)  # mixed: deterministic too, same backgrounds
    _, _, other_seed = make_rainy_set("test", "light", 24, 3, seed=5)
    assert not np.array_equal(other_seed[0], clean3[0])
    # (height, width): the centre of the square set of the longer side, with its own rain.
    _, rainy_hw, clean_hw = make_rainy_set("test", "light", (16, 24), 3, seed=4)
    assert rainy_hw[0].shape == clean_hw[0].shape == (16, 24, 3)
    np.testing.assert_array_equal(clean_hw[1], clean3[1][4:20])


def test_default_sets_generate_fast():
    start = time.process_time()  # CPU time: robust to a busy machine
    make_rainy_set("train", "heavy", 96, 48, seed=0)
    make_rainy_set("val", "heavy", 96, 12, seed=0)
    make_rainy_set("test", "shifted", 96, 24, seed=0)
    assert time.process_time() - start < 10.0  # ~1.5 s of CPU


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
    assert run_main(main, ["--preset", "light", "--out", str(out), "--size", "24", "--count", "3",
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
    assert panel.shape[1] == 6 * 32 + 5 * 4 and panel.shape[2] == 3
    path = tmp_path / "panel.png"
    assert main(["--panel", str(path), "--size", "32"]) == 0
    assert read_image(path).shape == panel.shape
    with pytest.raises(SystemExit):
        main(["--panel", str(path), "--size", "32"])  # exists, no --overwrite


def test_mixed_draws_varied_styles_and_never_gusts():
    styles = [sample_style(np.random.default_rng(i)) for i in range(200)]
    assert all(s.gust == 0 for s in styles)
    assert {len(s.layers) for s in styles} == {1, 2, 3}
    assert {s.composite for s in styles} == {"add", "screen"}
    assert {layer.shape for s in styles for layer in s.layers} == {"line", "comet"}
    for attribute in ("veil", "mist", "noise", "jpeg", "defocus"):
        on = np.mean([getattr(s, attribute)[0] > 0 for s in styles])
        assert 0.05 < on < 0.8, (attribute, on)  # sometimes, not always
    assert 0.05 < np.mean([s.drops is not None for s in styles]) < 0.5
    lengths = [layer.length[0] for s in styles for layer in s.layers]
    angles = [s.angle[0] for s in styles]
    assert min(lengths) < 8 and max(lengths) > 60 and min(angles) < -25 and max(angles) > 25


def test_mixed_rain_amount_spans_drizzle_to_downpour(clean):
    amounts = [np.abs(add_rain(clean, "mixed", np.random.default_rng(i)) - clean).mean()
               for i in range(30)]
    assert max(amounts) > 4 * min(amounts), amounts


def test_gusty_direction_varies_across_the_image():
    """The held-out style bends streaks across the frame; a single draw of a fixed preset does not."""
    black = np.zeros((192, 192, 3), np.float32)

    def spread_of_local_angles(preset, seed):
        rain = add_rain(black, preset, np.random.default_rng(seed)).mean(axis=2)
        gy, gx = np.gradient(cv2.GaussianBlur(rain, (0, 0), 1.0))
        angles = []
        for top in range(0, 192, 64):
            for left in range(0, 192, 64):
                y, x = gy[top:top + 64, left:left + 64], gx[top:top + 64, left:left + 64]
                # Dominant gradient orientation (structure tensor): across the streaks.
                angles.append(0.5 * np.degrees(np.arctan2(2 * (x * y).sum(), (x * x - y * y).sum())))
        return np.ptp(np.unwrap(np.radians(angles), period=np.pi)) * 180 / np.pi

    gusty = np.median([spread_of_local_angles("gusty", s) for s in range(4)])
    light = np.median([spread_of_local_angles("light", s) for s in range(4)])
    assert gusty > light + 5.0, (gusty, light)


def test_training_stream_is_deterministic_varied_and_refuses_held_out_rain():
    photos = [p for _, p in load_split("train")][:3]
    stream = SyntheticRainStream(photos, patch_size=32, length=6, preset="mixed", seed=3)
    first = [stream[i] for i in range(3)]
    again = SyntheticRainStream(photos, patch_size=32, length=6, preset="mixed", seed=3)
    for a, b in zip(first, [again[i] for i in range(3)]):
        assert torch.equal(a["rainy"], b["rainy"]) and torch.equal(a["clean"], b["clean"])
    assert first[0]["rainy"].shape == (3, 32, 32)
    assert not torch.equal(first[0]["clean"], first[1]["clean"])
    stream.set_epoch(1)
    assert not torch.equal(stream[0]["rainy"], first[0]["rainy"])  # new epoch, new samples
    with pytest.raises(ValueError, match="held out"):
        SyntheticRainStream(photos, patch_size=32, length=6, preset="gusty")


def test_augmentation_keeps_range_and_changes_the_photo(clean):
    out = [augment_photo(clean, np.random.default_rng(i)) for i in range(8)]
    assert all(o.shape == clean.shape and o.dtype == np.float32 for o in out)
    assert all(o.min() >= 0.0 and o.max() <= 1.0 for o in out)
    assert np.mean([np.abs(o - clean).mean() for o in out]) > 0.01


def test_flat_scenes_make_low_contrast_bright_backgrounds_and_zero_changes_nothing(clean):
    plain = [augment_photo(clean, np.random.default_rng(i)) for i in range(40)]
    # flat=0 draws nothing extra: runs trained before the option keep their random stream.
    assert all(np.array_equal(p, augment_photo(clean, np.random.default_rng(i), flat=0.0))
               for i, p in enumerate(plain))
    flat = [augment_photo(clean, np.random.default_rng(i), flat=1.0) for i in range(40)]
    assert all(f.min() >= 0.0 and f.max() <= 1.0 for f in flat)
    assert np.median([f.std() / max(p.std(), 1e-6) for f, p in zip(flat, plain)]) < 0.75
    assert all(0.3 <= f.mean() <= 0.85 for f in flat)
    photos = [p for _, p in load_split("train")][:2]
    with pytest.raises(ValueError, match="flat_scenes"):
        SyntheticRainStream(photos, patch_size=32, length=2, flat_scenes=1.5)


def test_streaks_are_rain_only_brighter_and_never_darker(clean):
    """`streaks` adds light along lines and nothing else: no pixel darkens, no haze lifts the
    whole image, and the rain covers a minority of the pixels."""
    for i in range(4):
        rainy = add_rain(clean, "streaks", np.random.default_rng(i))
        diff = rainy - clean
        assert diff.min() >= -1e-6
        assert 0.0 < (diff.max(axis=2) > 0.05).mean() < 0.4
        assert np.percentile(diff, 25) < 1e-3 and np.median(diff) < 0.02  # no veil


def test_stream_shares_make_dry_and_streak_samples_and_zero_changes_nothing():
    photos = [p for _, p in load_split("train")][:3]
    plain = SyntheticRainStream(photos, patch_size=32, length=40, seed=5)
    zero = SyntheticRainStream(photos, patch_size=32, length=40, seed=5, dry_share=0.0,
                               streak_share=0.0)
    assert all(torch.equal(plain[i]["rainy"], zero[i]["rainy"]) for i in range(6))
    mix = SyntheticRainStream(photos, patch_size=32, length=40, seed=5, dry_share=0.5,
                              streak_share=0.5)
    dry = [torch.equal(mix[i]["rainy"], mix[i]["clean"]) for i in range(40)]
    assert 8 <= sum(dry) <= 32  # about half; the others carry streaks
    wet = [i for i in range(40) if not dry[i]]
    assert all(bool((mix[i]["rainy"] >= mix[i]["clean"] - 1e-6).all()) for i in wet)
    for bad in ({"dry_share": 1.5}, {"dry_share": 0.7, "streak_share": 0.4}):
        with pytest.raises(ValueError, match="share"):
            SyntheticRainStream(photos, patch_size=32, length=2, **bad)


def _photo_folder(folder, count):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        cv2.imwrite(str(folder / f"photo{i:02d}.png"),
                    (rng.random((40 + i, 50, 3)) * 255).astype(np.uint8))
    return folder


def _folder_state(folder):
    return sorted((p.name, p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir())


def test_clean_photos_folder_splits_disjoint_and_is_only_read(tmp_path):
    folder = _photo_folder(tmp_path / "mine", 12)
    (folder / "notes.txt").write_text("not a photo")
    before = _folder_state(folder)
    splits = folder_splits(folder)
    names = [set(p.name for p in splits[s]) for s in ("train", "val", "test")]
    assert sum(map(len, names)) == 12 and not (names[0] & names[1] or names[0] & names[2]
                                               or names[1] & names[2])
    assert len(names[1]) == len(names[2]) == 1
    pairs = synthetic_pairs("val", "mixed", 24, 3, seed=0, photos=str(folder))
    assert len(pairs) == 3 and pairs.rainy_images[0].shape == (24, 24, 3)
    assert _folder_state(folder) == before


def test_clean_photos_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(PhotoError, match="not a folder"):
        load_split("train", tmp_path / "missing")
    small = _photo_folder(tmp_path / "small", 2)
    with pytest.raises(PhotoError, match="2 image"):
        load_split("train", small)
    broken = _photo_folder(tmp_path / "broken", 12)
    splits = folder_splits(broken)
    bad = splits["train"][0]
    bad.write_bytes(b"this is not a png")
    with pytest.raises(PhotoError, match=bad.name):
        load_split("train", broken)
    with pytest.raises(DatasetError if issubclass(PhotoError, DatasetError) else PhotoError):
        synthetic_pairs("train", "mixed", 16, 2, seed=0, photos=str(broken))
