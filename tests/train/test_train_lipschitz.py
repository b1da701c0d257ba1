import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from train_helpers import make_loader, make_mlp

import probe
from probe.attacks.pgd import PGD
from probe.certify import empirical_lipschitz_lower_bound, lipschitz_bound, lipschitz_margin_radius
from probe.devices import single_thread
from probe.operator_norms import conv_l2_upper_bound
from probe.operator_norms import operator_norm_lower_bound as operator_norm
from probe.train import layer_norms, lipschitz_budget, project_lipschitz


def exact_product(model):
    return math.prod(float(torch.linalg.matrix_norm(m.weight.detach().double(), ord=2))
                     for m in model.modules() if isinstance(m, torch.nn.Linear))


@pytest.fixture(scope="module")
def budget_models(digits):
    x, y, _, _ = digits
    out = {}
    with single_thread():
        for budget in (1.0, 4.0):
            model = make_mlp()
            res = lipschitz_budget(model, make_loader(x, y), budget=budget, margin_eps=0.2, epochs=6, seed=0)
            out[budget] = (model.eval(), res)
    return out


@pytest.mark.parametrize("budget", [1.0, 4.0])
def test_trained_model_respects_budget(budget_models, digits, budget):
    model, res = budget_models[budget]
    _, _, xt, yt = digits
    assert exact_product(model) <= budget * (1 + 1e-6)
    assert lipschitz_bound(model, norm="l2").value <= budget
    assert res.extras["lipschitz_upper_bound"] <= budget
    if budget == 1.0:  # a tight budget is used, not just respected: the projection is active at the end
        assert res.extras["lipschitz_upper_bound"] >= 0.99 * budget
    # the empirical (ascent) lower bound never exceeds the certified upper bound
    assert empirical_lipschitz_lower_bound(model, xt[:32], norm="l2", steps=30) <= budget
    with torch.no_grad():
        acc = float((model(xt).argmax(1) == yt).float().mean())
    assert acc >= (0.6 if budget == 1.0 else 0.8)


def test_margin_certificate_is_sound_against_pgd(budget_models, digits):
    model, res = budget_models[4.0]
    _, _, xt, yt = digits
    radius = lipschitz_margin_radius(model, xt, res.extras["lipschitz_upper_bound"], labels=yt)
    ok = radius > 0
    assert ok.float().mean() > 0.5
    attack = PGD(eps=radius[ok] * 0.999, norm="l2", steps=50, restarts=2)
    assert not attack(model, xt[ok], probe.Misclassify(yt[ok])).success.any()


def test_linf_budget(digits):
    x, y, _, _ = digits
    model = make_mlp()
    lipschitz_budget(model, make_loader(x[:256], y[:256]), budget=3.0, norm="linf", epochs=2, seed=0)
    assert lipschitz_bound(model, norm="linf").value <= 3.0


@pytest.mark.parametrize("kw", [dict(stride=1, padding=1), dict(stride=2, padding=0), dict(stride=1, padding=2,
                                dilation=2), dict(stride=1, padding=1, groups=2)])
def test_conv_bound_is_above_operator_norm(kw):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 6, 3, bias=False, **kw)
    shape = (4, 7, 7)
    exact = operator_norm(lambda z: conv.double()(z), shape)
    bound = float(conv_l2_upper_bound(conv.float(), shape[1:]))
    assert exact <= bound * (1 + 1e-6)
    # and it is a bound of the same size, not a loose one
    assert bound <= 1.6 * exact


def test_conv_model_respects_budget(device):
    torch.manual_seed(0)
    x = torch.rand(96, 1, 8, 8)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long()
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                torch.nn.Conv2d(4, 4, 3, stride=2, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(16, 2))
    res = lipschitz_budget(model, make_loader(x, y, batch_size=32), budget=2.0, epochs=3, device=device)
    assert res.extras["lipschitz_upper_bound"] <= 2.0
    assert lipschitz_bound(model, norm="l2", input_shape=(1, 8, 8)).value <= 2.0
    assert math.prod(layer_norms(model, x=x[:1])) <= 2.0


def test_project_lipschitz(digits):
    model = make_mlp()
    before = exact_product(model)
    after = project_lipschitz(model, budget=before / 3)
    assert after == pytest.approx(before / 3, rel=1e-6)
    assert exact_product(model) <= before / 3 * (1 + 1e-6)
    weights = [p.clone() for p in model.parameters()]
    project_lipschitz(model, budget=before)  # already inside: nothing changes
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))


def test_bad_input_raises_probe_error(digits):
    x, y, _, _ = digits
    loader = make_loader(x[:64], y[:64])
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(probe.ProbeError, match="budget"):
            lipschitz_budget(make_mlp(), loader, budget=bad)
    with pytest.raises(probe.ProbeError, match="empty"):
        lipschitz_budget(make_mlp(), [], budget=1.0)
    with pytest.raises(probe.ProbeError, match="no Linear or Conv|no parameters"):
        lipschitz_budget(torch.nn.Sequential(torch.nn.ReLU()), loader, budget=1.0)
    with pytest.raises(probe.ProbeError, match="BatchNorm1d"):
        lipschitz_budget(torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.BatchNorm1d(8),
                                             torch.nn.Linear(8, 10)), loader, budget=1.0)
    with pytest.raises(probe.ProbeError, match="l2.*linf"):
        lipschitz_budget(make_mlp(), loader, budget=1.0, norm="l1")
    with pytest.raises(probe.ProbeError, match="overlapping"):
        lipschitz_budget(torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3), torch.nn.MaxPool1d(3, stride=1)), loader,
                         budget=1.0)


@settings(max_examples=12, deadline=None)
@given(c_in=st.integers(1, 3), c_out=st.integers(1, 4), k=st.integers(1, 4), stride=st.integers(1, 3),
       padding=st.integers(0, 2), n=st.integers(4, 9), seed=st.integers(0, 10_000))
def test_conv_bound_soundness_property(c_in, c_out, k, stride, padding, n, seed):
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, bias=False).double()
    exact = operator_norm(lambda z: conv(z), (c_in, n, n), iterations=300)
    assert exact <= float(conv_l2_upper_bound(conv, (n, n))) * (1 + 1e-6)
