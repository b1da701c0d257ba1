"""Affine models whose minimal perturbations are known in closed form."""

from __future__ import annotations

import numpy as np
import torch

from ..norms import check_norm, dual

__all__ = ["AffineClassifier", "AffineRegressor", "affine_margin", "affine_threshold_distance", "probability_box"]


class AffineClassifier(torch.nn.Module):
    """Logits ``z = W x + b`` on flattened inputs.

    Parameters
    ----------
    weight : torch.Tensor, shape (C, D)
    bias : torch.Tensor, shape (C,)
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)

    @classmethod
    def random(cls, n_features: int = 10, n_classes: int = 3, seed: int = 0) -> AffineClassifier:
        g = torch.Generator().manual_seed(seed)
        return cls(torch.randn(n_classes, n_features, generator=g), torch.randn(n_classes, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


class AffineRegressor(AffineClassifier):
    """Outputs ``y = W x + b`` (one column per row of ``W``)."""


def affine_margin(model: AffineClassifier, x: torch.Tensor, norm: str, labels: torch.Tensor | None = None
                  ) -> torch.Tensor:
    r"""Exact minimal L-p distance to misclassification for an affine classifier (no box).

    :math:`\min_{j \ne y} (z_y - z_j) / \lVert w_y - w_j \rVert_q` with ``q`` the dual norm;
    0 where the input is already misclassified.
    """
    q = dual(check_norm(norm))
    with torch.no_grad():
        W, b = model.linear.weight, model.linear.bias
        z = x.flatten(1) @ W.T + b
        y = z.argmax(1) if labels is None else labels
        diff_w = W[y][:, None, :] - W[None, :, :]           # (N, C, D)
        diff_z = z.gather(1, y[:, None]) - z                # (N, C)
        p = {"l1": 1, "l2": 2, "linf": float("inf")}[q]
        dn = diff_w.norm(p=p, dim=2)
        ratio = (diff_z / dn.clamp(min=1e-30)).clamp(min=0)
        ratio[torch.arange(len(y)), y] = float("inf")
        return ratio.amin(1)


def affine_threshold_distance(model: AffineRegressor, x: torch.Tensor, value: float, norm: str, output: int = 0
                              ) -> torch.Tensor:
    """Exact minimal L-p distance that brings output ``output`` of an affine regressor to ``value``."""
    q = {"l1": 1, "l2": 2, "linf": float("inf")}[dual(check_norm(norm))]
    with torch.no_grad():
        w, b = model.linear.weight[output], model.linear.bias[output]
        y = x.flatten(1) @ w + b
        return (y - value).abs() / w.norm(p=q)


def probability_box(model: torch.nn.Module) -> object:
    """``model`` seen only through a NumPy ``predict_proba``-like function: softmax probabilities, no gradients.

    The black-box twin of an analytic model: gradient-free searches on it must find the same
    closed-form answers as white-box ones on ``model``.
    """
    from ..models import wrap

    def predict_proba(a: object) -> object:
        with torch.no_grad():
            return torch.softmax(model(torch.as_tensor(a, dtype=torch.float32)), 1).double().numpy()

    return wrap(predict_proba)


def digits_mlp(*, hidden: int = 64, epochs: int = 300, seed: int = 0, device: str | torch.device | None = None
               ) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A 64-hidden-64-10 ReLU MLP trained on scikit-learn's digits, and its held-out test images.

    The images (8 x 8 pixels scaled to [0, 1], flattened) are split 70/30 with ``random_state=0``;
    the network is trained by full-batch Adam (lr 1e-2) on cross-entropy from a seeded initialisation
    drawn without touching the global generator. A real trained model with pixels on the bounds of
    ``Box(0, 1)``, small enough for exact checks (needs scikit-learn).

    Returns
    -------
    model : torch.nn.Module
        In eval mode, parameters without gradients.
    x_test : torch.Tensor, shape (539, 64)
    y_test : torch.Tensor, shape (539,)
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0)
    dev = torch.device("cpu") if device is None else torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))
    net = net.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    xt, yt = torch.as_tensor(Xtr, device=dev), torch.as_tensor(ytr, device=dev)
    for _ in range(int(epochs)):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, torch.as_tensor(Xte, device=dev), torch.as_tensor(yte, device=dev)
