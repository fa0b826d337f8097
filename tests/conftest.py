"""Test-wide settings: one torch thread, because tests use tiny models where threading
costs more than it gains, and a loaded 2-core machine makes oversubscribed threads stall."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
