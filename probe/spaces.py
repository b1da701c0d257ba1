"""Spaces: where inputs live, how to stay there, how to measure a change.

A space is applied around a reference input ``x0`` (shape (N, ...)): ``project(x0, x)``
maps any candidate ``x`` to the nearest allowed point (idempotent), ``distance(x0, x)``
measures the change per input and ``contains(x0, x)`` checks membership.
"""

from __future__ import annotations

import torch

from .errors import ProbeError
from .norms import check_norm, lp_norm

__all__ = ["Space", "Box", "OneHot", "as_space"]


class Space:
    """Base class. ``continuous`` tells searches whether gradient steps make sense."""

    continuous: bool = True
    default_norm: str = "l2"

    def validate(self, x0: torch.Tensor) -> None:
        """Raise ``ProbeError`` if ``x0`` does not lie in the space."""

    def project(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def select(self, index: torch.Tensor) -> Space:
        """The space for the inputs ``index`` of a batch (differs only where it holds per-input settings)."""
        return self

    def distance(self, x0: torch.Tensor, x: torch.Tensor, norm: str | None = None) -> torch.Tensor:
        return lp_norm(x - x0, norm or self.default_norm)

    def contains(self, x0: torch.Tensor, x: torch.Tensor, atol: float = 1e-6) -> torch.Tensor:
        return ((self.project(x0, x) - x).flatten(1).abs() <= atol).all(1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Box(Space):
    """Continuous features with per-feature bounds and features that may not change.

    Parameters
    ----------
    lower, upper : float or torch.Tensor broadcastable to one input's shape, default -inf, inf
        Bounds every feature must stay within (e.g. 0 and 1 for pixels, the range a
        molecular descriptor can take).
    mask : bool torch.Tensor broadcastable to one input's shape, optional
        True where the feature is *immutable*: projection resets it to its value in ``x0``.
    integer : bool torch.Tensor broadcastable to one input's shape, optional
        True where the feature is integer-valued (counts). Searches stay continuous;
        ``snap`` rounds these features for reporting.
    """

    def __init__(self, lower: object = float("-inf"), upper: object = float("inf"), mask: object = None,
                 integer: object = None):
        self.lower = torch.as_tensor(lower, dtype=torch.get_default_dtype())
        self.upper = torch.as_tensor(upper, dtype=torch.get_default_dtype())
        if (self.lower > self.upper).any():
            i = int((self.lower > self.upper).flatten().nonzero()[0])
            raise ProbeError(f"Box lower bound exceeds upper bound at feature {i}")
        self.mask = None if mask is None else torch.as_tensor(mask, dtype=torch.bool)
        self.integer = None if integer is None else torch.as_tensor(integer, dtype=torch.bool)

    def _bounds(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lower.to(x), self.upper.to(x)

    def validate(self, x0: torch.Tensor) -> None:
        lo, hi = self._bounds(x0)
        try:
            bad = (x0 < lo) | (x0 > hi)
        except RuntimeError as err:
            raise ProbeError(f"Box bounds of shape {tuple(self.lower.shape)} do not fit inputs of shape "
                             f"{tuple(x0.shape)}: {err}") from None
        if bad.any():
            idx = tuple(int(i) for i in bad.nonzero()[0])
            raise ProbeError(f"input value {x0[idx].item():g} at index {idx} lies outside the Box bounds")

    def project(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self._bounds(x)
        # clamping towards bounds that contain x0 never increases |x_i - x0_i|: ball constraints stay met
        out = torch.maximum(torch.minimum(x, hi), lo)
        if self.mask is not None:
            out = torch.where(self.mask.to(x.device), x0, out)
        return out

    def snap(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Round integer-valued features to the nearest integer inside the bounds."""
        if self.integer is None:
            return x
        lo, hi = self._bounds(x)
        r = torch.maximum(torch.minimum(x.round(), hi.floor()), lo.ceil())
        return torch.where(self.integer.to(x.device), r, x)

    def __repr__(self) -> str:
        def short(t: torch.Tensor) -> str:
            return f"{t.item():g}" if t.numel() == 1 else f"tensor{tuple(t.shape)}"

        extra = "" if self.mask is None else f", mask={int(self.mask.sum())} immutable"
        return f"Box(lower={short(self.lower)}, upper={short(self.upper)}{extra})"


class OneHot(Space):
    """Categorical sequences one-hot encoded along ``axis``: DNA is (N, 4, L) with ``axis=1``.

    A position is a slice across ``axis``. Distance is the number of positions whose
    letter changed (Hamming). A position that is all zeros in ``x0`` (an unknown letter,
    such as DNA's ``N``) may be left unknown or set to any letter.

    Parameters
    ----------
    axis : int, default 1
        The category axis of the batched tensor.
    mask : bool torch.Tensor of shape (L,) or (N, L), optional
        True at positions that may not change.
    """

    continuous = False
    default_norm = "l0"

    def __init__(self, axis: int = 1, mask: object = None):
        if axis == 0:
            raise ProbeError("OneHot axis 0 is the batch axis; use the category axis (1 for (N, 4, L))")
        self.axis = axis
        self.mask = None if mask is None else torch.as_tensor(mask, dtype=torch.bool)

    def validate(self, x0: torch.Tensor) -> None:
        s = x0.sum(self.axis)
        ok = ((x0 == 0) | (x0 == 1)).all(self.axis) & ((s == 0) | (s == 1))
        if not ok.all():
            idx = tuple(int(i) for i in (~ok).nonzero()[0])
            raise ProbeError(f"input {idx[0]} is not one-hot at position {idx[1:]} (each position must be all "
                             "zeros or a single one along the category axis)")

    def changed(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Bool tensor of shape (N, positions...): where the letter differs from ``x0``."""
        return (x != x0).any(self.axis)

    def project(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        k = x.shape[self.axis]
        idx = x.argmax(self.axis)
        out = torch.nn.functional.one_hot(idx, k).movedim(-1, self.axis).to(x)
        # a position with no positive score keeps its original letter (or stays unknown)
        keep = (x <= 0).all(self.axis, keepdim=True) | (x == x0).all(self.axis, keepdim=True)
        if self.mask is not None:
            keep = keep | self._position_mask(x)
        return torch.where(keep, x0, out)

    def select(self, index: torch.Tensor) -> OneHot:
        """Keep the rows of a per-input mask of shape (N, positions...) that belong to ``index``."""
        if self.mask is None or self.mask.dim() < 2:
            return self
        return OneHot(axis=self.axis, mask=self.mask[index.to(self.mask.device)])

    def _position_mask(self, x: torch.Tensor) -> torch.Tensor:
        positions = x.shape[: self.axis] + x.shape[self.axis + 1 :]
        try:
            return self.mask.to(x.device).expand(positions).unsqueeze(self.axis)
        except RuntimeError:
            raise ProbeError(f"OneHot mask of shape {tuple(self.mask.shape)} does not fit positions of shape "
                             f"{tuple(positions)}") from None

    def distance(self, x0: torch.Tensor, x: torch.Tensor, norm: str | None = None) -> torch.Tensor:
        return self.changed(x0, x).flatten(1).sum(1).to(x.dtype)

    def __repr__(self) -> str:
        return f"OneHot(axis={self.axis}{'' if self.mask is None else ', masked'})"


def as_space(space: Space | None) -> Space:
    """``None`` means the unconstrained continuous space."""
    if space is None:
        return Box()
    if not isinstance(space, Space):
        raise ProbeError(f"space must be a probe Space (Box, OneHot, ...), got {type(space).__name__}")
    return space


def check_distance_norm(space: Space, norm: str | None) -> str:
    """Norm in which distances are reported for ``space``."""
    if not space.continuous:
        return space.default_norm
    return check_norm(norm or space.default_norm)
