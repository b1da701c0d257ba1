"""Features: names, bounds, integer flags, standardisation round trip, bit -> atom maps."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rdkit import Chem
from rdkit.Chem import Descriptors

from domains.chem.featurize import DEFAULT_DESCRIPTORS, featurize
from probe.errors import ProbeError

SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CN1CCC[C@H]1c1cccnc1", "OC(=O)c1ccccc1OC(C)=O"]


def test_descriptor_features_raw_units_and_flags():
    f = featurize(SMILES, kind="descriptors")
    assert f.X.shape == (5, len(DEFAULT_DESCRIPTORS)) and f.names == DEFAULT_DESCRIPTORS
    j = f.names.index("MolWt")
    assert np.allclose(f.raw[:, j], [Descriptors.MolWt(Chem.MolFromSmiles(s)) for s in SMILES])
    assert f.integer[f.names.index("NumHDonors")] and not f.integer[j]
    assert f.lower[f.names.index("FractionCSP3")] == 0 and f.upper[f.names.index("FractionCSP3")] == 1
    assert f.lower[f.names.index("MolLogP")] == -np.inf
    # standardised: zero mean, unit variance per column; raw units come back exactly
    X = f.X.double().numpy()
    assert np.allclose(X.mean(0), 0, atol=1e-6)
    assert np.allclose(f.to_raw(f.X), f.raw, rtol=1e-5, atol=1e-4)


def test_featurizer_applies_same_columns_and_scale_to_new_molecules():
    f = featurize(SMILES, kind=("morgan", "descriptors"), n_bits=256)
    g = f.featurizer(["CCO", "CCCCCC"])
    assert g.names == f.names and g.X.shape == (2, 256 + len(DEFAULT_DESCRIPTORS))
    assert torch.allclose(g.X[0], f.X[0])


def test_morgan_bits_and_environment_map():
    f = featurize(SMILES, kind="morgan", n_bits=1024)
    assert set(np.unique(f.raw)) <= {0.0, 1.0} and f.integer.all()
    for i in range(len(SMILES)):
        on = set(np.flatnonzero(f.raw[i]))
        assert on == set(f.bit_info[i])  # every set bit has its environments, and only those
        mol = f.molecules[i]
        for bit, atoms in f.bit_atoms(i).items():
            assert atoms and max(atoms) < mol.GetNumAtoms()
            for center, _radius in f.bit_info[i][bit]:
                assert center in atoms
    c = featurize(SMILES, kind="morgan", n_bits=1024, counts=True)
    assert c.raw.max() > 1 and (c.raw > 0).sum() == (f.raw > 0).sum()


def test_box_bounds_mask_and_errors():
    f = featurize(SMILES, kind="descriptors")
    box = f.box(immutable=["HeavyAtomCount"], bounds="data")
    lo, hi = f.bounds("data")
    assert np.allclose(box.lower.double().numpy(), (lo - f.mean) / f.scale, atol=1e-5)
    assert box.mask[f.names.index("HeavyAtomCount")] and int(box.mask.sum()) == 1
    box.validate(f.X)  # every molecule lies in the box built from the data
    with np.errstate(invalid="ignore"):
        pb = f.box(bounds="physical")
    assert torch.isinf(pb.upper[f.names.index("MolWt")])
    for bad in [dict(immutable=["nope"]), dict(bounds="wide")]:
        try:
            f.box(**bad)
        except ProbeError:
            continue
        raise AssertionError(bad)
    for bad in [dict(kind="ecfp"), dict(kind="descriptors", descriptors=["NotADescriptor"]), dict(radius=-1)]:
        try:
            featurize(SMILES, **bad)
        except ProbeError:
            continue
        raise AssertionError(bad)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=len(DEFAULT_DESCRIPTORS),
                max_size=len(DEFAULT_DESCRIPTORS)))
def test_standardisation_round_trip(values):
    f = _FEATS
    x = torch.tensor([values], dtype=torch.float64)
    back = f.featurizer.standardize(f.to_raw(x))
    assert np.allclose(back, x.numpy(), atol=1e-9)


_FEATS = featurize(SMILES, kind="descriptors")
