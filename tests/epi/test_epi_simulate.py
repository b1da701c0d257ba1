"""Renewal-equation simulator: reporting model by hand, noise moments, recovery of a known R."""

import numpy as np
import pytest

from domains.epi import cori
from domains.epi.cori import cori_posterior, split_imported
from domains.epi.simulate import WEEKDAY_EFFECT, random_r_trajectories, simulate
from probe.errors import ProbeError


def test_reporting_model_by_hand():
    delay = np.array([0.5, 0.3, 0.2])
    sim = simulate(40, r_t=1.2, seed_cases=30.0, reporting_rate=0.4, delay=delay, report_size=None, seed=2)
    inf = sim.infections[0]
    delayed = np.array([sum(delay[d] * inf[t - d] for d in range(3) if t - d >= 0) for t in range(40)])
    expected = 0.4 * WEEKDAY_EFFECT[np.arange(40) % 7] * delayed
    np.testing.assert_allclose(sim.expected[0], expected, rtol=1e-12)
    assert (sim.observed == np.round(sim.observed)).all() and (sim.observed >= 0).all()


def test_perfect_reporting_observes_infections_in_expectation():
    sim = simulate(30, r_t=1.1, reporting_rate=1.0, day_of_week=None, delay=None, report_size=None, seed=0)
    np.testing.assert_array_equal(sim.expected, sim.infections)


def test_negative_binomial_reporting_noise_moments():
    # constant infections -> reports NB(mean mu, size k): variance mu + mu^2 / k
    sim = simulate(2, n_series=20000, r_t=0.0, seed_cases=200.0, reporting_rate=0.5, day_of_week=None,
                   delay=None, report_size=10.0, seed=1)
    y = sim.observed[:, 0]
    mu = 100.0
    assert y.mean() == pytest.approx(mu, rel=0.02)
    assert y.var() == pytest.approx(mu + mu**2 / 10.0, rel=0.06)


def test_cori_recovers_constant_r_from_true_infections():
    sim = simulate(60, n_series=20, r_t=1.3, seed_cases=200.0, infection_size=None, seed=4)
    local, imp = split_imported(sim.infections, None)
    t_end = np.arange(30, 61)
    post = cori_posterior(local, imp, sim.serial_interval, t_end - 6, t_end, a_prior=1.0, b_prior=5.0)
    assert abs(post.mean.mean() / 1.3 - 1) < 0.01  # unbiased
    assert np.median(np.abs(post.mean / 1.3 - 1)) < 0.03 and np.abs(post.mean / 1.3 - 1).max() < 0.1
    # and the public function on one series agrees with the batched posterior
    one = cori(sim.infections[0], sim.serial_interval, t_start=t_end - 6, t_end=t_end)
    np.testing.assert_allclose(one["mean"], post.mean[0], rtol=1e-12)


def test_window_mean_r_and_trajectories():
    r = random_r_trajectories(3, 50, rng=0)
    assert r.shape == (3, 50) and (r >= 0.5 - 1e-12).all() and (r <= 2.5 + 1e-12).all()
    sim = simulate(50, r_t=r, seed=0)
    m = sim.window_mean_r(7)
    assert np.isnan(m[:, :6]).all()
    np.testing.assert_allclose(m[:, 6], r[:, :7].mean(1))
    np.testing.assert_allclose(m[:, -1], r[:, -7:].mean(1))


def test_bad_settings():
    with pytest.raises(ProbeError, match="reporting_rate"):
        simulate(20, reporting_rate=1.5)
    with pytest.raises(ProbeError, match="day 3"):
        simulate(5, r_t=[1, 1, -1, 1, 1])
    with pytest.raises(ProbeError, match="day_of_week"):
        simulate(20, day_of_week=[1, 1])
