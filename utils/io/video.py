"""Video files in and out, one frame at a time, through OpenCV's FFmpeg: any container and
codec it decodes. Frames are RGB float32 HWC in [0, 1], as images (utils/io/images.py).

Reading streams: a clip of any length holds one decoded frame in memory. A clip that ends
before the frame count its header declares (cut short, or a frame the decoder dropped) is
reported by `VideoReader.shortfall`; a frame of another size raises `VideoReadError`.

Writing goes to a hidden temporary file beside the target and is renamed on close, so the
target is always a closed, playable clip; closed early (an error, Ctrl-C) it holds the
frames written so far. Audio is never carried: OpenCV reads and writes pictures only.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from utils.errors import UserError
from utils.io.images import check_pixel_count, quantize, to_rgb_float

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv",
                  ".flv", ".ts", ".mts", ".m2ts", ".3gp", ".ogv")
# Codec per container written: mp4v plays almost everywhere; FFV1 in .mkv is lossless (the
# embedded clip and its ground truth, so scores see no compression); MJPG in .avi is the
# fallback when an OpenCV build cannot write mp4v.
CODECS = {".mp4": "mp4v", ".mkv": "FFV1", ".avi": "MJPG"}
FALLBACK = ".avi"


class VideoReadError(UserError, ValueError):
    """A video file is missing, unreadable, or a frame of it cannot be used."""


class VideoWriteError(UserError, OSError):
    """OpenCV cannot write a video file here (no encoder for the format, or no write access)."""


@contextmanager
def _quiet():
    """OpenCV's and FFmpeg's own messages off: a clip that cannot be read is reported once, by
    the caller, in one line. FFmpeg reads OPENCV_FFMPEG_LOGLEVEL when it first starts in the
    process; a value set by the user wins (e.g. 24 shows FFmpeg's warnings)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(previous)


def is_video_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    fps: float
    width: int
    height: int
    frames: int | None  # as the header declares it (None: the container does not say)

    def describe(self) -> str:
        count = f"{self.frames} frames" if self.frames else "frame count unknown"
        return f"{self.width}x{self.height}, {self.fps:g} fps, {count}"


class VideoReader:
    """Decodes a clip frame by frame; use as a context manager (or call `close`)."""

    def __init__(self, path: str | Path, max_pixels: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoReadError(f"{self.path}: no such file")
        with _quiet():
            self._capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        try:
            # The header's size is checked before a frame is decoded, the decoded one after.
            check_pixel_count(self.path, int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                              int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), limit=max_pixels)
            ok, first = self._capture.read() if self._capture.isOpened() else (False, None)
            if not ok or first is None:
                raise VideoReadError(f"{self.path}: not a readable video (corrupt, cut short, or "
                                     "a format OpenCV's FFmpeg cannot decode)")
            check_pixel_count(self.path, first.shape[1], first.shape[0], limit=max_pixels)
        except UserError:
            self.close()
            raise
        self._first = first
        height, width = first.shape[:2]
        fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        count = self._capture.get(cv2.CAP_PROP_FRAME_COUNT)
        declared = int(count) if 0 < count < 1e9 else None
        self.info = VideoInfo(self.path, fps if 0 < fps < 1000 else 25.0, width, height, declared)
        self.decoded = 0  # frames decoded or skipped so far
        self.ended = False  # the decoder had no more frames

    def frames(self, start: int = 0, stop: int | None = None, every: int = 1
               ) -> Iterator[tuple[int, np.ndarray]]:
        """(index, frame) for index in range(start, stop, every), until the clip ends; the
        frames in between are skipped without being converted. Call once per reader."""
        if start < 0 or every < 1 or (stop is not None and stop < start):
            raise ValueError(f"need 0 <= start <= stop and every >= 1, got {start}:{stop}, every {every}")
        index = 0
        while stop is None or index < stop:
            raw = self._next()
            if raw is None:
                return
            if raw.shape[:2] != (self.info.height, self.info.width):
                raise VideoReadError(f"{self.path}: frame {index} is {raw.shape[1]}x{raw.shape[0]}, "
                                     f"not {self.info.width}x{self.info.height} (a broken frame)")
            if index >= start and (index - start) % every == 0:
                yield index, to_rgb_float(raw, f"{self.path} frame {index}")
            index += 1

    def _next(self) -> np.ndarray | None:
        if self._first is not None:
            raw, self._first = self._first, None
        else:
            ok, raw = self._capture.read()
            if not ok or raw is None:
                self.ended = True
                return None
        self.decoded += 1
        return raw

    def shortfall(self) -> str | None:
        """After reading to the end: why fewer frames came than the header declares, or None."""
        declared = self.info.frames
        if not self.ended or declared is None or self.decoded >= declared:
            return None
        return (f"{self.path}: {self.decoded} of the {declared} frames its header declares "
                "could be decoded (the clip is cut short or has a broken frame)")

    def close(self) -> None:
        self._capture.release()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoWriter:
    """Writes RGB float frames ([0, 1], clipped) to `path` at `fps`; the codec follows the
    suffix (CODECS). Frames must all be `size` = (width, height); odd sides lose their last
    row or column (OpenCV's encoders need even sizes)."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in CODECS:
            raise VideoWriteError(f"{self.path}: cannot write {suffix or 'a file without suffix'}; "
                                  f"choose one of {', '.join(CODECS)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._partial = self.path.with_name(f".{self.path.stem}.partial{suffix}")
        self.size = (int(size[0]), int(size[1]))
        with _quiet():
            self._writer = cv2.VideoWriter(str(self._partial), cv2.VideoWriter_fourcc(*CODECS[suffix]),
                                           float(fps), self.size)
        if not self._writer.isOpened():
            self._partial.unlink(missing_ok=True)
            raise VideoWriteError(f"{self.path}: OpenCV cannot write {CODECS[suffix]} into "
                                  f"{suffix} here (no encoder, or the folder is not writable)")
        self.written = 0

    def write(self, frame: np.ndarray) -> None:
        if (frame.shape[1], frame.shape[0]) != self.size:
            raise ValueError(f"{self.path}: frame is {frame.shape[1]}x{frame.shape[0]}, the clip "
                             f"{self.size[0]}x{self.size[1]}")
        self._writer.write(np.ascontiguousarray(quantize(frame, 8)[:, :, ::-1]))
        self.written += 1

    def close(self) -> None:
        """Finish the file and move it into place (a clip without frames is removed)."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if self.written:
            os.replace(self._partial, self.path)
        else:
            self._partial.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_writer(path: str | Path, fps: float, size: tuple[int, int]) -> VideoWriter:
    """A VideoWriter for `path`; where an .mp4 cannot be written, the same name as .avi (MJPG)
    instead: the writer's `path` says which."""
    try:
        return VideoWriter(path, fps, size)
    except VideoWriteError:
        if Path(path).suffix.lower() != ".mp4":
            raise
        return VideoWriter(Path(path).with_suffix(FALLBACK), fps, size)
