"""Robustness curves: empirical (attack) above certified (closed-form radius), both monotone."""

import numpy as np
import pytest
import torch

import probe
from probe.attacks.fmn import FMN
from probe.attacks.pgd import PGD
from probe.microscope import robustness_curve
from probe.testing import AffineClassifier, affine_margin


def _problem(n=40):
    model = AffineClassifier.random(n_features=8, n_classes=3, seed=11).double()
    x = torch.randn(n, 8, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:4] = (y[:4] + 1) % 3                      # four wrong labels: clean accuracy 0.9
    return model, x, y


def affine_radius(norm):
    """Certified radius of an affine classifier: its exact margin where correct, else 0."""

    def radius(model, x, labels):
        r = affine_margin(model, x, norm)
        with torch.no_grad():
            return torch.where(model(x).argmax(1) == labels, r, torch.zeros_like(r))

    return radius


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_empirical_above_certified_and_close_on_affine_models(norm):
    model, x, y = _problem()
    margin = affine_margin(model, x, norm)
    eps = torch.quantile(margin.float(), torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9])).double().tolist()
    cur = robustness_curve(model, x, y, eps=[0.0] + eps, norm=norm, certifier=affine_radius(norm), steps=30,
                           restarts=2)
    assert cur.clean == pytest.approx(0.9)
    assert cur.empirical[0] == pytest.approx(0.9) and cur.certified[0] == pytest.approx(0.9)
    assert (cur.empirical[1:] <= cur.empirical[:-1]).all() and (cur.certified[1:] <= cur.certified[:-1]).all()
    assert (cur.certified <= cur.empirical + 1e-12).all()               # lower bound <= upper bound
    # the radius is the exact margin, so the truth is the certified curve; PGD comes within a few inputs
    assert (cur.empirical - cur.certified).max() <= 3 / len(x)
    df = cur.to_frame()
    assert list(df.columns) == ["eps", "empirical", "certified"]
    # the plot draws exactly these numbers: the attack's curve, the certified one, the band between them
    import matplotlib.pyplot as plt

    ax = cur.plot()
    empirical, certified = ax.lines
    for line, values in ((empirical, cur.empirical), (certified, cur.certified)):
        np.testing.assert_allclose(line.get_xdata(), cur.eps.numpy())
        np.testing.assert_allclose(line.get_ydata(), values.numpy())
    (band,) = ax.collections
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() >= cur.certified.min().item() - 1e-12 and ys.max() <= cur.empirical.max().item() + 1e-12
    assert ax.get_xlabel() == f"budget eps ({norm})" and ax.get_ylabel() == "robust accuracy"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["PGD (attack)", "radius (certified)", "in between: true robust accuracy"]
    plt.close(ax.figure)


def test_minimal_attack_curve_matches_exact_margins():
    model, x, y = _problem()
    margin = affine_margin(model, x, "l2")
    correct = model(x).argmax(1) == y
    eps = [0.1, 0.3, 0.6, 1.0]
    cur = robustness_curve(model, x, y, eps=eps, norm="l2", attack="minimal")
    truth = torch.tensor([(correct & (margin > e)).double().mean().item() for e in eps], dtype=torch.float64)
    assert torch.allclose(cur.empirical.double(), truth, atol=1 / len(x) + 1e-9)
    cur2 = robustness_curve(model, x, y, eps=eps, norm="l2", attack=FMN(norm="l2", steps=50))
    assert (cur2.empirical >= cur.empirical - 2 / len(x)).all()


def test_custom_fixed_budget_attack_and_unsorted_budgets():
    model, x, y = _problem(20)
    cur = robustness_curve(model, x, y, eps=[0.5, 0.1, 0.3], attack=PGD(eps=1.0, norm="linf", steps=10))
    assert torch.equal(cur.eps, torch.tensor([0.1, 0.3, 0.5], dtype=cur.eps.dtype))
    assert cur.certified is None and cur.method == "pgd"


def test_certifier_by_name_uses_probe_certify():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    x = torch.randn(10, 4)
    cur = robustness_curve(net, x, None, eps=[0.01, 0.05, 0.2], certifier="ibp", steps=10)
    assert (cur.certified <= cur.empirical + 1e-12).all()


def test_bad_certifier_raises():
    model, x, y = _problem(6)
    with pytest.raises(probe.ProbeError, match="certifier"):
        robustness_curve(model, x, y, eps=[0.1], certifier=3)
    with pytest.raises(probe.ProbeError, match="radii"):
        robustness_curve(model, x, y, eps=[0.1], certifier=lambda m, x, l: torch.zeros(2))


def test_model_without_class_scores_raises_naming_the_shape():
    # a regression output (N,) is no classifier: the curve would count a "class" that cannot change
    model, x, _ = _problem(10)

    def scalar(z):
        return model(z)[:, 0]

    with pytest.raises(probe.ProbeError, match=r"\(N, C\).*shape \(10,\)"):
        robustness_curve(scalar, x, None, eps=[0.1, 0.5])
    with pytest.raises(probe.ProbeError, match=r"shape \(10, 3, 2\)"):
        robustness_curve(lambda z: torch.stack([model(z)] * 2, -1), x, None, eps=[0.1])
    # one binary logit (N, 1) is a classifier, read as [0, z] like everywhere else
    binary = robustness_curve(lambda z: model(z)[:, :1] - model(z)[:, 1:2], x, None, eps=[0.0, 100.0],
                              attack="minimal")
    assert binary.clean == 1.0 and binary.empirical[0] == 1.0 and binary.empirical[-1] == 0.0
