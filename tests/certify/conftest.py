import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Bound propagation on small networks is many tiny products: one thread avoids pool overhead."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
