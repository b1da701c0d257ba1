"""Square attack: success against white-box PGD, budgets, shapes, invariants."""

import pytest
import torch

import probe
from probe.attacks.pgd import PGD
from probe.attacks.square import Square, counter_uniform, p_schedule
from probe.testing import AffineClassifier, affine_margin, probability_box


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_success_at_a_budget_matches_white_box_pgd(norm, device):
    model = AffineClassifier.random(n_features=20, n_classes=3, seed=1)
    x = torch.randn(100, 20, generator=torch.Generator().manual_seed(0))
    margin = affine_margin(model, x, norm)
    eps = float(margin.quantile(0.6))
    black = Square(eps=eps, norm=norm, max_queries=600)(probability_box(model), x.to(device))
    white = PGD(eps=eps, norm=norm, steps=50, restarts=3)(model.to(device), x.to(device))
    exact = float((margin < eps).float().mean())
    assert abs(black.success_rate - white.success_rate) <= 0.04
    assert black.success_rate <= exact + 1e-9   # sound: nothing beyond the exact margin flips
    assert (black.distance[black.success] <= eps * (1 + 1e-5)).all()
    assert (black.queries <= 600).all() and (black.queries[~black.success] == 600).all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("shape", [(3, 12, 12), (4, 30), (15,)])
def test_images_sequences_and_tables_stay_in_the_ball_and_box(norm, shape):
    d = int(torch.tensor(shape).prod())
    model = AffineClassifier.random(n_features=d, n_classes=4, seed=3)
    x = torch.rand((6,) + shape, generator=torch.Generator().manual_seed(2))
    margin = affine_margin(model, x, norm)
    eps = float(margin.max()) * 1.5
    res = Square(eps=eps, norm=norm, max_queries=150)(model, x, space=probe.Box(0.0, 1.0))
    assert res.x_adv.shape == x.shape
    assert (res.x_adv >= 0).all() and (res.x_adv <= 1).all()
    size = res.delta.flatten(1).abs().amax(1) if norm == "linf" else res.delta.flatten(1).norm(dim=1)
    assert (size <= eps * (1 + 1e-5)).all()
    assert res.success_rate >= 0.5 and (res.queries <= 150).all()


def test_query_budget_counts_every_evaluation():
    model = AffineClassifier.random(n_features=10, n_classes=3, seed=4)
    x = torch.randn(12, 10, generator=torch.Generator().manual_seed(5))
    for budget in (1, 2, 37):
        box = probability_box(model)
        res = Square(eps=0.05, norm="linf", max_queries=budget)(box, x)
        assert (res.queries <= budget).all() and (res.queries >= 1).all()
        assert box.queries == int(res.queries.sum()) + 2 * len(x)


def test_results_do_not_depend_on_batch_size_and_inputs_stay_put():
    model = AffineClassifier.random(n_features=3 * 8 * 8, n_classes=3, seed=6)
    x = torch.rand(7, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    x_copy = x.clone()
    for norm in ("linf", "l2"):
        a = Square(eps=0.5 if norm == "l2" else 0.02, norm=norm, max_queries=60)(model, x, batch_size=3)
        b = Square(eps=0.5 if norm == "l2" else 0.02, norm=norm, max_queries=60)(model, x, batch_size=None)
        assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)
    assert torch.equal(x, x_copy)


def test_counter_generator_is_uniform_and_deterministic():
    keys = torch.arange(2000)
    u = counter_uniform(keys, 7, 50)
    assert u.min() >= 0 and u.max() < 1
    assert abs(float(u.mean()) - 0.5) < 0.005 and abs(float(u.var()) - 1 / 12) < 0.002
    # neighbouring keys and counters give uncorrelated streams
    assert abs(float(torch.corrcoef(torch.stack([u[:, 0], u[:, 1]]))[0, 1])) < 0.05
    assert abs(float(torch.corrcoef(torch.stack([u[:, 0], counter_uniform(keys, 8, 1)[:, 0]]))[0, 1])) < 0.05
    assert torch.equal(counter_uniform(keys[5:9], 7, 50), u[5:9])


def test_p_schedule_halves_on_the_paper_breakpoints():
    assert p_schedule(0.8, 0, 10000) == 0.8
    assert p_schedule(0.8, 11, 10000) == 0.4
    assert p_schedule(0.8, 9000, 10000) == 0.8 / 512
    assert p_schedule(0.8, 2, 1000) == 0.4   # rescaled to a 1000-query run


def test_bad_settings_raise_probe_error():
    model = AffineClassifier.random(n_features=4, n_classes=2)
    x = torch.randn(2, 4)
    with pytest.raises(probe.ProbeError, match="L-inf and L2"):
        Square(eps=0.1, norm="l1")(model, x)
    with pytest.raises(probe.ProbeError, match="p_init"):
        Square(eps=0.1, p_init=1.5)(model, x)
    with pytest.raises(probe.ProbeError, match="max_queries"):
        Square(eps=0.1, max_queries=0)(model, x)
    with pytest.raises(probe.ProbeError, match="eps"):
        Square(eps=-1.0)(model, x)
    with pytest.raises(probe.ProbeError, match="continuous"):
        Square(eps=0.1)(model, torch.eye(4)[None].expand(2, 4, 4), space=probe.OneHot())
