"""utils/synthetic/video.py: the embedded clip is deterministic, its camera moves, its rain falls
along the streaks' direction, and the command line writes it losslessly without replacing files."""
from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest

from utils.cli import run_main
from utils.errors import UserError
from utils.io.video import VideoReader
from utils.synthetic import video
from utils.synthetic.styles import RAIN_PRESETS

TINY = video.ClipSpec(frames=6, width=64, height=48)


def test_same_seed_same_clip_and_another_seed_other_rain():
    first = list(video.rainy_clip(TINY))
    again = list(video.rainy_clip(TINY))
    other = list(video.rainy_clip(video.ClipSpec(frames=6, width=64, height=48, seed=1)))
    assert len(first) == 6 and first[0][0].shape == (48, 64, 3) and first[0][0].dtype == np.float32
    for (a, c), (b, d) in zip(first, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(c, d)
    np.testing.assert_array_equal(first[2][1], other[2][1])  # the same scene...
    assert np.abs(first[2][0] - other[2][0]).mean() > 0.01  # ...other rain


def test_the_camera_pans_and_the_rain_changes_from_frame_to_frame():
    spec = video.ClipSpec(frames=6, width=128, height=96)
    pairs = list(video.rainy_clip(spec))
    clean = [c for _, c in pairs]
    (dx, dy), _ = cv2.phaseCorrelate(cv2.cvtColor(clean[0], cv2.COLOR_RGB2GRAY),
                                     cv2.cvtColor(clean[1], cv2.COLOR_RGB2GRAY))
    assert dx < -1.0 and abs(dy) < abs(dx)  # the camera pans right: the scene moves left
    rain = [r - c for r, c in pairs]
    assert all(r.mean() > 0.02 for r in rain)  # it rains in every frame
    assert np.abs(rain[1] - rain[0]).mean() > 0.3 * np.abs(rain[0]).mean()  # and the rain moves


@pytest.mark.parametrize("angle", [0.0, 20.0])
def test_streaks_fall_along_their_direction(angle):
    """Consecutive frames of one layer (no gusts) are the same streaks moved by FALL_PER_FRAME
    lengths along the streak direction (down, leaning as the streaks lean)."""
    layer = dataclasses.replace(RAIN_PRESETS["light"].layers[0], groups=1)  # one speed
    rng = np.random.default_rng(3)
    falling = video.FallingLayer(layer, angle, 1.0, 0.0, (160, 160), rng)
    group_angle, length = falling.draw.groups[0]
    step = video.FALL_PER_FRAME * length
    (dx, dy), response = cv2.phaseCorrelate(falling.render(1), falling.render(2))
    expected = (-step * np.sin(np.deg2rad(group_angle)), step * np.cos(np.deg2rad(group_angle)))
    assert response > 0.2
    assert abs(dx - expected[0]) < 1.5 and abs(dy - expected[1]) < 1.5


def test_gusts_stay_put_while_the_drops_move():
    layer = RAIN_PRESETS["gusty"].layers[1]
    falling = video.FallingLayer(layer, 0.0, 1.0, 25.0, (96, 96), np.random.default_rng(0))
    assert falling.gain is not None and len(falling.bins) > 1
    frames = [falling.render(t) for t in range(3)]
    assert all(f.shape == (96, 96) and f.min() >= 0 for f in frames)
    assert np.abs(frames[1] - frames[0]).mean() > 0.2 * frames[0].mean()


def test_command_line_writes_the_clip_losslessly_and_never_replaces_it(tmp_path, capsys):
    out = tmp_path / "clip"
    argv = ["--out", str(out), "--frames", "4", "--size", "48x32", "--seed", "2"]
    assert run_main(video.main, argv) == 0
    spec = json.loads((out / "clip.json").read_text())
    assert (spec["frames"], spec["width"], spec["height"], spec["style"]) == (4, 48, 32, "gusty")
    expected = list(video.rainy_clip(video.ClipSpec(frames=4, width=48, height=32, seed=2)))
    for which, column in (("rainy", 0), ("clean", 1)):
        with VideoReader(out / f"{which}.mkv") as reader:
            got = [frame for _, frame in reader.frames()]
        assert len(got) == 4
        for frame, pair in zip(got, expected):
            np.testing.assert_allclose(frame, pair[column], atol=0.5 / 255 + 1e-6)
    stamp = (out / "rainy.mkv").stat().st_mtime_ns
    assert run_main(video.main, argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "rainy.mkv").stat().st_mtime_ns == stamp


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError, match="not a test photo"):
        video.ClipSpec(photo="astronaut").check()
    with pytest.raises(UserError, match="at least 2 frames"):
        video.ClipSpec(frames=1).check()
    with pytest.raises(UserError, match="unknown rain style"):
        next(video.rainy_clip(video.ClipSpec(style="drizzle")))


def test_drops_are_made_on_demand_and_alike_in_any_order():
    """Drop cells come from their own seeds: a frame is the same whether the frames before it
    were rendered or not, and a long clip holds only the cells one frame sees."""
    layer = RAIN_PRESETS["gusty"].layers[2]  # long, fast streaks: new cells every few frames
    make = lambda: video.FallingLayer(layer, 10.0, 1.0, 25.0, (64, 80), np.random.default_rng(4))  # noqa: E731
    in_order, jumping = make(), make()
    frames = [in_order.render(t) for t in range(40)]
    np.testing.assert_array_equal(jumping.render(39), frames[39])
    np.testing.assert_array_equal(jumping.render(7), frames[7])
    assert all(len(field._cells) <= 4 for field in in_order.drops)
