r"""Which assumption drives an R_t estimate? Sobol' indices of the Cori posterior mean.

The Cori et al. (2013) estimate over one window depends, besides the data, on four assumptions:
the serial interval's mean and sd (EpiEstim's offset-gamma ``parametric_si``), the reporting
fraction :math:`\rho` (observed cases :math:`= \rho \times` true cases, so the estimator sees
:math:`I_t / \rho`) and the gamma prior on R (mean and sd). :func:`rt_model` is the map from
those five numbers to the posterior mean, built from :func:`domains.epi.cori_posterior` itself;
:func:`rt_sobol` gives its Sobol' indices over ranges of the assumptions
(:func:`probe.gsa.sobol`). A constant reporting fraction enters only against the prior,
:math:`E[R] = (a + \sum L_t/\rho)\,/\,(1/b + \sum \Lambda_t/\rho)`, so it matters little when
the counts are large; the serial interval moves :math:`\Lambda_t` itself.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from probe import gsa
from probe.errors import ProbeError

from .cori import cori_posterior, gamma_prior, resolve_serial_interval, split_imported
from .io import check_incidence

__all__ = ["RT_INPUTS", "rt_problem", "rt_model", "rt_sobol"]

RT_INPUTS = ("si_mean", "si_sd", "reporting", "prior_mean", "prior_sd")


def rt_problem(si_mean: tuple = (2.0, 3.5), si_sd: tuple = (1.0, 2.0), reporting: tuple = (0.2, 1.0),
               prior_mean: tuple = (2.0, 8.0), prior_sd: tuple = (2.0, 8.0)) -> dict:
    """A SALib problem over the five assumptions, each uniform on the given range (days, fraction, R).

    The defaults bracket EpiEstim's Flu2009 example (serial interval mean 2.6, sd 1.5 days; prior
    mean and sd 5) and a reporting fraction between 20% and 100%.
    """
    return {"num_vars": 5, "names": list(RT_INPUTS),
            "bounds": [list(si_mean), list(si_sd), list(reporting), list(prior_mean), list(prior_sd)]}


def rt_model(incidence: object, *, t_start: int, t_end: int) -> Callable[[torch.Tensor], torch.Tensor]:
    r"""The posterior mean of R over days ``t_start..t_end`` as a function of the five assumptions.

    Parameters
    ----------
    incidence : array-like of shape (T,), pandas.Series or CSV path
        Observed daily cases of one series.
    t_start, t_end : int
        1-based inclusive window (EpiEstim semantics; ``2 <= t_start <= t_end <= T``).

    Returns
    -------
    callable
        Tensor (B, 5) with columns :data:`RT_INPUTS` -> tensor (B,) of posterior means.
    """
    inc = check_incidence(incidence)
    if inc.counts.shape[0] != 1:
        raise ProbeError(f"rt_model takes one incidence series, got {inc.counts.shape[0]}")
    T = inc.n_days
    if not 2 <= int(t_start) <= int(t_end) <= T:
        raise ProbeError(f"the window must satisfy 2 <= t_start <= t_end <= {T}, got t_start={t_start}, "
                         f"t_end={t_end}")
    ts, te = np.array([int(t_start)]), np.array([int(t_end)])
    counts = inc.counts

    def model(x: torch.Tensor) -> torch.Tensor:
        rows = x.detach().cpu().to(torch.float64).numpy()
        out = np.empty(rows.shape[0])
        for k, (m, s, rho, pm, ps) in enumerate(rows):
            if not 0 < rho <= 1:
                raise ProbeError(f"reporting fraction must lie in (0, 1], got {rho} at row {k}")
            local, imp = split_imported(counts / rho, None)
            a, b = gamma_prior(pm, ps)
            w = resolve_serial_interval((m, s), T)
            out[k] = cori_posterior(local, imp, w, ts, te, a_prior=a, b_prior=b).mean[0, 0]
        return torch.as_tensor(out, dtype=x.dtype, device=x.device)

    return model


def rt_sobol(incidence: object, *, t_start: int, t_end: int, problem: dict | None = None, n: int = 256,
             seed: int = 0, **options: object) -> gsa.SobolResult:
    """Sobol' indices of the Cori R_t posterior mean over a window with respect to the assumptions.

    Parameters
    ----------
    incidence : array-like of shape (T,), pandas.Series or CSV path
    t_start, t_end : int
        The window (1-based, inclusive).
    problem : dict, optional
        Ranges of :data:`RT_INPUTS` in SALib's format; default :func:`rt_problem`.
    n : int, default 256
        Base sample size (the estimator runs n (2 * 5 + 2) times with second order).
    seed : int, default 0
    **options
        Passed to :func:`probe.gsa.sobol` (``second_order``, ``num_resamples``, ...).

    Returns
    -------
    probe.gsa.SobolResult
        ``to_frame()`` indexed by ``si_mean, si_sd, reporting, prior_mean, prior_sd``.
    """
    problem = rt_problem() if problem is None else problem
    names = list(gsa.as_problem(problem).names)
    if names != list(RT_INPUTS):
        raise ProbeError(f"the problem's inputs must be {list(RT_INPUTS)} in this order, got {names}")
    return gsa.sobol(rt_model(incidence, t_start=t_start, t_end=t_end), problem, n=n, seed=seed, **options)
