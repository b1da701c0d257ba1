"""Corruption curves: accuracy under random noise against its closed form for linear classifiers."""

import math

import numpy as np
import pytest
import torch

import probe
from probe.corruptions import Corruption, corrupt, corruption_accuracy
from probe.errors import ProbeError
from probe.testing import AffineClassifier, affine_margin


def _phi(t):
    return 0.5 * torch.erfc(-t / math.sqrt(2.0))


def _tolerance(p, draws):
    """Four standard errors of a mean of Bernoulli draws with success probabilities p."""
    return 4 * math.sqrt(draws * float((p * (1 - p)).sum())) / (len(p) * draws) + 1e-6


def test_gaussian_noise_matches_the_normal_cdf_of_the_margin():
    """Two-class affine model: P(correct | x + sigma z) = Phi(|z_1 - z_0| / (sigma ||w_1 - w_0||_2))."""
    model = AffineClassifier.random(n_features=6, n_classes=2, seed=3).double()
    x = torch.randn(60, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with torch.no_grad():
        z = model(x)
    y = z.argmax(1)
    w = model.linear.weight.detach()
    gap = (z[:, 1] - z[:, 0]).abs()
    sigmas = [0.0, 0.2, 0.5, 1.0, 3.0]
    c = Corruption("gaussian", samples=300, seed=1)
    acc = corruption_accuracy(model, x, y, torch.tensor(sigmas), c)
    assert acc[0] == 1.0
    for s, a in zip(sigmas[1:], acc[1:]):
        p = _phi(gap / (s * (w[1] - w[0]).norm()))
        assert abs(float(a) - float(p.mean())) < _tolerance(p, c.samples)
    # a wrong model of the noise (half the scale) is rejected by the same check
    p_wrong = _phi(gap / (0.5 * (w[1] - w[0]).norm()))
    assert abs(float(acc[3]) - float(p_wrong.mean())) > _tolerance(p_wrong, c.samples)


def test_uniform_noise_matches_its_linear_cdf():
    """A model reading one feature, z_1 - z_0 = x_0 - t: P(correct) = clip(1/2 + |x_0 - t| / (2a), 0, 1)."""
    model = torch.nn.Linear(3, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0, 0, 0], [1.0, 0, 0]]))
        model.bias.copy_(torch.tensor([0.0, -0.5]))
    x = torch.rand(80, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = (x[:, 0] > 0.5).long()
    c = Corruption("uniform", samples=200, seed=2)
    levels = [0.1, 0.3, 0.8]
    acc = corruption_accuracy(model, x, y, torch.tensor(levels), c)
    for a, level in zip(acc, levels):
        p = (0.5 + (x[:, 0] - 0.5).abs() / (2 * level)).clamp(max=1.0)
        assert abs(float(a) - float(p.mean())) < _tolerance(p, c.samples)


def test_salt_and_pepper_on_one_hot_sequences():
    g = torch.Generator().manual_seed(0)
    letters = torch.randint(4, (30, 50), generator=g)
    x = torch.nn.functional.one_hot(letters, 4).permute(0, 2, 1).double()
    mask = torch.zeros(50, dtype=torch.bool)
    mask[:10] = True
    space = probe.OneHot(mask=mask)
    xc = corrupt(x, 0.4, "salt_pepper", space=space, generator=torch.Generator().manual_seed(1))
    space.validate(xc)
    changed = (xc != x).any(1)
    assert not changed[:, :10].any()                          # immutable positions stay
    share = float(changed[:, 10:].double().mean())            # hit with 0.4, then a new letter 3 times in 4
    assert share == pytest.approx(0.4 * 3 / 4, abs=4 * math.sqrt(0.3 * 0.7 / (30 * 40)))
    with pytest.raises(ProbeError, match="salt_pepper"):
        corrupt(x, 0.1, "gaussian", space=space)


def test_salt_and_pepper_in_a_box_sets_bounds():
    x = 0.25 + 0.5 * torch.rand(40, 64, generator=torch.Generator().manual_seed(0))
    xc = corrupt(x, 0.3, "salt_pepper", space=probe.Box(0, 1), generator=torch.Generator().manual_seed(3))
    hit = xc != x
    assert ((xc[hit] == 0) | (xc[hit] == 1)).all()
    assert float(hit.float().mean()) == pytest.approx(0.3, abs=0.03)
    assert float((xc[hit] == 1).float().mean()) == pytest.approx(0.5, abs=0.06)
    with pytest.raises(ProbeError, match="infinite bound"):
        corrupt(x, 0.1, "salt_pepper", space=probe.Box(0, float("inf")))
    with pytest.raises(ProbeError, match="probability"):
        corrupt(x, 1.5, "salt_pepper", space=probe.Box(0, 1))
    with pytest.raises(ProbeError, match="unknown corruption"):
        Corruption("fog")


def test_robustness_curve_with_corruption_beside_the_certified_curve():
    model = AffineClassifier.random(n_features=8, n_classes=3, seed=11).double()
    x = torch.randn(40, 8, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:4] = (y[:4] + 1) % 3
    x_before = x.clone()
    def exact_radius(m, inputs, labels):
        with torch.no_grad():
            return torch.where(m(inputs).argmax(1) == labels, affine_margin(m, inputs, "l2"), torch.zeros(len(inputs)))

    cur = probe.robustness_curve(model, x, y, eps=[0.0, 0.3, 1.0], norm="l2", corruption="gaussian",
                                 certifier=exact_radius, batch_size=7)
    assert torch.equal(x, x_before)
    assert cur.method == "corruption:gaussian+exact_radius"
    assert cur.empirical[0] == pytest.approx(0.9) and cur.clean == pytest.approx(0.9)
    assert (cur.certified <= cur.empirical + 1e-12).all()     # noise is weaker than any worst case
    same = probe.robustness_curve(model, x, y, eps=[0.0, 0.3, 1.0], corruption="gaussian", batch_size=None)
    assert torch.equal(cur.empirical, same.empirical)          # the draws do not depend on batch_size
    ax = cur.plot()
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["gaussian (corruption)", "exact_radius (certified)"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), cur.empirical.numpy())


def test_corruption_draws_do_not_depend_on_the_device(device):
    model = AffineClassifier.random(n_features=6, n_classes=3, seed=1).double()
    x = torch.rand(30, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
    levels = torch.tensor([0.0, 0.2, 0.6])
    cpu = corruption_accuracy(model, x, y, levels, "uniform", space=probe.Box(0, 1))
    on = corruption_accuracy(model.to(device), x.to(device), y.to(device), levels.to(device), "uniform",
                             space=probe.Box(0, 1))
    assert on.device.type == device.type
    assert torch.allclose(on.cpu(), cpu)
