"""Progress output that suits where stderr goes, for the four scripts.

On a terminal: a tqdm bar. Into a file or a pipe (nohup, SLURM, CI) a bar's carriage-return
frames would make a log one unreadable line, so there a plain line is written every
`LINE_SECONDS` (count, rate, elapsed, ETA, the bar's postfix) and one when the work ends.
Nothing under --quiet or on a non-zero DDP rank (`active=False`).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable

from tqdm import tqdm

from utils import logs

LINE_SECONDS = 30.0


def progress(total: int | None = None, initial: int = 0, desc: str = "", active: bool = True,
             leave: bool = True, unit: str = "it", iterable: Iterable | None = None,
             line_seconds: float = LINE_SECONDS):
    """A tqdm bar, or a `ProgressLines` when stderr is not a terminal; both take update(n),
    set_postfix(...), close(), `with` and iteration over `iterable`."""
    shown = active and logs.bars_enabled()
    if total is None and iterable is not None:
        total = len(iterable)
    if shown and not sys.stderr.isatty():
        return ProgressLines(total, initial, desc, unit, iterable, leave, line_seconds)
    return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, disable=not shown,
                leave=leave, dynamic_ncols=True)


class ProgressLines:
    """'desc: 120/480 (25%), 3.2 it/s, 0:37 elapsed, ETA 1:52, loss=-2.91' lines on stderr."""

    def __init__(self, total: int | None, initial: int = 0, desc: str = "", unit: str = "it",
                 iterable: Iterable | None = None, leave: bool = True,
                 line_seconds: float = LINE_SECONDS, clock=time.monotonic):
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.iterable, self.leave, self.line_seconds, self.clock = iterable, leave, line_seconds, clock
        self.postfix = ""
        self._start = self._last = clock()
        self._start_n = self._written_n = initial
        self._closed = False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self._last >= self.line_seconds:
            self._write(now)

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in {**(ordered_dict or {}), **kwargs}.items())

    def line(self, now: float) -> str:
        elapsed = now - self._start
        done = self.n - self._start_n
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.n}/{self.total}" + (f" ({100 * self.n / self.total:.0f}%)" if self.total else "")
                 if self.total is not None else f"{self.n}"]
        if rate > 0:
            parts.append(f"{rate:.3g} {self.unit}/s" if rate >= 1 else f"{1 / rate:.3g} s/{self.unit}")
        parts.append(f"{tqdm.format_interval(elapsed)} elapsed")
        if rate > 0 and self.total is not None and self.n < self.total:
            parts.append(f"ETA {tqdm.format_interval((self.total - self.n) / rate)}")
        if self.postfix:
            parts.append(self.postfix)
        return f"{self.desc + ': ' if self.desc else ''}{', '.join(parts)}"

    def _write(self, now: float) -> None:
        self._last, self._written_n = now, self.n
        print(self.line(now), file=sys.stderr, flush=True)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.leave and self.n != self._written_n:
                self._write(self.clock())

    def __enter__(self) -> "ProgressLines":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
