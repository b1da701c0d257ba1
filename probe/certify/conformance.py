"""Conformance checks a new bound method must pass (scikit-learn's ``check_estimator`` habit).

``check_bound_method(method)`` runs the method on small problems whose answers are known:
exact interval on an affine layer (Hölder), containment of dense samples on a ReLU/Tanh
network and a convolutional network, independence from the batch size, untouched inputs
and restored model state. It raises ``AssertionError`` naming the first check that fails.
"""

from __future__ import annotations

import torch
from torch import nn

from ..norms import sample_ball
from .base import BoundMethod, bound_outputs, get_bound_method

__all__ = ["check_bound_method"]

_DUAL = {"linf": 1, "l2": 2, "l1": float("inf")}


def _contains(model: nn.Module, x: torch.Tensor, eps: float, norm: str, method: BoundMethod, samples: int,
              seed: int) -> None:
    cert = bound_outputs(model, x, eps, norm=norm, method=method)
    g = torch.Generator().manual_seed(seed)
    shape = tuple(x.shape[1:])
    pts = x[None] + sample_ball((samples * len(x),) + shape, eps, norm, g, dtype=x.dtype).view(
        (samples, len(x)) + shape)
    with torch.no_grad():
        y = model(pts.reshape((-1,) + shape)).reshape(samples, len(x), -1)
    low = (y < cert.lower - 1e-9).any()
    high = (y > cert.upper + 1e-9).any()
    assert not (low or high), f"{method!r}: a sampled output of {type(model).__name__} leaves the bounds ({norm})"


def check_bound_method(method: str | BoundMethod, *, samples: int = 500, seed: int = 0) -> None:
    """Assert that ``method`` is exact on affine layers and sound on small networks.

    Parameters
    ----------
    method : str or BoundMethod
    samples : int, default 500
        Points drawn from each ball.
    seed : int, default 0

    Raises
    ------
    AssertionError
        Naming the failed check.
    """
    bm = get_bound_method(method)
    torch.manual_seed(seed)
    lin = nn.Linear(6, 3).double()
    x = torch.randn(4, 6, dtype=torch.float64)
    z = lin(x).detach()
    for norm, q in _DUAL.items():
        cert = bound_outputs(lin, x, 0.3, norm=norm, method=bm)
        r = 0.3 * lin.weight.detach().norm(p=q, dim=1)
        assert torch.allclose(cert.lower, z - r) and torch.allclose(cert.upper, z + r), \
            f"{bm!r} is not exact on an affine layer in {norm}: expected z -+ eps ||w_i||_q"
    mlp = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 12), nn.Tanh(), nn.Linear(12, 3)).double()
    conv = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(12, 2)).double()
    for model, xs in ((mlp, x), (conv, torch.randn(3, 1, 4, 4, dtype=torch.float64))):
        for norm in _DUAL:
            _contains(model, xs, 0.2, norm, bm, samples, seed)
    mlp.train()
    x0 = x.clone()
    a = bound_outputs(mlp, x, 0.1, method=bm, batch_size=1)
    b = bound_outputs(mlp, x, 0.1, method=bm, batch_size=None)
    assert torch.allclose(a.lower, b.lower) and torch.allclose(a.upper, b.upper), \
        f"{bm!r}: bounds depend on batch_size"
    assert torch.equal(x, x0), f"{bm!r} modified its input"
    assert mlp.training, f"{bm!r} left the model in eval mode"
