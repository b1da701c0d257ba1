"""Shared data for the training and diagnosis tests: sklearn's 8x8 digits (real data, shipped with sklearn)."""

import pytest
import torch
from train_helpers import make_loader, make_mlp

from probe.devices import single_thread


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
    with single_thread():
        standard(model, make_loader(x, y), epochs=15, seed=0)
    model.eval()
    return model
