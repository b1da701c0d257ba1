"""DeepFool (Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016): iterated linearisation of the boundary."""

from __future__ import annotations

import torch

from ..criteria import Criterion, Misclassify, Shift, as_logits
from ..errors import ProbeError
from ..norms import check_norm, lp_norm
from ..spaces import Box, Space
from .base import Attack, Forward

__all__ = ["DeepFool", "unit_dual_direction", "boundary_functions", "free_features", "movable"]


def unit_dual_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    r"""The direction ``d`` with ``||d||_p = 1`` maximising ``<grad, d>`` (which then equals ``||grad||_q``).

    L2: ``g / ||g||_2``; L-inf: ``sign(g)``; L1: ``sign(g_i) e_i`` at the largest ``|g_i|``.
    """
    norm = check_norm(norm)
    flat = grad.flatten(1)
    if norm == "l2":
        d = flat / flat.norm(dim=1, keepdim=True).clamp(min=1e-30)
    elif norm == "linf":
        d = flat.sign()
    else:
        i = flat.abs().argmax(1, keepdim=True)
        d = torch.zeros_like(flat).scatter(1, i, flat.gather(1, i).sign())
    return d.view_as(grad)


def boundary_functions(criterion: Criterion, outputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Functions ``g_k`` (N, K) whose union ``{max_k g_k > 0}`` is the criterion's success set.

    ``Misclassify``: ``g_k = z_k - z_y`` for every class (the true class is masked to ``-inf``);
    ``Shift``: ``+-(y - y_clean) - delta``; any other criterion: its own margin loss (one column).
    Linearising each ``g_k`` separately is what makes DeepFool exact on affine models.
    """
    if type(criterion) is Misclassify:
        z = as_logits(outputs)
        y = reference.long().to(z.device)
        g = z - z.gather(1, y[:, None])
        return g.scatter(1, y[:, None], float("-inf"))
    if type(criterion) is Shift:
        diff = criterion._column(outputs) - reference.to(outputs.device)
        return torch.stack([diff - criterion.delta, -diff - criterion.delta], 1)
    return criterion.loss(outputs, reference)[:, None]


def free_features(space: Space, x: torch.Tensor) -> torch.Tensor | None:
    """Float mask (broadcastable to ``x``) of the features a search may move; None when all may."""
    if isinstance(space, Box) and space.mask is not None:
        return (~space.mask.to(x.device)).to(x.dtype)
    return None


def movable(space: Space, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor | None:
    """Float mask (shape of ``x``) of the features that can move along ``grad`` inside a ``Box``; None when all can.

    A feature at its lower bound cannot follow a negative gradient component, one at its upper bound
    cannot follow a positive one. Leaving those components out of the linearisation makes the step
    the exact distance to the linearised boundary on the face of the box where ``x`` lies; with them
    in, the projection drops part of every step and the iterates only approach the boundary
    geometrically, ending on it (a tie of the top scores) instead of across it.
    """
    if not isinstance(space, Box):
        return None
    lo, hi = space.lower.to(x), space.upper.to(x)
    if not (torch.isfinite(lo).any() or torch.isfinite(hi).any()):
        return None
    blocked = ((x <= lo) & (grad < 0)) | ((x >= hi) & (grad > 0))
    return (~blocked).to(x.dtype)


class DeepFool(Attack):
    r"""Minimal-norm search by iterated linearisation of the decision boundary.

    At each step every boundary function :math:`g_k` (for misclassification
    :math:`g_k = z_k - z_y`) is linearised at the current point and the input moves to the
    nearest linearised boundary,

    .. math:: r = \frac{|g_{\hat k}|}{\lVert \nabla g_{\hat k} \rVert_q}\, d_p(\nabla g_{\hat k}),
              \qquad \hat k = \arg\min_k \frac{|g_k|}{\lVert \nabla g_k \rVert_q},

    with :math:`q` the dual norm and :math:`d_p` the unit-``p``-norm direction aligned with the
    gradient. In a ``Box`` the gradient components that would push a feature through a bound it
    already sits on are left out (:func:`movable`), so the step is the distance to the linearised
    boundary on the box's face. The accumulated step is applied with a factor ``1 + overshoot``
    (Moosavi-Dezfooli, Fawzi & Frossard, "DeepFool: a simple and accurate method to fool deep
    neural networks", CVPR 2016; the L-p form is their Eq. 11-12). On an affine model the first
    step lands exactly on the nearest boundary, so one step (plus the overshoot) is exact.

    Parameters
    ----------
    norm : {"l2", "linf", "l1"}, default "l2"
    steps : int, default 50
        Maximum number of linearisation steps (each input stops at its first success).
    overshoot : float, default 0.02
        Relative overshoot that pushes the point across the boundary.
    candidates : int or None, default 10
        Misclassification: only the ``candidates`` classes with the highest clean scores are
        linearised (as in the original implementation); None for all.
    """

    name = "deepfool"
    minimal = True

    def __init__(self, *, norm: str = "l2", steps: int = 50, overshoot: float = 0.02, candidates: int | None = 10):
        self.norm = norm
        self.steps = steps
        self.overshoot = overshoot
        self.candidates = candidates

    def validate(self) -> None:
        check_norm(self.norm)
        if int(self.steps) < 1:
            raise ProbeError(f"DeepFool needs steps >= 1, got {self.steps}")
        if not self.overshoot >= 0:
            raise ProbeError(f"DeepFool needs overshoot >= 0, got {self.overshoot}")

    def run(self, f: Forward, x: torch.Tensor, criterion: Criterion, reference: torch.Tensor,
            space: Space) -> torch.Tensor:
        norm = check_norm(self.norm)
        free = free_features(space, x)
        n = len(x)
        total = torch.zeros_like(x)
        xa = x.clone()
        best = x.clone()
        active = torch.ones(n, dtype=torch.bool, device=x.device)
        keep_cols = None
        push = 4 * torch.finfo(x.dtype).eps * max(1.0, float(x.abs().max())) if x.numel() else 0.0
        for _ in range(int(self.steps)):
            idx = active.nonzero().flatten()
            xi = xa[idx].detach().requires_grad_(True)
            with torch.enable_grad():
                out = f(xi, rows=idx)
                ok = criterion.satisfied(out.detach(), reference[idx])
                g = boundary_functions(criterion, out, reference[idx])
                if keep_cols is None and self.candidates is not None and g.shape[1] > self.candidates:
                    keep_cols = g.detach().topk(int(self.candidates), dim=1).indices
                cols = keep_cols[idx] if keep_cols is not None else None
                if cols is not None:
                    g = g.gather(1, cols)
                grads = []
                for k in range(g.shape[1]):
                    finite = torch.isfinite(g[:, k])
                    gk = torch.where(finite, g[:, k], torch.zeros_like(g[:, k]))
                    (grad,) = torch.autograd.grad(gk.sum(), xi, retain_graph=k + 1 < g.shape[1], allow_unused=True)
                    grad = torch.zeros_like(xi) if grad is None else grad
                    grad = grad if free is None else grad * free
                    can_move = movable(space, xi.detach(), grad)
                    grads.append(grad if can_move is None else grad * can_move)
            best[idx[ok]] = xa[idx[ok]]
            active[idx[ok]] = False
            if not active.any():
                break
            g = g.detach()
            stacked = torch.stack(grads, 1)                                    # (n, K, ...)
            qn = lp_norm(stacked.flatten(0, 1), _dual(norm)).view(g.shape)   # (n, K)
            dist = (-g).clamp(min=0) / qn.clamp(min=1e-30)
            dist = torch.where(torch.isfinite(g) & (qn > 0), dist, torch.full_like(dist, float("inf")))
            k = dist.argmin(1)
            step_len = dist.gather(1, k[:, None]).squeeze(1)
            stuck = ~torch.isfinite(step_len)
            direction = unit_dual_direction(stacked[torch.arange(len(idx)), k], norm)
            # a push of a few units in the last place of the inputs: a step the dtype cannot represent would
            # leave the point on the boundary (tied scores, no success) for every remaining step
            step_len = torch.where(stuck, torch.zeros_like(step_len), step_len * (1 + 1e-6) + push)
            total[idx] = total[idx] + step_len.view((-1,) + (1,) * (x.dim() - 1)) * direction
            xa[idx] = space.project(x[idx], x[idx] + (1 + self.overshoot) * total[idx]).detach()
            best[idx] = xa[idx]
            active[idx[stuck]] = False
        return best


def _dual(norm: str) -> str:
    return {"linf": "l1", "l2": "l2", "l1": "linf"}[norm]
