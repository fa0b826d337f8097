"""Test-wide settings: one thread, because tests use tiny models where threading costs
more than it gains, and on a loaded 2-core machine oversubscribed OpenMP threads stall
each other (a tiny forward goes from 0.02 s to seconds). Subprocesses inherit it too."""
import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    previous_threads, previous_env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(previous_threads)
    if previous_env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = previous_env
