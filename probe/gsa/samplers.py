r"""Sample designs: Saltelli's cross-sampled Sobol' sequence, Latin hypercube, Morris trajectories.

Every sampler draws points of the unit cube (scrambled Sobol' sequences and Latin hypercubes from
:mod:`scipy.stats.qmc`) and maps them to the inputs with :meth:`Problem.to_inputs`, so the layout
and the values are SALib's for the same seed.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import qmc

from ..errors import ProbeError
from .problem import Problem, as_problem

__all__ = ["saltelli_sample", "latin_hypercube", "base_sample", "morris_sample", "morris_delta"]


def _check_n(n: int, what: str = "n") -> int:
    if int(n) != n or n < 1:
        raise ProbeError(f"{what} must be a positive integer, got {n}")
    return int(n)


def saltelli_sample(problem: dict | Problem, n: int, *, second_order: bool = True, scramble: bool = True,
                    seed: int | None = 0) -> np.ndarray:
    r"""Saltelli's design: two Sobol' matrices A, B and their cross matrices, SALib's row order.

    For each of the ``n`` rows of A and B (the two halves of a 2D-dimensional Sobol' sequence)
    the design holds, in order, :math:`A`, :math:`A_B^{(1)}, \dots, A_B^{(G)}` (A with group g's
    columns from B), then with ``second_order`` :math:`B_A^{(1)}, \dots, B_A^{(G)}`, then B
    (Saltelli 2002, "Making best use of model evaluations to compute sensitivity indices",
    Comput. Phys. Commun. 145, 280; Saltelli et al. 2010, Comput. Phys. Commun. 181, 259).

    Parameters
    ----------
    problem : dict or Problem
        Independent inputs (a cross matrix of dependent inputs has no meaning).
    n : int
        Base sample size N (a power of 2 keeps the Sobol' sequence balanced).
    second_order : bool, default True
    scramble : bool, default True
        Owen-scrambled Sobol' sequence (LMS + digital shift).
    seed : int or None, default 0

    Returns
    -------
    numpy.ndarray, shape (N (2G + 2), D) with ``second_order``, else (N (G + 2), D)
    """
    p = as_problem(problem)
    n = _check_n(n)
    if p.dependent:
        raise ProbeError("Sobol' indices from Saltelli's design assume independent inputs, and this problem has "
                         "'corr'; use probe.gsa.shapley for dependent inputs")
    d = p.num_vars
    base = qmc.Sobol(d=2 * d, scramble=scramble, seed=seed).random(n)
    A, B = base[:, :d], base[:, d:]
    M = p.group_matrix.astype(bool)  # (D, G)
    blocks = [A]
    blocks += [np.where(M[:, g], B, A) for g in range(M.shape[1])]
    if second_order:
        blocks += [np.where(M[:, g], A, B) for g in range(M.shape[1])]
    blocks.append(B)
    u = np.stack(blocks, axis=1).reshape(-1, d)
    return p.to_inputs(u)


def latin_hypercube(problem: dict | Problem, n: int, *, seed: int | None = 0) -> np.ndarray:
    """Latin hypercube sample (McKay, Beckman & Conover 1979), shape (n, D), mapped to the inputs."""
    p = as_problem(problem)
    return p.to_inputs(qmc.LatinHypercube(d=p.num_vars, seed=seed).random(_check_n(n)))


def base_sample(problem: dict | Problem, n: int, *, method: str = "sobol", seed: int | None = 0) -> np.ndarray:
    """``n`` points from the inputs' joint law: ``"sobol"`` (scrambled), ``"lhs"`` or ``"random"``.

    Returns
    -------
    numpy.ndarray, shape (n, D)
    """
    p = as_problem(problem)
    n = _check_n(n)
    if method == "sobol":
        u = qmc.Sobol(d=p.num_vars, scramble=True, seed=seed).random(n)
    elif method == "lhs":
        u = qmc.LatinHypercube(d=p.num_vars, seed=seed).random(n)
    elif method == "random":
        u = np.random.default_rng(seed).random((n, p.num_vars))
    else:
        raise ProbeError(f"unknown sampling method {method!r}; use 'sobol', 'lhs' or 'random'")
    return p.to_inputs(u)


def morris_delta(num_levels: int) -> float:
    r"""Morris's step in the unit cube, :math:`\Delta = p / (2 (p - 1))` for ``p`` levels."""
    return num_levels / (2.0 * (num_levels - 1))


def morris_sample(problem: dict | Problem, trajectories: int, *, num_levels: int = 4, seed: int | None = 0
                  ) -> np.ndarray:
    r"""Morris one-at-a-time trajectories, each of G + 1 points, moving one group by :math:`\pm\Delta` per step.

    Each trajectory is :math:`B^* = (J x^* + \tfrac{\Delta}{2}[(2B - J) D^* + J]) P^*` (Morris
    1991, "Factorial sampling plans for preliminary computational experiments", Technometrics 33,
    161): a random base point :math:`x^*` on the grid :math:`\{0, 1/(p-1), \dots, 1 - \Delta\}`,
    random directions :math:`D^*` and a random order :math:`P^*` of the groups; the members of a
    group move together (Campolongo, Cariboni & Saltelli 2007).

    Parameters
    ----------
    problem : dict or Problem
        Inputs with bounded laws (``unif``, ``triang``); the grid's end points would be infinite
        for ``norm`` and ``lognorm``.
    trajectories : int
    num_levels : int, default 4
        Grid levels p (even p gives every level the same probability).
    seed : int or None, default 0

    Returns
    -------
    numpy.ndarray, shape (trajectories (G + 1), D)
    """
    p = as_problem(problem)
    r = _check_n(trajectories, "trajectories")
    if int(num_levels) != num_levels or num_levels < 2:
        raise ProbeError(f"num_levels must be an integer >= 2, got {num_levels}")
    for name, dist in zip(p.names, p.dists):
        if dist not in ("unif", "triang"):
            raise ProbeError(f"Morris trajectories need bounded inputs; input {name!r} is {dist!r} (its grid would "
                             "reach infinite values)")
    if p.dependent:
        raise ProbeError("Morris trajectories assume independent inputs; this problem has 'corr' (use shapley)")
    rng = np.random.default_rng(seed)
    d, M = p.num_vars, p.group_matrix
    G = M.shape[1]
    delta = morris_delta(num_levels)
    starts = np.arange(int(np.floor((1 - delta) * (num_levels - 1) + 1e-9)) + 1) / (num_levels - 1)
    x_star = rng.choice(starts, size=(r, d))
    direction = rng.choice([-1.0, 1.0], size=(r, G)) @ M.T  # (r, D): each input follows its group
    order = np.argsort(rng.random((r, G)), axis=1)  # the step at which each group moves
    step_of_group = np.argsort(order, axis=1)  # (r, G)
    step_of_input = step_of_group @ M.T  # (r, D)
    k = np.arange(G + 1)[None, :, None]  # point index along the trajectory
    moved = k > step_of_input[:, None, :]  # (r, G + 1, D)
    low = x_star + delta / 2 * (1 - direction)
    high = x_star + delta / 2 * (1 + direction)
    u = np.where(moved, high[:, None, :], low[:, None, :])
    return p.to_inputs(u.reshape(-1, d))
