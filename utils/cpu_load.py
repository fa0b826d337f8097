"""Artificial CPU load for benchmarks: N busy processes (pure-Python spin loops) that run while
a `with busy_processes(n):` block does and are stopped when it ends, however it ends (an
error, Ctrl-C). Each one also watches its parent and exits within milliseconds when the
parent is gone, so a benchmark killed with SIGKILL or SIGTERM leaves no spinner behind.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from typing import Iterator

# Spin until the parent that started us is gone (we are then re-parented: getppid changes).
_SPIN = ("import os, sys\n"
         "parent = int(sys.argv[1])\n"
         "while os.getppid() == parent:\n"
         "    for _ in range(100000):\n"
         "        pass\n")
START_SECONDS = 0.3  # time for the spinners to get going before the measurement starts


def start(count: int) -> list[subprocess.Popen]:
    """Start `count` busy processes (see busy_processes, which also stops them)."""
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(count):
            procs.append(subprocess.Popen([sys.executable, "-I", "-c", _SPIN, str(os.getpid())],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
    except BaseException:
        stop(procs)
        raise
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    """Kill and reap every process of `procs` (those already gone included)."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a kill that did not land in 10 s: say so, go on
            print(f"warning: busy process {proc.pid} did not stop", file=sys.stderr)


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[list[int]]:
    """Keep `count` CPUs' worth of busy processes running inside the block; yields their PIDs."""
    if count <= 0:
        yield []
        return
    procs = start(count)
    try:
        time.sleep(START_SECONDS)
        yield [p.pid for p in procs]
    finally:
        stop(procs)
