"""Clips end to end: show.py derains a clip (size, rate, ranges, side by side, steadied), never
touches the input, reports a broken or cut clip and keeps what it derained; eval.py scores a
clip frame by frame with a flicker column; real_train.py adapts to a clip and derains it."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import eval as evaluate_script
import real_train
import show
from test_real_train import make_init, online_args
from test_show import make_checkpoint
from utils.cli import UsageError, open_model, run_main
from utils.clips import FrameDerainer, FrameRange, sample_frames
from utils.io.images import as_saved
from utils.io.video import VideoReader, VideoWriter
from utils.metrics.flicker import FlickerMeter
from utils.metrics.protocols import psnr
from utils.synthetic.video import ClipSpec, rainy_clip

SPEC = ClipSpec(frames=8, width=64, height=48, fps=10.0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> dict:
    """The embedded clip, tiny: rainy.mkv and clean.mkv (lossless) in a folder of their own."""
    folder = tmp_path_factory.mktemp("clip")
    with VideoWriter(folder / "rainy.mkv", SPEC.fps, (64, 48)) as rainy, \
            VideoWriter(folder / "clean.mkv", SPEC.fps, (64, 48)) as clean:
        for r, c in rainy_clip(SPEC):
            rainy.write(r)
            clean.write(c)
    return {"rainy": folder / "rainy.mkv", "clean": folder / "clean.mkv"}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def clip_info(path: Path):
    with VideoReader(path) as reader:
        frames = [frame for _, frame in reader.frames()]
        return reader.info, frames


def show_clip(argv, checkpoint) -> int:
    return run_main(show.main, [*argv, "--checkpoint", str(checkpoint), "--device", "cpu"])


def test_show_derains_a_clip_at_its_size_and_rate(clip, checkpoint, tmp_path):
    before = digest(clip["rainy"])
    out = tmp_path / "out"
    assert show_clip([str(clip["rainy"]), "--out", str(out), "--steady", "--side-by-side"], checkpoint) == 0
    assert digest(clip["rainy"]) == before  # the input is only read
    info, frames = clip_info(out / "rainy.mp4")
    assert (info.width, info.height, info.fps, info.frames, len(frames)) == (64, 48, 10.0, 8, 8)
    side, _ = clip_info(out / "panels" / "rainy.mp4")
    assert (side.width, side.height, side.frames) == (2 * 64 + 4, 48 + 22, 8)
    record = json.loads((out / show.RUN_LOG_NAME).read_text().splitlines()[-1])
    assert record["outputs"] == ["rainy.mp4"] and record["args"]["steady"] == 0.6


def test_show_writes_exactly_the_derained_frames_losslessly(clip, checkpoint, tmp_path):
    out = tmp_path / "out"
    assert show_clip([str(clip["rainy"]), "--out", str(out), "--video-format", "mkv", "--precision", "fp32",
                      "--frames", "0:3"], checkpoint) == 0
    model, _ = open_model(checkpoint, torch.device("cpu"))
    derainer = FrameDerainer(model, "auto")
    _, written = clip_info(out / "rainy.mkv")
    _, rainy = clip_info(clip["rainy"])
    assert len(written) == 3
    for got, frame in zip(written, rainy):
        np.testing.assert_array_equal(got, as_saved(derainer(frame)))


def test_show_takes_a_piece_of_a_clip(clip, checkpoint, tmp_path):
    out = tmp_path / "out"
    assert show_clip([str(clip["rainy"]), "--out", str(out), "--frames", "1:7", "--every", "2"], checkpoint) == 0
    info, frames = clip_info(out / "rainy.mp4")
    assert (info.frames, len(frames), info.fps) == (3, 3, 5.0)  # frames 1, 3, 5 at half the rate
    assert show_clip([str(clip["rainy"]), "--out", str(out)], checkpoint) == 2  # no silent overwrite


def test_show_refuses_an_unreadable_clip_before_writing(tmp_path, checkpoint, capsys):
    bad = tmp_path / "in" / "broken.mp4"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    out = tmp_path / "out"
    assert show_clip([str(bad), "--out", str(out)], checkpoint) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "broken.mp4" in err[-1] and "not a readable video" in err[-1]
    assert "Traceback" not in "\n".join(err) and not out.exists()


def test_show_keeps_what_it_derained_from_a_cut_clip(tmp_path, checkpoint, capsys):
    cut = tmp_path / "in" / "cut.avi"
    with VideoWriter(tmp_path / "full.avi", 10.0, (64, 48)) as writer:
        for rainy, _ in rainy_clip(ClipSpec(frames=12, width=64, height=48)):
            writer.write(rainy)
    data = (tmp_path / "full.avi").read_bytes()
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "out"
    assert show_clip([str(cut), "--out", str(out)], checkpoint) == 1
    err = capsys.readouterr().err
    assert "cut.avi" in err and "of the 12 frames its header declares" in err and "so far are in" in err
    info, frames = clip_info(out / "cut.mp4")
    assert 0 < len(frames) < 12 and info.frames == len(frames)  # a closed, playable partial clip


def test_frame_ranges_parse_and_refuse():
    assert FrameRange.parse("2:6", 2) == FrameRange(2, 6, 2)
    assert FrameRange.parse(":5") == FrameRange(0, 5) and FrameRange.parse("3:") == FrameRange(3, None)
    assert FrameRange.parse("4") == FrameRange(4, 5) and FrameRange.parse(None) == FrameRange()
    assert FrameRange(1, None, 3).count(10) == 3 and FrameRange(0, 4).count(None) == 4
    for text in ("5:2", "a:b", ":", "1:2:3"):
        with pytest.raises(UsageError):
            FrameRange.parse(text)
    with pytest.raises(UsageError, match="--every"):
        FrameRange.parse("1:2", every=0)


def test_sample_frames_spreads_over_the_clip(clip):
    assert [i for i, _ in sample_frames(clip["rainy"], 1, 3)] == [0, 4, 7]
    assert [i for i, _ in sample_frames(clip["rainy"], 3, 10)] == [0, 3, 6]


def test_eval_scores_a_clip_per_frame_with_flicker(clip, checkpoint, tmp_path):
    args = evaluate_script.parse_args(["--clip", f"tiny={clip['rainy']}", str(clip["clean"]), "--steady",
                                       "--checkpoint", f"model={checkpoint}", "--device", "cpu", "--macs-size", "64",
                                       "--protocols", "rgb", "--out", str(tmp_path / "eval")])
    result = evaluate_script.run(args)
    rows = {r["method"]: r for r in result["rows"]}
    assert set(rows) == {"rainy input", "model", "model +steady"}
    assert all(r["dataset"] == "tiny" and r["images"] == 8 for r in rows.values())
    pairs = list(rainy_clip(SPEC))  # the clip files hold these frames, losslessly
    assert rows["rainy input"]["rgb/psnr"] == pytest.approx(
        np.mean([psnr(as_saved(r), as_saved(c)) for r, c in pairs]), abs=1e-6)
    meter = FlickerMeter()
    for r, c in pairs:
        meter.add(as_saved(c), {"rain": as_saved(r)})
    assert rows["rainy input"]["flicker"] == pytest.approx(meter.scores()["rain"], rel=1e-6)
    assert rows["rainy input"]["flicker"] > 1.0  # moving rain flickers
    assert rows["model +steady"]["flicker"] != rows["model"]["flicker"]  # quality: test_steady.py
    text = (tmp_path / "eval" / "results.md").read_text()
    assert "flicker (levels)" in text and "model +steady" in text


def test_eval_clip_errors(clip, checkpoint, tmp_path, capsys):
    base = ["--checkpoint", str(checkpoint), "--device", "cpu", "--out", str(tmp_path / "e")]
    short = tmp_path / "short.mkv"
    with VideoWriter(short, 10.0, (64, 48)) as writer:
        for rainy, _ in rainy_clip(ClipSpec(frames=3, width=64, height=48)):
            writer.write(rainy)
    assert run_main(evaluate_script.main, ["--clip", str(short), str(clip["clean"]), *base]) == 2
    assert "short.mkv ends at frame 3" in capsys.readouterr().err
    assert run_main(evaluate_script.main, ["--clip", str(clip["rainy"]), str(clip["clean"]),
                                           "--results", f"x={tmp_path}", *base]) == 2
    assert "clips are scored for --checkpoint rows only" in capsys.readouterr().err


def test_real_train_adapts_to_a_clip_and_derains_all_of_it(clip, tmp_path):
    init = make_init(tmp_path / "init.pth")
    before = digest(clip["rainy"])
    argv = online_args(tmp_path, init, "online.rounds=1", "online.clip_steady=0.5", "online.guard_db=0") + [
        "--data", str(clip["rainy"]), "--every", "2", "--max-frames", "3"]
    assert real_train.main(argv) == 0
    assert digest(clip["rainy"]) == before
    run = tmp_path / "runs" / "rt"
    labels = sorted(p.stem for p in (run / "pseudo_labels" / "round_001").glob("*.npy"))
    assert labels == ["rainy_frame000000", "rainy_frame000004", "rainy_frame000006"]
    info, frames = clip_info(run / "rainy.mp4")
    assert (info.width, info.height, info.fps, len(frames)) == (64, 48, 10.0, 8)
