"""Ground truth on real data: Free-Wilson substituent contributions of the sulfonamide series."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from domains.chem.atoms import atom_weights
from domains.chem.freewilson import free_wilson, substituent_scores
from probe.errors import ProbeError

SPEARMAN_FLOOR = 0.6


def test_decomposition_is_additive_and_fits(free_wilson_fit, sulfonamides):
    fw = free_wilson_fit
    assert len(fw.matched) > 600 and fw.r2 > 0.9
    c = fw.contributions
    # centred per position (count-weighted)
    for _, g in c.groupby("position"):
        assert abs((g.contribution * g["count"]).sum()) < 1e-6 * g["count"].sum()
    # additivity: intercept + contributions reproduces the least-squares prediction of each molecule
    look = {(p, s): v for p, s, v in zip(c.position, c.substituent, c.contribution)}
    y = sulfonamides["pIC50"].to_numpy()[fw.matched]
    pred = np.array([fw.intercept + sum(look[(p, r[p])] for p in c.position.unique())
                     for _, r in fw.assignments.iterrows()])
    r2 = 1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert np.isclose(r2, fw.r2)
    # substituent atoms are disjoint from each other and cover R1/R3
    for atoms in fw.atoms[:50]:
        assert atoms["R1"] and atoms["R3"] and not set(atoms["R1"]) & set(atoms["R3"])


def _rank_agreement(fw, model, feats):
    idx = [int(i) for i in fw.matched]
    maps = atom_weights(model, feats, idx)
    t = substituent_scores(fw, dict(zip(idx, maps.weights)))
    sel = t[(t["count"] >= 3) & t["atom_score"].notna() & (t["position"] != "R10")]
    return spearmanr(sel.contribution, sel.atom_score)[0], len(sel)


def test_atom_maps_rank_substituents_like_free_wilson(free_wilson_fit, sulfo_mlp, sulfo_rf, sulfo_fp):
    rho_mlp, n = _rank_agreement(free_wilson_fit, sulfo_mlp, sulfo_fp)
    rho_rf, _ = _rank_agreement(free_wilson_fit, sulfo_rf, sulfo_fp)
    print(f"Spearman(atom-map substituent score, Free-Wilson contribution) over {n} substituents: "
          f"MLP {rho_mlp:.3f}, random forest {rho_rf:.3f}")
    assert n >= 20
    assert rho_mlp >= SPEARMAN_FLOOR
    assert rho_rf >= SPEARMAN_FLOOR


def test_bad_input(sulfonamides):
    from domains.chem import datasets

    with pytest.raises(ProbeError, match="activities"):
        free_wilson(sulfonamides["smiles"][:5], [1.0, 2.0], datasets.sulfonamide_scaffold())
    with pytest.raises(ProbeError, match="matches none"):
        free_wilson(["CCO", "CCC"], [1.0, 2.0], datasets.sulfonamide_scaffold())
    with pytest.raises(ProbeError, match="nan"):
        free_wilson(["CCO", "CCC"], [1.0, float("nan")], datasets.sulfonamide_scaffold())
