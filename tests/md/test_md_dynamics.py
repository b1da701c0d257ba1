"""The shared integrator against ASE's, the thermostat's stationary distribution, one set-up for all MD."""

import numpy as np
import pytest
from ase import units
from ase.calculators.emt import EMT
from ase.md.verlet import VelocityVerlet

from domains.md.committee import CalculatorCommittee
from domains.md.dynamics import Dynamics, initial_velocities
from domains.md.onthefly import MDExplorer, load_system, reference_trajectory, run_onthefly
from domains.md.triggers import energy_rate_trigger
from probe.errors import ProbeError


def _emt_forces(numbers):
    calc = EMT()

    def forces(positions):
        from ase import Atoms

        out = []
        for p in positions:
            a = Atoms(numbers=numbers, positions=p)
            a.calc = calc
            out.append(a.get_forces())
        return np.stack(out)

    return forces


def test_velocity_verlet_is_ases():
    atoms = load_system("cu13")
    v0 = initial_velocities(atoms, 500.0, seed=4)
    a = atoms.copy()
    a.set_velocities(v0)
    a.calc = EMT()
    ase_dyn = VelocityVerlet(a, timestep=5.0 * units.fs)
    ours = Dynamics(atoms.get_masses(), atoms.positions[None], v0[None], timestep=5.0)
    forces = _emt_forces(atoms.numbers)
    for _ in range(15):
        ase_dyn.run(1)
        ours.step(forces)
    np.testing.assert_allclose(ours.positions[0], a.positions, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours.velocities[0], a.get_velocities(), rtol=0, atol=1e-10)
    assert ours.kinetic_energy()[0] == pytest.approx(a.get_kinetic_energy(), rel=1e-10)


def test_langevin_without_friction_is_velocity_verlet():
    atoms = load_system("cu13")
    v0 = initial_velocities(atoms, 500.0, seed=1)[None]
    forces = _emt_forces(atoms.numbers)
    vv = Dynamics(atoms.get_masses(), atoms.positions[None], v0, timestep=5.0)
    ld = Dynamics(atoms.get_masses(), atoms.positions[None], v0, integrator="langevin", timestep=5.0, friction=0.0)
    for _ in range(5):
        vv.step(forces)
        ld.step(forces)
    np.testing.assert_allclose(ld.positions, vv.positions, rtol=0, atol=1e-12)


def test_langevin_brings_free_particles_to_the_maxwell_boltzmann_temperature():
    n, temperature = 3000, 400.0
    masses = np.full(n, 12.0)
    dyn = Dynamics(masses, np.zeros((2, n, 3)), np.zeros((2, n, 3)), integrator="langevin", timestep=1.0,
                   temperature=temperature, friction=0.05)
    for _ in range(150):  # 150 fs, 7.5 relaxation times
        dyn.step(lambda x: np.zeros_like(x))
    # equipartition: <m v^2 / 2> = k_B T / 2 per degree of freedom (std of the estimate ~ 1 / sqrt(9000))
    per_dof = dyn.kinetic_energy() / (3 * n)
    np.testing.assert_allclose(per_dof, 0.5 * units.kB * temperature, rtol=0.04)


def test_explorer_with_an_exact_committee_follows_the_reference_trajectory():
    atoms = load_system("cu13")
    committee = CalculatorCommittee([EMT(), EMT()])  # two copies of the oracle: the exact committee
    run = run_onthefly(atoms, energy_rate_trigger(1e-9), committee=committee, oracle="emt", steps=10, seed=3,
                       timestep=5.0, temperature=500.0, n_initial=1, progress=False)
    ref = reference_trajectory(atoms, oracle="emt", steps=10, seed=3, timestep=5.0, temperature=500.0)
    assert run.result.history["sigma_dE"].max() == 0.0 and run.result.oracle_calls == 1  # no spread, no label
    for (_, _, pos, vel), frame in zip(run.frames, ref):
        np.testing.assert_allclose(pos, frame.positions, rtol=0, atol=1e-12)
        np.testing.assert_allclose(vel, frame.get_velocities(), rtol=0, atol=1e-12)


def test_bad_dynamics_arguments():
    with pytest.raises(ProbeError, match="integrator"):
        Dynamics([1.0], np.zeros((1, 1, 3)), np.zeros((1, 1, 3)), integrator="leapfrog")
    with pytest.raises(ProbeError, match="masses"):
        Dynamics([1.0, 2.0], np.zeros((1, 1, 3)), np.zeros((1, 1, 3)))
    with pytest.raises(ProbeError, match="seeds"):
        Dynamics([1.0], np.zeros((2, 1, 3)), np.zeros((2, 1, 3)), seeds=[0])
    with pytest.raises(ProbeError, match="integrator"):
        MDExplorer(load_system("cu13"), [EMT(), EMT()], integrator="nose")
