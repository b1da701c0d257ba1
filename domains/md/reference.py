"""Reference molecular dynamics with the oracle at every step (the ground truth and the baseline)."""

from __future__ import annotations

import numpy as np
from ase import Atoms

from .dynamics import Dynamics, initial_velocities
from .oracles import CalculatorOracle

__all__ = ["reference_trajectory"]


def reference_trajectory(atoms: Atoms, *, oracle: str = "emt", steps: int = 200, seed: int = 0,
                         integrator: str = "verlet", timestep: float = 0.5, temperature: float = 300.0,
                         friction: float = 0.01, every: int = 1) -> list[Atoms]:
    """Molecular dynamics with the oracle's forces at every step.

    The same set-up as walker 0 of :class:`domains.md.explorer.MDExplorer` with the same ``seed``
    (velocities, integrator, Langevin noise), with the oracle in place of the committee.

    Parameters
    ----------
    atoms : ase.Atoms
    oracle : str, default "emt"
        See :func:`domains.md.oracles.make_calculator`.
    steps : int, default 200
    seed : int, default 0
    integrator, timestep, temperature, friction
        See :class:`domains.md.dynamics.Dynamics`.
    every : int, default 1
        Keep every ``every``-th frame.

    Returns
    -------
    list of ase.Atoms
        With ``info["energy"]`` (eV) and ``arrays["ref_forces"]`` (eV/A) from the oracle.
    """
    calc = CalculatorOracle(oracle).calculator()
    numbers = np.asarray(atoms.numbers)
    energy = {}

    def forces(positions: np.ndarray) -> np.ndarray:
        a = Atoms(numbers=numbers, positions=positions[0])
        a.calc = calc
        energy["last"] = float(a.get_potential_energy())
        return a.get_forces()[None]

    dyn = Dynamics(atoms.get_masses(), atoms.get_positions()[None],
                   initial_velocities(atoms, temperature, seed, 0)[None], integrator=integrator, timestep=timestep,
                   temperature=temperature, friction=friction, seeds=[[seed, 1000]])
    frames = []
    for k in range(steps + 1):
        if k:
            dyn.step(forces)
        elif dyn.forces is None:
            dyn.forces = forces(dyn.positions)
        if k % every == 0:
            f = Atoms(numbers=numbers.copy(), positions=dyn.positions[0].copy())
            f.set_velocities(dyn.velocities[0].copy())
            f.info["energy"] = energy["last"]
            f.arrays["ref_forces"] = dyn.forces[0].copy()
            frames.append(f)
    return frames
