"""dataset.py: every layout on tiny generated folders, errors, patches and splits (CPU, seconds)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import config
from dataset import (DatasetError, InMemoryPairs, PatchDataset, build_train_val, open_pairs,
                     open_rainy, split_train_val, synthetic_pairs)
from utils.io.layout_detection import detect_layout
from utils.io.layouts import LAYOUTS

H, W = 12, 16


def _clean_u8(seed: int, h: int = H, w: int = W) -> np.ndarray:
    """Random RGB uint8 image with even values, so rainy = clean // 2 is exact in 8 bits."""
    return (np.random.default_rng(seed).integers(0, 128, size=(h, w, 3)) * 2).astype(np.uint8)


def _write(path: Path, rgb_u8: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = rgb_u8[:, :, ::-1] if rgb_u8.ndim == 3 and rgb_u8.shape[2] == 3 else rgb_u8
    assert cv2.imwrite(str(path), image)
    return path


def _write_pair(rainy_path: Path, clean_path: Path, seed: int, h: int = H, w: int = W) -> None:
    clean = _clean_u8(seed, h, w)
    _write(clean_path, clean)
    _write(rainy_path, clean // 2)


def _assert_half(pairs) -> None:
    """Every item pairs a rainy image with *its* clean image: rainy == clean / 2."""
    for i in range(len(pairs)):
        item = pairs[i]
        assert item["rainy"].dtype == torch.float32 and item["rainy"].shape[0] == 3
        np.testing.assert_allclose(item["rainy"].numpy() * 2, item["clean"].numpy(), atol=1.5 / 255)


def _snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix():
            (p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


# ----------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("rainy_dir,clean_dir", [
    ("input", "target"), ("Input", "GT"), ("rainy", "clean"), ("lq", "gt"), ("rain", "norain")])
def test_folders_layout_and_name_variants(tmp_path, rainy_dir, clean_dir):
    for i in range(3):
        _write_pair(tmp_path / rainy_dir / f"{i}.png", tmp_path / clean_dir / f"{i}.png", i)
    pairs = open_pairs(tmp_path)
    assert pairs.layout == "folders" and pairs.names == ["0", "1", "2"]
    _assert_half(pairs)


def test_folders_match_rain_norain_and_x2_names(tmp_path):
    for i in (1, 2, 10):
        _write_pair(tmp_path / "input" / f"rain-{i:03d}.png", tmp_path / "target" / f"norain-{i:03d}.png", i)
    pairs = open_pairs(tmp_path, layout="folders")
    assert pairs.names == ["rain-001", "rain-002", "rain-010"]
    _assert_half(pairs)
    other = tmp_path / "other"
    for i in (1, 2):
        _write_pair(other / "input" / f"norain-{i}x2.png", other / "target" / f"norain-{i}.png", i)
    _assert_half(open_pairs(other))


def test_rain_norain_one_folder(tmp_path):
    for i in (1, 2, 10):
        _write_pair(tmp_path / f"rain-{i}.png", tmp_path / f"norain-{i}.png", i)
    _write(tmp_path / "rainstreak-1.png", _clean_u8(9))  # extra JORDER files are ignored
    assert detect_layout(tmp_path) == "rain-norain"
    pairs = open_pairs(tmp_path)
    assert pairs.names == ["rain-1", "rain-2", "rain-10"]  # natural order
    _assert_half(pairs)


def test_rain200_layout(tmp_path):
    for i in (1, 2, 3):
        _write_pair(tmp_path / "rain" / "X2" / f"norain-{i}x2.png", tmp_path / "norain" / f"norain-{i}.png", i)
    pairs = open_pairs(tmp_path)
    assert pairs.layout == "rain200" and pairs.names == ["norain-1x2", "norain-2x2", "norain-3x2"]
    _assert_half(pairs)


@pytest.mark.parametrize("dirs", [("rainy_image", "ground_truth"), ("rainy image", "ground truth")])
def test_ddn_layout_many_rainy_per_clean(tmp_path, dirs):
    for i in (1, 2, 3):
        clean = _clean_u8(i)
        _write(tmp_path / dirs[1] / f"{i}.png", clean)
        for j in (1, 2, 3, 4):
            _write(tmp_path / dirs[0] / f"{i}_{j}.png", clean // 2)
    pairs = open_pairs(tmp_path)
    assert pairs.layout == "ddn" and len(pairs) == 12 and pairs.names[:2] == ["1_1", "1_2"]
    _assert_half(pairs)
    # Split by clean image: the 4 rainy versions of one scene never straddle train and val.
    train, val = split_train_val(pairs, 0.34, seed=0)
    assert len(val) == 4 and len(train) == 8
    assert not set(train.group_keys()) & set(val.group_keys())
    assert {n.split("_")[0] for n in val.names}.isdisjoint({n.split("_")[0] for n in train.names})


def test_ddn_jpg_files(tmp_path):
    clean = _clean_u8(0, 32, 32)
    _write(tmp_path / "ground_truth" / "5.jpg", clean)
    _write(tmp_path / "rainy_image" / "5_1.jpg", clean // 2)
    pairs = open_pairs(tmp_path, layout="ddn")
    item = pairs[0]
    assert item["name"] == "5_1" and item["rainy"].shape == (3, 32, 32)
    assert abs(float(item["rainy"].mean()) * 2 - float(item["clean"].mean())) < 0.02


@pytest.mark.parametrize("side_order", ["clean-rainy", "rainy-clean"])
def test_side_by_side_both_orders(tmp_path, side_order):
    for i in range(3):
        clean = _clean_u8(i, 16, 20)
        halves = (clean, clean // 2) if side_order == "clean-rainy" else (clean // 2, clean)
        _write(tmp_path / f"{i}.png", np.concatenate(halves, axis=1))
    assert detect_layout(tmp_path) == "side-by-side"
    pairs = open_pairs(tmp_path, side_order=side_order)
    assert pairs.layout == "side-by-side" and pairs[0]["rainy"].shape == (3, 16, 20)
    _assert_half(pairs)
    other = "rainy-clean" if side_order == "clean-rainy" else "clean-rainy"
    wrong = open_pairs(tmp_path, side_order=other)
    np.testing.assert_allclose(wrong[0]["clean"].numpy() * 2, wrong[0]["rainy"].numpy(), atol=1.5 / 255)


def test_side_by_side_odd_width_drops_last_column(tmp_path):
    clean = _clean_u8(0, 10, 8)
    odd = np.concatenate([clean, clean // 2, np.zeros((10, 1, 3), np.uint8)], axis=1)  # 17 px wide
    _write(tmp_path / "a.png", odd)
    # rainy = clean / 2 is darker, unlike rain: the order is given, not judged from the pixels.
    item = open_pairs(tmp_path, layout="side-by-side", side_order="clean-rainy")[0]
    assert item["rainy"].shape == item["clean"].shape == (3, 10, 8)
    np.testing.assert_allclose(item["rainy"].numpy() * 2, item["clean"].numpy(), atol=1.5 / 255)


def test_pair_list_relative_paths_comments_and_separators(tmp_path):
    for i in range(3):
        _write_pair(tmp_path / "real_world" / f"{i}" / f"{i}-1.png", tmp_path / "real_world_gt" / f"{i}.png", i)
    (tmp_path / "real_world.txt").write_text(
        "# SPA-Data style\n"
        "/real_world/0/0-1.png /real_world_gt/0.png\n"
        "\n"
        "real_world/1/1-1.png,real_world_gt/1.png   # a comment\n"
        "real_world/2/2-1.png\treal_world_gt/2.png\n")
    for root in (tmp_path / "real_world.txt", tmp_path):
        assert detect_layout(root) == "pair-list"
        pairs = open_pairs(root)
        assert pairs.names == ["0-1", "1-1", "2-1"]
        _assert_half(pairs)


def test_pair_list_errors(tmp_path):
    _write_pair(tmp_path / "r.png", tmp_path / "c.png", 0)
    (tmp_path / "bad.txt").write_text("r.png c.png\nr.png\n")
    with pytest.raises(DatasetError, match=r"bad.txt:2: expected 'rainy_path clean_path'"):
        open_pairs(tmp_path / "bad.txt")
    (tmp_path / "bad.txt").write_text("r.png c.png\nmissing.png c.png\ngone.png c.png\n")
    with pytest.raises(DatasetError, match=r"2 listed file\(s\) do not exist.*missing.png \(line 2\)"):
        open_pairs(tmp_path / "bad.txt")
    (tmp_path / "bad.txt").write_text("# nothing\n")
    with pytest.raises(DatasetError, match="the pair list is empty"):
        open_pairs(tmp_path / "bad.txt")


def test_open_rainy_folder_file_and_errors(tmp_path):
    for name in ("b.jpg", "a.png", "c10.png", "c2.png"):
        _write(tmp_path / "real" / name, _clean_u8(0))
    (tmp_path / "real" / "notes.txt").write_text("not an image")
    (tmp_path / "real" / ".DS_Store").write_bytes(b"junk")
    rainy = open_rainy(tmp_path / "real")
    assert rainy.names == ["a", "b", "c2", "c10"] and len(rainy.paths) == 4
    item = rainy[0]
    assert set(item) == {"name", "rainy"} and item["rainy"].shape == (3, H, W)
    single = open_rainy(tmp_path / "real" / "b.jpg")
    assert single.names == ["b"] and len(single) == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        open_rainy(tmp_path / "empty")
    _write(tmp_path / "nested" / "sub" / "x.png", _clean_u8(0))
    with pytest.raises(DatasetError, match="recursive=True"):
        open_rainy(tmp_path / "nested")
    assert open_rainy(tmp_path / "nested", recursive=True).names == ["x"]
    with pytest.raises(DatasetError, match="not an image file"):
        open_rainy(tmp_path / "real" / "notes.txt")
    with pytest.raises(DatasetError, match="no such file"):
        open_rainy(tmp_path / "nowhere")


# ----------------------------------------------------------------------------- errors


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(DatasetError, match="the folder is empty"):
        open_pairs(tmp_path)
    with pytest.raises(DatasetError, match="no such file or folder"):
        open_pairs(tmp_path / "missing")
    (tmp_path / "input").mkdir()
    (tmp_path / "target").mkdir()
    with pytest.raises(DatasetError, match="no images in the rainy folder"):
        open_pairs(tmp_path)


def test_unmatched_files_are_listed_with_count(tmp_path):
    for i in range(2):
        _write_pair(tmp_path / "input" / f"{i}.png", tmp_path / "target" / f"{i}.png", i)
    for i in range(7):
        _write(tmp_path / "input" / f"extra{i}.png", _clean_u8(i))
    _write(tmp_path / "target" / "lonely.png", _clean_u8(0))
    with pytest.raises(DatasetError) as info:
        open_pairs(tmp_path)
    message = str(info.value)
    assert "7 rainy file(s)" in message and "extra0.png" in message and "(7 in all)" in message
    assert "1 clean file(s)" in message and "lonely.png" in message
    assert "tried:" in message


def test_pair_size_mismatch_names_both_files(tmp_path):
    _write(tmp_path / "input" / "a.png", _clean_u8(0, 12, 16))
    _write(tmp_path / "target" / "a.png", _clean_u8(0, 12, 18))
    pairs = open_pairs(tmp_path)  # names are fine; sizes are checked when read
    with pytest.raises(DatasetError, match=r"size mismatch.*input/a.png is 16x12.*target/a.png is 18x12"):
        pairs[0]
    with pytest.raises(DatasetError, match="1 of 1 pairs cannot be used.*input/a.png is 16x12"):
        pairs.verify()


def test_corrupt_file_is_named(tmp_path):
    _write_pair(tmp_path / "input" / "a.png", tmp_path / "target" / "a.png", 0)
    (tmp_path / "input" / "b.png").write_bytes(b"\x89PNG but not really")
    _write(tmp_path / "target" / "b.png", _clean_u8(1))
    pairs = open_pairs(tmp_path)
    pairs[0]
    with pytest.raises(DatasetError, match=r"input/b.png: not a readable image"):
        pairs[1]
    with pytest.raises(DatasetError, match=r"input/b.png"):
        PatchDataset(pairs, 8)[1]


def test_unknown_layout_names_and_failed_detection(tmp_path):
    _write_pair(tmp_path / "input" / "a.png", tmp_path / "target" / "a.png", 0)
    with pytest.raises(DatasetError, match="unknown layout 'rain13k'.*folders, rain-norain"):
        open_pairs(tmp_path, layout="rain13k")
    with pytest.raises(DatasetError, match="layout 'ddn' needs subfolders rainy_image/"):
        open_pairs(tmp_path, layout="ddn")
    with pytest.raises(DatasetError, match="unknown side_order"):
        open_pairs(tmp_path, side_order="left-right")
    # A folder of unrelated photos plus train/ and test/: not a pair layout.
    odd = tmp_path / "odd"
    for i in range(3):
        _write(odd / f"photo{i}.png", _clean_u8(i, 16, 24))
    (odd / "train").mkdir()
    (odd / "test").mkdir()
    with pytest.raises(DatasetError) as info:
        open_pairs(odd)
    message = str(info.value)
    for layout in LAYOUTS:
        assert layout in message
    assert "halves do not show the same scene" in message and "train/ or test/" in message


def test_single_image_file_is_rejected_with_a_hint(tmp_path):
    path = _write(tmp_path / "a.png", _clean_u8(0))
    with pytest.raises(DatasetError, match="use open_rainy"):
        open_pairs(path)


def test_gray_rgba_and_16bit_are_converted(tmp_path):
    gray = np.random.default_rng(0).integers(0, 128, size=(H, W)).astype(np.uint8) * 2
    _write(tmp_path / "input" / "gray.png", gray // 2)
    _write(tmp_path / "target" / "gray.png", np.repeat(gray[:, :, None], 3, axis=2))
    rgb = _clean_u8(1)
    rgba_half = np.concatenate([rgb // 2, np.full((H, W, 1), 77, np.uint8)], axis=2)
    assert cv2.imwrite(str(tmp_path / "input" / "rgba.png"), rgba_half[:, :, [2, 1, 0, 3]])
    _write(tmp_path / "target" / "rgba.png", rgb)
    rgb16 = rgb.astype(np.uint16) * 257
    assert cv2.imwrite(str(tmp_path / "input" / "deep.png"), (rgb16 // 2)[:, :, ::-1])
    _write(tmp_path / "target" / "deep.png", rgb)
    pairs = open_pairs(tmp_path)
    for i in range(len(pairs)):
        item = pairs[i]
        assert item["rainy"].shape == item["clean"].shape == (3, H, W)
        assert item["rainy"].dtype == torch.float32
        assert 0.0 <= float(item["rainy"].min()) and float(item["rainy"].max()) <= 1.0
    _assert_half(pairs)


def test_loading_never_modifies_the_input_folder(tmp_path):
    for i in range(4):
        _write_pair(tmp_path / "input" / f"{i}.png", tmp_path / "target" / f"{i}.png", i)
    before = _snapshot(tmp_path)
    pairs = open_pairs(tmp_path)
    pairs.verify()
    train, val = split_train_val(pairs, 0.25, seed=0)
    patches = PatchDataset(train, 8, augment=True, seed=0)
    for i in range(len(patches)):
        patches[i]
    open_rainy(tmp_path / "input")[0]
    assert _snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- patches


def _half_pairs(shapes) -> InMemoryPairs:
    rng = np.random.default_rng(0)
    clean = [rng.random((*s, 3), dtype=np.float32) for s in shapes]
    return InMemoryPairs([f"p{i}" for i in range(len(shapes))], [c * 0.5 for c in clean], clean)


@pytest.mark.parametrize("augment", [False, True, "hflip"])
def test_crops_stay_aligned(augment):
    pairs = _half_pairs([(20, 30), (33, 17), (24, 24)])
    patches = PatchDataset(pairs, 16, augment=augment, seed=3, repeat=4)
    assert len(patches) == 12
    for epoch in range(3):
        patches.set_epoch(epoch)
        for i in range(len(patches)):
            item = patches[i]
            assert item["rainy"].shape == item["clean"].shape == (3, 16, 16)
            assert item["rainy"].dtype == torch.float32
            torch.testing.assert_close(item["rainy"] * 2, item["clean"])


def test_crop_comes_from_the_image_at_one_place():
    clean = np.random.default_rng(1).random((20, 30, 3), dtype=np.float32)
    pairs = InMemoryPairs(["a"], [1.0 - clean], [clean])
    item = PatchDataset(pairs, 8, augment=False, seed=0)[0]
    crop = item["clean"].permute(1, 2, 0).numpy()
    hits = [(y, x) for y in range(13) for x in range(23) if np.array_equal(clean[y:y + 8, x:x + 8], crop)]
    assert len(hits) == 1
    y, x = hits[0]
    np.testing.assert_array_equal(item["rainy"].permute(1, 2, 0).numpy(), 1.0 - clean[y:y + 8, x:x + 8])


@pytest.mark.parametrize("shape", [(10, 7), (1, 1), (5, 40)])
def test_small_images_are_reflect_padded(shape):
    pairs = _half_pairs([shape])
    item = PatchDataset(pairs, 16, augment=True, seed=0)[0]
    assert item["clean"].shape == (3, 16, 16)
    torch.testing.assert_close(item["rainy"] * 2, item["clean"])
    values = set(np.round(pairs.clean_images[0].ravel(), 6))
    assert set(np.round(item["clean"].numpy().ravel(), 6)) <= values  # reflected, no zeros added


def test_patches_deterministic_per_epoch_and_worker_count():
    pairs = _half_pairs([(40, 40)] * 6)
    patches = PatchDataset(pairs, 8, augment=True, seed=11)
    first = torch.stack([patches[i]["clean"] for i in range(6)])
    again = torch.stack([PatchDataset(pairs, 8, augment=True, seed=11)[i]["clean"] for i in range(6)])
    torch.testing.assert_close(first, again)
    patches.set_epoch(1)
    assert not torch.equal(first, torch.stack([patches[i]["clean"] for i in range(6)]))
    other_seed = PatchDataset(pairs, 8, augment=True, seed=12)
    assert not torch.equal(first, torch.stack([other_seed[i]["clean"] for i in range(6)]))
    patches.set_epoch(0)
    batches = [torch.cat([b["clean"] for b in DataLoader(patches, batch_size=2, num_workers=n)])
               for n in (0, 2)]
    torch.testing.assert_close(batches[0], first)
    torch.testing.assert_close(batches[1], first)


def test_patch_dataset_rejects_bad_arguments():
    pairs = _half_pairs([(8, 8)])
    with pytest.raises(ValueError, match="unknown augment"):
        PatchDataset(pairs, 8, augment="rotate")
    with pytest.raises(ValueError, match="patch_size"):
        PatchDataset(pairs, 0)
    with pytest.raises(DatasetError, match="empty"):
        PatchDataset(InMemoryPairs([], [], []), 8)


# ----------------------------------------------------------------------------- splits and builders


def test_split_is_deterministic_disjoint_and_never_empties_train():
    pairs = _half_pairs([(4, 4)] * 40)
    train, val = split_train_val(pairs, 0.1, seed=5)
    train2, val2 = split_train_val(pairs, 0.1, seed=5)
    assert train.indices == train2.indices and val.indices == val2.indices
    assert len(val) == 4 and sorted(train.indices + val.indices) == list(range(40))
    assert not set(train.names) & set(val.names)
    _, val_other = split_train_val(pairs, 0.1, seed=6)
    assert val_other.indices != val.indices
    tiny = _half_pairs([(4, 4)] * 2)
    train, val = split_train_val(tiny, 0.9, seed=0)
    assert len(train) == 1 and len(val) == 1
    train, val = split_train_val(tiny, 0.0, seed=0)
    assert len(train) == 2 and len(val) == 0
    train, val = split_train_val(_half_pairs([(4, 4)]), 0.5, seed=0)
    assert len(train) == 1 and len(val) == 0
    with pytest.raises(ValueError, match="val_fraction"):
        split_train_val(tiny, 1.0, seed=0)
    item = train[0]
    assert set(item) == {"name", "rainy", "clean"}


def test_synthetic_pairs_splits_and_hidden_ground_truth():
    train = synthetic_pairs("train", "light", 24, 6, seed=0)
    test = synthetic_pairs("test", "shifted", 24, 4, seed=0)
    assert len(train) == 6 and len(set(train.names)) == 6
    item = test[0]
    assert item["rainy"].shape == item["clean"].shape == (3, 24, 24)
    assert len(test.clean_images) == 4
    np.testing.assert_array_equal(test.clean_images[0], item["clean"].permute(1, 2, 0).numpy())
    rainy_only = test.rainy_only()
    assert set(rainy_only[0]) == {"name", "rainy"} and rainy_only.names == test.names
    train_clean = {c.tobytes() for c in train.clean_images}
    assert not train_clean & {c.tobytes() for c in test.clean_images}
    again = synthetic_pairs("train", "light", 24, 6, seed=0)
    for a, b in zip(train.rainy_images, again.rainy_images):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="unknown split"):
        synthetic_pairs("holdout", "light", 24, 2, seed=0)


def test_build_train_val_embedded_and_folder(tmp_path):
    cfg = config.demo().data
    cfg.synthetic_size, cfg.synthetic_count, cfg.synthetic_val_count = 20, 5, 3
    train, val = build_train_val(cfg, seed=0)
    assert (len(train), len(val)) == (5, 3)
    assert not {c.tobytes() for c in train.clean_images} & {c.tobytes() for c in val.clean_images}
    for i in range(8):
        _write_pair(tmp_path / "input" / f"{i}.png", tmp_path / "target" / f"{i}.png", i)
    cfg.root, cfg.val_fraction = str(tmp_path), 0.25
    train, val = build_train_val(cfg, seed=1)
    assert (len(train), len(val)) == (6, 2)
    _assert_half(val)
    patches = PatchDataset(train, 8, cfg.augment, seed=0)
    torch.testing.assert_close(patches[0]["rainy"] * 2, patches[0]["clean"], atol=1.5 / 255, rtol=0)
