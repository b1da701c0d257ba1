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
    "VarianceScaling",
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


class VarianceScaling:
    """Recalibrates a committee's variance against the errors it actually made.

    A committee's spread is a *relative* uncertainty: its members agree more than their
    mean agrees with the truth, so the variance is rescaled by a factor fitted on errors
    observed out of sample (Musil et al., "Fast and accurate uncertainty estimation in
    chemical machine learning", J. Chem. Theory Comput. 15, 906, 2019; Busk et al.,
    "Calibrated uncertainty for molecular property prediction using ensembles of message
    passing neural networks", Mach. Learn.: Sci. Technol. 3, 015012, 2022). From pairs of a
    realised error ``e_k = y_k - ybar_k`` (the reference minus the committee mean, taken
    *before* the committee saw ``y_k``) and the predicted variance ``sigma_k^2`` this is the
    moment estimate

    ``s^2 = sum_k e_k^2 / sum_k sigma_k^2``,

    so that ``E[e^2] = s^2 sigma^2`` holds on the observed errors on average (a single global
    scale; a ratio of sums rather than the mean of ratios, which single tiny ``sigma_k``
    would dominate). Before any error is observed ``s^2 = prior``. With ``prior_weight = w > 0``
    the estimate is shrunk towards the prior by ``w`` pseudo-updates of average variance,

    ``s^2 = (sum_k E_k + w * prior * Vbar) / (sum_k V_k + w * Vbar)``,

    with ``E_k``, ``V_k`` the summed squared errors and variances of update ``k`` and ``Vbar``
    the mean ``V_k`` (the conjugate pseudo-count of a scaled-Gaussian model), so that one
    chance near-zero error cannot switch the uncertainty off.

    Parameters
    ----------
    prior : float, default 1.0
        Scale used until the first update (1: trust the raw spread).
    prior_weight : float, default 0.0
        Pseudo-updates ``w`` of the prior (0: the plain ratio of sums).
    """

    def __init__(self, prior: float = 1.0, prior_weight: float = 0.0) -> None:
        if not prior > 0:
            raise ProbeError(f"prior must be positive, got {prior}")
        if not prior_weight >= 0:
            raise ProbeError(f"prior_weight must be non-negative, got {prior_weight}")
        self.prior = float(prior)
        self.prior_weight = float(prior_weight)
        self.reset()

    def reset(self) -> None:
        """Forget every observation."""
        self.sum_squared_error = 0.0
        self.sum_variance = 0.0
        self.n_updates = 0

    def update(self, error, variance) -> float:
        """Add observed errors and their predicted variances (any matching shapes); returns ``s^2``.

        Parameters
        ----------
        error : array-like
            Realised errors ``y - ybar`` (e.g. force components, eV/A).
        variance : array-like
            Predicted variances of the same entries (e.g. the members' variance per component).
        """
        e = torch.as_tensor(error, dtype=torch.float64).detach().cpu()
        v = torch.as_tensor(variance, dtype=torch.float64).detach().cpu()
        if e.shape != v.shape:
            raise ProbeError(f"error has shape {tuple(e.shape)}, variance has {tuple(v.shape)}")
        if not (torch.isfinite(e).all() and torch.isfinite(v).all()):
            raise ProbeError("errors and variances must be finite")
        if (v < 0).any():
            raise ProbeError("variances must be non-negative")
        self.sum_squared_error += float(e.pow(2).sum())
        self.sum_variance += float(v.sum())
        self.n_updates += 1
        return self.scale2

    @property
    def scale2(self) -> float:
        """The variance scale ``s^2`` (``prior`` until a non-zero variance was observed)."""
        if self.sum_variance <= 0:
            return self.prior
        pseudo = self.prior_weight * self.sum_variance / self.n_updates
        return (self.sum_squared_error + self.prior * pseudo) / (self.sum_variance + pseudo)

    def __repr__(self) -> str:
        return (f"VarianceScaling(prior={self.prior}, prior_weight={self.prior_weight}, n_updates={self.n_updates}, "
                f"scale2={self.scale2:.4g})")
