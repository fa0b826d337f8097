"""Scoring derained clips against their clean clips (eval.py --clip, --synthetic-clip).

Every frame is scored like an image (PSNR/SSIM under the requested protocols, on the frame as
written: clipped to [0, 1]) and the table averages the frames; each row also gets the clip's
flicker (utils/metrics/flicker.py). With `steady`, every checkpoint gets a second row, its
frames steadied (utils/steady.py), from the same derained frames. Frames are streamed: one
pair in memory at a time.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from utils.clips import FrameDerainer
from utils.progress import progress
from utils.io.video import VideoReader, VideoReadError
from utils.metrics.flicker import FlickerMeter
from utils.metrics.scoring import scores
from utils.steady import Steadier
from utils.synthetic.video import ClipSpec, rainy_clip

STEADY_SUFFIX = " +steady"


@dataclass
class ClipSet:
    name: str
    source: str  # what the table's notes say about it
    frames: int | None
    pairs: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]  # (rainy, clean) frames


def file_pairs(rainy: Path, clean: Path) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rainy, clean) frames of two clips of one size, in step. Clips that do not end together,
    or end before their headers say, raise VideoReadError (after the frames they had)."""
    with VideoReader(rainy) as dirty, VideoReader(clean) as truth:
        truth_frames, count = truth.frames(), 0
        for _, frame in dirty.frames():
            pair = next(truth_frames, None)
            if pair is None:
                raise VideoReadError(f"{clean} ends at frame {count}, before its rainy clip {rainy}")
            count += 1
            yield frame, pair[1]
        if next(truth_frames, None) is not None:
            raise VideoReadError(f"{rainy} ends at frame {count}, before its clean clip {clean}")
        problem = dirty.shortfall() or truth.shortfall()
        if problem:
            raise VideoReadError(problem)


def clip_sets(clips: Sequence[tuple[str | None, str, str]], synthetic: bool) -> list[ClipSet]:
    """The clips to score: (name or None, rainy path, clean path) each, checked now (readable,
    one size), and with `synthetic` the embedded clip, made in memory."""
    sets = []
    for name, rainy, clean in clips:
        with VideoReader(rainy) as dirty, VideoReader(clean) as truth:
            a, b = dirty.info, truth.info
        if (a.width, a.height) != (b.width, b.height):
            raise VideoReadError(f"{rainy} is {a.width}x{a.height} but its clean clip {clean} is "
                                 f"{b.width}x{b.height}")
        sets.append(ClipSet(name or f"clip-{Path(rainy).stem}", f"clip {rainy} against {clean} ({a.describe()})",
                            a.frames, lambda r=Path(rainy), c=Path(clean): file_pairs(r, c)))
    if synthetic:
        spec = ClipSpec()
        sets.append(ClipSet("synthetic-clip", f"embedded clip: {spec.frames} frames of {spec.width}x"
                            f"{spec.height}, {spec.style} rain (held out from training) on {spec.photo}, "
                            f"seed {spec.seed} (python -m utils.synthetic.video)", spec.frames,
                            lambda: rainy_clip(spec)))
    return sets


def score_clip(clip: ClipSet, derainers: Mapping[str, FrameDerainer], protocols: Sequence[str],
               crop_border: int = 0, steady: float = 0.0, input_row: str | None = "rainy input"
               ) -> tuple[list[dict], dict[str, float]]:
    """(per-frame rows, {row: flicker}) of one clip: the rainy input as `input_row` (None: no
    such row), each derainer, and with `steady` each derainer steadied."""
    meter, rows = FlickerMeter(), []
    steadiers = {name: Steadier(steady) for name in derainers} if steady else {}
    with progress(clip.frames, desc=clip.name, unit="frame") as bar:
        for t, (rainy, clean) in enumerate(clip.pairs()):
            outputs = {input_row: (rainy, None)} if input_row else {}
            for name, derainer in derainers.items():
                start = time.perf_counter()
                outputs[name] = (derainer(rainy), time.perf_counter() - start)
                if name in steadiers:
                    start = time.perf_counter()
                    steadied = steadiers[name](outputs[name][0])
                    outputs[name + STEADY_SUFFIX] = (steadied, outputs[name][1] + time.perf_counter() - start)
            meter.add(clean, {label: image for label, (image, _) in outputs.items()})
            for label, (image, seconds) in outputs.items():
                rows.append({"dataset": clip.name, "name": f"frame_{t:05d}", "method": label,
                             "height": clean.shape[0], "width": clean.shape[1], "runtime_s": seconds,
                             **scores(image, clean, protocols, crop_border)})
            bar.update(1)
    return rows, meter.scores()
