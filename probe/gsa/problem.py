r"""Problem definitions in SALib's dict format, and the map from the unit hypercube to the inputs.

A problem is a dict with ``num_vars``, ``names``, ``bounds`` and optionally ``dists`` (one of
``"unif"`` ``[a, b]``, ``"norm"`` ``[mean, sd]``, ``"lognorm"`` ``[mean, sd]`` of the logarithm,
``"triang"`` ``[start, end, peak]`` with the peak as a fraction of the range), ``groups`` (one
group name per input) and ``corr``, the one key SALib does not have: a correlation matrix for
inputs made dependent through a Gaussian copula. With ``corr`` a point :math:`u` of the unit cube
maps to the inputs as :math:`z = L\,\Phi^{-1}(u)` (:math:`R = LL^\top`) and
:math:`x_i = F_i^{-1}(\Phi(z_i))`, so each input keeps its marginal law (Nelsen, *An Introduction to
Copulas*, 2006, section 2.3). Without it, :math:`x_i = F_i^{-1}(u_i)` exactly as SALib's
``scale_samples``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..errors import ProbeError

__all__ = ["Problem", "as_problem", "DISTRIBUTIONS"]

DISTRIBUTIONS = ("unif", "norm", "lognorm", "triang")


@dataclass(frozen=True)
class Problem:
    """A checked problem definition (built by :func:`as_problem` from a SALib-style dict).

    Attributes
    ----------
    names : tuple of str
    bounds : tuple of tuple of float
        Per input: ``(a, b)`` for ``unif``, ``(mean, sd)`` for ``norm`` and ``lognorm``,
        ``(start, end, peak)`` for ``triang``.
    dists : tuple of str
    groups : tuple of str or None
        One group name per input, or None (each input its own group).
    corr : numpy.ndarray of shape (D, D) or None
        Gaussian-copula correlation matrix; None for independent inputs.
    """

    names: tuple
    bounds: tuple
    dists: tuple
    groups: tuple | None = None
    corr: np.ndarray | None = None

    @property
    def num_vars(self) -> int:
        return len(self.names)

    @property
    def group_names(self) -> list:
        """Unique group names in order of first appearance (the inputs' names without groups)."""
        if self.groups is None:
            return list(self.names)
        return list(dict.fromkeys(self.groups))

    @property
    def group_matrix(self) -> np.ndarray:
        """Membership matrix, shape (D, G): 1 where input i belongs to group g."""
        names = self.group_names
        labels = self.groups if self.groups is not None else self.names
        out = np.zeros((self.num_vars, len(names)), dtype=int)
        for i, g in enumerate(labels):
            out[i, names.index(g)] = 1
        return out

    @property
    def dependent(self) -> bool:
        return self.corr is not None and not np.allclose(self.corr, np.eye(self.num_vars))

    def to_dict(self) -> dict:
        """The SALib dict (with ``corr`` where set)."""
        d = {"num_vars": self.num_vars, "names": list(self.names), "bounds": [list(b) for b in self.bounds],
             "dists": list(self.dists)}
        if self.groups is not None:
            d["groups"] = list(self.groups)
        if self.corr is not None:
            d["corr"] = self.corr.tolist()
        return d

    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Marginal quantile functions applied column by column: :math:`x_i = F_i^{-1}(u_i)`.

        Parameters
        ----------
        u : numpy.ndarray, shape (N, D), values in [0, 1]

        Returns
        -------
        numpy.ndarray, shape (N, D)
        """
        u = np.asarray(u, dtype=np.float64)
        x = np.empty_like(u)
        for i, (dist, b) in enumerate(zip(self.dists, self.bounds)):
            x[:, i] = _ppf(dist, b, u[:, i])
        return x

    def poincare_constant(self, i: int) -> float:
        r"""Poincaré constant :math:`C_i` of input i's law: :math:`\mathrm{Var}\,g \le C_i\,E[g'^2]`.

        :math:`(b - a)^2/\pi^2` for the uniform law on [a, b], :math:`\sigma^2` for the normal law
        (Sobol' & Kucherenko 2009, Lamboni et al. 2013); NaN for the other laws here.
        """
        dist, b = self.dists[i], self.bounds[i]
        if dist == "unif":
            return (b[1] - b[0]) ** 2 / np.pi**2
        if dist == "norm":
            return float(b[1]) ** 2
        return float("nan")

    def to_inputs(self, u: np.ndarray) -> np.ndarray:
        """Map points of the unit cube to inputs, through the Gaussian copula where ``corr`` is set.

        Parameters
        ----------
        u : numpy.ndarray, shape (N, D)

        Returns
        -------
        numpy.ndarray, shape (N, D)
        """
        if not self.dependent:
            return self.ppf(u)
        z = stats.norm.ppf(np.clip(u, 1e-300, 1.0 - 1e-16)) @ np.linalg.cholesky(self.corr).T
        return self.from_normal(z)

    def from_normal(self, z: np.ndarray) -> np.ndarray:
        """Map correlated standard-normal copula coordinates to inputs: :math:`x_i = F_i^{-1}(\\Phi(z_i))`."""
        return self.ppf(stats.norm.cdf(z))


def _ppf(dist: str, b: tuple, u: np.ndarray) -> np.ndarray:
    if dist == "unif":
        return u * (b[1] - b[0]) + b[0]
    if dist == "norm":
        return stats.norm.ppf(u, loc=b[0], scale=b[1])
    if dist == "lognorm":
        return np.exp(stats.norm.ppf(u, loc=b[0], scale=b[1]))
    start, end, peak = b
    return stats.triang.ppf(u, c=peak, scale=end - start, loc=start)


def _check_bounds(name: str, dist: str, b: object) -> tuple:
    try:
        b = tuple(float(v) for v in b)
    except (TypeError, ValueError):
        raise ProbeError(f"bounds of input {name!r} must be a list of numbers, got {b!r}") from None
    if not all(np.isfinite(b)):
        raise ProbeError(f"bounds of input {name!r} hold a non-finite value: {b}")
    if dist == "unif":
        if len(b) != 2 or not b[0] < b[1]:
            raise ProbeError(f"input {name!r} (unif) needs bounds [a, b] with a < b, got {list(b)}")
    elif dist in ("norm", "lognorm"):
        if len(b) != 2 or not b[1] > 0:
            raise ProbeError(f"input {name!r} ({dist}) needs [mean, sd] with sd > 0, got {list(b)}")
    elif dist == "triang":
        if len(b) != 3 or not b[0] < b[1] or not 0 <= b[2] <= 1:
            raise ProbeError(f"input {name!r} (triang) needs [start, end, peak] with start < end and the peak "
                             f"in [0, 1] (a fraction of the range), got {list(b)}")
    return b


def _check_corr(corr: object, d: int) -> np.ndarray:
    R = np.asarray(corr, dtype=np.float64)
    if R.shape != (d, d):
        raise ProbeError(f"corr must be a {d} x {d} matrix (num_vars = {d}), got shape {R.shape}")
    if not np.allclose(R, R.T, atol=1e-12):
        i, j = np.unravel_index(np.argmax(np.abs(R - R.T)), R.shape)
        raise ProbeError(f"corr must be symmetric: corr[{i}][{j}] = {R[i, j]} but corr[{j}][{i}] = {R[j, i]}")
    if not np.allclose(np.diag(R), 1.0):
        i = int(np.argmax(np.abs(np.diag(R) - 1.0)))
        raise ProbeError(f"corr must have a unit diagonal: corr[{i}][{i}] = {R[i, i]}")
    smallest = np.linalg.eigvalsh(R).min()
    if smallest <= 1e-12:
        raise ProbeError(f"corr must be positive definite; its smallest eigenvalue is {smallest:.3g}")
    return R


def as_problem(problem: dict | Problem) -> Problem:
    """Check a SALib-style problem dict and return a :class:`Problem`.

    Parameters
    ----------
    problem : dict or Problem
        ``num_vars``, ``names``, ``bounds``; optional ``dists`` (default all ``"unif"``), ``groups``
        and ``corr`` (see the module docstring).

    Returns
    -------
    Problem

    Raises
    ------
    ProbeError
        Naming the key or the input that is wrong.
    """
    if isinstance(problem, Problem):
        return problem
    if not isinstance(problem, dict):
        raise ProbeError(f"problem must be a dict in SALib's format, got {type(problem).__name__}")
    for key in ("names", "bounds"):
        if key not in problem:
            raise ProbeError(f"problem has no {key!r} key (it needs 'num_vars', 'names' and 'bounds')")
    names = tuple(str(n) for n in problem["names"])
    d = int(problem.get("num_vars", len(names)))
    if len(names) != d or len(set(names)) != d:
        raise ProbeError(f"problem's 'names' must hold num_vars = {d} distinct names, got {list(names)}")
    if len(problem["bounds"]) != d:
        raise ProbeError(f"problem's 'bounds' has {len(problem['bounds'])} entries for num_vars = {d}")
    dists = tuple(problem.get("dists") or ["unif"] * d)
    if len(dists) != d:
        raise ProbeError(f"problem's 'dists' has {len(dists)} entries for num_vars = {d}")
    for name, dist in zip(names, dists):
        if dist not in DISTRIBUTIONS:
            raise ProbeError(f"input {name!r} has distribution {dist!r}; use one of {', '.join(DISTRIBUTIONS)}")
    bounds = tuple(_check_bounds(n, dist, b) for n, dist, b in zip(names, dists, problem["bounds"]))
    groups = problem.get("groups")
    if groups is not None:
        groups = tuple(str(g) for g in groups)
        if len(groups) != d:
            raise ProbeError(f"problem's 'groups' has {len(groups)} entries for num_vars = {d}")
    corr = problem.get("corr")
    corr = None if corr is None else _check_corr(corr, d)
    return Problem(names=names, bounds=bounds, dists=dists, groups=groups, corr=corr)
