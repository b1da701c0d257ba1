"""`probe chem`: the shipped report and probing a user's own saved model."""

import json

import pytest

from probe.cli import main


def test_chem_command_default_and_user_model(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PROBE_PROGRESS", raising=False)
    out = tmp_path / "report"
    assert main(["chem", "--quick", "--out", str(out), "--top", "2"]) == 0
    assert capsys.readouterr().err == f"[probe chem] wrote {out}/summary.json; report: {out}/report.html\n"
    summary = json.loads((out / "summary.json").read_text())
    _check_tables(out, summary, unit="pIC50")
    for key in ("test_r2", "atom_maps", "descriptor_shifts", "counterfactuals", "free_wilson", "mlp_rf_atom_spearman"):
        assert key in summary
    assert (out / "atom_maps_mlp_vs_rf.png").exists() and (out / "descriptor_shifts.csv").exists()
    assert summary["free_wilson"]["r2"] > 0.9
    assert summary["rdkit_similarity_map_max_abs_diff"] < 1e-9
    # each shift names its nearest real molecule, and the summary is strict JSON (no NaN for "none found")
    assert all("nearest_real" in v for v in summary["descriptor_shifts"].values())
    assert "NaN" not in (out / "summary.json").read_text()
    # the saved model bundle probes the user's own molecules
    user = tmp_path / "user"
    assert main(["chem", "--quick", "--out", str(user), "--model", str(out / "model.pkl"),
                 "--smiles", "CC(=O)Nc1ccc(O)cc1", "O=S(=O)(Nc1cccs1)c1ccc(Oc2ccccc2-c2ccccc2)c(C#N)c1"]) == 0
    s2 = json.loads((user / "summary.json").read_text())
    assert s2["molecules"] and len(s2["molecules"]) == 2 and (user / "atom_maps.png").exists()
    _check_tables(user, s2, unit=None)
    # and molecules from an SDF file
    from rdkit import Chem

    from domains.chem import datasets

    sdf = tmp_path / "cmet.sdf"
    with Chem.SDWriter(str(sdf)) as w:
        for m in datasets.cmet()["mol"][:2]:
            w.write(m)
    sdf_out = tmp_path / "sdf"
    assert main(["chem", "--quick", "--out", str(sdf_out), "--model", str(out / "model.pkl"), "--sdf", str(sdf),
                 "--top", "1", "--samples", "50"]) == 0
    s3 = json.loads((sdf_out / "summary.json").read_text())
    assert s3["n_molecules"] == 2 and s3["molecules"][0]["name"] == datasets.cmet()["name"][0]


def _check_tables(out, summary, unit):
    """atom_weights.csv and descriptor_shifts.csv hold what the summary reports, one molecule at a time."""
    import numpy as np
    import pandas as pd
    from rdkit import Chem

    s = f"_{unit}" if unit else ""
    atoms = pd.read_csv(out / "atom_weights.csv")
    assert list(atoms.columns) == ["molecule", "name", "atom", "element", f"weight{s}", "method", f"prediction{s}"]
    for k, mol in enumerate(summary["molecules"]):
        rows = atoms[atoms.molecule == k]
        rd = Chem.MolFromSmiles(mol["smiles"])
        assert list(rows.atom) == list(range(rd.GetNumAtoms())) and set(rows.name.astype(str)) == {str(mol["name"])}
        assert sorted(rows.element) == sorted(a.GetSymbol() for a in rd.GetAtoms())  # atom order may differ
        assert list(np.argsort(-np.abs(rows[f"weight{s}"].to_numpy()))[:3]) == mol["top_atoms"]
        assert rows[f"prediction{s}"].iloc[0] == pytest.approx(mol["prediction"], rel=1e-6)
    if not isinstance(summary["descriptor_shifts"], dict):
        return
    shifts = pd.read_csv(out / "descriptor_shifts.csv")
    assert set(shifts.status) <= {"found", "search failed"}
    for name, entry in summary["descriptor_shifts"].items():
        rows = shifts[shifts.name.astype(str) == str(name)]
        assert len(rows) >= 1 and set(rows.status) == {"found" if entry["success"] else "search failed"}
        if entry["success"]:
            np.testing.assert_allclose(rows.change, rows.after - rows.before, rtol=1e-12, atol=1e-12)
            assert {d: round(c, 4) for d, c in zip(rows.descriptor[:5], rows.change[:5])} == entry["moves"]
        else:
            assert rows.descriptor.isna().all() and len(rows) == 1


def test_chem_command_bad_input(tmp_path, capsys):
    assert main(["chem", "--quick", "--out", str(tmp_path), "--smiles", "CCO"]) == 2
    assert main(["chem", "--quick", "--out", str(tmp_path), "--model", str(tmp_path / "nope.pkl"),
                 "--smiles", "CCO"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.fixture(autouse=True)
def _entry_points(monkeypatch):
    """The chem command is found through the entry point even when this checkout is not installed."""
    import probe.cli
    from domains.chem.cli import COMMAND

    found = probe.cli.discover

    def discover():
        cmds = found()
        cmds.setdefault("chem", COMMAND)
        return cmds

    monkeypatch.setattr(probe.cli, "discover", discover)
