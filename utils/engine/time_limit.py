"""A wall-clock budget for a training run (`train.max_hours`, `--time-limit 3h30m`), counted
from the start of the process: the run stops cleanly, with latest.pth saved, before a
scheduler's wall time runs out.

The run stops after the first step at which the time left is less than a reserve: twice the
longest step seen so far (measured between two checks, so a step's validation and checkpoint
count too) plus a margin of 5% of the budget, at most 60 s, for the final save and the exit.
"""
from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path
from typing import Callable

TIME_LIMIT_EXIT = 124  # as `timeout`: stopped by the clock, the run is resumable
MARGIN_SHARE = 0.05
MARGIN_MAX = 60.0
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_PARTS = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([dhms])")


def parse_duration(text: str) -> float:
    """Seconds in '3h30m', '90m', '1.5h', '2d', '45s', '5400' (seconds) or a scheduler's
    '[D-]HH:MM:SS'; ValueError on anything else or a duration that is not positive."""
    value = str(text).strip().lower().replace(" ", "")
    seconds = None
    if re.fullmatch(r"\d+(\.\d*)?|\.\d+", value):
        seconds = float(value)
    elif re.fullmatch(r"(\d+-)?\d+:\d{1,2}:\d{1,2}", value):
        days, _, clock = value.rpartition("-")
        h, m, s = (int(p) for p in clock.split(":"))
        seconds = int(days or 0) * 86400 + h * 3600 + m * 60 + s
    elif value and _PARTS.sub("", value) == "":
        seconds = sum(float(n) * _UNITS[u] for n, u in _PARTS.findall(value))
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"expected a duration such as 3h30m, 90m, 5400 (seconds) or 23:30:00, "
                         f"got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """'3h30m', '12m05s', '45s', '2d03h': the unit of the size, for messages."""
    seconds = max(0, int(round(seconds)))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def process_start(clock: Callable[[], float] = time.monotonic) -> float:
    """The `clock()` reading when this process started (Linux: from /proc, so the seconds of
    Python's start and imports count too), else the reading now."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        age = float(Path("/proc/uptime").read_text().split()[0]) - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return clock()
    return clock() - max(0.0, age)


class TimeLimit:
    """`seconds` of wall time counted from `start` (a `clock()` reading: `process_start()`);
    `expired()` is asked once per step."""

    def __init__(self, seconds: float, start: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = float(seconds)
        self.deadline = start + self.seconds
        self.clock = clock
        self.longest_step = 0.0
        self._last = clock()

    @classmethod
    def from_hours(cls, hours: float, start: float | None) -> "TimeLimit | None":
        """The limit of `train.max_hours` (None when it is 0, or when no start is known)."""
        return cls(hours * 3600, start) if hours > 0 and start is not None else None

    def describe(self) -> str:
        return f"{format_duration(self.seconds)}, train.max_hours={self.seconds / 3600:g}"

    def left(self) -> float:
        return self.deadline - self.clock()

    def reserve(self) -> float:
        """What must be left to take one more step: twice the longest step, plus the margin."""
        return 2 * self.longest_step + min(MARGIN_MAX, MARGIN_SHARE * self.seconds)

    def expired(self) -> bool:
        now = self.clock()
        self.longest_step = max(self.longest_step, now - self._last)
        self._last = now
        return self.deadline - now < self.reserve()
