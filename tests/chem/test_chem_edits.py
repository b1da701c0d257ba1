"""Graph edits: every product is a valid molecule exactly the stated number of edits away."""

from rdkit import Chem

from domains.chem.edits import graph_edits, single_edits


def test_single_edits_of_ethanol_by_hand():
    got = single_edits(Chem.MolFromSmiles("CCO"), elements=("C", "N", "O"))
    # element changes, additions, removal of a terminal atom, bond-order raises on CC and CO
    expected = {"CCC", "CCN", "NCO", "OCO", "CNO", "COO",       # change one element
                "CC(C)O", "CCCO", "CC(N)O", "NCCO", "CC(O)O", "OCCO", "CCOC", "CCON", "CCOO",  # add one atom
                "CO", "CC",                                     # remove a terminal atom
                "C=CO", "CC=O"}                                 # raise the C-C or the C-O bond
    assert got == {Chem.CanonSmiles(s) for s in expected}


def test_graph_edits_are_valid_distinct_and_seeded():
    a = graph_edits("Oc1ccccc1Cl", 200, seed=1)
    b = graph_edits("Oc1ccccc1Cl", 200, seed=1)
    assert a.equals(b) and 50 < len(a) <= 200
    assert set(a.mutations) == {1, 2}
    firsts = single_edits(Chem.MolFromSmiles("Oc1ccccc1Cl"))
    assert set(a.smiles[a.mutations == 1]) == firsts  # all single edits come first
    for s in a.smiles:
        m = Chem.MolFromSmiles(s)
        assert m is not None and Chem.MolToSmiles(m) == s and s != Chem.CanonSmiles("Oc1ccccc1Cl")
