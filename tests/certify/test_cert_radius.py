"""Certified radii: IBP <= CROWN <= exact MILP margin <= attack distance; exact on affine models."""

import pytest
import torch
from torch import nn

from probe import ProbeError
from probe.attacks.pgd import PGD
from probe.certify.lipschitz import lipschitz_bound
from probe.certify.lipsdp import lipsdp  # noqa: F401  (registers the LipSDP methods)
from probe.certify.radius import certified_radius
from probe.testing import AffineClassifier, AffineRegressor, affine_margin
from probe.testing.milp import exact_linf_margin


def _relu_net(seed, widths=(4, 10, 10, 3)):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double().eval()


def _pgd_distance(model, x, iters=14):
    """Smallest L-inf budget at which PGD flips each input (bisection over the budget)."""
    lo = torch.zeros(len(x), dtype=torch.float64)
    hi = torch.full((len(x),), 4.0, dtype=torch.float64)
    found = torch.full((len(x),), float("inf"), dtype=torch.float64)
    for _ in range(iters):
        mid = (lo + hi) / 2
        res = PGD(eps=mid, norm="linf", steps=40, restarts=2)(model, x)
        found = torch.where(res.success, torch.minimum(found, res.distance.double()), found)
        hi = torch.where(res.success, mid, hi)
        lo = torch.where(res.success, lo, mid)
    return found


@pytest.mark.parametrize("seed", [0, 1])
def test_ibp_le_crown_le_exact_margin_le_pgd(seed):
    model = _relu_net(seed)
    g = torch.Generator().manual_seed(100 + seed)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    pgd = _pgd_distance(model, x)
    assert torch.isfinite(pgd).all()
    exact = exact_linf_margin(model, x, eps_max=pgd * 1.001 + 1e-9)
    ibp = certified_radius(model, x, norm="linf", method="ibp")
    crown = certified_radius(model, x, norm="linf", method="crown")
    alpha = certified_radius(model, x, norm="linf", method="alpha-crown", iterations=15)
    assert (ibp <= crown + 1e-9).all()
    assert (crown <= alpha + 1e-9).all()
    assert (alpha <= exact + 1e-6).all()
    assert (exact <= pgd + 1e-6).all()
    assert (crown > 0).all()


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_radius_of_affine_classifier_is_its_exact_margin(norm, method):
    model = AffineClassifier.random(n_features=5, n_classes=3, seed=7).double()
    x = torch.randn(6, 5, dtype=torch.float64)
    r = certified_radius(model, x, norm=norm, method=method, steps=40)
    exact = affine_margin(model, x, norm)
    assert (r <= exact + 1e-12).all()
    torch.testing.assert_close(r, exact, rtol=1e-6, atol=1e-9)


def test_labels_that_are_not_predicted_get_radius_zero():
    model = AffineClassifier.random(n_features=5, n_classes=3, seed=8).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    wrong = (model(x).argmax(1) + 1) % 3
    assert (certified_radius(model, x, labels=wrong) == 0).all()
    with pytest.raises(ProbeError, match="labels"):
        certified_radius(model, x, labels=[0, 1, 2, 7])


@pytest.mark.parametrize("method", ["ibp", "crown", "lipschitz"])
def test_regression_radius_keeps_output_within_tolerance(method):
    model = AffineRegressor.random(n_features=4, n_classes=1, seed=9).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    tol = 0.3
    r = certified_radius(model, x, norm="l2", method=method, tolerance=tol, steps=40)
    exact = torch.full((5,), tol / model.linear.weight.detach()[0].norm().item(), dtype=torch.float64)
    torch.testing.assert_close(r, exact, rtol=1e-6, atol=1e-9)


def test_lipschitz_radius_below_crown_on_relu_net():
    model = _relu_net(3, widths=(3, 8, 8, 3))
    x = torch.randn(6, 3, dtype=torch.float64)
    L = lipschitz_bound(model, method="lipsdp-neuron")
    lip = certified_radius(model, x, norm="l2", method="lipschitz", lipschitz=L)
    crown = certified_radius(model, x, norm="l2", method="crown")
    assert (lip <= crown + 1e-6).all()
    spectral = lipschitz_bound(model).value
    assert L.value <= spectral * (1 + 1e-6)
    assert L.value <= lipschitz_bound(model, method="lipsdp-layer").value * (1 + 1e-6)


def test_smoothing_radius_through_certified_radius():
    model = AffineClassifier.random(n_features=4, n_classes=2, seed=11).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    r = certified_radius(model, x, norm="l2", method="smoothing", sigma=0.5, n=5_000)
    assert (r <= affine_margin(model, x, "l2") + 1e-12).all()
    with pytest.raises(ProbeError, match="L2"):
        certified_radius(model, x, norm="linf", method="smoothing", sigma=0.5)
