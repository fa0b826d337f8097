"""TensorBoard event files (tensorboardX's format and summaries), written in the calling thread.

tensorboardX's SummaryWriter writes from a background thread: a write that fails there (a
full disk) prints that thread's traceback, loses the events, and once its queue is full the
training stalls. Here a failed write raises where the values were logged (a full disk:
DiskFull naming the file); the file is flushed at most every `FLUSH_SECONDS` and on close.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.summary import image, scalar

from utils.io.files import DiskFull, disk_full

FLUSH_SECONDS = 30.0


class EventFile:
    """`folder`/events.out.tfevents.<time>.<host>, created at the first value. `purge_step`:
    TensorBoard drops the events an earlier, interrupted run logged from that step on."""

    def __init__(self, folder: str | Path, purge_step: int | None = None):
        self.folder = Path(folder)
        self.purge_step = purge_step
        self._writer: EventsWriter | None = None
        self._path: Path | None = None
        self._flushed = 0.0
        self.failed = False

    @property
    def path(self) -> Path:
        """The event file (its folder until the first value)."""
        return self._path or self.folder

    def _guard(self, write) -> None:
        if self.failed:
            return
        try:
            write()
        except OSError as exc:
            self.failed = True  # the file is left alone from now on
            full = disk_full(exc)
            raise (DiskFull(self.path, full) if full is not None else exc) from None

    def _open(self) -> EventsWriter:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._writer = EventsWriter(str(self.folder / "events"))
        self._path = Path(getattr(self._writer, "_file_name", self.folder))
        if self.purge_step is not None:
            self._writer.write_event(Event(wall_time=time.time(), step=self.purge_step,
                                           session_log=SessionLog(status=SessionLog.START)))
        return self._writer

    def _add(self, summary, step: int) -> None:
        def write():
            writer = self._writer or self._open()
            writer.write_event(Event(wall_time=time.time(), step=int(step), summary=summary))
            if time.monotonic() - self._flushed >= FLUSH_SECONDS:
                writer.flush()
                self._flushed = time.monotonic()
        self._guard(write)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._add(scalar(tag, float(value)), step)

    def image(self, tag: str, hwc: np.ndarray, step: int) -> None:
        """An RGB float HWC image in [0, 1]."""
        self._add(image(tag, np.clip(hwc, 0, 1).astype(np.float32), dataformats="HWC"), step)

    def flush(self) -> None:
        if self._writer is not None:
            self._guard(self._writer.flush)

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            if not self.failed:
                self._guard(writer.close)
            else:
                with contextlib.suppress(OSError):  # already reported
                    writer.close()
