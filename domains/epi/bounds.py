r"""Hard error bounds on R_t estimates given a bound on reporting error.

A data-error model (:class:`ReportingError`) says how far the reported counts :math:`x` may be
from the true ones :math:`x'`: per day by at most an absolute amount, per day by at most a
fraction of the count, in total (L1) by at most a number of cases; always :math:`x' \ge 0`. Any
combination may be given; the feasible set is the intersection, a polytope.

**Cori posterior mean, exactly.** For a window :math:`D` the posterior mean is

.. math::

    R(x') = \frac{a + c^\top x'}{1/b + d^\top (x' + m)}, \qquad
    c_u = [u \in D], \quad d_u = \sum_{t \in D} w_{t-u},

a ratio of affine functions with a positive denominator (:math:`m` the imported cases). Its
maximum and minimum over a polytope are linear-fractional programs, turned into linear programs
by the Charnes-Cooper substitution :math:`y = \tau x'`, :math:`\tau = 1/(1/b + d^\top(x'+m))`
(Charnes & Cooper, Naval Res. Logist. Q. 9, 1962) and solved by HiGHS through
:func:`scipy.optimize.linprog`. The optimum is attained at a vertex, returned as the worst-case
counts. As an independent check, Dinkelbach's iteration (Dinkelbach, Manage. Sci. 13, 1967) with
its inner step solved in closed form (a fractional knapsack: move the days of largest
:math:`|c_u - \lambda d_u|` first) gives the same optimum in a few steps; for per-day boxes it
reduces to the closed-form threshold rule "every day whose ratio :math:`c_u/d_u` beats the
optimum at its upper bound, every other day at its lower bound".

Bounds are over real-valued counts, so they also hold for integer ones.

**Neural estimator.** See :func:`neural_bounds`: the error model is mapped to an exact per-day
box in the features :math:`\log(1 + x)` and bounded with :mod:`probe.certify` (CROWN or IBP, and
the certified Lipschitz constant), keeping the tighter of the sound bounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import linprog

from probe.errors import ProbeError

from .cori import gamma_prior, infectivity_matrix, prepare
from .serial_interval import serial_interval_moments

__all__ = ["ReportingError", "CoriBounds", "cori_mean_bounds", "cori_mean_of_counts", "NeuralBounds", "neural_bounds"]


@dataclass(frozen=True)
class ReportingError:
    """How wrong the reported daily counts may be (all given constraints hold at once).

    Parameters
    ----------
    absolute : float or array-like of shape (T,), optional
        Per-day bound on |true - reported| in cases.
    relative : float, optional
        Per-day bound on |true - reported| as a fraction of the reported count (0.1 = 10 %).
    l1 : float, optional
        Bound on the total over days of |true - reported| (cases).

    True counts are never negative.
    """

    absolute: object = None
    relative: float | None = None
    l1: float | None = None

    def __post_init__(self) -> None:
        if self.absolute is None and self.relative is None and self.l1 is None:
            raise ProbeError("ReportingError needs at least one of absolute, relative, l1")
        if self.absolute is not None:
            a = np.asarray(self.absolute, dtype=np.float64)
            if not np.isfinite(a).all() or (a < 0).any():
                raise ProbeError(f"absolute error must be finite and >= 0, got {self.absolute!r}")
        for name in ("relative", "l1"):
            v = getattr(self, name)
            if v is not None and not (np.isfinite(v) and v >= 0):
                raise ProbeError(f"{name} error must be finite and >= 0, got {v!r}")

    def box(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-day interval ``[lo, hi]`` of the true counts implied by the per-day constraints."""
        lo, hi = np.zeros_like(x), np.full_like(x, np.inf)
        if self.absolute is not None:
            a = np.broadcast_to(np.asarray(self.absolute, dtype=np.float64), x.shape)
            lo, hi = np.maximum(lo, x - a), np.minimum(hi, x + a)
        if self.relative is not None:
            r = float(self.relative)
            lo, hi = np.maximum(lo, x * (1 - r)), np.minimum(hi, x * (1 + r))
        if self.l1 is not None:
            lo, hi = np.maximum(lo, x - self.l1), np.minimum(hi, x + self.l1)
        return lo, hi

    def contains(self, x: np.ndarray, x_true: np.ndarray, atol: float = 1e-9) -> bool:
        """Whether ``x_true`` is a possible truth for reported ``x``."""
        lo, hi = self.box(x)
        ok = bool(((x_true >= lo - atol) & (x_true <= hi + atol)).all())
        if self.l1 is not None:
            ok &= float(np.abs(x_true - x).sum()) <= self.l1 + atol
        return ok

    def describe(self) -> str:
        parts = []
        if self.absolute is not None:
            a = np.asarray(self.absolute)
            parts.append(f"±{float(a):g} cases/day" if a.ndim == 0 else "±(per-day) cases")
        if self.relative is not None:
            parts.append(f"±{100 * self.relative:g}%/day")
        if self.l1 is not None:
            parts.append(f"≤{self.l1:g} cases in total")
        return ", ".join(parts)


@dataclass(frozen=True)
class CoriBounds:
    """Exact range of the Cori posterior mean over all counts allowed by a reporting-error model.

    Attributes
    ----------
    t_start, t_end : numpy.ndarray of int, shape (W,)
        1-based inclusive windows.
    estimate : numpy.ndarray, shape (W,)
        Posterior mean on the reported counts.
    lower, upper : numpy.ndarray, shape (W,)
        Minimum and maximum of the posterior mean over the error model (NaN where EpiEstim gives no
        estimate).
    worst_lower, worst_upper : numpy.ndarray, shape (W, T)
        Counts attaining ``lower`` and ``upper``.
    check_gap : numpy.ndarray, shape (W,)
        Largest difference between the LP optimum and the independent Dinkelbach optimum.
    error : ReportingError
    incidence : numpy.ndarray, shape (T,)
        The reported counts.
    method : str, default "lp"
    extras : dict
        ``dinkelbach_iterations``: numpy.ndarray of int, shape (W, 2), the iterations Dinkelbach's
        check took for the lower (column 0) and upper (column 1) bound; 0 where there is no estimate.
    """

    t_start: np.ndarray
    t_end: np.ndarray
    estimate: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    worst_lower: np.ndarray
    worst_upper: np.ndarray
    check_gap: np.ndarray
    error: ReportingError
    incidence: np.ndarray
    method: str = "lp"
    extras: dict = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"t_start": self.t_start, "t_end": self.t_end, "estimate": self.estimate,
                             "lower": self.lower, "upper": self.upper, "check_gap": self.check_gap})

    def plot(self, ax: object = None, **kwargs: object) -> object:
        """R_t with its certified band (see :func:`domains.epi.plots.plot_band`)."""
        from .plots import plot_band

        return plot_band(self.t_end, self.estimate, self.lower, self.upper, ax=ax, **kwargs)


@dataclass(frozen=True)
class _LinearFractional:
    """R(x) = (alpha + c.x) / (beta + d.x) on days 1..n."""

    alpha: float
    c: np.ndarray
    beta: float
    d: np.ndarray

    def value(self, x: np.ndarray) -> np.ndarray:
        return (self.alpha + x @ self.c) / (self.beta + x @ self.d)


def _forms(x: np.ndarray, m: np.ndarray, w: np.ndarray, ts: np.ndarray, te: np.ndarray, a: float, b: float
           ) -> list[_LinearFractional]:
    n = len(x)
    wmat = infectivity_matrix(w, n)
    out = []
    for t1, t2 in zip(ts, te):
        days = np.arange(t1 - 1, t2)  # 0-based; t_start >= 2 so day 1 (always imported) is never counted
        c = np.zeros(n)
        c[days] = 1.0
        d = wmat[:, days].sum(axis=1)
        out.append(_LinearFractional(alpha=a, c=c, beta=1.0 / b + float(m @ d), d=d))
    return out


def cori_mean_of_counts(counts: np.ndarray, serial_interval: np.ndarray, t_start: np.ndarray, t_end: np.ndarray, *,
                        mean_prior: float = 5.0, std_prior: float = 5.0, imported: np.ndarray | None = None
                        ) -> np.ndarray:
    """Posterior mean of R for real-valued counts of shape (N, T) (many candidate truths at once).

    The same numbers as :func:`domains.epi.cori`'s ``mean`` column, without input checks, for
    evaluating perturbed series quickly.
    """
    from .cori import cori_posterior, split_imported

    counts = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    imp = None if imported is None else np.broadcast_to(np.asarray(imported, dtype=np.float64), counts.shape)
    local, imp = split_imported(counts, imp)
    a, b = gamma_prior(mean_prior, std_prior)
    post = cori_posterior(local, imp, np.asarray(serial_interval, dtype=np.float64), np.asarray(t_start),
                          np.asarray(t_end), a_prior=a, b_prior=b)
    return post.mean


def _lp(form: _LinearFractional, x0: np.ndarray, lo: np.ndarray, hi: np.ndarray, l1: float | None,
        sense: int) -> tuple[float, np.ndarray]:
    """Charnes-Cooper LP for max (sense=+1) or min (sense=-1) of the form; returns (value, x*)."""
    n = len(x0)
    s = max(float(np.max(x0, initial=0.0)), float(np.max(np.where(np.isfinite(hi), hi, 0.0), initial=0.0)), 1.0)
    c, d = form.c, form.d
    alpha, beta = form.alpha / s, form.beta / s
    xi0, lo_s, hi_s = x0 / s, lo / s, hi / s
    use_l1 = l1 is not None
    nv = n + 1 + (n if use_l1 else 0)  # y, tau, v
    obj = np.zeros(nv)
    obj[:n], obj[n] = -sense * c, -sense * alpha
    a_eq = np.zeros((1, nv))
    a_eq[0, :n], a_eq[0, n] = d, beta
    rows, rhs = [], []
    eye = np.eye(n)
    # lo*tau - y <= 0
    r = np.zeros((n, nv))
    r[:, :n], r[:, n] = -eye, lo_s
    rows.append(r)
    rhs.append(np.zeros(n))
    fin = np.isfinite(hi_s)
    if fin.any():
        r = np.zeros((int(fin.sum()), nv))
        r[:, :n], r[:, n] = eye[fin], -hi_s[fin]
        rows.append(r)
        rhs.append(np.zeros(int(fin.sum())))
    if use_l1:
        for sign in (1.0, -1.0):  # |y - xi0 tau| <= v
            r = np.zeros((n, nv))
            r[:, :n], r[:, n], r[:, n + 1:] = sign * eye, -sign * xi0, -eye
            rows.append(r)
            rhs.append(np.zeros(n))
        r = np.zeros((1, nv))
        r[0, n + 1:], r[0, n] = 1.0, -l1 / s
        rows.append(r)
        rhs.append(np.zeros(1))
    bounds = [(None, None)] * n + [(0, None)] + [(0, None)] * (n if use_l1 else 0)
    res = linprog(obj, A_ub=np.vstack(rows), b_ub=np.concatenate(rhs), A_eq=a_eq, b_eq=[1.0], bounds=bounds,
                  method="highs", options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10})
    if res.status != 0:
        raise ProbeError(f"the linear-fractional program could not be solved: {res.message}")
    tau = res.x[n]
    x_star = s * res.x[:n] / tau
    return -sense * res.fun, _feasible(x_star, x0, lo, hi, l1)


def _feasible(x: np.ndarray, x0: np.ndarray, lo: np.ndarray, hi: np.ndarray, l1: float | None) -> np.ndarray:
    """Remove solver round-off: clip into the box and shrink into the L1 ball."""
    x = np.clip(x, lo, hi)
    if l1 is not None:
        delta = x - x0
        total = np.abs(delta).sum()
        if total > l1:
            x = x0 + delta * (l1 / total)
    return x


@dataclass(frozen=True)
class _DinkelbachSolution:
    """Optimum of one Dinkelbach run: the ratio, the counts attaining it, the iterations taken."""

    value: float
    x: np.ndarray
    iterations: int


def _dinkelbach(form: _LinearFractional, x0: np.ndarray, lo: np.ndarray, hi: np.ndarray, l1: float | None,
                sense: int, max_iter: int = 200, rtol: float = 1e-14) -> _DinkelbachSolution:
    r"""Exact optimum by Dinkelbach's iteration with a closed-form (greedy) inner step.

    Maximises :math:`R(x) = N(x)/D(x)` (``sense=+1``; ``-1`` maximises :math:`-R`) by
    :math:`x_{k+1} = \arg\max_x N(x) - \lambda_k D(x)`, :math:`\lambda_{k+1} = R(x_{k+1})`
    (Dinkelbach, Manage. Sci. 13, 1967). :math:`F(\lambda_k) = D(x_{k+1})(\lambda_{k+1} - \lambda_k) \ge 0`
    and :math:`F(\lambda^*) = 0`; the iteration stops once the step
    :math:`\lambda_{k+1} - \lambda_k` is within ``rtol`` of :math:`|\lambda|`. The test is on the
    magnitude: the minimum is found as a negative ratio, where a test scaled by the signed ratio never holds.
    """
    sgn = float(sense)
    alpha, c = sgn * form.alpha, sgn * form.c  # maximise (alpha + c.x) / (beta + d.x)
    budget = np.inf if l1 is None else float(l1)
    x = x0.copy()
    lam = (alpha + c @ x) / (form.beta + form.d @ x)
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 - the count is returned
        g = c - lam * form.d
        up = np.where(g > 0, hi - x0, x0 - lo)  # how far each day may move in its good direction
        gain = np.abs(g)
        order = np.argsort(-gain, kind="stable")
        if not np.isfinite(budget) and np.isinf(up[gain > 0]).any():
            raise ProbeError("the error model allows unbounded counts; give relative, absolute or l1 bounds")
        cap = np.minimum(up[order], budget)
        used = np.cumsum(cap)
        before = np.concatenate([[0.0], used[:-1]])
        move = np.clip(np.minimum(cap, budget - before), 0, None)
        move[gain[order] == 0] = 0.0
        x = x0.copy()
        x[order] += np.sign(g[order]) * move
        new = (alpha + c @ x) / (form.beta + form.d @ x)
        if new - lam <= rtol * max(abs(lam), abs(new)) + 1e-300:
            lam = max(lam, new)
            break
        lam = new
    return _DinkelbachSolution(value=sgn * lam, x=x, iterations=iterations)


def cori_mean_bounds(incidence: object, serial_interval: object, error: ReportingError, *, window: int = 7,
                     mean_prior: float = 5.0, std_prior: float = 5.0, t_start: object = None, t_end: object = None,
                     imported: object = None) -> CoriBounds:
    r"""Exact minimum and maximum of the Cori posterior mean over all counts allowed by ``error``.

    Parameters
    ----------
    incidence, serial_interval, window, mean_prior, std_prior, t_start, t_end, imported
        As for :func:`domains.epi.cori` (one series). Counts may be fractional.
    error : ReportingError
        The data-error model; it applies to the reported (local) counts, imported cases are taken as known.

    Returns
    -------
    CoriBounds
        Per window: the estimate, the exact bounds (linear-fractional programs solved as LPs by the
        Charnes-Cooper transform, HiGHS) and the counts that attain them; ``check_gap`` is the largest
        difference to the Dinkelbach optimum with closed-form inner steps. The reported bounds are the
        outer envelope of both (sound even where the solver stops within its tolerance).

    Notes
    -----
    The posterior mean is :math:`(a + c^\top x)/(1/b + d^\top(x+m))`; with :math:`\tau = 1/(1/b + d^\top(x+m))`
    and :math:`y = \tau x`, maximising it over :math:`\{x : A x \le h\}` is the LP
    :math:`\max\, a\tau + c^\top y` s.t. :math:`(1/b + d^\top m)\tau + d^\top y = 1`, :math:`A y \le h \tau`,
    :math:`\tau \ge 0` (Charnes & Cooper 1962).
    """
    if not isinstance(error, ReportingError):
        raise ProbeError(f"error must be a ReportingError, got {type(error).__name__}")
    a, b = gamma_prior(mean_prior, std_prior)
    inc, local, imp, w, ts, te = prepare(incidence, serial_interval, window=window, t_start=t_start, t_end=t_end,
                                         imported=imported, allow_fractional=True)
    if inc.counts.shape[0] != 1:
        raise ProbeError(f"cori_mean_bounds takes one series, got {inc.counts.shape[0]}")
    x = inc.counts[0]
    m = imp[0] - np.r_[x[0], np.zeros(len(x) - 1)]  # imported cases other than day 1's reported ones
    lo, hi = error.box(x)
    if error.l1 is None and np.isinf(hi).any():
        raise ProbeError("the error model allows unbounded counts; give relative, absolute or l1 bounds")
    mean_si = serial_interval_moments(w)[0]
    forms = _forms(x, m, w, ts, te, a, b)
    n_w = len(ts)
    est, lower, upper, gap = (np.full(n_w, np.nan) for _ in range(4))
    worst_lo, worst_hi = np.tile(x, (n_w, 1)), np.tile(x, (n_w, 1))
    iterations = np.zeros((n_w, 2), dtype=np.int64)
    for j, form in enumerate(forms):
        if not te[j] > mean_si:
            continue
        # only days that enter the window's numerator or infectiousness matter; the rest keep their counts
        act = np.flatnonzero((form.c != 0) | (form.d != 0))
        fixed = np.ones(len(x), dtype=bool)
        fixed[act] = False
        beta = form.beta + float(form.d[fixed] @ x[fixed])
        alpha = form.alpha + float(form.c[fixed] @ x[fixed])
        sub = _LinearFractional(alpha, form.c[act], beta, form.d[act])
        xa = x[act]
        est[j] = sub.value(xa)
        for sense, bound, worst in ((1, upper, worst_hi), (-1, lower, worst_lo)):
            v_lp, x_lp = _lp(sub, xa, lo[act], hi[act], error.l1, sense)
            dk = _dinkelbach(sub, xa, lo[act], hi[act], error.l1, sense)
            v_dk, x_dk = dk.value, dk.x
            iterations[j, int(sense == 1)] = dk.iterations
            att_lp, att_dk = sub.value(x_lp), sub.value(x_dk)
            candidates = [v_lp, v_dk, att_lp, att_dk]
            bound[j] = max(candidates) if sense == 1 else min(candidates)
            worst[j, act] = x_dk if sense * att_dk >= sense * att_lp else x_lp
            gap[j] = np.nanmax([gap[j], abs(v_lp - v_dk)])
    return CoriBounds(t_start=ts, t_end=te, estimate=est, lower=lower, upper=upper, worst_lower=worst_lo,
                      worst_upper=worst_hi, check_gap=gap, error=error, incidence=x.copy(),
                      extras={"dinkelbach_iterations": iterations})


@dataclass(frozen=True)
class NeuralBounds:
    """Certified range of a neural R_t estimate over all counts allowed by a reporting-error model.

    Attributes
    ----------
    t_start, t_end : numpy.ndarray of int, shape (W,)
        1-based windows (``t_end`` is the last day the network reads).
    estimate, lower, upper : numpy.ndarray, shape (W,)
        The estimate of R and sound bounds on it (the tightest of the methods tried).
    per_method : dict of str -> (lower, upper)
        Bounds from each method ("crown", "ibp", "lipschitz-linf", "lipschitz-l1").
    best_lower, best_upper : numpy.ndarray of str, shape (W,)
        Which method gave each bound.
    lipschitz : dict of str -> float
        Certified Lipschitz constants of log R in the features, per norm.
    error : ReportingError
    """

    t_start: np.ndarray
    t_end: np.ndarray
    estimate: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    per_method: dict
    best_lower: np.ndarray
    best_upper: np.ndarray
    lipschitz: dict
    error: ReportingError

    def to_frame(self) -> pd.DataFrame:
        df = pd.DataFrame({"t_start": self.t_start, "t_end": self.t_end, "estimate": self.estimate,
                           "lower": self.lower, "upper": self.upper, "best_lower": self.best_lower,
                           "best_upper": self.best_upper})
        for name, (lo, hi) in self.per_method.items():
            df[f"lower_{name}"], df[f"upper_{name}"] = lo, hi
        return df

    def plot(self, ax: object = None, **kwargs: object) -> object:
        from .plots import plot_band

        return plot_band(self.t_end, self.estimate, self.lower, self.upper, ax=ax, **kwargs)


def neural_bounds(estimator: object, incidence: object, error: ReportingError, *,
                  methods: tuple[str, ...] = ("crown", "ibp", "lipschitz"), device: object = None) -> NeuralBounds:
    r"""Sound bounds on a neural R_t estimate for every window of one series, under ``error``.

    The per-day count box of the error model maps exactly onto the feature box
    :math:`[\log(1+lo_t), \log(1+hi_t)]` (``log1p`` is increasing); :func:`probe.certify.bound_outputs`
    bounds log R over it with CROWN and IBP. The certified L-inf Lipschitz constant :math:`K_\infty`
    gives :math:`|\Delta \log R| \le K_\infty \max_t |\Delta f_t|`; with an L1 budget :math:`B`,
    :math:`\sum_t |\Delta f_t| \le B / (1 + \min_t lo_t)` (the slope of ``log1p`` is at most
    :math:`1/(1+lo_t)`), so :math:`|\Delta \log R| \le K_1 B/(1 + \min_t lo_t)`. All bounds are sound;
    the tightest lower and upper are kept, then mapped through ``exp``. The bounds are computed in
    float64 on a copy of the network.

    Parameters
    ----------
    estimator : NeuralRtEstimator
    incidence : one series (array, Series, CSV path); fractional counts allowed.
    error : ReportingError
    methods : tuple of str, default ("crown", "ibp", "lipschitz")
    device : str or torch.device, optional

    Returns
    -------
    NeuralBounds
    """
    import copy

    import torch

    from probe.certify import bound_outputs, lipschitz_bound

    from .io import check_incidence
    from .neural import features

    if not isinstance(error, ReportingError):
        raise ProbeError(f"error must be a ReportingError, got {type(error).__name__}")
    unknown = set(methods) - {"crown", "ibp", "lipschitz"}
    if unknown:
        raise ProbeError(f"unknown bound methods {sorted(unknown)}; use crown, ibp, lipschitz")
    inc = check_incidence(incidence, min_days=estimator.length, allow_fractional=True)
    if inc.counts.shape[0] != 1:
        raise ProbeError(f"neural_bounds takes one series, got {inc.counts.shape[0]}")
    y = inc.counts[0]
    lo_y, hi_y = error.box(y)
    if np.isinf(hi_y).any():
        raise ProbeError("the error model allows unbounded counts; give relative, absolute or l1 bounds")
    length = estimator.length
    x = features(y, length)[0]
    flo, fhi = features(lo_y, length)[0], features(hi_y, length)[0]
    model = copy.deepcopy(estimator.model).double()
    xt, lt, ht = (torch.as_tensor(a, dtype=torch.float64) for a in (x, flo, fhi))
    with torch.no_grad():
        f = model(xt)[:, 0].numpy()
    per: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for m in ("crown", "ibp"):
        if m in methods:
            c = bound_outputs(model, xt, lower=lt, upper=ht, method=m, device=device)
            per[m] = (c.lower[:, 0].cpu().numpy(), c.upper[:, 0].cpu().numpy())
    lips: dict[str, float] = {}
    if "lipschitz" in methods:
        lips["linf"] = float(lipschitz_bound(model, norm="linf", device=device).value)
        r = np.maximum(fhi - x, x - flo).max(axis=1)
        per["lipschitz-linf"] = (f - lips["linf"] * r, f + lips["linf"] * r)
        if error.l1 is not None:
            lips["l1"] = float(lipschitz_bound(model, norm="l1", device=device).value)
            win_lo = np.lib.stride_tricks.sliding_window_view(lo_y, length)
            r1 = error.l1 / (1.0 + win_lo.min(axis=1))
            per["lipschitz-l1"] = (f - lips["l1"] * r1, f + lips["l1"] * r1)
    names = list(per)
    lows = np.stack([per[k][0] for k in names])
    highs = np.stack([per[k][1] for k in names])
    i_lo, i_hi = lows.argmax(0), highs.argmin(0)
    cols = np.arange(len(f))
    t_end = np.arange(length, length + len(f))
    return NeuralBounds(t_start=t_end - estimator.window + 1, t_end=t_end, estimate=np.exp(f),
                        lower=np.exp(lows[i_lo, cols]), upper=np.exp(highs[i_hi, cols]),
                        per_method={k: (np.exp(v[0]), np.exp(v[1])) for k, v in per.items()},
                        best_lower=np.asarray(names, dtype=object)[i_lo],
                        best_upper=np.asarray(names, dtype=object)[i_hi], lipschitz=lips, error=error)
