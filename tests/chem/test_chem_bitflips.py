"""Certified Morgan-bit flips: sound against enumeration, exact for a linear model, shaped as documented."""

import numpy as np
import pytest
import torch
from torch import nn

from domains.chem.bitflips import ThresholdDecision, certify_bit_flips
from probe import Bits, ProbeError
from probe.testing import exact_hamming_radius


def _exact(model, feats, table, max_radius):
    X = feats.X[torch.as_tensor(table.molecule.to_numpy().copy())]
    Z = torch.cat([X, torch.as_tensor(table.threshold.to_numpy().copy(), dtype=X.dtype)[:, None]], 1)
    mask = torch.zeros(Z.shape[1], dtype=torch.bool)
    mask[-1] = True
    return exact_hamming_radius(ThresholdDecision(model), Z, space=Bits(mask=mask), labels=torch.ones(len(Z)).long(),
                                max_radius=max_radius, limit=200_000).numpy()


def test_certified_flips_stay_below_the_exact_number(sulfo_mlp, sulfo_fp):
    table = certify_bit_flips(sulfo_mlp, sulfo_fp, [0, 5, 17], delta=0.5, keep=0.95, n=2000)
    assert list(table.columns) == ["molecule", "name", "prediction", "threshold", "above", "set_bits",
                                   "certified_flips", "smoothed_above", "smoothed_flips"]
    assert table.above.all() and np.allclose(table.prediction - table.threshold, 0.5, atol=1e-5)
    exact = _exact(sulfo_mlp, sulfo_fp, table, max_radius=1)
    assert (table.certified_flips.to_numpy() <= exact).all()
    assert (table.smoothed_flips >= 0).all() and table.smoothed_above.isin([-1, 0, 1]).all()


def test_linear_model_is_certified_exactly(sulfo_fp):
    torch.manual_seed(0)
    lin = nn.Linear(sulfo_fp.X.shape[1], 1)
    with torch.no_grad():
        lin.weight.mul_(4.0)
    table = certify_bit_flips(lin, sulfo_fp, [1, 2, 3, 4], delta=0.8, keep=0.9, n=500)
    # closed form: flipping bit b moves the prediction by w_b (1 - 2 x_b); the fewest flips that lose 0.8 take
    # the most negative moves first
    w = lin.weight.detach()[0]
    exact = []
    for i in table.molecule:
        moves = (w * (1 - 2 * sulfo_fp.X[i])).sort().values
        lost = -moves.clamp(max=0).cumsum(0)
        exact.append(int((lost < 0.8).sum()))            # flips that still keep the prediction above
    assert table.certified_flips.tolist() == exact and min(exact) >= 1


def test_features_without_bits_are_refused(sulfo_fp):
    class F:
        X = sulfo_fp.X[:, :4]
        names = ("MolWt", "TPSA", "LogP", "HBD")

    with pytest.raises(ProbeError, match="Morgan"):
        certify_bit_flips(nn.Linear(4, 1), F())
