"""Descriptor shifts that a molecule can have: definitional relations, ties, failed searches, real neighbours."""

import numpy as np
import torch

from domains.chem.relations import RELATIONS, repair, violations
from domains.chem.shifts import Drop, descriptor_shifts


def test_real_molecules_break_no_relation(small_desc):
    """Ground truth: 120 real sulfonamides satisfy every relation that their features hold."""
    f = small_desc
    assert all(v == [] for v in violations(f.raw, f.names))
    present = [r for r in RELATIONS if all(d in f.names for d in r[2])]
    assert len(present) == len(RELATIONS)


def test_repair_by_hand():
    names = ["NOCount", "NumHeteroatoms", "HeavyAtomCount", "TPSA", "RingCount", "NumAromaticRings",
             "NumAliphaticRings", "NumHDonors", "NumHAcceptors", "NHOHCount", "MolWt"]
    raw = np.array([[5, 3, 2, 40.0, 1, 1, 1, 0, 0, 0, 100.0],     # N/O above heteroatoms above heavy atoms
                    [0, 2, 10, 12.0, 2, 1, 1, 0, 0, 0, 150.0]])   # TPSA without N or O
    assert violations(raw, names)[0] == ["NOCount <= NumHeteroatoms", "NumHeteroatoms <= HeavyAtomCount",
                                         "RingCount = NumAromaticRings + NumAliphaticRings"]
    assert violations(raw, names)[1] == ["TPSA = 0 when NOCount = 0"]
    moved = np.zeros_like(raw, dtype=bool)
    moved[0, 0] = True   # the search raised NOCount: heteroatoms and heavy atoms follow it up
    moved[1, 0] = True   # the search removed the last N/O: TPSA goes to zero with it
    fixed = repair(raw, names, moved)
    assert fixed[0, 1] == 5 and fixed[0, 2] == 5 and fixed[0, 4] == 2
    assert fixed[1, 3] == 0.0 and fixed[1, 0] == 0
    assert violations(fixed, names) == [[], []]
    assert np.array_equal(raw[0], [5, 3, 2, 40.0, 1, 1, 1, 0, 0, 0, 100.0])  # input untouched
    # the search lowered only the heteroatom count: N/O follows it down instead
    down = np.zeros_like(raw, dtype=bool)
    down[0, 1] = True
    assert repair(raw[:1], names, down[:1])[0, 0] == 3


def test_tied_descriptors_move_together(small_desc, make_linear):
    """f falls with NOCount only: the N/O count rises past the heteroatom count, which must follow."""
    f = small_desc
    model = make_linear(len(f.names), {"NOCount": -1.0}, f.names)
    j_no, j_het = f.names.index("NOCount"), f.names.index("NumHeteroatoms")
    gap = f.raw[:3, j_het] - f.raw[:3, j_no]
    need = float((gap.max() + 2) / f.scale[j_no])  # standard deviations of NOCount past every heteroatom count
    loose = descriptor_shifts(model, f, [0, 1, 2], Drop(need), bounds="physical", consistent=False)
    assert loose.success.all() and all("NOCount <= NumHeteroatoms" in v for v in loose.violations)
    tied = descriptor_shifts(model, f, [0, 1, 2], Drop(need), bounds="physical")
    assert tied.success.all() and tied.violations == ([], [], [])
    for k in range(3):
        t = tied.for_molecule(k).set_index("feature")
        assert t.loc["NumHeteroatoms", "new_value"] >= t.loc["NOCount", "new_value"]
    # the ties cost nothing here (the model reads NOCount only) and the criterion still holds
    assert np.allclose(tied.new_prediction, loose.new_prediction)


def test_failed_search_lists_no_moves(small_desc, make_linear):
    f = small_desc
    model = make_linear(len(f.names), {"FractionCSP3": 1.0}, f.names)
    res = descriptor_shifts(model, f, [0], Drop(50.0), bounds="physical")
    assert not res.success.any()
    assert len(res.table) == 0 and res.violations == ([],)
    assert np.array_equal(res.new_prediction, res.prediction)


def test_nearest_real_neighbour(small_desc, make_linear, sulfonamides):
    """The reported neighbour is the pool molecule nearest the shifted descriptors (checked by brute force)."""
    f = small_desc
    model = make_linear(len(f.names), {"MolLogP": 1.0}, f.names)
    pool = list(sulfonamides["smiles"][200:260])
    res = descriptor_shifts(model, f, [0, 1], Drop(0.5), bounds="physical", pool=pool)
    pf = f.featurizer(pool)
    for k in range(2):
        x_new = f.from_raw(res.table[res.table.molecule == k].set_index("feature")
                           .reindex(list(f.names))["new_value"].fillna(
                               dict(zip(f.names, f.raw[k]))).to_numpy()[None])
        d = torch.linalg.vector_norm(pf.X - x_new, dim=1).numpy()
        row = res.neighbours.iloc[k]
        assert row["neighbour"] == pf.molecules.smiles[int(np.argmin(d))]
        assert np.isclose(row["neighbour_distance_std"], d.min(), rtol=1e-5)
        assert row["pool"] == len(pool)
        if row["crossing"]:
            with torch.no_grad():
                y = model(f.featurizer([row["crossing"]]).X)[0, 0].item()
            assert y <= res.prediction[k] - 0.5 + 1e-5
    edits = descriptor_shifts(model, f, [0], Drop(0.5), bounds="physical", pool="edits", pool_size=40)
    assert 0 < edits.neighbours.iloc[0]["pool"] <= 40
