r"""Derivative-based global sensitivity measures (DGSM) by autograd, and the bounds they give.

:math:`\nu_i = E\left[(\partial f / \partial x_i)^2\right]` over the inputs' joint law
(Sobol' & Kucherenko 2009, "Derivative based global sensitivity measures and their link with
global sensitivity indices", Math. Comput. Simul. 79, 3009). The gradient of a torch model comes
from one forward and one backward pass per sample, where finite differences (SALib's
``finite_diff`` design) need D + 1 evaluations and carry a step-size error.

Bounds reported beside the estimates:

- the Sobol'–Kucherenko bound :math:`S_{T,i} \le C_i \nu_i / V`, with :math:`C_i` the Poincaré
  constant of input i's law, :math:`(b - a)^2 / \pi^2` for the uniform law on [a, b] and
  :math:`\sigma^2` for the normal law (Sobol' & Kucherenko 2009; Lamboni, Iooss, Popelin &
  Gamboa 2013, Math. Comput. Simul. 87, 45), for independent inputs (column ``dgsm``);
- :math:`\nu_i \le L_i^2` for any :math:`L_i \ge \sup_x |\partial f / \partial x_i|`, here
  per-input Lipschitz upper bounds from :func:`probe.certify.lipschitz_bound`
  (:func:`probe.gsa.input_lipschitz_bounds`; column ``vi_upper``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.stats import norm

from ..errors import ProbeError
from .evaluate import evaluate_with_gradients
from .lipschitz import input_lipschitz_bounds
from .problem import Problem, as_problem
from .results import DGSMResult, SobolResult
from .samplers import base_sample

__all__ = ["dgsm", "analyze_dgsm", "bounds_frame"]


def analyze_dgsm(problem: dict | Problem, Y: np.ndarray, G: np.ndarray, *, lipschitz: object = None,
                 num_resamples: int = 100, conf_level: float = 0.95, seed: int | None = 0,
                 n_eval: int | None = None) -> DGSMResult:
    r"""DGSM from outputs and input gradients on a sample of the inputs' joint law.

    Parameters
    ----------
    problem : dict or Problem
    Y : numpy.ndarray, shape (N,)
        Outputs on the sample (for the variance :math:`V`, ddof 0, as SALib's ``dgsm.analyze``).
    G : numpy.ndarray, shape (N, D)
        :math:`\partial f/\partial x_i` at the same points (autograd, or finite differences).
    lipschitz : array-like of shape (D,), optional
        Per-input Lipschitz upper bounds :math:`L_i`; reported with :math:`L_i^2` beside :math:`\nu_i`.
    num_resamples : int, default 100
        Bootstrap resamples of the N points, for ``vi_conf`` and ``dgsm_conf``.
    conf_level : float, default 0.95
    seed : int or None, default 0

    Returns
    -------
    DGSMResult
    """
    p = as_problem(problem)
    if not 0 < conf_level < 1:
        raise ProbeError(f"conf_level must lie in (0, 1), got {conf_level}")
    Y = np.asarray(Y, dtype=np.float64).reshape(-1)
    G = np.asarray(G, dtype=np.float64)
    if G.shape != (Y.size, p.num_vars):
        raise ProbeError(f"gradients of shape {G.shape} do not match {Y.size} outputs over {p.num_vars} inputs")
    N = Y.size
    V = float(np.var(Y))
    C = np.array([p.poincare_constant(i) for i in range(p.num_vars)])
    if p.dependent:
        C[:] = np.nan  # the Poincaré bound on S_T needs independent inputs
    sq = G**2
    vi = sq.mean(axis=0)
    r = np.random.default_rng(seed).integers(N, size=(N, int(num_resamples)))
    Vr = np.var(Y[r], axis=0)
    z = norm.ppf(0.5 + conf_level / 2)
    vi_conf, dgsm_conf = np.empty(p.num_vars), np.empty(p.num_vars)
    for j in range(p.num_vars):
        vr = sq[r, j].mean(axis=0)
        vi_conf[j] = z * vr.std(ddof=1)
        dgsm_conf[j] = z * (C[j] * vr / Vr).std(ddof=1) if np.isfinite(C[j]) else np.nan
    L = vi_upper = None
    if lipschitz is not None:
        L = np.asarray(lipschitz, dtype=np.float64).reshape(-1)
        if L.size != p.num_vars:
            raise ProbeError(f"lipschitz has {L.size} values for {p.num_vars} inputs")
        vi_upper = L**2
    dg = C * vi / V if V > 0 else np.full(p.num_vars, np.nan)
    return DGSMResult(names=list(p.names), vi=vi, vi_conf=vi_conf, vi_std=sq.std(axis=0), dgsm=dg,
                      dgsm_conf=dgsm_conf, lipschitz=L, vi_upper=vi_upper, n=N,
                      evaluations=int(N if n_eval is None else n_eval), variance=V, conf_level=conf_level)


def dgsm(fn: object, problem: dict | Problem, *, n: int = 4096, seed: int | None = 0, sampler: str = "sobol",
         lipschitz: object = "auto", num_resamples: int = 100, conf_level: float = 0.95, output: int = 0,
         batch_size: int | None = 65536, device: str | torch.device | None = None,
         progress: bool | None = None) -> DGSMResult:
    r"""DGSM :math:`\nu_i` of a differentiable model by autograd, with the bounds of this module's docstring.

    Parameters
    ----------
    fn : torch.nn.Module or differentiable callable
        Tensor (B, D) -> (B,) or (B, K).
    problem : dict or Problem
        SALib's format; ``corr`` is allowed (:math:`\nu_i` is then over the dependent law, and the
        bound on :math:`S_{T,i}` is not reported).
    n : int, default 4096
        Sample size: n forward and n backward passes (in batches).
    seed : int or None, default 0
    sampler : {"sobol", "lhs", "random"}, default "sobol"
    lipschitz : "auto", array-like of shape (D,) or None, default "auto"
        Per-input Lipschitz upper bounds; ``"auto"`` computes them with
        :func:`probe.gsa.input_lipschitz_bounds` where ``fn`` is a ``torch.nn.Module`` that
        :func:`probe.certify.lipschitz_bound` handles (else none are reported).
    num_resamples, conf_level
        As in :func:`analyze_dgsm`.
    output, batch_size, device, progress
        As in :func:`probe.gsa.evaluate`.

    Returns
    -------
    DGSMResult
        ``to_frame()`` indexed by the inputs' names: ``vi``, ``vi_conf``, ``dgsm``, ``dgsm_conf``
        (and ``lipschitz``, ``vi_upper``).
    """
    p = as_problem(problem)
    X = base_sample(p, n, method=sampler, seed=seed)
    Y, G = evaluate_with_gradients(fn, X, output=output, batch_size=batch_size, device=device, progress=progress)
    if isinstance(lipschitz, str):
        if lipschitz != "auto":
            raise ProbeError(f"lipschitz must be 'auto', None or one value per input, got {lipschitz!r}")
        lipschitz = input_lipschitz_bounds(fn, p.num_vars, device=device, missing="none")
    return analyze_dgsm(p, Y, G, lipschitz=lipschitz, num_resamples=num_resamples, conf_level=conf_level,
                        seed=seed)


def bounds_frame(sobol_result: SobolResult, dgsm_result: DGSMResult) -> pd.DataFrame:
    r"""Sobol' total indices beside the bounds DGSM gives, one row per input.

    Columns: ``ST``, ``ST_conf`` (from :func:`probe.gsa.sobol`), ``ST_upper`` (the
    Sobol'-Kucherenko bound :math:`C_i \nu_i / V`, DGSM's ``dgsm``), ``vi`` and, where Lipschitz
    constants were given, ``vi_upper`` (:math:`L_i^2`), and ``consistent``: whether
    :math:`S_{T,i} - \text{conf} \le` bound :math:`+\,\text{conf}` (a False flags a model or an
    estimate to look at, since the bound holds for the true values).

    Parameters
    ----------
    sobol_result : SobolResult
        Without groups, over the same inputs as ``dgsm_result``.
    dgsm_result : DGSMResult
    """
    if list(sobol_result.names) != list(dgsm_result.names):
        raise ProbeError(f"the Sobol' result is over {list(sobol_result.names)} and the DGSM result over "
                         f"{list(dgsm_result.names)}; both must be over the same inputs")
    df = pd.DataFrame({"ST": sobol_result.ST, "ST_conf": sobol_result.ST_conf, "ST_upper": dgsm_result.dgsm,
                       "vi": dgsm_result.vi}, index=pd.Index(list(dgsm_result.names), name="input"))
    if dgsm_result.vi_upper is not None:
        df["vi_upper"] = dgsm_result.vi_upper
    with np.errstate(invalid="ignore"):
        df["consistent"] = (df["ST"] - df["ST_conf"] <= df["ST_upper"] + dgsm_result.dgsm_conf) | df["ST_upper"].isna()
    return df
