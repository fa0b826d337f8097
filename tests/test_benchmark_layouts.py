"""Public benchmarks in the exact shape their authors distribute them (tests/benchmarks.py) are
read as they are: the right layout, names, pairs and count, by open_pairs and by
`eval.py --data NAME=DIR`; result folders written by their test scripts pair with
`eval.py --results`; a folder that fits no layout says what it holds and what comes nearest."""
from __future__ import annotations

import numpy as np
import pytest

import benchmarks
import eval as evaluate_script
from dataset import DatasetError, build_train_val, open_pairs
from config import demo
from utils.io.images import read_image, write_image
from utils.io.layout_detection import detect_layout
from utils.io.name_matching import RESULT_NAME_RULES
from utils.metrics.protocols import image_metrics
from utils.metrics.result_folders import restored_only

BUILDERS = [benchmarks.prenet_rain100, benchmarks.prenet_train, benchmarks.prenet_rain12,
            benchmarks.li_rain12, benchmarks.ddn_rain1400, benchmarks.jorder_rain200,
            benchmarks.jorder_train_light, benchmarks.rcdnet_small, benchmarks.rain13k_test,
            benchmarks.drsformer_rain200, benchmarks.idcgan_rain800, benchmarks.didmdn_rain1200,
            benchmarks.spa_test, benchmarks.spa_train]


def eval_rows(bench, tmp_path, monkeypatch, data=None) -> dict:
    """eval.py on the benchmark and every result folder, with no model (rows by method). A set
    whose authors' results have no known names gets one a generic test script would write:
    the clean images under the rainy images' names."""
    if not bench.results:
        files = [tmp_path / "generic" / f"{name}.png" for name in bench.names]
        for path, (_, clean) in zip(files, bench.pairs):
            write_image(path, clean)
        bench.results["generic"] = (tmp_path / "generic", files)
    monkeypatch.setattr(evaluate_script, "open_model",
                        lambda *a, **k: pytest.fail("a model was loaded for --results only"))
    argv = ["--data", f"{bench.name}={data or bench.data}", "--protocols", "rgb", "--device", "cpu",
            "--workers", "0", "--out", str(tmp_path / "eval")]
    for method, (folder, _) in bench.results.items():
        argv += ["--results", f"{method}={folder}"]
    result = evaluate_script.run(evaluate_script.parse_args(argv))
    return {row["method"]: row for row in result["rows"]}


def mean_psnr(images, truths) -> float:
    return float(np.mean([image_metrics(a, b, ("rgb",))["rgb/psnr"] for a, b in zip(images, truths)]))


@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__name__)
def test_benchmark_is_read_as_distributed(build, tmp_path, monkeypatch):
    bench = build(tmp_path)
    assert detect_layout(bench.data) == bench.layout
    pairs = open_pairs(bench.data)
    assert pairs.layout == bench.layout and pairs.names == bench.names
    for index, (rainy, clean) in enumerate(bench.pairs):
        got = pairs.load(index)
        np.testing.assert_array_equal(got[0], rainy, err_msg=f"rainy {bench.names[index]}")
        np.testing.assert_array_equal(got[1], clean, err_msg=f"clean {bench.names[index]}")
    assert pairs.verify() == [clean.shape[:2] for _, clean in bench.pairs]

    rows = eval_rows(bench, tmp_path, monkeypatch)
    truths = [clean for _, clean in bench.pairs]
    assert rows["rainy input"]["images"] == len(bench.pairs)
    assert rows["rainy input"]["rgb/psnr"] == pytest.approx(mean_psnr([r for r, _ in bench.pairs], truths))
    for method, (_, files) in bench.results.items():
        expected = mean_psnr([read_image(f) for f in files], truths)
        assert rows[method]["images"] == len(bench.pairs)
        assert rows[method]["rgb/psnr"] == pytest.approx(expected), method


def test_spa_test_set_through_its_pair_list(tmp_path, monkeypatch):
    """real_test_1000.txt (CRLF lines, paths from a leading '/') reads the same pairs, whether
    given itself or as the folder that holds it and the image folder."""
    bench = benchmarks.spa_test(tmp_path)
    for data in (tmp_path / "Testing" / "real_test_1000.txt", tmp_path / "Testing"):
        pairs = open_pairs(data)
        assert pairs.layout == "pair-list" and pairs.names == bench.names
        np.testing.assert_array_equal(pairs.load(2)[1], bench.pairs[2][1])
    assert eval_rows(bench, tmp_path, monkeypatch, tmp_path / "Testing")["rainy input"]["images"] == 3


def test_several_sets_and_one_result_folder_per_set(tmp_path, monkeypatch):
    """MPRNet/Restormer: Datasets/test/<set> for each set, results/<set>/ for each set."""
    light = benchmarks.rain13k_test(tmp_path, "Rain100L")
    heavy = benchmarks.rain13k_test(tmp_path, "Rain100H")
    monkeypatch.setattr(evaluate_script, "open_model", lambda *a, **k: pytest.fail("model loaded"))
    argv = ["--data", f"Rain100L={light.data}", "--data", f"Rain100H={heavy.data}", "--results",
            f"MPRNet={tmp_path / 'results'}", "--protocols", "rgb", "--device", "cpu", "--workers", "0",
            "--out", str(tmp_path / "eval")]
    rows = evaluate_script.run(evaluate_script.parse_args(argv))["rows"]
    mprnet = {row["dataset"]: row for row in rows if row["method"] == "MPRNet"}
    assert set(mprnet) == {"Rain100L", "Rain100H"}
    assert all(row["rgb/psnr"] == float("inf") for row in mprnet.values())


def test_prenet_training_set_is_split_and_the_lonely_clean_file_named(tmp_path, caplog):
    bench = benchmarks.prenet_train(tmp_path)
    cfg = demo().data
    cfg.root, cfg.val_fraction = str(bench.data), 0.2
    train, val = build_train_val(cfg, seed=0)
    assert (len(train), len(val)) == (4, 1) and sorted(train.names + val.names) == sorted(bench.names)
    assert "1 clean image(s) have no rainy image and are left out: norain-9.png" in caplog.text


def test_side_order_is_seen_from_the_pixels_and_can_be_forced(tmp_path):
    didmdn, rain800 = benchmarks.didmdn_rain1200(tmp_path / "a"), benchmarks.idcgan_rain800(tmp_path / "b")
    assert open_pairs(didmdn.data).side_order == "rainy-clean"
    assert open_pairs(rain800.data).side_order == "clean-rainy"
    forced = open_pairs(didmdn.data, side_order="clean-rainy")
    np.testing.assert_array_equal(forced.load(0)[0], didmdn.pairs[0][1])
    # Halves that differ by a uniform shift give no side: the error asks for the order.
    flat = tmp_path / "flat"
    for i in range(3):
        image = benchmarks.scene(i)
        write_image(flat / f"{i}.png", np.concatenate([image, image * 0.99], axis=1))
    with pytest.raises(DatasetError, match="cannot tell which half .* clean-rainy or rainy-clean"):
        open_pairs(flat)


def test_detection_failure_says_what_was_found_and_what_is_nearest(tmp_path):
    bench = benchmarks.prenet_rain100(tmp_path)
    for clean in bench.data.glob("norain-*.png"):  # a copy that lost its ground truth
        clean.unlink()
    with pytest.raises(DatasetError, match=r"layout 'rain-norain' needs norain-<id> files .* found 3 rainy "
                                           r"and 0 clean"):
        open_pairs(bench.data)
    lone = tmp_path / "lone"
    write_image(lone / "input" / "1.png", benchmarks.scene(0))
    (lone / "notes.txt").write_text("x")
    (lone / "more.txt").write_text("y")
    with pytest.raises(DatasetError) as info:
        open_pairs(lone)
    message = str(info.value)
    assert "Found 0 image(s), subfolders input/, 2 other file(s) (more.txt, notes.txt)" in message
    assert "folders/ddn: found input/ but no clean subfolder" in message and "target/" in message
    assert "pair-list: found 2 list files (more.txt, notes.txt)" in message
    rain13k = tmp_path / "Datasets" / "test"
    benchmarks.rain13k_test(tmp_path, "Rain100L")
    benchmarks.rain13k_test(tmp_path, "Test100")
    with pytest.raises(DatasetError, match=r"Nearest: its subfolders hold data sets: Rain100L/ \(folders\), Test100/ "
                                           r"\(folders\); point at one of them"):
        open_pairs(rain13k)
    spa = benchmarks.spa_test(tmp_path / "spa")
    (spa.data.parent / "Real_Internet.txt").write_text("/Real_Internet/1.png /Real_Internet/1.png\n")
    with pytest.raises(DatasetError, match="found 2 list files"):
        open_pairs(spa.data.parent)


def test_restored_files_are_told_from_the_copies_beside_them(tmp_path):
    def names(*files):
        return [p.name for p in restored_only([tmp_path / f for f in files])]

    rcdnet = ("norain-1_x2_HR.png", "norain-1_x2_LR.png", "norain-1_x2_SR.png", "norain-2_x2_SR.png")
    assert names(*rcdnet) == ["norain-1_x2_SR.png", "norain-2_x2_SR.png"]
    assert names("1_DR.png", "1_GT.png", "2_DR.png") == ["1_DR.png", "2_DR.png"]
    # Without copies, or with a file of no known tag, a folder is taken as it is.
    assert names("1_SR.png", "2_SR.png") == ["1_SR.png", "2_SR.png"]
    assert names("1_DR.png", "1_GT.png", "notes_1.png") == ["1_DR.png", "1_GT.png", "notes_1.png"]
    assert names("a_gt.png", "b_gt.png") == ["a_gt.png", "b_gt.png"]


def test_short_method_tags_need_a_separator():
    rules = {label: right for label, _, right in RESULT_NAME_RULES}
    suffix = rules["names without method suffixes (_derain, _out, _x2_SR, ...)"]
    assert suffix("norain-12_x2_SR") == suffix("norain-12") == "12"
    assert suffix("7_DR") == "7" and suffix("laser") == "laser" and suffix("cedar") == "cedar"
