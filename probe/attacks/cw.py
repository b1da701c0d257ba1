"""Carlini-Wagner L2 attack (Carlini & Wagner, IEEE S&P 2017)."""

from __future__ import annotations

import torch

from ..criteria import Criterion
from ..errors import ProbeError
from ..norms import lp_norm
from ..spaces import Box, Space
from .base import Attack, Forward
from .deepfool import free_features

__all__ = ["CarliniWagner"]


class CarliniWagner(Attack):
    r"""Carlini-Wagner L2: penalised minimal-norm search with a binary search over the penalty.

    Minimises, with Adam over :math:`w`,

    .. math:: \lVert x'(w) - x \rVert_2^2 + c \cdot \max(-L(x'(w)), -\kappa),

    where :math:`L` is the criterion's margin loss (for misclassification :math:`\max_{j\ne y}
    z_j - z_y`, so the hinge is CW's :math:`f_6`) and :math:`x'(w) = l + (u - l)(\tanh w + 1)/2`
    inside a finite ``Box`` (the change of variables that keeps the box without clipping), else
    :math:`x'(w) = w`. A binary search over :math:`c` per input keeps the smallest successful
    point (Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks", IEEE S&P 2017).

    Parameters
    ----------
    c : float, default 1.0
        Initial penalty constant.
    binary_search_steps : int, default 9
    steps : int, default 100
        Adam steps per penalty constant (the paper uses up to 10,000).
    lr : float, default 0.01
    kappa : float, default 0.0
        Confidence: the margin the loss must exceed before the penalty stops pulling.
    abort_early : bool, default False
        Per input, stop a constant's run when the objective has not fallen by 0.01 % over the last
        ``steps // 10`` steps (the paper's check; off by default because with few steps it stops
        runs that would still have come closer).
    """

    name = "cw"
    minimal = True
    norm = "l2"

    def __init__(self, *, c: float = 1.0, binary_search_steps: int = 9, steps: int = 100, lr: float = 0.01,
                 kappa: float = 0.0, abort_early: bool = False):
        self.c = c
        self.binary_search_steps = binary_search_steps
        self.steps = steps
        self.lr = lr
        self.kappa = kappa
        self.abort_early = abort_early

    def validate(self) -> None:
        if not self.c > 0 or not self.lr > 0 or not self.kappa >= 0:
            raise ProbeError(f"CarliniWagner needs c > 0, lr > 0 and kappa >= 0, got c={self.c}, lr={self.lr}, "
                             f"kappa={self.kappa}")
        if int(self.steps) < 1 or int(self.binary_search_steps) < 1:
            raise ProbeError("CarliniWagner needs steps >= 1 and binary_search_steps >= 1")

    def run(self, f: Forward, x: torch.Tensor, criterion: Criterion, reference: torch.Tensor,
            space: Space) -> torch.Tensor:
        n = len(x)
        free = free_features(space, x)
        tanh_box = isinstance(space, Box) and bool(torch.isfinite(space.lower).all()
                                                   and torch.isfinite(space.upper).all())
        if tanh_box:
            lo, hi = space.bounds_like(x)
            width = (hi - lo).clamp(min=1e-12)

            def to_x(w: torch.Tensor) -> torch.Tensor:
                return lo + (hi - lo) * (torch.tanh(w) + 1) / 2

            u = ((x - lo) / width * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6)
            w0 = torch.atanh(u)
        else:

            def to_x(w: torch.Tensor) -> torch.Tensor:
                return w

            w0 = x.clone()

        def point(w: torch.Tensor) -> torch.Tensor:
            xp = to_x(w)
            if free is not None:  # immutable features stay at x (differentiably)
                xp = x + (xp - x) * free
            return space.project(x, xp) if not tanh_box else xp

        c = torch.full((n,), float(self.c), dtype=x.dtype, device=x.device)
        c_lo = torch.zeros_like(c)
        c_hi = torch.full_like(c, float("inf"))
        best = x.clone()
        best_d = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
        patience = max(1, int(self.steps) // 10)
        for _ in range(int(self.binary_search_steps)):
            w = w0.clone().requires_grad_(True)
            opt = torch.optim.Adam([w], lr=self.lr)
            success_here = torch.zeros(n, dtype=torch.bool, device=x.device)
            # early stopping per input (frozen inputs keep their point), so results do not depend on batching
            prev = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
            frozen = torch.zeros(n, dtype=torch.bool, device=x.device)
            for step in range(int(self.steps)):
                with torch.enable_grad():
                    xp = point(w)
                    out = f(xp)
                    loss = criterion.loss(out, reference)
                    d2 = lp_norm(xp - x, "l2") ** 2
                    obj = d2 + c * torch.clamp(-loss, min=-float(self.kappa))
                    opt.zero_grad()
                    obj.sum().backward()
                with torch.no_grad():
                    ok = criterion.satisfied(out.detach(), reference) & (loss.detach() >= self.kappa)
                    d = d2.detach().sqrt()
                    better = ok & (d < best_d)
                    best[better] = xp.detach()[better]
                    best_d = torch.where(better, d, best_d)
                    success_here |= ok
                    saved = w.detach().clone()
                opt.step()
                with torch.no_grad():
                    w[frozen] = saved[frozen]
                    # Carlini & Wagner's check: every steps/10 iterations, stop where the objective
                    # has not fallen by 0.01 % since the last check
                    if self.abort_early and step % patience == 0:
                        value = obj.detach()
                        frozen |= value > prev * (1 - 1e-4)
                        prev = value
                        if frozen.all():
                            break
            # binary search on c: smaller where it succeeded, larger (x10 until bracketed) where not
            c_hi = torch.where(success_here, torch.minimum(c_hi, c), c_hi)
            c_lo = torch.where(success_here, c_lo, torch.maximum(c_lo, c))
            c = torch.where(torch.isfinite(c_hi), (c_lo + c_hi) / 2, c * 10)
        never = ~torch.isfinite(best_d)
        if never.any():
            best[never] = point(w.detach())[never]
        return best
