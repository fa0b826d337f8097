"""Derain a clip: frames streamed from the input through the model into a new clip.

One frame is in memory at a time (plus the steadier's one frame of state), so memory does
not grow with the clip's length. Tiles, overlap, flip ensemble and precision work as for
photos (`FrameDerainer`). The output has the input's size and frame rate (divided by
`every`, so the clip keeps its duration); audio is not carried. The input is only read.
show.py derains clips with it, and real_train.py the whole clip after adapting to it.
"""
from __future__ import annotations

import re
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils import logs
from utils.cli import UsageError, resolve_tile
from utils.progress import progress
from utils.inference import derain
from utils.io.images import to_image, to_tensor
from utils.io.panels import side_by_side
from utils.io.video import VideoReader, VideoReadError, open_writer
from utils.steady import Steadier

log = logs.get("clips")
AUDIO_NOTE = "audio is not carried over (OpenCV reads and writes pictures only)"


@dataclass
class FrameDerainer:
    """The model with the photo settings (--tile flag, overlap, tiles per call, flip ensemble,
    precision): call it with an RGB float frame, get the derained frame clipped to [0, 1]."""

    model: object
    tile: str | int | None = None
    overlap: int = 32
    tile_batch: int = 4
    ensemble: bool = False
    precision: object = None

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        tile = resolve_tile(self.tile, *frame.shape[:2])
        pred = derain(self.model, to_tensor(frame).unsqueeze(0), tile=tile, overlap=self.overlap,
                      ensemble=self.ensemble, tile_batch=self.tile_batch, precision=self.precision)
        return np.clip(to_image(pred), 0.0, 1.0)


@dataclass(frozen=True)
class FrameRange:
    """Frames start, start + every, ... before stop (None: to the end)."""

    start: int = 0
    stop: int | None = None
    every: int = 1

    @classmethod
    def parse(cls, text: str | None, every: int = 1) -> "FrameRange":
        """From the --frames flag, "A:B" (either side may be left out) or "A" (one frame)."""
        if every < 1:
            raise UsageError(f"--every must be >= 1, got {every}")
        if not text:
            return cls(every=every)
        match = re.fullmatch(r"\s*(\d*)\s*(:?)\s*(\d*)\s*", text)
        if not match or not (match.group(1) or match.group(3)):
            raise UsageError(f"--frames: expected A:B (frame numbers from 0, B excluded), got {text!r}")
        start = int(match.group(1) or 0)
        stop = int(match.group(3)) if match.group(3) else (None if match.group(2) else start + 1)
        if stop is not None and stop <= start:
            raise UsageError(f"--frames {text}: the end must be after the start")
        return cls(start, stop, every)

    def count(self, declared: int | None) -> int | None:
        """How many frames the range takes from a clip of `declared` frames (None: unknown)."""
        end = self.stop if declared is None else min(declared, self.stop or declared)
        return None if end is None else len(range(self.start, end, self.every))


@dataclass
class ClipResult:
    source: Path
    output: Path | None = None
    side_by_side: Path | None = None
    frames: int = 0
    seconds: float = 0.0  # deraining (and steadying) only
    problem: str | None = None  # why the clip stopped early or came short; None: complete
    notes: list[str] = field(default_factory=list)
    steady: float = 0.0

    def report(self, what: str = "derained") -> bool:
        """Log the notes, print what was written, warn about a problem; True when complete."""
        for note in self.notes:
            log.info(f"{self.source}: {note}")
        per_frame = f", {self.seconds / self.frames:.2f} s per frame" if self.frames else ""
        steady = f", steadied ({self.steady:g})" if self.steady else ""
        side = f"; input | derained: {self.side_by_side}" if self.side_by_side else ""
        print(f"{self.frames} frame(s) of {self.source} {what} into {self.output}{steady}{per_frame}{side}")
        if self.problem:
            log.warning(f"{self.problem}; the {self.frames} frame(s) derained so far are in {self.output}")
        return self.problem is None


def _writers(stack, result: ClipResult, info, fps: float, out: Path, side: Path | None):
    writer = stack.enter_context(open_writer(out, fps, (info.width, info.height)))
    result.output = writer.path
    if writer.path != out:
        result.notes.append(f"{out.suffix} cannot be written here: wrote {writer.path.suffix} (MJPG) instead")
    panel = None
    if side is not None:
        size = side_by_side([np.zeros((info.height, info.width, 3))] * 2, ["input", "derained"]).shape
        panel = stack.enter_context(open_writer(side, fps, (size[1], size[0])))
        result.side_by_side = panel.path
    return writer, panel


def derain_clip(source: Path, out: Path, derainer: FrameDerainer, frames: FrameRange = FrameRange(),
                steady: float = 0.0, side: Path | None = None, max_pixels: int | None = None) -> ClipResult:
    """Derain `source` into `out` (and an input | derained clip into `side`). A clip that ends
    early or has a broken frame is reported in `problem`; the frames derained so far are
    kept, in a properly closed file (also on Ctrl-C, which is re-raised)."""
    result = ClipResult(Path(source), steady=steady)
    steadier = Steadier(steady) if steady else None
    with ExitStack() as stack:
        reader = stack.enter_context(VideoReader(source, max_pixels=max_pixels))
        info = reader.info
        fps = info.fps / frames.every
        writer, panel = _writers(stack, result, info, fps, Path(out), side)
        if info.width % 2 or info.height % 2:
            result.notes.append(f"odd frame size {info.width}x{info.height}: the encoder drops the last "
                                "row/column")
        bar = stack.enter_context(progress(frames.count(info.frames), desc=Path(source).name, unit="frame"))
        try:
            for _, frame in reader.frames(frames.start, frames.stop, frames.every):
                start = time.perf_counter()
                derained = derainer(frame)
                if steadier is not None:
                    derained = steadier(derained)
                result.seconds += time.perf_counter() - start
                writer.write(derained)
                if panel is not None:
                    panel.write(side_by_side([frame, derained], ["input", "derained"]))
                result.frames += 1
                bar.update(1)
        except VideoReadError as exc:
            result.problem = str(exc)
        except KeyboardInterrupt:
            log.warning(f"interrupted: the {result.frames} frame(s) derained so far are in {result.output}")
            raise
        result.problem = result.problem or reader.shortfall()
        if result.frames == 0 and result.problem is None:
            result.problem = f"{source}: no frame in --frames {frames.start}:{frames.stop or ''} (it has {reader.decoded})"
        elif reader.ended and frames.stop is not None and reader.decoded < frames.stop:
            result.notes.append(f"the clip ends at frame {reader.decoded}, before --frames' end {frames.stop}")
    result.notes.append(AUDIO_NOTE)
    return result


def sample_frames(source: Path, every: int, count: int, max_pixels: int | None = None
                  ) -> list[tuple[int, np.ndarray]]:
    """(index, frame) of every `every`-th frame, at most `count` of them spread evenly over the
    clip (the first `count` when its header does not say how long it is)."""
    if every < 1 or count < 1:
        raise UsageError(f"need every >= 1 and a frame count >= 1, got every {every}, count {count}")
    with VideoReader(source, max_pixels=max_pixels) as reader:
        candidates = FrameRange(every=every).count(reader.info.frames)
        if candidates is not None and candidates > count:
            wanted = {every * int(i) for i in np.round(np.linspace(0, candidates - 1, count))}
        else:
            wanted = None
        picked = []
        for index, frame in reader.frames(every=every):
            if wanted is None or index in wanted:
                picked.append((index, frame))
            if len(picked) == count:
                break
        if not picked:
            raise VideoReadError(f"{source}: no frame could be decoded")
    return picked
