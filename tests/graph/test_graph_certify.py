"""Certificates on models that are not nn.Sequential: sound against sampling and PGD, on BPNet and kin."""

import pytest
import torch
import torch.nn.functional as F
from bpnetlite.bpnet import BPNet, CountWrapper
from hypothesis import given, settings
from hypothesis import strategies as st
from models import DictHeads, DilatedTower, HandCNN, one_hot
from torch import nn

from probe.certify import bound_outputs, certified_radius, lipschitz_bound
from probe.certify.crown import relax_activation
from probe.certify.graph import build_graph
from probe.certify.ibp import non_monotone_range
from probe.certify.lipschitz import empirical_lipschitz_lower_bound


class _CatExp(nn.Module):
    """Concatenation, scaling by a negative constant, an added constant and an exp count head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.a = nn.Conv1d(4, 3, 5, padding=2)
        self.b = nn.Conv1d(4, 2, 3, padding=1)
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        h = torch.cat([torch.tanh(self.a(x)), F.leaky_relu(self.b(x), 0.1)], dim=1)
        h = -0.5 * h[:, :, 2:-2] + 0.25
        return torch.exp(0.3 * self.head(h.mean(-1)))


def _bpnet_counts(seed=0):
    torch.manual_seed(seed)
    return CountWrapper(BPNet(n_filters=6, n_layers=2, n_control_tracks=0, verbose=False)).eval()


MODELS = {
    "bpnet-counts": (_bpnet_counts, 120, {}),
    "hand-cnn": (lambda: HandCNN(channels=6).eval(), 40, {}),
    "dilated-tower": (lambda: DilatedTower(channels=4, blocks=2, crop=2).eval(), 32, {"reduce": lambda y: y.sum(-1)}),
    "dict-count": (lambda: DictHeads(channels=4).eval(), 30, {"output": "count"}),
    "cat-exp": (_CatExp, 30, {}),
}


def _attack_extremes(f, x, eps, steps=30):
    """PGD on every output, both directions, inside the L-inf ball: the largest and smallest values found."""
    k = f(x).shape[1]
    lo, hi = f(x).clone(), f(x).clone()
    for sign in (1.0, -1.0):
        for j in range(k):
            z = (x + eps * (2 * torch.rand_like(x) - 1)).requires_grad_(True)
            for _ in range(steps):
                (g,) = torch.autograd.grad(sign * f(z)[:, j].sum(), z)
                z = (x + (z + eps / 4 * g.sign() - x).clamp(-eps, eps)).detach().requires_grad_(True)
            with torch.no_grad():
                v = f(z)
            lo, hi = torch.minimum(lo, v), torch.maximum(hi, v)
    return lo, hi


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_bounds_hold_under_sampling_and_pgd(name, method):
    make, length, sel = MODELS[name]
    model = make()
    x = one_hot(3, length, seed=1)
    eps = 0.05
    cert = bound_outputs(model, x, eps, norm="linf", method=method, **sel)

    def f(z):
        out = model(z)
        if "output" in sel:
            out = out[sel["output"]]
        return sel["reduce"](out) if "reduce" in sel else out

    with torch.no_grad():
        samples = torch.stack([f(x + eps * (2 * torch.rand_like(x) - 1)) for _ in range(64)])
        corners = torch.stack([f(x + eps * torch.sign(torch.randn_like(x))) for _ in range(32)])
    lo, hi = _attack_extremes(f, x, eps)
    tol = 1e-5 * (1 + cert.upper.abs())
    for vals in (samples, corners, lo[None], hi[None]):
        assert (vals >= cert.lower - tol).all() and (vals <= cert.upper + tol).all()
    assert (cert.lower <= cert.upper).all()


@pytest.mark.parametrize("name", ["bpnet-counts", "hand-cnn", "cat-exp"])
def test_crown_is_inside_ibp(name):
    make, length, sel = MODELS[name]
    model = make()
    x = one_hot(2, length, seed=2)
    ibp = bound_outputs(model, x, 0.02, method="ibp", **sel)
    crown = bound_outputs(model, x, 0.02, method="crown", **sel)
    assert (crown.lower >= ibp.lower - 1e-6).all() and (crown.upper <= ibp.upper + 1e-6).all()


def test_certified_radius_and_lipschitz_bound_run_on_the_same_models():
    model = HandCNN(channels=4, n_out=3).eval()
    x = one_hot(4, 24, seed=3)
    r = certified_radius(model, x, norm="linf", method="crown")
    assert r.shape == (4,) and (r >= 0).all()
    # no sampled point within the certified L-inf radius changes the prediction
    with torch.no_grad():
        y = model(x).argmax(1)
    for i in range(4):
        if r[i] > 0:
            z = x[i:i + 1] + r[i] * (2 * torch.rand(64, 4, 24) - 1)
            assert (model(z).argmax(1) == y[i]).all()
    bp = _bpnet_counts()
    for m, shape in ((model, (4, 24)), (bp, (4, 60))):
        L = lipschitz_bound(m, norm="l2", input_shape=shape).value
        lower = empirical_lipschitz_lower_bound(m, one_hot(4, shape[1]), steps=20)
        assert 0 < lower <= L


def test_exp_has_no_global_lipschitz_constant():
    from probe import ProbeError

    with pytest.raises(ProbeError, match="exp"):
        lipschitz_bound(_CatExp(), input_shape=(4, 30))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(l=st.floats(-8, 6), width=st.floats(0, 8), act=st.sampled_from(["gelu", "gelu-tanh", "silu"]))
def test_smooth_relaxations_sandwich_the_activation(l, width, act):
    mod = {"gelu": nn.GELU(), "gelu-tanh": nn.GELU(approximate="tanh"), "silu": nn.SiLU()}[act]
    g = build_graph(nn.Sequential(nn.Identity(), mod), torch.zeros(2, 1))
    node = next(n for n in g.nodes if n.kind == "act")
    lo = torch.tensor([[l]], dtype=torch.float64)
    hi = lo + width
    a_lo, b_lo, a_up, b_up = relax_activation(node, lo, hi)
    t = lo + torch.linspace(0, 1, 2001, dtype=torch.float64)[:, None] * (hi - lo)
    f = node(t)
    assert (f >= a_lo * t + b_lo - 1e-12).all() and (f <= a_up * t + b_up + 1e-12).all()
    rl, ru = non_monotone_range(node, lo, hi)
    assert (f >= rl - 1e-12).all() and (f <= ru + 1e-12).all()
    assert float(f.min()) - float(rl) < 1e-5  # the range is exact, up to the slack


@pytest.mark.parametrize("act", [nn.ReLU6(), nn.Hardtanh(-2.0, 2.0), nn.CELU(0.5), nn.SELU(), nn.LogSigmoid(),
                                 nn.Hardsigmoid()])
def test_monotone_activations_are_bounded_soundly(act):
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv1d(3, 3, 1), act, nn.Flatten(), nn.Linear(15, 2)).eval()
    x = 3 * torch.randn(1, 3, 5)
    z = x + 0.5 * (2 * torch.rand(2000, 3, 5) - 1)
    with torch.no_grad():
        v = model(z)
    for method in ("ibp", "crown"):
        c = bound_outputs(model, x, 0.5, method=method)
        assert (v >= c.lower - 1e-5).all() and (v <= c.upper + 1e-5).all()
    L = lipschitz_bound(model, input_shape=(3, 5)).value
    assert empirical_lipschitz_lower_bound(model, 2 * torch.randn(8, 3, 5), steps=30) <= L


@pytest.mark.parametrize("act", [nn.Mish(), nn.PReLU(3), nn.Hardswish()])
def test_activations_without_a_bound_rule_are_named(act):
    from probe import ProbeError

    model = nn.Sequential(nn.Conv1d(3, 3, 1), act, nn.Flatten(), nn.Linear(15, 2)).eval()
    with pytest.raises(ProbeError, match="has no bound rule"):
        bound_outputs(model, torch.randn(2, 3, 5), 0.1)
