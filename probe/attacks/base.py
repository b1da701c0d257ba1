"""The attack family's template: ``Attack.__call__`` is final, subclasses write ``run``.

``__call__`` validates the inputs, puts the model in eval mode without parameter
gradients (restored afterwards), scores the clean inputs, hands the attack one batch
at a time, projects what it returns into the space and scores success with one more
model call. Subclasses see only a batch and a checked forward function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import final

import torch

from ..criteria import Criterion, Misclassify
from ..devices import as_input, batches, model_hygiene, resolve_device
from ..errors import ProbeError
from ..models import QueryCounter, clean_outputs, forward, has_gradient
from ..results import AttackResult
from ..spaces import Space, as_space, check_distance_norm

__all__ = ["Attack", "RunResult", "Forward", "loss_and_grad", "check_eps", "restrict_forward"]

Forward = Callable[..., torch.Tensor]
"""``f(z, rows=None) -> outputs``: the model on candidate points ``z``; ``rows`` (indices into the batch
handed to ``run``) says which inputs ``z`` belongs to when it is not the whole batch, so that each input's
query count is its own."""


@dataclass(frozen=True)
class RunResult:
    """What ``run`` may return instead of a bare tensor: the points and per-input query counts."""

    x_adv: torch.Tensor
    queries: torch.Tensor


def check_eps(eps: object, name: str = "eps") -> float | torch.Tensor:
    """A positive budget, scalar or one per input."""
    if torch.is_tensor(eps) and eps.dim() > 0:
        e = eps.detach().to(torch.get_default_dtype()).reshape(-1)
        if not torch.isfinite(e).all() or (e <= 0).any():
            i = int((~(torch.isfinite(e) & (e > 0))).nonzero()[0])
            raise ProbeError(f"{name}[{i}] = {e[i].item()} must be a positive finite number")
        return e
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise ProbeError(f"{name} must be a positive number, got {eps!r}") from None
    if not (value > 0 and value < float("inf")):
        raise ProbeError(f"{name} must be a positive finite number, got {value}")
    return value


def restrict_forward(f: Forward, rows: torch.Tensor) -> Forward:
    """``f`` for a sub-batch: the inputs ``rows`` of the batch, so that query counts still reach the right inputs."""

    def g(z: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        if rows is not None:
            return f(z, rows=outer[rows])
        if len(outer) and len(z) % len(outer) == 0:
            return f(z, rows=outer.repeat(len(z) // len(outer)))
        return f(z)

    outer = rows
    return g


def loss_and_grad(f: Forward, x: torch.Tensor, criterion: Criterion, reference: torch.Tensor,
                  rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Criterion loss (N,), its gradient with respect to ``x`` and the outputs, in one pass.

    ``rows``: which inputs of the batch ``x`` holds, when it is not the whole batch (see ``Forward``).
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = f(x) if rows is None else f(x, rows=rows)
        loss = criterion.loss(out, reference)
        if not loss.requires_grad:
            raise ProbeError("the model's output does not depend differentiably on its input; "
                             "use a gradient-free method (method='square', 'hopskipjump' or an edit search)")
        (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad.detach(), out.detach()


class Attack:
    """Base class of attacks.

    Subclasses store keyword-only hyperparameters in ``__init__`` (no work there), set
    ``norm``, and implement ``run``. Minimal-norm searches set ``minimal = True``;
    gradient-free ones set ``needs_gradient = False``.
    """

    name: str = "attack"
    minimal: bool = False
    needs_gradient: bool = True
    needs_continuous: bool = True
    norm: str = "l2"
    seed: int = 0

    def validate(self) -> None:
        """Check the hyper-parameters; raise ``ProbeError`` naming the bad one. Called before any work."""

    def presample(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Per-input tensors (first dimension N) drawn once for all inputs.

        Random starts drawn here do not depend on how the inputs are batched.
        """
        return {}

    def run(self, f: Forward, x: torch.Tensor, criterion: Criterion, reference: torch.Tensor, space: Space,
            **presampled: torch.Tensor) -> torch.Tensor | RunResult:  # pragma: no cover
        """Search on one batch; return candidate points (projected again by the caller)."""
        raise NotImplementedError

    @final
    def __call__(self, model: object, x: object, criterion: Criterion | None = None, *, space: Space | None = None,
                 batch_size: int | None = 256, device: str | torch.device | None = None,
                 already_satisfied: str = "raise", progress: bool = False) -> AttackResult:
        """Attack ``model`` at inputs ``x``.

        Parameters
        ----------
        model : torch.nn.Module or callable
            Maps a tensor (N, ...) to outputs (N, K) or (N,).
        x : torch.Tensor or array-like, shape (N, ...)
            Inputs; never modified.
        criterion : Criterion, optional
            What counts as success; default ``Misclassify()`` (leave the clean prediction).
        space : Space, optional
            Where inputs may go (``Box``, ``OneHot``); default unconstrained.
        batch_size : int or None, default 256
            Inputs attacked at a time; results do not depend on it.
        device : str or torch.device, optional
            Default: the model's device; for a model without parameters the input's; else the CPU.
        already_satisfied : {"raise", "keep"}, default "raise"
            What to do with inputs that satisfy the criterion unperturbed: raise
            ``ProbeError``, or keep them as successes at distance 0.
        progress : bool, default False
            Show a progress bar over batches (only on a terminal).

        Returns
        -------
        AttackResult
            ``queries`` counts, per input, the model evaluations spent on it (a call on a batch of
            candidates counts once for every input it holds); it does not depend on ``batch_size``.
        """
        from tqdm.auto import tqdm

        self.validate()
        if already_satisfied not in ("raise", "keep"):
            raise ProbeError(f"already_satisfied must be 'raise' or 'keep', got {already_satisfied!r}")
        dev = resolve_device(device, model, x)
        space = as_space(space)
        if self.needs_continuous and not space.continuous:
            raise ProbeError(f"{type(self).__name__} searches continuous spaces; use an edit search in {space!r}")
        if self.needs_gradient and not has_gradient(model):
            raise ProbeError(f"{type(self).__name__} needs gradients and the model has none; "
                             "use a gradient-free attack (Square, HopSkipJump) or method='auto'")
        x = as_input(x, device=dev)
        space.validate(x)
        criterion = Misclassify() if criterion is None else criterion
        if not isinstance(criterion, Criterion):
            raise ProbeError(f"criterion must be a probe Criterion, got {type(criterion).__name__}")
        norm = check_distance_norm(space, self.norm if space.continuous else None)
        generator = torch.Generator().manual_seed(int(self.seed))
        presampled = self.presample(x.cpu(), generator)

        with model_hygiene(model, dev) as m:
            counter = QueryCounter(m)
            charged = torch.zeros(0, dtype=torch.long, device=dev)  # per-input evaluations in the current batch
            spread = [0]

            def f(z: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
                nonlocal charged
                if rows is not None:
                    charged = charged.index_add(0, rows.to(dev), torch.ones_like(rows, dtype=torch.long, device=dev))
                elif len(charged) and len(z) % len(charged) == 0:
                    charged = charged + len(z) // len(charged)  # the batch, or stacked copies of it
                else:
                    spread[0] += len(z)  # rows that cannot be attributed: shared out evenly below
                return forward(counter, z, check=False)

            # a criterion reads output columns: (N, C, L) must not pass as C * L classes
            clean = clean_outputs(m, x, batch_size, flatten=False)
            reference = criterion.prepare(clean)
            if reference.shape[0] != len(x):
                raise ProbeError(f"{criterion!r} gave a reference for {reference.shape[0]} inputs, expected {len(x)}")
            done = criterion.satisfied(clean, reference)
            if done.any() and already_satisfied == "raise":
                idx = done.nonzero().flatten()[:5].tolist()
                raise ProbeError(f"{criterion!r} already holds for the unperturbed input(s) {idx}"
                                 f"{' ...' if int(done.sum()) > 5 else ''}: nothing to search for "
                                 "(pass the true labels, or already_satisfied='keep')")

            x_adv = x.clone()
            queries = torch.zeros(len(x), dtype=torch.long, device=dev)
            todo = (~done).nonzero().flatten()
            chunks = list(batches(len(todo), batch_size))
            for s in tqdm(chunks, desc=self.name, disable=not progress, leave=False):
                idx = todo[s]
                xb = x[idx]
                extra = {k: v[idx.cpu()].to(dev) for k, v in presampled.items()}
                charged = torch.zeros(len(idx), dtype=torch.long, device=dev)
                spread[0] = 0
                space_b = space.select(idx)
                out = self.run(f, xb, criterion, reference[idx], space_b, **extra)
                if isinstance(out, RunResult):
                    xa, q = out.x_adv, out.queries.to(dev)
                else:
                    xa, q = out, charged + spread[0] // max(len(idx), 1)
                x_adv[idx] = space_b.project(xb, xa.detach().to(x.dtype))
                queries[idx] = q.long()

            with torch.no_grad():
                final = torch.cat([forward(m, x_adv[s], check=False) for s in batches(len(x), batch_size)])
            success = criterion.satisfied(final, reference) | done
            x_adv = torch.where(done.view((-1,) + (1,) * (x.dim() - 1)), x, x_adv)
        distance = space.distance(x, x_adv, norm)
        distance = torch.where(success, distance, torch.full_like(distance, float("inf")))
        return AttackResult(x_adv=x_adv, delta=x_adv - x, success=success, distance=distance, queries=queries,
                            norm=norm, method=self.name)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"

