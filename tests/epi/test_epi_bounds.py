"""Exact bounds on the Cori posterior mean: closed forms, attainment, soundness against sampling and PGD."""

import numpy as np
import pytest
import torch

from domains.epi import bounds, cori, datasets
from domains.epi.bounds import ReportingError, cori_mean_bounds, cori_mean_of_counts
from probe.attacks.pgd import PGD
from probe.criteria import Threshold
from probe.errors import ProbeError

MODELS = [ReportingError(relative=0.1), ReportingError(absolute=3.0), ReportingError(l1=15.0),
          ReportingError(relative=0.25, l1=6.0), ReportingError(absolute=2.0, relative=0.3)]


@pytest.fixture(scope="module")
def flu():
    return datasets.load("Flu2009")


def test_two_day_closed_form():
    # w = [0, 1], window [2, 2]: R = (a + x2) / (1/b + x1); the max moves x2 up and x1 down
    x = np.array([40.0, 50.0])
    a, b, rho = 1.0, 5.0, 0.1
    res = cori_mean_bounds(x, [0, 1.0], ReportingError(relative=rho), t_start=[2], t_end=[2])
    assert res.estimate[0] == pytest.approx((a + 50) / (1 / b + 40), rel=1e-14)
    assert res.upper[0] == pytest.approx((a + 55) / (1 / b + 36), rel=1e-12)
    assert res.lower[0] == pytest.approx((a + 45) / (1 / b + 44), rel=1e-12)
    np.testing.assert_allclose(res.worst_upper[0], [36, 55])
    np.testing.assert_allclose(res.worst_lower[0], [44, 45])


def test_l1_closed_form_spends_budget_on_best_day():
    # R = (a + x2) / (1/b + x1) with x1 = 40, x2 = 50 and L1 budget 4: per case, raising x2 gains
    # 1/(1/b + x1) and lowering x1 gains R/(1/b + x1); R = 51/40.2 > 1 and grows as x1 falls, so the
    # whole budget goes to lowering x1. For the minimum, raising x1 gains R/(1/b + x1) and lowering x2
    # gains 1/(1/b + x1); R stays > 1 over the budget, so again the budget goes to x1.
    x = np.array([40.0, 50.0])
    res = cori_mean_bounds(x, [0, 1.0], ReportingError(l1=4.0), t_start=[2], t_end=[2])
    assert res.upper[0] == pytest.approx((1 + 50) / (0.2 + 36), rel=1e-12)
    np.testing.assert_allclose(res.worst_upper[0], [36, 50], atol=1e-9)
    assert res.lower[0] == pytest.approx((1 + 50) / (0.2 + 44), rel=1e-12)
    np.testing.assert_allclose(res.worst_lower[0], [44, 50], atol=1e-9)


@pytest.mark.parametrize("error", MODELS, ids=lambda e: e.describe())
def test_bound_attained_by_worst_case_and_checked(flu, error):
    res = cori_mean_bounds(flu.incidence, flu.serial_interval, error)
    ok = np.isfinite(res.upper)
    assert ok.sum() > 20
    assert np.nanmax(res.check_gap) < 1e-6  # LP (Charnes-Cooper) == Dinkelbach with closed-form steps
    for worst, bound in ((res.worst_upper, res.upper), (res.worst_lower, res.lower)):
        for j in np.flatnonzero(ok):
            assert error.contains(res.incidence, worst[j], atol=1e-7)
            got = cori(worst[j], flu.serial_interval, t_start=[res.t_start[j]], t_end=[res.t_end[j]],
                       allow_fractional=True)["mean"].iloc[0]
            assert got == pytest.approx(bound[j], abs=1e-6)
    assert (res.lower[ok] <= res.estimate[ok]).all() and (res.estimate[ok] <= res.upper[ok]).all()


def test_dinkelbach_stops_early_on_both_bounds_and_equals_the_lp():
    # R = (a + x2) / (1/b + x1) on x = (40, 50) +- 10 %: the minimum is (a + 45)/(1/b + 44) (closed form above).
    # The minimum is found by maximising -R, a negative ratio: the stopping test must hold there too.
    form = bounds._LinearFractional(alpha=1.0, c=np.array([0.0, 1.0]), beta=0.2, d=np.array([1.0, 0.0]))
    x0 = np.array([40.0, 50.0])
    lo, hi = ReportingError(relative=0.1).box(x0)
    for sense, exact in ((1, 56 / 36.2), (-1, 46 / 44.2)):
        dk = bounds._dinkelbach(form, x0, lo, hi, None, sense)
        v_lp, _ = bounds._lp(form, x0, lo, hi, None, sense)
        assert dk.value == pytest.approx(exact, rel=1e-14) and v_lp == pytest.approx(exact, rel=1e-9)
        # one step to the optimal vertex, one to see that nothing improves
        assert dk.iterations == 2, (sense, dk.iterations)


@pytest.mark.parametrize("error", MODELS, ids=lambda e: e.describe())
def test_dinkelbach_iterations_are_few_for_lower_and_upper(flu, error):
    res = cori_mean_bounds(flu.incidence, flu.serial_interval, error)
    ok = np.isfinite(res.upper)
    its = res.extras["dinkelbach_iterations"]
    assert its.shape == (len(res.t_end), 2)
    # superlinear convergence: a handful of steps (200, the cap, before the stopping test was relative to |R|)
    assert (its[ok] >= 1).all() and (its[ok] <= 8).all(), its[ok].max(0)
    assert (its[~ok] == 0).all()
    assert np.nanmax(res.check_gap[ok]) < 1e-9  # and the early stop still meets the Charnes-Cooper LP


def _sample(x, error, n, rng):
    lo, hi = error.box(x)
    z = lo + (hi - lo) * rng.random((n, len(x)))
    # half the samples at the box's vertices, where extremes of a ratio of affine maps live
    z[: n // 2] = np.where(rng.random((n // 2, len(x))) < 0.5, lo, hi)
    if error.l1 is not None:
        d = z - x
        tot = np.abs(d).sum(1, keepdims=True)
        scale = np.minimum(1.0, error.l1 * rng.random((n, 1)) ** 0.2 / np.maximum(tot, 1e-12))
        z = x + d * scale
    return z


@pytest.mark.parametrize("error", MODELS, ids=lambda e: e.describe())
def test_sound_under_sampled_perturbations(flu, error):
    rng = np.random.default_rng(1)
    res = cori_mean_bounds(flu.incidence, flu.serial_interval, error)
    x = res.incidence
    z = _sample(x, error, 4000, rng)
    assert all(error.contains(x, zi) for zi in z[:50])
    r = cori_mean_of_counts(z, flu.serial_interval, res.t_start, res.t_end)
    ok = np.isfinite(res.upper)
    assert (r[:, ok] <= res.upper[ok] + 1e-9).all()
    assert (r[:, ok] >= res.lower[ok] - 1e-9).all()


def _torch_cori_mean(x, w, t1, t2, a=1.0, b=5.0):
    """The posterior mean written independently: Lambda by an explicit loop over lags."""
    n = x.shape[1]
    local = torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:]], 1)  # day 1 is imported
    lam = torch.zeros_like(x)
    for s in range(1, min(len(w), n)):
        lam[:, s:] = lam[:, s:] + float(w[s]) * x[:, : n - s]
    return ((a + local[:, t1 - 1:t2].sum(1)) / (1 / b + lam[:, t1 - 1:t2].sum(1))).unsqueeze(1)


@pytest.mark.parametrize("error", MODELS[:2] + MODELS[4:], ids=lambda e: e.describe())
def test_sound_under_pgd_attack(flu, error):
    # a per-day box: counts = centre + half-width * u with u in the L-inf unit ball
    res = cori_mean_bounds(flu.incidence, flu.serial_interval, error)
    x = res.incidence
    lo, hi = error.box(x)
    centre, half = torch.tensor((lo + hi) / 2), torch.tensor((hi - lo) / 2)
    w = flu.serial_interval
    js = [0, 12, 24]
    for j in js:
        t1, t2 = int(res.t_start[j]), int(res.t_end[j])
        for sign, bound in ((1.0, res.upper[j]), (-1.0, res.lower[j])):
            def model(u, sign=sign, t1=t1, t2=t2):
                return sign * _torch_cori_mean(centre + half * u, w, t1, t2)

            u0 = torch.zeros(1, len(x), dtype=torch.float64)
            attack = PGD(eps=1.0, norm="linf", steps=150, step_size=0.05, restarts=1, seed=j)
            # success = crossing the bound by more than float round-off (the attack does reach the exact vertex)
            out = attack(model, u0, Threshold(sign * bound + 1e-9, direction="up"), already_satisfied="keep")
            assert not bool(out.success.any()), "the attack crossed the certified bound"
            with torch.no_grad():
                found = float(sign * model(out.x_adv))
            assert abs(found - bound) < 0.1 * abs(bound)  # and the attack comes close to the exact bound


def test_bad_error_models():
    with pytest.raises(ProbeError, match="at least one"):
        ReportingError()
    with pytest.raises(ProbeError, match="relative"):
        ReportingError(relative=-0.1)
    with pytest.raises(ProbeError, match="ReportingError"):
        cori_mean_bounds([1, 2, 3, 4, 5, 6, 7, 8, 9], [0, 1.0], 0.1)
