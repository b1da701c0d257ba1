"""The analytic descriptor derivatives behind the committee forces, against autograd."""

import numpy as np
import pytest
import torch
from ase.build import molecule

from domains.md.potential import EnsemblePotential, SymmetryFunctions


@pytest.fixture(scope="module")
def ethanol():
    return molecule("CH3CH2OH")


def _setup(ethanol, device, **options):
    numbers = sorted(set(ethanol.numbers.tolist()))
    species = torch.tensor([numbers.index(z) for z in ethanol.numbers], device=device)
    sf = SymmetryFunctions(len(numbers), **options).to(device)
    rng = np.random.default_rng(3)
    pos = torch.tensor(ethanol.positions[None] + rng.normal(scale=0.15, size=(3, len(ethanol), 3)), device=device)
    return sf, species, pos


# a short cutoff leaves some pairs outside it; zeta 2.5 exercises the non-integer branch
@pytest.mark.parametrize("options", [{}, {"cutoff": 2.6, "zetas": (1.0, 2.5), "lambdas": (1.0,)}])
def test_jacobian_equals_autograd(ethanol, device, options):
    sf, species, pos = _setup(ethanol, device, **options)
    g, jac = sf.forward_and_jacobian(pos, species)
    torch.testing.assert_close(g, sf(pos, species), rtol=1e-12, atol=1e-12)
    ref = torch.stack([torch.func.jacrev(lambda q: sf(q.unsqueeze(0), species)[0])(p) for p in pos])
    assert jac.shape == ref.shape == (3, 9, sf.dim, 9, 3)
    torch.testing.assert_close(jac, ref, rtol=1e-10, atol=1e-12)


def test_pullback_of_many_cotangents_equals_autograd(ethanol, device):
    sf, species, pos = _setup(ethanol, device)
    cot = torch.randn(5, *pos.shape[:2], sf.dim, dtype=pos.dtype, device=device,
                      generator=torch.Generator(device=device).manual_seed(0))
    _, grads = sf.pair_gradients(pos, species)
    out = sf.pullback(grads, species, cot)
    p = pos.clone().requires_grad_(True)
    g = sf(p, species)
    ref = torch.stack([torch.autograd.grad(g, p, c, retain_graph=True)[0] for c in cot])
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)


def test_chunked_prediction_equals_one_chunk(ethanol, device, monkeypatch):
    pot = EnsemblePotential([1, 6, 8], n_members=3, device=device)
    pos = ethanol.positions[None] + np.random.default_rng(1).normal(scale=0.05, size=(5, len(ethanol), 3))
    whole = pot.energy_and_forces(pos, ethanol.numbers)
    monkeypatch.setattr(pot, "_chunk_size", lambda n_atoms: 2)
    chunked = pot.energy_and_forces(pos, ethanol.numbers)
    torch.testing.assert_close(chunked.energy, whole.energy, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(chunked.forces, whole.forces, rtol=1e-12, atol=1e-12)
