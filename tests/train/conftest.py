"""Shared data for the training and diagnosis tests: sklearn's 8x8 digits (real data, shipped with sklearn)."""

import contextlib

import pytest
import torch


@contextlib.contextmanager
def one_thread():
    """The models here are tiny: intra-op threads only add synchronisation, which on a loaded
    machine costs far more than it gains. Restores the thread count afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def make_mlp(seed: int = 0, hidden: int = 64) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))


def make_loader(x: torch.Tensor, y: torch.Tensor, batch_size: int = 64, seed: int = 0):
    data = torch.utils.data.TensorDataset(x, y)
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True,
                                       generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="session")
def digits():
    """(x_train, y_train, x_test, y_test): 1200 / 300 images scaled to [0, 1], flattened to 64 features."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:1200], perm[1200:1500]
    return x[tr], y[tr], x[te], y[te]


@pytest.fixture(scope="session")
def standard_mlp(digits):
    """An MLP trained by standard training (shared by the diagnosis tests; do not train it further)."""
    from probe.train import standard

    x, y, _, _ = digits
    model = make_mlp()
    with one_thread():
        standard(model, make_loader(x, y), epochs=15, seed=0)
    model.eval()
    return model
