import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Black-box searches make many calls on tiny batches, where intra-op threads only add overhead."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
