"""Stop signals (SIGINT, SIGTERM, SIGHUP) and the time limit: finish the current step, save
a checkpoint, then exit 128 + the signal number (124 at the time limit).

Schedulers (SLURM at preemption, time-out or scancel; `timeout`) and a terminal's Ctrl-C
signal the whole process group, DataLoader workers included. A worker killed by the signal
would make the main process fail before it saves, so workers start with these signals
blocked and then ignore them (`StopRequest.iterate`, `ignore_stop_signals`): the main
process alone decides when to stop. Should a worker die anyway once a stop is requested
(another start method, a signal sent to it alone), the loader's error is caught where the
next batch is fetched, between two steps, instead of at a random point inside one.

A second SIGINT (Ctrl-C twice) raises KeyboardInterrupt at once for an impatient user,
except while a checkpoint is written (`StopRequest.writing()`): then right after the write.
A signal ignored when the script started (SIGHUP under nohup) stays ignored.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterable, Iterator

from utils.engine.time_limit import TIME_LIMIT_EXIT, TimeLimit


def stop_signals() -> tuple[signal.Signals, ...]:
    """SIGINT, SIGTERM and, where the platform has it, SIGHUP."""
    return tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def ignore_stop_signals(worker_id: int | None = None) -> None:
    """A DataLoader `worker_init_fn`: the worker ignores the stop signals (and unblocks them,
    so that the blocked ones pending since its start are dropped)."""
    for sig in stop_signals():
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals())


def is_worker_death(exc: BaseException) -> bool:
    """The error a DataLoader raises when one of its worker processes died."""
    return isinstance(exc, RuntimeError) and "DataLoader worker" in str(exc)


class StopRequest:
    """Context manager: while active, the stop signals only record that a stop is wanted;
    `step_done()` also asks the time limit (`train.max_hours`) once per step."""

    def __init__(self, time_limit: TimeLimit | None = None):
        self.signal_name: str | None = None
        self.time_limit = time_limit
        self.timed_out = False
        self._previous: dict = {}
        self._writing = False
        self._impatient = False

    @property
    def requested(self) -> bool:
        return self.signal_name is not None or self.timed_out

    def step_done(self) -> bool:
        """Call once per optimisation step: True when a stop signal came, or when the time
        left would not cover another step and a checkpoint."""
        if self.time_limit is not None and not self.timed_out:
            self.timed_out = self.time_limit.expired()
        return self.requested

    @property
    def reason(self) -> str | None:
        if self.signal_name:
            return self.signal_name
        return f"the time limit ({self.time_limit.describe()})" if self.timed_out else None

    @property
    def exit_code(self) -> int:
        """The shell convention 128 + signal number, so job schedulers see the interruption;
        124 (as `timeout`) at the time limit; 0 when nothing stopped the run."""
        if self.signal_name:
            return 128 + int(getattr(signal, self.signal_name))
        return TIME_LIMIT_EXIT if self.timed_out else 0

    def _handle(self, signum, frame):
        if self.signal_name == "SIGINT" and signum == signal.SIGINT:
            if not self._writing:
                raise KeyboardInterrupt
            self._impatient = True
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name

    def _child_exited(self, previous):
        """SIGCHLD: DataLoader's check for dead workers raises at any point of the main
        thread; once a stop is requested a worker's death is expected and left to the fetch."""
        def handler(signum, frame):
            if not self.requested and callable(previous):
                previous(signum, frame)
        return handler

    def iterate(self, loader: Iterable) -> Iterator:
        """iter(loader), its worker processes started with the stop signals blocked (they
        inherit the mask; `ignore_stop_signals` in the worker takes over from there)."""
        if not getattr(loader, "num_workers", 0) or not hasattr(signal, "pthread_sigmask"):
            return iter(loader)
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals())
        try:
            iterator = iter(loader)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        chld = getattr(signal, "SIGCHLD", None)
        if self._previous and chld is not None and chld not in self._previous:
            self._previous[chld] = signal.signal(chld, self._child_exited(signal.getsignal(chld)))
        return iterator

    @contextlib.contextmanager
    def writing(self, final: bool = False):
        """A checkpoint write that a second Ctrl-C does not cut short: KeyboardInterrupt comes
        after it, or never for the `final` write of a stop (the script exits next anyway)."""
        self._writing = True
        try:
            yield
        finally:
            self._writing = False
        if self._impatient and not final:
            self._impatient = False
            raise KeyboardInterrupt

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():  # signal() works only there
            for sig in stop_signals():
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
