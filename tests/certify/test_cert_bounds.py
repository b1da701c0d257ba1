"""Bound propagation: exact on affine maps, sound on every supported layer, clear errors."""

import pytest
import torch
from torch import nn

from probe import ProbeError
from probe.certify.base import bound_outputs
from probe.certify.crown import AlphaCROWN
from probe.norms import sample_ball

DUAL = {"linf": 1, "l2": 2, "l1": float("inf")}


@pytest.mark.parametrize("method", ["ibp", "crown"])
@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_affine_layer_bounds_are_exact(method, norm, device):
    torch.manual_seed(0)
    lin = nn.Linear(7, 4).double().to(device)
    x = torch.randn(5, 7, dtype=torch.float64, device=device)
    eps = torch.tensor([0.0, 0.01, 0.1, 0.5, 2.0], dtype=torch.float64)
    cert = bound_outputs(lin, x, eps, norm=norm, method=method)
    z = lin(x).detach()
    r = eps.to(device)[:, None] * lin.weight.detach().norm(p=DUAL[norm], dim=1)
    torch.testing.assert_close(cert.lower, z - r)
    torch.testing.assert_close(cert.upper, z + r)
    assert cert.confidence is None and cert.method == method


@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_per_feature_box_on_affine_layer_is_exact(method):
    torch.manual_seed(1)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(6, 3)).double()
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    eps = torch.rand(4, 2, 3, dtype=torch.float64)
    cert = bound_outputs(lin, x, eps, method=method)
    W = lin[1].weight.detach()
    z = lin(x).detach()
    r = eps.flatten(1) @ W.abs().T
    torch.testing.assert_close(cert.lower, z - r)
    torch.testing.assert_close(cert.upper, z + r)
    same = bound_outputs(lin, x, lower=x - eps, upper=x + eps, method=method)
    torch.testing.assert_close(same.lower, cert.lower)


class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + torch.relu(self.conv(x))


def _zoo():
    torch.manual_seed(3)
    bn = nn.BatchNorm2d(4)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    with torch.no_grad():
        bn.weight.uniform_(-1, 1)
    conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), bn, nn.LeakyReLU(0.1), Residual(4), nn.MaxPool2d(2),
                         nn.Conv2d(4, 4, 3), nn.Sigmoid(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4, 3))
    mlp = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Sequential(nn.Linear(16, 16), nn.ReLU()), nn.Linear(16, 2))
    conv1d = nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(), nn.Linear(6, 2))
    per_position = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3), nn.Flatten(), nn.Linear(15, 2))
    convex = nn.Sequential(nn.Linear(3, 10), nn.Softplus(beta=2.0), nn.Linear(10, 10), nn.ELU(0.5), nn.Linear(10, 1),
                           nn.Softplus())
    return [(conv, (1, 8, 8)), (mlp, (6,)), (conv1d, (2, 7)), (per_position, (5, 4)), (convex, (3,))]


@pytest.mark.parametrize("case", range(5))
@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_bounds_contain_dense_samples_and_crown_is_tighter(case, norm):
    model, shape = _zoo()[case]
    model = model.double().eval()
    x = torch.randn((3,) + shape, dtype=torch.float64)
    eps = 0.1
    ibp = bound_outputs(model, x, eps, norm=norm, method="ibp")
    crown = bound_outputs(model, x, eps, norm=norm, method="crown")
    g = torch.Generator().manual_seed(0)
    m = 2000
    pts = x[None] + sample_ball((m * 3,) + shape, eps, norm, g, dtype=torch.float64).view((m, 3) + shape)
    with torch.no_grad():
        y = model(pts.reshape((-1,) + shape)).reshape(m, 3, -1)
    alpha = bound_outputs(model, x, eps, norm=norm, method=AlphaCROWN(iterations=5))
    for cert in (ibp, crown, alpha):
        assert (y >= cert.lower - 1e-9).all() and (y <= cert.upper + 1e-9).all()
    assert ((crown.upper - crown.lower) <= (ibp.upper - ibp.lower) + 1e-9).all()
    assert ((alpha.upper - alpha.lower) <= (crown.upper - crown.lower) + 1e-9).all()


def test_bounds_contain_pgd_attacks_on_each_output():
    from probe.attacks.pgd import PGD
    from probe.criteria import Threshold

    model, shape = _zoo()[1]
    model = model.double().eval()
    x = torch.randn((4,) + shape, dtype=torch.float64)
    eps = 0.2
    cert = bound_outputs(model, x, eps, method="crown")
    for k in range(2):
        for direction, bound in (("up", cert.upper), ("down", cert.lower)):
            # push output k past an unreachable threshold: PGD ends at the extreme it found
            crit = Threshold(1e6 if direction == "up" else -1e6, output=k, direction=direction)
            res = PGD(eps=eps, steps=40, restarts=2)(model, x, crit)
            with torch.no_grad():
                yk = model(res.x_adv)[:, k]
            # PGD keeps its budget in single precision: allow that rounding
            assert (res.delta.abs().amax(1) <= eps + 1e-7).all()
            if direction == "up":
                assert (yk <= bound[:, k] + 1e-6).all()
            else:
                assert (yk >= bound[:, k] - 1e-6).all()


def test_batch_size_does_not_change_bounds_and_inputs_are_untouched():
    model, shape = _zoo()[0]
    model.train()
    x = torch.randn((5,) + shape)
    x0 = x.clone()
    a = bound_outputs(model, x, 0.05, batch_size=2)
    b = bound_outputs(model, x, 0.05, batch_size=None)
    torch.testing.assert_close(a.lower, b.lower)
    torch.testing.assert_close(a.upper, b.upper)
    assert torch.equal(x, x0)
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_unsupported_layer_is_named():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)))
    with pytest.raises(ProbeError, match=r"layer_norm.*'2\.1' \(LayerNorm\)"):
        bound_outputs(model, torch.zeros(2, 3), 0.1)


def test_bad_eps_and_box_are_reported():
    lin = nn.Linear(3, 2)
    with pytest.raises(ProbeError, match="eps"):
        bound_outputs(lin, torch.zeros(2, 3), -0.1)
    with pytest.raises(ProbeError, match="lower > upper"):
        bound_outputs(lin, torch.zeros(2, 3), lower=torch.ones(2, 3), upper=torch.zeros(2, 3))
    with pytest.raises(ProbeError, match="unknown bound method"):
        bound_outputs(lin, torch.zeros(2, 3), 0.1, method="magic")
