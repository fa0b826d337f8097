"""SIGINT/SIGTERM handling: finish the current step, save a checkpoint, then exit.

A second SIGINT (Ctrl-C twice) raises KeyboardInterrupt at once for an impatient user.
"""
from __future__ import annotations

import signal
import threading


class StopRequest:
    """Context manager: while active, SIGINT/SIGTERM only set `self.signal_name`."""

    def __init__(self):
        self.signal_name: str | None = None
        self._previous = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum, frame):
        if self.signal_name == "SIGINT" and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():  # signal() works only there
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def exit_code(self) -> int:
        """The shell convention 128 + signal number, so job schedulers see the interruption."""
        return 128 + int(getattr(signal, self.signal_name)) if self.signal_name else 0
