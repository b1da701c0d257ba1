"""Minimal budget by bisection over the budget of any fixed-budget attack."""

from __future__ import annotations

import copy

import torch

from ..criteria import Criterion
from ..errors import ProbeError
from ..spaces import Space
from .base import Attack, Forward, RunResult, check_eps, restrict_forward

__all__ = ["MarginSearch"]


class MarginSearch(Attack):
    r"""Turn a fixed-budget attack (PGD, FGSM, Square, ...) into a minimal-norm search.

    Per input, keeps a bracket :math:`[\epsilon_{lo}, \epsilon_{hi}]` where the attack failed at
    :math:`\epsilon_{lo}` (initially 0) and succeeded at :math:`\epsilon_{hi}`. The upper end is
    found by doubling from ``eps_init``; then ``steps`` bisections halve the bracket, so its
    relative width ends at :math:`2^{-\text{steps}}` of the first bracket. Returns the successful
    point found at :math:`\epsilon_{hi}`, whose distance is at most :math:`\epsilon_{hi}`. The
    true minimal distance lies below that; it lies above :math:`\epsilon_{lo}` only as far as the
    attack is strong (a failed attack is no proof). This is the budget search of Carlini &
    Wagner's and Croce & Hein's evaluations ("Reliable evaluation of adversarial robustness with
    an ensemble of diverse parameter-free attacks", ICML 2020), written once for any attack.

    Parameters
    ----------
    attack : Attack
        A fixed-budget attack with an ``eps`` attribute; copies of it are run with per-input
        budgets (the original is left untouched). Random draws of its ``presample`` are made once
        with unit budget and reused at every budget, so they do not depend on batching.
    steps : int, default 10
        Bisection steps after the bracket is found.
    eps_init : float, default 1.0
        First upper budget tried.
    max_doublings : int, default 10
        How many times the upper budget may double before an input counts as a failure.
    """

    name = "margin_search"
    minimal = True

    def __init__(self, attack: Attack, *, steps: int = 10, eps_init: float = 1.0, max_doublings: int = 10):
        self.attack = attack
        self.steps = steps
        self.eps_init = eps_init
        self.max_doublings = max_doublings

    @property
    def norm(self) -> str:  # type: ignore[override]
        return self.attack.norm

    @property
    def seed(self) -> int:  # type: ignore[override]
        return int(getattr(self.attack, "seed", 0))

    @property
    def needs_gradient(self) -> bool:  # type: ignore[override]
        return self.attack.needs_gradient

    @property
    def needs_continuous(self) -> bool:  # type: ignore[override]
        return self.attack.needs_continuous

    def _inner(self, eps: torch.Tensor) -> Attack:
        inner = copy.copy(self.attack)
        inner.eps = eps
        return inner

    def validate(self) -> None:
        if not isinstance(self.attack, Attack) or not hasattr(self.attack, "eps"):
            raise ProbeError(f"MarginSearch needs a fixed-budget probe Attack with an eps, got {self.attack!r}")
        check_eps(self.eps_init, "eps_init")
        if int(self.steps) < 1 or int(self.max_doublings) < 0:
            raise ProbeError(f"MarginSearch needs steps >= 1 and max_doublings >= 0, got steps={self.steps}, "
                             f"max_doublings={self.max_doublings}")
        self.attack.validate()

    def presample(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        unit = self._inner(torch.ones(x.shape[0], dtype=x.dtype)).presample(x, generator)
        return {f"inner_{k}": v for k, v in unit.items()}

    def _attempt(self, f: Forward, rows: torch.Tensor, x: torch.Tensor, criterion: Criterion, reference: torch.Tensor,
                 space: Space, eps: torch.Tensor, inner_kwargs: dict[str, torch.Tensor]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        f = restrict_forward(f, rows)
        kwargs = dict(inner_kwargs)
        if "eps" in kwargs:
            kwargs["eps"] = eps
        out = self._inner(eps).run(f, x, criterion, reference, space, **kwargs)
        xa = out.x_adv if isinstance(out, RunResult) else out
        xa = space.project(x, xa.detach())
        with torch.no_grad():
            ok = criterion.satisfied(f(xa), reference)
        return xa, ok

    def run(self, f: Forward, x: torch.Tensor, criterion: Criterion, reference: torch.Tensor, space: Space,
            **presampled: torch.Tensor) -> torch.Tensor:
        inner = {k[len("inner_"):]: v for k, v in presampled.items()}
        n = len(x)
        lo = torch.zeros(n, dtype=x.dtype, device=x.device)
        hi = torch.full((n,), float(self.eps_init), dtype=x.dtype, device=x.device)
        best = x.clone()
        found = torch.zeros(n, dtype=torch.bool, device=x.device)
        for _ in range(int(self.max_doublings) + 1):
            todo = (~found).nonzero().flatten()
            xa, ok = self._attempt(f, todo, x[todo], criterion, reference[todo], space, hi[todo],
                                   {k: v[todo] for k, v in inner.items()})
            best[todo[ok]] = xa[ok]
            found[todo[ok]] = True
            lo[todo[~ok]] = hi[todo[~ok]]
            hi[todo[~ok]] = hi[todo[~ok]] * 2
            if found.all():
                break
        idx = found.nonzero().flatten()
        for _ in range(int(self.steps)):
            if len(idx) == 0:
                break
            mid = (lo[idx] + hi[idx]) / 2
            xa, ok = self._attempt(f, idx, x[idx], criterion, reference[idx], space, mid,
                                   {k: v[idx] for k, v in inner.items()})
            best[idx[ok]] = xa[ok]
            hi[idx[ok]] = mid[ok]
            lo[idx[~ok]] = mid[~ok]
        return best
