"""A small property model on molecular features, for the shipped examples and tests."""

from __future__ import annotations

import numpy as np
import torch

from probe.errors import ProbeError

__all__ = ["MLP", "fit_mlp"]


class MLP(torch.nn.Module):
    """Feed-forward regressor ``F -> hidden -> hidden -> 1`` with ReLU."""

    def __init__(self, n_features: int, hidden: int = 64):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(n_features, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def fit_mlp(X: torch.Tensor, y: object, *, hidden: int = 64, epochs: int = 200, lr: float = 3e-3,
            weight_decay: float = 1e-4, batch_size: int = 128, seed: int = 0,
            device: str | torch.device | None = None) -> MLP:
    """Train an :class:`MLP` by Adam on squared error (mini-batches, seeded, deterministic on CPU).

    Parameters
    ----------
    X : torch.Tensor, shape (N, F)
        Features (model units).
    y : array-like, shape (N,)
        Targets.
    """
    y = torch.as_tensor(np.asarray(y, dtype=np.float32)).reshape(-1)
    if len(y) != len(X):
        raise ProbeError(f"{len(y)} targets for {len(X)} feature rows")
    dev = torch.device(device) if device is not None else X.device
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = MLP(X.shape[1], hidden).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    Xd, yd = X.to(dev), y.to(dev)
    for _ in range(int(epochs)):
        perm = torch.randperm(len(Xd), generator=g).to(dev)
        for s in range(0, len(Xd), batch_size):
            b = perm[s:s + batch_size]
            opt.zero_grad()
            loss = ((model(Xd[b])[:, 0] - yd[b]) ** 2).mean()
            loss.backward()
            opt.step()
    return model.eval()
