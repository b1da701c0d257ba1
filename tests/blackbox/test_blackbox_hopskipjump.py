"""HopSkipJump against closed forms and the white-box path; query budgets."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import probe
from probe.attacks.hopskipjump import HopSkipJump
from probe.attacks.pgd import PGD
from probe.models import wrap
from probe.testing import AffineClassifier, affine_margin, probability_box


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_minimal_distance_within_5_percent_of_closed_form(norm, device):
    model = AffineClassifier.random(n_features=20, n_classes=2, seed=4)
    x = torch.randn(24, 20, generator=torch.Generator().manual_seed(1))
    margin = affine_margin(model, x, norm).to(device)
    budget = 2500 if norm == "l2" else 4000   # the sign step of L-inf converges more slowly
    res = HopSkipJump(norm=norm, max_queries=budget)(probability_box(model), x.to(device))
    assert res.success.all() and res.x_adv.device.type == device.type
    # sound (no point closer than the exact margin flips an affine model) and within 5%
    assert (res.distance >= margin * (1 - 1e-4)).all()
    assert (res.distance <= margin * 1.05).all(), (res.distance / margin).max()
    assert res.norm == norm and (res.queries <= budget).all()


def test_multiclass_median_close_to_closed_form():
    # several class boundaries: a walk along one of them may stop at a local optimum, but most find the nearest
    model = AffineClassifier.random(n_features=10, n_classes=3, seed=1)
    x = torch.randn(30, 10, generator=torch.Generator().manual_seed(0))
    margin = affine_margin(model, x, "l2")
    res = HopSkipJump(max_queries=2000)(probability_box(model), x)
    ratio = res.distance / margin
    assert res.success.all() and (ratio >= 1 - 1e-4).all()
    assert ratio.median() <= 1.03 and (ratio <= 1.05).float().mean() >= 0.8


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    return X, y, LogisticRegression(max_iter=2000).fit(X, y)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_logistic_regression_black_box_equals_white_box(cancer, norm):
    X, y, clf = cancer
    x = torch.as_tensor(X[:16], dtype=torch.float32)
    # the same weights as a torch.nn.Linear (one logit; probe reads it as the binary logits [0, z])
    lin = torch.nn.Linear(X.shape[1], 1)
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(clf.coef_))
        lin.bias.copy_(torch.as_tensor(clf.intercept_))
    w = torch.as_tensor(clf.coef_[0], dtype=torch.float32)
    closed = (x @ w + float(clf.intercept_[0])).abs() / w.norm(p=2 if norm == "l2" else 1)
    black = HopSkipJump(norm=norm, max_queries=3000 if norm == "l2" else 5000)(wrap(clf), x)
    assert black.success.all()
    assert ((black.distance - closed).abs() <= 0.05 * closed).all(), (black.distance / closed)
    # the white-box path: PGD just above the closed-form margin flips everything, just below nothing
    # (no random start: on an affine model the first gradient step already points at the boundary)
    assert PGD(eps=closed * 1.02, norm=norm, steps=20, random_start=False)(lin, x).success.all()
    assert not PGD(eps=closed * 0.98, norm=norm, steps=20, random_start=False)(lin, x).success.any()
    # and each black-box point flips the estimator itself
    flipped = clf.predict(black.x_adv.double().numpy()) != clf.predict(X[:16])
    assert flipped.all()


@pytest.mark.parametrize("budget", [1, 7, 60, 333])
def test_query_budget_is_never_exceeded_and_counted_exactly(budget):
    model = AffineClassifier.random(n_features=12, n_classes=3, seed=2)
    x = torch.randn(10, 12, generator=torch.Generator().manual_seed(3))
    box = probability_box(model)
    res = HopSkipJump(max_queries=budget, init_evals=20)(box, x)
    assert (res.queries <= budget).all() and (res.queries >= 1).all()
    # every evaluation is reported: the wrapped model saw exactly these, plus the template's clean and final pass
    assert box.queries == int(res.queries.sum()) + 2 * len(x)
    assert torch.isfinite(res.distance[res.success]).all() and torch.isinf(res.distance[~res.success]).all()


def test_results_do_not_depend_on_batch_size_and_inputs_stay_put():
    model = AffineClassifier.random(n_features=8, n_classes=3, seed=5)
    x = torch.randn(9, 8, generator=torch.Generator().manual_seed(4))
    x_copy = x.clone()
    a = HopSkipJump(max_queries=400)(probability_box(model), x, batch_size=4)
    b = HopSkipJump(max_queries=400)(probability_box(model), x, batch_size=None)
    assert torch.equal(x, x_copy)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)


def test_box_is_respected_and_start_is_uniform_in_the_box():
    model = AffineClassifier.random(n_features=6, n_classes=2, seed=7)
    x = torch.rand(12, 6, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([True, False, False, False, False, False])
    space = probe.Box(0.0, 1.0, mask=mask)
    res = HopSkipJump(max_queries=500)(probability_box(model), x, space=space, already_satisfied="keep")
    assert (res.x_adv >= 0).all() and (res.x_adv <= 1).all() and (res.delta[:, 0] == 0).all()


def test_no_adversarial_start_means_failure_within_budget():
    constant = wrap(lambda a: np.tile([[0.9, 0.1]], (len(a), 1)))
    res = HopSkipJump(max_queries=50, init_trials=30)(constant, torch.randn(3, 4))
    assert not res.success.any() and (res.queries == 30).all()
    res = HopSkipJump(max_queries=10, init_trials=30)(constant, torch.randn(3, 4))
    assert (res.queries == 10).all()


def test_random_forest_counterfactuals_flip_the_forest(cancer):
    X, y, _ = cancer
    forest = RandomForestClassifier(n_estimators=25, max_depth=5, random_state=0).fit(X, y)
    x = torch.as_tensor(X[:6])
    res = HopSkipJump(max_queries=800)(wrap(forest), x)
    assert res.success.all() and (res.queries <= 800).all()
    assert (forest.predict(res.x_adv.numpy()) != forest.predict(X[:6])).all()
    # more queries, closer counterfactuals (the forest is piecewise constant: no closed form)
    longer = HopSkipJump(max_queries=2000)(wrap(forest), x)
    assert longer.distance.median() < 0.8 * res.distance.median()
    # started from the nearest training example the forest puts in another class, never farther than it
    pred = forest.predict(X)
    nearest = np.stack([X[pred != pred[i]][np.linalg.norm(X[pred != pred[i]] - X[i], axis=1).argmin()]
                        for i in range(6)])
    started = HopSkipJump(max_queries=300, starting_points=torch.as_tensor(nearest))(wrap(forest), x)
    assert started.success.all()
    assert (started.distance <= torch.as_tensor(np.linalg.norm(nearest - X[:6], axis=1)) + 1e-9).all()


def test_bad_settings_raise_probe_error():
    model = probability_box(AffineClassifier.random(n_features=4, n_classes=2))
    with pytest.raises(probe.ProbeError, match="L2 and L-inf"):
        HopSkipJump(norm="l1")(model, torch.randn(2, 4))
    with pytest.raises(probe.ProbeError, match="max_queries"):
        HopSkipJump(max_queries=0)(model, torch.randn(2, 4))
    with pytest.raises(probe.ProbeError, match="gamma"):
        HopSkipJump(gamma=-1)(model, torch.randn(2, 4))
    with pytest.raises(probe.ProbeError, match="starting_points has shape"):
        HopSkipJump(starting_points=torch.zeros(3, 4))(model, torch.randn(2, 4))
