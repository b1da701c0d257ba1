"""Bring your own committee: ASE calculators and torch potentials drive the triggers and the loop."""

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.calculators.morse import MorsePotential

from domains.md.committee import CalculatorCommittee, TorchCommittee, as_committee
from domains.md.onthefly import MDExplorer, load_system, run_onthefly
from domains.md.potential import EnsemblePotential
from domains.md.triggers import energy_rate_trigger
from probe.active import LabelStore
from probe.errors import ProbeError

# Lennard-Jones copper: r_min = 2^(1/6) sigma near the 2.5 A of the Cu13 icosahedron
LJ_CU = [(2.27, 0.40), (2.31, 0.37), (2.24, 0.43)]


def lj_committee():
    return [LennardJones(sigma=s, epsilon=e, rc=5.0, smooth=True) for s, e in LJ_CU]


def test_a_committee_of_lennard_jones_calculators_drives_the_loop(tmp_path):
    atoms = load_system("cu13")
    store = tmp_path / "lj.sqlite"
    run = run_onthefly(atoms, energy_rate_trigger(0.01), committee=lj_committee(), oracle="emt", steps=15, seed=0,
                       store=store, timestep=5.0, temperature=500.0, n_initial=2, progress=False)
    h, ev = run.result.history, run.result.events
    assert len(h) == 15 and len(ev) >= 2  # the members disagree, so the trigger fires
    assert run.result.oracle_calls == 2 + len(ev) == run.result.n_labels
    # every observation is the members' own disagreement, recomputed here from the calculators
    calcs = lj_committee()
    dt = 5.0 * units.fs
    for (_, step, pos, vel), (_, row) in zip(run.frames[1:], h.iterrows()):
        assert step == row["step"] + 1
        fm = []
        for calc in calcs:
            a = Atoms(numbers=atoms.numbers, positions=pos)
            a.calc = calc
            fm.append(a.get_forces())
        fm = np.stack(fm)
        d = fm - fm.mean(0)
        assert row["sigma_dE"] == pytest.approx(np.sqrt(((d * vel).sum(-1) ** 2).mean(0).sum()) * dt, rel=1e-9)
        assert row["max_force_deviation"] == pytest.approx(np.sqrt((d ** 2).sum(-1).mean(0)).max(), rel=1e-9)
    # the labels are the oracle's, at the configurations the trigger picked
    with LabelStore(store) as s:
        lab = s.get(f"step-{int(ev['step'].iloc[0])}-walker-0")
    a = Atoms(numbers=atoms.numbers, positions=lab.inputs["positions"])
    a.calc = EMT()
    np.testing.assert_allclose(lab.targets["forces"], a.get_forces(), rtol=0, atol=1e-12)
    # the realised errors of the (fixed) committee are on record for its calibration
    assert len(run.calibration) == len(ev) and (run.calibration["rate_sigma"] > 0).all()


class TorchMorse(torch.nn.Module):
    """A pairwise Morse potential in torch with written-out forces (a stand-in for any torch potential)."""

    def __init__(self, depth, alpha, r0):
        super().__init__()
        self.register_buffer("p", torch.tensor([depth, alpha, r0], dtype=torch.float64))

    def energy(self, pos):
        d, a, r0 = self.p
        diff = pos.unsqueeze(-2) - pos.unsqueeze(-3)
        n = pos.shape[-2]
        r = (diff.pow(2).sum(-1) + torch.eye(n, dtype=pos.dtype)).sqrt()
        x = torch.exp(-a * (r - r0))
        return 0.5 * (d * (x * x - 2 * x) * (1 - torch.eye(n, dtype=pos.dtype))).sum((-1, -2))

    def forward(self, pos, numbers):
        d, a, r0 = self.p
        diff = pos.unsqueeze(-2) - pos.unsqueeze(-3)
        n = pos.shape[-2]
        r = (diff.pow(2).sum(-1) + torch.eye(n, dtype=pos.dtype)).sqrt()
        x = torch.exp(-a * (r - r0))
        de_dr = d * (-2 * a * x * x + 2 * a * x) * (1 - torch.eye(n, dtype=pos.dtype))
        forces = -(de_dr / r).unsqueeze(-1).mul(diff).sum(-2)
        return {"energy": self.energy(pos), "forces": forces}


def test_a_committee_of_torch_potentials_is_a_committee():
    atoms = load_system("cu13")
    models = [TorchMorse(0.34, 1.36, r0) for r0 in (2.60, 2.63, 2.57)]
    committee = as_committee(models)
    assert isinstance(committee, TorchCommittee) and committee.n_members == 3
    pos = atoms.positions[None] + np.random.default_rng(0).normal(scale=0.05, size=(2, 13, 3))
    pred = committee.predict(pos, atoms.numbers)
    assert pred.energy.shape == (3, 2) and pred.forces.shape == (3, 2, 13, 3)
    for m, model in enumerate(models):  # its forces are minus the gradient of its energy
        p = torch.tensor(pos, requires_grad=True)
        (grad,) = torch.autograd.grad(model.energy(p).sum(), p)
        torch.testing.assert_close(pred.forces[m], -grad, rtol=1e-10, atol=1e-10)
    run = run_onthefly(atoms, energy_rate_trigger(0.01), committee=models, oracle="emt", steps=6, seed=1,
                       timestep=5.0, temperature=500.0, n_initial=1, walkers=2, progress=False)
    assert set(run.result.history["walker"]) == {0, 1} and run.result.oracle_calls >= 1


def test_batched_walkers_equal_walkers_run_alone():
    atoms = load_system("cu13")
    pot = EnsemblePotential([29], n_members=3, hidden=8, cutoff=5.0, seed=0)
    alone = MDExplorer(atoms, pot, timestep=5.0, temperature=500.0, walkers=1)
    together = MDExplorer(atoms, pot, timestep=5.0, temperature=500.0, walkers=3)
    alone.start(2)
    together.start(2)
    for _ in range(4):
        (a,) = alone.step()
        b = together.step()
    np.testing.assert_allclose(b[0].item.positions, a.item.positions, rtol=0, atol=1e-12)
    for key in ("sigma_dE", "max_force_deviation", "energy", "sigma_dE_full"):
        assert b[0].observation[key] == pytest.approx(a.observation[key], rel=1e-9, abs=1e-15)
    # each walker's observation is the committee's at its own configuration
    pred = pot.predict(b[2].item.positions, atoms.numbers)
    d = pred.forces[:, 0] - pred.forces[:, 0].mean(0)
    rate = float(((d * torch.tensor(b[2].item.get_velocities())).sum(-1) ** 2).mean(0).sum())
    assert b[2].observation["rate_variance"] == pytest.approx(rate, rel=1e-9)
    assert not np.allclose(b[1].item.positions, b[0].item.positions)


def test_what_is_not_a_committee():
    with pytest.raises(ProbeError, match="at least 2"):
        CalculatorCommittee([EMT()])
    with pytest.raises(ProbeError, match="member 1"):
        CalculatorCommittee([EMT(), object()])
    with pytest.raises(ProbeError, match="cannot make a committee"):
        as_committee("emt")
    bad = TorchCommittee([lambda p, z: (p.sum((1, 2)), p[:, :1]), lambda p, z: (p.sum((1, 2)), p)])
    with pytest.raises(ProbeError, match="member 0 returned"):
        bad.predict(np.zeros((1, 2, 3)), [1, 1])


def test_morse_calculators_work_too():
    committee = as_committee([MorsePotential(epsilon=0.34, r0=r0, rho0=3.5) for r0 in (2.55, 2.62)])
    pred = committee.predict(load_system("cu13").positions, load_system("cu13").numbers)
    assert pred.forces.shape == (2, 1, 13, 3) and (pred.forces[0] != pred.forces[1]).any()


def small_mace(seed):
    """An untrained one-interaction MACE model for copper, its weights fixed by ``seed``."""
    import importlib

    from mace import modules  # first: it lets e3nn load its constants under this torch

    o3 = importlib.import_module("e3nn.o3")

    with torch.random.fork_rng():  # MACE draws its weights from the global generator: leave it as it was
        torch.manual_seed(seed)
        block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        return modules.MACE(r_max=4.5, num_bessel=4, num_polynomial_cutoff=5, max_ell=1, interaction_cls=block,
                            interaction_cls_first=block, num_interactions=1, num_elements=1,
                            hidden_irreps=o3.Irreps("8x0e"), MLP_irreps=o3.Irreps("8x0e"),
                            atomic_energies=np.array([-3.0]), avg_num_neighbors=8.0, atomic_numbers=[29],
                            correlation=2, gate=torch.nn.functional.silu).double()


@pytest.mark.slow
def test_a_committee_of_mace_models_drives_the_loop():
    pytest.importorskip("mace")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mace.calculators import MACECalculator

        calcs = [MACECalculator(models=small_mace(s), device="cpu", default_dtype="float64") for s in (0, 1)]
        atoms = load_system("cu13")
        run = run_onthefly(atoms, energy_rate_trigger(1e-4), committee=calcs, oracle="emt", steps=2, seed=0,
                           timestep=5.0, temperature=500.0, n_initial=1, progress=False)
    h = run.result.history
    assert len(h) == 2 and (h["sigma_dE"] > 0).all() and len(run.result.events) >= 1
    pred = as_committee(calcs).predict(run.frames[-1][2], atoms.numbers)  # deterministic members
    assert h["energy"].iloc[-1] == pytest.approx(float(pred.energy.mean()), rel=1e-10)


def test_any_committee_is_an_ase_calculator():
    from domains.md.calculator import EnsembleCalculator

    atoms = load_system("cu13")
    atoms.calc = EnsembleCalculator(lj_committee())
    energies = []
    for calc in lj_committee():
        a = atoms.copy()
        a.calc = calc
        energies.append(a.get_potential_energy())
    assert atoms.get_potential_energy() == pytest.approx(np.mean(energies), rel=1e-12)
    assert atoms.calc.results["member_forces"].shape == (3, 13, 3)
