r"""Sobol' indices from Saltelli's design: first, total and second order, with bootstrap intervals.

With :math:`f_A, f_B` the outputs on the two base matrices and :math:`f_{A_B^{(i)}}` on A with
input (group) i taken from B, over N rows and :math:`V` the variance of :math:`(f_A, f_B)`:

- first order (Saltelli et al. 2010, Table 2 (c)):
  :math:`S_i = \frac{1}{N V}\sum_j f_B(f_{A_B^{(i)}} - f_A)`; or Jansen (1999), Table 2 (f):
  :math:`S_i = 1 - \frac{1}{2NV}\sum_j (f_B - f_{A_B^{(i)}})^2`;
- total order (Jansen 1999; Saltelli et al. 2010, Table 2 (f)):
  :math:`S_{T,i} = \frac{1}{2NV}\sum_j (f_A - f_{A_B^{(i)}})^2`; or Sobol' (2007), Table 2 (e):
  :math:`S_{T,i} = \frac{1}{NV}\sum_j f_A (f_A - f_{A_B^{(i)}})`;
- second order (Saltelli 2002, Comput. Phys. Commun. 145, 280):
  :math:`S_{ij} = \frac{1}{NV}\sum (f_{B_A^{(i)}} f_{A_B^{(j)}} - f_A f_B) - S_i - S_j`.

Saltelli, Annoni, Azzini, Campolongo, Ratto & Tarantola (2010), "Variance based sensitivity
analysis of model output. Design and estimator for the total sensitivity index", Comput. Phys.
Commun. 181, 259. Outputs are standardised over the whole design first and the bootstrap draws
the N rows with replacement (``numpy.random.default_rng(seed).integers(N, size=(N, R))``), as in
SALib's ``sobol.analyze``, so the two agree on the same outputs to rounding error.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.stats import norm

from ..errors import ProbeError
from .evaluate import evaluate
from .problem import Problem, as_problem
from .results import SobolResult
from .samplers import saltelli_sample

__all__ = ["sobol", "analyze_sobol", "FIRST_ORDER", "TOTAL_ORDER"]

_EPS = np.finfo(float).eps


def _first_saltelli2010(A: np.ndarray, AB: np.ndarray, B: np.ndarray) -> np.ndarray:
    return np.mean(B * (AB - A), axis=0)


def _first_jansen(A: np.ndarray, AB: np.ndarray, B: np.ndarray) -> np.ndarray:
    return np.var(np.r_[A, B], axis=0) - 0.5 * np.mean((B - AB) ** 2, axis=0)


def _total_jansen(A: np.ndarray, AB: np.ndarray, B: np.ndarray) -> np.ndarray:
    return 0.5 * np.mean((A - AB) ** 2, axis=0)


def _total_sobol2007(A: np.ndarray, AB: np.ndarray, B: np.ndarray) -> np.ndarray:
    return np.mean(A * (A - AB), axis=0)


FIRST_ORDER = {"saltelli2010": _first_saltelli2010, "jansen": _first_jansen}
TOTAL_ORDER = {"jansen": _total_jansen, "sobol2007": _total_sobol2007}


def _ratio(num: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    v = np.var(np.r_[A, B], axis=0)
    return np.divide(num, v, out=np.zeros_like(v, dtype=np.float64), where=v > _EPS)


def _split(Y: np.ndarray, G: int, N: int, second_order: bool) -> tuple:
    step = 2 * G + 2 if second_order else G + 2
    Yr = Y.reshape(N, step)
    A, B = Yr[:, 0], Yr[:, -1]
    AB = Yr[:, 1:G + 1]
    BA = Yr[:, G + 1:2 * G + 1] if second_order else None
    return A, B, AB, BA


def analyze_sobol(problem: dict | Problem, Y: np.ndarray, *, second_order: bool = True,
                  first_order: str = "saltelli2010", total_order: str = "jansen", num_resamples: int = 100,
                  conf_level: float = 0.95, seed: int | None = 0, n_eval: int | None = None) -> SobolResult:
    """Sobol' indices from outputs on :func:`probe.gsa.saltelli_sample`'s design (or SALib's).

    Parameters
    ----------
    problem : dict or Problem
    Y : numpy.ndarray, shape (N (2G + 2),) with ``second_order``, else (N (G + 2),)
    second_order : bool, default True
        Must match the design.
    first_order : {"saltelli2010", "jansen"}, default "saltelli2010"
    total_order : {"jansen", "sobol2007"}, default "jansen"
    num_resamples : int, default 100
        Bootstrap resamples of the N rows.
    conf_level : float, default 0.95
    seed : int or None, default 0
        Seed of the bootstrap.

    Returns
    -------
    SobolResult
    """
    p = as_problem(problem)
    if first_order not in FIRST_ORDER:
        raise ProbeError(f"unknown first-order estimator {first_order!r}; use one of {', '.join(FIRST_ORDER)}")
    if total_order not in TOTAL_ORDER:
        raise ProbeError(f"unknown total-order estimator {total_order!r}; use one of {', '.join(TOTAL_ORDER)}")
    if not 0 < conf_level < 1:
        raise ProbeError(f"conf_level must lie in (0, 1), got {conf_level}")
    Y = np.asarray(Y, dtype=np.float64).reshape(-1)
    names = p.group_names
    G = len(names)
    step = 2 * G + 2 if second_order else G + 2
    if Y.size % step:
        raise ProbeError(f"{Y.size} outputs do not fill a Saltelli design of {step} rows per base sample "
                         f"({G} groups, second_order={second_order}); check second_order against the sampler")
    N = Y.size // step
    if np.ptp(Y) <= _EPS:
        warnings.warn("the model output is constant over the design; all Sobol' indices are set to 0", stacklevel=2)
    sd = Y.std()
    Y = (Y - Y.mean()) / (sd if sd > 0 else 1.0)
    A, B, AB, BA = _split(Y, G, N, second_order)
    r = np.random.default_rng(seed).integers(N, size=(N, int(num_resamples)))
    z = norm.ppf(0.5 + conf_level / 2)
    f1, fT = FIRST_ORDER[first_order], TOTAL_ORDER[total_order]
    S1, S1c, ST, STc = (np.zeros(G) for _ in range(4))
    Ar, Br = A[r], B[r]
    for j in range(G):
        S1[j] = _ratio(f1(A, AB[:, j], B), A, B)
        ST[j] = _ratio(fT(A, AB[:, j], B), A, B)
        ABr = AB[r, j]
        S1c[j] = z * _ratio(f1(Ar, ABr, Br), Ar, Br).std(ddof=1)
        STc[j] = z * _ratio(fT(Ar, ABr, Br), Ar, Br).std(ddof=1)
    S2 = S2c = None
    if second_order:
        S2, S2c = np.full((G, G), np.nan), np.full((G, G), np.nan)
        for j in range(G):
            for k in range(j + 1, G):
                S2[j, k] = _second(A, AB[:, j], AB[:, k], BA[:, j], B)
                S2c[j, k] = z * _second(Ar, AB[r, j], AB[r, k], BA[r, j], Br).std(ddof=1)
    return SobolResult(names=names, S1=S1, S1_conf=S1c, ST=ST, ST_conf=STc, S2=S2, S2_conf=S2c, n=N,
                       evaluations=int(n_eval if n_eval is not None else Y.size), conf_level=conf_level,
                       variance=float(sd**2), estimator=f"{first_order}/{total_order}")


def _second(A: np.ndarray, ABj: np.ndarray, ABk: np.ndarray, BAj: np.ndarray, B: np.ndarray) -> np.ndarray:
    Vjk = _ratio(np.mean(BAj * ABk - A * B, axis=0), A, B)
    return Vjk - _ratio(_first_saltelli2010(A, ABj, B), A, B) - _ratio(_first_saltelli2010(A, ABk, B), A, B)


def sobol(fn: object, problem: dict | Problem, *, n: int, seed: int | None = 0, second_order: bool = True,
          first_order: str = "saltelli2010", total_order: str = "jansen", num_resamples: int = 100,
          conf_level: float = 0.95, scramble: bool = True, output: int = 0, batch_size: int | None = 65536,
          device: str | torch.device | None = None, progress: bool | None = None) -> SobolResult:
    """Sobol' first-, total- and second-order indices of a model over the problem's input laws.

    Samples Saltelli's design (:func:`probe.gsa.saltelli_sample`), evaluates ``fn`` on it in
    batches on its device (:func:`probe.gsa.evaluate`) and analyses the outputs
    (:func:`probe.gsa.analyze_sobol`; the formulas and papers are in this module's docstring).

    Parameters
    ----------
    fn : torch.nn.Module or callable
        Tensor (B, D) -> (B,) or (B, K).
    problem : dict or Problem
        SALib's format; independent inputs (for dependent ones use :func:`probe.gsa.shapley`).
    n : int
        Base sample size N; the model is called N (2G + 2) times with ``second_order``, else N (G + 2).
    seed : int or None, default 0
        Seeds the scrambled Sobol' sequence and the bootstrap.
    second_order : bool, default True
    first_order, total_order, num_resamples, conf_level
        As in :func:`analyze_sobol`.
    scramble : bool, default True
    output : int, default 0
    batch_size : int or None, default 65536
    device : str or torch.device, optional
    progress : bool, optional

    Returns
    -------
    SobolResult
        ``to_frame()`` indexed by the inputs' names: ``S1``, ``S1_conf``, ``ST``, ``ST_conf`` (and ``S2``).
    """
    p = as_problem(problem)
    X = saltelli_sample(p, n, second_order=second_order, scramble=scramble, seed=seed)
    Y = evaluate(fn, X, output=output, batch_size=batch_size, device=device, progress=progress)
    return analyze_sobol(p, Y, second_order=second_order, first_order=first_order, total_order=total_order,
                         num_resamples=num_resamples, conf_level=conf_level, seed=seed)
