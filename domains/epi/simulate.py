r"""Renewal-equation epidemics with realistic reporting, for testing and training R_t estimators.

Infections follow the renewal equation (Fraser 2007; Cori et al. 2013)

.. math::

    I_t \sim \mathrm{NegBin}\big(\text{mean } R_t \Lambda_t,\ \text{size } k_I\big), \qquad
    \Lambda_t = \sum_{s \ge 1} w_s I_{t-s},

seeded by imported cases on day 1. Reports are under-counted, spread over a reporting delay and
modulated by the day of the week, with over-dispersed noise:

.. math::

    Y_t \sim \mathrm{NegBin}\Big(\text{mean } \rho\, \omega_{\mathrm{dow}(t)} \sum_{d \ge 0} \delta_d I_{t-d},\
    \text{size } k_Y\Big).

A size of ``None`` means Poisson noise. The negative binomial with mean :math:`\mu` and size
:math:`k` has variance :math:`\mu + \mu^2/k`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from probe.errors import ProbeError

from .cori import resolve_serial_interval
from .serial_interval import discretize_serial_interval

__all__ = ["SimulatedEpidemic", "simulate", "random_r_trajectories", "WEEKDAY_EFFECT"]

# Reporting by day of week (Monday first): fewer reports at weekends, catch-up on Monday.
WEEKDAY_EFFECT = np.array([1.25, 1.05, 1.0, 1.0, 0.95, 0.7, 0.55]) / np.mean([1.25, 1.05, 1.0, 1.0, 0.95, 0.7, 0.55])


@dataclass(frozen=True)
class SimulatedEpidemic:
    """S simulated epidemics of T days.

    Attributes
    ----------
    r_true : numpy.ndarray, shape (S, T)
        The reproduction number that generated the infections.
    infections : numpy.ndarray, shape (S, T)
        True daily infections (day 1: the imported seed cases).
    observed : numpy.ndarray, shape (S, T)
        Reported daily counts (integers).
    expected : numpy.ndarray, shape (S, T)
        Mean of the reports given the infections (before reporting noise).
    serial_interval : numpy.ndarray
        Serial interval used by the renewal equation.
    settings : dict
        The reporting parameters.
    """

    r_true: np.ndarray
    infections: np.ndarray
    observed: np.ndarray
    expected: np.ndarray
    serial_interval: np.ndarray
    settings: dict = field(default_factory=dict)

    def window_mean_r(self, window: int = 7) -> np.ndarray:
        """True R averaged over the window ending on each day (NaN for the first ``window - 1`` days):
        the quantity a window estimator such as Cori's targets."""
        c = np.cumsum(np.concatenate([np.zeros((self.r_true.shape[0], 1)), self.r_true], 1), 1)
        out = np.full(self.r_true.shape, np.nan)
        out[:, window - 1:] = (c[:, window:] - c[:, :-window]) / window
        return out


def _negbin(rng: np.random.Generator, mean: np.ndarray, size: float | None) -> np.ndarray:
    mean = np.maximum(mean, 0.0)
    if size is None:
        return rng.poisson(mean).astype(np.float64)
    # gamma-Poisson mixture: exact negative binomial with the given mean and size
    lam = rng.gamma(size, np.where(mean > 0, mean / size, 0.0))
    return rng.poisson(lam).astype(np.float64)


def random_r_trajectories(n_series: int, n_days: int, *, low: float = 0.5, high: float = 2.5, rng: object = None,
                          change_every: tuple[int, int] = (10, 40)) -> np.ndarray:
    """Piecewise-smooth random R_t paths: log R moves linearly between random levels at random times.

    Parameters
    ----------
    n_series, n_days : int
    low, high : float, default 0.5, 2.5
        Range of R (levels are log-uniform in it).
    rng : numpy.random.Generator or int, optional
    change_every : (int, int), default (10, 40)
        Range of days between changes of level.

    Returns
    -------
    numpy.ndarray, shape (n_series, n_days)
    """
    rng = np.random.default_rng(rng)
    out = np.empty((n_series, n_days))
    for s in range(n_series):
        knots, t = [0], 0
        while t < n_days - 1:
            t = min(n_days - 1, t + int(rng.integers(change_every[0], change_every[1] + 1)))
            knots.append(t)
        levels = rng.uniform(np.log(low), np.log(high), len(knots))
        out[s] = np.exp(np.interp(np.arange(n_days), knots, levels))
    return out


def simulate(n_days: int = 120, *, r_t: object = None, serial_interval: object = (4.0, 2.0), n_series: int = 1,
             seed_cases: float | tuple[float, float] = 20.0, infection_size: float | None = 50.0,
             reporting_rate: float | tuple[float, float] = 0.5, day_of_week: object = WEEKDAY_EFFECT,
             delay: object = (3.0, 1.5), report_size: float | None = 30.0, max_infections: float = 1e6,
             seed: int | None = 0) -> SimulatedEpidemic:
    r"""Simulate epidemics by the renewal equation and report them with realistic errors.

    Parameters
    ----------
    n_days : int, default 120
    r_t : float, array-like of shape (T,) or (S, T), or None
        Reproduction number over time; default random paths from :func:`random_r_trajectories`.
    serial_interval : (mean, std) or array-like, default (4.0, 2.0)
        Generation/serial interval: EpiEstim's discretised offset gamma or a discrete distribution.
    n_series : int, default 1
        Independent epidemics (used when ``r_t`` is not 2-d).
    seed_cases : float or (low, high), default 20
        Imported cases on day 1 (a range draws one value per series, log-uniformly).
    infection_size : float or None, default 50
        Negative-binomial size of the transmission noise (None: Poisson).
    reporting_rate : float or (low, high), default 0.5
        Fraction of infections ever reported (a range: one rate per series).
    day_of_week : array-like of 7 floats or None, default :data:`WEEKDAY_EFFECT`
        Multipliers by weekday (day 1 is a Monday); None for none.
    delay : (mean, std), array-like or None, default (3.0, 1.5)
        Delay from infection to report in days: a discretised gamma (mean, sd), a distribution over
        0, 1, ... days, or None for same-day reporting.
    report_size : float or None, default 30
        Negative-binomial size of the reporting noise (None: Poisson).
    max_infections : float, default 1e6
        Daily infections are capped here (a population bound), keeping explosive paths finite; the
        days where the cap bit are in ``settings["capped"]`` (R_t there is not what generated the data).
    seed : int or None, default 0

    Returns
    -------
    SimulatedEpidemic
    """
    rng = np.random.default_rng(seed)
    n_days = int(n_days)
    if n_days < 2:
        raise ProbeError(f"n_days must be >= 2, got {n_days}")
    if r_t is None:
        r = random_r_trajectories(int(n_series), n_days, rng=rng)
    else:
        r = np.array(r_t, dtype=np.float64, copy=True)
        r = np.broadcast_to(r if r.ndim == 2 else r.reshape(1, -1) if r.ndim == 1 else r.reshape(1, 1),
                            (r.shape[0] if r.ndim == 2 else int(n_series), n_days)).copy()
        if (~np.isfinite(r) | (r < 0)).any():
            s, t = (int(v[0]) for v in np.nonzero(~np.isfinite(r) | (r < 0)))
            raise ProbeError(f"r_t must be finite and >= 0; series {s}, day {t + 1} has {r[s, t]}")
    n_s = r.shape[0]
    w = resolve_serial_interval(serial_interval, n_days)
    seeds = _per_series(seed_cases, n_s, rng, log=True)
    rho = _per_series(reporting_rate, n_s, rng, log=False)
    if ((rho <= 0) | (rho > 1)).any():
        raise ProbeError(f"reporting_rate must lie in (0, 1], got {reporting_rate}")

    infections = np.zeros((n_s, n_days))
    capped = np.zeros((n_s, n_days), dtype=bool)
    infections[:, 0] = np.round(seeds)
    k = min(len(w), n_days)
    wr = w[1:k][::-1]  # weights of lags k-1 .. 1
    for t in range(1, n_days):
        lo = max(0, t - (k - 1))
        lam = infections[:, lo:t] @ wr[len(wr) - (t - lo):]
        drawn = _negbin(rng, r[:, t] * lam, infection_size)
        capped[:, t] = drawn > max_infections
        infections[:, t] = np.minimum(drawn, max_infections)

    if delay is None:
        dpmf = np.array([1.0])
    elif isinstance(delay, tuple) and len(delay) == 2:
        dm, ds = delay
        # discretised gamma over 0, 1, ... days (mass of [d - 1/2, d + 1/2))
        from scipy.stats import gamma

        a, b = (dm / ds) ** 2, ds**2 / dm
        edges = np.concatenate([[0.0], np.arange(0.5, 3 * dm + 6 * ds + 1.5)])
        dpmf = np.diff(gamma.cdf(edges, a, scale=b))
        dpmf = dpmf / dpmf.sum()
    else:
        dpmf = np.asarray(delay, dtype=np.float64)
        if (dpmf < 0).any() or not np.isfinite(dpmf).all() or dpmf.sum() <= 0:
            raise ProbeError("delay must be a non-negative distribution over days 0, 1, ...")
        dpmf = dpmf / dpmf.sum()
    delayed = np.zeros_like(infections)
    for d, p in enumerate(dpmf[:n_days]):
        delayed[:, d:] += p * infections[:, : n_days - d]
    dow = np.ones(7) if day_of_week is None else np.asarray(day_of_week, dtype=np.float64)
    if dow.shape != (7,) or (dow < 0).any():
        raise ProbeError(f"day_of_week must be 7 non-negative multipliers, got {day_of_week!r}")
    expected = rho[:, None] * dow[np.arange(n_days) % 7][None, :] * delayed
    observed = _negbin(rng, expected, report_size)
    settings = {"reporting_rate": rho, "day_of_week": dow, "delay": dpmf, "infection_size": infection_size,
                "report_size": report_size, "seed_cases": seeds, "capped": capped}
    return SimulatedEpidemic(r_true=r, infections=infections, observed=observed, expected=expected,
                             serial_interval=w, settings=settings)


def _per_series(value: object, n: int, rng: np.random.Generator, *, log: bool) -> np.ndarray:
    if isinstance(value, tuple):
        lo, hi = float(value[0]), float(value[1])
        if log:
            return np.exp(rng.uniform(np.log(lo), np.log(hi), n))
        return rng.uniform(lo, hi, n)
    return np.full(n, float(value))


def default_serial_interval() -> np.ndarray:
    """The serial interval the simulator uses by default (mean 4, sd 2 days, over 0..30 days)."""
    return discretize_serial_interval(4.0, 2.0, np.arange(31))
