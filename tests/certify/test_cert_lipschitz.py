"""Lipschitz upper bounds: exact on single layers, above every empirical quotient."""

import math

import pytest
import torch
from torch import nn

from probe import ProbeError
from probe.certify.lipschitz import empirical_lipschitz_lower_bound, lipschitz_bound, lipschitz_margin_radius


def _dense(layer, shape):
    d = math.prod(shape)
    eye = torch.eye(d, dtype=torch.float64).view((d,) + shape)
    layer = layer.double()
    with torch.no_grad():
        return (layer(eye) - layer(torch.zeros((1,) + shape, dtype=torch.float64))).reshape(d, -1).T


def test_spectral_bound_of_linear_layer_is_its_largest_singular_value():
    torch.manual_seed(0)
    lin = nn.Linear(12, 9)
    sv = torch.linalg.matrix_norm(lin.weight.detach().double(), 2).item()
    assert lipschitz_bound(lin).value == pytest.approx(sv, rel=1e-5)
    W = lin.weight.detach().double()
    assert lipschitz_bound(lin, norm="linf").value == pytest.approx(W.abs().sum(1).max().item(), rel=1e-6)
    assert lipschitz_bound(lin, norm="l1").value == pytest.approx(W.abs().sum(0).max().item(), rel=1e-6)


@pytest.mark.parametrize("layer,shape", [(nn.Conv2d(2, 3, 3, stride=2, padding=1), (2, 6, 6)),
                                         (nn.Conv1d(2, 4, 3, padding=2, dilation=2), (2, 9))])
def test_conv_operator_norm_matches_dense_matrix(layer, shape):
    torch.manual_seed(1)
    M = _dense(layer, shape)
    assert lipschitz_bound(layer, input_shape=shape).value == pytest.approx(
        torch.linalg.matrix_norm(M, 2).item(), rel=1e-4)
    assert lipschitz_bound(layer, input_shape=shape, norm="linf").value == pytest.approx(
        M.abs().sum(1).max().item(), rel=1e-5)
    assert lipschitz_bound(layer, input_shape=shape, norm="l1").value == pytest.approx(
        M.abs().sum(0).max().item(), rel=1e-5)


def test_conv_needs_input_shape():
    with pytest.raises(ProbeError, match="input_shape"):
        lipschitz_bound(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()))


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_empirical_lower_bound_below_upper_bound(norm):
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 8), nn.Softplus(),
                        nn.Linear(8, 2))
    upper = lipschitz_bound(net, norm=norm).value
    lower = empirical_lipschitz_lower_bound(net, torch.randn(16, 3), norm=norm, steps=30)
    assert 0 < lower <= upper


def test_single_linear_layer_lower_bound_reaches_upper_bound():
    torch.manual_seed(3)
    lin = nn.Linear(4, 3)
    upper = lipschitz_bound(lin).value
    lower = empirical_lipschitz_lower_bound(lin, torch.randn(16, 4), steps=150, step_size=0.05)
    assert lower <= upper * (1 + 1e-6)
    assert lower >= 0.98 * upper


def test_lipschitz_margin_radius_is_sound_for_affine_model():
    from probe.testing import AffineClassifier, affine_margin

    model = AffineClassifier.random(n_features=6, n_classes=4, seed=4)
    x = torch.randn(20, 6)
    L = lipschitz_bound(model, input_shape=(6,))
    r = lipschitz_margin_radius(model, x, L)
    assert (r <= affine_margin(model, x, "l2") + 1e-6).all() and (r > 0).all()


def test_lipsdp_between_empirical_lower_bound_and_spectral_product():
    pytest.importorskip("cvxpy")
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(2, 10), nn.ReLU(), nn.Linear(10, 12), nn.Tanh(), nn.Linear(12, 2))
    spectral = lipschitz_bound(net).value
    neuron = lipschitz_bound(net, method="lipsdp-neuron")
    layer = lipschitz_bound(net, method="lipsdp-layer")
    lower = empirical_lipschitz_lower_bound(net, torch.randn(16, 2), steps=60)
    assert lower <= neuron.value * (1 + 1e-6)
    assert neuron.value <= layer.value * (1 + 1e-6) <= spectral * (1 + 1e-5)
    assert neuron.layers["max_eigenvalue"] <= 1e-6
    # L-inf from L2 through sqrt(n_in)
    assert lipschitz_bound(net, method="lipsdp-neuron", norm="linf").value == pytest.approx(
        neuron.value * math.sqrt(2), rel=1e-4)


def test_lipsdp_of_a_single_linear_layer_is_its_spectral_norm():
    pytest.importorskip("cvxpy")
    lin = nn.Linear(5, 3)
    sv = torch.linalg.matrix_norm(lin.weight.detach().double(), 2).item()
    assert lipschitz_bound(lin, method="lipsdp-neuron").value == pytest.approx(sv, rel=1e-9)
    with pytest.raises(ProbeError, match="unknown Lipschitz method"):
        lipschitz_bound(lin, method="magic")
