"""PGD adversarial training (Madry et al., 2018) and the inner maximisation it shares with TRADES."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from ..norms import check_norm, project_ball, sample_ball, steepest_direction
from ..spaces import Space
from .loop import Callback, TrainResult, check_positive, check_space, fit

__all__ = ["adversarial", "maximize_loss"]


def maximize_loss(model: torch.nn.Module, x: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor], *,
                  eps: float, norm: str, steps: int, step_size: float, space: Space,
                  start: torch.Tensor | None) -> torch.Tensor:
    r"""Projected gradient ascent of a per-input loss inside the L-p ball around ``x``.

    :math:`x_{t+1} = \Pi_{B_p(x, \epsilon) \cap S}\big(x_t + \alpha\, d_p(\nabla_{x} \ell(f(x_t)))\big)`
    with :math:`d_p` the steepest-ascent direction of the norm (``sign`` for L-inf, the
    normalised gradient for L2). Returns the last iterate, detached, as in Madry et al.'s
    and Zhang et al.'s training code (the inner problem is solved approximately; the
    outer step only needs a point of high loss).

    Parameters
    ----------
    model : torch.nn.Module
        Called as is (the caller sets eval/train mode).
    x : torch.Tensor, shape (N, ...)
    loss_fn : callable
        Maps the model's outputs on the current points to per-input losses (N,).
    eps, norm, steps, step_size
        Ball radius, its norm, number of ascent steps and their size.
    space : Space
        Where inputs may go (e.g. ``Box(0, 1)`` for pixels).
    start : torch.Tensor of shape (N, ...), optional
        Initial perturbation (projected onto the ball); zero when None.
    """
    delta = torch.zeros_like(x) if start is None else project_ball(start, eps, norm)
    xa = space.project(x, x + delta).detach()
    for _ in range(steps):
        xa.requires_grad_(True)
        with torch.enable_grad():
            loss = loss_fn(model(xa)).sum()
            (grad,) = torch.autograd.grad(loss, xa)
        step = xa.detach() + step_size * steepest_direction(grad, norm)
        xa = space.project(x, x + project_ball(step - x, eps, norm)).detach()
    return xa


def check_attack_settings(eps: object, norm: object, steps: object, step_size: object) -> tuple[float, str, int, float]:
    eps = check_positive(eps, "eps")
    norm = check_norm(norm)
    steps = check_positive(steps, "steps", integer=True)
    step_size = 2.5 * eps / steps if step_size is None else check_positive(step_size, "step_size")
    return eps, norm, steps, step_size


def adversarial(model: torch.nn.Module, loader: Iterable, *, eps: float, norm: str = "linf", steps: int = 10,
                step_size: float | None = None, random_start: bool = True, space: Space | None = None,
                epochs: int = 10, lr: float = 1e-3, optimizer: object = None,
                device: str | torch.device | None = None, callbacks: Sequence[Callback] | Callback = (),
                progress: bool = False, seed: int | None = None) -> TrainResult:
    r"""PGD adversarial training (Madry et al., 2018).

    Solves the saddle-point problem

    .. math:: \min_\theta\, \mathbb{E}_{(x, y)} \max_{\lVert \delta \rVert_p \le \epsilon}
              \mathrm{CE}(f_\theta(x + \delta), y)

    by approximating the inner maximum with ``steps`` of projected gradient ascent on the
    cross-entropy from a uniform random start in the ball (model in eval mode), then
    taking an optimiser step on the cross-entropy at the points found (model in train
    mode). Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning Models
    Resistant to Adversarial Attacks", ICLR 2018.

    Parameters
    ----------
    model : torch.nn.Module
        Maps inputs (N, ...) to class scores (N, C); trained in place.
    loader : iterable of (x, y)
        Typically a ``torch.utils.data.DataLoader``.
    eps : float
        Training budget: radius of the ball.
    norm : {"linf", "l2", "l1"}, default "linf"
    steps : int, default 10
        Ascent steps of the inner maximisation.
    step_size : float, optional
        Default ``2.5 * eps / steps`` (Madry et al.).
    random_start : bool, default True
        Start the inner ascent uniformly inside the ball.
    space : Space, optional
        Where inputs may go (e.g. ``probe.Box(0, 1)``); default unconstrained.
    epochs, lr, optimizer, device, callbacks, progress, seed
        As in :func:`probe.train.standard`.

    Returns
    -------
    TrainResult
        ``EpochLog.loss`` is the cross-entropy at the adversarial points; ``accuracy`` the
        clean training accuracy.

    Raises
    ------
    ProbeError
        Non-positive ``eps``/``steps``, an unknown norm, an empty loader, a model without parameters.
    """
    eps, norm, steps, step_size = check_attack_settings(eps, norm, steps, step_size)
    space = check_space(space)

    def batch_loss(m: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        space.validate(x)
        start = sample_ball(tuple(x.shape), eps, norm, dtype=x.dtype).to(x.device) if random_start else None
        m.eval()
        with torch.no_grad():
            clean = m(x)
        x_adv = maximize_loss(m, x, lambda out: F.cross_entropy(out, y, reduction="none"), eps=eps, norm=norm,
                              steps=steps, step_size=step_size, space=space, start=start)
        m.train()
        return F.cross_entropy(m(x_adv), y), clean

    settings = {"eps": eps, "norm": norm, "steps": steps, "step_size": step_size, "random_start": random_start}
    return fit(model, loader, batch_loss, method="adversarial", epochs=epochs, optimizer=optimizer, lr=lr,
               device=device, callbacks=callbacks, progress=progress, seed=seed, settings=settings)
