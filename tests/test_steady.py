"""utils/steady.py and utils/metrics/flicker.py: steadying removes residue that flickers on a
moving scene without ghosting a cut; the flicker score ignores the scene's own motion."""
from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np
import pytest

from utils.metrics.flicker import FlickerMeter
from utils.motion import luma, previous_positions, warp
from utils.steady import Steadier
from utils.synthetic.photos import load_source


@lru_cache(maxsize=None)
def photo(name: str = "flower") -> np.ndarray:
    """A test photo, shrunk so 96x72 frames see a good part of it."""
    return np.clip(cv2.resize(load_source(name), (160, 107), interpolation=cv2.INTER_AREA), 0, 1)


def panning_clip(count: int = 8, speed: int = 2, width: int = 96, height: int = 72):
    """Clean frames of a camera panning right by `speed` px per frame over a photo, and the
    same frames with thin bright residue (short streaks) at new places in every frame."""
    rng = np.random.default_rng(1)
    clean, residue = [], []
    for t in range(count):
        frame = photo()[10:10 + height, speed * t:speed * t + width].copy()
        clean.append(frame)
        marks = np.zeros((height, width), np.float32)
        ys, xs = rng.integers(4, height - 10, 12), rng.integers(0, width, 12)
        for y, x in zip(ys, xs):
            marks[y:y + 6, x] = 0.4
        residue.append(np.clip(frame + marks[:, :, None], 0, 1))
    return clean, residue


def rmse(frames, truth) -> float:
    return float(np.mean([np.sqrt(((a - b) ** 2).mean()) for a, b in zip(frames, truth)]))


def test_steadying_removes_residue_on_a_panning_scene():
    clean, derained = panning_clip()
    steadier = Steadier(0.6)
    steady = [steadier(frame) for frame in derained]
    assert rmse(steady[2:], clean[2:]) < 0.8 * rmse(derained[2:], clean[2:])
    meter = FlickerMeter()
    for c, d, s in zip(clean, derained, steady):
        meter.add(c, {"derained": d, "steady": s})
    scores = meter.scores()
    assert scores["steady"] < 0.6 * scores["derained"]


def test_a_cut_is_not_ghosted_and_strength_zero_is_off():
    first, second = photo("flower")[:72, :96], photo("motorcycle_left")[:72, :96]
    for strength in (0.6, 0.9):
        steadier = Steadier(strength)
        steadier(first)
        change = np.abs(steadier(second) - second)
        # Of a cut that moves pixels by 0.3 on average, less than 5% bleeds in, in few places.
        assert change.mean() < 0.05 * np.abs(first - second).mean() and (change > 0.05).mean() < 0.1
    off = Steadier(0.0)
    assert all(np.array_equal(off(frame), frame) for frame in (first, second, first))
    steadier.reset()
    assert np.array_equal(steadier(first), first)


def test_steadier_checks_its_settings():
    for strength in (-0.1, 1.0):
        with pytest.raises(ValueError, match="strength"):
            Steadier(strength)
    with pytest.raises(ValueError):
        Steadier(0.5, tolerance=0)


def test_flicker_counts_changing_errors_not_steady_ones():
    clean, _ = panning_clip(count=6)
    meter = FlickerMeter()
    rows = {"clean copy": clean,
            "steady offset": [np.clip(c + 0.05, 0, 1) for c in clean],
            "moving blur": [cv2.GaussianBlur(c, (0, 0), 1.5) for c in clean],  # moves with the scene
            "pumping": [np.clip(c + (0.02 if t % 2 else -0.02), 0, 1) for t, c in enumerate(clean)]}
    for t, c in enumerate(clean):
        meter.add(c, {name: frames[t] for name, frames in rows.items()})
    scores = meter.scores()
    assert scores["clean copy"] == 0.0
    assert scores["steady offset"] < 0.3 and scores["moving blur"] < 0.5
    assert scores["pumping"] == pytest.approx(255 * 0.04, rel=0.1)  # +-0.02 every other frame
    single = FlickerMeter()
    single.add(clean[0], {"a": clean[0]})
    assert math.isnan(single.scores()["a"])


def test_flow_aligns_a_shifted_frame():
    previous, current = photo()[:72, 10:106], photo()[:72, 13:109]  # the scene moved 3 px left
    moved = warp(previous, previous_positions(luma(current), luma(previous)))
    inner = (slice(8, -8), slice(8, -16))
    assert np.abs(moved[inner] - current[inner]).mean() < 0.25 * np.abs(previous - current)[inner].mean()
