"""The on-the-fly loop's explorer: B molecular-dynamics walkers driven by a committee in one call per step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from ase import Atoms, units

from probe.active import Candidate
from probe.active.uncertainty import VarianceScaling, rate_variance
from probe.errors import ProbeError

from .committee import Committee, as_committee
from .dynamics import INTEGRATORS, Dynamics, initial_velocities

__all__ = ["MDExplorer"]


def _snapshot(numbers: np.ndarray, positions: np.ndarray, velocities: np.ndarray) -> Atoms:
    a = Atoms(numbers=numbers.copy(), positions=positions.copy())
    a.set_velocities(velocities.copy())
    return a


class MDExplorer:
    """Molecular-dynamics walkers driven by a committee (the loop's explorer).

    All walkers advance together (:class:`domains.md.dynamics.Dynamics`): one committee call per
    step evaluates the B configurations at once.

    Parameters
    ----------
    atoms : ase.Atoms
        Starting structure (copied).
    potential : Committee
        Shared with the learner: an :class:`~domains.md.potential.EnsemblePotential`, or anything
        :func:`domains.md.committee.as_committee` accepts (a list of ASE calculators, ...).
    integrator : {"verlet", "langevin"}, default "verlet"
    timestep : float, default 0.5
        Femtoseconds.
    temperature : float, default 300.0
        Kelvin, for the initial Maxwell-Boltzmann velocities and the Langevin thermostat.
    friction : float, default 0.01
        Langevin friction in 1/fs.
    walkers : int, default 1
        Independent trajectories (their labels are dispatched together).
    n_initial : int, default 4
        Configurations labelled before exploring: the start and ``n_initial - 1`` copies with
        Gaussian displacements of ``rattle`` Angstrom.
    rattle : float, default 0.05

    Notes
    -----
    The committee spread is recalibrated on the run's own labels
    (:class:`probe.active.uncertainty.VarianceScaling`): at every labelled step the oracle's
    forces minus the committee-mean forces *before* retraining are the realised errors
    ``dF_i``. Two scales are fitted over all labelled steps so far (``1`` before the first):
    on the force components, ``s_F^2 = sum |dF_i|^2 / sum_i tr Cov(F_i)``, and on the
    quantity the energy-rate trigger predicts, the rate error
    ``s_rate^2 = sum_k (sum_i dF_i . v_i)^2 / sum_k sum_i v_i^T Cov(F_i) v_i``, both shrunk
    towards 1 by ``CALIBRATION_PRIOR_WEIGHT`` = 2 pseudo-labels (one chance small error must not
    silence the trigger). Each observation carries ``calibration_forces`` and ``calibration_rate`` (the two
    ``s^2``) and ``sigma_dE_cal_forces`` / ``sigma_dE_cal_rate`` (``s * sigma_dE``). The scale is a
    deterministic function of the stored labels, so a resumed run replays it. Every realised error is
    kept in :meth:`calibration_table`.
    """

    #: pseudo-labels of the prior s^2 = 1 in both calibrations (see VarianceScaling)
    CALIBRATION_PRIOR_WEIGHT = 2.0

    def __init__(self, atoms: Atoms, potential: Committee | Any, *, integrator: str = "verlet",
                 timestep: float = 0.5, temperature: float = 300.0, friction: float = 0.01, walkers: int = 1,
                 n_initial: int = 4, rattle: float = 0.05) -> None:
        if integrator not in INTEGRATORS:
            raise ProbeError(f"integrator must be 'verlet' or 'langevin', got {integrator!r}")
        if n_initial < 1 or walkers < 1:
            raise ProbeError(f"n_initial and walkers must be >= 1, got {n_initial} and {walkers}")
        potential = as_committee(potential)
        if hasattr(potential, "species"):
            potential.species(atoms.numbers)  # names an atom outside the potential's elements
        self.atoms = atoms.copy()
        self.numbers = np.asarray(atoms.numbers).copy()
        self.potential = potential
        self.integrator = integrator
        self.timestep = float(timestep)
        self.temperature = float(temperature)
        self.friction = float(friction)
        self.n_walkers = int(walkers)
        self.n_initial = int(n_initial)
        self.rattle = float(rattle)
        self.frames: list[tuple[int, int, np.ndarray, np.ndarray]] = []
        self.calibration_forces = VarianceScaling(prior_weight=self.CALIBRATION_PRIOR_WEIGHT)
        self.calibration_rate = VarianceScaling(prior_weight=self.CALIBRATION_PRIOR_WEIGHT)
        self._predicted: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, float]] = {}
        self._errors: list[dict] = []
        self._members: np.ndarray | None = None

    def start(self, seed: int) -> list[Atoms]:
        self._step = 0
        self.frames = []
        self.calibration_forces.reset()
        self.calibration_rate.reset()
        self._predicted = {}
        self._errors = []
        vel = np.stack([initial_velocities(self.atoms, self.temperature, seed, w) for w in range(self.n_walkers)])
        pos = np.repeat(self.atoms.get_positions()[None], self.n_walkers, axis=0)
        self.dynamics = Dynamics(self.atoms.get_masses(), pos, vel, integrator=self.integrator,
                                 timestep=self.timestep, temperature=self.temperature, friction=self.friction,
                                 seeds=[[seed, 1000 + w] for w in range(self.n_walkers)])
        for w in range(self.n_walkers):
            self.frames.append((w, 0, pos[w].copy(), vel[w].copy()))
        rng = np.random.default_rng([seed, 2000])
        initial = [_snapshot(self.numbers, pos[0], vel[0])]
        for _ in range(self.n_initial - 1):
            initial.append(_snapshot(self.numbers, pos[0] + rng.normal(scale=self.rattle, size=pos[0].shape), vel[0]))
        return initial

    def _forces(self, positions: np.ndarray) -> np.ndarray:
        pred = self.potential.predict(positions, self.numbers)
        self._energies = pred.energy.detach().to("cpu", torch.float64).numpy()  # (M, B)
        self._members = pred.forces.detach().to("cpu", torch.float64).numpy()  # (M, B, N, 3)
        return self._members.mean(0)

    def observations(self) -> list[dict[str, float]]:
        """The uncertainties the triggers read, for every walker's present state (one committee call)."""
        if self._members is None:
            self._forces(self.dynamics.positions)
        fm = torch.from_numpy(self._members)
        v = torch.from_numpy(self.dynamics.velocities)
        rate = rate_variance(fm, v).numpy()  # (B,)
        rate_full = rate_variance(fm, v, block_diagonal=False).numpy()
        dev = np.sqrt(((self._members - self._members.mean(0)) ** 2).sum(-1).mean(0))  # (B, N)
        ekin = self.dynamics.kinetic_energy()
        s2_forces, s2_rate = self.calibration_forces.scale2, self.calibration_rate.scale2
        dt = self.timestep * units.fs
        energy = self._energies.mean(0)
        n = len(self.numbers)
        out = []
        for b in range(self.n_walkers):
            sigma_rate = float(np.sqrt(rate[b]))
            sigma_dE = sigma_rate * dt
            out.append({
                "energy": float(energy[b]),
                "energy_std": float(self._energies[:, b].std()),
                "max_force_deviation": float(dev[b].max()),
                "sigma_dEdt": sigma_rate * units.fs,  # eV/fs (ASE time unit = 1 / units.fs fs)
                "sigma_dE": sigma_dE,  # eV per step
                "rate_variance": float(rate[b]),
                "sigma_dE_full": float(np.sqrt(rate_full[b])) * dt,  # cross-atom covariances kept
                "calibration_forces": s2_forces,
                "calibration_rate": s2_rate,
                "sigma_dE_cal_forces": float(np.sqrt(s2_forces)) * sigma_dE,
                "sigma_dE_cal_rate": float(np.sqrt(s2_rate)) * sigma_dE,
                "kinetic": float(ekin[b]),
                "total": float(energy[b] + ekin[b]),
                "temperature": float(ekin[b] / (1.5 * n * units.kB)),
            })
        return out

    def step(self) -> list[Candidate]:
        self._step += 1
        self.dynamics.step(self._forces)
        pos, vel = self.dynamics.positions, self.dynamics.velocities
        for w in range(self.n_walkers):
            if not np.isfinite(pos[w]).all() or np.abs(pos[w]).max() > 1e4:
                raise ProbeError(f"walker {w} blew up at step {self._step} (positions not finite or far away); "
                                 "lower the trigger tolerance or the time step")
        obs = self.observations()
        out = []
        for w in range(self.n_walkers):
            out.append(Candidate(item=_snapshot(self.numbers, pos[w], vel[w]), observation=obs[w]))
            fm = self._members[:, w]  # (M, N, 3), this committee
            self._predicted[w] = (fm.mean(0), fm.var(0), vel[w].copy(), obs[w]["rate_variance"], self._step)
            self.frames.append((w, self._step, pos[w].copy(), vel[w].copy()))
        return out

    def encode(self, item: Atoms) -> dict[str, np.ndarray]:
        return {"numbers": np.asarray(item.numbers, dtype=np.int64), "positions": item.get_positions()}

    def labelled(self, walker: int, item: Any, targets: Mapping[str, np.ndarray]) -> None:
        # the realised error of the committee that asked for this label (before it was retrained)
        if walker in self._predicted:
            mean, var, velocity, rate, step = self._predicted[walker]
            error = np.asarray(targets["forces"]) - mean
            rate_error = float((error * velocity).sum())
            self.calibration_forces.update(error, var)
            self.calibration_rate.update([rate_error], [rate])
            self._errors.append({"step": step, "walker": walker, "rate_error": rate_error,
                                 "rate_sigma": float(np.sqrt(rate)), "force_sq_error": float((error ** 2).sum()),
                                 "force_variance": float(var.sum())})
        # the committee was retrained: the forces at the present positions are stale
        self.dynamics.invalidate()
        self._members = None

    def calibration_table(self) -> pd.DataFrame:
        """The committee's realised errors at the labels, before it learned them.

        Returns
        -------
        pandas.DataFrame
            One row per labelled step: ``step``, ``walker``, ``rate_error`` (``sum_i dF_i . v_i``),
            ``rate_sigma`` (predicted ``sigma(dE/dt)``, same units), ``force_sq_error``
            (``sum |dF_i|^2``), ``force_variance`` (``sum_i tr Cov(F_i)``).
        """
        return pd.DataFrame(self._errors, columns=["step", "walker", "rate_error", "rate_sigma", "force_sq_error",
                                                   "force_variance"])
