r"""Certified Hamming radius by bound propagation, and the code distance that caps every certified radius.

Perturbation set. Around a sequence :math:`x` of P positions over an alphabet of K symbols
(one-hot along an axis, :class:`~probe.OneHot`; or bits, :class:`~probe.Bits`) the set
:math:`S_r(x)` holds every sequence that differs from x in at most r positions. A linear function
:math:`\Lambda^\top x'` over :math:`S_r(x)` is a sum of per-position terms, so its minimum is exact:

.. math:: \min_{x' \in S_r(x)} \Lambda^\top x' = \Lambda^\top x + \sum_{\text{r smallest}} g_p,
   \qquad g_p = \min\bigl(0,\ \min_c \Lambda_{c,p} - \Lambda_{x_p,p}\bigr),

the r most negative per-position substitution gains. This is the concretization of auto_LiRPA's
synonym perturbation (Xu et al., "Automatic Perturbation Analysis for Scalable Certified Robustness
and Beyond", NeurIPS 2020), where a dynamic programme over positions picks the best at most r
substitutions; with every symbol allowed at every position the programme reduces to taking the r
largest gains. CROWN (:mod:`~probe.certify.crown`) applies it at every layer whose bounds it
tightens and at the output margins, so the certificate is a sound lower bound on the number of
substitutions that can change the prediction.

Code distance. For a data set with labels, :math:`d = \min_{y_i \ne y_j} d_H(x_i, x_j)`. Two
Hamming balls of radius r around x_i and x_j are disjoint only if :math:`2r < d`, so no
classifier certifies more than :math:`\lfloor (d - 1)/2 \rfloor` at both points (the
error-correcting-code bound: a code of distance d corrects :math:`\lfloor (d-1)/2 \rfloor` errors).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from ..criteria import _labels
from ..devices import as_input, model_hygiene, resolve_device
from ..errors import ProbeError
from ..models import forward
from ..spaces import Bits, OneHot, Space
from .base import InputSet, compute_bounds, get_bound_method
from .graph import build_graph
from .radius import _margin_spec

__all__ = ["SymbolEncoding", "symbol_encoding", "HammingSet", "hamming_radius", "CodeDistance", "code_distance"]


@dataclass(frozen=True)
class SymbolEncoding:
    """How a tensor of sequences holds symbols: one-hot along ``axis`` (K symbols) or bits (K = 2).

    Attributes
    ----------
    kind : {"onehot", "bits"}
    axis : int
        The category axis of a one-hot batch (unused for bits).
    alphabet : int
        Number of symbols K.
    shape : tuple of int
        Shape of one input.
    """

    kind: str
    axis: int
    alphabet: int
    shape: tuple

    @property
    def positions(self) -> int:
        """Number of positions P of one input."""
        if self.kind == "bits":
            return math.prod(self.shape)
        return math.prod(self.shape) // self.alphabet

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Symbol index of every position, shape (N, P), int64; -1 where a one-hot position is all zeros."""
        if self.kind == "bits":
            return x.reshape(len(x), -1).round().long()
        xk = x.movedim(self.axis, 1).reshape(len(x), self.alphabet, -1)
        return torch.where(xk.sum(1) > 0, xk.argmax(1), torch.full_like(xk[:, 0], -1, dtype=torch.long))

    def encode(self, codes: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Inverse of :meth:`codes`: (N, P) symbol indices (-1: unknown) to inputs of shape (N, *shape)."""
        n = len(codes)
        if self.kind == "bits":
            return codes.to(dtype).reshape((n,) + tuple(self.shape))
        oh = torch.nn.functional.one_hot(codes.clamp(min=0), self.alphabet).to(dtype)
        oh = oh * (codes >= 0).unsqueeze(-1).to(dtype)                   # (N, P, K)
        moved = list(self.shape)
        k = moved.pop(self.axis - 1)
        return oh.reshape([n] + moved + [k]).movedim(-1, self.axis)

    def mutable(self, space: Space, x: torch.Tensor) -> torch.Tensor:
        """Positions that may change, shape (N, P), bool (the space's mask marks those that may not)."""
        mask = getattr(space, "mask", None)
        if mask is None:
            return torch.ones(len(x), self.positions, dtype=torch.bool, device=x.device)
        mask = mask.to(x.device)
        if self.kind == "bits":
            return ~mask.expand_as(x).reshape(len(x), -1)
        pos = list(x.shape)
        pos.pop(self.axis)
        try:
            return ~mask.expand(pos).reshape(len(x), -1)
        except RuntimeError:
            raise ProbeError(f"{type(space).__name__} mask of shape {tuple(mask.shape)} does not fit positions of "
                             f"shape {tuple(pos)}") from None


def symbol_encoding(space: Space | None, x: torch.Tensor) -> SymbolEncoding:
    """The :class:`SymbolEncoding` of inputs ``x`` (N, ...) in ``space`` (``OneHot`` or ``Bits``), validated.

    Raises
    ------
    ProbeError
        If the space is neither, or ``x`` is not one-hot / binary where it may change.
    """
    space = OneHot() if space is None else space
    if isinstance(space, OneHot):
        axis = space.axis if space.axis > 0 else x.dim() + space.axis
        if not 0 < axis < x.dim():
            raise ProbeError(f"OneHot axis {space.axis} does not fit inputs of shape {tuple(x.shape)}")
        space.validate(x)
        k = int(x.shape[axis])
        if k < 2:
            raise ProbeError(f"a one-hot alphabet needs at least 2 symbols, the category axis has {k}")
        return SymbolEncoding("onehot", axis, k, tuple(x.shape[1:]))
    if isinstance(space, Bits):
        space.validate(x)
        return SymbolEncoding("bits", 1, 2, tuple(x.shape[1:]))
    raise ProbeError(f"Hamming certificates need a OneHot or Bits space, got {space!r}")


@dataclass(frozen=True)
class HammingSet(InputSet):
    """All inputs within ``radius`` substituted (mutable) positions of each centre (norm ``"hamming"``).

    ``eps`` holds the radii as floats; ``radius`` (int64, (N,)), the encoding and the mutable positions
    (N, P) define the set, ``max_radius`` is the largest radius as a Python int (no device read per call).
    """

    encoding: SymbolEncoding | None = None
    mutable: torch.Tensor | None = None
    radius: torch.Tensor | None = None
    max_radius: int = 0

    def box(self) -> tuple[torch.Tensor, torch.Tensor]:
        free = self.mutable & (self.radius > 0)[:, None]                    # (N, P)
        if self.encoding.kind == "onehot":
            free = self._positions_to_input(free)
        else:
            free = free.reshape(self.center.shape)
        return torch.where(free, torch.zeros_like(self.center), self.center), \
            torch.where(free, torch.ones_like(self.center), self.center)

    def _positions_to_input(self, per_position: torch.Tensor) -> torch.Tensor:
        enc = self.encoding
        pos = list(self.center.shape)
        pos.pop(enc.axis)
        return per_position.reshape(pos).unsqueeze(enc.axis).expand_as(self.center)

    def gains(self, A: torch.Tensor) -> torch.Tensor:
        r"""Per-position substitution gains :math:`g_p \le 0` of ``A . x`` (N, S, *shape) -> (N, S, P)."""
        n, s = A.shape[:2]
        enc = self.encoding
        if enc.kind == "bits":
            flat = A.reshape(n, s, -1)
            g = flat * (1 - 2 * self.center.reshape(n, 1, -1))
        else:
            Ak = A.movedim(enc.axis + 1, 2).reshape(n, s, enc.alphabet, -1)
            xk = self.center.movedim(enc.axis, 1).reshape(n, 1, enc.alphabet, -1)
            g = Ak.amin(2) - (Ak * xk).sum(2)                                 # 0 - min at an unknown position
        return g.clamp(max=0) * self.mutable[:, None, :].to(g)

    def concretize_lower(self, A: torch.Tensor) -> torch.Tensor:
        base = torch.einsum("nsd,nd->ns", A.flatten(2), self.center.flatten(1))
        k = min(int(self.max_radius), self.encoding.positions)
        if k <= 0:
            return base
        g = torch.topk(self.gains(A), k, dim=2, largest=False).values      # most negative first
        take = torch.arange(k, device=A.device)[None, None, :] < self.radius[:, None, None]
        return base + (g * take.to(g)).sum(2)

    def select(self, s: slice | torch.Tensor) -> HammingSet:
        r = self.radius[s]
        return HammingSet(self.center[s], "hamming", self.eps[s], encoding=self.encoding, mutable=self.mutable[s],
                          radius=r, max_radius=self.max_radius)


def hamming_set(x: torch.Tensor, radius: object, *, space: Space | None = None) -> HammingSet:
    """The :class:`HammingSet` of radius ``radius`` (a number or one per input) around ``x``."""
    enc = symbol_encoding(space, x)
    r = torch.as_tensor(radius, device=x.device)
    if r.is_floating_point() and not torch.equal(r, r.round()):
        raise ProbeError(f"a Hamming radius is a whole number of positions, got {radius!r}")
    r = r.long().expand(len(x)).clone() if r.dim() == 0 else r.long().reshape(-1)
    if len(r) != len(x) or (r < 0).any():
        raise ProbeError(f"radius must be a non-negative number or one per input ({len(x)},), got {radius!r}")
    mutable = enc.mutable(OneHot() if space is None else space, x)
    return HammingSet(x, "hamming", r.to(x.dtype), encoding=enc, mutable=mutable, radius=r,
                      max_radius=int(r.max()) if len(r) else 0)


def hamming_radius(model: torch.nn.Module, x: object, *, space: Space | None = None, method: str = "crown",
                   labels: object = None, max_radius: int | None = None, batch_size: int | None = 256,
                   device: str | torch.device | None = None, **options: object) -> torch.Tensor:
    """Certified Hamming radius by bound propagation: the largest r with every margin's lower bound positive.

    Radii r = 1, 2, ... are tried in turn for the inputs still certified (each step one bound
    computation on :class:`HammingSet`); an input keeps the last r certified. Reached through
    ``certified_radius(model, X, norm="hamming", space=..., method=...)``.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier with at least two outputs.
    x : torch.Tensor, shape (N, K, L) for ``OneHot`` (category axis as the space says) or (N, F) for ``Bits``
    space : OneHot or Bits, default OneHot()
        Its mask marks positions that may not change.
    method : {"crown", "alpha-crown", "ibp"} or a registered bound method, default "crown"
    labels : array-like of int, shape (N,), optional
        Default the model's predictions; an input predicted otherwise gets radius 0.
    max_radius : int, optional
        Largest radius tried (default: every mutable position).
    batch_size : int or None, default 256
    device : str or torch.device, optional
    **options
        Attributes of the bound method (``intermediate`` for CROWN).

    Returns
    -------
    torch.Tensor of int64, shape (N,)
        Certified radii: no sequence within that many substitutions changes the prediction
        (0 also where the clean prediction is not the label).
    """
    dev = resolve_device(device, model, x)
    x = as_input(x, device=dev)
    space = OneHot() if space is None else space
    full = hamming_set(x, 0, space=space)
    bm = copy.copy(get_bound_method(method))
    for key, value in options.items():
        if not hasattr(bm, key):
            raise ProbeError(f"unknown option {key!r} for method {method!r}")
        setattr(bm, key, value)
    cap = int(full.mutable.sum(1).max()) if len(x) else 0
    cap = cap if max_radius is None else min(cap, int(max_radius))
    with model_hygiene(model, dev) as m:
        graph = build_graph(m, x)
        with torch.no_grad():
            clean = forward(m, x)
        k = clean.shape[1]
        if k < 2:
            raise ProbeError("a certified Hamming radius needs a classifier with at least 2 outputs")
        y = clean.argmax(1) if labels is None else _labels(labels, len(x), k, "labels").to(dev)
        spec = _margin_spec(y, k).to(x.dtype)
        radius = torch.zeros(len(x), dtype=torch.long, device=dev)
        active = (clean.argmax(1) == y).nonzero().flatten()
        for r in range(1, cap + 1):
            if len(active) == 0:
                break
            sub = full.select(active)
            inputs = HammingSet(sub.center, "hamming", torch.full_like(sub.eps, r), encoding=sub.encoding,
                                mutable=sub.mutable, radius=torch.full_like(sub.radius, r), max_radius=r)
            lo, _ = compute_bounds(graph, inputs, bm, spec[active], batch_size)
            ok = (lo > 0).all(1) & (sub.mutable.sum(1) >= r)
            active = active[ok]
            radius[active] = r
    return radius


@dataclass(frozen=True)
class CodeDistance:
    """The Hamming geometry of a labelled data set.

    Attributes
    ----------
    distance : int
        Smallest Hamming distance between two differently labelled inputs (-1 if one label only).
    pair : tuple of int
        Indices of two inputs at that distance.
    nearest : torch.Tensor of int64, shape (N,)
        Per input, the distance to the nearest differently labelled input.
    """

    distance: int
    pair: tuple
    nearest: torch.Tensor

    @property
    def ceiling(self) -> int:
        r"""No classifier certifies more than :math:`\lfloor (d - 1)/2 \rfloor` at both points of the pair."""
        return (self.distance - 1) // 2

    @property
    def nearest_ceiling(self) -> torch.Tensor:
        """Per input, :math:`\\lfloor (d_i - 1)/2 \\rfloor`: the largest radius certifiable at the input and at
        its nearest differently labelled neighbour together."""
        return torch.div(self.nearest - 1, 2, rounding_mode="floor")

    def __int__(self) -> int:
        return int(self.distance)


def code_distance(X: object, y: object, *, space: Space | None = None, batch_size: int = 512) -> CodeDistance:
    r"""Smallest Hamming distance between two differently labelled inputs: the code distance of a data set.

    :math:`d = \min_{y_i \ne y_j} d_H(x_i, x_j)`; a position whose one-hot column is all zeros
    (unknown) counts as its own symbol.

    Parameters
    ----------
    X : torch.Tensor, shape (N, K, L) (``OneHot``) or (N, F) (``Bits``)
    y : array-like of int, shape (N,)
    space : OneHot or Bits, default OneHot() for inputs of three or more dimensions, else Bits()
    batch_size : int, default 512
        Rows compared at a time (memory N x batch_size x P).

    Returns
    -------
    CodeDistance
        ``distance``, ``pair``, per-input ``nearest`` and the ``ceiling`` :math:`\lfloor (d-1)/2 \rfloor`.

    Examples
    --------
    >>> X = torch.tensor([[0., 0, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1]])
    >>> code_distance(X, [0, 1, 1]).distance
    2
    """
    X = as_input(X, name="X")
    if space is None:
        space = OneHot() if X.dim() >= 3 else Bits()
    enc = symbol_encoding(space, X)
    y = torch.as_tensor(y, device=X.device).long().reshape(-1)
    if len(y) != len(X):
        raise ProbeError(f"X has {len(X)} inputs and y {len(y)} labels")
    codes = enc.codes(X)
    big = torch.iinfo(torch.long).max
    nearest = torch.full((len(X),), big, dtype=torch.long, device=X.device)
    partner = torch.full((len(X),), -1, dtype=torch.long, device=X.device)
    for s in range(0, len(X), int(batch_size)):
        block = codes[s:s + int(batch_size)]
        d = (block[:, None, :] != codes[None, :, :]).sum(2)               # (B, N)
        d = torch.where(y[s:s + len(block), None] != y[None, :], d, torch.full_like(d, big))
        best, arg = d.min(1)
        nearest[s:s + len(block)], partner[s:s + len(block)] = best, arg
    if len(X) == 0 or bool((nearest == big).all()):
        return CodeDistance(-1, (-1, -1), torch.full_like(nearest, -1))
    i = int(nearest.argmin())
    nearest = torch.where(nearest == big, torch.full_like(nearest, -1), nearest)
    return CodeDistance(int(nearest[i]), (i, int(partner[i])), nearest)
