"""Filters on proposed molecules: each removes what it names and nothing else."""

import pytest
from rdkit import Chem

from domains.chem.filters import MoleculeFilters, sa_score, strained, structural_alerts
from probe.errors import ProbeError


@pytest.mark.parametrize("smiles, expected", [
    ("C1=CN1", True),          # 2H-azirine
    ("C1=CC1", True),          # cyclopropene
    ("C1CC=C1", True),         # cyclobutene
    ("C12CC1C2", True),        # bicyclobutane: two fused three-rings
    ("C=C=C", True),           # allene (cumulene)
    ("CC=C=O", True),          # ketene
    ("NON", True), ("COOC", True), ("NNN", True),
    ("C1CC1", False),          # cyclopropane: strained but common in drugs
    ("C1CO1", False),          # epoxide: an alert's business, not strain's
    ("CN=C=O", False),         # isocyanate is a heterocumulene
    ("c1ccccc1O", False), ("CCN(CC)CC", False),
])
def test_strained(smiles, expected):
    assert strained(Chem.MolFromSmiles(smiles)) is expected


def test_sa_score_and_alerts_against_known_molecules():
    # Ertl & Schuffenhauer's scale: simple molecules near 1-2, complex natural products high
    assert sa_score(Chem.MolFromSmiles("CCO")) < 2.5
    taxol = ("CC1=C2C(C(=O)C3(C(CC4C(C3C(C(C2(C)C)(CC1OC(=O)C(C(C5=CC=CC=C5)NC(=O)C6=CC=CC=C6)O)O)"
             "OC(=O)C7=CC=CC=C7)(CO4)OC(=O)C)O)C)OC(=O)C")
    assert sa_score(Chem.MolFromSmiles(taxol)) > 5
    assert structural_alerts(Chem.MolFromSmiles("c1ccccc1O")) == []
    assert structural_alerts(Chem.MolFromSmiles("O=C1C=CC(=O)C=C1"))  # quinone: Brenk/PAINS alert
    assert structural_alerts(Chem.MolFromSmiles("CC(=O)OO"))           # peroxide


def test_filters_count_what_they_remove():
    ref = Chem.MolFromSmiles("CC(O)c1ccc(C)cc1")
    mols = [Chem.MolFromSmiles(s) for s in
            ["CC(N)c1ccc(C)cc1",            # kept
             "CC([N+](C)(C)C)c1ccc(C)cc1",  # charged: not 'valid'
             "CCCCCCCC",                    # dissimilar
             "CC(S)c1ccc(C)cc1",            # thiol: a Brenk alert
             "CC(O)c1ccc(C2=CC2)cc1",       # cyclopropene
             "CC(O)c1ccc(C2CC2)cc1"]]       # cyclopropane: kept
    keep, removed, scores = MoleculeFilters().apply(mols, ref)
    assert keep.tolist() == [True, False, False, False, False, True]
    assert removed == {"valid": 1, "similarity": 1, "strain": 1, "sa_score": 0, "qed": 0, "alerts": 1}
    assert list(removed) == ["valid", "similarity", "strain", "sa_score", "qed", "alerts"]  # cheapest first
    assert list(scores["removed_by"]) == ["", "valid", "similarity", "alerts", "strain", ""]
    assert scores["alerts"][3] == "thiol_2"
    assert scores["similarity"][0] >= 0.4 and scores["sa_score"][0] < 3 and scores["qed"][0] > 0.5
    keep2, removed2, _ = MoleculeFilters(skip=("similarity",), strain=False, max_sa=1.0).apply(mols, ref)
    assert "similarity" not in removed2 and "strain" not in removed2
    assert removed2["sa_score"] == 5 and not keep2.any()
    with pytest.raises(ProbeError, match="unknown filter"):
        MoleculeFilters(skip=("toxicity",))
