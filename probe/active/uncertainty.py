"""Uncertainty measures from the spread of an ensemble's predictions.

All functions take the members along the leading axis (``M`` members) and never
modify their input.
"""

from __future__ import annotations

import torch

from ..errors import ProbeError

__all__ = [
    "member_variance",
    "member_covariance",
    "vector_deviation",
    "max_vector_deviation",
    "rate_variance",
]


def _check(pred: torch.Tensor, name: str, min_dim: int = 1) -> torch.Tensor:
    if not isinstance(pred, torch.Tensor):
        pred = torch.as_tensor(pred)
    if pred.dim() < min_dim or pred.shape[0] < 2:
        raise ProbeError(f"{name} must have at least 2 ensemble members along axis 0 and {min_dim} dimensions, "
                         f"got shape {tuple(pred.shape)}")
    return pred


def member_variance(pred: torch.Tensor, *, unbiased: bool = False) -> torch.Tensor:
    """Variance across members, elementwise.

    ``var = 1/(M - ddof) * sum_m (y_m - mean(y))^2`` with ``ddof = 1`` if ``unbiased``.

    Parameters
    ----------
    pred : torch.Tensor, shape (M, ...)
    unbiased : bool, default False
        Population variance (the committee-model convention) unless True.

    Returns
    -------
    torch.Tensor, shape (...)
    """
    pred = _check(pred, "pred")
    return pred.var(dim=0, unbiased=unbiased)


def member_covariance(pred: torch.Tensor, *, unbiased: bool = False) -> torch.Tensor:
    """Covariance across members of a vector output.

    ``Cov = 1/(M - ddof) * sum_m (y_m - ybar)(y_m - ybar)^T``.

    Parameters
    ----------
    pred : torch.Tensor, shape (M, ..., K)

    Returns
    -------
    torch.Tensor, shape (..., K, K)
    """
    pred = _check(pred, "pred", 2)
    d = pred - pred.mean(dim=0, keepdim=True)
    ddof = 1 if unbiased else 0
    return torch.einsum("m...i,m...j->...ij", d, d) / (pred.shape[0] - ddof)


def vector_deviation(pred: torch.Tensor) -> torch.Tensor:
    """Root-mean-square deviation of vectors from their ensemble mean.

    ``sigma_i = sqrt( 1/M sum_m || y_mi - ybar_i ||^2 )``; for forces this is the
    per-atom force deviation of DP-GEN (Zhang et al., Phys. Rev. Mater. 3, 023804, 2019).

    Parameters
    ----------
    pred : torch.Tensor, shape (M, ..., K)

    Returns
    -------
    torch.Tensor, shape (...)
    """
    pred = _check(pred, "pred", 2)
    d = pred - pred.mean(dim=0, keepdim=True)
    return d.pow(2).sum(-1).mean(0).sqrt()


def max_vector_deviation(pred: torch.Tensor) -> torch.Tensor:
    """DP-GEN's model deviation: the largest per-item vector deviation.

    ``epsilon = max_i sqrt( <|| F_i - <F_i> ||^2> )`` over the second-to-last axis.

    Parameters
    ----------
    pred : torch.Tensor, shape (M, ..., N, K)

    Returns
    -------
    torch.Tensor, shape (...)
    """
    return vector_deviation(_check(pred, "pred", 3)).amax(dim=-1)


def rate_variance(pred: torch.Tensor, velocity: torch.Tensor, *, block_diagonal: bool = True) -> torch.Tensor:
    """Predicted variance of the rate ``dE/dt = -sum_i F_i . v_i``.

    With ``block_diagonal=True`` (default) this is the energy-error rate
    ``sigma(dE/dt)^2 = sum_i v_i^T Cov(F_i) v_i``, i.e. the per-item covariance blocks
    only. With ``block_diagonal=False`` the cross-covariances between items are kept:
    ``v^T Cov(F) v`` over the full vector, which equals the member variance of
    ``sum_i F_mi . v_i``.

    Parameters
    ----------
    pred : torch.Tensor, shape (M, ..., N, K)
        Members' vectors (forces).
    velocity : torch.Tensor, shape (..., N, K)
        Velocities at which the rate is taken (one per configuration).

    Returns
    -------
    torch.Tensor, shape (...)
    """
    pred = _check(pred, "pred", 3)
    velocity = torch.as_tensor(velocity, dtype=pred.dtype, device=pred.device)
    if velocity.shape != pred.shape[1:]:
        raise ProbeError(f"velocity has shape {tuple(velocity.shape)}, forces per member have "
                         f"{tuple(pred.shape[1:])}")
    d = pred - pred.mean(dim=0, keepdim=True)
    proj = (d * velocity).sum(-1)  # (M, ..., N): deviation of F_i . v_i for each member
    if block_diagonal:
        # v_i^T Cov(F_i) v_i = mean_m ((F_mi - Fbar_i) . v_i)^2
        return proj.pow(2).mean(0).sum(-1)
    return proj.sum(-1).pow(2).mean(0)
