"""Fixtures shared by several test modules."""
import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test on one torch thread (the zoo's many tiny per-timestep ops are much faster so on a
    shared machine), restoring the previous setting after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
