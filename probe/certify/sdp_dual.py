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


class _Constraints:
    r"""The constraint map :math:`\mathcal{A}` of the lifted SDP, applied without forming it.

    Rows: the product constraints :math:`\langle \mathrm{sym}(p_i q_i^\top), V\rangle` (minus a slack
    for the inequalities), the dense constraints :math:`\langle G_k, V\rangle - t`, the box rows
    :math:`-V_{jj} - t_j = -1` and :math:`V_{00} = 1`. Each product row is rank two, so
    :math:`\mathcal{A}`, its adjoint and the Gram matrix :math:`\mathcal{A}\mathcal{A}^*` cost
    :math:`O(m n)` memory instead of the :math:`O(m n^2)` of a dense matrix, where m is the number of
    constraints and n the number of variables.
    """

    def __init__(self, qp: QCQP):
        self.P, self.Q, self.G = qp.P, qp.Q, qp.G
        self.n1 = qp.n + 1
        self.m, self.g = qp.P.shape[0], qp.G.shape[0]
        dev = qp.c.device
        self.slack_rows = torch.cat([(~qp.equality).nonzero().flatten().to(dev),
                                     torch.arange(self.m, self.m + self.g + qp.n, device=dev)])
        self.p = len(self.slack_rows)
        self.rows = self.m + self.g + qp.n + 1
        self.diag = torch.arange(1, self.n1, device=dev)
        self.b = torch.zeros(self.rows, dtype=qp.c.dtype, device=dev)
        self.b[self.m + self.g:self.m + self.g + qp.n] = -1
        self.b[-1] = 1

    def apply(self, V: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(S, n1, n1) symmetric, (S, p) -> (S, rows)."""
        r1 = (torch.matmul(self.P, V) * self.Q).sum(2)               # p^T V q = <sym(p q^T), V> for symmetric V
        r2 = torch.einsum("kij,sij->sk", self.G, V)
        r3 = -V[:, self.diag, self.diag]
        out = torch.cat([r1, r2, r3, V[:, :1, 0]], 1)
        out[:, self.slack_rows] -= t
        return out

    def adjoint(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(S, rows) -> (V (S, n1, n1), t (S, p))."""
        m, g = self.m, self.g
        V = _sym(torch.matmul((self.P.unsqueeze(0) * y[:, :m].unsqueeze(2)).transpose(1, 2), self.Q))
        if g:
            V = V + torch.einsum("sk,kij->sij", y[:, m:m + g], self.G)
        V[:, self.diag, self.diag] -= y[:, m + g:-1]
        V[:, 0, 0] += y[:, -1]
        return V, -y[:, self.slack_rows]

    def gram(self) -> torch.Tensor:
        r""":math:`\mathcal{A}\mathcal{A}^*`, (rows, rows)."""
        P, Q, G = self.P, self.Q, self.G
        m, g, n = self.m, self.g, self.n1 - 1
        K = P.new_zeros(self.rows, self.rows)
        PQ = P @ Q.T
        K[:m, :m] = ((P @ P.T) * (Q @ Q.T) + PQ * PQ.T) / 2
        K[:m, m:m + g] = torch.einsum("mi,kij,mj->mk", P, G, Q)
        K[:m, m + g:m + g + n] = -(P[:, 1:] * Q[:, 1:])
        K[:m, -1] = P[:, 0] * Q[:, 0]
        K[m:m + g, m:m + g] = torch.einsum("kij,lij->kl", G, G)
        K[m:m + g, m + g:m + g + n] = -G[:, self.diag, self.diag]
        K[m:m + g, -1] = G[:, 0, 0]
        idx = torch.arange(m + g, m + g + n, device=P.device)
        K[idx, idx] = 1
        K[-1, -1] = 1
        K = torch.triu(K) + torch.triu(K, 1).T
        K[self.slack_rows, self.slack_rows] += 1
        return K


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
    op = _Constraints(qp)
    b, m = op.b, op.m
    s = qp.c.shape[0]
    e0 = torch.zeros_like(qp.c)
    e0[:, 0] = 1
    Cv = _sym(qp.c.unsqueeze(2) * e0.unsqueeze(1))
    K = op.gram()
    K = K + 1e-12 * (1 + K.diagonal().amax()) * torch.eye(op.rows, dtype=K.dtype, device=K.device)
    L = torch.linalg.cholesky(K)
    Xv, Xt = torch.zeros_like(Cv), Cv.new_zeros(s, op.p)
    Xv[:, 0, 0] = 1
    Sv, St = Cv.clone(), Xt.clone()
    rho = torch.full((s, 1), float(rho), dtype=Cv.dtype, device=Cv.device)
    best = torch.full((s,), -torch.inf, dtype=torch.float64, device="cpu")
    best_duals = _to_duals(qp, Cv.new_zeros(s, op.rows), m)[0]
    c_norm = Cv.flatten(1).norm(dim=1)
    for k in range(int(steps) + 1):
        r3 = rho.unsqueeze(2)
        rhs = rho * (b - op.apply(Xv, Xt)) + op.apply(Cv - Sv, -St)
        y = torch.cholesky_solve(rhs.T, L).T
        Av, At = op.adjoint(y)
        Vv, Vt = Cv - Av - r3 * Xv, -At - rho * Xt
        w, U = torch.linalg.eigh(Vv)
        Sv = (U * w.clamp(min=0).unsqueeze(1)) @ U.transpose(1, 2)
        St = Vt.clamp(min=0)
        Xv_new, Xt_new = (Sv - Vv) / r3, (St - Vt) / rho
        if k % int(check_every) == 0 or k == int(steps):
            duals, k0 = _to_duals(qp, y, m)
            bound = torch.maximum(dual_bound(qp, duals), dual_bound(qp, duals, kappa0=k0))
            better = bound > best
            best = torch.where(better, bound, best)
            for old, new in zip((best_duals.lam, best_duals.mu, best_duals.kappa), (duals.lam, duals.mu, duals.kappa)):
                old[better.to(old.device)] = new[better.to(old.device)]
            r_p = (op.apply(Xv_new, Xt_new) - b).norm(dim=1) / (1 + b.norm())
            r_d = ((Av + Sv - Cv).flatten(1).norm(dim=1) + (At + St).norm(dim=1)) / (1 + c_norm)
            primal = (Cv * Xv_new).flatten(1).sum(1)
            gap = (primal - y @ b).abs() / (1 + primal.abs() + (y @ b).abs())
            if bool(((r_p < tol) & (r_d < tol) & (gap < tol)).all()):
                break
            # balance the residuals (Boyd et al. 2011, section 3.4.1): 1 / rho weighs the dual residual
            rho = torch.where((r_d > 10 * r_p).unsqueeze(1), rho / 2, torch.where((r_p > 10 * r_d).unsqueeze(1),
                                                                                  rho * 2, rho))
        Xv, Xt = Xv_new, Xt_new
    return best, best_duals
