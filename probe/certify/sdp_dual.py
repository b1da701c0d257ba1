r"""The Lagrangian dual of a ReLU verification QCQP, and a first-order solver for it in torch.

The verification problem of :mod:`probe.certify.sdp` is posed on normalised variables
:math:`v = (1, s)`, :math:`s \in [-1, 1]^n`, as the quadratically constrained linear programme

.. math::
    \min_v c^\top v \quad\text{s.t.}\quad (p_i^\top v)(q_i^\top v) \ge 0\ (i \in I),\quad
    (p_i^\top v)(q_i^\top v) = 0\ (i \in E),\quad v^\top G_k v \ge 0,\quad s_j^2 \le 1.

A linear constraint :math:`p^\top v \ge 0` is the product with :math:`q = e_0` (since
:math:`v_0 = 1`). For multipliers :math:`\lambda \ge 0` (on I), :math:`\nu` (on E),
:math:`\mu \ge 0` (on the :math:`G_k`), let
:math:`M = \mathrm{sym}(c e_0^\top) - \mathrm{sym}(P^\top \mathrm{diag}(\lambda, \nu) Q) - \sum_k \mu_k G_k`.
Every feasible :math:`v` has :math:`c^\top v \ge v^\top M v`, and for every lifted
:math:`V \succeq 0` with :math:`V_{00} = 1`, :math:`V_{jj} \le 1` (the SDP relaxation) and any
:math:`\kappa_0`, :math:`\kappa \ge 0`,

.. math::
    \langle M, V\rangle \ \ge\ g = (n + 1) \min\bigl(0, \lambda_{\min}(M + \mathrm{diag}(\kappa_0, \kappa))\bigr)
    - \kappa_0 - \textstyle\sum_j \kappa_j,

since :math:`\operatorname{tr} V \le n + 1`. This is the eigenvalue form of the SDP dual of
Dathathri, Dvijotham, Kurakin, Raghunathan, Uesato, Bunel, Shankar, Steinhardt, Goodfellow,
Liang & Kohli, "Enabling certification of verification-agnostic networks via memory-efficient
semidefinite programming", NeurIPS 2020: it is a valid lower bound for *any* multipliers, so
the bound never rests on a solver's convergence. :func:`dual_bound` evaluates it in double
precision with a margin for the rounding of the eigenvalue.

The first-order solver (:func:`solve_first_order`) is an alternating-direction augmented
Lagrangian method on the lifted SDP; each iterate's dual multipliers are certified by
:func:`dual_bound`, whose :math:`\kappa_0` is the exact maximiser for the other multipliers: with
:math:`M = [[m_{00}, m^\top], [m, M_s]]` and :math:`M_s + \mathrm{diag}(\kappa) \succ 0`, the
Schur complement gives :math:`\kappa_0 = -m_{00} + m^\top (M_s + \mathrm{diag}\,\kappa)^{-1} m`
(where :math:`M_s + \mathrm{diag}(\kappa)` is not positive definite, :math:`\kappa` is first
raised uniformly until it is). The matrices are :math:`(n+1) \times (n+1)` and all work is
batched over the specifications, so it runs wherever torch does (a GPU included).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ProbeError

__all__ = ["QCQP", "DualVariables", "dual_matrix", "dual_bound", "solve_first_order"]


@dataclass(frozen=True)
class QCQP:
    r"""A verification QCQP over :math:`v = (1, s)`, :math:`s \in [-1, 1]^n` (see the module docstring).

    Attributes
    ----------
    c : torch.Tensor, shape (S, n + 1)
        Objectives (one per specification row), minimised; ``c[:, 0]`` is the constant.
    P, Q : torch.Tensor, shape (m, n + 1)
        Factors of the product constraints :math:`(p_i^\top v)(q_i^\top v)`.
    equality : torch.Tensor of bool, shape (m,)
        True for :math:`= 0`, False for :math:`\ge 0`.
    G : torch.Tensor, shape (g, n + 1, n + 1)
        Dense quadratic constraints :math:`v^\top G_k v \ge 0` (an L2 ball).
    """

    c: torch.Tensor
    P: torch.Tensor
    Q: torch.Tensor
    equality: torch.Tensor
    G: torch.Tensor

    @property
    def n(self) -> int:
        return int(self.c.shape[1]) - 1


@dataclass(frozen=True)
class DualVariables:
    """Multipliers of a :class:`QCQP`, batched over S specifications.

    ``lam`` (S, m): on the product constraints (sign-free on the equalities, >= 0 on the rest);
    ``mu`` (S, g) >= 0 on the dense constraints; ``kappa`` (S, n) >= 0 on :math:`s_j^2 \\le 1`.
    """

    lam: torch.Tensor
    mu: torch.Tensor
    kappa: torch.Tensor


def _sym(a: torch.Tensor) -> torch.Tensor:
    return (a + a.transpose(-1, -2)) / 2


def dual_matrix(qp: QCQP, dv: DualVariables) -> torch.Tensor:
    """The Lagrangian matrix M of the module docstring, shape (S, n + 1, n + 1) (without the kappa diagonal)."""
    e0 = torch.zeros_like(qp.c)
    e0[:, 0] = 1
    M = _sym(qp.c.unsqueeze(2) * e0.unsqueeze(1))
    M = M - _sym(torch.einsum("mi,sm,mj->sij", qp.P, dv.lam, qp.Q))
    if qp.G.shape[0]:
        M = M - torch.einsum("sk,kij->sij", dv.mu, qp.G)
    return M


def _project(qp: QCQP, dv: DualVariables) -> DualVariables:
    """Multipliers made admissible: >= 0 where the constraint is an inequality."""
    lam = torch.where(qp.equality, dv.lam, dv.lam.clamp(min=0))
    return DualVariables(lam, dv.mu.clamp(min=0), dv.kappa.clamp(min=0))


def _schur_kappa0(M: torch.Tensor, kappa: torch.Tensor, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(kappa, kappa0)`` with ``M_s + diag(kappa)`` raised to be positive definite and kappa0 its Schur value."""
    Ms = M[:, 1:, 1:]
    m = M[:, 1:, 0]
    n = Ms.shape[-1]
    if n == 0:
        return kappa, -M[:, 0, 0]
    K = Ms + torch.diag_embed(kappa)
    low = torch.linalg.eigvalsh(K)[:, 0]
    scale = 1 + M.abs().amax((1, 2))
    shift = (floor * scale - low).clamp(min=0)
    kappa = kappa + shift.unsqueeze(1)
    K = Ms + torch.diag_embed(kappa)
    sol = torch.linalg.solve(K, m.unsqueeze(2)).squeeze(2)
    return kappa, -M[:, 0, 0] + (m * sol).sum(1)


def dual_bound(qp: QCQP, dv: DualVariables, *, kappa0: torch.Tensor | None = None) -> torch.Tensor:
    r"""Sound lower bound (S,) on the QCQP's minimum (and on its SDP relaxation) for any multipliers.

    The multipliers are first made admissible (negative parts of inequality multipliers set to
    zero). ``kappa0`` defaults to the Schur value of :func:`solve_first_order`. Evaluated in
    float64 on the CPU; the smallest eigenvalue is lowered by
    :math:`\eta = 16 (n+1) \epsilon_{64} \lVert M + D\rVert_F`, which bounds the error of a
    backward-stable symmetric eigensolver.
    """
    f64 = dict(dtype=torch.float64, device="cpu")
    qp = QCQP(*(t.to(**f64) if t.dtype != torch.bool else t.cpu() for t in
                (qp.c, qp.P, qp.Q, qp.equality, qp.G)))
    dv = _project(qp, DualVariables(*(t.detach().to(**f64) for t in (dv.lam, dv.mu, dv.kappa))))
    M = dual_matrix(qp, dv)
    kappa = dv.kappa
    if kappa0 is None:
        kappa, kappa0 = _schur_kappa0(M, kappa, 1e-12)
    kappa0 = kappa0.detach().to(**f64)
    D = M.clone()
    idx = torch.arange(qp.n + 1)
    D[:, idx, idx] += torch.cat([kappa0.unsqueeze(1), kappa], 1)
    low = torch.linalg.eigvalsh(D)[:, 0]
    eta = 16 * (qp.n + 1) * torch.finfo(torch.float64).eps * torch.linalg.matrix_norm(D)
    return (qp.n + 1) * (low - eta).clamp(max=0) - kappa0 - kappa.sum(1)


def _standard_form(qp: QCQP) -> tuple[torch.Tensor, torch.Tensor, int, int, int]:
    """Constraint matrix A (rows over vec(V) then the slacks) and right-hand side b of the lifted SDP.

    Row order: the product constraints (inequalities with a slack, equalities without), the dense
    constraints (slack), the box rows ``-V_jj - t_j = -1`` (slack), and ``V_00 = 1``.
    """
    n1 = qp.n + 1
    m, g = qp.P.shape[0], qp.G.shape[0]
    ineq = ~qp.equality
    p = int(ineq.sum()) + g + qp.n
    like = dict(dtype=qp.c.dtype, device=qp.c.device)
    rows = _sym(qp.P.unsqueeze(2) * qp.Q.unsqueeze(1)).reshape(m, n1 * n1)
    box = torch.zeros(qp.n, n1, n1, **like)
    idx = torch.arange(1, n1, device=qp.c.device)
    box[idx - 1, idx, idx] = -1
    e00 = torch.zeros(1, n1 * n1, **like)
    e00[0, 0] = 1
    A_v = torch.cat([rows, qp.G.reshape(g, n1 * n1), box.reshape(qp.n, n1 * n1), e00])
    A_s = torch.zeros(A_v.shape[0], p, **like)
    slack_rows = torch.cat([ineq.nonzero().flatten(), torch.arange(m, m + g + qp.n, device=qp.c.device)])
    A_s[slack_rows, torch.arange(p, device=qp.c.device)] = -1
    b = torch.zeros(A_v.shape[0], **like)
    b[m + g:m + g + qp.n] = -1
    b[-1] = 1
    return torch.cat([A_v, A_s], 1), b, n1, p, m


def _to_duals(qp: QCQP, y: torch.Tensor, m: int) -> tuple[DualVariables, torch.Tensor]:
    g = qp.G.shape[0]
    return DualVariables(y[:, :m], y[:, m:m + g], y[:, m + g:m + g + qp.n]), -y[:, -1]


def solve_first_order(qp: QCQP, *, steps: int = 3000, check_every: int = 50, tol: float = 1e-7,
                      rho: float = 1.0) -> tuple[torch.Tensor, DualVariables]:
    r"""Solve the lifted SDP by a first-order method; return a certified dual bound and its multipliers.

    The alternating-direction augmented-Lagrangian method of Wen, Goldfarb & Yin ("Alternating
    direction augmented Lagrangian methods for semidefinite programming", Math. Prog. Comp. 2010)
    on the dual :math:`\max b^\top y` s.t. :math:`C - \mathcal{A}^*(y) = S \in \mathcal{K}`
    (PSD block times the slacks' orthant), with the primal :math:`X` as multiplier:

    .. math::
        y = (\mathcal{A}\mathcal{A}^*)^{-1}\bigl(\rho (b - \mathcal{A}X) + \mathcal{A}(C - S)\bigr),\quad
        V = C - \mathcal{A}^* y - \rho X,\quad S = \Pi_{\mathcal{K}}(V),\quad X = (S - V)/\rho.

    Each step costs one batched symmetric eigendecomposition of the :math:`(n+1) \times (n+1)`
    block (the projection) and two products with the constraint matrix, so it runs on whatever
    device ``qp`` lives on, a GPU included. Every ``check_every`` steps the dual iterate is
    turned into a bound by :func:`dual_bound` (the eigenvalue form of Dathathri et al. 2020,
    valid for any multipliers) and the best is kept: the returned bound is sound whatever the
    number of steps. ``rho`` adapts to balance the primal and dual residuals.

    Parameters
    ----------
    qp : QCQP
    steps : int, default 3000
        Largest number of iterations.
    check_every : int, default 50
    tol : float, default 1e-7
        Stop when the relative primal and dual residuals and the relative gap are below it.
    rho : float, default 1.0
        Initial penalty.

    Returns
    -------
    bound : torch.Tensor of float64, shape (S,)
    duals : DualVariables
    """
    if int(steps) < 0:
        raise ProbeError(f"steps must be non-negative, got {steps}")
    A, b, n1, p, m = _standard_form(qp)
    s = qp.c.shape[0]
    nv = n1 * n1
    e0 = torch.zeros_like(qp.c)
    e0[:, 0] = 1
    C = torch.cat([_sym(qp.c.unsqueeze(2) * e0.unsqueeze(1)).reshape(s, nv), qp.c.new_zeros(s, p)], 1)
    AAt = A @ A.T
    AAt = AAt + 1e-12 * (1 + AAt.diagonal().amax()) * torch.eye(AAt.shape[0], dtype=AAt.dtype, device=AAt.device)
    L = torch.linalg.cholesky(AAt)
    X = C.new_zeros(s, nv + p)
    X[:, 0] = 1
    S = C.clone()
    rho = torch.full((s, 1), float(rho), dtype=C.dtype, device=C.device)
    best = torch.full((s,), -torch.inf, dtype=torch.float64, device="cpu")
    best_duals = _to_duals(qp, C.new_zeros(s, A.shape[0]), m)[0]
    for k in range(int(steps) + 1):
        rhs = rho * (b - X @ A.T) + (C - S) @ A.T
        y = torch.cholesky_solve(rhs.T, L).T
        V = C - y @ A - rho * X
        w, U = torch.linalg.eigh(V[:, :nv].reshape(s, n1, n1))
        Sv = (U * w.clamp(min=0).unsqueeze(1)) @ U.transpose(1, 2)
        S = torch.cat([Sv.reshape(s, nv), V[:, nv:].clamp(min=0)], 1)
        X_new = (S - V) / rho
        if k % int(check_every) == 0 or k == int(steps):
            duals, k0 = _to_duals(qp, y, m)
            bound = torch.maximum(dual_bound(qp, duals), dual_bound(qp, duals, kappa0=k0))
            better = bound > best
            best = torch.where(better, bound, best)
            for old, new in zip((best_duals.lam, best_duals.mu, best_duals.kappa), (duals.lam, duals.mu, duals.kappa)):
                old[better.to(old.device)] = new[better.to(old.device)]
            r_p = (X_new @ A.T - b).norm(dim=1) / (1 + b.norm())
            r_d = (y @ A + S - C).norm(dim=1) / (1 + C.norm(dim=1))
            primal = (C * X_new).sum(1)
            gap = (primal - y @ b).abs() / (1 + primal.abs() + (y @ b).abs())
            if bool(((r_p < tol) & (r_d < tol) & (gap < tol)).all()):
                break
            # balance the residuals (Boyd et al. 2011, section 3.4.1): 1 / rho weighs the dual residual
            rho = torch.where((r_d > 10 * r_p).unsqueeze(1), rho / 2, torch.where((r_p > 10 * r_d).unsqueeze(1),
                                                                                  rho * 2, rho))
        X = X_new
    return best, best_duals
