"""probe.models.wrap: estimators and NumPy functions as probe models."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

import probe
from probe.attacks.pgd import PGD
from probe.models import BlackBox, as_model, forward, has_gradient, wrap


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    return X, y, LogisticRegression(max_iter=500).fit(X, y)


def test_outputs_match_the_estimator_methods(iris, device):
    X, y, clf = iris
    x = torch.as_tensor(X[:17], dtype=torch.float32, device=device)
    for output, method in [(None, "predict_proba"), ("proba", "predict_proba"),
                           ("decision_function", "decision_function"), ("log_proba", "predict_log_proba")]:
        m = wrap(clf, output=output)
        out = m(x)
        assert m.output == method and out.device.type == device.type and out.dtype == torch.float64
        expected = getattr(clf, method)(X[:17].astype(np.float32).astype(np.float64))
        np.testing.assert_allclose(out.cpu().numpy(), expected, rtol=1e-5, atol=1e-6)
    labels = wrap(clf, output="predict")(x).cpu().numpy()
    assert labels.shape == (17, 3) and (labels.sum(1) == 1).all()
    np.testing.assert_array_equal(labels.argmax(1), clf.predict(X[:17].astype(np.float32).astype(np.float64)))


def test_predict_of_string_labels_is_one_hot_over_classes():
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = LogisticRegression(max_iter=500).fit(X, names)
    m = wrap(clf, output="predict")
    out = m(torch.as_tensor(X[::10]))
    assert out.shape == (15, 3)
    np.testing.assert_array_equal(clf.predict(X[::10]), m.classes[out.argmax(1).numpy()])


def test_batching_counting_and_no_mutation(iris):
    X, _, clf = iris
    x = torch.as_tensor(X, dtype=torch.float64)
    x_copy = x.clone()
    a, b = wrap(clf, batch_size=7), wrap(clf, batch_size=None)
    assert torch.equal(a(x), b(x))
    assert torch.equal(x, x_copy)
    assert a.queries == len(X) and a.calls == -(-len(X) // 7) and b.calls == 1
    a.reset_queries()
    assert a.queries == 0 and a.calls == 0


def test_numpy_and_torch_callables():
    w = np.array([[1.0, -2.0, 0.5]])

    def scores(a):
        assert isinstance(a, np.ndarray) and a.shape[1:] == (3,)
        return a @ w.T

    m = wrap(scores)
    x = torch.randn(5, 3)
    out = m(x)
    assert isinstance(out, torch.Tensor) and out.shape == (5, 1) and not has_gradient(m)
    assert out.dtype == torch.float64   # the function's float64 precision is kept
    assert wrap(lambda a: a[:, :1].astype(np.float32))(x.double()).dtype == torch.float64
    assert wrap(lambda a: a[:, :1].astype(np.float16))(x).dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), x.numpy() @ w.T, rtol=1e-6)
    # a NumPy function of images: inputs keep their shape unless flatten=True
    img = wrap(lambda a: a.reshape(len(a), -1).sum(1, keepdims=True))
    assert img(torch.ones(2, 3, 4, 4)).flatten().tolist() == [48.0, 48.0]
    lin = torch.nn.Linear(3, 2)
    tm = wrap(lin, batch_size=2)
    assert has_gradient(tm) and torch.allclose(tm(x), lin(x))
    assert not has_gradient(wrap(lin, differentiable=False))
    assert as_model(lin) is lin and isinstance(as_model(LinearRegression().fit(x.numpy(), x[:, 0].numpy())), BlackBox)


def test_regressor_predict_and_threshold_criterion():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4))
    reg = LinearRegression().fit(X, X @ np.array([1.0, 2.0, -1.0, 0.0]) + 3)
    m = wrap(reg)
    assert m.output == "predict"
    out = forward(m, torch.as_tensor(X[:4]))
    assert out.shape == (4, 1)
    np.testing.assert_allclose(out[:, 0].numpy(), reg.predict(X[:4]))


def test_wrapped_models_refuse_gradient_attacks(iris):
    X, _, clf = iris
    with pytest.raises(probe.ProbeError, match="needs gradients"):
        PGD(eps=0.1)(wrap(clf), torch.as_tensor(X[:3]))


def test_wrapping_errors_name_the_problem(iris):
    X, _, clf = iris
    with pytest.raises(probe.ProbeError, match="not callable"):
        wrap(42)
    with pytest.raises(probe.ProbeError, match="not callable"):
        as_model("model.pkl")
    with pytest.raises(probe.ProbeError, match="not fitted"):
        wrap(LogisticRegression())
    with pytest.raises(probe.ProbeError, match="LinearRegression has no predict_proba"):
        wrap(LinearRegression().fit(X, X[:, 0]), output="predict_proba")
    with pytest.raises(probe.ProbeError, match="SVC has no predict_proba"):
        wrap(SVC().fit(X, X[:, 0] > 0), output="predict_proba")
    with pytest.raises(probe.ProbeError, match="output='probs'"):
        wrap(clf, output="probs")
    with pytest.raises(probe.ProbeError, match="batch_size"):
        wrap(clf, batch_size=0)
    with pytest.raises(probe.ProbeError, match="kind"):
        wrap(clf, kind="jax")
    with pytest.raises(probe.ProbeError, match="estimator method"):
        wrap(lambda a: a, output="predict")
    with pytest.raises(probe.ProbeError, match="no gradients"):
        wrap(lambda a: a, differentiable=True)
    # failures of the wrapped thing at call time
    with pytest.raises(probe.ProbeError, match=r"LogisticRegression.predict_proba on inputs of shape \(2, 3\)"):
        wrap(clf)(torch.zeros(2, 3))
    with pytest.raises(probe.ProbeError, match="batch dimension"):
        wrap(lambda a: a.sum(keepdims=True))(torch.zeros(4, 3))
    with pytest.raises(probe.ProbeError, match="not an array|dtype"):
        wrap(lambda a: np.array(["x"] * len(a)))(torch.zeros(2, 3))
    with pytest.raises(probe.ProbeError, match="non-finite output for input 1"):
        forward(wrap(lambda a: np.where(a[:, :1] > 0, 1.0, np.nan)), torch.tensor([[1.0], [-1.0]]))
