r"""Morris screening: elementary effects along one-at-a-time trajectories, mu, mu* and sigma.

The elementary effect of input i on trajectory t is
:math:`EE_i^{(t)} = [f(x^{(t)} + \Delta e_i) - f(x^{(t)})] / \Delta`, with :math:`\Delta` the
step in the unit cube (so effects carry the output's units, SALib's convention). Over r
trajectories: :math:`\mu_i = \bar{EE_i}`, :math:`\mu_i^* = \overline{|EE_i|}` (Campolongo,
Cariboni & Saltelli 2007, Environ. Model. Softw. 22, 1509) and :math:`\sigma_i` the standard
deviation (ddof 1), which flags interactions and nonlinearity (Morris 1991, Technometrics 33,
161). For a group, mu and mu* are the means over its members and sigma is NaN, as in SALib; the
bootstrap of mu* draws each input's r effects with replacement from one
``numpy.random.default_rng(seed)`` in input order, so the result equals SALib's
``morris.analyze`` on the same samples.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import norm

from ..errors import ProbeError
from .evaluate import evaluate
from .problem import Problem, as_problem
from .results import MorrisResult
from .samplers import morris_delta, morris_sample

__all__ = ["morris", "analyze_morris", "elementary_effects"]


def elementary_effects(problem: dict | Problem, X: np.ndarray, Y: np.ndarray, *, num_levels: int = 4
                       ) -> np.ndarray:
    """Elementary effects, shape (D, r), from trajectories laid out as :func:`probe.gsa.morris_sample` does.

    Parameters
    ----------
    problem : dict or Problem
    X : numpy.ndarray, shape (r (G + 1), D)
    Y : numpy.ndarray, shape (r (G + 1),)
    num_levels : int, default 4

    Returns
    -------
    numpy.ndarray, shape (D, r)
    """
    p = as_problem(problem)
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64).reshape(-1)
    T = len(p.group_names) + 1
    if X.shape[0] != Y.size or Y.size % T or X.ndim != 2 or X.shape[1] != p.num_vars:
        raise ProbeError(f"X of shape {X.shape} and {Y.size} outputs do not form Morris trajectories of {T} points "
                         f"over {p.num_vars} inputs")
    r = Y.size // T
    Xr, Yr = X.reshape(r, T, p.num_vars), Y.reshape(r, T)
    dX = np.sign(np.diff(Xr, axis=1))  # (r, T - 1, D): +1 where input i went up at that step
    moved = np.abs(dX).sum(axis=1)
    if not np.all(moved == 1):
        t, i = np.argwhere(moved != 1)[0]
        raise ProbeError(f"input {p.names[i]!r} moves {int(moved[t, i])} times on trajectory {t} (once expected)")
    dY = np.diff(Yr, axis=1)  # (r, T - 1)
    return (np.einsum("tsd,ts->dt", dX, dY)) / morris_delta(num_levels)


def _grouped(values: np.ndarray, M: np.ndarray) -> np.ndarray:
    return (values[:, None] * M).sum(0) / M.sum(0)


def analyze_morris(problem: dict | Problem, X: np.ndarray, Y: np.ndarray, *, num_levels: int = 4,
                   num_resamples: int = 100, conf_level: float = 0.95, seed: int | None = 0) -> MorrisResult:
    """mu, mu*, sigma and mu*'s bootstrap half-width from Morris trajectories (this module's docstring).

    Parameters
    ----------
    problem : dict or Problem
    X : numpy.ndarray, shape (r (G + 1), D)
    Y : numpy.ndarray, shape (r (G + 1),)
    num_levels : int, default 4
        Must match the sampler.
    num_resamples : int, default 100
    conf_level : float, default 0.95
    seed : int or None, default 0

    Returns
    -------
    MorrisResult
    """
    if not 0 < conf_level < 1:
        raise ProbeError(f"conf_level must lie in (0, 1), got {conf_level}")
    p = as_problem(problem)
    ee = elementary_effects(p, X, Y, num_levels=num_levels)
    rng = np.random.default_rng(seed)
    z = norm.ppf(0.5 + conf_level / 2)
    conf = np.empty(p.num_vars)
    for j in range(p.num_vars):
        idx = rng.integers(ee.shape[1], size=(int(num_resamples), ee.shape[1]))
        conf[j] = z * np.abs(ee[j][idx]).mean(axis=1).std(ddof=1)
    M = p.group_matrix
    sigma = _grouped(ee.std(axis=1, ddof=1), M)
    sigma[M.sum(0) != 1] = np.nan
    return MorrisResult(names=p.group_names, mu=_grouped(ee.mean(axis=1), M),
                        mu_star=_grouped(np.abs(ee).mean(axis=1), M), sigma=sigma,
                        mu_star_conf=_grouped(conf, M), trajectories=ee.shape[1], evaluations=int(np.size(Y)),
                        conf_level=conf_level)


def morris(fn: object, problem: dict | Problem, *, trajectories: int = 100, num_levels: int = 4,
           seed: int | None = 0, num_resamples: int = 100, conf_level: float = 0.95, output: int = 0,
           batch_size: int | None = 65536, device: str | torch.device | None = None,
           progress: bool | None = None) -> MorrisResult:
    """Morris screening of a model: r trajectories of G + 1 evaluations each.

    Parameters
    ----------
    fn : torch.nn.Module or callable
        Tensor (B, D) -> (B,) or (B, K).
    problem : dict or Problem
        Bounded, independent inputs (``unif``, ``triang``).
    trajectories : int, default 100
    num_levels : int, default 4
    seed : int or None, default 0
        Seeds the trajectories and the bootstrap.
    num_resamples, conf_level
        As in :func:`analyze_morris`.
    output, batch_size, device, progress
        As in :func:`probe.gsa.evaluate`.

    Returns
    -------
    MorrisResult
        ``to_frame()`` indexed by the inputs' names: ``mu_star``, ``mu_star_conf``, ``sigma``, ``mu``.
    """
    p = as_problem(problem)
    X = morris_sample(p, trajectories, num_levels=num_levels, seed=seed)
    Y = evaluate(fn, X, output=output, batch_size=batch_size, device=device, progress=progress)
    return analyze_morris(p, X, Y, num_levels=num_levels, num_resamples=num_resamples, conf_level=conf_level,
                          seed=seed)
