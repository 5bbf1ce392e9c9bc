"""Fixtures shared by the test suite."""

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Learning tests run with one torch thread: reproducible, and fair to the other core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
