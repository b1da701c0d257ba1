import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.emt import EMT
from scipy.spatial.transform import Rotation

from domains.md.calculator import EnsembleCalculator
from domains.md.potential import EnsemblePotential
from probe.errors import ProbeError


@pytest.fixture(scope="module")
def ethanol():
    return molecule("CH3CH2OH")


@pytest.fixture(scope="module")
def trained(ethanol):
    pot = EnsemblePotential([1, 6, 8], n_members=3, hidden=16, device="cpu", seed=1)
    confs = []
    for k in range(4):
        a = ethanol.copy()
        a.rattle(0.05, seed=k)
        a.calc = EMT()
        confs.append((a.numbers, a.positions, a.get_potential_energy(), a.get_forces()))
    losses = pot.fit(confs, steps=30)
    assert losses[-1] < 0.5 * losses[0]
    return pot


def autograd_reference(pot, positions, numbers):
    """Every member as a complete potential, forces by reverse-mode automatic differentiation."""
    species = pot.species(numbers)
    energies, forces = [], []
    for member in pot.ensemble.members():
        pos = torch.as_tensor(positions, dtype=pot.dtype, device=pot.device).clone().requires_grad_(True)
        g = (pot.descriptor(pos, species) - pot.g_mean) / pot.g_std
        e = pot.e_scale * member(g, species).sum(-1) + pot.e_shift[species].sum()
        (grad,) = torch.autograd.grad(e.sum(), pos)
        energies.append(e.detach())
        forces.append(-grad)
    return torch.stack(energies), torch.stack(forces)


def test_vectorised_equals_members_one_by_one(ethanol, device):
    pot = EnsemblePotential([1, 6, 8], n_members=4, hidden=16, device=device)
    pos = ethanol.positions[None] + np.random.default_rng(0).normal(scale=0.05, size=(3, 9, 3))
    vec = pot.energy_and_forces(pos, ethanol.numbers)
    energy, forces = autograd_reference(pot, pos, ethanol.numbers)
    assert vec.energy.shape == (4, 3) and vec.forces.shape == (4, 3, 9, 3)
    torch.testing.assert_close(vec.energy, energy, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(vec.forces, forces, rtol=1e-9, atol=1e-9)
    loop = pot.energy_and_forces_loop(pos, ethanol.numbers)  # the member-by-member baseline
    torch.testing.assert_close(loop.forces, forces, rtol=1e-9, atol=1e-9)
    assert vec.energy_std.min() > 0  # members differ


def test_forces_are_minus_the_numerical_gradient(ethanol, trained):
    pos = ethanol.positions.copy()
    pred = trained.energy_and_forces(pos, ethanol.numbers)
    h = 1e-5
    steps = np.zeros((27, 9, 3))
    steps.reshape(27, 27)[np.arange(27), np.arange(27)] = h
    e_plus = trained.energy_and_forces(pos + steps, ethanol.numbers).energy.numpy()  # (M, 27), one batch
    e_minus = trained.energy_and_forces(pos - steps, ethanol.numbers).energy.numpy()
    num = (-(e_plus - e_minus) / (2 * h)).reshape(-1, 9, 3)
    np.testing.assert_allclose(pred.forces[:, 0].numpy(), num, rtol=1e-5, atol=1e-6)


def test_invariant_under_rotation_translation_and_permutation(ethanol, trained):
    pos = ethanol.positions.copy()
    base = trained.energy_and_forces(pos, ethanol.numbers)
    rot = Rotation.random(random_state=3).as_matrix()
    moved = pos @ rot.T + np.array([1.5, -2.0, 0.7])
    out = trained.energy_and_forces(moved, ethanol.numbers)
    torch.testing.assert_close(out.energy, base.energy, rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(out.forces, base.forces @ torch.tensor(rot.T), rtol=1e-8, atol=1e-8)
    hydrogens = np.flatnonzero(ethanol.numbers == 1)
    perm = np.arange(9)
    perm[hydrogens] = np.roll(hydrogens, 2)
    out = trained.energy_and_forces(pos[perm], ethanol.numbers[perm])
    torch.testing.assert_close(out.energy, base.energy, rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(out.forces, base.forces[:, :, perm], rtol=1e-8, atol=1e-8)


def test_calculator_serves_mean_and_spread(ethanol, trained):
    a = ethanol.copy()
    a.calc = EnsembleCalculator(trained)
    e = a.get_potential_energy()
    r = a.calc.results
    assert e == pytest.approx(r["member_energies"].mean())
    np.testing.assert_allclose(a.get_forces(), r["member_forces"].mean(0))
    assert r["forces_std"].shape == (9,) and r["max_force_deviation"] == pytest.approx(r["forces_std"].max())
    assert a.calc.get_property("energy_std", a) == pytest.approx(r["member_energies"].std())


def test_atoms_outside_the_trained_elements(ethanol, trained):
    a = ethanol.copy()
    a[3].symbol = "N"
    with pytest.raises(ProbeError, match="atom 3 is N.*not trained for"):
        trained.energy_and_forces(a.positions, a.numbers)
    a.calc = EnsembleCalculator(trained)
    with pytest.raises(ProbeError, match="atom 3 is N"):
        a.get_potential_energy()
    b = ethanol.copy()
    b.cell = [10, 10, 10]
    b.pbc = True
    b.calc = EnsembleCalculator(trained)
    with pytest.raises(ProbeError, match="periodic"):
        b.get_forces()


def test_bad_training_data(ethanol):
    pot = EnsemblePotential([1, 6, 8], n_members=2, hidden=4, device="cpu")
    forces = np.zeros((9, 3))
    forces[2, 1] = np.nan
    with pytest.raises(ProbeError, match="configuration 0 holds a non-finite"):
        pot.fit([(ethanol.numbers, ethanol.positions, -1.0, forces)], steps=1)
    with pytest.raises(ProbeError, match="configuration 0: positions"):
        pot.fit([(ethanol.numbers, ethanol.positions[:4], -1.0, np.zeros((9, 3)))], steps=1)
