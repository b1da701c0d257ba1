"""Projected gradient descent (Madry et al., 2018) in L-inf, L2 and L1 balls."""

from __future__ import annotations

import torch

from ..criteria import Criterion, Misclassify, TargetClass, as_logits
from ..errors import ProbeError
from ..norms import check_norm, project_ball, sample_ball, steepest_direction
from ..spaces import Space
from .base import Attack, Forward, check_eps, loss_and_grad

__all__ = ["PGD", "CrossEntropySurrogate"]


class CrossEntropySurrogate(Criterion):
    """A classification criterion whose search loss is cross-entropy (Madry et al.'s surrogate).

    ``Misclassify``: ``loss = CE(z, y)``; ``TargetClass``: ``loss = -CE(z, t)``. ``satisfied`` is the
    wrapped criterion's.
    """

    def __init__(self, criterion: Criterion):
        if not isinstance(criterion, (Misclassify, TargetClass)):
            raise ProbeError(f"loss='ce' needs a Misclassify or TargetClass criterion, got {criterion!r}")
        self.criterion = criterion

    def prepare(self, clean_outputs: torch.Tensor) -> torch.Tensor:
        return self.criterion.prepare(clean_outputs)

    def loss(self, outputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        ce = torch.nn.functional.cross_entropy(as_logits(outputs), reference.long(), reduction="none")
        return ce if isinstance(self.criterion, Misclassify) else -ce

    def satisfied(self, outputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return self.criterion.satisfied(outputs, reference)


class PGD(Attack):
    r"""Fixed-budget projected gradient ascent on the criterion's margin loss.

    Iterates :math:`x_{t+1} = \Pi_{B_p(x_0, \epsilon) \cap S}(x_t + \alpha\, d_p(\nabla_x L(x_t)))`
    where :math:`d_p` is the steepest-ascent direction of the norm (``sign`` for L-inf,
    the normalised gradient for L2, the sparse L1 direction of Tramer & Boneh 2019 for
    L1) and :math:`\Pi` projects onto the ball, then into the space ``S``. Keeps, per
    input, the first point that satisfies the criterion, else the point of highest
    loss over all steps and restarts (Madry et al., "Towards Deep Learning Models
    Resistant to Adversarial Attacks", ICLR 2018).

    Parameters
    ----------
    eps : float or torch.Tensor of shape (N,)
        Budget: radius of the ball (one per input if a tensor).
    norm : {"linf", "l2", "l1"}, default "linf"
    steps : int, default 10
    step_size : float, optional
        Default ``2.5 * eps / steps`` (Madry et al.).
    restarts : int, default 1
        Independent runs; the first uses the random start too if ``random_start``.
    random_start : bool, default True
        Start uniformly inside the ball.
    sparsity : float, default 0.99
        L1 only: quantile of |gradient| above which coordinates move.
    seed : int, default 0
        Seed of the random starts.
    loss : {"margin", "ce"}, default "margin"
        Surrogate to ascend: the criterion's margin loss, or cross-entropy (``Misclassify`` and
        ``TargetClass`` only), the loss of Madry et al.
    """

    name = "pgd"

    def __init__(self, *, eps: float | torch.Tensor, norm: str = "linf", steps: int = 10,
                 step_size: float | None = None, restarts: int = 1, random_start: bool = True,
                 sparsity: float = 0.99, seed: int = 0, loss: str = "margin"):
        self.eps = eps
        self.norm = norm
        self.steps = steps
        self.step_size = step_size
        self.restarts = restarts
        self.random_start = random_start
        self.sparsity = sparsity
        self.seed = seed
        self.loss = loss

    def validate(self) -> None:
        check_norm(self.norm)
        if int(self.steps) < 1 or int(self.restarts) < 1:
            raise ProbeError(f"PGD needs steps >= 1 and restarts >= 1, got steps={self.steps}, "
                             f"restarts={self.restarts}")
        if self.step_size is not None:
            check_eps(self.step_size, "step_size")
        if self.loss not in ("margin", "ce"):
            raise ProbeError(f"PGD loss must be 'margin' or 'ce', got {self.loss!r}")
        check_eps(self.eps)

    def presample(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        norm, eps = check_norm(self.norm), check_eps(self.eps)
        n = x.shape[0]
        eps_vec = eps if torch.is_tensor(eps) else torch.full((n,), eps)
        if eps_vec.shape[0] != n:
            raise ProbeError(f"eps has {eps_vec.shape[0]} entries for {n} inputs")
        out = {"eps": eps_vec}
        if self.random_start:
            unit = sample_ball((n * self.restarts,) + tuple(x.shape[1:]), 1.0, norm, generator, dtype=x.dtype)
            out["noise"] = unit.view((self.restarts, n) + tuple(x.shape[1:])).transpose(0, 1)
        return out

    def run(self, f: Forward, x: torch.Tensor, criterion: Criterion, reference: torch.Tensor, space: Space,
            eps: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        norm = check_norm(self.norm)
        if self.loss == "ce":
            criterion = CrossEntropySurrogate(criterion)
        shape = (-1,) + (1,) * (x.dim() - 1)
        e = eps.to(x).view(shape)
        alpha = e * 2.5 / self.steps if self.step_size is None else torch.full_like(e, float(self.step_size))
        best = x.clone()
        best_loss = torch.full((len(x),), float("-inf"), device=x.device, dtype=x.dtype)
        found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        eps_x = eps.to(x)

        def keep(idx: torch.Tensor, xa: torch.Tensor, loss: torch.Tensor, ok: torch.Tensor) -> None:
            better = ~found[idx] & (ok | (loss > best_loss[idx]))
            rows = idx[better]
            best[rows] = xa[better]
            best_loss[rows] = loss[better]
            found[idx[ok]] = True

        for r in range(int(self.restarts)):
            start = noise[:, r] * e if noise is not None else torch.zeros_like(x)
            xa = space.project(x, x + project_ball(start, eps_x, norm))
            # each input stops at its first success: later steps only compute on the inputs still searching
            for _ in range(int(self.steps)):
                idx = (~found).nonzero().flatten()
                if len(idx) == 0:
                    return best
                xs, x0 = xa[idx], x[idx]
                loss, grad, out = loss_and_grad(f, xs, criterion, reference[idx], rows=idx)
                keep(idx, xs, loss, criterion.satisfied(out, reference[idx]))
                step = xs + alpha[idx] * steepest_direction(grad, norm, self.sparsity)
                xa[idx] = space.project(x0, x0 + project_ball(step - x0, eps_x[idx], norm))
            idx = (~found).nonzero().flatten()
            if len(idx) == 0:
                break
            with torch.no_grad():
                out = f(xa[idx], rows=idx)
            keep(idx, xa[idx], criterion.loss(out, reference[idx]), criterion.satisfied(out, reference[idx]))
            if found.all():
                break
        return best
