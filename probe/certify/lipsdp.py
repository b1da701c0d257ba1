r"""LipSDP: Lipschitz upper bounds by semidefinite programming (Fazlyab, Robey, Hassani, Morari
& Pappas, "Efficient and Accurate Estimation of Lipschitz Constants for Deep Neural Networks",
NeurIPS 2019).

For :math:`f(x) = W_l \phi(W_{l-1} \cdots \phi(W_0 x))` with activations slope-restricted in
:math:`[\alpha, \beta]` (ReLU, tanh: [0, 1]; sigmoid: [0, 1/4]; LeakyReLU(s): [s, 1]), stack
:math:`z = (x_0, x_1, \dots, x_l)`, let :math:`A = [\mathrm{blkdiag}(W_0..W_{l-1}), 0]`,
:math:`B = [0, I]`. Then :math:`\sqrt{\rho}` bounds the L2 Lipschitz constant whenever

.. math::
    \begin{bmatrix} A \\ B \end{bmatrix}^\top
    \begin{bmatrix} -2\alpha\beta T & (\alpha+\beta) T \\ (\alpha+\beta) T & -2T \end{bmatrix}
    \begin{bmatrix} A \\ B \end{bmatrix}
    + \mathrm{diag}(-\rho I, 0, \dots, 0, W_l^\top W_l) \preceq 0

for a diagonal :math:`T \succeq 0`: one multiplier per neuron (LipSDP-Neuron) or per layer
(LipSDP-Layer). Minimising :math:`\rho` is a small SDP, solved with cvxpy (Clarabel or SCS).
Consecutive affine layers (Flatten, BatchNorm, Conv on a fixed input shape) are merged into one
dense matrix first. L-inf and L1 bounds follow from the L2 bound by
:math:`\sqrt{n_{\mathrm{in}}}` and :math:`\sqrt{n_{\mathrm{out}}}`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn

from ..errors import ProbeError
from .graph import Graph
from .lipschitz import LipschitzBound, register_lipschitz_method

__all__ = ["lipsdp", "dense_layers"]

_SLOPES = {"relu": (0.0, 1.0), "tanh": (0.0, 1.0), "sigmoid": (0.0, 0.25), "convex": (0.0, 1.0)}
_MAX_DENSE = 1 << 22


def _dense(node: object, in_shape: tuple[int, ...]) -> np.ndarray:
    d = math.prod(in_shape)
    if isinstance(node.module, nn.Linear):
        return node.module.weight.detach().double().cpu().numpy()
    if d * math.prod(node.shape) > _MAX_DENSE:
        raise ProbeError(f"layer {node.name!r} is too large for LipSDP as a dense matrix ({d} inputs)")
    p = next(iter(node.module.parameters()), None) if node.module is not None else None
    dtype, dev = (p.dtype, p.device) if p is not None else (torch.get_default_dtype(), torch.device("cpu"))
    eye = torch.eye(d, dtype=dtype, device=dev).view((d,) + tuple(in_shape))
    with torch.no_grad():
        cols = (node(eye) - node(torch.zeros_like(eye[:1]))).reshape(d, -1)
    return cols.T.double().cpu().numpy()


def dense_layers(graph: Graph) -> tuple[list[np.ndarray], list[tuple[float, float, int]]]:
    """Weights ``[W_0, ..., W_l]`` (consecutive affine nodes merged) and per hidden layer (alpha, beta, size)."""
    weights: list[np.ndarray] = []
    slopes: list[tuple[float, float, int]] = []
    current = np.eye(math.prod(graph.nodes[0].shape))
    for node in graph.nodes[1:]:
        if node.kind == "affine":
            current = _dense(node, graph.nodes[node.inputs[0]].shape) @ current
        elif node.kind == "act":
            weights.append(current)
            a, b = (node.slope, 1.0) if node.act == "leaky_relu" else _SLOPES[node.act]
            slopes.append((min(a, b), max(a, b), current.shape[0]))
            current = np.eye(current.shape[0])
        else:
            raise ProbeError(f"LipSDP handles chains of affine layers and activations; {node.name!r} is a "
                             f"{node.kind}")
    weights.append(current)
    return weights, slopes


def _solve(weights: list[np.ndarray], slopes: list, variant: str, solver: str | None) -> tuple[float, float]:
    import cvxpy as cp

    n0 = weights[0].shape[1]
    sizes = [s[2] for s in slopes]
    n = sum(sizes)
    W_last = weights[-1]
    A = np.zeros((n, n0 + n))
    row, col = 0, 0
    for W in weights[:-1]:
        A[row:row + W.shape[0], col:col + W.shape[1]] = W
        row, col = row + W.shape[0], col + W.shape[1]
    B = np.hstack([np.zeros((n, n0)), np.eye(n)])
    alpha = np.concatenate([np.full(k, a) for a, _, k in slopes])
    beta = np.concatenate([np.full(k, b) for _, b, k in slopes])
    if variant == "neuron":
        t = cp.Variable(n, nonneg=True)
        tvec = t
    else:
        lam = cp.Variable(len(sizes), nonneg=True)
        tvec = cp.hstack([lam[i] * np.ones(k) for i, k in enumerate(sizes)])
    rho = cp.Variable(nonneg=True)
    # M is affine in the multipliers: sum_i t_i G_i with G_i built from row i of A and B
    D = n0 + n
    G = (-2 * alpha * beta)[:, None, None] * A[:, :, None] * A[:, None, :] \
        + (alpha + beta)[:, None, None] * (A[:, :, None] * B[:, None, :] + B[:, :, None] * A[:, None, :]) \
        - 2 * B[:, :, None] * B[:, None, :]
    last = np.zeros((D, D))
    k_last = W_last.shape[1]
    last[-k_last:, -k_last:] = W_last.T @ W_last
    E0 = np.zeros((D, D))
    E0[:n0, :n0] = np.eye(n0)
    M = cp.reshape(tvec @ G.reshape(n, D * D), (D, D), order="C") - rho * E0 + last
    M = (M + M.T) / 2
    prob = cp.Problem(cp.Minimize(rho), [M << 0])
    chosen = solver or ("CLARABEL" if "CLARABEL" in cp.installed_solvers() else "SCS")
    prob.solve(solver=chosen)
    if prob.status not in ("optimal", "optimal_inaccurate") or rho.value is None:
        raise ProbeError(f"the LipSDP program did not solve ({prob.status}) with {chosen}")
    # certify the returned point: the largest eigenvalue of M must not be positive
    top = float(np.linalg.eigvalsh(np.asarray(M.value)).max())
    return float(rho.value), top


def lipsdp(model: nn.Module, graph: Graph, *, norm: str = "l2", variant: str = "neuron", solver: str | None = None
           ) -> LipschitzBound:
    """LipSDP bound (see the module docstring); called through :func:`probe.certify.lipschitz_bound`."""
    try:
        import cvxpy  # noqa: F401
    except ImportError as err:  # pragma: no cover - cvxpy is an optional extra
        raise ProbeError("LipSDP needs cvxpy: pip install 'probe[sdp]' (or pip install cvxpy)") from err
    weights, slopes = dense_layers(graph)
    if not slopes:
        value = float(np.linalg.norm(weights[0], 2))
        top = 0.0
    else:
        rho, top = _solve(weights, slopes, variant, solver)
        value = math.sqrt(rho)
        scale = max(1.0, rho)
        if top > 1e-6 * scale:
            warnings.warn(f"LipSDP solution violates the matrix inequality by {top:.2e}; the bound is approximate",
                          stacklevel=3)
    factor = {"l2": 1.0, "linf": math.sqrt(weights[0].shape[1]), "l1": math.sqrt(weights[-1].shape[0])}[norm]
    return LipschitzBound(value=value * factor, norm=norm, method=f"lipsdp-{variant}",
                          layers={"max_eigenvalue": top})


register_lipschitz_method("lipsdp-neuron", lambda m, g, **kw: lipsdp(m, g, variant="neuron", **kw))
register_lipschitz_method("lipsdp-layer", lambda m, g, **kw: lipsdp(m, g, variant="layer", **kw))
