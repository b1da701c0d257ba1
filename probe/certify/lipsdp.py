r"""LipSDP: Lipschitz upper bounds by semidefinite programming (Fazlyab, Robey, Hassani, Morari
& Pappas, "Efficient and Accurate Estimation of Lipschitz Constants for Deep Neural Networks",
NeurIPS 2019).

For :math:`f(x) = W_l \phi(W_{l-1} \cdots \phi(W_0 x))` with activations slope-restricted in
:math:`[\alpha, \beta]` (ReLU, tanh: [0, 1]; sigmoid: [0, 1/4]; LeakyReLU(s): [s, 1]), stack
:math:`z = (x_0, x_1, \dots, x_l)`, let :math:`A = [\mathrm{blkdiag}(W_0..W_{l-1}), 0]`,
:math:`B = [0, I]`. Then :math:`\sqrt{\rho}` bounds the L2 Lipschitz constant whenever

.. math::
    M(\rho, T) = \begin{bmatrix} A \\ B \end{bmatrix}^\top
    \begin{bmatrix} -2\alpha\beta T & (\alpha+\beta) T \\ (\alpha+\beta) T & -2T \end{bmatrix}
    \begin{bmatrix} A \\ B \end{bmatrix}
    + \mathrm{diag}(-\rho I, 0, \dots, 0, W_l^\top W_l) \preceq 0

for a diagonal :math:`T \succeq 0`: one multiplier per neuron (LipSDP-Neuron) or per layer
(LipSDP-Layer). Consecutive affine layers (Flatten, BatchNorm, Conv on a fixed input shape) are
merged into one dense matrix first. L-inf and L1 bounds follow from the L2 bound by
:math:`\sqrt{n_{\mathrm{in}}}` and :math:`\sqrt{n_{\mathrm{out}}}`.

Solvers
-------
``solver=None`` (or ``"ipm"``): a primal-dual interior-point method written for this LMI: the
HKM search direction (Helmberg, Rendl, Vanderbei & Wolkowicz, SIAM J. Optim. 1996; Kojima,
Shindoh & Hara 1997; Monteiro 1997) with Mehrotra's predictor-corrector, on the pair
:math:`\min \rho` s.t. :math:`S = -M(\rho, T) \succeq 0, t \ge 0` and its dual
:math:`\max \operatorname{tr}(Z\,\mathrm{diag}(0, .., W_l^\top W_l))` s.t.
:math:`\operatorname{tr}(Z E_0) = 1`, :math:`\operatorname{tr}(Z G_i) \ge 0`, :math:`Z \succeq 0`.
The primal iterates stay strictly feasible from a start built by a Schur-complement recursion
over the layers; it stops when the duality gap :math:`\operatorname{tr}(SZ) + w^\top t` is below
``gap_tol`` times :math:`\rho`. Each multiplier enters :math:`M` through a rank-two matrix
:math:`G_i = [a_i\ e_i]\, C_i\, [a_i\ e_i]^\top` (:math:`a_i` the row of :math:`A`, :math:`e_i`
the row of :math:`B`), so the Schur matrix
:math:`\operatorname{tr}(G_i S^{-1} G_j Z)` comes from :math:`[A; B]\, S^{-1} [A; B]^\top` and
:math:`[A; B]\, Z [A; B]^\top` in :math:`O(D^3 + nD^2 + n^2)` per iteration (:math:`D = \dim M`,
:math:`n` neurons), where a generic conic solver factorises a KKT system over the
:math:`D(D+1)/2` entries of the PSD cone. Any other name (``"CLARABEL"``, ``"SCS"``, ...) solves
the same program through cvxpy, with :math:`M` assembled from one sparse coefficient matrix.

Soundness
---------
The bound never rests on a solver's tolerance. Whatever the solver, the returned
:math:`(\rho, T)` is checked in double precision: negative multipliers (solver round-off) are
set to zero, so :math:`T \succeq 0` holds exactly; :math:`M(\rho, T)` is rebuilt from the weights
and ``numpy.linalg.eigvalsh`` must find its largest eigenvalue below
:math:`-\eta`, :math:`\eta = 16 D \epsilon \lVert M \rVert_2` (a margin for the rounding of the
eigenvalue computation and of the assembly). If it is not, :math:`T` is kept and :math:`\rho`
is raised to what the Schur complement of the input block demands,
:math:`\lambda_{\max}(M_{0h} (-M_{hh})^{-1} M_{h0} + M_{00} + \rho I)` plus a margin, and
checked again; if the hidden block :math:`M_{hh}` itself is not negative definite no
:math:`\rho` helps and a :class:`probe.ProbeError` is raised. The interior-point iterates are
strictly feasible by construction (each accepted step passes a Cholesky factorisation of
:math:`-M`), so for them the check passes unchanged. The duality gap the interior-point method
reports (``layers["gap"]``) measures accuracy, not soundness.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..devices import blas_threads
from ..errors import ProbeError
from ..progress import enabled
from .graph import Graph
from .lipschitz import LipschitzBound, register_lipschitz_method

__all__ = ["lipsdp", "dense_layers", "lipsdp_expected_seconds"]

_SLOPES = {"relu": (0.0, 1.0), "tanh": (0.0, 1.0), "sigmoid": (0.0, 0.25), "convex": (0.0, 1.0)}
_MAX_DENSE = 1 << 22
# warn before solves expected to take longer than this (seconds)
_WARN_SECONDS = 10.0
# sustained double-precision rate assumed for the estimate (one or two CPU cores, numpy/LAPACK)
_FLOPS = 4e9
# primal-dual iterations to gap_tol = 1e-8, with room (19 on the 64-64-10 MLP, 13 for its layer variant)
_ITERATIONS = 30
# a cvxpy solver on the 192 x 192 LMI of a 64-64-10 MLP (Clarabel, two quiet cores), scaled as D^6
_CVXPY_SECONDS_AT_192 = 500.0


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


# ------------------------------------------------------------------------------------------------------------------
# the LMI
@dataclass(frozen=True)
class _LMI:
    """Data of M(rho, t) = sum_i t_i G_i - rho E0 + C, G_i = [a_i e_i] C_i [a_i e_i]^T."""

    A: np.ndarray  # (n, D): row i is a_i, the pre-activation of neuron i as a function of z
    c11: np.ndarray  # (n,) -2 alpha beta
    c12: np.ndarray  # (n,) alpha + beta
    c22: np.ndarray  # (n,) -2
    C: np.ndarray  # (D, D) W_l^T W_l on the last hidden block
    n0: int
    groups: np.ndarray  # (n,) layer index of each neuron
    weights: tuple  # [W_0, ..., W_l]
    alphas: tuple
    betas: tuple

    @property
    def n(self) -> int:
        return self.A.shape[0]

    @property
    def D(self) -> int:
        return self.A.shape[1]


def _lmi(weights: list[np.ndarray], slopes: list) -> _LMI:
    n0 = weights[0].shape[1]
    sizes = [s[2] for s in slopes]
    n = sum(sizes)
    A = np.zeros((n, n0 + n))
    row, col = 0, 0
    for W in weights[:-1]:
        A[row:row + W.shape[0], col:col + W.shape[1]] = W
        row, col = row + W.shape[0], col + W.shape[1]
    alpha = np.concatenate([np.full(k, a) for a, _, k in slopes])
    beta = np.concatenate([np.full(k, b) for _, b, k in slopes])
    C = np.zeros((n0 + n, n0 + n))
    k_last = weights[-1].shape[1]
    C[-k_last:, -k_last:] = weights[-1].T @ weights[-1]
    groups = np.concatenate([np.full(k, i) for i, k in enumerate(sizes)])
    return _LMI(A=A, c11=-2 * alpha * beta, c12=alpha + beta, c22=np.full(n, -2.0), C=C, n0=n0, groups=groups,
                weights=tuple(weights), alphas=tuple(s[0] for s in slopes), betas=tuple(s[1] for s in slopes))


def _matrix(lmi: _LMI, rho: float, t: np.ndarray) -> np.ndarray:
    """M(rho, t), assembled from rows of A rather than from n dense D x D matrices."""
    n0, A = lmi.n0, lmi.A
    M = (A.T * (lmi.c11 * t)) @ A + lmi.C
    cross = (lmi.c12 * t)[:, None] * A  # B^T diag(c12 t) A: rows n0.. of M
    M[n0:] += cross
    M[:, n0:] += cross.T
    M[np.arange(n0, lmi.D), np.arange(n0, lmi.D)] += lmi.c22 * t
    M[np.arange(n0), np.arange(n0)] -= rho
    return (M + M.T) / 2


# ------------------------------------------------------------------------------------------------------------------
# soundness
def _margin(M: np.ndarray, top_abs: float) -> float:
    return 16 * M.shape[0] * np.finfo(float).eps * max(top_abs, 1e-300)


def _certify(lmi: _LMI, rho: float, t: np.ndarray) -> tuple[float, float]:
    """(rho', max eigenvalue of M(rho', t)) with M(rho', t) negative definite beyond rounding; rho' >= rho."""
    t = np.maximum(np.asarray(t, dtype=float), 0.0)
    M = _matrix(lmi, rho, t)
    ev = np.linalg.eigvalsh(M)
    if ev[-1] <= -_margin(M, np.abs(ev).max()):
        return rho, float(ev[-1])
    n0 = lmi.n0
    H = M[n0:, n0:]
    evh = np.linalg.eigvalsh(H)
    if evh[-1] > -_margin(H, np.abs(evh).max()):
        raise ProbeError(f"the LipSDP multipliers do not certify a bound: the hidden block of the matrix "
                         f"inequality has eigenvalue {evh[-1]:.3e} >= 0, which no rho repairs")
    # rho needed by the Schur complement of the input block, then raised until eigvalsh agrees
    M0 = M[:n0, :n0] + rho * np.eye(n0)
    L = np.linalg.cholesky(-H)
    Y = np.linalg.solve(L, M[n0:, :n0])
    need = float(np.linalg.eigvalsh(M0 + Y.T @ Y)[-1])
    step = max(abs(need), 1.0) * 1e-12
    for _ in range(60):
        new = max(rho, need + step)
        M = _matrix(lmi, new, t)
        ev = np.linalg.eigvalsh(M)
        if ev[-1] <= -_margin(M, np.abs(ev).max()):
            return new, float(ev[-1])
        step *= 4
    raise ProbeError("the LipSDP certificate could not be repaired by raising rho")  # pragma: no cover


# ------------------------------------------------------------------------------------------------------------------
# the interior-point method
def _start(lmi: _LMI) -> tuple[float, np.ndarray]:
    r"""A strictly feasible (rho, t) from a block-tridiagonal Schur recursion with T_k = tau_k I.

    With :math:`S = -M`, :math:`S_{ll} = 2\tau_l I - W_l^\top W_l \succeq s_l I` and, going down,
    :math:`S_{kk} - S_{k,k+1} S_{k+1}^{-1} S_{k+1,k} \succeq (2\tau_k - d_k) I` where
    :math:`d_k = \lVert W_k\rVert^2 \tau_{k+1}((\alpha+\beta)^2 \tau_{k+1}/s_{k+1} - 2\min(\alpha\beta, 0))`.
    """
    W = lmi.weights
    l_hidden = len(lmi.alphas)
    norms2 = [float(np.linalg.norm(w, 2)) ** 2 for w in W]
    tau = [0.0] * l_hidden
    tau[-1] = norms2[-1] if norms2[-1] > 0 else 1.0
    s = 2 * tau[-1] - norms2[-1]
    rho = 0.0
    for k in range(l_hidden - 1, -1, -1):
        a, b = lmi.alphas[k], lmi.betas[k]
        d = norms2[k] * tau[k] * ((a + b) ** 2 * tau[k] / s - 2 * min(a * b, 0.0))
        if k == 0:
            rho = 2 * d + 1e-3 * max(d, 1e-6)
        else:
            tau[k - 1] = d if d > 0 else tau[k]
            s = 2 * tau[k - 1] - d
    t = np.asarray(tau)[lmi.groups]
    for _ in range(30):
        try:
            np.linalg.cholesky(-_matrix(lmi, rho, t))
            return rho, t
        except np.linalg.LinAlgError:
            rho, t = 2 * rho, 2 * t
            t[lmi.groups == l_hidden - 1] *= 2
    raise ProbeError("could not find a strictly feasible starting point for LipSDP")  # pragma: no cover


def _tr_G(lmi: _LMI, X: np.ndarray) -> np.ndarray:
    """tr(G_i X) for every neuron i, X symmetric (D, D)."""
    n0, A = lmi.n0, lmi.A
    AX = A @ X
    idx = np.arange(lmi.n)
    return lmi.c11 * np.sum(AX * A, 1) + 2 * lmi.c12 * AX[idx, n0 + idx] + lmi.c22 * X[n0 + idx, n0 + idx]


def _schur(lmi: _LMI, V: np.ndarray, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Blocks of the HKM Schur matrix tr(F_j V F_k Z) for F_rho = E0, F_i = -G_i (rank two)."""
    n0, A = lmi.n0, lmi.A

    def pairs(X: np.ndarray) -> tuple[dict, np.ndarray]:
        XA = X @ A.T  # (D, n)
        Pae = XA[n0:].T
        P = {(0, 0): A @ XA, (0, 1): Pae, (1, 0): Pae.T, (1, 1): X[n0:, n0:]}
        return P, np.concatenate([XA[:n0], X[:n0, n0:]], axis=1)  # E0-rows of X [a_i | e_i]

    PV, XV = pairs(V)
    PZ, XZ = pairs(Z)
    c = {(0, 0): lmi.c11, (0, 1): lmi.c12, (1, 0): lmi.c12, (1, 1): lmi.c22}
    # tr(G_i V G_j Z) = sum_pqrs C_i[p,q] C_j[r,s] (u_i^q V u_j^r)(u_j^s Z u_i^p)
    H_tt = np.zeros((lmi.n, lmi.n))
    for p in (0, 1):
        for q in (0, 1):
            for r in (0, 1):
                for s in (0, 1):
                    H_tt += np.outer(c[p, q], c[r, s]) * PV[q, r] * PZ[s, p].T
    n = lmi.n
    # tr(E0 V G_i Z) = sum_pq C_i[p,q] (Z u_i^q)_0 . (V u_i^p)_0
    va, ve, za, ze = XV[:, :n], XV[:, n:], XZ[:, :n], XZ[:, n:]
    H_rt = -(lmi.c11 * np.sum(za * va, 0) + lmi.c12 * (np.sum(ze * va, 0) + np.sum(za * ve, 0))
             + lmi.c22 * np.sum(ze * ve, 0))
    H_rr = float(np.sum(V[:n0, :n0] * Z[:n0, :n0]))
    return H_tt, H_rt, H_rr


def _step_to_boundary(Linv: np.ndarray, dX: np.ndarray) -> float:
    """Largest a with X + a dX positive semidefinite, X = L L^T, Linv = L^{-1} (inf if every a >= 0 is)."""
    Y = Linv @ dX @ Linv.T
    low = float(np.linalg.eigvalsh((Y + Y.T) / 2)[0])
    return -1.0 / low if low < 0 else math.inf


def _inv_chol(X: np.ndarray) -> np.ndarray:
    """L^{-1} for X = L L^T (raises numpy.linalg.LinAlgError unless X is positive definite)."""
    from scipy.linalg import solve_triangular

    L = np.linalg.cholesky(X)
    return solve_triangular(L, np.eye(X.shape[0]), lower=True)


@dataclass
class _Iterate:
    """Primal (rho, lam; S = -M, Ls = chol(S)^-1) and dual (Z, w; Lz = chol(Z)^-1) interior point."""

    rho: float
    lam: np.ndarray
    S: np.ndarray
    Ls: np.ndarray
    Z: np.ndarray
    w: np.ndarray
    Lz: np.ndarray


@dataclass(frozen=True)
class _Step:
    dy: np.ndarray  # (d rho, d lam)
    dS: np.ndarray
    dZ: np.ndarray
    dw: np.ndarray

    @property
    def dl(self) -> np.ndarray:
        return self.dy[1:]


def _direction(lmi: _LMI, agg: np.ndarray, it: _Iterate, V: np.ndarray, schur: tuple, mu: float,
               corr: tuple | None) -> _Step:
    """HKM search direction for target mu, with Mehrotra's second-order correction ``corr`` = (dS dZ, dl dw)."""
    Mf, scale, trFV = schur
    n0, m = lmi.n0, it.lam.size
    rhs = mu * trFV - np.concatenate([[1.0], np.zeros(m)])
    if corr is not None:
        cS, cl = corr
        rhs -= np.concatenate([[np.trace(cS[:n0, :n0])], -(agg.T @ _tr_G(lmi, cS)) + cl / it.lam])
    dy = scale * np.linalg.solve(Mf.T, np.linalg.solve(Mf, rhs * scale))
    dS = -(_matrix(lmi, dy[0], agg @ dy[1:]) - lmi.C)
    VdSZ = V @ dS @ it.Z
    dZ = mu * V - it.Z - (VdSZ + VdSZ.T) / 2
    dw = mu / it.lam - it.w - it.w * dy[1:] / it.lam
    if corr is not None:
        dZ -= corr[0]
        dw -= corr[1] / it.lam
    return _Step(dy, dS, dZ, dw)


def _lengths(it: _Iterate, d: _Step) -> tuple[float, float]:
    """Primal and dual step lengths: 0.95 of the way to the boundary, at most 1."""
    ap = min(_step_to_boundary(it.Ls, d.dS), *(-it.lam[d.dl < 0] / d.dl[d.dl < 0]), math.inf)
    ad = min(_step_to_boundary(it.Lz, d.dZ), *(-it.w[d.dw < 0] / d.dw[d.dw < 0]), math.inf)
    return min(1.0, 0.95 * ap), min(1.0, 0.95 * ad)


def _take(lmi: _LMI, agg: np.ndarray, it: _Iterate, d: _Step, ap: float, ad: float) -> None:
    """Move ``it`` along ``d``; a Cholesky factorisation confirms each new point is interior (else halve)."""
    for _ in range(60):
        rho, lam = it.rho + ap * d.dy[0], it.lam + ap * d.dl
        try:
            S = -_matrix(lmi, rho, agg @ lam)
            it.Ls, it.S, it.rho, it.lam = _inv_chol(S), S, rho, lam
            break
        except np.linalg.LinAlgError:
            ap *= 0.5
    for _ in range(60):
        Z = it.Z + ad * d.dZ
        Z = (Z + Z.T) / 2
        try:
            it.Lz, it.Z, it.w = _inv_chol(Z), Z, it.w + ad * d.dw
            break
        except np.linalg.LinAlgError:
            ad *= 0.5


def _schur_system(lmi: _LMI, agg: np.ndarray, it: _Iterate, V: np.ndarray) -> tuple:
    """Cholesky factor of the (diagonally scaled) Schur matrix, the scaling, and tr(F_j V)."""
    m, n0 = it.lam.size, lmi.n0
    H_tt, H_rt, H_rr = _schur(lmi, V, it.Z)
    M = np.empty((m + 1, m + 1))
    M[0, 0] = H_rr
    M[0, 1:] = M[1:, 0] = agg.T @ H_rt
    M[1:, 1:] = agg.T @ H_tt @ agg + np.diag(it.w / it.lam)
    scale = 1.0 / np.sqrt(np.diag(M))
    Mf = np.linalg.cholesky(M * np.outer(scale, scale))
    trFV = np.concatenate([[np.trace(V[:n0, :n0])], -(agg.T @ _tr_G(lmi, V)) + 1.0 / it.lam])
    return Mf, scale, trFV


def _solve_ipm(lmi: _LMI, variant: str, gap_tol: float, progress: bool | None, max_iter: int = 100
               ) -> tuple[float, np.ndarray, float]:
    """(rho, t, duality gap) by a primal-dual interior-point method (see the module docstring)."""
    from tqdm.auto import tqdm

    m = int(lmi.groups.max()) + 1 if variant == "layer" else lmi.n
    agg = np.zeros((lmi.n, m))
    agg[np.arange(lmi.n), lmi.groups if variant == "layer" else np.arange(lmi.n)] = 1.0
    rho, t = _start(lmi)
    lam = (agg.T @ t) / agg.sum(0)
    n0, nu = lmi.n0, lmi.D + m
    S = -_matrix(lmi, rho, agg @ lam)
    Ls = _inv_chol(S)
    V = Ls.T @ Ls
    # dual start on the central path of the start point (Z S = mu I, w lam = mu), scaled so that tr(Z E0) = 1
    mu0 = 1.0 / np.trace(V[:n0, :n0])
    it = _Iterate(rho, lam, S, Ls, mu0 * V, mu0 / lam, _inv_chol(mu0 * V))
    bar = tqdm(total=max(1, math.ceil(-math.log10(gap_tol))), desc="LipSDP",
               disable=not enabled(progress), leave=False)
    gap, history = math.inf, []
    try:
        for _ in range(max_iter):
            V = it.Ls.T @ it.Ls
            gap = float(np.sum(it.S * it.Z) + it.w @ it.lam)
            resid = np.concatenate([[np.trace(it.Z[:n0, :n0]) - 1.0], -(agg.T @ _tr_G(lmi, it.Z)) + it.w])
            r_norm = float(np.abs(resid).max())
            digits = math.floor(math.log10(max(abs(it.rho), 1e-300) / max(gap, 1e-300)))
            bar.update(min(bar.total, max(0, digits)) - bar.n)
            bar.set_postfix(rho=f"{it.rho:.6g}", gap=f"{gap:.1e}")
            # the dual residual is scaled by tr(Z E0) = 1; late on, rounding keeps it near 1e-6 at best
            if gap <= gap_tol * abs(it.rho) and r_norm <= 1e-6:
                break
            history.append(gap)
            if gap < 1e-5 * abs(it.rho) and len(history) > 5 and gap > 0.5 * history[-5]:
                break  # no more progress in double precision
            schur = _schur_system(lmi, agg, it, V)
            # Mehrotra predictor-corrector: an affine step sets the target mu and the second-order term
            aff = _direction(lmi, agg, it, V, schur, 0.0, None)
            ap, ad = _lengths(it, aff)
            g_aff = float(np.sum((it.S + ap * aff.dS) * (it.Z + ad * aff.dZ)) + (it.w + ad * aff.dw)
                          @ (it.lam + ap * aff.dl))
            mu = (g_aff / gap) ** 3 * gap / nu
            cS = V @ aff.dS @ aff.dZ
            d = _direction(lmi, agg, it, V, schur, mu, ((cS + cS.T) / 2, aff.dl * aff.dw))
            _take(lmi, agg, it, d, *_lengths(it, d))
    finally:
        bar.close()
    return float(it.rho), agg @ it.lam, float(gap)


# ------------------------------------------------------------------------------------------------------------------
# cvxpy
def _solve_cvxpy(lmi: _LMI, variant: str, solver: str, options: dict | None = None
                 ) -> tuple[float, np.ndarray]:
    import cvxpy as cp
    import scipy.sparse as sp

    n, D, n0, A = lmi.n, lmi.D, lmi.n0, lmi.A
    # column i of K is vec(G_i) (row-major), built from the nonzeros of a_i only
    rows, cols, vals = [], [], []
    for i in range(n):
        nz = np.flatnonzero(A[i])
        a = A[i, nz]
        e = n0 + i
        if lmi.c11[i] != 0:
            rows.append((nz[:, None] * D + nz[None, :]).ravel())
            vals.append((lmi.c11[i] * np.outer(a, a)).ravel())
            cols.append(np.full(nz.size**2, i))
        rows += [nz * D + e, e * D + nz, np.array([e * D + e])]
        vals += [lmi.c12[i] * a, lmi.c12[i] * a, np.array([lmi.c22[i]])]
        cols += [np.full(nz.size, i), np.full(nz.size, i), np.array([i])]
    K = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(D * D, n))
    E0 = np.zeros((D, D))
    E0[np.arange(n0), np.arange(n0)] = 1.0
    if variant == "neuron":
        t = cp.Variable(n, nonneg=True)
        tvec = t
    else:
        lam = cp.Variable(int(lmi.groups.max()) + 1, nonneg=True)
        agg = sp.csr_matrix((np.ones(n), (np.arange(n), lmi.groups)), shape=(n, lam.size))
        tvec = agg @ lam
    rho = cp.Variable(nonneg=True)
    M = cp.reshape(K @ tvec, (D, D), order="C") - rho * E0 + lmi.C
    prob = cp.Problem(cp.Minimize(rho), [(M + M.T) / 2 << 0])
    prob.solve(solver=solver, **(options or {}))
    if prob.status not in ("optimal", "optimal_inaccurate") or rho.value is None:
        raise ProbeError(f"the LipSDP program did not solve ({prob.status}) with {solver}")
    return float(rho.value), np.asarray(tvec.value, dtype=float).reshape(-1)


# ------------------------------------------------------------------------------------------------------------------
def lipsdp_expected_seconds(n_inputs: int, neurons: int, *, variant: str = "neuron", solver: str | None = None
                            ) -> float:
    r"""Rough wall time of a LipSDP solve, for the warning before a long one.

    Parameters
    ----------
    n_inputs : int
        Input dimension :math:`n_0`.
    neurons : int
        Hidden neurons :math:`n` (the LMI has dimension :math:`D = n_0 + n`).
    variant : {"neuron", "layer"}, default "neuron"
    solver : str, optional
        ``None``/``"ipm"`` for the built-in interior-point method, otherwise a cvxpy solver name.

    Returns
    -------
    float
        Seconds. Interior point: about 30 iterations of :math:`40 D^3 + 12 n D^2 + 32 n^2 + m^3/3`
        floating-point operations at 4 GFlop/s (:math:`m` multipliers: :math:`n` or the number of
        layers). A cvxpy solver factorises a KKT system over the :math:`D(D+1)/2` entries of the
        PSD cone, :math:`O(D^6)` per iteration: 500 s at :math:`D = 192` (Clarabel on a quiet
        two-core machine; 2348 s on a loaded one), scaled by :math:`(D / 192)^6`. An order of
        magnitude, not a promise.
    """
    D, n = n_inputs + neurons, neurons
    if solver is None or str(solver).lower() == "ipm":
        m = neurons if variant == "neuron" else 1
        flops = 40 * D**3 + 12 * n * D**2 + 32 * n**2 + m**3 / 3
        return _ITERATIONS * flops / _FLOPS
    return _CVXPY_SECONDS_AT_192 * (D / 192) ** 6


def lipsdp(model: nn.Module, graph: Graph, *, norm: str = "l2", variant: str = "neuron", solver: str | None = None,
           solver_options: dict | None = None, gap_tol: float = 1e-8, threads: int | None = 1,
           progress: bool | None = None) -> LipschitzBound:
    r"""LipSDP bound; called through :func:`probe.certify.lipschitz_bound` (``method="lipsdp-neuron"`` or
    ``"lipsdp-layer"``).

    Parameters
    ----------
    model : torch.nn.Module
    graph : Graph
        The model's captured graph (a chain of affine layers and slope-restricted activations).
    norm : {"l2", "linf", "l1"}, default "l2"
    variant : {"neuron", "layer"}, default "neuron"
    solver : str, optional
        ``None`` or ``"ipm"``: the built-in interior-point method (no extra dependency); any
        other name is passed to cvxpy (``"CLARABEL"``, ``"SCS"``, ...).
    solver_options : dict, optional
        Keyword arguments for cvxpy's ``Problem.solve`` (``{"max_iters": 5000}`` for SCS, say).
    gap_tol : float, default 1e-8
        Interior point only: stop when the duality gap is below ``gap_tol`` :math:`\rho`.
    threads : int or None, default 1
        BLAS threads during the interior-point solve and the check (through threadpoolctl, where
        installed; a cvxpy solver's own threads are left alone). The matrices are a few hundred
        wide, where thread hand-offs cost more than they gain: on a shared two-core machine two
        BLAS threads ran the 64-64-10 solve 30 times slower than one. ``None`` leaves the
        process setting alone.
    progress : bool, optional
        Progress bar over the interior-point stages (one step per digit of duality gap gained);
        default: shown on a terminal only.

    Returns
    -------
    LipschitzBound
        ``layers`` holds ``"max_eigenvalue"`` (of :math:`M` at the returned point, negative),
        ``"rho_increase"`` (what the soundness check added to the solver's :math:`\rho`) and,
        for the interior-point method, ``"gap"`` (the final duality gap, about
        :math:`\rho - \rho^\star`), and ``"seconds"``.

    Notes
    -----
    The module docstring gives the program, the solvers and how soundness is ensured: the
    returned value is :math:`\sqrt{\rho}` at a point whose matrix inequality has been checked
    by an eigenvalue computation, never the solver's unchecked optimum.
    """
    if variant not in ("neuron", "layer"):
        raise ProbeError(f"unknown LipSDP variant {variant!r}; use 'neuron' or 'layer'")
    use_ipm = solver is None or str(solver).lower() == "ipm"
    if not use_ipm:
        try:
            import cvxpy  # noqa: F401
        except ImportError as err:  # pragma: no cover - cvxpy is an optional extra
            raise ProbeError(f"LipSDP with solver={solver!r} needs cvxpy: pip install 'probe[sdp]' (or use "
                             "solver=None, the built-in interior-point method)") from err
    weights, slopes = dense_layers(graph)
    extra: dict[str, float] = {}
    if not slopes:
        value = float(np.linalg.norm(weights[0], 2))
        top = 0.0
    else:
        n0, n = weights[0].shape[1], sum(s[2] for s in slopes)
        expected = lipsdp_expected_seconds(n0, n, variant=variant, solver=solver)
        if expected > _WARN_SECONDS:
            warnings.warn(f"LipSDP-{variant} on {n} neurons (a {n0 + n} x {n0 + n} matrix inequality) is expected "
                          f"to take about {expected:.0f} s", stacklevel=4)
        lmi = _lmi(weights, slopes)
        t0 = time.perf_counter()
        with blas_threads(threads):
            if use_ipm:
                rho, t, gap = _solve_ipm(lmi, variant, gap_tol, progress)
                extra["gap"] = gap
            else:
                rho, t = _solve_cvxpy(lmi, variant, str(solver).upper(), solver_options)
            sound, top = _certify(lmi, rho, t)
        extra["rho_increase"] = sound - rho
        extra["seconds"] = time.perf_counter() - t0
        value = math.sqrt(sound)
    factor = {"l2": 1.0, "linf": math.sqrt(weights[0].shape[1]), "l1": math.sqrt(weights[-1].shape[0])}[norm]
    return LipschitzBound(value=value * factor, norm=norm, method=f"lipsdp-{variant}",
                          layers={"max_eigenvalue": top, **extra})


register_lipschitz_method("lipsdp-neuron", lambda m, g, **kw: lipsdp(m, g, variant="neuron", **kw))
register_lipschitz_method("lipsdp-layer", lambda m, g, **kw: lipsdp(m, g, variant="layer", **kw))
