"""Projected gradient descent (Madry et al., 2018) in L-inf, L2 and L1 balls."""

from __future__ import annotations

import torch

from ..criteria import Criterion, Misclassify, TargetClass, as_logits
from ..errors import ProbeError
from ..norms import check_norm, project_ball, sample_ball, steepest_direction
from ..spaces import Space
from .base import Attack, Forward, RunResult, check_eps, loss_and_grad

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

    Notes
    -----
    The step loop never waits for the device: per-input state (best point, its loss, success,
    query count) stays on it and is updated with ``torch.where``. Whether every input of a batch
    has succeeded, and which inputs still search, is read on the host once every
    ``check_every = 10`` steps and between restarts; the inputs that succeeded are then dropped
    from the batch. So a batch of ``steps`` steps and ``restarts`` restarts synchronises
    ``restarts * ceil(steps / 10) - 1`` times at most (none for the default 10 steps and one
    restart), and an input that succeeds is computed, wasted, for at most 9 more steps. Results
    do not depend on ``check_every`` or on the batching: ``queries`` counts, per input, the model
    evaluations until its first success (all ``restarts * (steps + 1)`` if it never succeeds). A
    search that wraps ``PGD.run`` and counts through the forward function (``MarginSearch``) also
    sees the evaluations of inputs that already succeeded, up to the next check.
    """

    name = "pgd"
    #: Steps between the host checks of which inputs still search (see Notes).
    check_every = 10

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
            eps: torch.Tensor, noise: torch.Tensor | None = None) -> RunResult:
        norm = check_norm(self.norm)
        if self.loss == "ce":
            criterion = CrossEntropySurrogate(criterion)
        n = len(x)
        shape = (-1,) + (1,) * (x.dim() - 1)
        e = eps.to(x).view(shape)
        alpha = e * 2.5 / self.steps if self.step_size is None else torch.full_like(e, float(self.step_size))
        eps_x = eps.to(x)
        state = _Best(x.clone(), torch.full((n,), float("-inf"), device=x.device, dtype=x.dtype),
                      torch.zeros(n, dtype=torch.bool, device=x.device),
                      torch.zeros(n, dtype=torch.long, device=x.device))
        steps, every = int(self.steps), max(1, int(self.check_every))
        for r in range(int(self.restarts)):
            start = noise[:, r] * e if noise is not None else torch.zeros_like(x)
            xa = space.project(x, x + project_ball(start, eps_x, norm))
            # restart 0 searches all inputs; later ones only those still searching (one host sync each)
            rows = None if r == 0 else (~state.found).nonzero().flatten()
            t = 0
            while rows is None or len(rows):
                sub = slice(None) if rows is None else rows
                xs, x0, ref, a, ep = xa[sub], x[sub], reference[sub], alpha[sub], eps_x[sub]
                part = state.take(sub)
                stop = min(t + every, steps)
                # inputs that succeed keep being computed with the others until the next check: no host
                # sync inside the window, and torch.where keeps their first success
                for _ in range(t, stop):
                    loss, grad, out = loss_and_grad(f, xs, criterion, ref, rows=rows)
                    part.keep(xs, loss, criterion.satisfied(out, ref))
                    step = xs + a * steepest_direction(grad, norm, self.sparsity)
                    xs = space.project(x0, x0 + project_ball(step - x0, ep, norm))
                if stop == steps:
                    with torch.no_grad():
                        out = f(xs) if rows is None else f(xs, rows=rows)
                    part.keep(xs, criterion.loss(out, ref), criterion.satisfied(out, ref))
                state.put(sub, part)
                if rows is None:
                    xa = xs
                else:
                    xa[rows] = xs
                if stop == steps:
                    break
                t = stop
                rows = (~state.found).nonzero().flatten()  # the check: one host sync per window
            if rows is not None and len(rows) == 0:
                break
        return RunResult(x_adv=state.x, queries=state.queries)


class _Best:
    """Per input: the point kept so far, its loss, whether it succeeded, and the model evaluations it took."""

    def __init__(self, x: torch.Tensor, loss: torch.Tensor, found: torch.Tensor, queries: torch.Tensor):
        self.x, self.loss, self.found, self.queries = x, loss, found, queries

    def keep(self, xa: torch.Tensor, loss: torch.Tensor, ok: torch.Tensor) -> None:
        """Keep the first success, else the highest loss, of the inputs still searching; count their query."""
        searching = ~self.found
        better = searching & (ok | (loss > self.loss))
        self.x = torch.where(better.view((-1,) + (1,) * (xa.dim() - 1)), xa, self.x)
        self.loss = torch.where(better, loss, self.loss)
        self.found = self.found | (searching & ok)
        self.queries = self.queries + searching

    def take(self, rows: slice | torch.Tensor) -> _Best:
        return _Best(self.x[rows], self.loss[rows], self.found[rows], self.queries[rows])

    def put(self, rows: slice | torch.Tensor, part: _Best) -> None:
        if isinstance(rows, slice):
            self.x, self.loss, self.found, self.queries = part.x, part.loss, part.found, part.queries
            return
        self.x[rows], self.loss[rows], self.found[rows], self.queries[rows] = (part.x, part.loss, part.found,
                                                                               part.queries)
