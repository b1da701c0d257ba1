"""Estimators and wrapped models through the one-liners: minimal_perturbation and sensitivity."""

import importlib

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import probe
from probe.attacks.hopskipjump import HopSkipJump
from probe.attacks.square import Square
from probe.microscope import minimal_perturbation
from probe.models import as_model, has_gradient, wrap

sens = importlib.import_module("probe.sensitivity")  # the module: probe.sensitivity is the function


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clf = LogisticRegression(max_iter=2000).fit(X, y)
    w = torch.as_tensor(clf.coef_[0])
    closed = (torch.as_tensor(X[:8]) @ w + float(clf.intercept_[0])).abs() / w.norm()
    return X, clf, closed


def test_estimators_are_accepted_as_they_are(cancer):
    X, clf, closed = cancer
    assert not has_gradient(clf) and as_model(clf) is as_model(clf)
    res = HopSkipJump(max_queries=2000)(clf, X[:8])
    assert res.success.all() and ((res.distance - closed).abs() <= 0.05 * closed).all()
    sq = Square(eps=float(closed.max()) * 1.5, norm="l2", max_queries=300)(clf, X[:8])
    assert sq.success.all()
    with pytest.raises(probe.ProbeError, match="needs gradients"):
        probe.attacks.PGD(eps=0.1)(clf, X[:2])


def test_minimal_perturbation_auto_picks_hopskipjump_for_black_boxes(cancer):
    X, clf, closed = cancer
    res = minimal_perturbation(wrap(clf), X[:8], norm="l2", refine=False, max_queries=2000)
    assert res.method == "hopskipjump" and (res.queries <= 2000).all()
    assert ((res.distance - closed).abs() <= 0.05 * closed).all()
    # same answer from the raw estimator
    raw = minimal_perturbation(clf, X[:8], norm="l2", refine=False, max_queries=2000)
    assert torch.allclose(raw.distance, res.distance)


def test_occlusion_runs_on_black_boxes_and_matches_the_linear_closed_form(cancer):
    X, clf, _ = cancer
    att = sens.sensitivity(wrap(clf, output="decision_function"), X[:3], method="occlusion", target=0)
    # removing feature j (setting it to 0) drops the decision value by w_j x_j
    np.testing.assert_allclose(att.values.numpy(), clf.coef_ * X[:3], rtol=1e-5, atol=1e-8)


def test_surrogate_registers_as_a_forward_only_sensitivity_method(cancer):
    X, clf, _ = cancer
    # registered by probe itself, as a forward-only method
    assert "surrogate" in sens.METHODS and "surrogate" in sens._FORWARD_ONLY
    att = sens.sensitivity(wrap(clf, output="decision_function"), X[:3], method="surrogate", target=0,
                           n_samples=200, alpha=1e-8)
    np.testing.assert_allclose(att.values.numpy(), clf.coef_ * X[:3], rtol=1e-4, atol=1e-6)
    assert (att.extras["r2"] > 1 - 1e-9).all()
    # explaining the criterion's margin instead of an output column
    margin = sens.sensitivity(clf, X[:3], method="surrogate", criterion=probe.Misclassify(), n_samples=300)
    assert margin.values.shape == (3, 30) and margin.method == "lime"
