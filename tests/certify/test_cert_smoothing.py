"""Randomized smoothing: Cohen et al.'s radius formula, exact margins of affine classifiers."""

import math

import pytest
import torch
from scipy.stats import binom, norm
from torch import nn

from probe import ProbeError
from probe.certify.smoothing import Smoothing, smoothing_radius
from probe.testing import AffineClassifier, AffineRegressor, affine_margin

# Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via Randomized Smoothing", ICML 2019, CERTIFY:
# R = sigma * Phi^-1(p_A), p_A the one-sided Clopper-Pearson lower bound at level alpha. Their reference code
# (locuslab/smoothing, code/core.py, Smooth.certify and Smooth._lower_confidence_bound, which returns
# statsmodels' proportion_confint(n_A, n, alpha=2 * alpha, method="beta")[0] = Beta^-1(alpha; n_A, n - n_A + 1))
# gives, for n = 100,000, n_A = 99,000, alpha = 0.001, sigma = 0.25:
COHEN_P_LOWER = 0.98898934037747  # p_A
COHEN_RADIUS = 0.57249998880344  # R, 0.5725 to four places


def test_smoothing_radius_reference_value():
    r = smoothing_radius(99000, 100000, alpha=0.001, sigma=0.25)
    assert r == pytest.approx(COHEN_RADIUS, abs=1e-12)
    p_lower = norm.cdf(r / 0.25)
    assert p_lower == pytest.approx(COHEN_P_LOWER, abs=1e-12)
    # and p_A meets the definition of the Clopper-Pearson bound: P(Binomial(n, p_A) >= n_A) = alpha
    assert binom.sf(99000 - 1, 100000, p_lower) == pytest.approx(0.001, rel=1e-9)


def test_smoothing_radius_abstains_and_checks_input():
    assert smoothing_radius(50, 100, alpha=0.001, sigma=1.0) == 0.0
    assert smoothing_radius(0, 100, alpha=0.001, sigma=1.0) == 0.0
    assert smoothing_radius(100, 100, alpha=0.001, sigma=1.0) > 0
    with pytest.raises(ProbeError, match="n_a"):
        smoothing_radius(101, 100, alpha=0.001, sigma=1.0)


def _sampling_floor(p, n, alpha, sigma):
    """The certificate obtained from a count four standard deviations below its mean n p."""
    count = min(n, int(n * p - 4 * math.sqrt(n * p * (1 - p))))
    return smoothing_radius(count, n, alpha=alpha, sigma=sigma)


def _binary(seed=0, d=5):
    return AffineClassifier.random(n_features=d, n_classes=2, seed=seed).double()


@pytest.mark.parametrize("after_first_layer", [False, True])
def test_isotropic_smoothing_of_affine_classifier_certifies_its_margin(after_first_layer, device):
    affine = _binary().to(device)
    # nn.Sequential(Flatten, Linear) takes the path that samples the noise after the first layer
    model = nn.Sequential(nn.Flatten(), affine.linear) if after_first_layer else affine
    torch.manual_seed(1)
    x = torch.randn(6, 5, dtype=torch.float64, device=device)
    sigma, n, alpha = 0.5, 20_000, 0.001
    cert = Smoothing(model, sigma, n0=100, n=n, alpha=alpha, batch_size=7_000).certify(x)
    margin = affine_margin(affine, x, "l2")
    p = torch.distributions.Normal(0.0, 1.0).cdf(margin / sigma)   # P(f(x + noise) = f(x)) exactly
    assert (cert.label == model(x).argmax(1)).all()
    assert cert.confidence == pytest.approx(1 - alpha)
    for i in range(len(x)):
        assert cert.radius[i] <= margin[i] + 1e-12
        # the certificate at a count four standard deviations below its mean
        assert cert.radius[i] >= _sampling_floor(float(p[i]), n, alpha, sigma) - 1e-12


@pytest.mark.parametrize("after_first_layer", [False, True])
def test_anisotropic_smoothing_certifies_the_exact_ellipsoid(after_first_layer):
    model = _binary(seed=2, d=4)
    x = torch.randn(5, 4, dtype=torch.float64)
    sigma = torch.tensor([0.2, 0.5, 1.0, 0.1], dtype=torch.float64)
    smoothed = nn.Sequential(model.linear) if after_first_layer else model
    cert = Smoothing(smoothed, sigma, n=20_000).certify(x)
    w = model.linear.weight.detach()
    dw = w[0] - w[1]
    z = model(x).detach()
    gauge = (z[:, 0] - z[:, 1]).abs() / (sigma * dw).norm()     # exact Mahalanobis margin
    assert (cert.gauge_radius <= gauge + 1e-12).all()
    p = torch.distributions.Normal(0.0, 1.0).cdf(gauge)
    for i in range(len(x)):
        assert cert.gauge_radius[i] >= _sampling_floor(float(p[i]), 20_000, 0.001, 1.0) - 1e-12
    assert torch.allclose(cert.radius, cert.gauge_radius * sigma.min())
    # the smallest flipping perturbation in the sigma-weighted norm lies just outside the ellipsoid
    direction = -(sigma ** 2 * dw) * torch.sign(z[:, 0] - z[:, 1])[:, None]
    scaled = direction / (direction / sigma).norm(dim=1, keepdim=True)
    flip = scaled * gauge[:, None] * 1.0001
    assert (model(x + flip).argmax(1) != model(x).argmax(1)).all()
    assert not cert.certifies(flip).any()
    assert cert.certifies(0.99 * scaled * cert.gauge_radius[:, None]).all()


def test_predict_abstains_on_the_boundary_and_agrees_elsewhere():
    model = _binary(seed=3)
    w = model.linear.weight.detach()
    b = model.linear.bias.detach()
    dw, db = w[0] - w[1], b[0] - b[1]
    on_boundary = (-db * dw / dw.norm() ** 2)[None]                # z_0 = z_1 exactly
    far = torch.randn(3, 5, dtype=torch.float64) * 3
    x = torch.cat([on_boundary, far])
    pred = Smoothing(model, 0.1, n=2_000).predict(x)
    assert pred[0] == -1
    easy = affine_margin(model, far, "l2") > 0.5
    assert (pred[1:][easy] == model(far).argmax(1)[easy]).all()


def test_median_smoothing_bounds_an_affine_regressor():
    model = AffineRegressor.random(n_features=3, n_classes=2, seed=4).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    eps, sigma = 0.3, 0.5
    cert = Smoothing(model, sigma, n=20_000, alpha=0.001).bound_outputs(x, eps)
    z = model(x).detach()
    r = eps * model.linear.weight.detach().norm(dim=1)
    # the median of an affine map under Gaussian noise is the map itself: exact bounds are z -+ eps ||w||
    assert (cert.lower <= z - r + 1e-12).all() and (cert.upper >= z + r - 1e-12).all()
    slack = 0.1 * sigma * model.linear.weight.detach().norm(dim=1)
    assert (cert.lower >= z - r - slack).all() and (cert.upper <= z + r + slack).all()
    assert cert.confidence == pytest.approx(0.999)


def test_model_state_and_inputs_untouched():
    model = _binary()
    model.train()
    x = torch.randn(2, 5, dtype=torch.float64)
    x0 = x.clone()
    Smoothing(model, 0.3, n=500).certify(x)
    assert model.training and torch.equal(x, x0)
    with pytest.raises(ProbeError, match="sigma"):
        Smoothing(model, torch.ones(3), n=10).certify(x)
