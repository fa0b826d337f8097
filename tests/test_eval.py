"""eval.py: tables in md/csv/json/tex, the rainy input row, several checkpoints, result folders
(pairing, alignment, errors), --compare, per-image output, clear errors."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import eval as evaluate_script
import show
from config import demo
from dataset import synthetic_from_config
from networks import build_model
from utils.cli import run_main
from utils.errors import UserError
from utils.inference import derain
from utils.io.checkpoints import load_model, save_checkpoint
from utils.io.images import read_image, to_image, to_tensor, write_image
from utils.metrics.protocols import image_metrics
from utils.synthetic.sets import write_rainy_set


def make_checkpoint(path: Path, seed: int = 0) -> Path:
    cfg = demo()
    cfg.model.channels, cfg.model.encoder_blocks = 4, (1, 1, 1)
    cfg.data.synthetic_size = 48
    torch.manual_seed(seed)
    save_checkpoint({"config": cfg.to_dict(), "model": build_model(cfg.model).state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("x") / "ckpt" / "tiny.pth")


@pytest.fixture
def paired(tmp_path):
    """A tiny data set in the input/target layout: clean images plus 'rain' streaks."""
    root = tmp_path / "tinyset"
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 48), (36, 52)]):
        clean = rng.random((h, w, 3)) * 0.5 + 0.25
        rainy = clean.copy()
        rainy[:, ::7] = 0.95
        write_image(root / "target" / f"{i}.png", clean)
        write_image(root / "input" / f"{i}.png", rainy)
    return root


def run(argv, checkpoint):
    args = evaluate_script.parse_args([*argv, "--checkpoint", str(checkpoint), "--device", "cpu",
                                       "--workers", "0", "--macs-size", "64"])
    return evaluate_script.run(args)


def test_eval_folder_writes_tables_and_input_row(paired, tmp_path, checkpoint):
    out = tmp_path / "ev"
    result = run(["--data", f"tiny={paired}", "--out", str(out), "--per-image", "--save-images"],
                 checkpoint)
    for name in ("results.md", "results.csv", "results.json", "results.tex", "settings.json",
                 "per_image.csv"):
        assert (out / name).is_file(), name
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["dataset"], r["method"]) for r in rows] == [("tiny", "rainy input"), ("tiny", "ckpt")]
    assert all(r["images"] == 2 for r in rows)
    assert rows[1]["runtime_s"] > 0 and rows[0]["runtime_s"] is None and rows[0]["params"] is None

    # The rainy input row is exactly the metrics of the rainy inputs.
    expected = [image_metrics(read_image(paired / "input" / f"{i}.png"),
                              read_image(paired / "target" / f"{i}.png")) for i in range(2)]
    for key in expected[0]:
        assert rows[0][key] == pytest.approx(np.mean([e[key] for e in expected]), abs=1e-9)

    md = (out / "results.md").read_text()
    assert "PSNR (rgb)" in md and "SSIM (y-float)" in md and "rainy input" in md and "GMACs at 64x64" in md
    with (out / "results.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 2 and float(table[1]["params"]) == result["complexity"]["ckpt"]["params"]
    with (out / "per_image.csv").open() as handle:
        per_image = list(csv.DictReader(handle))
    assert sorted((r["method"], r["name"]) for r in per_image) == [
        ("ckpt", "0"), ("ckpt", "1"), ("rainy input", "0"), ("rainy input", "1")]
    assert len(list((out / "images" / "ckpt" / "tiny").glob("*.png"))) == 2
    settings = json.loads((out / "settings.json").read_text())
    assert settings["model_configs"]["ckpt"]["model"]["channels"] == 4 and settings["tile"] is None
    # fp32 unless --precision says otherwise, named in the settings and under the table.
    assert settings["precision"] == "fp32" and settings["precision_reason"] == "requested"
    assert "precision fp32" in md


def test_eval_several_sets_tiled_one_protocol(paired, tmp_path, checkpoint):
    out = tmp_path / "ev2"
    run(["--data", str(paired), "--data", f"again={paired}", "--protocols", "rgb", "--tile", "32",
         "--overlap", "8", "--crop-border", "2", "--no-input-row", "--out", str(out)], checkpoint)
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["dataset"] for r in rows] == ["tinyset", "again"]
    assert set(k for k in rows[0] if "/" in k) == {"rgb/psnr", "rgb/ssim"}
    assert rows[0]["rgb/psnr"] == pytest.approx(rows[1]["rgb/psnr"])


def test_eval_default_is_embedded_synthetic_sets(tmp_path, checkpoint):
    out = tmp_path / "ev3"
    run(["--synthetic-count", "2", "--protocols", "rgb", "--out", str(out)], checkpoint)
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["dataset"], r["method"]) for r in rows] == [
        (f"synthetic-{p}", label) for p in ("light", "heavy", "shifted", "mixed", "streaks", "gusty")
        for label in ("rainy input", "ckpt")] + [("synthetic-dry", "ckpt")]


def test_dry_sets_score_the_photo_against_itself_with_its_brightness_shift(tmp_path, checkpoint):
    """A rain-free photo goes in and is the truth: the row is the harm the model does. No input
    row (it would be the photo itself, PSNR inf); Δ brightness is mean(output) - mean(photo)."""
    folder = tmp_path / "dry_photos"
    rng = np.random.default_rng(3)
    photos = [rng.random((40, 56, 3)).astype(np.float32) * 0.6 + 0.2 for _ in range(2)]
    for i, photo in enumerate(photos):
        write_image(folder / f"p{i}.png", photo)
    before = sorted((p.name, p.read_bytes()) for p in folder.iterdir())
    out = tmp_path / "ev_dry"
    run(["--dry", f"mine={folder}", "--synthetic", "dry", "--synthetic-count", "2",
         "--protocols", "rgb", "--out", str(out), "--per-image"], checkpoint)
    assert sorted((p.name, p.read_bytes()) for p in folder.iterdir()) == before  # only read
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["dataset"], r["method"]) for r in rows] == [("dry-mine", "ckpt"), ("synthetic-dry", "ckpt")]
    model, _ = load_model(checkpoint)
    shifts, psnrs = [], []
    for i in range(2):
        photo = read_image(folder / f"p{i}.png")
        pred = to_image(derain(model, to_tensor(photo)[None])[0])
        shifts.append(np.clip(pred, 0, 1).mean() - photo.mean())
        psnrs.append(image_metrics(pred, photo, ("rgb",))["rgb/psnr"])
    assert rows[0]["brightness"] == pytest.approx(np.mean(shifts), abs=1e-5)
    assert rows[0]["rgb/psnr"] == pytest.approx(np.mean(psnrs), abs=1e-3)
    table = (out / "results.md").read_text()
    assert "Δ brightness" in table and "Dry sets are rain-free photos" in table
    with (out / "per_image.csv").open() as handle:
        assert "brightness" in next(csv.reader(handle))


def test_brightness_column_signs_the_rainy_input_brighter(tmp_path, checkpoint, paired):
    out = tmp_path / "ev_b"
    run(["--data", str(paired), "--protocols", "rgb", "--out", str(out)], checkpoint)
    rows = {r["method"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert rows["rainy input"]["brightness"] > 0.05  # the white streaks of the fixture
    with pytest.raises(UserError, match="no images"):
        (tmp_path / "empty").mkdir()
        run(["--dry", str(tmp_path / "empty"), "--out", str(tmp_path / "x")], checkpoint)


def test_eval_errors(tmp_path, checkpoint, monkeypatch):
    with pytest.raises(UserError, match="not found"):
        monkeypatch.chdir(tmp_path)
        evaluate_script.run(evaluate_script.parse_args(["--checkpoint", "runs/none/best.pth"]))
    with pytest.raises(UserError, match="no such"):
        run(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x")], checkpoint)
    with pytest.raises(UserError, match="unknown protocol"):
        run(["--protocols", "rgb,psnr-hvs"], checkpoint)


# ----------------------------------------------------------------------------- result folders
def results_run(argv, tmp_path, monkeypatch=None):
    """eval.py without any checkpoint; a model being opened fails the test."""
    if monkeypatch is not None:
        monkeypatch.setattr(evaluate_script, "open_model",
                            lambda *a, **k: pytest.fail("a model was loaded for --results only"))
    args = evaluate_script.parse_args([*argv, "--device", "cpu", "--workers", "0"])
    return evaluate_script.run(args)


def test_results_folders_table_without_model(paired, tmp_path, monkeypatch):
    """Another method's outputs (named 0_derain.png), the ground truth itself, and --compare."""
    method = tmp_path / "prenet"
    for i in range(2):
        clean = read_image(paired / "target" / f"{i}.png")
        write_image(method / f"{i}_derain.png", np.clip(clean + 0.02, 0, 1))
    out = tmp_path / "ev"
    result = results_run(["--data", f"tiny={paired}", "--results", f"PReNet={method}",
                          "--results", f"GT={paired / 'target'}", "--compare", "--bootstrap", "200",
                          "--out", str(out)], tmp_path, monkeypatch)
    rows = result["rows"]
    assert [r["method"] for r in rows] == ["rainy input", "PReNet", "GT"]
    assert rows[2]["rgb/psnr"] == float("inf") and rows[2]["y/ssim"] == pytest.approx(1.0)
    expected = np.mean([image_metrics(read_image(method / f"{i}_derain.png"),
                                      read_image(paired / "target" / f"{i}.png"))["y/psnr"] for i in range(2)])
    assert rows[1]["y/psnr"] == pytest.approx(expected, abs=1e-12)
    assert rows[1]["params"] is None and result["complexity"] == {}
    # Identical images: inf in json (Infinity), "inf" in md, $\infty$ in tex, left out of --compare.
    assert json.loads((out / "results.json").read_text())["rows"][2]["rgb/psnr"] == float("inf")
    md = (out / "results.md").read_text()
    assert "| tiny | GT | inf |" in md and "Is a gap real?" in md and "left out" in md
    assert r"\textbf{$\infty$}" in (out / "results.tex").read_text()
    gt_vs_input = [c for c in result["comparisons"] if (c["a"], c["b"]) == ("rainy input", "GT")][0]
    assert gt_vs_input["rgb/images"] == 0 and gt_vs_input["rgb/excluded"] == 2
    prenet_vs_input = [c for c in result["comparisons"] if c["b"] == "PReNet"][0]
    assert prenet_vs_input["rgb/mean"] == pytest.approx(rows[1]["rgb/psnr"] - rows[0]["rgb/psnr"])


def test_results_crop_alignment(paired, tmp_path, monkeypatch):
    """A method that crops to even sizes: error by default, top-left crop of the GT with --align crop."""
    method = tmp_path / "cropper"
    outputs = []
    for i in range(2):
        clean = read_image(paired / "target" / f"{i}.png")
        outputs.append(np.clip(clean[:-3, :-2] * 0.9, 0, 1))
        write_image(method / f"{i}.png", outputs[-1])
    argv = ["--data", str(paired), "--results", f"C={method}", "--protocols", "y", "--out", str(tmp_path / "o")]
    with pytest.raises(UserError, match=r"2 mis-sized .*46x37 vs 48x40.*--align crop"):
        results_run(argv, tmp_path, monkeypatch)
    rows = results_run([*argv, "--align", "crop"], tmp_path, monkeypatch)["rows"]
    expected = [image_metrics(read_image(method / f"{i}.png"),
                              read_image(paired / "target" / f"{i}.png")[:outputs[i].shape[0], :outputs[i].shape[1]],
                              ("y",))["y/psnr"] for i in range(2)]
    assert rows[1]["y/psnr"] == pytest.approx(np.mean(expected), abs=1e-12)


def test_results_errors_are_one_line_exit_2(paired, tmp_path, capsys, monkeypatch):
    method = tmp_path / "partial"
    write_image(method / "0.png", read_image(paired / "target" / "0.png"))
    write_image(method / "extra_9.png", read_image(paired / "target" / "0.png"))
    for argv, message in [
            ([f"M={method}"], r"1 ground-truth image\(s\) without a result: 1; 1 result file\(s\) "
                              r"without ground truth: extra_9.png"),
            ([f"M={tmp_path / 'nowhere'}"], "no such folder")]:
        code = run_main(evaluate_script.main, ["--data", str(paired), "--results", *argv, "--device",
                                               "cpu", "--out", str(tmp_path / "o")])
        assert code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
        assert re.search(message, err), err
    # Two data sets: a result folder needs one subfolder per set.
    with pytest.raises(UserError, match="no subfolder"):
        results_run(["--data", f"a={paired}", "--data", f"b={paired}", "--results",
                     f"M={paired / 'target'}"], tmp_path)


def test_several_checkpoints_one_table(paired, tmp_path, checkpoint):
    other = make_checkpoint(tmp_path / "other" / "best.pth", seed=1)
    args = evaluate_script.parse_args(["--data", str(paired), "--checkpoint", f"first={checkpoint}",
                                       "--checkpoint", str(other), "--protocols", "rgb",
                                       "--device", "cpu", "--workers", "0", "--macs-size", "64",
                                       "--out", str(tmp_path / "o")])
    rows = evaluate_script.run(args)["rows"]
    assert [r["method"] for r in rows] == ["rainy input", "first", "other"]
    assert rows[1]["rgb/psnr"] != rows[2]["rgb/psnr"] and rows[1]["params"] == rows[2]["params"]
    tex = (tmp_path / "o" / "results.tex").read_text()
    assert "Params (M) & GMACs" in tex and tex.count(r"\textbf{") == 2  # PSNR and SSIM column


def test_show_folders_match_checkpoints_exactly(tmp_path, monkeypatch):
    """Done-when: on the embedded test split, folders written by show.py from two checkpoints,
    scored with --results, give the numbers of --checkpoint on the same images. Exactly: show.py
    writes 8-bit PNGs, so the checkpoint rows are scored as saved (--bits 8); without it the y
    and y-float protocols (which quantise to uint8 themselves) still agree bit for bit, and rgb
    differs by the 8-bit rounding only."""
    monkeypatch.setattr(evaluate_script, "complexity", lambda *_: {"params": 1, "gmacs": 0.0, "size": "-"})
    a = make_checkpoint(tmp_path / "a" / "best.pth", seed=1)
    b = make_checkpoint(tmp_path / "b" / "best.pth", seed=2)
    cfg = demo()
    cfg.data.synthetic_size = 48
    split = tmp_path / "split"
    for preset in ("light", "gusty"):
        pairs = synthetic_from_config(cfg.data, "test", preset=preset, count=2)
        write_rainy_set(split / preset, pairs.names, pairs.rainy_images, pairs.clean_images)
    for name, ckpt in (("A", a), ("B", b)):
        for preset in ("light", "gusty"):
            assert show.run(show.parse_args([str(split / preset / "input"), "--checkpoint", str(ckpt),
                                             "--out", str(tmp_path / name / "shown" / preset),
                                             # eval's default; show's `auto` is bf16 on a CPU with native bf16
                                             "--device", "cpu", "--precision", "fp32"])) == 0
    data = ["--data", f"light={split / 'light'}", "--data", f"gusty={split / 'gusty'}", "--device", "cpu",
            "--workers", "0", "--macs-size", "32"]
    scored = evaluate_script.run(evaluate_script.parse_args(
        [*data, "--results", f"A={tmp_path / 'A' / 'shown'}", "--results", f"B={tmp_path / 'B' / 'shown'}",
         "--out", str(tmp_path / "r")]))["rows"]
    derained = evaluate_script.run(evaluate_script.parse_args(
        [*data, "--checkpoint", f"A={a}", "--checkpoint", f"B={b}", "--bits", "8",
         "--out", str(tmp_path / "c")]))["rows"]
    floats = evaluate_script.run(evaluate_script.parse_args(
        [*data, "--checkpoint", f"A={a}", "--checkpoint", f"B={b}", "--out", str(tmp_path / "f")]))["rows"]
    keys = [f"{p}/{m}" for p in ("rgb", "y", "y-float") for m in ("psnr", "ssim")]
    assert [(r["dataset"], r["method"]) for r in scored] == [(r["dataset"], r["method"]) for r in derained]
    assert len(scored) == 6 and scored[1]["rgb/psnr"] != scored[2]["rgb/psnr"]
    for got, want, float_row in zip(scored, derained, floats):
        assert [got[k] for k in keys] == [want[k] for k in keys]  # exactly
        assert [got[k] for k in keys[2:]] == [float_row[k] for k in keys[2:]]
        assert got["rgb/psnr"] == pytest.approx(float_row["rgb/psnr"], abs=0.05)


# ----------------------------------------------------------------------------- overlap and batches
@pytest.fixture
def mixed_sizes(tmp_path):
    """Seven pairs of three sizes, in an order that splits batches: names sort as listed."""
    root = tmp_path / "mixed"
    rng = np.random.default_rng(1)
    for i, (h, w) in enumerate([(40, 48), (40, 48), (36, 52), (40, 48), (40, 48), (40, 48), (44, 44)]):
        clean = rng.random((h, w, 3)) * 0.6 + 0.2
        rainy = np.clip(clean + (rng.random((h, w, 3)) > 0.95) * 0.5, 0, 1)
        write_image(root / "target" / f"{i:02d}.png", clean)
        write_image(root / "input" / f"{i:02d}.png", rainy)
    return root


def per_image(out: Path) -> list[dict]:
    with open(out / "per_image.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k != "runtime_s"} for row in csv.DictReader(handle)]


def test_overlapped_eval_equals_sequential_and_the_plain_loop_in_order(mixed_sizes, tmp_path, checkpoint,
                                                                       monkeypatch):
    """Reading ahead and scoring in background threads changes neither a number nor the order:
    the same per-image values, to the last digit, as --sequential and as the plain loop (read a
    pair, score the input, derain, score the output) that eval.py ran before."""
    monkeypatch.setattr(evaluate_script, "complexity", lambda *_: {"params": 1, "gmacs": 0.0, "size": "-"})
    result_dir = tmp_path / "other"  # a result folder too: its rows keep their place
    for i in range(7):
        write_image(result_dir / f"{i:02d}.png", read_image(mixed_sizes / "input" / f"{i:02d}.png") * 0.9)
    common = ["--data", f"m={mixed_sizes}", "--results", f"other={result_dir}", "--per-image", "--save-images"]
    overlapped = run([*common, "--out", str(tmp_path / "a")], checkpoint)
    args = evaluate_script.parse_args([*common, "--checkpoint", str(checkpoint), "--device", "cpu",
                                       "--workers", "3", "--macs-size", "64", "--out", str(tmp_path / "b")])
    run_rows = evaluate_script.run(args)["rows"]
    sequential = run([*common, "--sequential", "--out", str(tmp_path / "s")], checkpoint)
    assert per_image(tmp_path / "a") == per_image(tmp_path / "b") == per_image(tmp_path / "s")
    assert [{k: v for k, v in r.items() if k != "runtime_s"} for r in overlapped["rows"]] == \
        [{k: v for k, v in r.items() if k != "runtime_s"} for r in sequential["rows"]] == \
        [{k: v for k, v in r.items() if k != "runtime_s"} for r in run_rows]
    rows = per_image(tmp_path / "a")
    assert [(r["name"], r["method"]) for r in rows] == [
        (f"{i:02d}", m) for i in range(7) for m in ("rainy input", "ckpt", "other")]

    model, _ = load_model(checkpoint, torch.device("cpu"))
    for i in range(7):
        rainy = read_image(mixed_sizes / "input" / f"{i:02d}.png")
        clean = read_image(mixed_sizes / "target" / f"{i:02d}.png")
        pred = to_image(derain(model, to_tensor(rainy).unsqueeze(0)))
        for method, image in (("rainy input", rainy), ("ckpt", pred)):
            row = next(r for r in rows if r["name"] == f"{i:02d}" and r["method"] == method)
            want = image_metrics(image, clean)
            assert {k: float(row[k]) for k in want} == want  # exactly (csv keeps repr digits)
        saved = read_image(tmp_path / "a" / "images" / "ckpt" / "m" / f"{i:02d}.png")
        assert saved.shape == rainy.shape


def test_batches_group_equal_sizes_and_keep_the_order(mixed_sizes, tmp_path, checkpoint, monkeypatch):
    monkeypatch.setattr(evaluate_script, "complexity", lambda *_: {"params": 1, "gmacs": 0.0, "size": "-"})
    shapes = [(40, 48), (40, 48), (36, 52), (40, 48), (40, 48), (40, 48), (44, 44)]
    items = [(i, {"rainy": torch.zeros(3, h, w)}) for i, (h, w) in enumerate(shapes)]
    groups = evaluate_script.equal_size_batches(iter(items), 3, lambda h, w: True)
    assert [[i for i, _ in b] for b in groups] == [[0, 1], [2], [3, 4, 5], [6]]
    tiled = evaluate_script.equal_size_batches(iter(items), 3, lambda h, w: h * w < 1900)
    assert [[i for i, _ in b] for b in tiled] == [[0], [1], [2], [3], [4], [5], [6]]
    with monkeypatch.context() as patch:
        patch.setattr(evaluate_script, "BATCH_PIXELS", 2 * 40 * 48)  # memory bound: 2 at most
        groups = evaluate_script.equal_size_batches(iter(items), 3, lambda h, w: True)
        assert [len(b) for b in groups] == [2, 1, 2, 1, 1]

    one = run(["--data", f"m={mixed_sizes}", "--out", str(tmp_path / "one")], checkpoint)["rows"]
    batched = run(["--data", f"m={mixed_sizes}", "--batch", "3", "--out", str(tmp_path / "b3")], checkpoint)
    assert batched["batch"] == 3 and "batch 3" in (tmp_path / "b3" / "results.md").read_text()
    for a, b in zip(one, batched["rows"]):
        assert (a["dataset"], a["method"], a["images"]) == (b["dataset"], b["method"], b["images"])
        for key in ("rgb/psnr", "y/psnr", "y-float/ssim"):
            assert b[key] == pytest.approx(a[key], abs=1e-4)  # float rounding of batched convs only


def test_eval_records_threads_and_wall_time(paired, tmp_path, checkpoint, monkeypatch):
    monkeypatch.setattr(evaluate_script, "complexity", lambda *_: {"params": 1, "gmacs": 0.0, "size": "-"})
    out = tmp_path / "t"
    result = run(["--data", f"tiny={paired}", "--out", str(out)], checkpoint)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["threads"]["count"] == torch.get_num_threads() == result["threads"]["count"]
    assert result["wall_s"]["tiny"] > 0
    assert f"{torch.get_num_threads()} CPU thread" in (out / "results.md").read_text()
    with pytest.raises(UserError, match="--batch"):
        run(["--data", f"tiny={paired}", "--batch", "0", "--out", str(out)], checkpoint)
