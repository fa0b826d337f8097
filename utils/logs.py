"""Logging for the five scripts: one `hcn` logger, to the console and to the run's log file.

- Console (stderr): plain messages, `warning: ...` / `error: ...` prefixes, written with
  `tqdm.write` so progress bars are not garbled. `--quiet` keeps warnings and errors only
  (and hides the bars); `--verbose` adds debug messages.
- File: `RunDir` attaches runs/<name>/train.log (or real_train.log); every record gets a
  timestamp. Records logged before the run folder exists (config, resume decisions) are
  kept and written to the file when it is attached, so the log tells the whole story.
- Results a script prints on stdout (tables) are also logged with `log_result`.
- Non-zero DDP ranks log warnings and errors only.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from tqdm import tqdm

ROOT = "hcn"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
_root = logging.getLogger(ROOT)
_root.setLevel(logging.DEBUG)
_root.propagate = False
_root.addHandler(logging.NullHandler())  # unconfigured (a library import): stay silent
_PENDING_LIMIT = 1000


def get(name: str) -> logging.Logger:
    """The logger of one module or script: `hcn.<name>`."""
    return logging.getLogger(f"{ROOT}.{name}")


class _Formatter(logging.Formatter):
    """'message' for info and debug, 'warning: message' / 'error: message' above."""

    def __init__(self, stamp: bool):
        super().__init__("%(asctime)s %(message)s" if stamp else "%(message)s", DATE_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        if record.levelno >= logging.WARNING:
            record = logging.makeLogRecord({**record.__dict__,
                                            "message": f"{record.levelname.lower()}: {record.message}"})
        return super().formatMessage(record)


class _Console(logging.Handler):
    """stderr (looked up at each record, so redirections apply) above any tqdm bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never crash the program
            self.handleError(record)


class _Pending(logging.Handler):
    """Keeps the records of this process until a run's log file is attached."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < _PENDING_LIMIT:
            self.records.append(record)


_state = {"console": None, "pending": None, "level": logging.INFO}


def add_log_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true",
                       help="warnings and errors only on the console (no progress bars); the "
                            "run's log file still gets everything")
    group.add_argument("-v", "--verbose", action="store_true", help="also debug messages")


def setup(args: argparse.Namespace | None = None, level: int | None = None) -> None:
    """Configure the console from --quiet/--verbose (idempotent: replaces an earlier setup)."""
    if level is None:
        level = logging.INFO
        if getattr(args, "quiet", False):
            level = logging.WARNING
        elif getattr(args, "verbose", False):
            level = logging.DEBUG
    if int(os.environ.get("RANK", "0")) != 0:
        level = max(level, logging.WARNING)
    for name in ("console", "pending"):
        if _state[name] is not None:
            _root.removeHandler(_state[name])
    console = _Console(level)
    console.setFormatter(_Formatter(stamp=False))
    pending = _Pending()
    _root.addHandler(console)
    _root.addHandler(pending)
    _state.update(console=console, pending=pending, level=level)


def bars_enabled() -> bool:
    """False under --quiet: progress bars are console information too."""
    return _state["level"] <= logging.INFO


class LogFile(logging.FileHandler):
    """A run's log file. A write that fails (a full disk) is kept in `failure` instead of
    logging's own traceback on stderr, and the file is left alone from then on; the run
    reports it (RunDir.log) as one error naming the file."""

    def __init__(self, path: str | Path):
        super().__init__(path, mode="a", encoding="utf-8")
        self.failure: OSError | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.failure is None:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            self.failure = self.failure or error
        else:
            super().handleError(record)

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as exc:
            self.failure = self.failure or exc

    def close(self) -> None:
        try:
            super().close()
        except OSError as exc:  # the buffered lines of a full disk, once more
            self.failure = self.failure or exc


def attach_file(path: str | Path) -> LogFile:
    """Append every record to `path` (with a timestamp), starting with the pending ones."""
    handler = LogFile(path)
    handler.setLevel(logging.DEBUG if _state["level"] <= logging.DEBUG else logging.INFO)
    handler.setFormatter(_Formatter(stamp=True))
    pending = _state["pending"]
    if pending is not None:  # the first file of this process gets the earlier records
        _root.removeHandler(pending)
        _state["pending"] = None
        for record in pending.records:
            if record.levelno >= handler.level:
                handler.handle(record)
    _root.addHandler(handler)
    return handler


def detach_file(handler: logging.Handler) -> None:
    _root.removeHandler(handler)
    handler.close()


def to_files(level: int, message: str, exc_info=None) -> None:
    """A record for the attached log files only (the console already shows it)."""
    record = _root.makeRecord(ROOT, level, __file__, 0, message, (), exc_info)
    for handler in list(_root.handlers):
        if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
            handler.handle(record)


def format_value(key: str, value) -> str:
    """Metrics for log lines: learning rates in scientific notation (1e-5 is not 0.0000),
    other floats with 4 decimals unless tiny."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        return f"{key}={value}"
    if isinstance(value, int):
        return f"{key}={value}"
    value = float(value)
    if key == "lr" or key.endswith("/lr") or key.endswith("_lr"):
        return f"{key}={value:.2e}"
    if value != 0 and abs(value) < 1e-3:
        return f"{key}={value:.3e}"
    return f"{key}={value:.4f}"
