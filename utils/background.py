"""Work done next to the model: reading the next images and scoring the last ones in background
threads while the main thread runs the network (eval.py).

Why threads: image decoding (OpenCV), numpy and torch release the GIL in their heavy work,
so a thread overlaps with the network without copying images between processes. Each
background thread runs torch on ONE intra-op thread (set in the thread itself; torch keeps
the count per thread), so the main thread keeps the count `utils.threads` chose, and what
the background threads compute does not depend on the machine's load: the SSIM of the
metrics sums in a different order on 1 and 2 threads (the 16th digit moves), and a table
must not change with --threads.

What this can hide: on a GPU the processor is free while the network runs, so reading and
scoring cost nothing. On a CPU the network already uses every free core (utils.threads), so
background work only fills the gaps in that use; the rest is shared fairly by the kernel (a
normal-priority thread: a lower one would starve whenever other processes keep every CPU
busy), so a CPU-bound eval costs at most about what the sequential order costs. `python
scripts/bench.py --eval-overlap` measures both against the bare forward.

`Background(0)` runs every task at once in the calling thread (same single-thread rule), so
the sequential path gives the same numbers bit for bit (tests/test_eval.py checks it).
Results come back in submission order: `prefetch` yields them in order, and the caller keeps
its own futures in order.
"""
from __future__ import annotations

import contextlib
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator, TypeVar

import torch

T = TypeVar("T")


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """torch on one intra-op thread inside the block (this thread only), restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Background:
    """`workers` background threads (0: run tasks inline), each with torch on one thread.

    Use as a context manager: leaving it (normally, on an error or Ctrl-C) drops the tasks not
    started yet and waits for the running ones, so no thread outlives the evaluation.
    """

    def __init__(self, workers: int, name: str = "background"):
        self.workers = max(0, int(workers))
        self._pool = None
        if self.workers:
            main_threads = torch.get_num_threads()
            ready = threading.Barrier(self.workers + 1, timeout=60)  # a thread that failed to start
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=name,
                                            initializer=_one_torch_thread)
            # Start every thread now (one blocking task each) and wait for their initializers,
            # then restore the count torch gives new threads (set_num_threads also sets that).
            started = [self._pool.submit(ready.wait) for _ in range(self.workers)]
            ready.wait()
            for future in started:
                future.result()
            torch.set_num_threads(main_threads)

    def submit(self, fn: Callable[..., T], *args, **kwargs) -> Future:
        if self._pool is not None:
            return self._pool.submit(fn, *args, **kwargs)
        future: Future = Future()
        try:
            with single_threaded():
                future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - delivered by future.result(), as a pool does
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            future.set_exception(exc)
        return future

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "Background":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _one_torch_thread() -> None:
    torch.get_num_threads()  # torch sets a thread's count lazily on first use: do it first,
    torch.set_num_threads(1)  # so that this setting is not replaced by the global one later


def prefetch(pool: Background, fn: Callable[[int], T], count: int, ahead: int) -> Iterator[T]:
    """fn(0), fn(1), ... fn(count - 1) in order, up to `ahead` of them computed in advance
    by `pool` while the caller works on the current one. An error is raised where its item
    would have been yielded."""
    ahead = max(1, ahead)
    pending: deque[Future] = deque()
    next_index = 0
    while next_index < count or pending:
        while next_index < count and len(pending) < ahead:
            pending.append(pool.submit(fn, next_index))
            next_index += 1
        yield pending.popleft().result()
