"""Tiny copies of public deraining benchmarks in the exact shape their authors distribute them
(folders, file names, extensions, the stray files such folders carry), and of the result
folders those authors' test scripts write. docs/datasets.md gives the source of each shape.

Images are a few dozen pixels: a textured scene, and the same scene with bright streaks.
`Benchmark.pairs` holds each pair as read back from disk, in the order a reader must give
them, so a test can check that every rainy image came with its own clean one.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from utils.io.images import read_image, write_image

H, W = 32, 40


@dataclass
class Benchmark:
    name: str  # as in the tables: eval.py --data NAME=DATA
    data: Path  # the folder (or list file) a user points at
    layout: str
    names: list = field(default_factory=list)  # pair names, in order
    pairs: list = field(default_factory=list)  # (rainy, clean) arrays as read back, in order
    results: dict = field(default_factory=dict)  # method -> (folder, its file for each pair)


def scene(seed: int) -> np.ndarray:
    """A textured clean image (structure at a few pixels, so side-by-side halves correlate)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((H // 3, W // 3, 3)).astype(np.float32)
    return np.clip(0.15 + 0.55 * cv2.resize(coarse, (W, H), interpolation=cv2.INTER_LINEAR), 0, 1)


def rained(clean: np.ndarray, seed: int) -> np.ndarray:
    """Bright vertical streaks on every sixth column or so: rain adds light."""
    rng = np.random.default_rng(seed + 1000)
    rainy = clean.copy()
    columns = rng.choice(clean.shape[1], size=clean.shape[1] // 6, replace=False)
    rainy[:, columns] = np.clip(rainy[:, columns] + 0.3, 0, 1)
    return rainy


def stray(*folders: Path) -> None:
    """What image folders copied from Windows and macOS carry."""
    for folder in folders:
        (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 not an image")
        (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")


def add_pair(bench: Benchmark, name: str, rainy_path: Path, clean_path: Path, seed: int) -> None:
    clean = scene(seed)
    write_image(clean_path, clean)
    write_image(rainy_path, rained(clean, seed))
    bench.names.append(name)
    bench.pairs.append((read_image(rainy_path), read_image(clean_path)))


def add_side_by_side(bench: Benchmark, name: str, path: Path, seed: int, rainy_left: bool) -> None:
    clean = scene(seed)
    rainy = rained(clean, seed)
    write_image(path, np.concatenate([rainy, clean] if rainy_left else [clean, rainy], axis=1))
    image = read_image(path)
    left, right = image[:, :W], image[:, W:2 * W]
    bench.names.append(name)
    bench.pairs.append((left, right) if rainy_left else (right, left))


def add_result(bench: Benchmark, method: str, folder: Path, file_name: str, source: Path) -> None:
    """A method's output for the pair added last: a copy of `source` named as its script does."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, folder / file_name)
    bench.results.setdefault(method, (folder, []))[1].append(folder / file_name)


def prenet_rain100(tmp: Path, name: str = "Rain100L") -> Benchmark:
    """PReNet's Rain100L/H: norain-NNN.png in the set folder, rainy/rain-NNN.png; test_PReNet.py
    writes results under the rainy names, JORDER's results are Derained-<set>-rain-NNN.png."""
    top = tmp / "datasets" / "test" / name
    bench = Benchmark(name, top, "rain-norain")
    for i in range(1, 4):
        add_pair(bench, f"rain-{i:03d}", top / "rainy" / f"rain-{i:03d}.png", top / f"norain-{i:03d}.png", i)
        add_result(bench, "PReNet", tmp / "results" / name / "PReNet", f"rain-{i:03d}.png",
                   top / f"norain-{i:03d}.png")
        add_result(bench, "JORDER", tmp / "results" / name / f"{name}_JORDER", f"Derained-{name}-rain-{i:03d}.png",
                   top / f"norain-{i:03d}.png")
    stray(top, top / "rainy")
    return bench


def prenet_train(tmp: Path, name: str = "RainTrainH") -> Benchmark:
    """PReNet's RainTrainH/L: rain-N.png, norain-N.png, rainstreak-N.png and rainregion-N.png in
    one folder, no zero padding; RainTrainH lacks scenes (here 3, 5 and 6) and, where only the
    rainy file was taken out, keeps a clean file without a rainy one (here norain-9.png)."""
    top = tmp / "datasets" / "train" / name
    bench = Benchmark(name, top, "rain-norain")
    for i in (1, 2, 4, 7, 10):
        add_pair(bench, f"rain-{i}", top / f"rain-{i}.png", top / f"norain-{i}.png", i)
        write_image(top / f"rainstreak-{i}.png", np.full((H, W, 3), 0.1, np.float32))
        write_image(top / f"rainregion-{i}.png", np.zeros((H, W, 3), np.float32))
    write_image(top / "norain-9.png", scene(9))
    stray(top)
    return bench


def prenet_rain12(tmp: Path) -> Benchmark:
    """PReNet's Rain12 (datasets/test/test12): rainy/{i}.png + groundtruth/{i}.png; results {i}.png."""
    top = tmp / "datasets" / "test" / "test12"
    bench = Benchmark("Rain12", top, "folders")
    for i in range(1, 4):
        add_pair(bench, f"{i}", top / "rainy" / f"{i}.png", top / "groundtruth" / f"{i}.png", i)
        add_result(bench, "PReNet", tmp / "results" / "test12" / "PReNet", f"{i}.png", top / "groundtruth" / f"{i}.png")
    stray(top / "rainy", top / "groundtruth")
    return bench


def li_rain12(tmp: Path) -> Benchmark:
    """Rain12 as its authors (Li et al., CVPR 2016) distribute it: NNN_in.png + NNN_GT.png."""
    top = tmp / "Rain12"
    bench = Benchmark("Rain12", top, "in-gt")
    for i in range(1, 4):
        add_pair(bench, f"{i:03d}_in", top / f"{i:03d}_in.png", top / f"{i:03d}_GT.png", i)
    stray(top)
    return bench


def ddn_rain1400(tmp: Path) -> Benchmark:
    """DDN's Rain1400 (Rain12600 alike): rainy_image/{i}_{j}.jpg + ground_truth/{i}.jpg, i from
    901; PReNet's test writes results under the rainy names."""
    top = tmp / "datasets" / "test" / "Rain1400"
    bench = Benchmark("Rain1400", top, "ddn")
    for i in (901, 902):
        clean_path = top / "ground_truth" / f"{i}.jpg"
        write_image(clean_path, scene(i))
        for j in (1, 2, 3):
            rainy_path = top / "rainy_image" / f"{i}_{j}.jpg"
            write_image(rainy_path, rained(read_image(clean_path), i * 10 + j))
            bench.names.append(f"{i}_{j}")
            bench.pairs.append((read_image(rainy_path), read_image(clean_path)))
            add_result(bench, "PReNet", tmp / "results" / "Rain1400" / "PReNet", f"{i}_{j}.jpg", clean_path)
    stray(top / "rainy_image", top / "ground_truth")
    return bench


def jorder_rain200(tmp: Path, name: str = "Rain200H") -> Benchmark:
    """Rain200H/L (the JORDER authors' rain_data_test_Heavy/Light): rain/X2/norain-Nx2.png +
    norain/norain-N.png; a test script run on rain/X2 writes results under the rainy names."""
    top = tmp / name / "rain_data_test_Heavy"
    bench = Benchmark(name, top, "rain200")
    for i in range(1, 4):
        add_pair(bench, f"norain-{i}x2", top / "rain" / "X2" / f"norain-{i}x2.png",
                 top / "norain" / f"norain-{i}.png", i)
        add_result(bench, "method", tmp / "results" / name, f"norain-{i}x2.png", top / "norain" / f"norain-{i}.png")
    stray(top / "rain" / "X2", top / "norain")
    return bench


def jorder_train_light(tmp: Path) -> Benchmark:
    """The JORDER authors' rain_data_train_Light: rain/norain-Nx2.png (no X2 folder) + norain/."""
    top = tmp / "rain_data_train_Light"
    bench = Benchmark("RainTrainL", top, "folders")
    for i in range(1, 4):
        add_pair(bench, f"norain-{i}x2", top / "rain" / f"norain-{i}x2.png", top / "norain" / f"norain-{i}.png", i)
    return bench


def rcdnet_small(tmp: Path) -> Benchmark:
    """RCDNet's and JORDER-E's data/test/small: rain/norain-N.png + norain/norain-N.png; their
    test writes norain-N_x2_SR.png (restored) beside _LR (rainy) and _HR (ground truth) copies."""
    top = tmp / "data" / "test" / "small"
    results = tmp / "experiment" / "RCDNet_test" / "results"
    bench = Benchmark("Rain100L", top, "folders")
    for i in range(1, 4):
        rainy, clean = top / "rain" / f"norain-{i}.png", top / "norain" / f"norain-{i}.png"
        add_pair(bench, f"norain-{i}", rainy, clean, i)
        add_result(bench, "RCDNet", results, f"norain-{i}_x2_SR.png", clean)
        shutil.copyfile(rainy, results / f"norain-{i}_x2_LR.png")
        shutil.copyfile(clean, results / f"norain-{i}_x2_HR.png")
    return bench


def rain13k_test(tmp: Path, name: str = "Rain100L") -> Benchmark:
    """MPRNet's and Restormer's Datasets/test/<set>: input/{i}.png + target/{i}.png; their test.py
    writes results/<set>/{input stem}.png."""
    top = tmp / "Datasets" / "test" / name
    bench = Benchmark(name, top, "folders")
    for i in range(1, 4):
        add_pair(bench, f"{i}", top / "input" / f"{i}.png", top / "target" / f"{i}.png", i + len(name))
        add_result(bench, "MPRNet", tmp / "results" / name, f"{i}.png", top / "target" / f"{i}.png")
    return bench


def drsformer_rain200(tmp: Path) -> Benchmark:
    """DRSformer's Datasets/test/Rain200H: input/{i}.png + target/{i}.png; its test.py writes
    {stem}.png, its evaluation folder holds {i}_DR.png (restored) beside {i}_GT.png."""
    top = tmp / "Datasets" / "test" / "Rain200H"
    evaluation = tmp / "evaluations" / "results"
    bench = Benchmark("Rain200H", top, "folders")
    for i in range(1, 4):
        clean = top / "target" / f"{i}.png"
        add_pair(bench, f"{i}", top / "input" / f"{i}.png", clean, i)
        add_result(bench, "DRSformer", tmp / "test" / "output" / "Deraining", f"{i}.png", clean)
        add_result(bench, "evaluation", evaluation, f"{i}_DR.png", clean)
        shutil.copyfile(clean, evaluation / f"{i}_GT.png")
    return bench


def idcgan_rain800(tmp: Path) -> Benchmark:
    """ID-CGAN's Rain800 test_syn: {i}.jpg, clean on the left and rainy on the right (pix2pix
    with which_direction=BtoA)."""
    top = tmp / "rain" / "test_syn"
    bench = Benchmark("Rain800", top, "side-by-side")
    for i in range(1, 4):
        add_side_by_side(bench, f"{i}", top / f"{i}.jpg", i, rainy_left=False)
    stray(top)
    return bench


def didmdn_rain1200(tmp: Path) -> Benchmark:
    """DID-MDN's test set: {index}.jpg from 0 (its loader reads root/str(index).jpg), rainy on
    the left (imgA, the input) and clean on the right; its test.py writes {index}.jpg."""
    top = tmp / "facades" / "DID-MDN-test"
    bench = Benchmark("Rain1200", top, "side-by-side")
    for i in range(3):
        add_side_by_side(bench, f"{i}", top / f"{i}.jpg", i + 20, rainy_left=True)
        output = tmp / "output" / f"{i}.jpg"
        write_image(output, bench.pairs[-1][1])
        add_result(bench, "DID-MDN", tmp / "result_all" / "testing_our_our", f"{i}.jpg", output)
    return bench


def spa_test(tmp: Path) -> Benchmark:
    """SPA-Data's test set as SPANet distributes it: real_test_1000/rain/NNN.png +
    real_test_1000/gt/NNNgt.png, and real_test_1000.txt beside the folder with one
    '/real_test_1000/rain/NNN.png /real_test_1000/gt/NNNgt.png' line per pair."""
    top = tmp / "Testing" / "real_test_1000"
    bench = Benchmark("SPA", top, "folders")
    lines = []
    for i in range(3):
        add_pair(bench, f"{i:03d}", top / "rain" / f"{i:03d}.png", top / "gt" / f"{i:03d}gt.png", i)
        lines.append(f"/real_test_1000/rain/{i:03d}.png /real_test_1000/gt/{i:03d}gt.png\r\n")
    (tmp / "Testing" / "real_test_1000.txt").write_text("".join(lines), newline="")
    stray(top / "rain", top / "gt")
    return bench


def spa_train(tmp: Path) -> Benchmark:
    """SPA-Data's training set: real_world.txt beside real_world/ and real_world_gt/, one
    '/real_world/VVV/VVV-F/VVV-F_X_Y.png /real_world_gt/VVV/VVV_X_Y.png' line per pair
    (several frames F of a video share a clean patch)."""
    top = tmp / "Training"
    bench = Benchmark("SPA-train", top, "pair-list")
    lines = []
    for frame in (0, 1):
        for x, y in ((0, 0), (0, 1)):
            rainy = f"real_world/000/000-{frame}/000-{frame}_{x}_{y}.png"
            clean = f"real_world_gt/000/000_{x}_{y}.png"
            if not (top / clean).exists():
                write_image(top / clean, scene(10 * x + y))
            write_image(top / rainy, rained(read_image(top / clean), frame))
            bench.names.append(f"000-{frame}_{x}_{y}")
            bench.pairs.append((read_image(top / rainy), read_image(top / clean)))
            lines.append(f"/{rainy} /{clean}\n")
    (top / "real_world.txt").write_text("".join(lines))
    return bench
