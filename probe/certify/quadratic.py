r"""Exact bounds of quadratic models over an L2 ball (the S-lemma), and quadratic-activation networks.

For :math:`q(x) = x^\top A x + b^\top x + c` and the ball :math:`\lVert x - x_0\rVert_2 \le \epsilon`,
write :math:`x = x_0 + d`: :math:`q = d^\top A d + g^\top d + q(x_0)` with :math:`g = b + 2 A x_0`
(A symmetrised). The maximum over :math:`\lVert d\rVert \le \epsilon` is a trust-region
subproblem; by the S-lemma (Yakubovich 1971; Pólik & Terlaky, SIAM Review 2007) its SDP
relaxation is exact, and its dual reduces to one scalar: with :math:`A = U \Lambda U^\top`,
:math:`\tilde g = U^\top g`, the maximiser is :math:`\tilde d_i = \tilde g_i / (2(\mu - \lambda_i))`
for the multiplier :math:`\mu \ge \max(\lambda_{\max}, 0)` at which :math:`\lVert d\rVert = \epsilon`
(or :math:`\mu = 0` when the unconstrained maximiser of a concave q lies inside). In the "hard
case" (:math:`\tilde g` orthogonal to the top eigenspace and the ball not yet filled at
:math:`\mu = \lambda_{\max}`) the rest of the budget goes along the top eigenvector. With
:math:`b = 0` and :math:`x_0 = 0` the maximum is :math:`\epsilon^2 \lambda_{\max}(A)`
(:math:`\ge 0` only through :math:`\lambda_{\max}` since :math:`d = 0` gives 0: it is
:math:`\epsilon^2 \max(\lambda_{\max}, 0)`). The minimum is minus the maximum of :math:`-q`.

A network with one hidden layer of squares, :math:`f_k(x) = \sum_j v_{kj} (w_j^\top x + a_j)^2 + d_k`
(Li, Ma & Zhang 2018 study these; any such net is a quadratic model per output), is the quadratic
:math:`A_k = W^\top \mathrm{diag}(v_k) W`, :math:`b_k = 2 W^\top (v_k \odot a)`,
:math:`c_k = v_k^\top a^2 + d_k` (:func:`quadratic_network_form`), so its bounds are exact too.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ProbeError
from ..results import Certificate

__all__ = ["trust_region_max", "quadratic_bounds", "quadratic_network_form", "QuadraticNet"]


def trust_region_max(A: torch.Tensor, g: torch.Tensor, eps: float, *, iterations: int = 200) -> torch.Tensor:
    r"""Exact :math:`\max_{\lVert d\rVert_2 \le \epsilon} d^\top A d + g^\top d` (see the module docstring).

    Parameters
    ----------
    A : torch.Tensor, shape (D, D)
        Symmetrised before use.
    g : torch.Tensor, shape (D,)
    eps : float
    iterations : int, default 200
        Bisection steps on the multiplier (float64: each halves the bracket).

    Returns
    -------
    torch.Tensor of float64, scalar
    """
    A = A.detach().double().cpu()
    A = (A + A.T) / 2
    g = g.detach().double().cpu().reshape(-1)
    eps = float(eps)
    if eps < 0:
        raise ProbeError(f"eps must be non-negative, got {eps}")
    if eps == 0:
        return torch.zeros((), dtype=torch.float64)
    lam, U = torch.linalg.eigh(A)
    gt = U.T @ g
    top = lam[-1]
    tiny = 1e-12 * (1 + lam.abs().max())

    def norm2(mu: torch.Tensor) -> torch.Tensor:
        return ((gt / (2 * (mu - lam))) ** 2).sum()

    def value(d: torch.Tensor) -> torch.Tensor:
        return (lam * d ** 2).sum() + (gt * d).sum()

    if top < -tiny and norm2(torch.zeros((), dtype=torch.float64)) <= eps ** 2:
        return value(gt / (2 * (0 - lam)))  # concave and the maximiser is inside the ball
    lo = torch.clamp(top, min=0)
    in_top = (lam >= top - tiny)
    if (gt[in_top].abs() <= 1e-12 * (1 + gt.abs().max())).all():
        # the hard case: fill the ball at mu = lambda_max along the top eigenvector
        rest = ~in_top
        d = torch.zeros_like(gt)
        d[rest] = gt[rest] / (2 * (top - lam[rest]))
        r2 = eps ** 2 - (d ** 2).sum()
        if r2 >= 0 and top >= 0:
            return value(d) + top * r2
    hi = lo + gt.norm() / (2 * eps) + 1e-300
    while norm2(hi) > eps ** 2:
        hi = 2 * hi
    lo = lo + tiny
    for _ in range(int(iterations)):
        mid = (lo + hi) / 2
        if norm2(mid) > eps ** 2:
            lo = mid
        else:
            hi = mid
    # at hi the step is inside the ball: a feasible point, and the value converges to the maximum from below;
    # the Lagrangian dual at hi, mu eps^2 + sum g^2 / (4 (mu - lam)), converges from above: take the dual (sound)
    return hi * eps ** 2 + (gt ** 2 / (4 * (hi - lam))).sum()


def quadratic_bounds(A: torch.Tensor, b: torch.Tensor | None = None, c: object = 0.0, *, x: torch.Tensor,
                     eps: object) -> Certificate:
    r"""Exact lower and upper bounds of quadratic models over L2 balls (S-lemma; module docstring).

    Parameters
    ----------
    A : torch.Tensor, shape (K, D, D) or (D, D)
        One symmetric matrix per output (symmetrised before use).
    b : torch.Tensor, shape (K, D) or (D,), optional
    c : float or torch.Tensor of shape (K,), default 0
    x : torch.Tensor, shape (N, D)
        Centres.
    eps : float or torch.Tensor of shape (N,)
        Radii.

    Returns
    -------
    Certificate
        ``lower``/``upper`` of shape (N, K), in float64; ``method="s-lemma"``.
    """
    A = torch.as_tensor(A).detach().double().cpu()
    if A.dim() == 2:
        A = A.unsqueeze(0)
    k, d = A.shape[0], A.shape[1]
    if A.shape[2] != d:
        raise ProbeError(f"A must be square per output, got shape {tuple(A.shape)}")
    b = torch.zeros(k, d, dtype=torch.float64) if b is None else torch.as_tensor(b).detach().double().cpu()
    b = b.reshape(k, d) if b.numel() == k * d else b
    c = torch.as_tensor(c, dtype=torch.float64).cpu().expand(k)
    X = torch.as_tensor(x).detach().double().cpu()
    if X.dim() != 2 or X.shape[1] != d:
        raise ProbeError(f"x must have shape (N, {d}), got {tuple(X.shape)}")
    e = torch.as_tensor(eps, dtype=torch.float64).cpu().expand(len(X))
    As = (A + A.transpose(1, 2)) / 2
    lo = torch.empty(len(X), k, dtype=torch.float64)
    hi = torch.empty_like(lo)
    for n in range(len(X)):
        x0 = X[n]
        for j in range(k):
            q0 = x0 @ As[j] @ x0 + b[j] @ x0 + c[j]
            g = b[j] + 2 * As[j] @ x0
            hi[n, j] = q0 + trust_region_max(As[j], g, float(e[n]))
            lo[n, j] = q0 - trust_region_max(-As[j], -g, float(e[n]))
    return Certificate(lower=lo, upper=hi, radius=None, method="s-lemma", confidence=None)


class QuadraticNet(nn.Module):
    r"""One hidden layer of squares: :math:`f(x) = V (W x + a)^{\odot 2} + d`.

    Parameters
    ----------
    n_in, n_hidden, n_out : int
    """

    def __init__(self, n_in: int, n_hidden: int, n_out: int):
        super().__init__()
        self.hidden = nn.Linear(n_in, n_hidden)
        self.out = nn.Linear(n_hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(x) ** 2)


def quadratic_network_form(net: QuadraticNet) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""``(A, b, c)`` with :math:`f_k(x) = x^\top A_k x + b_k^\top x + c_k` for a :class:`QuadraticNet`.

    Returns
    -------
    A : torch.Tensor of float64, shape (K, D, D)
    b : torch.Tensor of float64, shape (K, D)
    c : torch.Tensor of float64, shape (K,)
    """
    W = net.hidden.weight.detach().double().cpu()
    a = net.hidden.bias.detach().double().cpu() if net.hidden.bias is not None else torch.zeros(W.shape[0])
    V = net.out.weight.detach().double().cpu()
    dk = net.out.bias.detach().double().cpu() if net.out.bias is not None else torch.zeros(V.shape[0])
    A = torch.einsum("ji,kj,jl->kil", W, V, W)
    b = 2 * (V * a).matmul(W)
    c = V @ a.double() ** 2 + dk
    return A, b, c
