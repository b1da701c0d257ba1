r"""Analytic test functions of global sensitivity analysis, with their exact indices.

- Ishigami & Homma (1990), "An importance quantification technique in uncertainty analysis for
  computer models", ISUMA '90: :math:`f = \sin x_1 + a \sin^2 x_2 + b x_3^4 \sin x_1` on
  :math:`U(-\pi, \pi)^3`, with :math:`V = a^2/8 + b\pi^4/5 + b^2\pi^8/18 + 1/2`,
  :math:`V_1 = (1 + b\pi^4/5)^2/2`, :math:`V_2 = a^2/8`, :math:`V_3 = 0`,
  :math:`V_{13} = 8 b^2 \pi^8 / 225` (Sobol' & Levitan 1999), and DGSM
  :math:`\nu_1 = (1 + 2b\pi^4/5 + b^2\pi^8/9)/2`, :math:`\nu_2 = a^2/2`,
  :math:`\nu_3 = 8 b^2 \pi^6 / 7` (Kucherenko & Iooss 2017, "Derivative-based global sensitivity
  measures", Handbook of Uncertainty Quantification).
- Sobol' G (Saltelli & Sobol' 1995): :math:`f = \prod_i (|4x_i - 2| + a_i)/(1 + a_i)` on
  :math:`U(0, 1)^d`, :math:`V_i = 1 / (3 (1 + a_i)^2)`, :math:`V = \prod_i (1 + V_i) - 1`,
  :math:`S_i = V_i / V`, :math:`S_{T,i} = V_i \prod_{j \ne i}(1 + V_j) / V`.
- A linear model :math:`Y = \beta^\top X` with :math:`X \sim N(\mu, \Sigma)`: its Shapley
  effects from the exact costs :math:`c(J) = \beta_J^\top (\Sigma_{JJ} - \Sigma_{JK}\Sigma_{KK}^{-1}
  \Sigma_{KJ}) \beta_J` (Owen & Prieur 2017; Iooss & Prieur 2019, Int. J. Uncertain. Quantif. 9, 493).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

__all__ = ["ishigami", "ishigami_problem", "ishigami_indices", "ishigami_dgsm", "sobol_g", "sobol_g_problem",
           "sobol_g_indices", "linear_gaussian_shapley"]


def ishigami(x: torch.Tensor, a: float = 7.0, b: float = 0.1) -> torch.Tensor:
    """Ishigami function on a batch, shape (N, 3) -> (N,)."""
    return torch.sin(x[:, 0]) + a * torch.sin(x[:, 1]) ** 2 + b * x[:, 2] ** 4 * torch.sin(x[:, 0])


def ishigami_problem() -> dict:
    """Three inputs uniform on [-pi, pi]."""
    return {"num_vars": 3, "names": ["x1", "x2", "x3"], "bounds": [[-math.pi, math.pi]] * 3}


def ishigami_indices(a: float = 7.0, b: float = 0.1) -> dict:
    """Exact ``S1``, ``ST`` (arrays of 3), ``S2`` (3 x 3, upper triangle) and ``V``."""
    pi4, pi8 = math.pi**4, math.pi**8
    V1, V2, V13 = 0.5 * (1 + b * pi4 / 5) ** 2, a**2 / 8, 8 * b**2 * pi8 / 225
    V = a**2 / 8 + b * pi4 / 5 + b**2 * pi8 / 18 + 0.5
    S2 = np.full((3, 3), np.nan)
    S2[0, 1], S2[0, 2], S2[1, 2] = 0.0, V13 / V, 0.0
    return {"S1": np.array([V1, V2, 0.0]) / V, "ST": np.array([V1 + V13, V2, V13]) / V, "S2": S2, "V": V}


def ishigami_dgsm(a: float = 7.0, b: float = 0.1) -> np.ndarray:
    r"""Exact :math:`\nu_i = E[(\partial f/\partial x_i)^2]`, shape (3,)."""
    return np.array([0.5 * (1 + 2 * b * math.pi**4 / 5 + b**2 * math.pi**8 / 9), a**2 / 2,
                     8 * b**2 * math.pi**6 / 7])


def sobol_g(x: torch.Tensor, a: object = (0, 1, 4.5, 9, 99, 99, 99, 99)) -> torch.Tensor:
    """Sobol' G function on a batch, shape (N, d) -> (N,)."""
    a = torch.as_tensor(a, dtype=x.dtype, device=x.device)
    return ((torch.abs(4 * x - 2) + a) / (1 + a)).prod(dim=1)


def sobol_g_problem(d: int = 8) -> dict:
    """``d`` inputs uniform on [0, 1]."""
    return {"num_vars": d, "names": [f"x{i + 1}" for i in range(d)], "bounds": [[0.0, 1.0]] * d}


def sobol_g_indices(a: object = (0, 1, 4.5, 9, 99, 99, 99, 99)) -> dict:
    """Exact ``S1``, ``ST`` and ``V`` of the G function."""
    a = np.asarray(a, dtype=np.float64)
    Vi = 1.0 / (3.0 * (1.0 + a) ** 2)
    V = np.prod(1 + Vi) - 1
    return {"S1": Vi / V, "ST": Vi * np.prod(1 + Vi) / (1 + Vi) / V, "V": V}


def linear_gaussian_shapley(beta: object, cov: object) -> np.ndarray:
    r"""Exact Shapley effects of :math:`Y = \beta^\top X`, :math:`X \sim N(\mu, \Sigma)`, shape (d,), summing to 1."""
    beta, cov = np.asarray(beta, dtype=np.float64), np.asarray(cov, dtype=np.float64)
    d = beta.size

    def cost(J: tuple) -> float:  # E[Var(Y | X_{-J})], constant for Gaussian inputs
        if not J:
            return 0.0
        J, K = list(J), [k for k in range(d) if k not in J]
        S = cov[np.ix_(J, J)]
        if K:
            S = S - cov[np.ix_(J, K)] @ np.linalg.solve(cov[np.ix_(K, K)], cov[np.ix_(K, J)])
        return float(beta[J] @ S @ beta[J])

    sh = np.zeros(d)
    for i in range(d):
        others = [k for k in range(d) if k != i]
        for s in range(d):
            w = math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d)
            for J in itertools.combinations(others, s):
                sh[i] += w * (cost(tuple(sorted(J + (i,)))) - cost(J))
    return sh / float(beta @ cov @ beta)
