"""Serial-interval distributions: EpiEstim's discretised offset gamma and non-parametric ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import gamma

from probe.errors import ProbeError

__all__ = ["discretize_serial_interval", "check_serial_interval", "read_serial_interval_csv",
           "serial_interval_moments"]


def discretize_serial_interval(mean: float, std: float, k: object = None, *, n_days: int | None = None) -> np.ndarray:
    r"""Discretised serial interval with EpiEstim's ``discr_si`` semantics.

    The serial interval minus one day is gamma distributed with mean :math:`\mu - 1` and standard
    deviation :math:`\sigma` (shape :math:`a = ((\mu-1)/\sigma)^2`, scale :math:`b = \sigma^2/(\mu-1)`),
    and the probability of day :math:`k` is the integral of the continuous density against the
    triangular kernel of width 2 centred on :math:`k` (Cori et al. 2013, Web Appendix 11):

    .. math::

        w_k = k F_{a,b}(k) + (k-2) F_{a,b}(k-2) - 2(k-1) F_{a,b}(k-1)
              + a b \,[2 F_{a+1,b}(k-1) - F_{a+1,b}(k-2) - F_{a+1,b}(k)],

    clipped at 0, where :math:`F_{a,b}` is the gamma CDF. So :math:`w_0 = 0`.

    Parameters
    ----------
    mean : float
        Mean serial interval :math:`\mu` in days (> 1).
    std : float
        Standard deviation :math:`\sigma` in days (> 0).
    k : array-like of int, optional
        Days at which to evaluate (>= 0). Default ``0, 1, ..., n_days - 1``.
    n_days : int, optional
        Length when ``k`` is not given; default: enough days that the mass left out is below 1e-12.

    Returns
    -------
    numpy.ndarray
        :math:`w_k`, not renormalised (EpiEstim uses them as they are).

    References
    ----------
    Cori, Ferguson, Fraser, Cauchemez. A new framework and software to estimate time-varying
    reproduction numbers during epidemics. Am J Epidemiol 178(9), 2013.
    """
    mean, std = float(mean), float(std)
    if not np.isfinite(mean) or mean <= 1:
        raise ProbeError(f"serial interval mean must be > 1 day (EpiEstim's offset gamma), got {mean}")
    if not np.isfinite(std) or std <= 0:
        raise ProbeError(f"serial interval std must be > 0, got {std}")
    a = ((mean - 1.0) / std) ** 2
    b = std**2 / (mean - 1.0)
    if k is None:
        if n_days is None:
            n_days = int(np.ceil(gamma.ppf(1 - 1e-12, a, scale=b))) + 3
        if int(n_days) < 1:
            raise ProbeError(f"n_days must be >= 1, got {n_days}")
        k = np.arange(int(n_days), dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    if (k < 0).any():
        raise ProbeError(f"all days k must be >= 0, got {k[k < 0][0]:g}")

    def cdf(x: np.ndarray, shape: float) -> np.ndarray:
        return gamma.cdf(x, shape, scale=b)

    res = k * cdf(k, a) + (k - 2) * cdf(k - 2, a) - 2 * (k - 1) * cdf(k - 1, a)
    res = res + a * b * (2 * cdf(k - 1, a + 1) - cdf(k - 2, a + 1) - cdf(k, a + 1))
    return np.maximum(res, 0.0)


def check_serial_interval(w: object, *, name: str = "serial_interval", tol: float = 0.01) -> np.ndarray:
    """Validate a non-parametric serial interval (EpiEstim's ``check_si_distr``).

    Parameters
    ----------
    w : array-like of shape (K,)
        Probability of a serial interval of k = 0, 1, ..., K-1 days.
    tol : float, default 0.01
        How far the sum may be from 1 (EpiEstim's tolerance).

    Returns
    -------
    numpy.ndarray, float64 copy of ``w``.

    Raises
    ------
    ProbeError
        ``w[0] != 0``, a negative or non-finite entry (naming the day), or a sum off 1 by more than ``tol``.
    """
    try:
        w = np.array(w, dtype=np.float64, copy=True).reshape(-1)
    except (TypeError, ValueError) as err:
        raise ProbeError(f"{name} must be a vector of probabilities: {err}") from None
    if w.size < 2:
        raise ProbeError(f"{name} needs at least two days (w[0] = 0 and w[1]), got {w.size}")
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ProbeError(f"{name}: probability {w[k]} at day {k} must be finite and >= 0")
    if w[0] != 0:
        raise ProbeError(f"{name}: w[0] = {w[0]:g} must be 0 (a case cannot infect on the day it appears)")
    if abs(w.sum() - 1) > tol:
        raise ProbeError(f"{name} must sum to 1 (within {tol}), sums to {w.sum():.6g}")
    return w


def serial_interval_moments(w: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of a discrete serial interval over days 0..K-1 (as EpiEstim reports)."""
    k = np.arange(len(w), dtype=np.float64)
    m = float((w * k).sum())
    return m, float(np.sqrt(max((w * k**2).sum() - m**2, 0.0)))


def read_serial_interval_csv(path: str | Path) -> np.ndarray:
    """Read a non-parametric serial interval from CSV.

    The file has a column ``w`` (probabilities; optional ``t`` column giving days 0, 1, ...) or a
    single column of probabilities. Returns the checked vector (see :func:`check_serial_interval`).
    """
    path = Path(path)
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ProbeError(f"{path}: cannot read serial-interval CSV: {err}") from None
    col = "w" if "w" in df.columns else (df.columns[-1] if len(df.columns) else None)
    if col is None:
        raise ProbeError(f"{path}: no column of probabilities")
    if "t" in df.columns:
        t = pd.to_numeric(df["t"], errors="coerce").to_numpy()
        if not np.array_equal(t, np.arange(len(df))):
            i = int(np.flatnonzero(t != np.arange(len(df)))[0])
            raise ProbeError(f"{path}: line {i + 2}: day t = {df['t'].iloc[i]} should be {i} (days 0, 1, 2, ...)")
    values = pd.to_numeric(df[col], errors="coerce")
    if values.isna().any():
        i = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise ProbeError(f"{path}: line {i + 2}: probability {df[col].iloc[i]!r} is not a number")
    return check_serial_interval(values.to_numpy(), name=str(path))
