"""Wasserstein worst-case risk: the numerical inner supremum against the closed forms for linear models."""

import math

import pytest
import torch

import probe
from probe.errors import ProbeError
from probe.norms import dual
from probe.train.adversarial import maximize_loss
from probe.wasserstein import dual_norm_penalty, linear_worst_case_risk, pointwise_loss, worst_case_risk

Q = {"l1": 1.0, "l2": 2.0, "linf": float("inf")}


def _problem(n_out=1, loss="logistic", n=24, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    model = torch.nn.Linear(d, n_out).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(n_out, d, generator=g, dtype=torch.float64))
        model.bias.copy_(torch.randn(n_out, generator=g, dtype=torch.float64))
    if loss == "squared":
        y = torch.randn(n, generator=g, dtype=torch.float64)
    elif n_out == 1:
        y = torch.randint(0, 2, (n,), generator=g)
    else:
        y = torch.randint(0, n_out, (n,), generator=g)
    return model, x, y


@pytest.mark.parametrize("loss", ["logistic", "hinge"])
@pytest.mark.parametrize("norm", ["l1", "l2", "linf"])
def test_numerical_supremum_equals_closed_form(loss, norm):
    """Shafieezadeh-Abadeh et al. 2019: sup over the ball = mean loss + rho ||w||_q, to 1e-4."""
    model, x, y = _problem(loss=loss)
    rho = 0.1
    res = worst_case_risk(model, (x, y), rho, norm=norm, loss=loss)
    w = model.weight.detach()[0]
    with torch.no_grad():
        empirical = float(pointwise_loss(model(x), y, loss).mean())
        closed = float(linear_worst_case_risk(model, x, y, rho, loss=loss, norm=norm))
    assert closed == pytest.approx(empirical + rho * float(torch.linalg.vector_norm(w, ord=Q[dual(norm)])), abs=1e-12)
    assert res.empirical == pytest.approx(empirical, abs=1e-12)
    assert abs(res.value - closed) < 1e-4
    assert res.value <= closed + 1e-9                       # a feasible distribution never beats the supremum
    # the transport budget's multiplier is the penalty weight: the Lipschitz constant in the dual norm
    assert res.multiplier == pytest.approx(float(torch.linalg.vector_norm(w, ord=Q[dual(norm)])), rel=1e-3)
    # the worst distribution spends the budget and keeps each input's mass
    assert torch.allclose(res.weights.sum(1), torch.ones(len(x), dtype=res.weights.dtype), atol=1e-9)
    assert float((res.weights * res.radii).sum(1).mean()) == pytest.approx(rho, rel=1e-6)
    assert res.to_frame()["worst_case_loss"].mean() == pytest.approx(res.value, abs=1e-9)


@pytest.mark.parametrize("loss", ["cross_entropy", "hinge"])
def test_multiclass_closed_form_is_the_largest_class_gap(loss):
    model, x, y = _problem(n_out=3, loss=loss)
    res = worst_case_risk(model, (x, y), 0.2, norm="l2", loss=loss)
    W = model.weight.detach()
    gaps = torch.stack([(W - W[k]).norm(dim=1).max() for k in torch.unique(y)])
    assert float(dual_norm_penalty(model, y, loss=loss, norm="l2").detach()) == pytest.approx(float(gaps.max()))
    assert abs(res.value - float(linear_worst_case_risk(model, x, y, 0.2, loss=loss, norm="l2").detach())) < 1e-4


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_squared_loss_is_the_square_root_lasso(norm):
    """Blanchet, Kang & Murthy 2019: (sqrt(MSE) + sqrt(rho) ||w||_q)^2 under the order-2 cost."""
    model, x, y = _problem(loss="squared")
    rho = 0.05
    res = worst_case_risk(model, (x, y), rho, norm=norm, loss="squared")
    with torch.no_grad():
        mse = float(((model(x)[:, 0] - y) ** 2).mean())
    w = model.weight.detach()[0]
    expected = (math.sqrt(mse) + math.sqrt(rho) * float(torch.linalg.vector_norm(w, ord=Q[dual(norm)]))) ** 2
    assert res.power == 2
    closed = float(linear_worst_case_risk(model, x, y, rho, loss="squared", norm=norm).detach())
    assert closed == pytest.approx(expected)
    assert abs(res.value - expected) < 1e-4 * expected
    # unlike the Lipschitz losses, the worst case moves every input, by an amount proportional to its residual
    assert (res.to_frame()["transport"] > 0).all()


@pytest.mark.parametrize("norm", ["l1", "l2", "linf"])
def test_lq_regularisation_is_lp_robustness(norm):
    """For a linear model the worst Lp perturbation of size eps lowers every margin by eps ||w||_q, 1/p + 1/q = 1."""
    model, x, y = _problem()
    s = torch.where(y > 0, 1.0, -1.0).double()
    eps = 0.3
    with torch.no_grad():
        margin = s * model(x)[:, 0]
    xa = maximize_loss(model, x, lambda o: -s * o[:, 0], eps=eps, norm=norm, steps=40, step_size=2.5 * eps / 40,
                       space=probe.Box(), start=None)
    with torch.no_grad():
        drop = margin - s * model(xa)[:, 0]
    w = model.weight.detach()[0]
    expected = eps * float(torch.linalg.vector_norm(w, ord=Q[dual(norm)]))
    assert torch.allclose(drop, torch.full_like(drop, expected), atol=1e-9)
    # the other norms' duals are off: the check can fail
    for other in {"l1", "l2", "linf"} - {norm}:
        if Q[dual(other)] != Q[dual(norm)]:
            assert abs(eps * float(torch.linalg.vector_norm(w, ord=Q[dual(other)])) - expected) > 1e-3
    # and the Wasserstein worst case charges exactly that dual norm per unit of transport
    res = worst_case_risk(model, (x, y), eps, norm=norm, loss="hinge", refine=0)
    assert res.multiplier == pytest.approx(expected / eps, rel=1e-3)


def test_worst_case_in_a_box_is_bounded_and_restores_the_model():
    model, x, y = _problem()
    x = x.sigmoid()
    model.train()
    res = worst_case_risk(model, (x, y), 0.05, norm="l2", loss="logistic", space=probe.Box(0, 1), refine=1)
    assert model.training and all(p.requires_grad for p in model.parameters())
    closed = float(linear_worst_case_risk(model, x, y, 0.05, loss="logistic", norm="l2").detach())
    # mass cannot go farther than the box's diameter, so the worst case lies below the unbounded one
    assert res.empirical < res.value < closed
    assert float(res.radii.max()) <= math.sqrt(x.shape[1]) + 1e-9


def test_batch_size_does_not_change_the_result():
    model, x, y = _problem(n=12)
    a = worst_case_risk(model, (x, y), 0.1, loss="logistic", refine=0, batch_size=5)
    b = worst_case_risk(model, (x, y), 0.1, loss="logistic", refine=0, batch_size=None)
    assert a.value == pytest.approx(b.value, abs=1e-12)


def test_bad_inputs_name_the_item():
    model, x, y = _problem()
    with pytest.raises(ProbeError, match="rho"):
        worst_case_risk(model, (x, y), -1.0, loss="logistic")
    with pytest.raises(ProbeError, match="unknown loss"):
        worst_case_risk(model, (x, y), 0.1, loss="absolute")
    with pytest.raises(ProbeError, match="one output"):
        worst_case_risk(torch.nn.Linear(5, 3).double(), (x, y), 0.1, loss="logistic")
    with pytest.raises(ProbeError, match="non-linear"):
        linear_worst_case_risk(torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1)),
                               x.float(), y, 0.1, loss="logistic")
    with pytest.raises(ProbeError, match="pair"):
        worst_case_risk(model, x, 0.1)


def test_worst_case_risk_on_the_models_device(device):
    model, x, y = _problem(n=10)
    cpu = worst_case_risk(model, (x, y), 0.1, loss="hinge", refine=0)
    res = worst_case_risk(model.to(device), (x.to(device), y.to(device)), 0.1, loss="hinge", refine=0)
    assert res.radii.device.type == device.type and res.weights.device.type == device.type
    assert res.value == pytest.approx(cpu.value, abs=1e-9)
    assert next(model.parameters()).device.type == device.type
