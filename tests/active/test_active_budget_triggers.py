"""The whole-run budget trigger and the hybrid trigger, worked out by hand."""

import math

import pytest

from probe.active import Accumulated, Budgeted, Hybrid, TrustBand
from probe.errors import ProbeError


def test_budget_tolerance_spreads_the_remaining_variance_over_the_remaining_steps():
    trig = Budgeted("u", budget=0.5, steps=10)
    fired = []
    for k in range(1, 6):
        d = trig.check({"u": 0.1})
        # tau = min(R^2 / ((steps - n) u), R) = min(0.25 / ((10 - k) 0.1), 0.5) = 0.5 up to k = 5
        assert trig.tolerance == pytest.approx(min(0.25 / ((10 - k) * 0.1), 0.5))
        fired.append(d.label)
    assert fired == [False] * 5
    d = trig.check({"u": 0.1})  # A = 0.6 > tau = min(0.25 / 0.4, 0.5) = 0.5
    assert d.label and d.value == pytest.approx(0.6)
    trig.reset()
    assert trig.spent == pytest.approx(0.36) and trig.tolerance == 0.0  # the budget is spent: label at once
    assert trig.check({"u": 1e-6}).label


def test_a_quiet_stretch_raises_the_tolerance_a_loud_one_lowers_it():
    quiet, loud = Budgeted("u", budget=1.0, steps=100), Budgeted("u", budget=1.0, steps=100)
    quiet.check({"u": 0.001})
    loud.check({"u": 0.1})
    assert quiet.tolerance == pytest.approx(1.0)  # capped by the remaining budget itself
    assert loud.tolerance == pytest.approx(1.0 / (99 * 0.1))
    with pytest.raises(ProbeError, match="budget"):
        Budgeted("u", budget=0.0, steps=3)
    with pytest.raises(ProbeError, match="non-negative"):
        Budgeted("u", budget=1.0, steps=3).check({"u": -1.0})


def test_honest_intervals_keep_the_sum_of_squares_within_the_budget():
    trig = Budgeted("u", budget=0.3, steps=200)
    intervals, acc = [], 0.0
    for k in range(200):
        u = 0.01 * (1 + math.sin(k / 7) ** 2)
        acc += u
        if trig.check({"u": u}).label:
            intervals.append(acc)
            acc = 0.0
            trig.reset()
    intervals.append(acc)
    # each interval stops as soon as it passes its tolerance, so it overshoots by at most one increment
    assert math.sqrt(sum(a * a for a in intervals)) <= 0.3 + 0.02 * math.sqrt(len(intervals))
    assert len(intervals) > 3


def test_hybrid_uses_the_floor_only_for_the_first_labels():
    trig = Hybrid(Accumulated("rate", 1.0), TrustBand("force", 0.1, math.inf), warmup=2)
    obs = {"rate": 0.01, "force": 0.5}
    for _ in range(2):
        d = trig.check(obs)
        assert d.label and d.reason == "floor" and d.value == 0.5
        trig.reset()
    d = trig.check(obs)  # past the warm-up: the energy rate alone
    assert not d.label and d.value == pytest.approx(0.01)
    assert trig.check({"rate": 2.0, "force": 0.0}).reason == "tolerance"
    with pytest.raises(ProbeError, match="warmup"):
        Hybrid(Accumulated("rate", 1.0), TrustBand("force", 0.1, 1.0), warmup=-1)
