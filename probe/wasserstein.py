r"""Worst-case risk over a Wasserstein ball of data distributions, numerically and in closed form.

The distributionally robust risk of a model :math:`f` with loss :math:`\ell` is

.. math:: R_\rho(f) = \sup_{Q:\; W_c(Q, \hat P_N) \le \rho} \mathbb{E}_{(x, y) \sim Q}\, \ell(f(x), y),

the largest expected loss over the distributions :math:`Q` that an optimal transport plan of
expected cost at most :math:`\rho` reaches from the empirical distribution :math:`\hat P_N`. The
transport cost moves inputs only (labels stay): :math:`c((x, y), (x', y')) = \lVert x - x' \rVert_p^k`
(:math:`k = 1` for the classification losses, :math:`k = 2` for the squared loss).

- :func:`worst_case_risk` solves the supremum numerically for any model, on a grid of transport
  radii per input (the worst loss at each radius found by projected gradient ascent) and a linear
  program over how much of each input's mass goes how far.
- :func:`linear_worst_case_risk` is the closed form for linear models (Shafieezadeh-Abadeh, Kuhn &
  Mohajerin Esfahani, "Regularization via Mass Transportation", JMLR 2019; Blanchet, Kang & Murthy,
  "Robust Wasserstein Profile Inference and Applications to Machine Learning", J. Appl. Probab.
  2019): the empirical loss plus a dual-norm penalty on the weights. Regularisation and robustness
  are one problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .devices import as_input, batches, model_hygiene, resolve_device
from .errors import ProbeError
from .norms import check_norm, dual, lp_norm
from .spaces import Box, Space, as_space

__all__ = ["LOSSES", "check_loss", "pointwise_loss", "linear_layer", "dual_norm_penalty", "linear_worst_case_risk",
           "WorstCaseRisk", "worst_case_risk"]

LOSSES = ("cross_entropy", "logistic", "hinge", "squared")


def check_loss(loss: object) -> str:
    """The name of a supported loss, else ``ProbeError``."""
    if loss not in LOSSES:
        raise ProbeError(f"unknown loss {loss!r}; use one of {LOSSES}")
    return str(loss)


def _scores(outputs: torch.Tensor, loss: str) -> torch.Tensor:
    """One score per input for the binary and regression losses, from outputs (N,) or (N, 1)."""
    if outputs.dim() == 1 or (outputs.dim() == 2 and outputs.shape[1] == 1):
        return outputs.reshape(-1)
    raise ProbeError(f"loss {loss!r} needs one output per input, shape (N,) or (N, 1); the model returned "
                     f"{tuple(outputs.shape)} (use loss='cross_entropy' or 'hinge' for class scores (N, C))")


def _signs(y: torch.Tensor) -> torch.Tensor:
    """Binary labels {0, 1} or {-1, +1} as signs -1 / +1."""
    return torch.where(y > 0, 1.0, -1.0).to(torch.get_default_dtype())


def _margin(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Multi-class margin :math:`z_y - \\max_{k \\ne y} z_k`, shape (N,)."""
    zy = outputs.gather(1, y.long()[:, None]).squeeze(1)
    other = outputs.scatter(1, y.long()[:, None], float("-inf")).amax(1)
    return zy - other


def pointwise_loss(outputs: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    r"""Per-input loss, shape (N,).

    - ``"cross_entropy"``: class scores (N, C), labels class indices.
    - ``"logistic"``: one score :math:`z`, labels :math:`s \in \{0, 1\}` or :math:`\{-1, 1\}`
      (read as signs): :math:`\log(1 + e^{-s z})`.
    - ``"hinge"``: one score, :math:`\max(0, 1 - s z)`; or class scores (N, C), the multi-class
      hinge of Crammer & Singer (2001), :math:`\max(0, 1 - (z_y - \max_{k \ne y} z_k))`.
    - ``"squared"``: one score, real targets: :math:`(y - z)^2`.
    """
    loss = check_loss(loss)
    if loss == "cross_entropy":
        if outputs.dim() != 2 or outputs.shape[1] < 2:
            raise ProbeError(f"loss 'cross_entropy' needs class scores (N, C) with C >= 2, got "
                             f"{tuple(outputs.shape)} (use loss='logistic' for one binary score)")
        return F.cross_entropy(outputs, y.long(), reduction="none")
    if loss == "hinge" and outputs.dim() == 2 and outputs.shape[1] > 1:
        return F.relu(1 - _margin(outputs, y))
    z = _scores(outputs, loss)
    if loss == "squared":
        return (z - y.to(z)) ** 2
    s = _signs(y).to(z)
    return F.softplus(-s * z) if loss == "logistic" else F.relu(1 - s * z)


def _ascent_objective(outputs: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """What the inner search climbs: the loss, or for the hinge the negative margin it is a monotone function of.

    The hinge is flat (zero gradient) where the margin exceeds 1, so climbing it would never leave a
    well-classified input; climbing the negative margin and scoring the hinge at the point found does.
    """
    if loss != "hinge":
        return pointwise_loss(outputs, y, loss)
    if outputs.dim() == 2 and outputs.shape[1] > 1:
        return -_margin(outputs, y)
    return -_signs(y).to(outputs) * _scores(outputs, loss)


def linear_layer(model: torch.nn.Module) -> torch.nn.Linear:
    """The one ``nn.Linear`` of a linear model: the layer itself, or an ``nn.Sequential`` of it and Flatten/Identity.

    Raises ``ProbeError`` naming the first module that makes the model non-linear.
    """
    if isinstance(model, torch.nn.Linear):
        return model
    if isinstance(model, torch.nn.Sequential):
        layers = []
        for name, m in model.named_children():
            if isinstance(m, torch.nn.Linear):
                layers.append(m)
            elif not isinstance(m, (torch.nn.Flatten, torch.nn.Identity)):
                raise ProbeError(f"module {name} ({type(m).__name__}) makes the model non-linear: the closed form "
                                 "holds for a linear model (one nn.Linear, optionally after Flatten)")
        if len(layers) == 1:
            return layers[0]
        raise ProbeError(f"the model has {len(layers)} Linear layers; the closed form needs exactly one")
    raise ProbeError(f"the closed form needs a linear model (nn.Linear, or nn.Sequential of Flatten and one "
                     f"Linear), got {type(model).__name__}")


def _q(norm: str) -> float:
    return {"l1": 1.0, "l2": 2.0, "linf": float("inf")}[dual(norm)]


def dual_norm_penalty(model: torch.nn.Module, y: torch.Tensor | None = None, *, loss: str = "cross_entropy",
                      norm: str = "l2") -> torch.Tensor:
    r"""The Lipschitz constant in the input of a linear model's loss, in the dual norm: the DRO penalty's weight.

    For one score :math:`z = w^\top x + b` (logistic, hinge, squared loss): :math:`\lVert w \rVert_q`.
    For class scores :math:`z = W x + b` (cross-entropy, multi-class hinge):
    :math:`\max_{y} \max_{k} \lVert w_k - w_y \rVert_q`, the largest over the labels ``y`` present
    (all classes when ``y`` is None), since the loss of an input of class :math:`y` is Lipschitz
    with constant :math:`\max_k \lVert w_k - w_y \rVert_q` and grows at that rate far away.
    :math:`1/p + 1/q = 1` with ``norm`` the transport norm :math:`p`.

    Returns
    -------
    torch.Tensor
        A differentiable scalar.
    """
    norm = check_norm(norm)
    loss = check_loss(loss)
    W = linear_layer(model).weight
    q = _q(norm)
    if W.shape[0] == 1 and loss != "cross_entropy":
        return torch.linalg.vector_norm(W[0], ord=q)
    if loss in ("logistic", "squared"):
        raise ProbeError(f"loss {loss!r} needs a model with one output; this one has {W.shape[0]}")
    rows = torch.arange(W.shape[0], device=W.device) if y is None else torch.unique(y.long().to(W.device))
    diff = W[None, :, :] - W[rows][:, None, :]                       # (labels, C, D)
    return torch.linalg.vector_norm(diff, ord=q, dim=2).amax()


def linear_worst_case_risk(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, rho: float, *,
                           loss: str = "cross_entropy", norm: str = "l2") -> torch.Tensor:
    r"""Closed-form worst-case risk of a linear model over a Wasserstein ball (labels fixed).

    For a loss that is a Lipschitz function of the scores (logistic, hinge, cross-entropy) and the
    transport cost :math:`\lVert x - x' \rVert_p`,

    .. math:: \sup_{W_1(Q, \hat P_N) \le \rho} \mathbb{E}_Q\, \ell = \frac1N \sum_i \ell(f(x_i), y_i)
              + \rho\, L_q(w),

    with :math:`L_q(w)` the loss's Lipschitz constant in the input, measured in the dual norm
    (:func:`dual_norm_penalty`; :math:`\lVert w \rVert_q` for one score). Shafieezadeh-Abadeh,
    Kuhn & Mohajerin Esfahani, JMLR 20(103), 2019, Theorem 14 (labels fixed, :math:`\kappa = \infty`).
    The supremum is approached, not attained: a vanishing share of one input's mass moves
    arbitrarily far.

    For the squared loss and the order-2 cost :math:`\lVert x - x' \rVert_p^2` (``rho`` bounds the
    expected squared transport),

    .. math:: \sup_{\mathbb{E}_\pi \lVert x - x' \rVert_p^2 \le \rho} \mathbb{E}_Q (y - w^\top x - b)^2
              = \Big(\sqrt{\tfrac1N \textstyle\sum_i (y_i - w^\top x_i - b)^2} + \sqrt{\rho}\,
              \lVert w \rVert_q\Big)^2,

    the square-root Lasso for :math:`p = \infty` (Blanchet, Kang & Murthy, J. Appl. Probab. 56(3),
    2019, Theorem 1).

    Parameters
    ----------
    model : torch.nn.Module
        ``nn.Linear`` (or ``nn.Sequential`` of Flatten and one Linear).
    x : torch.Tensor, shape (N, ...)
    y : torch.Tensor, shape (N,)
        Class indices, binary labels ({0, 1} or {-1, 1}) or real targets, as the loss needs.
    rho : float
        Radius of the ball (>= 0).
    loss : {"cross_entropy", "logistic", "hinge", "squared"}, default "cross_entropy"
    norm : {"l2", "l1", "linf"}, default "l2"
        Norm of the transport cost; the penalty uses its dual.

    Returns
    -------
    torch.Tensor
        A differentiable scalar (a training objective).
    """
    rho = _check_rho(rho)
    loss = check_loss(loss)
    losses = pointwise_loss(model(x), y, loss)
    penalty = dual_norm_penalty(model, y, loss=loss, norm=norm)
    if loss == "squared":
        return (losses.mean().clamp(min=0).sqrt() + math.sqrt(rho) * penalty) ** 2
    return losses.mean() + rho * penalty


def _check_rho(rho: object) -> float:
    try:
        r = float(rho)
    except (TypeError, ValueError):
        raise ProbeError(f"rho must be a number, got {rho!r}") from None
    if not math.isfinite(r) or r < 0:
        raise ProbeError(f"rho must be a finite radius >= 0, got {rho!r}")
    return r


@dataclass(frozen=True)
class WorstCaseRisk:
    """A worst-case distribution found in a Wasserstein ball, and its risk.

    Attributes
    ----------
    value : float
        Expected loss under the worst distribution found (an estimate from below of the supremum:
        the distribution is feasible, the per-radius losses come from a search).
    empirical : float
        Expected loss under the data (``rho = 0``).
    multiplier : float
        The optimal Lagrange multiplier of the transport budget, :math:`d\\,\\text{value} / d\\rho`;
        for a linear model it is the closed form's penalty weight (:func:`dual_norm_penalty`).
    rho : float
    norm : str
        Norm of the transport cost.
    power : int
        Exponent of the transport cost, :math:`\\lVert x - x' \\rVert_p^{k}`.
    radii : torch.Tensor, shape (N, K)
        Distances each input's mass may move to.
    losses : torch.Tensor, shape (N, K)
        Worst loss found at each radius.
    weights : torch.Tensor, shape (N, K)
        Share of each input's mass moved to each radius (rows sum to 1).
    """

    value: float
    empirical: float
    multiplier: float
    rho: float
    norm: str
    power: int
    radii: torch.Tensor
    losses: torch.Tensor
    weights: torch.Tensor

    def to_frame(self) -> pd.DataFrame:
        """One row per input: its clean loss, expected transport cost and expected loss under the worst distribution."""
        w = self.weights.double()
        return pd.DataFrame({
            "loss": self.losses[:, 0].double().cpu().numpy(),
            "transport": (w * self.radii.double() ** self.power).sum(1).cpu().numpy(),
            "worst_case_loss": (w * self.losses.double()).sum(1).cpu().numpy(),
        })


def _max_radius(space: Space, x: torch.Tensor, norm: str) -> float:
    """How far mass may move: the diameter of a bounded ``Box``, else far beyond the data's scale."""
    if isinstance(space, Box):
        width = (space.upper.to(x) - space.lower.to(x)).expand_as(x[:1])
        if space.mask is not None:
            width = torch.where(space.mask.to(x.device), torch.zeros_like(width), width)
        diameter = float(lp_norm(width, norm)[0])
        if math.isfinite(diameter):
            return diameter
    return 1e6 * max(1.0, float(lp_norm(x, norm).max()))


def _worst_losses(model: object, x: torch.Tensor, y: torch.Tensor, radii: torch.Tensor, *, loss: str, norm: str,
                  steps: int, space: Space, batch_size: int | None) -> torch.Tensor:
    """Worst loss found within each input's radii, shape (N, K): projected gradient ascent, all radii at once.

    Each chunk of ``batch_size`` inputs is repeated once per radius, so one ascent of ``steps``
    steps serves every radius (each row has its own ball); rows of radius 0 stay at their input.
    """
    from .train.adversarial import maximize_loss

    n, k = radii.shape
    out = torch.empty(radii.shape, dtype=x.dtype, device=x.device)
    view = (-1,) + (1,) * (x.dim() - 1)
    for s in batches(n, batch_size):
        xb = x[s].repeat_interleave(k, 0)
        yb = y[s].repeat_interleave(k, 0)
        eps = radii[s].reshape(-1).to(x)
        moved = eps > 0
        xa = xb.clone()
        if moved.any():
            xa[moved] = maximize_loss(
                model, xb[moved], lambda o, yy=yb[moved]: _ascent_objective(o, yy, loss), eps=eps[moved], norm=norm,
                steps=steps, step_size=(2.5 * eps[moved] / steps).view(view), space=space, start=None)
        with torch.no_grad():
            out[s] = pointwise_loss(model(xa), yb, loss).view(-1, k)
    return out


def _transport_lp(g: np.ndarray, cost: np.ndarray, rho: float) -> tuple[float, float, np.ndarray]:
    r"""Maximise :math:`\frac1N \sum_{ik} \pi_{ik} g_{ik}` subject to :math:`\sum_k \pi_{ik} = 1`,
    :math:`\frac1N \sum_{ik} \pi_{ik} c_{ik} \le \rho`, :math:`\pi \ge 0`; returns (value, multiplier, pi)."""
    from scipy import sparse
    from scipy.optimize import linprog

    n, k = g.shape
    a_eq = sparse.kron(sparse.eye(n), np.ones((1, k)), format="csr")
    res = linprog(-g.ravel() / n, A_ub=(cost.ravel() / n)[None, :], b_ub=[rho], A_eq=a_eq, b_eq=np.ones(n),
                  bounds=(0, None), method="highs")
    if res.status != 0:  # pragma: no cover - the LP is feasible (all mass at radius 0) and bounded
        raise ProbeError(f"the transport linear program failed: {res.message}")
    pi = res.x.reshape(n, k)
    return float(-res.fun), float(-res.ineqlin.marginals[0]), pi


def _refined_radii(radii: torch.Tensor, pi: np.ndarray, points: int) -> torch.Tensor:
    """Radii between the neighbours of each input's (up to two) most used radii, shape (N, 2 * points)."""
    order = np.argsort(radii.cpu().numpy(), axis=1)
    r_sorted = np.take_along_axis(radii.cpu().numpy(), order, 1)
    pi_sorted = np.take_along_axis(pi, order, 1)
    top = np.argsort(-pi_sorted, axis=1)[:, :2]
    k = r_sorted.shape[1]
    rows = np.arange(len(r_sorted))[:, None]
    lo = r_sorted[rows, np.clip(top - 1, 0, k - 1)]
    hi = r_sorted[rows, np.clip(top + 1, 0, k - 1)]
    t = np.linspace(0.0, 1.0, points + 2)[1:-1]
    new = lo[:, :, None] + (hi - lo)[:, :, None] * t               # (N, 2, points)
    return torch.as_tensor(new.reshape(len(r_sorted), -1), dtype=radii.dtype, device=radii.device)


def worst_case_risk(model: object, data: tuple[object, object], rho: float, *, norm: str = "l2",
                    loss: str = "cross_entropy", power: int | None = None, space: Space | None = None,
                    radii: object = None, max_radius: float | None = None, steps: int = 30, refine: int = 2,
                    batch_size: int | None = 256, device: str | torch.device | None = None) -> WorstCaseRisk:
    r"""The worst expected loss over a Wasserstein ball around the data, solved numerically.

    Solves the inner supremum of distributionally robust learning,

    .. math:: \sup_{Q:\; \inf_{\pi \in \Pi(Q, \hat P_N)} \mathbb{E}_\pi \lVert x - x' \rVert_p^k \le \rho}
              \mathbb{E}_Q\, \ell(f(x'), y),

    (labels fixed), by restricting each input's mass to a grid of radii :math:`0 = r_{i0} < r_{i1} <
    \dots`: with :math:`g_{ij}` the worst loss within distance :math:`r_{ij}` of :math:`x_i` (found by
    projected gradient ascent, :func:`probe.train.adversarial.maximize_loss`), the supremum over
    distributions becomes the linear program

    .. math:: \max_{\pi \ge 0} \frac1N \sum_{ij} \pi_{ij}\, g_{ij} \quad\text{s.t.}\quad
              \sum_j \pi_{ij} = 1, \quad \frac1N \sum_{ij} \pi_{ij}\, r_{ij}^k \le \rho,

    whose dual, :math:`\min_{\lambda \ge 0} \lambda\rho + \frac1N \sum_i \max_j (g_{ij} - \lambda r_{ij}^k)`,
    is the strong-duality form of Gao & Kleywegt (2016) and Blanchet & Murthy (2019) on the grid.
    ``refine`` rounds then add radii around each input's chosen ones and solve again. For a linear
    model the ascent is exact and the result equals :func:`linear_worst_case_risk` up to the grid
    (for the classification losses the supremum is approached by moving a vanishing mass ever
    farther, hence the far default ``max_radius``).

    Parameters
    ----------
    model : torch.nn.Module or callable
        Maps inputs (N, ...) to outputs; differentiable.
    data : (x, y)
        Inputs (N, ...) and labels (N,) (class indices, binary labels or real targets).
    rho : float
        Budget of expected transport cost (>= 0).
    norm : {"l2", "l1", "linf"}, default "l2"
        Norm of the transport cost.
    loss : {"cross_entropy", "logistic", "hinge", "squared"}, default "cross_entropy"
        See :func:`pointwise_loss`.
    power : int, optional
        Exponent :math:`k` of the cost; default 2 for ``"squared"`` (the Wasserstein-2 ball of
        Blanchet et al.; with :math:`k = 1` the squared loss has an infinite worst case), else 1.
    space : Space, optional
        Where the moved inputs must stay (e.g. ``Box(0, 1)``); default unconstrained.
    radii : array-like, shape (K,) or (N, K), optional
        The grid; default 0 and 80 radii spaced geometrically from :math:`10^{-3}\rho^{1/k}` to
        ``max_radius``.
    max_radius : float, optional
        Default: the diameter of a bounded ``Box``, else :math:`10^6 \max(1, \max_i \lVert x_i \rVert_p)`.
    steps : int, default 30
        Ascent steps per radius (step size :math:`2.5 r / \text{steps}`).
    refine : int, default 2
        Rounds of grid refinement (0: the grid only).
    batch_size : int or None, default 256
    device : str or torch.device, optional
        Default: the model's device, else the input's.

    Returns
    -------
    WorstCaseRisk
    """
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ProbeError(f"data must be an (x, y) pair, got {type(data).__name__}")
    rho = _check_rho(rho)
    norm = check_norm(norm)
    loss = check_loss(loss)
    power = (2 if loss == "squared" else 1) if power is None else int(power)
    if power not in (1, 2):
        raise ProbeError(f"power must be 1 or 2, got {power!r}")
    space = as_space(space)
    if not space.continuous:
        raise ProbeError(f"the inner search moves inputs continuously; {space!r} is discrete")
    if int(steps) < 1:
        raise ProbeError(f"steps must be a positive integer, got {steps!r}")
    dev = resolve_device(device, model, data[0])
    x = as_input(data[0], device=dev)
    y = torch.as_tensor(data[1], device=dev)
    if y.shape[:1] != x.shape[:1]:
        raise ProbeError(f"data has {len(x)} inputs but labels of shape {tuple(y.shape)}")
    space.validate(x)
    if radii is None:
        top = _max_radius(space, x, norm) if max_radius is None else float(max_radius)
        if not top > 0:
            raise ProbeError(f"max_radius must be positive, got {max_radius!r}")
        low = min(1e-3 * max(rho, 1e-12) ** (1 / power), top / 10)
        grid = torch.cat([torch.zeros(1, dtype=torch.float64), torch.logspace(math.log10(low), math.log10(top), 80,
                                                                               dtype=torch.float64)])
        r = grid.to(dev, x.dtype).expand(len(x), -1).clone()
    else:
        r = torch.as_tensor(radii, dtype=x.dtype, device=dev)
        r = r.expand(len(x), -1).clone() if r.dim() == 1 else r.clone()
        if r.shape[0] != len(x) or (r < 0).any() or not torch.isfinite(r).all():
            raise ProbeError(f"radii must be finite, >= 0, of shape (K,) or ({len(x)}, K); got {tuple(r.shape)}")
        # column 0 is the input itself (radius 0): the clean loss, and a feasible start for the LP
        r = torch.cat([torch.zeros(len(x), 1, dtype=r.dtype, device=dev), r], 1)
    with model_hygiene(model, dev) as m:
        g = _worst_losses(m, x, y, r, loss=loss, norm=norm, steps=int(steps), space=space, batch_size=batch_size)
        value, lam, pi = _transport_lp(g.double().cpu().numpy(), r.double().cpu().numpy() ** power, rho)
        for _ in range(int(refine)):
            extra = _refined_radii(r, pi, points=8)
            g_extra = _worst_losses(m, x, y, extra, loss=loss, norm=norm, steps=int(steps), space=space,
                                    batch_size=batch_size)
            r, g = torch.cat([r, extra], 1), torch.cat([g, g_extra], 1)
            value, lam, pi = _transport_lp(g.double().cpu().numpy(), r.double().cpu().numpy() ** power, rho)
    return WorstCaseRisk(value=value, empirical=float(g[:, 0].double().mean()), multiplier=lam, rho=rho, norm=norm,
                         power=power, radii=r, losses=g, weights=torch.as_tensor(pi, device=dev))
