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


def _confs(ethanol, n):
    confs = []
    for k in range(n):
        a = ethanol.copy()
        a.rattle(0.05, seed=10 + k)
        a.calc = EMT()
        confs.append((a.numbers, a.positions, a.get_potential_energy(), a.get_forces()))
    return confs


def test_float32_agrees_with_float64(ethanol):
    pos = ethanol.positions[None] + np.random.default_rng(2).normal(scale=0.05, size=(2, 9, 3))
    p64 = EnsemblePotential([1, 6, 8], n_members=3, hidden=8, seed=4)
    p32 = EnsemblePotential([1, 6, 8], n_members=3, hidden=8, seed=4, dtype=torch.float32)
    a, b = p64.energy_and_forces(pos, ethanol.numbers), p32.energy_and_forces(pos, ethanol.numbers)
    assert b.forces.dtype == torch.float32 and next(p32.parameters()).dtype == torch.float32
    torch.testing.assert_close(b.forces.double(), a.forces, rtol=1e-4, atol=1e-4)
    losses = p32.fit(_confs(ethanol, 3), steps=5)
    assert np.isfinite(losses).all()
    with pytest.raises(ProbeError, match="dtype"):
        EnsemblePotential([1], dtype=torch.int32)


def test_fit_leaves_the_global_generator_alone(ethanol):
    pot = EnsemblePotential([1, 6, 8], n_members=2, hidden=4, bootstrap=True)
    state = torch.random.get_rng_state()
    pot.fit(_confs(ethanol, 4), steps=3, batch_size=2, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_bootstrap_counts_are_drawn_once_per_label():
    pot = EnsemblePotential([1], n_members=5, bootstrap=True, seed=3)
    first, later = pot.bootstrap_counts(4), pot.bootstrap_counts(9)
    np.testing.assert_array_equal(later[:, :4], first)  # new labels do not redraw the old counts
    again = EnsemblePotential([1], n_members=5, bootstrap=True, seed=3).bootstrap_counts(9)
    np.testing.assert_array_equal(again, later)
    assert (later.sum(1) > 0).all() and (later != 1).any()
    np.testing.assert_array_equal(EnsemblePotential([1], n_members=5).bootstrap_counts(3), np.ones((5, 3)))


def test_a_label_a_member_did_not_draw_does_not_reach_it(ethanol):
    confs = _confs(ethanol, 2)
    changed = [confs[0][:2] + (confs[0][2] + 1.0, confs[0][3] + 0.3), confs[1]]  # label 0 altered
    after = []
    for data in (confs, changed):
        pot = EnsemblePotential([1, 6, 8], n_members=3, hidden=4, bootstrap=True, seed=0)
        pot.fit(confs, steps=0)  # the same normalisation for both
        pot._counts = {0: np.array([0, 3, 1]), 1: np.array([1, 0, 2])}  # member 0 never drew label 0
        pot.fit(data, steps=3)
        after.append({k: v.detach().clone() for k, v in pot.ensemble.stacked.items()})
    for k in after[0]:
        torch.testing.assert_close(after[1][k][0], after[0][k][0], rtol=0, atol=0)  # member 0: untouched by label 0
    assert any(not torch.equal(after[1][k][2], after[0][k][2]) for k in after[0])  # member 2 drew it once


def test_randomized_priors_are_frozen_and_added(ethanol):
    confs = _confs(ethanol, 3)
    plain = EnsemblePotential([1, 6, 8], n_members=2, hidden=8, seed=1)
    prior = EnsemblePotential([1, 6, 8], n_members=2, hidden=8, seed=1, prior_scale=2.0)
    frozen = {k: v.clone() for k, v in prior.prior.stacked.items()}
    prior.fit(confs, steps=3)
    plain.fit(confs, steps=0)
    for k, v in prior.prior.stacked.items():
        assert torch.equal(v, frozen[k]) and not v.requires_grad
    # untrained members: the prior's contribution is beta times the prior network's
    p0 = EnsemblePotential([1, 6, 8], n_members=2, hidden=8, seed=1, prior_scale=2.0)
    q0 = EnsemblePotential([1, 6, 8], n_members=2, hidden=8, seed=1)
    species = p0.species(ethanol.numbers)
    g = torch.randn(1, 9, p0.descriptor.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a_p, d_p = p0._members(g, species)
    a_q, d_q = q0._members(g, species)
    a_r, d_r = p0.prior(g, species, True)
    torch.testing.assert_close(a_p, a_q + 2.0 * a_r)
    torch.testing.assert_close(d_p, d_q + 2.0 * d_r)


def test_each_member_sees_only_its_feature_subset(ethanol):
    pot = EnsemblePotential([1, 6, 8], n_members=3, hidden=8, feature_fraction=0.5, seed=2)
    mask = pot.feature_mask
    assert mask.shape == (3, pot.descriptor.dim) and (mask.sum(1) == round(0.5 * pot.descriptor.dim)).all()
    assert not torch.equal(mask[0], mask[1])
    species = pot.species(ethanol.numbers)
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(2, 9, pot.descriptor.dim, dtype=torch.float64, generator=gen)
    noise = torch.randn(g.shape, dtype=torch.float64, generator=gen)
    atomic, grad = pot._members(g, species)
    for m in range(3):
        hidden_only = g + noise * (1 - mask[m])  # change only what member m does not see
        moved, _ = pot._members(hidden_only, species)
        torch.testing.assert_close(moved[m], atomic[m], rtol=0, atol=0)
        assert (grad[m][..., mask[m] == 0] == 0).all()
    # and its forces are still minus the gradient of its energy
    pos = ethanol.positions.copy()
    pred = pot.energy_and_forces(pos, ethanol.numbers)
    h = 1e-5
    e = lambda p: pot.energy_and_forces(p, ethanol.numbers).energy[:, 0].numpy()  # noqa: E731
    step = np.zeros_like(pos)
    step[4, 1] = h
    np.testing.assert_allclose(pred.forces[:, 0, 4, 1].numpy(), -(e(pos + step) - e(pos - step)) / (2 * h),
                               rtol=1e-5, atol=1e-7)
