"""TRADES (Zhang et al., 2019): clean cross-entropy plus a KL term that flattens the model around each input."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F

from ..spaces import Space
from .adversarial import check_attack_settings, maximize_loss
from .loop import Callback, TrainResult, check_positive, check_space, fit

__all__ = ["trades"]


def _kl(clean_logits: torch.Tensor, adv_logits: torch.Tensor) -> torch.Tensor:
    """Per-input KL(softmax(clean) || softmax(adv))."""
    return F.kl_div(F.log_softmax(adv_logits, dim=1), F.softmax(clean_logits, dim=1), reduction="none").sum(1)


def trades(model: torch.nn.Module, loader: Iterable, *, eps: float, beta: float = 6.0, norm: str = "linf",
           steps: int = 10, step_size: float | None = None, space: Space | None = None, epochs: int = 10,
           lr: float = 1e-3, optimizer: object = None, device: str | torch.device | None = None,
           callbacks: Sequence[Callback] | Callback = (), progress: bool = False,
           seed: int | None = None) -> TrainResult:
    r"""TRADES training (Zhang et al., 2019).

    Minimises

    .. math:: \mathbb{E}_{(x, y)} \Big[\mathrm{CE}(f_\theta(x), y) + \beta
              \max_{\lVert x' - x \rVert_p \le \epsilon} \mathrm{KL}\big(\sigma(f_\theta(x))
              \,\Vert\, \sigma(f_\theta(x'))\big)\Big]

    where :math:`\sigma` is the softmax. The inner maximum is approximated by ``steps`` of
    projected gradient ascent on the KL term from ``x + 0.001 N(0, I)`` (model in eval
    mode, clean probabilities held fixed), as in the authors' code; the outer step
    back-propagates through both the clean and the perturbed outputs. ``beta`` trades
    clean accuracy (small) for robustness (large). Zhang, Yu, Jiao, Xing, El Ghaoui &
    Jordan, "Theoretically Principled Trade-off between Robustness and Accuracy", ICML 2019.

    Parameters
    ----------
    model : torch.nn.Module
        Maps inputs (N, ...) to class scores (N, C); trained in place.
    loader : iterable of (x, y)
    eps : float
        Radius of the ball of the inner maximisation.
    beta : float, default 6.0
        Weight of the robustness (KL) term; 0 gives standard training.
    norm : {"linf", "l2", "l1"}, default "linf"
    steps : int, default 10
    step_size : float, optional
        Default ``2.5 * eps / steps``.
    space : Space, optional
        Where inputs may go (e.g. ``probe.Box(0, 1)``).
    epochs, lr, optimizer, device, callbacks, progress, seed
        As in :func:`probe.train.standard`.

    Returns
    -------
    TrainResult
        ``EpochLog.loss`` is the full TRADES objective.

    Raises
    ------
    ProbeError
        Non-positive ``eps``/``steps``, negative ``beta``, an unknown norm, an empty loader,
        a model without parameters.
    """
    eps, norm, steps, step_size = check_attack_settings(eps, norm, steps, step_size)
    beta = check_positive(beta, "beta", allow_zero=True)
    space = check_space(space)

    def batch_loss(m: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        space.validate(x)
        m.eval()
        with torch.no_grad():
            target = m(x)
        start = 0.001 * torch.randn_like(x)
        x_adv = maximize_loss(m, x, lambda out: _kl(target, out), eps=eps, norm=norm, steps=steps,
                              step_size=step_size, space=space, start=start)
        m.train()
        clean = m(x)
        robust = _kl(clean, m(x_adv)).mean()
        return F.cross_entropy(clean, y) + beta * robust, clean

    settings = {"eps": eps, "beta": beta, "norm": norm, "steps": steps, "step_size": step_size}
    return fit(model, loader, batch_loss, method="trades", epochs=epochs, optimizer=optimizer, lr=lr,
               device=device, callbacks=callbacks, progress=progress, seed=seed, settings=settings)
