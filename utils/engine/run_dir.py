"""The run directory `runs/<name>/`: config.json, the log file, tensorboard events, final.json.

Only rank 0 writes; on other ranks a `RunDir` is inert so calling code needs no `if`s.
Create it only after the inputs are validated: creating it makes the folder.
With `lock=True` the folder is claimed for this process (utils/engine/run_lock.py: a second
process, on this machine or another one sharing the folder, gets RunLocked naming the
holder; a lock left by a killed process is taken over) and temp files of killed writes are
removed; `open_run` does that for every rank of a DDP run at once. `claim()` refuses a fresh
start over an existing run unless told to overwrite it. The log file is attached once
config.json is written, so a start that fails (disk full) leaves no empty files; a disk
that fills later ends the run with one error naming the file that could not be written.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np

from config import Config
from utils import logs
from utils.engine import distributed
from utils.engine.events import EventFile
from utils.engine.run_lock import RunLock
from utils.errors import UserError
from utils.io.files import DiskFull, clean_stale_temps, disk_full, write_text

log = logs.get("run")


class RunDirError(UserError, OSError):
    """The run folder cannot be written (disk full, permissions): nothing half-written is left."""


class ExistingRun(UserError, FileExistsError):
    """A fresh start would replace the checkpoints of an existing run."""


class RunRefused(UserError, RuntimeError):
    """Rank 0 of this DDP run could not open the run folder (its message says why)."""


class RunDir:
    def __init__(self, path: str | Path, active: bool = True, log_name: str = "train.log",
                 purge_step: int | None = None, echo: bool = True, lock: bool = False):
        """`echo` is kept for callers of the old API: the console now follows --quiet/--verbose."""
        self.path = Path(path)
        self.active = active
        self._log = None
        self._log_path = self.path / log_name
        self._events = EventFile(self.path / "tb", purge_step)
        self._lock: RunLock | None = None
        self.notes: list[str] = []  # what claiming the folder did, logged by claim()
        if not active:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"cannot create the run folder {self.path}: {exc.strerror or exc}") from None
        if lock:
            self._lock = RunLock(self.path).acquire()
            if self._lock.taken_over is not None:
                self.notes.append(f"took over the lock of {self._lock.taken_over}, "
                                  f"which is no longer running")
            removed = clean_stale_temps(self.path)
            if removed:
                self.notes.append(f"removed {len(removed)} temp file(s) of interrupted writes "
                                  f"(e.g. {removed[0].name})")
        else:
            self._attach_log()

    def claim(self, fresh: bool, overwrite: bool, checkpoints: tuple[str, ...]) -> None:
        """Before anything is written: a fresh start over a folder holding `checkpoints` (glob
        patterns) raises ExistingRun unless `overwrite`, which deletes them first."""
        if not self.active:
            return
        found = sorted(p for pattern in checkpoints for p in self.path.glob(pattern) if p.is_file())
        if fresh and found:
            if not overwrite:
                self.close()
                raise ExistingRun(f"{self.path} already holds a run ({', '.join(p.name for p in found[:4])}); "
                                  f"continue it with --resume auto, or pass --overwrite to start over "
                                  f"(its checkpoints are deleted)")
            for p in found:
                p.unlink()
            self.notes.append(f"--overwrite: deleted the previous run's {', '.join(p.name for p in found[:4])}"
                              + (" ..." if len(found) > 4 else ""))
        for note in self.notes:
            self.log(note)
        self.notes = []

    def _attach_log(self) -> None:
        if self._log is None:
            try:
                # Every `hcn` log record goes to the file (the trainer's, the script's, warnings).
                self._log = logs.attach_file(self._log_path)
            except OSError as exc:
                self.close()
                raise RunDirError(f"cannot write {self._log_path}: {exc.strerror or exc}") from None

    def save_config(self, cfg: Config) -> None:
        if self.active:
            try:
                cfg.save(self.path / "config.json")  # atomic
            except OSError as exc:
                self.close()
                raise RunDirError(f"cannot write {self.path / 'config.json'}: {exc.strerror or exc}") from None
            self._attach_log()

    def log(self, message: str, level: int = logging.INFO) -> None:
        """A timestamped line in the log file, also on the console (above any tqdm bar);
        DiskFull (or the OSError) once a line could not be written to the file."""
        if self.active:
            log.log(level, message)
            self.check_log()

    def check_log(self) -> None:
        if self._log is not None and self._log.failure is not None:
            raise write_error(self._log_path, self._log.failure)

    def write_final(self, results: dict, name: str = "final.json") -> None:
        """The run's final results as JSON (what the script printed as a table)."""
        if self.active:
            write_text(self.path / name, json.dumps(results, indent=2) + "\n")

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.active:
            for key, value in values.items():
                self._events.scalar(key, value, step)

    def image(self, tag: str, hwc: np.ndarray, step: int) -> None:
        """An RGB float HWC image in [0, 1] (e.g. a utils.io.panels.side_by_side panel)."""
        if self.active:
            self._events.image(tag, hwc, step)

    def close(self) -> None:
        """Flush and close the log and events, release the lock; idempotent. A write that
        fails here is raised unless an exception is already on its way."""
        if not self.active:
            return
        self.active = False
        failure = None
        try:
            try:
                self._events.close()
            except OSError as exc:
                failure = exc
            if self._log is not None:
                logs.detach_file(self._log)
                if failure is None and self._log.failure is not None:
                    failure = write_error(self._log_path, self._log.failure)
                self._log = None
        finally:
            if self._lock is not None:
                self._lock.release()
        if failure is not None and sys.exc_info()[1] is None:
            raise failure


def open_run(path: str | Path, info: distributed.DistInfo, fresh: bool, overwrite: bool,
             checkpoints: tuple[str, ...], **kwargs) -> RunDir:
    """A RunDir locked and claimed by rank 0, on every rank: when rank 0 is refused (another
    run holds the folder, an existing run without --overwrite, ...), every rank raises the
    same error instead of waiting for rank 0 in a collective for ever."""
    run, error = None, None
    try:
        run = RunDir(path, active=info.is_main, lock=True, **kwargs)
        run.claim(fresh=fresh, overwrite=overwrite, checkpoints=checkpoints)
    except Exception as exc:  # noqa: BLE001 - told to every rank, then raised as it is
        error = exc
    message = distributed.broadcast_object(info, None if error is None else str(error))
    if error is not None:
        raise error
    if message is not None:
        run.close()
        raise RunRefused(message)
    return run


def write_error(path: Path, error: OSError) -> OSError:
    """DiskFull for a full disk, else RunDirError: one line naming `path`."""
    if disk_full(error) is not None:
        return DiskFull(path, disk_full(error))
    return RunDirError(f"cannot write {path}: {error.strerror or error}")


def format_metrics(values: dict[str, float]) -> str:
    """'loss=-2.9312 lr=1.00e-05 ...' (learning rates in scientific notation)."""
    return " ".join(logs.format_value(k, v) for k, v in values.items())
