r"""Shapley effects for dependent inputs (Owen 2014; Song, Nelson & Staum 2016).

The Shapley effect of input i shares the output variance V among the inputs by the Shapley value
of the cost :math:`c(J) = E[\mathrm{Var}(Y \mid X_{-J})]`:

.. math::

    Sh_i = \frac{1}{V} \sum_{J \subseteq D \setminus \{i\}} \frac{|J|!\,(d - |J| - 1)!}{d!}
           \bigl[c(J \cup \{i\}) - c(J)\bigr], \qquad \sum_i Sh_i = 1,

which stays a proper share when the inputs are dependent, where Sobol' indices do not (Owen
2014, "Sobol' indices and Shapley value", SIAM/ASA J. Uncertain. Quantif. 2, 245). Each
:math:`c(J)` is estimated as in Song, Nelson & Staum (2016, "Shapley effects for global
sensitivity analysis: theory and computation", SIAM/ASA J. Uncertain. Quantif. 4, 1060): draw
:math:`N_o` outer points :math:`x_{-J}` from their marginal law, for each :math:`N_i` inner
points :math:`x_J \mid x_{-J}` from the conditional law, and average the inner sample variances
(unbiased for any :math:`N_i \ge 2`); V from :math:`N_V` independent draws. With few inputs every
subset is estimated once and weighted exactly; with many, the sum is over random permutations
(their Algorithm 1). The inputs' dependence is the problem's Gaussian copula, under which the
conditional law is exact: with :math:`z \sim N(0, R)`,
:math:`z_J \mid z_K \sim N(R_{JK} R_{KK}^{-1} z_K,\; R_{JJ} - R_{JK} R_{KK}^{-1} R_{KJ})`.
The bootstrap draws the outer points (and the permutations, and the variance sample) with
replacement.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from scipy.stats import norm

from ..errors import ProbeError
from .evaluate import evaluate
from .problem import Problem, as_problem
from .results import ShapleyResult

__all__ = ["shapley", "exact_permutation_limit"]

exact_permutation_limit = 8  # up to this many inputs every subset is estimated (2^d - 2 costs)


def _conditional(R: np.ndarray, J: tuple, K: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Regression matrix and Cholesky factor of z_J | z_K for z ~ N(0, R)."""
    RJK, RKK = R[np.ix_(J, K)], R[np.ix_(K, K)]
    B = np.linalg.solve(RKK, RJK.T).T  # (|J|, |K|)
    S = R[np.ix_(J, J)] - B @ RJK.T
    return B, np.linalg.cholesky(S + 1e-14 * np.eye(len(J)))


def _cost_points(p: Problem, R: np.ndarray, J: tuple, n_outer: int, n_inner: int, rng: np.random.Generator,
                 cache: dict) -> np.ndarray:
    """Inputs (n_outer * n_inner, D): outer x_{-J} repeated, inner x_J drawn given it."""
    d = p.num_vars
    K = tuple(k for k in range(d) if k not in J)
    if J not in cache:
        cache[J] = _conditional(R, J, K)
    B, C = cache[J]
    z_outer = rng.standard_normal((n_outer, d)) @ np.linalg.cholesky(R).T
    mean = z_outer[:, K] @ B.T  # (n_outer, |J|)
    eps = rng.standard_normal((n_outer, n_inner, len(J))) @ C.T
    z = np.repeat(z_outer[:, None, :], n_inner, axis=1)
    z[:, :, J] = mean[:, None, :] + eps
    return p.from_normal(z.reshape(-1, d))


def _costs(fn: object, p: Problem, R: np.ndarray, subsets: list, n_outer: int, n_inner: int,
           rng: np.random.Generator, ev: dict, max_points: int = 1_000_000) -> np.ndarray:
    """Inner sample variances, shape (len(subsets), n_outer), evaluating many subsets per model call."""
    out = np.empty((len(subsets), n_outer))
    per = max(1, max_points // (n_outer * n_inner))
    cache: dict = {}
    for start in range(0, len(subsets), per):
        chunk = subsets[start:start + per]
        X = np.concatenate([_cost_points(p, R, J, n_outer, n_inner, rng, cache) for J in chunk])
        Y = evaluate(fn, X, **ev).reshape(len(chunk), n_outer, n_inner)
        out[start:start + len(chunk)] = Y.var(axis=2, ddof=1)
    return out


def shapley(fn: object, problem: dict | Problem, *, seed: int | None = 0, n_var: int = 10_000,
            n_outer: int | None = None, n_inner: int = 3, permutations: int | None = None,
            num_resamples: int = 100, conf_level: float = 0.95, output: int = 0, batch_size: int | None = 65536,
            device: str | torch.device | None = None, progress: bool | None = None) -> ShapleyResult:
    r"""Shapley effects of a model over the problem's (possibly dependent) inputs.

    Parameters
    ----------
    fn : torch.nn.Module or callable
        Tensor (B, D) -> (B,) or (B, K).
    problem : dict or Problem
        SALib's format plus an optional ``corr`` (Gaussian copula); groups are not used.
    seed : int or None, default 0
    n_var : int, default 10000
        Draws :math:`N_V` for the output variance.
    n_outer : int, optional
        Outer draws :math:`N_o` per cost; default 1000 when every subset is estimated, 1 over
        random permutations (Song et al.'s choice).
    n_inner : int, default 3
        Inner draws :math:`N_i` per outer point (at least 2).
    permutations : int, optional
        Number of random permutations; default None: every subset when D <=
        ``exact_permutation_limit`` (8), else 2000 random permutations.
    num_resamples : int, default 100
    conf_level : float, default 0.95
    output, batch_size, device, progress
        As in :func:`probe.gsa.evaluate`.

    Returns
    -------
    ShapleyResult
        ``to_frame()`` indexed by the inputs' names: ``Sh``, ``Sh_conf``. The model is called
        :math:`N_V + N_o N_i` times per estimated cost: :math:`(2^d - 2)` costs when exact,
        :math:`m (d - 1)` over m permutations.
    """
    p = as_problem(problem)
    d = p.num_vars
    if n_inner < 2:
        raise ProbeError(f"n_inner must be at least 2 (an inner sample variance), got {n_inner}")
    if not 0 < conf_level < 1:
        raise ProbeError(f"conf_level must lie in (0, 1), got {conf_level}")
    exact = permutations is None and d <= exact_permutation_limit
    if permutations is None and not exact:
        permutations = 2000
    n_outer = int(n_outer if n_outer is not None else (1000 if exact else 1))
    rng = np.random.default_rng(seed)
    R = p.corr if p.corr is not None else np.eye(d)
    ev = {"output": output, "batch_size": batch_size, "device": device, "progress": progress}

    z = rng.standard_normal((int(n_var), d)) @ np.linalg.cholesky(R).T
    Yv = evaluate(fn, p.from_normal(z), **ev)

    if exact:
        subsets = [J for s in range(1, d) for J in itertools.combinations(range(d), s)]
        perms = None
    else:
        perms = np.argsort(rng.random((int(permutations), d)), axis=1)
        subsets = [tuple(sorted(perms[m, :j + 1])) for m in range(len(perms)) for j in range(d - 1)]
    costs = _costs(fn, p, R, subsets, n_outer, n_inner, rng, ev)  # (len(subsets), n_outer)
    if exact:
        index = {J: k for k, J in enumerate(subsets)}
        weights = np.zeros((d, len(subsets) + 2))  # Sh_i = weights[i] @ [c(J)..., c(empty), c(all)]
        for J in [()] + subsets:
            w = math.factorial(len(J)) * math.factorial(d - len(J) - 1) / math.factorial(d)
            for i in set(range(d)) - set(J):
                Ji = tuple(sorted(J + (i,)))
                weights[i, index.get(Ji, len(subsets) + 1)] += w
                weights[i, index.get(J, len(subsets))] -= w

    def estimate(o: np.ndarray, v: np.ndarray, pm: np.ndarray | None) -> np.ndarray:
        V = Yv[v].var(ddof=1)
        c = costs[:, o].mean(axis=1)
        if exact:
            return weights @ np.concatenate([c, [0.0, V]]) / V
        c = np.concatenate([np.zeros((len(perms), 1)), c.reshape(len(perms), d - 1),
                            np.full((len(perms), 1), V)], axis=1)
        sh = np.zeros(d)
        np.add.at(sh, perms[pm], np.diff(c, axis=1)[pm])
        return sh / (len(pm) * V)

    full_o, full_v = np.arange(n_outer), np.arange(int(n_var))
    full_p = None if exact else np.arange(len(perms))
    Sh = estimate(full_o, full_v, full_p)
    boot = np.array([estimate(rng.integers(n_outer, size=n_outer), rng.integers(int(n_var), size=int(n_var)),
                              None if exact else rng.integers(len(perms), size=len(perms)))
                     for _ in range(int(num_resamples))])
    z_level = norm.ppf(0.5 + conf_level / 2)
    n_costs = len(subsets)
    return ShapleyResult(names=list(p.names), Sh=Sh, Sh_conf=z_level * boot.std(axis=0, ddof=1),
                         variance=float(Yv.var(ddof=1)), permutations=math.factorial(d) if exact else len(perms),
                         exact_permutations=exact, evaluations=int(n_var + n_costs * n_outer * n_inner),
                         conf_level=conf_level)
