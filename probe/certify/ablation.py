r"""Randomized ablation: a certified Hamming radius from classifying sequences seen through a few positions.

Levine & Feizi, "Robustness Certificates for Sparse Adversarial Attacks by Randomized Ablation",
AAAI 2020. The base classifier sees k positions of the P mutable ones, chosen uniformly without
replacement; every other position is ablated (a one-hot column of zeros, the encoding of an unknown
symbol such as DNA's ``N``). Two sequences that differ in r positions give the same distribution
of ablated inputs whenever none of the r positions is kept, which happens with probability
:math:`\binom{P - r}{k} / \binom{P}{k}`. So with

.. math:: \Delta_r = 1 - \binom{P - r}{k} \Big/ \binom{P}{k},

:math:`p_c(\bar x) \ge p_c(x) - \Delta_r`, and the smoothed prediction is certified within r
substitutions when :math:`\underline{p_A} - \Delta_r > 1/2`. :math:`\Delta_r` is computed exactly
with integer binomials. Unlike substitution smoothing the certificate also covers an unknown
position made known, and it depends on P.
"""

from __future__ import annotations

import math
from fractions import Fraction
from math import comb

import torch

from ..errors import ProbeError
from ..spaces import OneHot, Space
from .hamming import SymbolEncoding
from .substitution import DiscreteSmoothing, exact_fraction

__all__ = ["ablation_threshold", "ablation_radius", "RandomizedAblation"]


def _delta(r: int, positions: int, kept: int) -> Fraction:
    return 1 - Fraction(comb(positions - r, kept), comb(positions, kept))


def _check(kept: object, positions: object) -> tuple[int, int]:
    k, p = int(kept), int(positions)
    if k != kept or p != positions or not 1 <= k <= p:
        raise ProbeError(f"need whole numbers 1 <= kept <= positions, got kept={kept!r}, positions={positions!r}")
    return k, p


def ablation_threshold(radius: int, *, kept: int, positions: int) -> float:
    r"""Smallest lower bound on :math:`p_A` that certifies ``radius``: :math:`1/2 + \Delta_r` (rounded up).

    Parameters
    ----------
    radius : int
    kept : int
        Positions the base classifier sees, k.
    positions : int
        Mutable positions P.

    Examples
    --------
    >>> round(ablation_threshold(1, kept=10, positions=100), 12)
    0.6
    """
    k, p = _check(kept, positions)
    r = int(radius)
    if r < 0 or r > p:
        raise ProbeError(f"radius must lie in [0, positions = {p}], got {radius!r}")
    t = Fraction(1, 2) + _delta(r, p, k)
    f = float(t)
    return f if Fraction(f) >= t else math.nextafter(f, 2.0)


def ablation_radius(p_lower: object, *, kept: int, positions: int) -> int:
    r"""Largest r with :math:`\underline{p_A} - \Delta_r > 1/2` (0 where none, also where p_lower <= 1/2).

    Examples
    --------
    >>> ablation_radius(0.95, kept=10, positions=100)
    5
    """
    k, p = _check(kept, positions)
    q = exact_fraction(p_lower, "p_lower", decimal=False)
    r = 0
    while r < p and q - _delta(r + 1, p, k) > Fraction(1, 2):
        r += 1
    return r


class RandomizedAblation(DiscreteSmoothing):
    r"""A randomly ablated classifier with a certified Hamming radius (Levine & Feizi, AAAI 2020).

    Parameters
    ----------
    model : torch.nn.Module or callable
        Base classifier on one-hot inputs in which an all-zero column means "not seen"; it should
        be trained on ablated inputs (:func:`probe.train.substitution_noise` with ``ablate=``).
    kept : int
        Positions kept per sample, k (at most the number of mutable positions).
    space : OneHot, default OneHot()
        Masked positions are always kept and may not change.
    n0, n, alpha, batch_size, device, seed, fast, early_stop
        As in :class:`~probe.certify.SubstitutionSmoothing`.
    """

    method = "ablation"

    def __init__(self, model: object, *, kept: int, space: Space | None = None, n0: int = 100, n: int = 100_000,
                 alpha: float = 0.001, batch_size: int = 10_000, device: str | torch.device | None = None,
                 seed: int = 0, fast: bool = True, early_stop: bool = False):
        super().__init__(model, space=space, n0=n0, n=n, alpha=alpha, batch_size=batch_size, device=device,
                         seed=seed, fast=fast, early_stop=early_stop)
        self.kept = kept

    def __repr__(self) -> str:
        return f"RandomizedAblation(kept={self.kept!r}, n0={self.n0}, n={self.n}, alpha={self.alpha})"

    def _prepare(self, x: object) -> tuple:
        dev, x, enc, codes, mutable = super()._prepare(x)
        # an unknown position may be made known: it is ablatable like any other
        mutable = enc.mutable(OneHot() if self.space is None else self.space, x)
        free = int(mutable.sum(1).min())
        if int(self.kept) > free:
            raise ProbeError(f"kept = {self.kept} exceeds the {free} mutable positions of an input")
        return dev, x, enc, codes, mutable

    def _validate(self, enc: SymbolEncoding) -> None:
        if enc.kind != "onehot":
            raise ProbeError("randomized ablation needs a OneHot space (an all-zero column marks an ablated "
                             "position); bit vectors have no such symbol")
        if int(self.kept) != self.kept or int(self.kept) < 1:
            raise ProbeError(f"kept must be a positive whole number, got {self.kept!r}")

    def _noise(self, codes: torch.Tensor, mutable: torch.Tensor, enc: SymbolEncoding,
               generator: torch.Generator) -> torch.Tensor:
        k = int(self.kept)
        # k positions uniformly without replacement among the mutable ones: the k smallest of i.i.d. uniforms
        u = torch.rand(codes.shape, generator=generator, device=codes.device).masked_fill_(~mutable, 2.0)
        keep = torch.zeros_like(mutable)
        keep.scatter_(1, u.topk(k, dim=1, largest=False).indices, True)
        return torch.where(keep | ~mutable, codes, torch.full_like(codes, -1))

    def _radius(self, p_lower: float, positions: int, enc: SymbolEncoding) -> int:
        return ablation_radius(p_lower, kept=int(self.kept), positions=positions)
