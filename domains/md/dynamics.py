"""Integrators for B copies of one molecule at once: Velocity Verlet (NVE) and BAOAB Langevin (NVT).

The on-the-fly explorer and the reference trajectory both integrate with :class:`Dynamics`, so they
start from the same velocities (:func:`initial_velocities`) and share every setting (time step,
temperature, friction). Forces come from a callable on all copies at once, which is what lets a
committee evaluate B walkers in one vectorised call. Units are ASE's: positions in A, masses in amu,
velocities in A per ASE time unit (``units.fs`` of them per fs), energies in eV.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from ase import Atoms, units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation

from probe.errors import ProbeError

__all__ = ["initial_velocities", "Dynamics", "INTEGRATORS"]

INTEGRATORS = ("verlet", "langevin")


def initial_velocities(atoms: Atoms, temperature: float, seed: int, walker: int = 0) -> np.ndarray:
    """Maxwell-Boltzmann velocities at ``temperature`` (K) without centre-of-mass motion or rotation.

    Walker ``w`` of a run with ``seed`` draws from ``numpy.random.default_rng([seed, w])``, so walker 0
    of the explorer and the reference trajectory of the same seed start alike.

    Returns
    -------
    numpy.ndarray, shape (N, 3)
        ASE velocity units.
    """
    a = atoms.copy()
    MaxwellBoltzmannDistribution(a, temperature_K=float(temperature), rng=np.random.default_rng([seed, walker]))
    Stationary(a)
    ZeroRotation(a)
    return a.get_velocities().copy()


class Dynamics:
    """B copies of one molecule integrated together.

    Velocity Verlet (``"verlet"``), as ASE's ``VelocityVerlet``::

        v <- v + dt/2 F(x)/m;  x <- x + dt v;  v <- v + dt/2 F(x)/m

    and Langevin dynamics by BAOAB (``"langevin"``; Leimkuhler & Matthews, Appl. Math. Res. Express
    2013, 34), whose O step ``v <- c v + sqrt((1 - c^2) k_B T / m) xi``, ``c = exp(-gamma dt)``,
    samples the Maxwell-Boltzmann velocities exactly; with ``friction = 0`` it is Velocity Verlet.

    Parameters
    ----------
    masses : array-like, shape (N,)
        amu.
    positions, velocities : array-like, shape (B, N, 3)
        Copied.
    integrator : {"verlet", "langevin"}, default "verlet"
    timestep : float, default 0.5
        Femtoseconds.
    temperature : float, default 300.0
        Kelvin (Langevin only).
    friction : float, default 0.01
        ``gamma`` in 1/fs (Langevin only).
    seeds : sequence of int or sequence, optional
        One seed per copy for the Langevin noise (``numpy.random.default_rng(seed)``); default
        ``range(B)``.
    """

    def __init__(self, masses: Sequence[float], positions: np.ndarray, velocities: np.ndarray, *,
                 integrator: str = "verlet", timestep: float = 0.5, temperature: float = 300.0,
                 friction: float = 0.01, seeds: Sequence | None = None) -> None:
        if integrator not in INTEGRATORS:
            raise ProbeError(f"integrator must be one of {INTEGRATORS}, got {integrator!r}")
        self.positions = np.array(positions, dtype=np.float64)
        self.velocities = np.array(velocities, dtype=np.float64)
        if self.positions.ndim != 3 or self.positions.shape != self.velocities.shape:
            raise ProbeError(f"positions {self.positions.shape} and velocities {self.velocities.shape} must both "
                             "have shape (B, N, 3)")
        self.masses = np.asarray(masses, dtype=np.float64).reshape(1, -1, 1)
        if self.masses.shape[1] != self.positions.shape[1]:
            raise ProbeError(f"{self.masses.shape[1]} masses for {self.positions.shape[1]} atoms")
        if not timestep > 0 or friction < 0:
            raise ProbeError(f"need timestep > 0 and friction >= 0, got {timestep} and {friction}")
        self.integrator = integrator
        self.dt = float(timestep) * units.fs
        self.temperature = float(temperature)
        self.friction = float(friction)
        b = self.positions.shape[0]
        self._rngs = [np.random.default_rng(s) for s in (seeds if seeds is not None else range(b))]
        if len(self._rngs) != b:
            raise ProbeError(f"{len(self._rngs)} seeds for {b} copies")
        self.forces: np.ndarray | None = None

    def invalidate(self) -> None:
        """Forget the forces at the present positions (the force field changed)."""
        self.forces = None

    def step(self, forces: Callable[[np.ndarray], np.ndarray]) -> None:
        """One step of every copy; ``forces(positions (B, N, 3)) -> (B, N, 3)`` in eV/A."""
        if self.forces is None:
            self.forces = np.asarray(forces(self.positions), dtype=np.float64)
        half = 0.5 * self.dt / self.masses
        self.velocities += half * self.forces
        if self.integrator == "verlet":
            self.positions += self.dt * self.velocities
        else:
            self.positions += 0.5 * self.dt * self.velocities
            c = np.exp(-self.friction * self.dt / units.fs)
            sd = np.sqrt((1.0 - c * c) * units.kB * self.temperature / self.masses[0])  # (N, 1)
            noise = np.stack([rng.standard_normal(self.positions.shape[1:]) for rng in self._rngs])
            self.velocities = c * self.velocities + sd * noise
            self.positions += 0.5 * self.dt * self.velocities
        self.forces = np.asarray(forces(self.positions), dtype=np.float64)
        self.velocities += half * self.forces

    def kinetic_energy(self) -> np.ndarray:
        """``sum_i m_i |v_i|^2 / 2`` per copy (eV), shape (B,)."""
        return 0.5 * (self.masses * self.velocities ** 2).sum((1, 2))
