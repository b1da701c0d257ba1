"""L-p norms over all non-batch dimensions, their duals, and projections onto balls."""

from __future__ import annotations

import math

import torch

from .errors import ProbeError

__all__ = ["NORMS", "check_norm", "lp_norm", "dual", "project_ball", "sample_ball", "steepest_direction"]

NORMS = ("linf", "l2", "l1")
_ALIASES = {"inf": "linf", "linf": "linf", "l_inf": "linf", "2": "l2", "l2": "l2", "1": "l1", "l1": "l1"}


def check_norm(norm: object) -> str:
    """Canonical name ("linf", "l2" or "l1") of a norm given as a string or number."""
    key = str(norm).lower().replace("float('inf')", "inf")
    if isinstance(norm, float) and math.isinf(norm):
        key = "inf"
    if key not in _ALIASES:
        raise ProbeError(f"unknown norm {norm!r}; use one of 'linf', 'l2', 'l1'")
    return _ALIASES[key]


def dual(norm: str) -> str:
    """Dual norm: ||.||_q with 1/p + 1/q = 1."""
    return {"linf": "l1", "l2": "l2", "l1": "linf"}[check_norm(norm)]


def lp_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Norm of each row of ``delta`` (shape (N, ...)) -> (N,)."""
    flat = delta.flatten(1)
    norm = check_norm(norm)
    if norm == "linf":
        return flat.abs().amax(1) if flat.shape[1] else flat.new_zeros(flat.shape[0])
    if norm == "l2":
        return flat.norm(dim=1)
    return flat.abs().sum(1)


def _project_l1(v: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row of ``v`` onto the L1 ball (Duchi et al. 2008)."""
    a = v.abs()
    inside = a.sum(1) <= radius
    mu, _ = a.sort(1, descending=True)
    cs = mu.cumsum(1)
    k = torch.arange(1, v.shape[1] + 1, device=v.device, dtype=v.dtype)
    cond = mu - (cs - radius[:, None]) / k > 0
    rho = (cond * k).amax(1).clamp(min=1).long()
    theta = (cs.gather(1, (rho - 1)[:, None]).squeeze(1) - radius) / rho.to(v.dtype)
    w = torch.sign(v) * (a - theta[:, None]).clamp(min=0)
    return torch.where(inside[:, None], v, w)


def project_ball(delta: torch.Tensor, eps: torch.Tensor | float, norm: str) -> torch.Tensor:
    """Euclidean projection of each row of ``delta`` onto {||d||_p <= eps} (eps per row or scalar)."""
    norm = check_norm(norm)
    n = delta.shape[0]
    eps_t = torch.as_tensor(eps, dtype=delta.dtype, device=delta.device)
    eps_t = eps_t.expand(n) if eps_t.dim() == 0 else eps_t.reshape(n)
    shape = (n,) + (1,) * (delta.dim() - 1)
    if norm == "linf":
        e = eps_t.view(shape)
        return torch.maximum(torch.minimum(delta, e), -e)
    if norm == "l2":
        nrm = lp_norm(delta, "l2").clamp(min=1e-30)
        factor = torch.clamp(eps_t / nrm, max=1.0)
        return delta * factor.view(shape)
    return _project_l1(delta.flatten(1), eps_t).view_as(delta)


def sample_ball(shape: tuple[int, ...], eps: float, norm: str, generator: torch.Generator | None = None,
                dtype: torch.dtype | None = None) -> torch.Tensor:
    """Uniform samples from the L-p ball of radius ``eps``; ``shape[0]`` rows (on CPU)."""
    norm = check_norm(norm)
    n = shape[0]
    d = int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1
    if norm == "linf":
        return (torch.rand(shape, generator=generator, dtype=dtype) * 2 - 1) * eps
    if norm == "l2":
        g = torch.randn((n, d), generator=generator, dtype=dtype)
        g = g / g.norm(dim=1, keepdim=True).clamp(min=1e-30)
        r = torch.rand((n, 1), generator=generator, dtype=dtype) ** (1.0 / d)
        return (g * r * eps).view(shape)
    # L1: Laplace directions scaled by a radius drawn for a uniform point in the ball
    e = -torch.log(torch.rand((n, d + 1), generator=generator, dtype=dtype).clamp(min=1e-30))
    s = torch.sign(torch.rand((n, d), generator=generator, dtype=dtype) - 0.5)
    pts = s * e[:, :d] / e.sum(1, keepdim=True)
    return (pts * eps).view(shape)


def steepest_direction(grad: torch.Tensor, norm: str, sparsity: float = 0.99) -> torch.Tensor:
    """Unit-norm steepest-ascent direction for a linear gain ``<grad, d>`` under ||d||_p <= 1.

    L-inf: ``sign(g)``; L2: ``g / ||g||``; L1: the sparse L1 descent direction of
    Tramer & Boneh (2019): sign of the coordinates whose |g| is at or above the
    ``sparsity`` quantile, scaled to unit L1 norm (the plain L1 steepest direction,
    a single coordinate, makes PGD far too slow).
    """
    norm = check_norm(norm)
    shape = (grad.shape[0],) + (1,) * (grad.dim() - 1)
    if norm == "linf":
        return grad.sign()
    if norm == "l2":
        return grad / lp_norm(grad, "l2").clamp(min=1e-30).view(shape)
    flat = grad.flatten(1)
    a = flat.abs()
    q = torch.quantile(a, sparsity, dim=1, keepdim=True) if a.shape[1] > 1 else a
    sel = (a >= q) & (a > 0)
    d = flat.sign() * sel
    return (d / sel.sum(1, keepdim=True).clamp(min=1)).view_as(grad)
