"""Suite-wide settings."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # The tests' tensors are tiny: one thread is fastest, and immune to other processes
    # loading the CPU (two threads fighting for two busy cores were up to 100x slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
