"""Structural counterfactuals: valid, different from the input, and across the criterion per the model."""

import numpy as np
import pytest
from rdkit import Chem

from domains.chem.counterfactuals import counterfactuals, stoned
from domains.chem.shifts import Drop
from probe import Threshold
from probe.errors import ProbeError


def test_stoned_samples_are_valid_distinct_and_seeded():
    a = stoned("CC(=O)Nc1ccc(O)cc1", 200, seed=3)
    b = stoned("CC(=O)Nc1ccc(O)cc1", 200, seed=3)
    assert a.equals(b) and len(a) > 50
    canon = Chem.CanonSmiles("CC(=O)Nc1ccc(O)cc1")
    for s in a.smiles:
        m = Chem.MolFromSmiles(s)
        assert m is not None and Chem.MolToSmiles(m) == s and s != canon
    assert a.mutations.between(1, 3).all()


@pytest.mark.parametrize("which", ["mlp", "rf"])
def test_counterfactuals_cross_the_criterion(which, sulfonamides, sulfo_fp, sulfo_mlp, sulfo_rf):
    model = sulfo_mlp if which == "mlp" else sulfo_rf
    i = int(np.argmax(sulfonamides["pIC50"].to_numpy()))
    smi = sulfonamides["smiles"][i]
    cf = counterfactuals(model, smi, Drop(0.5), featurizer=sulfo_fp.featurizer, n_samples=250, top=5)
    assert len(cf) > 0 and cf.candidates > 100
    assert list(cf.table.similarity) == sorted(cf.table.similarity, reverse=True)
    feats = sulfo_fp.featurizer(list(cf.table.smiles))
    if which == "mlp":
        import torch

        with torch.no_grad():
            y = model(feats.X)[:, 0].numpy()
    else:
        y = model.predict(feats.X.numpy())
    for s, p in zip(cf.table.smiles, y):
        m = Chem.MolFromSmiles(s)
        Chem.SanitizeMol(m)
        assert Chem.MolToSmiles(m) != Chem.CanonSmiles(smi)
        assert p <= cf.prediction - 0.5 + 1e-5
    assert np.allclose(y, cf.table.prediction, atol=1e-5)
    img = cf.grid(top=3)
    assert img.size[0] > 0


def test_counterfactual_errors(sulfo_fp, sulfo_mlp):
    with pytest.raises(ProbeError, match="already holds"):
        counterfactuals(sulfo_mlp, "CCO", Threshold(100.0), featurizer=sulfo_fp.featurizer, n_samples=10)
    with pytest.raises(ProbeError, match="invalid SMILES"):
        counterfactuals(sulfo_mlp, "C1CC", Drop(1.0), featurizer=sulfo_fp.featurizer, n_samples=10)
    with pytest.raises(ProbeError, match="one molecule"):
        counterfactuals(sulfo_mlp, ["CCO", "CCC"], Drop(1.0), featurizer=sulfo_fp.featurizer)
