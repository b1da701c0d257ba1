"""Neural R_t estimator: exact feature boxes, certified bands that hold under sampling and attack."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from domains.epi.bounds import ReportingError, cori_mean_bounds, neural_bounds
from domains.epi.cori import cori_posterior, split_imported
from domains.epi.neural import _Centre, _fold_centring, feature_box, features, train_neural_estimator
from domains.epi.simulate import simulate
from probe.attacks.pgd import PGD
from probe.certify import empirical_lipschitz_lower_bound
from probe.criteria import Threshold
from probe.errors import ProbeError


@pytest.fixture(scope="module")
def estimator():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small MLP trains faster on one thread than on two contended ones
    try:
        yield train_neural_estimator(n_epidemics=80, n_days=100, epochs=20, seed=0)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def epidemic():
    return simulate(100, n_series=1, seed=11, seed_cases=100.0, reporting_rate=0.6).observed[0]


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 1e5), st.floats(0.0, 0.9), st.floats(-1, 1))
def test_relative_error_feature_box_is_exact(c, rho, frac):
    e = rho * frac
    lo, hi = feature_box(np.array([c * (1 - rho)]), np.array([c * (1 + rho)]))
    f = math.log1p(c * (1 + e))
    assert lo[0] - 1e-12 <= f <= hi[0] + 1e-12
    # the box is no wider than that: it lies in the L-inf ball of radius -log(1 - rho) around log1p(c)
    assert max(math.log1p(c) - lo[0], hi[0] - math.log1p(c)) <= -math.log1p(-rho) + 1e-12


def test_lipschitz_band_uses_the_exact_feature_radius(estimator):
    # |dlog R| <= K_inf * max_t |df_t|, with the feature radius worked out here from the counts: on day t,
    # f = log1p(count) moves by up to max(log1p(c) - log1p((1 - rho) c), log1p((1 + rho) c) - log1p(c)),
    # which for a large count is -log(1 - rho) (an under-count), more than log(1 + rho)
    rho = 0.1
    y = simulate(80, n_series=1, seed=3, seed_cases=300.0, r_t=1.3, reporting_rate=1.0).observed[0]  # to ~2e4/day
    res = neural_bounds(estimator, y, ReportingError(relative=rho), methods=("lipschitz",))
    win = np.lib.stride_tricks.sliding_window_view(y, estimator.length)
    down = np.log1p(win) - np.log1p((1 - rho) * win)
    up = np.log1p((1 + rho) * win) - np.log1p(win)
    radius = np.maximum(down, up).max(axis=1)
    k = res.lipschitz["linf"]
    assert k == pytest.approx(estimator.lipschitz_upper_bound("linf"), rel=1e-6)
    lo, hi = res.per_method["lipschitz-linf"]
    np.testing.assert_allclose(np.log(hi / res.estimate), k * radius, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.log(res.estimate / lo), k * radius, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(res.lower, lo)  # the only method asked for
    big = win.max(axis=1) > 1e3
    assert big.sum() > 10 and (radius[big] > math.log1p(rho) + 0.009).all()
    np.testing.assert_allclose(radius[big], -math.log1p(-rho), rtol=1e-3)


def test_folding_the_centring_is_exact():
    torch.manual_seed(0)
    net = torch.nn.Sequential(_Centre(), torch.nn.Linear(9, 5), torch.nn.ReLU(), torch.nn.Linear(5, 1))
    x = torch.randn(20, 9)
    folded = _fold_centring(net)
    assert all(isinstance(m, (torch.nn.Linear, torch.nn.ReLU)) for m in folded)
    torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=1e-5)


def test_scale_invariance_of_the_centred_input(estimator):
    # the centring removes the mean of the log counts: doubling all counts of a large epidemic barely matters
    y = simulate(80, n_series=1, seed=3, seed_cases=300.0, r_t=1.3, reporting_rate=1.0).observed[0]
    a = estimator.predict(y)["mean"].to_numpy()
    b = estimator.predict(2 * y)["mean"].to_numpy()
    big = y[estimator.length - 1:] > 100
    assert np.max(np.abs(np.log(a[big] / b[big]))) < 0.05


def test_lipschitz_upper_bound_above_empirical_lower_bound(estimator, epidemic):
    x = torch.as_tensor(features(epidemic, estimator.length)[0][::10], dtype=torch.float32)
    upper = estimator.lipschitz_upper_bound("linf")
    lower = empirical_lipschitz_lower_bound(estimator.model, x, norm="linf", steps=30)
    assert 0 < lower <= upper + 1e-6


ERRORS = [ReportingError(relative=0.05), ReportingError(relative=0.1), ReportingError(absolute=3.0),
          ReportingError(l1=20.0), ReportingError(relative=0.2, l1=10.0)]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.describe())
def test_neural_band_sound_under_sampling(estimator, epidemic, error):
    res = neural_bounds(estimator, epidemic, error)
    assert (res.lower <= res.estimate + 1e-12).all() and (res.estimate <= res.upper + 1e-12).all()
    for lo, hi in res.per_method.values():  # the kept band is inside every method's band
        assert (res.lower >= lo - 1e-12).all() and (res.upper <= hi + 1e-12).all()
    rng = np.random.default_rng(0)
    lo_y, hi_y = error.box(epidemic)
    z = lo_y + (hi_y - lo_y) * rng.random((600, len(epidemic)))
    z[:300] = np.where(rng.random((300, len(epidemic))) < 0.5, lo_y, hi_y)
    if error.l1 is not None:
        d = z - epidemic
        z = epidemic + d * np.minimum(1, error.l1 / np.maximum(np.abs(d).sum(1, keepdims=True), 1e-12))
    assert error.contains(epidemic, z[0]) and error.contains(epidemic, z[-1])
    x = features(z, estimator.length)  # (600, W, L)
    model = estimator.model.double()
    try:
        with torch.no_grad():
            r = torch.exp(model(torch.as_tensor(x.reshape(-1, estimator.length)))).numpy().reshape(x.shape[:2])
    finally:
        estimator.model.float()
    assert (r <= res.upper * (1 + 1e-9)).all() and (r >= res.lower * (1 - 1e-9)).all()


def test_neural_band_sound_under_pgd(estimator, epidemic):
    error = ReportingError(relative=0.1)
    res = neural_bounds(estimator, epidemic, error)
    lo_y, hi_y = error.box(epidemic)
    flo, fhi = features(lo_y, estimator.length)[0], features(hi_y, estimator.length)[0]
    idx = np.arange(0, len(flo), 8)
    centre = torch.as_tensor((flo[idx] + fhi[idx]) / 2, dtype=torch.float64)
    half = torch.as_tensor((fhi[idx] - flo[idx]) / 2, dtype=torch.float64)
    model = estimator.model.double()
    try:
        for sign, bound in ((1.0, np.log(res.upper[idx])), (-1.0, np.log(res.lower[idx]))):
            def f(u, sign=sign):
                return sign * model(centre + half * u)

            thr = torch.as_tensor(sign * bound + 1e-9)
            crit = Threshold(0.0, direction="up")
            out = PGD(eps=1.0, steps=50, restarts=2)(lambda u, f=f, thr=thr: f(u) - thr[:, None],
                                                     torch.zeros_like(centre), crit, already_satisfied="keep")
            assert not bool(out.success.any())
    finally:
        estimator.model.float()


def test_neural_error_against_truth_and_band_widths(estimator):
    """Figures on simulated epidemics with known R: neural vs Cori error, band widths at 5 % and 10 %."""
    test = simulate(100, n_series=30, seed=123, seed_cases=(20.0, 500.0), reporting_rate=(0.2, 1.0))
    length = estimator.length
    x = features(test.observed, length)
    pred = np.exp(estimator.predict_features(x.reshape(-1, length))).reshape(x.shape[:2])
    truth = test.window_mean_r(7)[:, length - 1:]
    t_end = np.arange(length, length + x.shape[1])
    local, imp = split_imported(test.observed, None)
    cori = cori_posterior(local, imp, test.serial_interval, t_end - 6, t_end, a_prior=1.0, b_prior=5.0).mean
    recent = np.lib.stride_tricks.sliding_window_view(test.observed, 7, axis=1)[:, length - 7:].sum(-1)
    ok = recent >= 20
    nn_err, cori_err = np.abs(pred - truth)[ok].mean(), np.abs(cori - truth)[ok].mean()
    naive_err = np.abs(1.0 - truth)[ok].mean()
    assert nn_err < 0.7 * naive_err and cori_err < 0.7 * naive_err
    assert nn_err < 1.5 * cori_err  # a small quick-trained network is in Cori's league
    widths = {}
    for rho in (0.05, 0.1):
        nb = neural_bounds(estimator, test.observed[0], ReportingError(relative=rho))
        widths[rho] = float(np.median(((nb.upper - nb.lower) / nb.estimate)[ok[0]]))
    assert 0 < widths[0.05] < widths[0.1] < 1.0


def test_neural_inputs_checked(estimator):
    with pytest.raises(ProbeError, match="day 3"):
        estimator.predict([1, 2, -1] + [5] * 30)
    with pytest.raises(ProbeError, match="at least"):
        estimator.predict([1, 2, 3])
    with pytest.raises(ProbeError, match="unknown"):
        neural_bounds(estimator, [5] * 40, ReportingError(relative=0.1), methods=("milp",))


def test_cori_and_neural_side_by_side_cover_the_same_windows(estimator, epidemic):
    nb = neural_bounds(estimator, epidemic, ReportingError(relative=0.1))
    cb = cori_mean_bounds(epidemic, (4.0, 2.0), ReportingError(relative=0.1), t_start=nb.t_start, t_end=nb.t_end)
    np.testing.assert_array_equal(cb.t_end, nb.t_end)
    assert np.isfinite(cb.upper).all()


def test_device_results_match_cpu_and_model_left_as_found(estimator, epidemic, device):
    before = [p.detach().clone() for p in estimator.model.parameters()]
    ref = neural_bounds(estimator, epidemic, ReportingError(relative=0.1), device="cpu")
    got = neural_bounds(estimator, epidemic, ReportingError(relative=0.1), device=device)
    np.testing.assert_allclose(got.lower, ref.lower, rtol=1e-6)
    np.testing.assert_allclose(got.upper, ref.upper, rtol=1e-6)
    pred = estimator.predict(epidemic, device=device)["mean"].to_numpy()
    np.testing.assert_allclose(pred, ref.estimate, rtol=1e-5)
    for p, b in zip(estimator.model.parameters(), before):
        assert p.device.type == "cpu" and p.dtype == torch.float32 and torch.equal(p, b)
