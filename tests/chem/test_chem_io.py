"""Molecule input: every bad record is named, never a silent None."""

import warnings

import pandas as pd
import pytest
from rdkit import Chem

from domains.chem import datasets
from domains.chem.featurize import featurize
from domains.chem.io import as_molecules, from_frame, read_sdf
from probe.errors import ProbeError


def test_invalid_smiles_names_index_and_string():
    with pytest.raises(ProbeError, match=r"index 2: 'C1CC'"):
        as_molecules(["CCO", "c1ccccc1", "C1CC", "CC"])


def test_invalid_smiles_skipped_with_warning_when_asked():
    with pytest.warns(UserWarning, match=r"index 1: 'not_a_smiles'"):
        ms = as_molecules(["CCO", "not_a_smiles", "CCN"], on_error="skip")
    assert len(ms) == 2 and ms.source == (0, 2) and None not in ms.mols


def test_empty_input():
    with pytest.raises(ProbeError, match="empty"):
        as_molecules([])
    with pytest.raises(ProbeError, match="empty"):
        featurize([], kind="morgan")
    with pytest.raises(ProbeError):
        as_molecules([""])


def test_dummy_atoms_rejected_naming_molecule():
    with pytest.raises(ProbeError, match=r"molecule 1 .*dummy"):
        featurize(["CCO", "c1ccccc1[*:1]"], kind="descriptors")


def test_nan_descriptor_names_molecule_and_descriptor():
    with pytest.raises(ProbeError, match=r"BCUT2D_\w+ is nan for molecule 1 .*Na"):
        featurize(["CCO", "[Na+].[Cl-]", "CCC"], kind="descriptors", descriptors="all")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = featurize(["CCO", "[Na+].[Cl-]", "CCC"], kind="descriptors", descriptors="all", on_error="skip")
    assert len(f) == 2 and f.molecules.source == (0, 2)


def test_mols_series_frame_and_sdf(tmp_path):
    mol = Chem.MolFromSmiles("CCO")
    assert as_molecules(mol).smiles == ("CCO",)
    s = pd.Series(["CCO", "CCN"], index=["ethanol", "ethylamine"])
    assert as_molecules(s).names == ("ethanol", "ethylamine")
    df = pd.DataFrame({"smi": ["CCO", "C(("], "id": ["a", "b"]})
    with pytest.raises(ProbeError, match=r"'C\(\('"):
        from_frame(df, "smi", name_column="id")
    with pytest.raises(ProbeError, match="column 'smiles'"):
        from_frame(df)
    cmet = datasets.cmet()
    path = tmp_path / "x.sdf"
    w = Chem.SDWriter(str(path))
    for m in cmet["mol"][:3]:
        w.write(m)
    w.close()
    ms = read_sdf(path)
    assert len(ms) == 3 and ms.names == tuple(cmet["name"][:3])
    bad = tmp_path / "bad.sdf"
    bad.write_text(path.read_text().replace("V2000", "V9999", 1))
    with pytest.raises(ProbeError, match=r"record 1 of bad.sdf"):
        read_sdf(bad)
    with pytest.raises(ProbeError, match="does not exist"):
        read_sdf(tmp_path / "missing.sdf")


def test_shipped_datasets():
    s = datasets.sulfonamides()
    assert len(s) == 1017 and s["pIC50"].notna().all()
    c = datasets.cmet()
    assert len(c) == 24 and c["dG"].lt(0).all()
    sol = datasets.solubility()
    assert len(sol) == 1282 and len(as_molecules(sol["smiles"])) == 1282
    assert len(datasets.freesolv()) == 642
    assert datasets.sulfonamide_scaffold().GetNumAtoms() > 10
