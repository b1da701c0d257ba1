"""Results of the global sensitivity estimators: frozen dataclasses with ``to_frame()`` and ``plot()``.

Confidence values (``*_conf``) are half-widths :math:`z_{1-\\alpha/2}\\,\\mathrm{sd}_{boot}` of a
bootstrap over the base samples, as in SALib, so that ``estimate ± conf`` is the interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["SobolResult", "MorrisResult", "DGSMResult", "ShapleyResult"]


def _bars(ax: object, names: list, columns: list, title: str, ylabel: str) -> object:
    """Grouped bars, one group per input, one bar per (label, values, half-widths) column."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(names) + 2), 3.5))
    x = np.arange(len(names))
    width = 0.8 / len(columns)
    for k, (label, values, conf) in enumerate(columns):
        ax.bar(x + (k - (len(columns) - 1) / 2) * width, values, width, yerr=conf, capsize=3, label=label)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=45 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center")
    ax.set_xlabel("input")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.axhline(0.0, color="0.5", lw=0.5)
    if len(columns) > 1:
        ax.legend(frameon=False, loc="best")
    return ax


@dataclass(frozen=True)
class SobolResult:
    """Sobol' indices with bootstrap half-widths.

    Attributes
    ----------
    names : list of str
        Inputs (or groups) the indices belong to.
    S1, S1_conf, ST, ST_conf : numpy.ndarray, shape (G,)
    S2, S2_conf : numpy.ndarray, shape (G, G) or None
        Upper triangle filled, NaN elsewhere; None without second order.
    n : int
        Base sample size N.
    evaluations : int
        Model evaluations spent.
    conf_level : float
    variance : float
        Output variance over the design.
    estimator : str
        ``"saltelli2010"`` or ``"jansen"`` (total order).
    """

    names: list
    S1: np.ndarray
    S1_conf: np.ndarray
    ST: np.ndarray
    ST_conf: np.ndarray
    S2: np.ndarray | None = None
    S2_conf: np.ndarray | None = None
    n: int = 0
    evaluations: int = 0
    conf_level: float = 0.95
    variance: float = float("nan")
    estimator: str = "saltelli2010"

    def to_frame(self) -> pd.DataFrame:
        """One row per input: ``S1``, ``S1_conf``, ``ST``, ``ST_conf`` and, with second order, ``S2``.

        ``S2`` holds, per input, the dict ``{other input: S2}`` of its second-order indices with
        the inputs after it (the full matrix is :attr:`S2`; :meth:`second_order_frame` lists pairs).
        """
        df = pd.DataFrame({"S1": self.S1, "S1_conf": self.S1_conf, "ST": self.ST, "ST_conf": self.ST_conf},
                          index=pd.Index(self.names, name="input"))
        if self.S2 is not None:
            df["S2"] = [{self.names[k]: float(self.S2[j, k]) for k in range(j + 1, len(self.names))}
                        for j in range(len(self.names))]
        return df

    def second_order_frame(self) -> pd.DataFrame:
        """One row per pair (i, j), i before j: ``S2``, ``S2_conf``."""
        if self.S2 is None:
            return pd.DataFrame(columns=["S2", "S2_conf"])
        rows = [(self.names[j], self.names[k], self.S2[j, k], self.S2_conf[j, k])
                for j in range(len(self.names)) for k in range(j + 1, len(self.names))]
        return pd.DataFrame(rows, columns=["input", "other", "S2", "S2_conf"]).set_index(["input", "other"])

    def plot(self, ax: object = None) -> object:
        """First- and total-order indices as bars with their bootstrap intervals."""
        return _bars(ax, self.names, [("S1", self.S1, self.S1_conf), ("ST", self.ST, self.ST_conf)],
                     f"Sobol' indices (N = {self.n}, {self.conf_level:.0%} intervals)", "index")


@dataclass(frozen=True)
class MorrisResult:
    """Morris elementary-effect statistics.

    Attributes
    ----------
    names : list of str
    mu, mu_star, sigma, mu_star_conf : numpy.ndarray, shape (G,)
        Mean, mean absolute value and standard deviation (ddof 1) of the elementary effects,
        which are output changes per step :math:`\\Delta` of the unit cube (SALib's scale);
        ``sigma`` is NaN for groups of several inputs.
    trajectories : int
    evaluations : int
    conf_level : float
    """

    names: list
    mu: np.ndarray
    mu_star: np.ndarray
    sigma: np.ndarray
    mu_star_conf: np.ndarray
    trajectories: int = 0
    evaluations: int = 0
    conf_level: float = 0.95

    def to_frame(self) -> pd.DataFrame:
        """One row per input: ``mu_star``, ``mu_star_conf``, ``sigma``, ``mu``."""
        return pd.DataFrame({"mu_star": self.mu_star, "mu_star_conf": self.mu_star_conf, "sigma": self.sigma,
                             "mu": self.mu}, index=pd.Index(self.names, name="input"))

    def plot(self, ax: object = None) -> object:
        """mu* as bars with their bootstrap intervals, sigma beside them."""
        return _bars(ax, self.names, [("mu*", self.mu_star, self.mu_star_conf),
                                      ("sigma", self.sigma, None)],
                     f"Morris screening (r = {self.trajectories})", "elementary effect")


@dataclass(frozen=True)
class DGSMResult:
    r"""Derivative-based global sensitivity measures and the bounds they give.

    Attributes
    ----------
    names : list of str
    vi, vi_conf : numpy.ndarray, shape (D,)
        :math:`\nu_i = E[(\partial f/\partial x_i)^2]` and its bootstrap half-width.
    vi_std : numpy.ndarray, shape (D,)
        Standard deviation (ddof 0) of :math:`(\partial f/\partial x_i)^2` over the sample.
    dgsm, dgsm_conf : numpy.ndarray, shape (D,)
        :math:`C_i \nu_i / V`, with :math:`C_i` the input's Poincaré constant
        (:math:`(b-a)^2/\pi^2` for uniform inputs): an upper bound on the total Sobol' index
        :math:`S_{T,i}` (Sobol' & Kucherenko 2009; Lamboni et al. 2013) for independent inputs,
        NaN where it does not apply.
    lipschitz : numpy.ndarray, shape (D,) or None
        Per-input Lipschitz upper bounds :math:`L_i \ge \sup|\partial f/\partial x_i|`.
    vi_upper : numpy.ndarray, shape (D,) or None
        :math:`L_i^2`, a certified upper bound on :math:`\nu_i`.
    n : int
    evaluations : int
        Forward passes (each with one backward pass) or, from finite differences, evaluations.
    variance : float
    conf_level : float
    """

    names: list
    vi: np.ndarray
    vi_conf: np.ndarray
    vi_std: np.ndarray
    dgsm: np.ndarray
    dgsm_conf: np.ndarray
    lipschitz: np.ndarray | None = None
    vi_upper: np.ndarray | None = None
    n: int = 0
    evaluations: int = 0
    variance: float = float("nan")
    conf_level: float = 0.95

    def to_frame(self) -> pd.DataFrame:
        """One row per input: ``vi``, ``vi_conf``, ``dgsm`` (the S_T upper bound), ``dgsm_conf``,
        and, where Lipschitz constants were given, ``lipschitz`` and ``vi_upper`` (:math:`L_i^2`)."""
        df = pd.DataFrame({"vi": self.vi, "vi_conf": self.vi_conf, "dgsm": self.dgsm, "dgsm_conf": self.dgsm_conf},
                          index=pd.Index(self.names, name="input"))
        if self.lipschitz is not None:
            df["lipschitz"] = self.lipschitz
            df["vi_upper"] = self.vi_upper
        return df

    def plot(self, ax: object = None) -> object:
        r""":math:`\nu_i` as bars with their bootstrap intervals; the certified :math:`L_i^2` as markers where known."""
        ax = _bars(ax, self.names, [(r"$\nu_i$", self.vi, self.vi_conf)],
                   f"Derivative-based measures (N = {self.n})", r"$E[(\partial f/\partial x_i)^2]$")
        if self.vi_upper is not None:
            ax.plot(np.arange(len(self.names)), self.vi_upper, "v", color="k", label=r"$L_i^2$ (certified)")
            ax.legend(frameon=False)
        return ax


@dataclass(frozen=True)
class ShapleyResult:
    """Shapley effects (shares of the output variance, summing to one) with bootstrap half-widths.

    Attributes
    ----------
    names : list of str
    Sh, Sh_conf : numpy.ndarray, shape (D,)
    variance : float
        Output variance the effects are shares of.
    permutations : int
        Permutations averaged (``d!`` when exact).
    exact_permutations : bool
    evaluations : int
    conf_level : float
    """

    names: list
    Sh: np.ndarray
    Sh_conf: np.ndarray
    variance: float = float("nan")
    permutations: int = 0
    exact_permutations: bool = True
    evaluations: int = 0
    conf_level: float = 0.95

    def to_frame(self) -> pd.DataFrame:
        """One row per input: ``Sh``, ``Sh_conf``."""
        return pd.DataFrame({"Sh": self.Sh, "Sh_conf": self.Sh_conf}, index=pd.Index(self.names, name="input"))

    def plot(self, ax: object = None) -> object:
        """Shapley effects as bars with their bootstrap intervals."""
        return _bars(ax, self.names, [("Sh", self.Sh, self.Sh_conf)],
                     f"Shapley effects ({self.conf_level:.0%} intervals)", "share of output variance")
