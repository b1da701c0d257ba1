"""Wasserstein-DRO training of linear models: the closed-form objective, minimised."""

import pytest
import torch

from probe.errors import ProbeError
from probe.train import wasserstein_dro
from probe.wasserstein import linear_worst_case_risk


@pytest.fixture(scope="module")
def cancer():
    """Ten standardised features of scikit-learn's breast-cancer set (569 tumours, binary labels)."""
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    return torch.tensor(X[:, :10], dtype=torch.float64), torch.tensor(y)


def _fit(x, y, rho, norm, loss="logistic", epochs=300, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(x.shape[1], 1).double()
    result = wasserstein_dro(model, [(x, y)], rho=rho, norm=norm, loss=loss, epochs=epochs, lr=0.05, seed=0)
    return model, result


def _objective(model, x, y, rho, norm, loss="logistic"):
    with torch.no_grad():
        return float(linear_worst_case_risk(model, x, y, rho, loss=loss, norm=norm))


def test_linf_transport_is_l1_regularised_logistic_regression(cancer):
    """DRO with L-inf transport = the Lasso-penalised logistic regression of scikit-learn (C = 1 / (rho N))."""
    from sklearn.linear_model import LogisticRegression

    x, y = cancer
    rho = 0.02
    ref = LogisticRegression(l1_ratio=1.0, C=1 / (rho * len(x)), solver="saga", tol=1e-10, max_iter=100_000)
    ref.fit(x.numpy(), y.numpy())
    sk = torch.nn.Linear(x.shape[1], 1).double()
    with torch.no_grad():
        sk.weight.copy_(torch.as_tensor(ref.coef_))
        sk.bias.copy_(torch.as_tensor(ref.intercept_))
    model, result = _fit(x, y, rho, "linf")
    ours, best = _objective(model, x, y, rho, "linf"), _objective(sk, x, y, rho, "linf")
    assert best <= ours + 1e-9 and ours <= best * 1.01                 # within 1 % of the optimum
    assert result.final_loss == pytest.approx(ours, rel=0.02)
    assert result.extras["penalty"] == pytest.approx(float(model.weight.detach().abs().sum()))
    assert result.method == "wasserstein_dro" and result.settings == {"rho": rho, "norm": "linf", "loss": "logistic"}
    assert 0.9 < result.history[-1].accuracy <= 1.0


def test_each_transport_norm_minimises_its_own_worst_case(cancer):
    x, y = cancer
    rho = 0.05
    models = {norm: _fit(x, y, rho, norm)[0] for norm in ("linf", "l1")}
    models["erm"] = _fit(x, y, 0.0, "l2")[0]
    for norm in ("linf", "l1"):
        own = _objective(models[norm], x, y, rho, norm)
        others = [_objective(m, x, y, rho, norm) for name, m in models.items() if name != norm]
        assert own < min(others)
    # the penalties' shapes: the L1 penalty (L-inf transport) sparsifies, the L-inf one (L1 transport) levels
    w_sparse, w_level = models["linf"].weight.detach()[0].abs(), models["l1"].weight.detach()[0].abs()
    assert (w_sparse < 0.05 * w_sparse.max()).sum() > (w_level < 0.05 * w_level.max()).sum()
    assert (w_level > 0.95 * w_level.max()).sum() >= 3


def test_hinge_and_squared_losses_train(cancer):
    x, y = cancer
    model, result = _fit(x, 2 * y - 1, 0.05, "l2", loss="hinge", epochs=100)
    assert result.history[-1].accuracy > 0.9
    start = _fit(x, 2 * y - 1, 0.05, "l2", loss="hinge", epochs=1)[0]
    assert _objective(model, x, 2 * y - 1, 0.05, "l2", "hinge") < _objective(start, x, 2 * y - 1, 0.05, "l2", "hinge")
    target = x[:, 0] * 2.0 - x[:, 1]
    model, result = _fit(x, target, 0.01, "linf", loss="squared", epochs=200)
    assert torch.isnan(torch.tensor(result.history[-1].accuracy))
    assert result.final_loss < 0.5 * float(target.var())


def test_dro_checks_the_model_and_labels(cancer):
    x, y = cancer
    with pytest.raises(ProbeError, match="non-linear"):
        wasserstein_dro(torch.nn.Sequential(torch.nn.Linear(10, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1)),
                        [(x.float(), y)], rho=0.1, loss="logistic")
    with pytest.raises(ProbeError, match="binary labels"):
        wasserstein_dro(torch.nn.Linear(10, 1).double(), [(x, y + 1)], rho=0.1, loss="logistic", epochs=1)
    with pytest.raises(ProbeError, match="rho"):
        wasserstein_dro(torch.nn.Linear(10, 1).double(), [(x, y)], rho=-0.1, loss="logistic")
    with pytest.raises(ProbeError, match="one output"):
        wasserstein_dro(torch.nn.Linear(10, 2).double(), [(x, y)], rho=0.1, loss="logistic")
