"""LIME surrogate: exact on affine models, honest fit quality elsewhere."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import probe
from probe.models import wrap
from probe.surrogate import lime
from probe.testing import AffineClassifier


def test_mask_mode_recovers_gradient_times_input_on_affine_models(device):
    model = AffineClassifier.random(n_features=8, n_classes=3, seed=0).to(device)
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(1), device="cpu").to(device)
    att = lime(model, x, n_samples=300, alpha=1e-8, baseline=0.5)
    t = model(x).argmax(1)
    w = model.linear.weight[t]
    assert torch.allclose(att.values, w * (x - 0.5), atol=1e-4)
    assert torch.equal(att.extras["target"].to(device), t)
    assert (att.extras["r2"] > 1 - 1e-9).all() and att.values.device.type == device.type
    assert np.allclose(att.extras["local_prediction"], att.extras["prediction"], atol=1e-4)


def test_gaussian_mode_recovers_the_slope_of_a_wrapped_estimator():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clf = LogisticRegression(max_iter=2000).fit(X, y)
    # decision_function is affine: the local slope is coef_ exactly, with any scale
    att = lime(wrap(clf, output="decision_function"), X[:3], mode="gaussian", scale=X.std(0) * 0.3,
               n_samples=200, alpha=1e-8, target=0)
    assert np.allclose(att.values.numpy(), np.tile(clf.coef_, (3, 1)), atol=1e-5)
    assert (att.extras["r2"] > 1 - 1e-9).all()
    # the probability is not linear: still close to the logistic slope p(1-p) w, with R^2 below 1
    box = wrap(clf)
    att = lime(box, X[:3], mode="gaussian", scale=0.05, n_samples=400, alpha=1e-6, target=1)
    p = clf.predict_proba(X[:3])[:, 1:]
    slope = p * (1 - p) * clf.coef_
    v = att.values.numpy()
    cos = (v * slope).sum(1) / np.linalg.norm(v, axis=1) / np.linalg.norm(slope, axis=1)
    assert (cos > 0.95).all() and (att.extras["r2"] < 1).all()
    assert box.queries == 3 * 400 + 3 and (att.extras["queries"] == 400).all()


def test_fit_quality_drops_on_a_forest_and_batching_does_not_matter():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    forest = RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0).fit(X, y)
    a = lime(forest, X[:4], n_samples=300, batch_size=64)
    b = lime(forest, X[:4], n_samples=300, batch_size=None)
    assert torch.equal(a.values, b.values)
    assert a.values.shape == (4, 30) and a.method == "lime"
    assert (a.extras["r2"] < 0.99).all() and (a.extras["r2"] > -1).all()


def test_groups_remove_features_together():
    # a one-hot sequence model: positions are the features, their four rows go together
    w = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))

    def score(a):
        return (torch.as_tensor(a) * w).sum((1, 2), keepdim=False)[:, None].numpy()

    x = torch.nn.functional.one_hot(torch.tensor([[0, 1, 2, 3, 0, 1]]), 4).transpose(1, 2).float()
    groups = torch.arange(6).expand(4, 6)
    att = lime(wrap(score), x, groups=groups, n_samples=200, alpha=1e-8)
    expected = (w * x[0]).sum(0)  # the contribution of each position's letter
    assert torch.allclose(att.values[0], expected.expand(4, 6), atol=1e-4)


def test_bad_arguments_raise_probe_error():
    model = AffineClassifier.random(n_features=4, n_classes=2)
    x = torch.randn(2, 4)
    with pytest.raises(probe.ProbeError, match="mode"):
        lime(model, x, mode="shap")
    with pytest.raises(probe.ProbeError, match="n_samples"):
        lime(model, x, n_samples=1)
    with pytest.raises(probe.ProbeError, match="kernel_width"):
        lime(model, x, kernel_width=0)
    with pytest.raises(probe.ProbeError, match=r"target\[1\] = 5"):
        lime(model, x, target=[0, 5])
    with pytest.raises(probe.ProbeError, match="groups has shape"):
        lime(model, x, groups=torch.arange(3))
    with pytest.raises(probe.ProbeError, match="no id missing"):
        lime(model, x, groups=torch.tensor([0, 0, 2, 2]))
    with pytest.raises(probe.ProbeError, match="scale must be positive"):
        lime(model, x, mode="gaussian", scale=0.0)
    with pytest.raises(probe.ProbeError, match="not callable"):
        lime(object(), x)
