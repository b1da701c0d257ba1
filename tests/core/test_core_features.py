"""Robust and non-robust features: Tsipras et al.'s distribution in closed form, and Ilyas et al.'s constructions."""

import math

import pytest
import torch

import probe
from probe.errors import ProbeError
from probe.features import (
    TsiprasDistribution,
    feature_dataset,
    invert_representation,
    linear_feature_usefulness,
    penultimate,
    relabelled_dataset,
)
from probe.testing import AffineClassifier

D = TsiprasDistribution(p=0.9, d=100)
AVERAGE = torch.cat([torch.zeros(1), torch.full((100,), 0.01)])
ROBUST = torch.cat([torch.ones(1), torch.zeros(100)])


def _phi(t):
    return 0.5 * math.erfc(-t / math.sqrt(2))


def _monte_carlo(w, b, eps, x, y):
    """Accuracy of sign(w.x + b) under the exact worst L-inf perturbation of a linear classifier, -eps y sign(w)."""
    s = y.double()
    xa = x.double() - eps * s[:, None] * torch.sign(w.double())[None, :]
    return float(((xa @ w.double() + b) * s > 0).double().mean())


def test_tsipras_accuracies_are_the_analytic_values():
    eta, d, p = D.eta, D.d, D.p
    assert D.accuracy(AVERAGE) == pytest.approx(_phi(eta * math.sqrt(d)), abs=1e-12)
    assert D.accuracy(AVERAGE, eps=2 * eta) == pytest.approx(_phi(-eta * math.sqrt(d)), abs=1e-12)
    assert D.accuracy(ROBUST) == pytest.approx(p) and D.accuracy(ROBUST, eps=2 * eta) == pytest.approx(p)
    assert D.accuracy(ROBUST, eps=1.0) == 0.0                    # x_1 = +-1 flips at eps = 1
    x, y = D.sample(40_000, seed=1)
    assert float((y == 1).double().mean()) == pytest.approx(0.5, abs=0.01)
    assert float((x[:, 0] == y).double().mean()) == pytest.approx(p, abs=0.005)
    g = torch.Generator().manual_seed(2)
    for k in range(4):
        w = torch.randn(d + 1, generator=g, dtype=torch.float64) + 0.1
        w[0] = 2.0 * k
        b = 0.3 * (k - 1)
        for eps in (0.0, eta):
            exact = D.accuracy(w, b, eps=eps)
            assert _monte_carlo(w, b, eps, x, y) == pytest.approx(exact, abs=4 * math.sqrt(0.25 / len(x)))


def test_no_linear_classifier_beats_the_robust_accuracy_bound():
    """Theorem 2.1 of Tsipras et al.: standard accuracy 1 - delta => robust accuracy <= p delta / (1 - p) at 2 eta."""
    eps = 2 * D.eta
    # the robust classifier attains the bound; the accurate averaging one falls to Phi(-eta sqrt d)
    assert D.accuracy(ROBUST, eps=eps) == pytest.approx(D.robust_accuracy_bound(D.accuracy(ROBUST)))
    assert D.accuracy(AVERAGE, eps=eps) <= D.robust_accuracy_bound(D.accuracy(AVERAGE))
    for a in torch.linspace(0, 0.2, 11):                       # from the averaging to the robust classifier
        w = AVERAGE * (1 - a) + ROBUST * a
        assert D.accuracy(w, eps=eps) <= D.robust_accuracy_bound(D.accuracy(w)) + 1e-12
    # the bound needs eps >= 2 eta: at half of it the averaging classifier keeps more than it allows
    assert D.accuracy(AVERAGE, eps=D.eta / 2) > D.robust_accuracy_bound(D.accuracy(AVERAGE))


def test_usefulness_separates_robust_from_non_robust_features():
    x, y = D.sample(40_000, seed=3)
    for w in (AVERAGE, ROBUST, AVERAGE + 0.3 * ROBUST):
        for eps in (0.0, 0.1):
            assert linear_feature_usefulness(w, x, y, eps=eps) == pytest.approx(D.usefulness(w, eps=eps), abs=0.015)
    eps = 2 * D.eta
    assert D.usefulness(AVERAGE) > D.usefulness(ROBUST) > 0          # the average is the more useful feature
    assert D.usefulness(ROBUST, eps=eps) > 0 > D.usefulness(AVERAGE, eps=eps)   # but only x_1 is robustly useful
    assert D.usefulness(AVERAGE, eps=D.eta) == pytest.approx(0.0, abs=1e-12)


def test_inverting_a_linear_representation_projects_the_start():
    """For g(z) = A z the matching inputs are x + null(A); descent from s ends at s + A^+ A (x - s)."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 8, generator=g, dtype=torch.float64)
    rep = torch.nn.Linear(8, 3, bias=False).double()
    with torch.no_grad():
        rep.weight.copy_(A)
    x = torch.randn(5, 8, generator=g, dtype=torch.float64)
    s = torch.randn(5, 8, generator=g, dtype=torch.float64)
    z = invert_representation(rep, x, s, steps=400, step_size=1.0)
    P = torch.linalg.pinv(A) @ A
    expected = s + (x - s) @ P.T
    assert torch.allclose(z, expected, atol=2e-2)
    assert (z - expected).norm(dim=1).max() < 0.02 * (x - s).norm(dim=1).min()


def test_feature_dataset_keeps_labels_and_matches_representations():
    torch.manual_seed(0)
    # tanh, not ReLU: a ReLU off at the start passes no gradient, and descent cannot turn it on
    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    x = torch.rand(20, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.arange(20) % 3
    rep = penultimate(model)
    ds = feature_dataset(rep, x, y, kind="robust", steps=300, step_size=0.3, space=probe.Box(0, 1), seed=4)
    assert ds.kind == "robust" and torch.equal(ds.y, y) and len(ds) == 20
    assert sorted(ds.source.tolist()) == list(range(20))
    assert ((ds.x >= 0) & (ds.x <= 1)).all()
    with torch.no_grad():
        gap = (rep(ds.x) - rep(x)).norm(dim=1)
        start_gap = (rep(x[ds.source]) - rep(x)).norm(dim=1)
    assert (gap < 0.05 * start_gap).all()
    xb, yb = next(iter(ds.loader(batch_size=8)))
    assert xb.shape == (8, 16) and yb.shape == (8,)
    with pytest.raises(ProbeError, match="Sequential"):
        penultimate(torch.nn.Linear(3, 2))


@pytest.mark.parametrize("kind", ["rand", "det"])
def test_relabelled_dataset_carries_the_targets(kind):
    model = AffineClassifier.random(n_features=10, n_classes=4, seed=5).double()
    x = torch.rand(64, 10, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
    ds = relabelled_dataset(model, x, y, eps=3.0, norm="l2", kind=kind, steps=50, seed=7)
    assert torch.equal(ds.source, y)
    if kind == "det":
        assert torch.equal(ds.y, (y + 1) % 4)
    else:
        assert len(torch.unique(ds.y)) == 4 and not torch.equal(ds.y, y)
    assert ((ds.x - x).norm(dim=1) <= 3.0 + 1e-9).all()
    with torch.no_grad():
        hit = (model(ds.x).argmax(1) == ds.y).double().mean()
    assert hit > 0.95                                        # an affine model is steered to nearly every target
    with pytest.raises(ProbeError, match="kind"):
        relabelled_dataset(model, x, y, eps=1.0, kind="random")
    with pytest.raises(ProbeError, match="label 9"):
        relabelled_dataset(model, x, torch.full((64,), 9), eps=1.0)


def test_relabelling_leaves_model_and_inputs_as_they_were(device):
    model = AffineClassifier.random(n_features=10, n_classes=4, seed=5).double().to(device)
    model.train()
    x = torch.rand(16, 10, generator=torch.Generator().manual_seed(6), dtype=torch.float64).to(device)
    y = torch.arange(16, device=device) % 4
    x_before = x.clone()
    ds = relabelled_dataset(model, x, y, eps=1.0, norm="linf", kind="det", steps=10, space=probe.Box(0, 1))
    assert torch.equal(x, x_before) and model.training and all(p.requires_grad for p in model.parameters())
    assert ds.x.device.type == device.type
    assert ((ds.x - x).abs().amax(1) <= 1.0 + 1e-12).all() and ((ds.x >= 0) & (ds.x <= 1)).all()
