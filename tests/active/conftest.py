import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tensors here are tiny: one thread avoids OpenMP start-up and synchronisation costs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
