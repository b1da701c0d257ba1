"""Model adapters: everything else in ``probe`` calls a model through these.

A model is a ``torch.nn.Module`` or any callable mapping a tensor of shape
(N, ...) to a tensor of shape (N, ...) (or (N,)).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .errors import ProbeError

__all__ = ["forward", "has_gradient", "QueryCounter"]


def has_gradient(model: object) -> bool:
    """Whether gradients of the model's outputs with respect to its inputs can be taken.

    True for ``torch.nn.Module`` and plain callables (assumed to be torch code); a
    wrapper may declare ``differentiable = False`` to route searches to gradient-free
    methods.
    """
    return bool(getattr(model, "differentiable", True))


def forward(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, check: bool = True) -> torch.Tensor:
    """Call ``model`` on ``x`` and check the output.

    Returns
    -------
    torch.Tensor, shape (N, K)
        Outputs; a 1-d output of shape (N,) is returned as (N, 1).

    Raises
    ------
    ProbeError
        If the model does not return a tensor with the input's batch size, or returns NaN.
    """
    out = model(x)
    if not isinstance(out, torch.Tensor):
        raise ProbeError(f"the model must return a torch.Tensor, it returned {type(out).__name__}")
    if out.dim() == 0 or out.shape[0] != x.shape[0]:
        raise ProbeError(
            f"the model returned shape {tuple(out.shape)} for {x.shape[0]} inputs; "
            "the first dimension must be the batch dimension"
        )
    if out.dim() == 1:
        out = out.unsqueeze(1)
    elif out.dim() > 2:
        out = out.flatten(1)
    if check and not torch.isfinite(out).all():
        bad = int((~torch.isfinite(out)).any(1).nonzero()[0, 0])
        raise ProbeError(f"the model returned a non-finite output for input {bad}")
    return out


class QueryCounter:
    """Wrap a model and count, per input row, how many times it was evaluated."""

    def __init__(self, model: Callable[[torch.Tensor], torch.Tensor]):
        self.model = model
        self.calls = 0
        self.rows = 0

    @property
    def differentiable(self) -> bool:
        return has_gradient(self.model)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.rows += int(x.shape[0])
        return self.model(x)
