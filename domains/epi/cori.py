r"""The Cori et al. (2013) estimator of the instantaneous reproduction number, EpiEstim semantics.

With daily local incidence :math:`L_t`, imported incidence :math:`M_t`, serial interval
:math:`w_s` (:math:`w_0 = 0`) and a gamma prior on :math:`R` with shape :math:`a` and scale
:math:`b` (from the prior mean :math:`m` and sd :math:`s`: :math:`a = (m/s)^2`, :math:`b = s^2/m`),
the posterior of :math:`R` over a window :math:`[t_1, t_2]` is gamma with

.. math::

    a_{post} = a + \sum_{t=t_1}^{t_2} L_t, \qquad
    b_{post} = \Big(\frac{1}{b} + \sum_{t=t_1}^{t_2} \Lambda_t\Big)^{-1}, \qquad
    \Lambda_t = \sum_{s \ge 1} w_s (L_{t-s} + M_{t-s}),

so the posterior mean is :math:`a_{post} b_{post}`. As in EpiEstim, all cases of day 1 count as
imported, windows must start on day 2 or later, and windows that end before the mean serial
interval get no estimate (NaN). Everything is vectorised over many series: S series of T days
run as one matrix product and a few cumulative sums.

Reference: Cori, Ferguson, Fraser, Cauchemez. A new framework and software to estimate
time-varying reproduction numbers during epidemics. Am J Epidemiol 178(9):1505-1512, 2013.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import gammaincinv

from probe.errors import ProbeError

from .io import Incidence, check_incidence
from .serial_interval import check_serial_interval, discretize_serial_interval, serial_interval_moments

__all__ = ["cori", "cori_posterior", "CoriPosterior", "gamma_prior", "overall_infectivity", "default_windows",
           "resolve_serial_interval", "QUANTILES", "COLUMNS"]

QUANTILES = (0.025, 0.05, 0.25, 0.5, 0.75, 0.95, 0.975)
COLUMNS = ("t_start", "t_end", "mean", "std", "q025", "q05", "q25", "median", "q75", "q95", "q975")


def gamma_prior(mean_prior: float, std_prior: float) -> tuple[float, float]:
    """Shape and scale of the gamma prior with the given mean and sd (EpiEstim's default: 5 and 5)."""
    m, s = float(mean_prior), float(std_prior)
    if not (np.isfinite(m) and m > 0):
        raise ProbeError(f"mean_prior must be > 0, got {mean_prior}")
    if not (np.isfinite(s) and s > 0):
        raise ProbeError(f"std_prior must be > 0, got {std_prior}")
    return (m / s) ** 2, s**2 / m


def resolve_serial_interval(serial_interval: object, n_days: int) -> np.ndarray:
    """A discrete serial interval from a vector (non-parametric) or ``(mean, std)`` / ``{"mean", "std"}``.

    A parametric serial interval is discretised over days 0..T-1 with
    :func:`discretize_serial_interval`, exactly as EpiEstim's ``parametric_si`` method does.
    """
    if isinstance(serial_interval, Mapping):
        try:
            mean, std = serial_interval["mean"], serial_interval["std"]
        except KeyError as err:
            raise ProbeError(f"a parametric serial interval needs keys 'mean' and 'std', missing {err}") from None
        return discretize_serial_interval(mean, std, np.arange(n_days))
    if isinstance(serial_interval, tuple) and len(serial_interval) == 2 and serial_interval[0] != 0:
        return discretize_serial_interval(serial_interval[0], serial_interval[1], np.arange(n_days))
    return check_serial_interval(serial_interval)


def overall_infectivity(total: np.ndarray, w: np.ndarray) -> np.ndarray:
    r"""Total infectiousness :math:`\Lambda_t = \sum_{s=1}^{t-1} w_s I_{t-s}` for every day.

    Parameters
    ----------
    total : numpy.ndarray, shape (S, T)
        Local plus imported cases.
    w : numpy.ndarray, shape (K,)
        Serial interval, ``w[0]`` the weight of day 0 (ignored: EpiEstim requires it to be 0).

    Returns
    -------
    numpy.ndarray, shape (S, T); day 1 (index 0) has no past and gets 0.
    """
    t = total.shape[1]
    return total @ infectivity_matrix(w, t)


def infectivity_matrix(w: np.ndarray, n_days: int) -> np.ndarray:
    """The (T, T) matrix ``W`` with ``Lambda = I @ W``: ``W[u, t] = w[t - u]`` for ``1 <= t - u < len(w)``."""
    k = np.zeros(n_days)
    m = min(len(w), n_days)
    k[1:m] = w[1:m]
    lag = np.arange(n_days)[None, :] - np.arange(n_days)[:, None]
    return np.where(lag >= 0, k[np.clip(lag, 0, n_days - 1)], 0.0)


def default_windows(n_days: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """EpiEstim's default sliding windows: ``t_start = 2..T-window+1``, ``t_end = t_start + window - 1``."""
    window = int(window)
    if window < 1:
        raise ProbeError(f"window must be >= 1 day, got {window}")
    if n_days < window + 1:
        raise ProbeError(f"the series has {n_days} days; a window of {window} days needs at least {window + 1} "
                         "(day 1 only seeds the epidemic)")
    t_start = np.arange(2, n_days - window + 2)
    return t_start, t_start + window - 1


def _check_windows(t_start: object, t_end: object, n_days: int) -> tuple[np.ndarray, np.ndarray]:
    ts = np.atleast_1d(np.asarray(t_start, dtype=np.float64))
    te = np.atleast_1d(np.asarray(t_end, dtype=np.float64))
    if ts.shape != te.shape or ts.ndim != 1:
        raise ProbeError(f"t_start and t_end must be vectors of the same length, got {ts.shape} and {te.shape}")
    for nm, v in (("t_start", ts), ("t_end", te)):
        bad = (v != np.round(v)) | (v < 2) | (v > n_days)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ProbeError(f"{nm}[{i}] = {v[i]:g} must be an integer day between 2 and {n_days} (1-based)")
    bad = ts > te
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ProbeError(f"window {i}: t_start = {ts[i]:g} is after t_end = {te[i]:g}")
    return ts.astype(np.int64), te.astype(np.int64)


@dataclass(frozen=True)
class CoriPosterior:
    """Gamma posteriors of R for S series and W windows.

    Attributes
    ----------
    shape, scale : numpy.ndarray, shape (S, W)
        Posterior shape and scale (NaN where the window ends before the mean serial interval).
    t_start, t_end : numpy.ndarray of int, shape (W,)
        1-based inclusive windows.
    serial_interval : numpy.ndarray
        The discrete serial interval used.
    """

    shape: np.ndarray
    scale: np.ndarray
    t_start: np.ndarray
    t_end: np.ndarray
    serial_interval: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        return self.shape * self.scale

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.shape) * self.scale

    def quantile(self, q: float) -> np.ndarray:
        """Posterior quantile of R (see :meth:`quantiles`)."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: tuple[float, ...] = QUANTILES) -> np.ndarray:
        """Posterior quantiles, shape (len(qs), S, W).

        The standard-gamma quantile depends on the shape only, and shapes repeat (integer counts), so it
        is computed once per distinct shape (:func:`gamma_standard_quantiles`) and scaled.
        """
        a = self.shape.ravel()
        ok = np.isfinite(a)
        uniq, inv = _unique(a[ok])
        std_q = gamma_standard_quantiles(uniq, qs)
        out = np.full((len(qs), a.size), np.nan)
        out[:, ok] = std_q[:, inv]
        return out.reshape((len(qs),) + self.shape.shape) * self.scale[None]


def _unique(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(a, return_inverse=True)``, in linear time when ``a`` is an offset plus small integers
    (posterior shapes of integer counts): a presence table replaces the sort."""
    if a.size == 0:
        return a, np.zeros(0, dtype=np.int64)
    base = float(a.min())
    k = a - base
    ki = np.rint(k)
    if ki.max() < 4 * a.size + 1024 and np.array_equal(ki, k):
        ki = ki.astype(np.int64)
        present = np.zeros(int(ki.max()) + 1, dtype=bool)
        present[ki] = True
        rank = (np.cumsum(present) - 1)[ki]
        values = np.empty(int(present.sum()))
        values[rank] = a
        if np.array_equal(values[rank], a):  # distinct values never share a slot
            return values, rank
    return np.unique(a, return_inverse=True)


def gamma_standard_quantiles(a: np.ndarray, qs: tuple[float, ...], *, newton_above: float = 50.0) -> np.ndarray:
    r"""Quantiles of the standard gamma distribution (scale 1) for shapes ``a``, shape (len(qs), len(a)).

    Shapes below ``newton_above``, and quantiles outside [0.02, 0.98], use :func:`scipy.special.gammaincinv`.
    Larger shapes start from the
    Wilson-Hilferty approximation :math:`x_0 = a (1 - 1/(9a) + z_q / (3\sqrt{a}))^3` (relative error
    about :math:`10^{-4}` there) and take two Halley steps on :math:`P(a, x) = q` with the regularised
    incomplete gamma function, which costs a fraction of an inversion; cubic convergence takes the
    error to machine precision, agreeing with ``gammaincinv`` to about 1e-15.
    """
    from scipy.special import gammainc, gammaln, ndtri

    a = np.asarray(a, dtype=np.float64)
    out = np.empty((len(qs), a.size))
    big = a >= newton_above
    small = ~big
    ab = a[big]
    lg = gammaln(ab)
    root = np.sqrt(ab)
    for i, q in enumerate(qs):
        if not 0.02 <= q <= 0.98:
            out[i] = gammaincinv(a, q)
            continue
        if small.any():
            out[i, small] = gammaincinv(a[small], q)
        if big.any():
            x = ab * (1.0 - 1.0 / (9.0 * ab) + ndtri(q) / (3.0 * root)) ** 3
            for _ in range(2):  # Halley: f = P(a, x) - q, f' = density, f''/f' = (a - 1)/x - 1
                step = (gammainc(ab, x) - q) / np.exp((ab - 1.0) * np.log(x) - x - lg)
                x = x - step / (1.0 + 0.5 * step * ((ab - 1.0) / x - 1.0))
            out[i, big] = x
    return out


def split_imported(counts: np.ndarray, imported: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """EpiEstim's ``process_I``: every case of day 1 counts as imported."""
    local = counts.copy()
    imp = np.zeros_like(local) if imported is None else imported.copy()
    imp[:, 0] += local[:, 0]
    local[:, 0] = 0.0
    return local, imp


def cori_posterior(local: np.ndarray, imported: np.ndarray, w: np.ndarray, t_start: np.ndarray,
                   t_end: np.ndarray, *, a_prior: float, b_prior: float) -> CoriPosterior:
    """Posterior shapes and scales for already-checked arrays (local and imported of shape (S, T)).

    ``local[:, 0]`` is taken as given (see :func:`split_imported` for EpiEstim's day-1 convention).
    """
    lam = overall_infectivity(local + imported, w)
    sum_local, sum_lam = _window_sums(local, t_start, t_end), _window_sums(lam, t_start, t_end)
    mean_si = serial_interval_moments(w)[0]
    valid = (t_end > mean_si)[None, :]
    shape = np.where(valid, a_prior + sum_local, np.nan)
    scale = np.where(valid, 1.0 / (1.0 / b_prior + sum_lam), np.nan)
    return CoriPosterior(shape=shape, scale=scale, t_start=t_start, t_end=t_end, serial_interval=w)


def _window_sums(x: np.ndarray, t_start: np.ndarray, t_end: np.ndarray) -> np.ndarray:
    """Sums of ``x[:, t_start-1 : t_end]`` per window, shape (S, W).

    Windows of one width are summed directly over a sliding view (no cumulative-sum cancellation, so
    long series of large counts keep full precision), one width at a time.
    """
    out = np.empty((x.shape[0], len(t_start)))
    widths = t_end - t_start + 1
    for k in np.unique(widths):
        sel = widths == k
        sums = np.lib.stride_tricks.sliding_window_view(x, int(k), axis=1).sum(axis=-1)
        out[:, sel] = sums[:, t_start[sel] - 1]
    return out


def _split_frame(incidence: object, imported: object) -> tuple[object, object]:
    if isinstance(incidence, pd.DataFrame) and {"local", "imported"} <= set(incidence.columns) and imported is None:
        rest = incidence.drop(columns=["imported"])
        imp = incidence.drop(columns=["local"]).rename(columns={"imported": "local"})
        return rest, imp
    return incidence, imported


def prepare(incidence: object, serial_interval: object, *, window: int, t_start: object, t_end: object,
            imported: object, allow_fractional: bool) -> tuple[Incidence, np.ndarray, np.ndarray, np.ndarray,
                                                               np.ndarray, np.ndarray]:
    """Checked inputs of :func:`cori`: incidence, local, imported, serial interval and windows."""
    incidence, imported = _split_frame(incidence, imported)
    inc = check_incidence(incidence, min_days=2 if t_start is not None else int(window) + 1,
                          allow_fractional=allow_fractional)
    if imported is not None:
        imp = check_incidence(imported, name="imported", min_days=1, allow_fractional=allow_fractional).counts
        if imp.shape != inc.counts.shape:
            if imp.shape[1] == inc.counts.shape[1] and imp.shape[0] == 1:
                imp = np.repeat(imp, inc.counts.shape[0], axis=0)
            else:
                raise ProbeError(f"imported has shape {imp.shape}, incidence {inc.counts.shape}; they must match")
    else:
        imp = None
    n_days = inc.n_days
    w = resolve_serial_interval(serial_interval, n_days)
    if (t_start is None) != (t_end is None):
        raise ProbeError("give both t_start and t_end, or neither (sliding windows of `window` days)")
    if t_start is None:
        ts, te = default_windows(n_days, window)
    else:
        ts, te = _check_windows(t_start, t_end, n_days)
    local, imp = split_imported(inc.counts, imp)
    return inc, local, imp, w, ts, te


def cori(incidence: object, serial_interval: object, *, window: int = 7, mean_prior: float = 5.0,
         std_prior: float = 5.0, t_start: object = None, t_end: object = None, imported: object = None,
         allow_fractional: bool = False) -> pd.DataFrame:
    r"""Estimate the instantaneous reproduction number R_t (Cori et al. 2013, EpiEstim's ``estimate_R``).

    Parameters
    ----------
    incidence : array-like (T,) or (S, T), pandas.Series, pandas.DataFrame or CSV path
        Daily cases (local cases when ``imported`` is given). Many series run at once. A DataFrame
        with ``local`` and ``imported`` columns is one series with imported cases (EpiEstim's form).
    serial_interval : array-like of shape (K,), or ``(mean, std)``, or ``{"mean": m, "std": s}``
        Non-parametric distribution over days 0..K-1 (``w[0] = 0``, sums to 1), or the mean and sd
        of EpiEstim's offset-gamma serial interval, discretised over days 0..T-1 as ``discr_si`` does.
    window : int, default 7
        Width of the sliding windows (used when ``t_start``/``t_end`` are not given): EpiEstim's
        default windows ``t_start = 2..T-window+1``.
    mean_prior, std_prior : float, default 5.0, 5.0
        Mean and sd of the gamma prior on R.
    t_start, t_end : array-like of int, optional
        1-based inclusive windows (each between 2 and T).
    imported : array-like shaped like ``incidence``, optional
        Imported cases: they infect others but are not infected by the local epidemic.
    allow_fractional : bool, default False
        Accept non-integer counts (re-scaled or perturbed series).

    Returns
    -------
    pandas.DataFrame
        One row per window (and series): ``t_start, t_end, mean, std, q025, q05, q25, median, q75,
        q95, q975`` (posterior mean, sd and quantiles of R), preceded by ``series`` when several
        series were given. NaN where the window ends before the mean serial interval.

    Raises
    ------
    ProbeError
        Bad counts (naming the day and value), a series shorter than the window, a bad serial
        interval or bad windows.

    Examples
    --------
    >>> from domains.epi import cori, datasets
    >>> flu = datasets.load("Flu2009")
    >>> r = cori(flu.incidence, flu.serial_interval, t_start=range(2, 27), t_end=range(8, 33))
    """
    a, b = gamma_prior(mean_prior, std_prior)
    inc, local, imp, w, ts, te = prepare(incidence, serial_interval, window=window, t_start=t_start, t_end=t_end,
                                         imported=imported, allow_fractional=allow_fractional)
    post = cori_posterior(local, imp, w, ts, te, a_prior=a, b_prior=b)
    return posterior_frame(post, inc)


def posterior_frame(post: CoriPosterior, inc: Incidence | None = None) -> pd.DataFrame:
    """The results table of :func:`cori` from posteriors."""
    n_series, n_windows = post.shape.shape
    cols: dict[str, np.ndarray] = {
        "t_start": np.tile(post.t_start, n_series),
        "t_end": np.tile(post.t_end, n_series),
        "mean": post.mean.ravel(),
        "std": post.std.ravel(),
    }
    for q, name in zip(post.quantiles(QUANTILES), COLUMNS[4:]):
        cols[name] = q.ravel()
    df = pd.DataFrame(cols)
    if inc is not None and not inc.single:
        df.insert(0, "series", np.repeat(np.asarray(inc.names, dtype=object), n_windows))
    return df
