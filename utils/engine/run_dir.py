"""The run directory `runs/<name>/`: config.json, the log file, tensorboard events, final.json.

Only rank 0 writes; on other ranks a `RunDir` is inert so calling code needs no `if`s.
Create it only after the inputs are validated: creating it makes the folder.
With `lock=True` the folder is claimed for this process (`run.lock`, an flock held until
`close()`; a second process gets RunLocked naming the holder's PID, a lock left by a killed
process is taken over) and temp files of killed writes are removed. `claim()` refuses a fresh
start over an existing run unless told to overwrite it. The log file is attached once
config.json is written, so a start that fails (disk full) leaves no empty files.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
from tensorboardX import SummaryWriter
from tqdm import tqdm

from config import Config
from utils import logs
from utils.errors import UserError
from utils.io.files import clean_stale_temps, write_text

log = logs.get("run")
LOCK_NAME = "run.lock"


class RunDirError(UserError, OSError):
    """The run folder cannot be written (disk full, permissions): nothing half-written is left."""


class RunLocked(UserError, RuntimeError):
    """Another live process holds the run folder's lock."""


class ExistingRun(UserError, FileExistsError):
    """A fresh start would replace the checkpoints of an existing run."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class RunLock:
    """`<folder>/run.lock`: an exclusive flock (released by the kernel when the holder dies,
    so a killed run's lock is stale by construction) holding the holder's PID for messages.
    Where flock is missing, a PID file whose PID is no longer alive counts as stale."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None
        self.taken_over: int | None = None  # PID of a dead holder whose lock was taken over

    def _holder(self) -> int | None:
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # no flock: PID liveness only
            fcntl = None
        previous = self._holder()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise
                    holder = self._holder()
                    raise RunLocked(f"{self.path.parent} is in use by process {holder or '?'} "
                                    f"(lock file {self.path}); wait for it to finish, stop it, or "
                                    f"choose another run name") from None
            elif previous is not None and previous != os.getpid() and _pid_alive(previous):
                raise RunLocked(f"{self.path.parent} is in use by process {previous} (lock file "
                                f"{self.path}); if that process is not a training run, delete the file")
        except BaseException:
            os.close(fd)
            raise
        if previous is not None and previous != os.getpid():
            self.taken_over = previous
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                self.path.unlink(missing_ok=True)
            finally:
                os.close(self._fd)  # closing releases the flock
                self._fd = None

    def __del__(self):
        if self._fd is not None:
            os.close(self._fd)


class RunDir:
    def __init__(self, path: str | Path, active: bool = True, log_name: str = "train.log",
                 purge_step: int | None = None, echo: bool = True, lock: bool = False):
        """`echo` is kept for callers of the old API: the console now follows --quiet/--verbose."""
        self.path = Path(path)
        self.active = active
        self._log = None
        self._tb = None
        self._log_path = self.path / log_name
        self._purge_step = purge_step
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
                self.notes.append(f"took over the lock of process {self._lock.taken_over}, "
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
        """A timestamped line in the log file, also on the console (above any tqdm bar)."""
        if self.active:
            log.log(level, message)

    def write_final(self, results: dict, name: str = "final.json") -> None:
        """The run's final results as JSON (what the script printed as a table)."""
        if self.active:
            write_text(self.path / name, json.dumps(results, indent=2) + "\n")

    @property
    def tb(self) -> SummaryWriter:
        if self._tb is None:
            # purge_step drops events a crashed run logged after the checkpoint we resume from.
            self._tb = SummaryWriter(logdir=str(self.path / "tb"), purge_step=self._purge_step)
        return self._tb

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.active:
            for key, value in values.items():
                self.tb.add_scalar(key, float(value), step)

    def image(self, tag: str, hwc: np.ndarray, step: int) -> None:
        """An RGB float HWC image in [0, 1] (e.g. a utils.io.panels.side_by_side panel)."""
        if self.active:
            self.tb.add_image(tag, np.clip(hwc, 0, 1), step, dataformats="HWC")

    def close(self) -> None:
        """Flush and close the log and events, release the lock; idempotent."""
        if self.active:
            self.active = False
            try:
                if self._tb is not None:
                    self._tb.close()
                if self._log is not None:
                    logs.detach_file(self._log)
                    self._log = None
            finally:
                if self._lock is not None:
                    self._lock.release()


def format_metrics(values: dict[str, float]) -> str:
    """'loss=-2.9312 lr=1.00e-05 ...' (learning rates in scientific notation)."""
    return " ".join(logs.format_value(k, v) for k, v in values.items())


def progress(total: int | None, initial: int = 0, desc: str = "", active: bool = True, leave: bool = True,
             unit: str = "it") -> tqdm:
    """A tqdm bar (rate and ETA built in); redrawn at most every 10 s when stderr is a file."""
    return tqdm(total=total, initial=initial, desc=desc, disable=not (active and logs.bars_enabled()), leave=leave,
                dynamic_ncols=True, mininterval=0.1 if sys.stderr.isatty() else 10.0, unit=unit)
