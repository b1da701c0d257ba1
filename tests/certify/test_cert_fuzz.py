"""Soundness fuzzing: random small networks, norms and budgets against ground truth.

The cases and the checks are those of ``benchmarks/soundness.py`` (which runs many more); here hypothesis
draws the cases from its own ``Random``, derandomized and without a database, so every run sees the same
examples. Each property is a separate test; a failing example prints its case (``Case.describe()``), which
``Case.from_description`` and ``benchmarks.soundness.build`` turn back into the same model and inputs.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import beta
from scipy.stats import norm as normal
from torch import nn

from benchmarks import soundness as S
from probe.certify import smoothing_radius

RNG = st.randoms(use_true_random=False)


def fuzz(n: int):
    """Deterministic hypothesis settings: fixed examples, no database, no deadline."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None, print_blob=False)


def _assert_none(violations, case):
    assert not violations, f"{case.describe()}\n" + "\n".join(f"{v.what}: excess {v.excess:.3e} {v.detail}"
                                                              for v in violations)


def test_a_described_case_rebuilds_the_same_model_and_inputs():
    import random

    case = S.draw_network(random.Random("rebuild"))
    again = S.Case.from_description(case.describe())
    assert again == case
    (m1, x1), (m2, x2) = S.build(case), S.build(again)
    assert torch.equal(x1, x2)
    with torch.no_grad():
        assert torch.equal(m1(x1), m2(x2))


# ------------------------------------------------------------------------------------------------------------------
# 1. points of the ball lie inside CROWN's (and alpha-CROWN's) bounds, CROWN's inside IBP's


@fuzz(30)
@given(rng=RNG)
def test_ball_points_lie_inside_crown_bounds_inside_ibp_bounds(rng):
    case = S.draw_network(rng)
    _assert_none(S.check_bounds(case), case)


@fuzz(8)
@given(rng=RNG, norm=st.sampled_from(S.NORMS))
def test_relu_and_pooling_nets_in_every_norm(rng, norm):
    """ReLU-family nets with max-pooling and residual blocks, where CROWN's case splits live."""
    case = S.draw_network(rng, acts=("relu", "leaky_relu"))
    case = S.Case(case.kind, case.input_shape, case.layers, norm, max(case.eps, 0.05), case.seed)
    _assert_none(S.check_bounds(case), case)


def test_projected_ascent_reaches_the_exact_extremes_of_a_linear_map():
    """The attacked points are real extremes: on w.x + b over a ball they reach b + w.x0 +- eps ||w||_q."""
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(5, 2).double()
    x = torch.randn(3, 5, generator=g, dtype=torch.float64)
    for norm, q in (("linf", 1), ("l2", 2), ("l1", math.inf)):
        y = S.ball_points(lin, x, 0.3, norm, g, steps=30)
        with torch.no_grad():
            r = 0.3 * lin.weight.norm(p=q, dim=1)
            z = lin(x)
        torch.testing.assert_close(y.amax(0), z + r, rtol=0, atol=1e-9)
        torch.testing.assert_close(y.amin(0), z - r, rtol=0, atol=1e-9)


def test_check_bounds_catches_bounds_that_are_too_tight(monkeypatch):
    """The property can fail: CROWN's bounds shrunk by a tenth of their width are reported."""
    real = S.bound_outputs

    def shrunk(model, x, eps, **kw):
        c = real(model, x, eps, **kw)
        if kw.get("method") != "crown":
            return c
        w = (c.upper - c.lower) / 10
        return type(c)(lower=c.lower + w, upper=c.upper - w, radius=None, method="crown", confidence=None)

    monkeypatch.setattr(S, "bound_outputs", shrunk)
    case = S.Case("mlp", (3,), (("linear", 8, ("gaussian", 1.0)), ("act", "relu", 0.0),
                                ("linear", 2, ("gaussian", 1.0))), "linf", 0.2, 1)
    found = {v.what for v in S.check_bounds(case)}
    assert {"point below crown lower", "point above crown upper"} <= found


# ------------------------------------------------------------------------------------------------------------------
# 2. certified radius <= exact MILP margin <= attack distance


@fuzz(8)
@given(rng=RNG)
def test_certified_radius_below_exact_margin_below_attack_distance(rng):
    case = S.draw_relu_mlp(rng)
    _assert_none(S.check_radius(case), case)


@fuzz(6)
@given(rng=RNG)
def test_certified_radius_below_attack_distance_on_any_net_and_norm(rng):
    case = S.draw_network(rng)
    _assert_none(S.check_radius_any(case), case)


# ------------------------------------------------------------------------------------------------------------------
# 3. Lipschitz upper bound >= the exact constant (one layer) and >= the empirical lower bound (any net)


@fuzz(40)
@given(rng=RNG)
def test_lipschitz_bound_of_one_layer_is_at_least_its_exact_norm(rng):
    case = S.draw_layer(rng)
    _assert_none(S.check_lipschitz_layer(case), case)


@pytest.mark.parametrize("spectrum", [("clustered", 1.0, 1e-4), ("equal", 1.0, 3)])
def test_lipschitz_bound_of_a_layer_with_clustered_top_singular_values(spectrum):
    """160 x 160, singular values 1, 1 - 1e-4, 1 - 2e-4, ... (or three equal ones): power iteration stalls below."""
    case = S.Case("linear", (160,), (("linear", 160, spectrum),), "l2", 0.0, 7, 1)
    layer, _ = S.build(case)
    assert float(torch.linalg.svdvals(layer.weight.detach())[0]) == pytest.approx(1.0, abs=1e-12)
    _assert_none(S.check_lipschitz_layer(case), case)


def test_exact_norms_of_a_known_matrix():
    M = torch.tensor([[3.0, -4.0], [1.0, 2.0]], dtype=torch.float64)
    assert S.exact_lipschitz(M, "linf") == 7.0
    assert S.exact_lipschitz(M, "l1") == 6.0
    assert S.exact_lipschitz(M, "l2") == pytest.approx(float(torch.linalg.matrix_norm(M, 2)), rel=1e-15)
    conv = nn.Conv1d(1, 1, 2, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[1.0, -2.0]]]))
    torch.testing.assert_close(S.dense_matrix(conv, (1, 3)), torch.tensor([[1.0, -2.0, 0.0], [0.0, 1.0, -2.0]],
                                                                          dtype=torch.float64))


@fuzz(25)
@given(rng=RNG, norm=st.sampled_from(S.NORMS))
def test_lipschitz_bound_above_empirical_lower_bound(rng, norm):
    case = S.draw_network(rng)
    case = S.Case(case.kind, case.input_shape, case.layers, norm, case.eps, case.seed)
    _assert_none(S.check_lipschitz_net(case), case)


# ------------------------------------------------------------------------------------------------------------------
# 4. randomized-smoothing radii are Cohen et al.'s formula


@fuzz(300)
@given(n=st.integers(1, 10**6), frac=st.floats(0.0, 1.0), alpha=st.floats(1e-9, 0.5),
       sigma=st.floats(1e-3, 10.0))
def test_smoothing_radius_is_cohens_formula(n, frac, alpha, sigma):
    n_a = round(frac * n)
    p = beta.ppf(alpha, n_a, n - n_a + 1) if n_a > 0 else 0.0
    want = sigma * normal.ppf(p) if p > 0.5 else 0.0
    got = smoothing_radius(n_a, n, alpha=alpha, sigma=sigma)
    assert got == pytest.approx(want, rel=1e-12, abs=0.0)
    assert got >= 0.0


@fuzz(100)
@given(rng=RNG)
def test_smoothing_radius_on_drawn_counts(rng):
    case = S.draw_smoothing(rng)
    _assert_none(S.check_smoothing(case), case)


def test_smoothing_radius_at_the_edges():
    # all n samples on the top class: p_lower = alpha ** (1 / n)
    assert smoothing_radius(100, 100, alpha=0.001, sigma=0.5) == pytest.approx(
        0.5 * normal.ppf(0.001 ** (1 / 100)), rel=1e-12)
    assert smoothing_radius(0, 100, alpha=0.001, sigma=0.5) == 0.0
    # p_lower just below 1/2 abstains; Cohen et al.'s README example
    assert smoothing_radius(50, 100, alpha=0.001, sigma=0.5) == 0.0
    assert round(smoothing_radius(99000, 100000, alpha=0.001, sigma=0.25), 4) == 0.5725


@fuzz(15)
@given(rng=RNG)
def test_smoothing_certify_reports_the_radius_of_its_counts(rng):
    case = S.draw_network(rng)
    _assert_none(S.check_smoothing_certify(case), case)
