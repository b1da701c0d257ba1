"""Operator norms are proven upper bounds: never below the SVD of the layer's dense matrix, and tight where exact."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from probe import ProbeError
from probe.certify import lipschitz_bound
from probe.operator_norms import (
    conv_l2_upper_bound,
    operator_norm_lower_bound,
    operator_norm_upper_bound,
    spectral_norm_upper_bound,
)
from probe.train import layer_norms


def _dense(layer, shape):
    """The layer's matrix (outputs, inputs), by applying it to the identity basis in float64."""
    layer = layer.double()
    d = math.prod(shape)
    eye = torch.eye(d, dtype=torch.float64).view((d,) + tuple(shape))
    with torch.no_grad():
        return (layer(eye) - layer(torch.zeros((1,) + tuple(shape), dtype=torch.float64))).reshape(d, -1).T


def _svd(M):
    return torch.linalg.svdvals(M.double())[0].item()


def _with_spectrum(n, singular_values, seed=0):
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    lin = nn.Linear(n, n, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(u @ torch.diag(singular_values) @ v.T)
    return lin


def test_clustered_spectrum_is_bounded_from_above():
    # singular values 1, 1 - 1e-4, 1 - 2e-4, ...: power iteration stops short at about 0.9998
    s = 1 - 1e-4 * torch.arange(160, dtype=torch.float64)
    lin = _with_spectrum(160, s)
    exact = _svd(lin.weight)
    assert exact == pytest.approx(1.0, abs=1e-12)
    bound = lipschitz_bound(lin, norm="l2").value
    assert exact <= bound <= exact * (1 + 1e-10)
    # the estimate from below really is below, and short of the truth
    estimate = operator_norm_lower_bound(lambda z: lin(z), (160,), iterations=500)
    assert estimate <= exact * (1 + 1e-12) and estimate < bound


def test_conv1d_over_40_positions_equals_its_dense_matrix():
    torch.manual_seed(0)
    conv = nn.Conv1d(3, 5, 5, padding=2)
    exact = _svd(_dense(conv, (3, 40)))
    bound = lipschitz_bound(conv, norm="l2", input_shape=(3, 40)).value
    assert exact <= bound <= exact * (1 + 1e-10)


@pytest.mark.parametrize("kw", [dict(kernel_size=3, padding=1), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=2, dilation=2, padding=1), dict(kernel_size=3, groups=2)])
def test_conv2d_all_norms_equal_dense_matrix(kw):
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 6, **kw)
    shape = (4, 7, 7)
    M = _dense(conv, shape)
    for norm, exact in [("l2", _svd(M)), ("linf", M.abs().sum(1).max().item()), ("l1", M.abs().sum(0).max().item())]:
        bound = operator_norm_upper_bound(conv, shape, norm=norm).value
        assert exact <= bound <= exact * (1 + 1e-10), norm


@pytest.mark.parametrize("layer,shape", [(nn.Conv1d(3, 5, 5, padding=2), (3, 40)),
                                         (nn.Conv2d(2, 3, 3, stride=2, padding=1), (2, 9, 9)),
                                         (nn.Conv1d(4, 4, 3, dilation=3, padding=3), (4, 30)),
                                         (nn.AvgPool1d(3, stride=2), (2, 21))])
def test_large_layer_bounds_stay_above_the_dense_norm(layer, shape):
    # too large to write out (dense_limit=1): the circular and Hölder bounds, never below the truth
    torch.manual_seed(2)
    exact = _svd(_dense(layer, shape))
    res = operator_norm_upper_bound(layer, shape, dense_limit=1)
    assert res.method in ("circular", "holder")
    assert res.value >= exact
    if isinstance(layer, nn.Conv1d | nn.Conv2d):
        assert conv_l2_upper_bound(layer, shape[1:]) >= exact


def test_avg_pool_norm_is_exact():
    # non-overlapping mean of k inputs: singular value 1 / sqrt(k)
    bound = operator_norm_upper_bound(nn.AvgPool1d(4), (2, 16)).value
    assert bound == pytest.approx(0.5, rel=1e-10) and bound >= 0.5


def test_batchnorm_norm_is_its_largest_scale():
    bn = nn.BatchNorm1d(3).eval()
    with torch.no_grad():
        bn.running_var.copy_(torch.tensor([0.25, 1.0, 4.0]))
        bn.weight.copy_(torch.tensor([1.0, -3.0, 1.0]))
    expected = 3.0 / math.sqrt(1.0 + bn.eps)
    for norm in ("l2", "linf", "l1"):
        assert operator_norm_upper_bound(bn, (3,), norm=norm).value == pytest.approx(expected, rel=1e-12)


def test_conv_needs_a_shape_and_zero_padding():
    with pytest.raises(ProbeError, match="input shape"):
        operator_norm_upper_bound(nn.Conv1d(1, 1, 3))
    with pytest.raises(ProbeError, match="padding_mode"):
        operator_norm_upper_bound(nn.Conv1d(1, 1, 3, padding=1, padding_mode="circular"), (1, 8))


def test_train_and_certify_use_the_same_norms():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 12, 3))
    x = torch.randn(1, 2, 12)
    cert = lipschitz_bound(model, input_shape=(2, 12))
    per_layer = [v for name, v in cert.layers.items() if name in ("0", "3")]
    assert layer_norms(model, x=x) == pytest.approx(per_layer, rel=1e-12)
    assert cert.value == pytest.approx(math.prod(per_layer), rel=1e-12)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(n=st.integers(2, 40), m=st.integers(2, 40), clusters=st.integers(1, 4), gap=st.sampled_from([0.0, 1e-8, 1e-4]),
       seed=st.integers(0, 10_000))
def test_clustered_spectra_property(n, m, clusters, gap, seed):
    g = torch.Generator().manual_seed(seed)
    k = min(n, m)
    top = torch.rand(clusters, generator=g, dtype=torch.float64) * 3 + 0.1
    s = torch.cat([top.repeat_interleave(math.ceil(k / clusters))[:k]]).sort(descending=True).values
    s = s - gap * torch.arange(k, dtype=torch.float64)
    u, _ = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    W = (u[:, :k] * s.clamp(min=0)) @ v[:, :k].T
    exact = _svd(W)
    assert exact <= spectral_norm_upper_bound(W) <= exact * (1 + 1e-10)
    lin = nn.Linear(n, m).double()
    with torch.no_grad():
        lin.weight.copy_(W)
    assert lipschitz_bound(lin).value >= exact
    assert lipschitz_bound(lin.float()).value >= _svd(lin.float().weight)
