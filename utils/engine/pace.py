"""What a run will cost, said in its first minute: the seconds per step measured after the
first step (which includes warm-up: allocations, autotuning), the projected time of the rest
of the run, and, where that is beyond a day on a CPU, what to do instead.

A first step that is still running after `EARLY_SECONDS` already bounds the run from below
(at least that long per step): that is said then, from a timer thread, so a run whose steps
take minutes does not keep its cost quiet until they end.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from utils.engine.time_limit import format_duration

MEASURE_STEPS = 5  # steps measured after the first one ...
MEASURE_SECONDS = 30.0  # ... or fewer once they took this long
EARLY_SECONDS = 20.0
DAY = 86400.0


def finish_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(time.time() + seconds))


class Pace:
    """`step_done(step)` after every optimisation step; `log(message, level)` says what was
    measured once (rank 0's RunDir.log); `advice` says what to do instead of a CPU run of
    more than a day; `sync()` waits for the device before the clock is read."""

    def __init__(self, total: int, done: int, device_type: str, log: Callable[[str, int], None],
                 advice: str, sync: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic, early_seconds: float = EARLY_SECONDS):
        self.total, self.done, self.device_type = total, done, device_type
        self.log, self.advice, self.sync, self.clock = log, advice, sync, clock
        self.reported = self.warned = False
        self._first_end: float | None = None
        self._first_step = done
        self.early_seconds = early_seconds
        self._timer = threading.Timer(early_seconds, self._early)
        self._timer.daemon = True

    def __enter__(self) -> "Pace":
        if self.total > self.done:
            self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()

    def _say(self, seconds: float, message: str) -> None:
        self.log(message, logging.INFO)
        if seconds > DAY and self.device_type == "cpu" and not self.warned:
            self.warned = True
            self.log(f"more than a day on a CPU ({format_duration(seconds)}): {self.advice}",
                     logging.WARNING)

    def _early(self) -> None:
        left = self.total - self.done
        seconds = self.early_seconds * left
        try:
            self._say(seconds, f"step {self.done + 1} is still running after {self.early_seconds:g} s: "
                               f"the {left:,} steps of this run take more than "
                               f"{format_duration(seconds)} at this pace")
        except OSError:  # the log file cannot be written: the main thread reports it
            pass

    def step_done(self, step: int) -> None:
        if self.reported:
            return
        now = self.clock()
        if self._first_end is None:
            self._timer.cancel()
            self._first_end, self._first_step = now, step
            return
        measured = step - self._first_step
        if measured < MEASURE_STEPS and now - self._first_end < MEASURE_SECONDS:
            return
        self.sync()
        per_step = (self.clock() - self._first_end) / measured
        self.reported = True
        left = self.total - step
        seconds = per_step * left
        self._say(seconds, f"pace: {per_step:.3g} s per step (steps {self._first_step + 1}-{step}); "
                           f"the {left:,} steps left take {format_duration(seconds)} at this pace, "
                           f"until about {finish_time(seconds)} (validation not included)")
