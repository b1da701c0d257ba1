"""Feature-space microscope: exact on models linear in a known descriptor."""

import numpy as np
import pytest
import torch

from domains.chem.shifts import Drop, descriptor_shifts
from probe import Threshold
from probe.errors import ProbeError


def test_linear_in_logp_closed_form(small_desc, make_linear):
    """f = 0.8 * z_logP + 6: the minimal L2 change for a drop of 0.5 is 0.5/0.8 standard deviations of logP."""
    f = small_desc
    model = make_linear(len(f.names), {"MolLogP": 0.8}, f.names)
    res = descriptor_shifts(model, f, [0, 1, 2], Drop(0.5), bounds="physical")
    j = f.names.index("MolLogP")
    expected = -0.5 / 0.8 * f.scale[j]
    assert res.success.all()
    assert np.allclose(res.distance, 0.5 / 0.8, rtol=1e-3)
    assert set(res.table.feature) == {"MolLogP"}  # nothing else moves
    assert np.allclose(res.table.change, expected, rtol=1e-3)
    assert np.allclose(res.new_prediction, res.prediction - 0.5, atol=1e-3)


def test_threshold_with_immutable_feature(small_desc, make_linear):
    """f = 0.5 z_TPSA + 0.5 z_logP + 6 with TPSA frozen: only logP moves, by (f - t)/0.5 sd."""
    f = small_desc
    model = make_linear(len(f.names), {"MolLogP": 0.5, "TPSA": 0.5}, f.names)
    with torch.no_grad():
        y = model(f.X[:2])[:, 0].double().numpy()
    t = float(y.min() - 0.3)
    res = descriptor_shifts(model, f, [0, 1], Threshold(t), immutable=["TPSA"], bounds="physical")
    assert set(res.table.feature) == {"MolLogP"}
    j = f.names.index("MolLogP")
    assert np.allclose(res.table.change, -(y - t) / 0.5 * f.scale[j], rtol=1e-3)
    # without the constraint both move equally (in standard deviations): the L2-minimal direction is w
    free = descriptor_shifts(model, f, [0], Threshold(t), bounds="physical")
    assert np.allclose(free.table.change_std.to_numpy(), -(y[0] - t) / 1.0, rtol=1e-3)


def test_integer_descriptor_rounded_and_still_satisfied(small_desc, make_linear):
    """f linear in the number of H-bond donors: the reported change is a whole number of donors."""
    f = small_desc
    model = make_linear(len(f.names), {"NumHDonors": 1.0}, f.names)
    res = descriptor_shifts(model, f, [0, 1], Drop(0.3), bounds="physical")
    assert res.success.all()
    rows = res.table[res.table.feature == "NumHDonors"]
    assert len(rows) == 2 and np.allclose(rows.new_value, np.round(rows.new_value))
    assert (rows.change <= -1).all() and (rows.new_value >= 0).all()
    assert (res.new_prediction <= res.prediction - 0.3 + 1e-6).all()


def test_bounds_respected_and_bad_input(small_desc, make_linear):
    f = small_desc
    model = make_linear(len(f.names), {"FractionCSP3": 1.0}, f.names)
    res = descriptor_shifts(model, f, [0], Drop(50.0), bounds="physical")
    assert not res.success.any()  # a fraction cannot fall below 0: no answer rather than an impossible one
    assert (res.table.new_value >= 0).all()
    with pytest.raises(ProbeError):
        descriptor_shifts(model, f, [0], "down")
    with pytest.raises(ProbeError):
        Drop(-1)


def test_descriptor_sensitivity_in_own_units(small_desc, make_linear):
    from domains.chem.shifts import descriptor_sensitivity

    f = small_desc
    model = make_linear(len(f.names), {"MolLogP": 0.8, "TPSA": -0.2}, f.names)
    t = descriptor_sensitivity(model, f, [0, 3])
    logp = t[t.feature == "MolLogP"]
    assert np.allclose(logp.per_unit, 0.8 / f.scale[f.names.index("MolLogP")], rtol=1e-5)
    assert np.allclose(t[t.feature == "TPSA"].per_unit, -0.2 / f.scale[f.names.index("TPSA")], rtol=1e-5)
    assert np.allclose(t[~t.feature.isin(["MolLogP", "TPSA"])].per_unit, 0)


def test_forward_only_model_goes_to_the_gradient_free_search(small_desc, sulfonamides):
    """A scikit-learn ridge on descriptors: HopSkipJump finds a change close to the exact L2 margin."""
    from sklearn.linear_model import Ridge

    f = small_desc
    ridge = Ridge(alpha=1.0).fit(f.X.numpy(), sulfonamides["pIC50"].to_numpy()[: len(f)])
    res = descriptor_shifts(ridge, f, [0, 1], Drop(0.5), bounds="physical")
    exact = 0.5 / np.linalg.norm(ridge.coef_)
    assert res.attack.success.all()
    assert (res.distance >= exact * (1 - 1e-4)).all() and (res.distance <= 1.1 * exact).all()
    # the reported (rounded) change is checked by a model call: success means the drop really happened
    ok = res.success
    assert (res.new_prediction[ok] <= res.prediction[ok] - 0.5 + 1e-9).all()


def test_class_flip_closed_form(small_desc):
    """Two classes scored linearly in standardised logP: the flip needs |z1 - z0| / |w1 - w0| sd of logP."""
    from probe import Misclassify

    f = small_desc
    j = f.names.index("MolLogP")
    lin = torch.nn.Linear(len(f.names), 2)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[0, j], lin.weight[1, j] = -1.0, 1.0
        lin.bias.copy_(torch.tensor([0.0, -0.2]))
    with torch.no_grad():
        z = lin(f.X[:4])
    margin = (z[:, 1] - z[:, 0]).abs().double().numpy() / 2.0
    res = descriptor_shifts(lin, f, [0, 1, 2, 3], Misclassify(), bounds="physical")
    assert res.success.all()
    assert np.allclose(res.distance, margin, rtol=1e-3, atol=1e-4)
    assert set(res.table.feature) == {"MolLogP"}
