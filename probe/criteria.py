"""Criteria: what counts as "the model changed its mind", and the loss that drives a search there.

Every criterion works on model outputs of shape (N, K) (a model returning (N,) is
seen as (N, 1)). ``prepare(clean_outputs)`` turns the outputs on the unperturbed
inputs into a per-input *reference* (labels, clean values) whose first dimension
is N, so that any batch of inputs can be scored with the matching rows of the
reference. ``loss(outputs, reference)`` is larger the closer an input is to
success and is positive exactly where ``satisfied`` holds (a margin), which lets
minimal-norm searches use it as a signed distance to the decision boundary.
"""

from __future__ import annotations

import torch

from .errors import ProbeError

__all__ = ["Criterion", "Misclassify", "TargetClass", "Threshold", "Shift", "as_logits"]


def as_logits(outputs: torch.Tensor) -> torch.Tensor:
    """Class scores (N, C); a single output column is a binary logit, seen as [0, z]."""
    if outputs.dim() == 1:
        outputs = outputs.unsqueeze(1)
    if outputs.shape[1] == 1:
        return torch.cat([torch.zeros_like(outputs), outputs], dim=1)
    return outputs


def _labels(labels: object, n: int, n_classes: int, name: str) -> torch.Tensor:
    t = torch.as_tensor(labels)
    if t.dim() == 0:
        t = t.expand(n)
    t = t.reshape(-1).long()
    if t.shape[0] != n:
        raise ProbeError(f"{name} has {t.shape[0]} entries for {n} inputs")
    bad = ((t < 0) | (t >= n_classes)).nonzero()
    if len(bad):
        i = int(bad[0])
        raise ProbeError(f"{name}[{i}] = {int(t[i])} is not a class index of a model with {n_classes} classes")
    return t


class Criterion:
    """Base class of criteria. Subclasses implement ``prepare``, ``loss`` and ``satisfied``."""

    def prepare(self, clean_outputs: torch.Tensor) -> torch.Tensor:
        """Per-input reference (first dimension N) computed from the clean outputs."""
        return clean_outputs.detach()

    def loss(self, outputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def satisfied(self, outputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class Misclassify(Criterion):
    """The predicted class (argmax) leaves ``labels``.

    Parameters
    ----------
    labels : int or array-like of shape (N,), optional
        True classes; default the model's own prediction on the clean input.

    Notes
    -----
    ``loss = max_{j != y} z_j - z_y`` (the Carlini-Wagner margin), positive exactly when
    some other class scores higher than ``y``.
    """

    def __init__(self, labels: object = None):
        self.labels = labels

    def prepare(self, clean_outputs: torch.Tensor) -> torch.Tensor:
        z = as_logits(clean_outputs)
        if self.labels is None:
            return z.argmax(1)
        return _labels(self.labels, z.shape[0], z.shape[1], "labels").to(z.device)

    def loss(self, outputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        z = as_logits(outputs)
        y = reference.long().to(z.device)
        zy = z.gather(1, y[:, None]).squeeze(1)
        other = z.scatter(1, y[:, None], float("-inf")).amax(1)
        return other - zy

    def satisfied(self, outputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return self.loss(outputs, reference) > 0


class TargetClass(Criterion):
    """The predicted class (argmax) becomes ``labels``.

    ``loss = z_t - max_{j != t} z_j``, positive exactly when ``t`` wins outright.
    """

    def __init__(self, labels: object):
        if labels is None:
            raise ProbeError("TargetClass needs target labels")
        self.labels = labels

    def prepare(self, clean_outputs: torch.Tensor) -> torch.Tensor:
        z = as_logits(clean_outputs)
        return _labels(self.labels, z.shape[0], z.shape[1], "target labels").to(z.device)

    def loss(self, outputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        z = as_logits(outputs)
        t = reference.long().to(z.device)
        zt = z.gather(1, t[:, None]).squeeze(1)
        other = z.scatter(1, t[:, None], float("-inf")).amax(1)
        return zt - other

    def satisfied(self, outputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return self.loss(outputs, reference) > 0


class _OutputCriterion(Criterion):
    def __init__(self, output: int):
        self.output = int(output)

    def _column(self, outputs: torch.Tensor) -> torch.Tensor:
        if outputs.dim() == 1:
            outputs = outputs.unsqueeze(1)
        if not -outputs.shape[1] <= self.output < outputs.shape[1]:
            raise ProbeError(f"output index {self.output} is out of range for a model with {outputs.shape[1]} outputs")
        return outputs[:, self.output]


class Threshold(_OutputCriterion):
    """A regression output crosses ``value``.

    Parameters
    ----------
    value : float
        The threshold (e.g. pIC50 6, R_t 1).
    output : int, default 0
        Which output column.
    direction : {"down", "up"}, default "down"
        ``"down"``: success when the output falls strictly below ``value``
        (``loss = value - y``); ``"up"``: strictly above (``loss = y - value``).
    """

    def __init__(self, value: float, output: int = 0, direction: str = "down"):
        super().__init__(output)
        if direction not in ("down", "up"):
            raise ProbeError(f"direction must be 'down' or 'up', got {direction!r}")
        self.value = float(value)
        self.direction = direction

    def loss(self, outputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        y = self._column(outputs)
        return self.value - y if self.direction == "down" else y - self.value

    def satisfied(self, outputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return self.loss(outputs, reference) > 0


class Shift(_OutputCriterion):
    """An output moves by at least ``delta`` (either way) from its clean value.

    ``loss = |y - y_clean| - delta``; satisfied when ``loss >= 0``.
    """

    def __init__(self, delta: float, output: int = 0):
        super().__init__(output)
        if not delta > 0:
            raise ProbeError(f"Shift needs delta > 0, got {delta}")
        self.delta = float(delta)

    def prepare(self, clean_outputs: torch.Tensor) -> torch.Tensor:
        return self._column(clean_outputs).detach()

    def loss(self, outputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return (self._column(outputs) - reference.to(outputs.device)).abs() - self.delta

    def satisfied(self, outputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return self.loss(outputs, reference) >= 0
