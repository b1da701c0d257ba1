"""A small convolutional classifier for one-hot DNA and a short training loop (for demos and tests)."""

from __future__ import annotations

import torch
from torch import nn

from probe import ProbeError

__all__ = ["small_cnn", "fit"]


def small_cnn(n_outputs: int = 3, *, channels: int = 32, kernel: int = 11, seed: int = 0) -> nn.Sequential:
    """Conv1d(4 -> channels, kernel) - ReLU - MaxPool(2) - Conv1d(channels -> channels, 5) - ReLU -
    global max pool - Linear(channels -> n_outputs).

    Global max pooling makes the model a detector of motif occurrences (as in DeepBind, Alipanahi
    et al., Nat. Biotechnol. 33:831, 2015), and the sequential convolutional trunk lets
    :func:`saturation_mutagenesis` use its receptive-field fast path.
    """
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv1d(4, channels, kernel, padding=kernel // 2), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(channels, channels, 5, padding=2), nn.ReLU(),
        nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(channels, n_outputs),
    )


def fit(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, epochs: int = 10, batch_size: int = 64,
        lr: float = 1e-2, weight_decay: float = 1e-4, seed: int = 0, reverse_complement: bool = True,
        device: str | torch.device | None = None) -> nn.Module:
    """Train a classifier with Adam on cross-entropy; returns the model in eval mode.

    With ``reverse_complement=True`` each batch is augmented with its reverse complement, so the
    model learns strand-symmetric motifs.
    """
    if len(X) != len(y):
        raise ProbeError(f"X has {len(X)} sequences and y {len(y)} labels")
    from probe.devices import resolve_device

    dev = resolve_device(device, model)
    model.to(dev).train()
    X, y = X.to(dev), torch.as_tensor(y, dtype=torch.long, device=dev)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(int(epochs)):
        perm = torch.randperm(len(X), generator=g).to(dev)
        for s in range(0, len(X), batch_size):
            idx = perm[s:s + batch_size]
            xb, yb = X[idx], y[idx]
            if reverse_complement:
                xb, yb = torch.cat([xb, xb.flip(1, 2)]), torch.cat([yb, yb])
            loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()
