"""Fast minimum-norm attack (Pintor, Roli, Brendel & Biggio, NeurIPS 2021)."""

from __future__ import annotations

import math

import torch

from ..criteria import Criterion
from ..errors import ProbeError
from ..norms import check_norm, dual, lp_norm, project_ball
from ..spaces import Space
from .base import Attack, Forward, loss_and_grad
from .deepfool import free_features, movable

__all__ = ["FMN"]


def _cosine(start: float, end: float, k: int, steps: int) -> float:
    """Cosine annealing from ``start`` (k = 0) to ``end`` (k = steps)."""
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * k / steps))


class FMN(Attack):
    r"""Fast minimum-norm search with an adaptive norm constraint.

    Keeps a perturbation :math:`\delta` inside a ball of radius :math:`\epsilon_k` and adapts the
    radius: while no success is known, :math:`\epsilon_k = \lVert\delta\rVert_p + |L| /
    \lVert\nabla L\rVert_q` (a first-order estimate of the distance to the boundary); once the
    criterion holds, :math:`\epsilon_k = \min(\epsilon_{k-1}(1-\gamma_k), \lVert\delta^*\rVert_p)`;
    after a success is known but the current point fails, :math:`\epsilon_k =
    \epsilon_{k-1}(1+\gamma_k)`. (Here the first-order estimate is multiplied by :math:`1+\gamma_k`
    so that, where it is exact, the point crosses the boundary instead of landing on it.)
    Then :math:`\delta \leftarrow \Pi_{\epsilon_k}(\delta + \alpha_k
    \nabla L / \lVert\nabla L\rVert_2)` and the point is projected into the space. ``L`` is the
    criterion's margin loss (positive on success); :math:`\gamma_k` and :math:`\alpha_k` decay by
    cosine annealing. Returns the smallest successful perturbation :math:`\delta^*` (Pintor, Roli,
    Brendel & Biggio, "Fast Minimum-norm Adversarial Attacks through Adaptive Norm Constraints",
    NeurIPS 2021, Algorithm 1).

    Parameters
    ----------
    norm : {"l2", "linf", "l1"}, default "l2"
    steps : int, default 100
    gamma : float, default 0.05
        Initial relative change of the radius :math:`\gamma_0`; decays to ``gamma_final``.
    gamma_final : float, default 0.001
    step_size : float, optional
        Initial step :math:`\alpha_0` (L2 length of the gradient step), decaying to
        ``step_size / 100``. Default: 1.0, the paper's value for inputs on a unit scale; the
        attack is scale-aware only through ``step_size``, so set it to about the input range.
    """

    name = "fmn"
    minimal = True

    def __init__(self, *, norm: str = "l2", steps: int = 100, gamma: float = 0.05, gamma_final: float = 0.001,
                 step_size: float | None = None):
        self.norm = norm
        self.steps = steps
        self.gamma = gamma
        self.gamma_final = gamma_final
        self.step_size = step_size

    def validate(self) -> None:
        check_norm(self.norm)
        if int(self.steps) < 1:
            raise ProbeError(f"FMN needs steps >= 1, got {self.steps}")
        if not 0 < self.gamma < 1 or not 0 <= self.gamma_final <= self.gamma:
            raise ProbeError(f"FMN needs 0 <= gamma_final <= gamma < 1, got gamma={self.gamma}, "
                             f"gamma_final={self.gamma_final}")
        if self.step_size is not None and not self.step_size > 0:
            raise ProbeError(f"FMN step_size must be positive, got {self.step_size}")

    def run(self, f: Forward, x: torch.Tensor, criterion: Criterion, reference: torch.Tensor,
            space: Space, start: torch.Tensor | None = None) -> torch.Tensor:
        r"""Search on one batch.

        ``start`` (shape of ``x``, optional; a presampled per-input tensor) is where the search begins
        instead of ``x`` itself, with :math:`\epsilon_0 = \lVert start - x\rVert_p`: from a success
        of another search the radius only shrinks from there, from a failed point near the boundary
        the first-order estimate takes over.
        """
        norm = check_norm(self.norm)
        q = dual(norm)
        free = free_features(space, x)
        shape = (-1,) + (1,) * (x.dim() - 1)
        n, steps = len(x), int(self.steps)
        alpha0 = 1.0 if self.step_size is None else float(self.step_size)
        if start is None:
            delta = torch.zeros_like(x)
        else:
            delta = space.project(x, start.to(x)) - x
            if free is not None:
                delta = delta * free
        eps = lp_norm(delta, norm)
        best = x.clone()
        best_norm = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
        for k in range(steps):
            loss, grad, out = loss_and_grad(f, x + delta, criterion, reference)
            if free is not None:
                grad = grad * free
            # gradient components that push a feature through a bound it sits on are lost to the projection;
            # leaving them out keeps the first-order distance estimate and the step honest inside a Box
            can_move = movable(space, x + delta, grad)
            if can_move is not None:
                grad = grad * can_move
            ok = criterion.satisfied(out, reference)
            dn = lp_norm(delta, norm)
            improved = ok & (dn < best_norm)
            best[improved] = (x + delta)[improved]
            best_norm = torch.where(improved, dn, best_norm)
            found = torch.isfinite(best_norm)
            gamma = _cosine(self.gamma, self.gamma_final, k, steps)
            to_boundary = (-loss).clamp(min=0) / lp_norm(grad, q).clamp(min=1e-12)
            # the first-order estimate is inflated by (1 + gamma): where it is exact (an affine model) the
            # point would otherwise land on the boundary itself, where the criterion does not yet hold
            eps = torch.where(ok, torch.minimum(eps * (1 - gamma), best_norm),
                              torch.where(found, eps * (1 + gamma), (dn + to_boundary) * (1 + gamma)))
            alpha = _cosine(alpha0, alpha0 / 100, k, steps)
            g2 = lp_norm(grad, "l2").clamp(min=1e-12).view(shape)
            delta = project_ball(delta + alpha * grad / g2, eps, norm)
            delta = space.project(x, x + delta) - x
        # the last iterate is scored too
        with torch.no_grad():
            out = f(x + delta)
        ok = criterion.satisfied(out, reference)
        dn = lp_norm(delta, norm)
        improved = ok & (dn < best_norm)
        best[improved] = (x + delta)[improved]
        never = ~torch.isfinite(best_norm) & ~improved
        best[never] = (x + delta)[never]
        return best
