"""probe.gsa against SALib's samplers and estimators on the same samples (to 1e-10)."""

import numpy as np
import pytest

from probe import gsa
from probe.gsa import functions as F

pytest.importorskip("SALib")
from SALib.analyze import dgsm as salib_dgsm  # noqa: E402
from SALib.analyze import morris as salib_morris  # noqa: E402
from SALib.analyze import sobol as salib_sobol  # noqa: E402
from SALib.sample import finite_diff  # noqa: E402
from SALib.sample import morris as salib_morris_sample  # noqa: E402
from SALib.sample import sobol as salib_sobol_sample  # noqa: E402
from SALib.util import scale_samples  # noqa: E402

TOL = 1e-10
GROUPED = {"num_vars": 4, "names": ["a", "b", "c", "d"], "bounds": [[0, 1], [0, 2], [-1, 1], [0, 1]],
           "groups": ["g1", "g2", "g1", "g3"]}


def ishigami_np(X):
    return np.sin(X[:, 0]) + 7 * np.sin(X[:, 1]) ** 2 + 0.1 * X[:, 2] ** 4 * np.sin(X[:, 0])


def grouped_np(X):
    return X[:, 0] + 2 * X[:, 1] * X[:, 2] + X[:, 3] ** 2 + np.sin(3 * X[:, 2])


@pytest.mark.parametrize("second_order", [True, False])
def test_sobol_equals_salib(second_order):
    problem = F.ishigami_problem()
    X = salib_sobol_sample.sample(problem, 512, calc_second_order=second_order, seed=3)
    np.testing.assert_array_equal(gsa.saltelli_sample(problem, 512, second_order=second_order, seed=3), X)
    Y = ishigami_np(X)
    ref = salib_sobol.analyze(problem, Y, calc_second_order=second_order, seed=5)
    res = gsa.analyze_sobol(problem, Y, second_order=second_order, seed=5)
    for key in ("S1", "S1_conf", "ST", "ST_conf"):
        np.testing.assert_allclose(getattr(res, key), ref[key], rtol=0, atol=TOL, err_msg=key)
    if second_order:
        np.testing.assert_allclose(res.S2, ref["S2"], rtol=0, atol=TOL)
        np.testing.assert_allclose(res.S2_conf, ref["S2_conf"], rtol=0, atol=TOL)


def test_sobol_with_groups_equals_salib():
    X = salib_sobol_sample.sample(GROUPED, 256, seed=1)
    np.testing.assert_array_equal(gsa.saltelli_sample(GROUPED, 256, seed=1), X)
    Y = grouped_np(X)
    ref = salib_sobol.analyze(GROUPED, Y, seed=2)
    res = gsa.analyze_sobol(GROUPED, Y, seed=2)
    assert res.names == ["g1", "g2", "g3"]
    for key in ("S1", "S1_conf", "ST", "ST_conf", "S2", "S2_conf"):
        np.testing.assert_allclose(getattr(res, key), ref[key], rtol=0, atol=TOL, err_msg=key)


def test_sobol_pipeline_equals_salib_pipeline():
    """sobol(fn, problem, n, seed) is SALib's sample -> evaluate -> analyze with the same seed."""
    problem = F.sobol_g_problem(8)
    X = salib_sobol_sample.sample(problem, 256, calc_second_order=False, seed=7)
    ref = salib_sobol.analyze(problem, F.sobol_g(__import__("torch").as_tensor(X)).numpy(),
                              calc_second_order=False, seed=7)
    res = gsa.sobol(F.sobol_g, problem, n=256, seed=7, second_order=False)
    np.testing.assert_allclose(res.S1, ref["S1"], rtol=0, atol=TOL)
    np.testing.assert_allclose(res.ST_conf, ref["ST_conf"], rtol=0, atol=TOL)


def test_morris_equals_salib_on_salib_trajectories():
    problem = F.ishigami_problem()
    X = salib_morris_sample.sample(problem, 60, num_levels=4, seed=2)
    Y = ishigami_np(X)
    ref = salib_morris.analyze(problem, X, Y, num_levels=4, seed=7)
    res = gsa.analyze_morris(problem, X, Y, num_levels=4, seed=7)
    for key in ("mu", "mu_star", "sigma", "mu_star_conf"):
        np.testing.assert_allclose(getattr(res, key), np.asarray(ref[key]), rtol=0, atol=TOL, err_msg=key)


def test_morris_with_groups_equals_salib_on_own_trajectories():
    X = gsa.morris_sample(GROUPED, 40, num_levels=6, seed=4)
    Y = grouped_np(X)
    ref = salib_morris.analyze(dict(GROUPED), X, Y, num_levels=6, seed=3)
    res = gsa.analyze_morris(GROUPED, X, Y, num_levels=6, seed=3)
    for key in ("mu", "mu_star", "mu_star_conf"):
        np.testing.assert_allclose(getattr(res, key), np.asarray(ref[key]), rtol=0, atol=TOL, err_msg=key)
    assert np.isnan(res.sigma[0]) and np.isnan(np.asarray(ref["sigma"], dtype=float)[0])
    np.testing.assert_allclose(res.sigma[1:], np.asarray(ref["sigma"], dtype=float)[1:], rtol=0, atol=TOL)


def test_morris_trajectories_stay_on_the_grid():
    X = gsa.morris_sample({"num_vars": 3, "names": list("abc"), "bounds": [[0, 1]] * 3}, 50, num_levels=4, seed=0)
    assert set(np.round(X.ravel() * 3, 12)) <= {0.0, 1.0, 2.0, 3.0}
    steps = np.abs(np.diff(X.reshape(50, 4, 3), axis=1))
    assert np.all((steps == 0) | np.isclose(steps, 2 / 3))
    assert np.all((steps > 0).sum(axis=2) == 1)


def test_dgsm_equals_salib_on_finite_differences():
    """Fed SALib's finite-difference gradients, analyze_dgsm returns SALib's vi, vi_std and dgsm.

    (SALib's ``dgsm_conf`` is the bootstrap spread of vi, not of dgsm, so it is not compared.)
    """
    problem = F.ishigami_problem()
    N, D = 500, 3
    X = finite_diff.sample(problem, N, delta=1e-3, seed=1)
    Y = ishigami_np(X)
    ref = salib_dgsm.analyze(problem, X, Y, seed=2)
    Xr, Yr = X.reshape(N, D + 1, D), Y.reshape(N, D + 1)
    G = np.stack([(Yr[:, j + 1] - Yr[:, 0]) / (Xr[:, j + 1, j] - Xr[:, 0, j]) for j in range(D)], axis=1)
    res = gsa.analyze_dgsm(problem, Yr[:, 0], G)
    for key in ("vi", "vi_std", "dgsm"):
        np.testing.assert_allclose(getattr(res, key), ref[key], rtol=0, atol=TOL, err_msg=key)


def test_nonuniform_marginals_equal_salib_scaling():
    problem = {"num_vars": 4, "names": list("abcd"), "dists": ["unif", "norm", "lognorm", "triang"],
               "bounds": [[1, 3], [2, 0.5], [0.1, 0.3], [0, 4, 0.25]]}
    X = gsa.saltelli_sample(problem, 64, seed=0)
    ref = salib_sobol_sample.sample(problem, 64, seed=0)
    np.testing.assert_allclose(X, ref, rtol=0, atol=TOL)
    u = np.random.default_rng(0).random((100, 4))
    np.testing.assert_allclose(gsa.as_problem(problem).ppf(u), scale_samples(u.copy(), dict(problem)), atol=TOL)
