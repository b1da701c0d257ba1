"""Calling a user's model on feature tensors: torch modules, tensor callables, scikit-learn estimators."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from probe.devices import batches, model_hygiene, resolve_device
from probe.errors import ProbeError
from probe.models import forward

__all__ = ["Predictor", "as_predictor"]


class Predictor:
    """Forward-only view of a model: ``predictor(X) -> Tensor (N, K)`` without gradients.

    Accepts a ``torch.nn.Module``, a callable on tensors, a scikit-learn estimator (its
    ``predict``; ``predict_proba`` when ``proba=True``) or a NumPy ``predict`` function
    (anything returning an ``ndarray`` gets its input as a NumPy array on the CPU).
    Counts the rows it evaluates in ``rows``.
    """

    def __init__(self, model: object, *, device: str | torch.device | None = None, batch_size: int | None = 4096,
                 proba: bool = False):
        self.model = model
        self.batch_size = batch_size
        self.rows = 0
        self.calls = 0
        self.is_torch = isinstance(model, torch.nn.Module)
        est = hasattr(model, "predict") and not self.is_torch
        if est:
            self.fn: Callable = model.predict_proba if proba else model.predict
            self.numpy = True
            self.device = torch.device("cpu")
        elif callable(model):
            self.fn = model
            self.numpy = False
            self.device = resolve_device(device, model)
        else:
            raise ProbeError(f"model must be a torch module, a callable or an estimator with predict(), "
                             f"got {type(model).__name__}")

    @property
    def differentiable(self) -> bool:
        return not self.numpy and bool(getattr(self.model, "differentiable", True))

    def _call(self, X: torch.Tensor) -> torch.Tensor:
        if self.numpy:
            out = np.asarray(self.fn(X.detach().cpu().numpy()), dtype=float)
            return forward(lambda _: torch.as_tensor(out, dtype=torch.float64), X)
        try:
            return forward(self.fn, X)
        except TypeError:
            # a NumPy predict function that rejects tensors
            self.numpy = True
            return self._call(X)

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        X = X.to(self.device)
        with model_hygiene(self.model, self.device if self.is_torch else None), torch.no_grad():
            outs = []
            for s in batches(len(X), self.batch_size):
                self.calls += 1
                self.rows += s.stop - s.start
                outs.append(self._call(X[s]))
        return torch.cat(outs)


def as_predictor(model: object, **kwargs) -> Predictor:
    return model if isinstance(model, Predictor) else Predictor(model, **kwargs)
