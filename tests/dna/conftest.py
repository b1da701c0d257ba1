import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """The DNA tests run many small tensor operations, which OpenMP threads slow down on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session", autouse=True)
def _one_thread_for_session_fixtures():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
