r"""Wasserstein distributionally robust training of linear models through the closed-form dual-norm penalty.

For a linear model the worst-case risk over a Wasserstein ball of radius :math:`\rho` is the
empirical loss plus :math:`\rho` times the loss's Lipschitz constant in the dual norm
(:func:`probe.wasserstein.linear_worst_case_risk`), so minimising the worst case *is* regularised
empirical risk minimisation: transport in L-inf gives a Lasso (L1) penalty, L2 a ridge-like norm
penalty, L1 an L-inf penalty (1/p + 1/q = 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from ..norms import check_norm
from ..wasserstein import check_loss, dual_norm_penalty, linear_layer, linear_worst_case_risk
from .loop import Callback, TrainResult, check_positive, fit

__all__ = ["wasserstein_dro"]


def wasserstein_dro(model: torch.nn.Module, loader: Iterable, *, rho: float, norm: str = "l2",
                    loss: str = "cross_entropy", epochs: int = 10, lr: float = 1e-2, optimizer: object = None,
                    device: str | torch.device | None = None, callbacks: Sequence[Callback] | Callback = (),
                    progress: bool = False, seed: int | None = None) -> TrainResult:
    r"""Wasserstein distributionally robust training of a linear model (closed form).

    Minimises the worst-case risk over the Wasserstein ball of radius ``rho`` around each batch's
    empirical distribution (transport cost :math:`\lVert x - x' \rVert_p`, labels fixed):

    .. math:: \min_{w, b}\; \sup_{W_1(Q, \hat P_N) \le \rho} \mathbb{E}_Q\, \ell
              = \min_{w, b}\; \frac1N \sum_i \ell(f(x_i), y_i) + \rho\, L_q(w),

    with :math:`L_q(w) = \lVert w \rVert_q` for one score (logistic, hinge) and
    :math:`\max_y \max_k \lVert w_k - w_y \rVert_q` for class scores (cross-entropy, multi-class
    hinge), :math:`1/p + 1/q = 1` (Shafieezadeh-Abadeh, Kuhn & Mohajerin Esfahani, "Regularization
    via Mass Transportation", JMLR 2019). For the squared loss and the order-2 cost (``rho`` bounds
    the expected *squared* transport) the objective is the square-root Lasso
    :math:`(\sqrt{\mathrm{MSE}} + \sqrt{\rho}\,\lVert w \rVert_q)^2` (Blanchet, Kang & Murthy,
    J. Appl. Probab. 2019). The batch objective is the closed form on the batch; with one batch
    per epoch (a full-batch loader) it is exactly the worst case on the data.

    Parameters
    ----------
    model : torch.nn.Module
        ``nn.Linear`` (or ``nn.Sequential`` of Flatten and one Linear); trained in place.
    loader : iterable of (x, y)
        Labels: class indices (cross-entropy, multi-class hinge), 0/1 or -1/+1 (logistic or
        hinge with one output), real targets (squared).
    rho : float
        Radius of the Wasserstein ball (>= 0; 0 is empirical risk minimisation).
    norm : {"l2", "l1", "linf"}, default "l2"
        Norm of the transport cost (the penalty uses its dual).
    loss : {"cross_entropy", "logistic", "hinge", "squared"}, default "cross_entropy"
    epochs : int, default 10
    lr : float, default 1e-2
        Learning rate of the default optimiser (Adam).
    optimizer, device, callbacks, progress, seed
        As in :func:`probe.train.standard`.

    Returns
    -------
    TrainResult
        ``EpochLog.loss`` is the worst-case risk of each batch; ``extras["penalty"]`` the final
        :math:`L_q(w)`, so that the worst-case risk of the trained model on data of loss
        :math:`\bar\ell` is :math:`\bar\ell + \rho\, L_q(w)`.

    Raises
    ------
    ProbeError
        A model that is not linear, a loss that does not fit its outputs or labels, a negative ``rho``.
    """
    rho = check_positive(rho, "rho", allow_zero=True)
    norm = check_norm(norm)
    loss = check_loss(loss)
    layer = linear_layer(model)
    binary = layer.out_features == 1
    if loss == "squared":
        targets = "real"
    elif loss == "logistic" or (loss == "hinge" and binary):
        targets = "binary"
    else:
        targets = "classes"
    # the loss and the model's outputs must agree before the first step
    dual_norm_penalty(model, loss=loss, norm=norm)

    def batch_loss(m: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return linear_worst_case_risk(m, x, y, rho, loss=loss, norm=norm), m(x)

    def finish(m: torch.nn.Module) -> dict:
        with torch.no_grad():
            return {"penalty": float(dual_norm_penalty(m, loss=loss, norm=norm))}

    settings = {"rho": rho, "norm": norm, "loss": loss}
    return fit(model, loader, batch_loss, method="wasserstein_dro", epochs=epochs, optimizer=optimizer, lr=lr,
               device=device, callbacks=callbacks, progress=progress, seed=seed, settings=settings, finish=finish,
               targets=targets)
