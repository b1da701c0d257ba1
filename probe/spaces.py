"""Spaces: where inputs live, how to stay there, how to measure a change.

A space is applied around a reference input ``x0`` (shape (N, ...)): ``project(x0, x)``
maps any candidate ``x`` to the nearest allowed point (idempotent), ``distance(x0, x)``
measures the change per input and ``contains(x0, x)`` checks membership.
"""

from __future__ import annotations

import torch

from .errors import ProbeError
from .norms import check_norm, lp_norm

__all__ = ["Space", "Box", "OneHot", "Bits", "as_space"]


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
        # float64 holds every float32 and Python float exactly, so an input on its bound stays inside
        self.lower = _as_bound(lower, "lower")
        self.upper = _as_bound(upper, "upper")
        try:
            inverted = self.lower > self.upper
        except RuntimeError:
            raise ProbeError(f"Box bounds of shapes {tuple(self.lower.shape)} and {tuple(self.upper.shape)} do not "
                             "broadcast") from None
        if inverted.any():
            i = int(inverted.flatten().nonzero()[0])
            raise ProbeError(f"Box lower bound exceeds upper bound at feature {i}")
        self.mask = None if mask is None else torch.as_tensor(mask, dtype=torch.bool)
        self.integer = None if integer is None else torch.as_tensor(integer, dtype=torch.bool)
        self._placed: dict[tuple, tuple] = {}

    def _on(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Bounds in ``x``'s dtype and mask and integer flags on its device, copied once per (device, dtype)."""
        key = (x.device, x.dtype)
        placed = self._placed.get(key)
        if placed is None:
            lo = _round_bound(self.lower, x.dtype, up=True).to(x.device)
            hi = _round_bound(self.upper, x.dtype, up=False).to(x.device)
            mask = None if self.mask is None else self.mask.to(x.device)
            integer = None if self.integer is None else self.integer.to(x.device)
            placed = self._placed[key] = (lo, hi, mask, integer)
        return placed

    def bounds_like(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower and upper bounds in the dtype and on the device of ``x`` (rounded inwards, cached)."""
        lo, hi, _, _ = self._on(x)
        return lo, hi

    def validate(self, x0: torch.Tensor) -> None:
        lo, hi = self.bounds_like(x0)
        try:
            bad = (x0 < lo) | (x0 > hi)
        except RuntimeError as err:
            raise ProbeError(f"Box bounds of shape {tuple(self.lower.shape)} do not fit inputs of shape "
                             f"{tuple(x0.shape)}: {err}") from None
        if bad.any():
            idx = tuple(int(i) for i in bad.nonzero()[0])
            raise ProbeError(f"input value {x0[idx].item():g} at index {idx} lies outside the Box bounds")

    def project(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.bounds_like(x)
        # clamping towards bounds that contain x0 never increases |x_i - x0_i|: ball constraints stay met
        out = torch.maximum(torch.minimum(x, hi), lo)
        mask = self._on(x)[2]
        if mask is not None:
            out = torch.where(mask, x0, out)
        return out

    def snap(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Round integer-valued features to the nearest integer inside the bounds."""
        if self.integer is None:
            return x
        lo, hi, _, integer = self._on(x)
        r = torch.maximum(torch.minimum(x.round(), hi.floor()), lo.ceil())
        return torch.where(integer, r, x)

    def __repr__(self) -> str:
        def short(t: torch.Tensor) -> str:
            return f"{t.item():g}" if t.numel() == 1 else f"tensor{tuple(t.shape)}"

        extra = "" if self.mask is None else f", mask={int(self.mask.sum())} immutable"
        return f"Box(lower={short(self.lower)}, upper={short(self.upper)}{extra})"


def _as_bound(value: object, name: str) -> torch.Tensor:
    try:
        # Python floats are float64: reading them as the default float32 would move the bound
        t = value.detach() if torch.is_tensor(value) else torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ProbeError(f"Box {name} bound must be a number or an array of numbers, got {value!r}") from None
    if t.is_complex():
        raise ProbeError(f"Box {name} bound must be real numbers, got dtype {t.dtype}")
    t = t.to(torch.float64)
    if t.isnan().any():
        raise ProbeError(f"Box {name} bound holds NaN at feature {int(t.isnan().flatten().nonzero()[0])}")
    return t


def _round_bound(bound: torch.Tensor, dtype: torch.dtype, *, up: bool) -> torch.Tensor:
    """``bound`` in ``dtype``, rounded inwards: the nearest representable value on the Box's side.

    Then an input of that dtype lies inside the rounded bounds exactly when it lies inside the
    exact ones, and projection never leaves the exact Box.
    """
    if dtype == torch.float64 or not dtype.is_floating_point:
        return bound
    out = bound.to(dtype)
    outside = (out.double() < bound) if up else (out.double() > bound)
    towards = torch.full_like(out, float("inf") if up else float("-inf"))
    return torch.where(outside, torch.nextafter(out, towards), out)


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


class Bits(Space):
    """Binary feature vectors (fingerprints) of shape (N, F): a change is a bit flip, distance counts flips.

    Parameters
    ----------
    mask : bool torch.Tensor of shape (F,) or (N, F), optional
        True at features that may not change; they may hold any value (descriptors beside the bits of a
        fingerprint, for instance). Every other feature must be 0 or 1.
    """

    continuous = False
    default_norm = "l0"

    def __init__(self, mask: object = None):
        self.mask = None if mask is None else torch.as_tensor(mask, dtype=torch.bool)

    def _mask(self, x: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            return torch.zeros(x.shape[1:], dtype=torch.bool, device=x.device).expand_as(x)
        try:
            return self.mask.to(x.device).expand_as(x)
        except RuntimeError:
            raise ProbeError(f"Bits mask of shape {tuple(self.mask.shape)} does not fit inputs of shape "
                             f"{tuple(x.shape)}") from None

    def validate(self, x0: torch.Tensor) -> None:
        bad = ~((x0 == 0) | (x0 == 1)) & ~self._mask(x0)
        if bad.any():
            idx = tuple(int(i) for i in bad.nonzero()[0])
            raise ProbeError(f"input {idx[0]} holds {x0[idx].item():g} at feature {idx[1:]}; Bits features are "
                             "0 or 1 (mask the features that are not bits)")

    def project(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.where(self._mask(x), x0, (x > 0.5).to(x))

    def select(self, index: torch.Tensor) -> Bits:
        if self.mask is None or self.mask.dim() < 2:
            return self
        return Bits(mask=self.mask[index.to(self.mask.device)])

    def distance(self, x0: torch.Tensor, x: torch.Tensor, norm: str | None = None) -> torch.Tensor:
        return (x != x0).flatten(1).sum(1).to(x.dtype)

    def __repr__(self) -> str:
        return f"Bits({'' if self.mask is None else 'masked'})"


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
