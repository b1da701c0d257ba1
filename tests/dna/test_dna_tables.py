"""`probe dna`'s per-sequence table: the strongest ISM substitution by hand, edits and radii as summarised."""

import json
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from domains.dna import one_hot
from domains.dna.tables import ism_summary, sequence_table
from probe.cli import main
from probe.errors import ProbeError


def test_ism_summary_by_hand():
    X = one_hot(["ACGT", "NACG"], iupac="fractional")
    ism = torch.zeros(2, 4, 4)
    ism[0, 2, 1] = 0.5  # C at 1 -> G: +0.5
    ism[0, 3, 3] = 0.0
    ism[0, 0, 3] = -2.0  # T at 3 -> A: -2, the strongest
    ism[1, 3, 0] = 1.5  # N at 0 -> T
    t = ism_summary(ism, X, ["s0", "s1"])
    assert list(t["ism_position"]) == [3, 0] and list(t["ism_ref"]) == ["T", "N"] and list(t["ism_alt"]) == ["A", "T"]
    assert list(t["ism_change"]) == [-2.0, 1.5] and list(t["ism_max_abs_change"]) == [2.0, 1.5]
    assert t["ism_mean_abs_change"].iloc[0] == pytest.approx(2.5 / 12) and t["length_bp"].iloc[0] == 4
    with pytest.raises(ProbeError, match="one shape"):
        ism_summary(ism[:, :, :3], X, ["s0", "s1"])


def test_sequence_table_lists_failed_searches():
    X = one_hot(["ACGT", "ACGA"])
    edits = SimpleNamespace(edits=[[(1, "C", "G"), (3, "T", "A")], []], success=torch.tensor([True, False]))
    ham = pd.DataFrame({"smoothed_radius": [1, 0], "exact_radius": [1, 0], "other": [7, 7]})
    t = sequence_table(["a", "b"], edits, torch.zeros(2, 4, 4), X, ham, labels=[1, 0])
    assert list(t["edits"]) == ["1C>G;3T>A", ""] and list(t["edit_positions"]) == ["1;3", ""]
    assert t["n_edits"].iloc[0] == 2 and pd.isna(t["n_edits"].iloc[1]) and list(t["edit_found"]) == [True, False]
    assert list(t["smoothed_radius"]) == [1, 0] and "other" not in t and list(t["label"]) == [1, 0]
    with pytest.raises(ProbeError, match="3 rows for 2 sequences"):
        sequence_table(["a", "b"], edits, torch.zeros(2, 4, 4), X, pd.concat([ham, ham.iloc[:1]]))


def test_default_run_tables_match_the_summary(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PROBE_PROGRESS", raising=False)
    out = tmp_path / "dna"
    assert main(["dna", "--quick", "--out", str(out), "--n", "3", "--max-edits", "4"]) == 0
    # off a terminal only the lines that were always there
    assert capsys.readouterr().err.splitlines() == ["[probe dna] reporting on 3 of 96 sequences (--n all reports "
                                                    "every one)",
                                                    f"[probe dna] wrote {out}/summary.json; report: {out}/report.html"]
    summary = json.loads((out / "summary.json").read_text())
    seqs, edits = pd.read_csv(out / "sequences.csv", keep_default_na=False), pd.read_csv(out / "edits.csv")
    assert len(seqs) == summary["sequences"] == 3
    assert seqs["edit_found"].any()
    for r in seqs.itertuples():
        found = summary["edits"][r.name] if r.edit_found else []
        assert (r.edits.split(";") if r.edits else []) == found
        assert r.edit_positions.count(";") == max(len(found) - 1, 0)
        long = edits[edits.name == r.name][["position", "ref", "alt"]].to_numpy()
        assert [f"{p}{a}>{b}" for p, a, b in long] == found
        radii = summary["hamming"]["radii"][r.name]
        assert r.smoothed_radius == radii["smoothed"] and r.certified_positional == radii["certified"]
        assert abs(r.ism_change) == r.ism_max_abs_change >= r.ism_mean_abs_change
    assert len(edits) == sum(len(v) for v in summary["edits"].values())
    assert {"sequences.csv", "edits.csv", "hamming.csv", "motifs.csv"} <= {p.name for p in out.glob("*.csv")}
