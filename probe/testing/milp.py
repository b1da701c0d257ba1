r"""Exact minimal L-inf adversarial distance of a small ReLU network by mixed-integer programming.

For a network :math:`z = W_L \mathrm{ReLU}(\dots \mathrm{ReLU}(W_1 x + b_1) \dots) + b_L` and
a label y, solves for every other class j

.. math:: \min \epsilon \ \text{s.t.}\ \lVert x - x_0\rVert_\infty \le \epsilon,\ z_j(x) \ge z_y(x),

with each unstable ReLU :math:`h = \max(0, a)`, :math:`a \in [l, u]`, encoded exactly by one
binary :math:`\delta` (Tjeng, Xiao & Tedrake, "Evaluating Robustness of Neural Networks with
Mixed Integer Programming", ICLR 2019): :math:`h \ge 0,\ h \ge a,\ h \le a - l(1 - \delta),\
h \le u \delta`. The big-M constants l, u are interval bounds over the box
:math:`x_0 \pm \epsilon_{\max}`, computed here independently of :mod:`probe.certify`. Solved
with HiGHS through :func:`scipy.optimize.milp`; the answer is the minimum over j.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import Bounds, LinearConstraint, milp
from torch import nn

from ..errors import ProbeError

__all__ = ["relu_network_layers", "exact_linf_margin", "exact_linf_minimum"]


def relu_network_layers(model: nn.Module) -> list[tuple[np.ndarray, np.ndarray]]:
    """Weights and biases of an ``nn.Sequential`` (Flatten?) Linear, ReLU, Linear, ..., Linear."""
    mods = [m for m in model.modules() if not isinstance(m, nn.Sequential)]
    mods = [m for m in mods if not isinstance(m, (nn.Flatten, nn.Identity))]
    layers = []
    for i, m in enumerate(mods):
        want = nn.Linear if i % 2 == 0 else nn.ReLU
        if not isinstance(m, want):
            raise ProbeError(f"exact_linf_margin handles alternating Linear/ReLU networks; layer {i} is "
                             f"{type(m).__name__}")
        if isinstance(m, nn.Linear):
            b = m.bias.detach() if m.bias is not None else torch.zeros(m.out_features)
            layers.append((m.weight.detach().double().cpu().numpy(), b.double().cpu().numpy()))
    if len(mods) % 2 == 0:
        raise ProbeError("exact_linf_margin needs the network to end with a Linear layer")
    return layers


def _intervals(layers: list, lo: np.ndarray, hi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for W, b in layers[:-1]:
        c, r = (lo + hi) / 2, (hi - lo) / 2
        l, u = W @ c + b - np.abs(W) @ r, W @ c + b + np.abs(W) @ r
        out.append((l, u))
        lo, hi = np.maximum(l, 0), np.maximum(u, 0)
    return out


def _solve(layers: list, x0: np.ndarray, y: int, j: int, eps_max: float, pre: list, time_limit: float) -> float:
    d = x0.size
    # variable layout: x (d), eps (1), then per hidden layer: h (n_k), delta (n_k)
    sizes = [W.shape[0] for W, _ in layers[:-1]]
    n_var = d + 1 + 2 * sum(sizes)
    lb, ub = np.full(n_var, -np.inf), np.full(n_var, np.inf)
    lb[:d], ub[:d] = x0 - eps_max, x0 + eps_max
    lb[d], ub[d] = 0.0, eps_max
    integrality = np.zeros(n_var)
    rows, lo_c, hi_c = [], [], []

    def add(coef: dict, lo: float, hi: float) -> None:
        row = np.zeros(n_var)
        for k, v in coef.items():
            row[k] += v
        rows.append(row)
        lo_c.append(lo)
        hi_c.append(hi)

    eye = np.eye(d)
    for i in range(d):  # |x_i - x0_i| <= eps
        rows.append(np.concatenate([eye[i], [-1.0], np.zeros(n_var - d - 1)]))
        lo_c.append(-np.inf)
        hi_c.append(x0[i])
        rows.append(np.concatenate([-eye[i], [-1.0], np.zeros(n_var - d - 1)]))
        lo_c.append(-np.inf)
        hi_c.append(-x0[i])
    prev = list(range(d))
    offset = d + 1
    for (W, b), (l, u), n_k in zip(layers[:-1], pre, sizes):
        h = list(range(offset, offset + n_k))
        dl = list(range(offset + n_k, offset + 2 * n_k))
        offset += 2 * n_k
        for k in range(n_k):
            a = {p: -W[k, t] for t, p in enumerate(prev)}  # -(W h_prev)
            lb[dl[k]], ub[dl[k]] = 0.0, 0.0
            if u[k] <= 0:
                lb[h[k]], ub[h[k]] = 0.0, 0.0
            elif l[k] >= 0:
                lb[h[k]], ub[h[k]] = 0.0, np.inf
                add({**a, h[k]: 1.0}, b[k], b[k])                         # h = W h_prev + b
            else:
                lb[h[k]], ub[h[k]] = 0.0, u[k]
                ub[dl[k]] = 1.0
                integrality[dl[k]] = 1
                add({**a, h[k]: 1.0}, b[k], np.inf)                       # h >= a
                add({**a, h[k]: 1.0, dl[k]: -l[k]}, -np.inf, b[k] - l[k])  # h <= a - l (1 - delta)
                add({h[k]: 1.0, dl[k]: -u[k]}, -np.inf, 0.0)               # h <= u delta
        prev = h
    W, b = layers[-1]
    add({p: W[j, t] - W[y, t] for t, p in enumerate(prev)}, b[y] - b[j], np.inf)  # z_j >= z_y
    c = np.zeros(n_var)
    c[d] = 1.0
    res = milp(c, constraints=LinearConstraint(np.array(rows), lo_c, hi_c), integrality=integrality,
               bounds=Bounds(lb, ub), options={"time_limit": time_limit, "mip_rel_gap": 1e-9})
    if res.status == 2:  # infeasible: no class change within eps_max
        return float("inf")
    if res.x is None or res.status != 0:
        raise ProbeError(f"the MILP for class {j} did not solve to optimality: {res.message}")
    return float(res.x[d])


def exact_linf_margin(model: nn.Module, x: torch.Tensor, *, eps_max: float | torch.Tensor, labels: object = None,
                      time_limit: float = 60.0) -> torch.Tensor:
    """Exact minimal L-inf distance to a class change, per input (``inf`` if none within ``eps_max``).

    Parameters
    ----------
    model : nn.Sequential of alternating Linear and ReLU layers (a leading Flatten allowed)
    x : torch.Tensor, shape (N, ...)
    eps_max : float or torch.Tensor of shape (N,)
        Search radius; the big-M constants come from interval bounds on this box, so a tight
        value (e.g. an attack's distance) makes the program fast.
    labels : array-like of int, optional
        Default: the model's predictions.
    time_limit : float, default 60
        Seconds per program.

    Returns
    -------
    torch.Tensor of float64, shape (N,)
    """
    layers = relu_network_layers(model)
    xs = x.detach().double().cpu().flatten(1).numpy()
    with torch.no_grad():
        z = model(x).detach().double().cpu().numpy()
    ys = z.argmax(1) if labels is None else np.asarray(torch.as_tensor(labels).cpu()).reshape(-1)
    emax = np.broadcast_to(np.asarray(torch.as_tensor(eps_max, dtype=torch.float64).cpu()), (len(xs),))
    bad = ~(np.isfinite(emax) & (emax > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ProbeError(f"eps_max[{i}] = {emax[i]} must be positive and finite (it sets the big-M constants)")
    out = np.empty(len(xs))
    for i, (x0, y) in enumerate(zip(xs, ys)):
        if z[i].argmax() != y:
            out[i] = 0.0
            continue
        pre = _intervals(layers, x0 - emax[i], x0 + emax[i])
        out[i] = min(_solve(layers, x0, int(y), j, float(emax[i]), pre, time_limit)
                     for j in range(z.shape[1]) if j != y)
    return torch.as_tensor(out)


def exact_linf_minimum(model: nn.Module, x0: torch.Tensor, eps: float, c: object, *, time_limit: float = 60.0
                       ) -> float:
    r"""Exact :math:`\min_{\lVert x - x_0\rVert_\infty \le \epsilon} c^\top f(x)` of a small ReLU network by MILP.

    The same exact encoding of each unstable ReLU as :func:`exact_linf_margin` (big-M constants from
    interval bounds on the box), solved by HiGHS.

    Parameters
    ----------
    model : nn.Sequential of alternating Linear and ReLU layers
    x0 : torch.Tensor, shape (d,) or (1, d)
    eps : float
    c : array-like, shape (K,)
        Weights of the outputs.
    """
    layers = relu_network_layers(model)
    x0 = x0.detach().double().cpu().reshape(-1).numpy()
    c = np.asarray(torch.as_tensor(c, dtype=torch.float64).cpu()).reshape(-1)
    d = x0.size
    pre = _intervals(layers, x0 - eps, x0 + eps)
    sizes = [W.shape[0] for W, _ in layers[:-1]]
    n_var = d + 2 * sum(sizes)
    lb, ub = np.full(n_var, -np.inf), np.full(n_var, np.inf)
    lb[:d], ub[:d] = x0 - eps, x0 + eps
    integrality = np.zeros(n_var)
    rows, lo_c, hi_c = [], [], []
    prev, offset = list(range(d)), d
    for (W, b), (l, u), n_k in zip(layers[:-1], pre, sizes):
        h, dl = list(range(offset, offset + n_k)), list(range(offset + n_k, offset + 2 * n_k))
        offset += 2 * n_k
        for k in range(n_k):
            a = np.zeros(n_var)
            a[prev] = -W[k]
            lb[dl[k]], ub[dl[k]] = 0.0, 0.0
            if u[k] <= 0:
                lb[h[k]], ub[h[k]] = 0.0, 0.0
                continue
            row = a.copy()
            row[h[k]] = 1.0
            if l[k] >= 0:
                lb[h[k]] = 0.0
                rows.append(row), lo_c.append(b[k]), hi_c.append(b[k])            # h = W h_prev + b
                continue
            lb[h[k]], ub[h[k]], ub[dl[k]], integrality[dl[k]] = 0.0, u[k], 1.0, 1
            rows.append(row), lo_c.append(b[k]), hi_c.append(np.inf)                # h >= a
            r2 = row.copy()
            r2[dl[k]] = -l[k]
            rows.append(r2), lo_c.append(-np.inf), hi_c.append(b[k] - l[k])        # h <= a - l (1 - delta)
            r3 = np.zeros(n_var)
            r3[h[k]], r3[dl[k]] = 1.0, -u[k]
            rows.append(r3), lo_c.append(-np.inf), hi_c.append(0.0)                 # h <= u delta
        prev = h
    W, b = layers[-1]
    obj = np.zeros(n_var)
    obj[prev] = c @ W
    cons = [LinearConstraint(np.array(rows), lo_c, hi_c)] if rows else []
    res = milp(obj, constraints=cons, integrality=integrality, bounds=Bounds(lb, ub),
               options={"time_limit": time_limit, "mip_rel_gap": 1e-10})
    if res.x is None or res.status != 0:
        raise ProbeError(f"the MILP did not solve to optimality: {res.message}")
    return float(res.fun + c @ b)
