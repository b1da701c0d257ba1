"""Cori estimator, serial intervals and incidence input: EpiEstim's saved output, closed forms, errors."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domains.epi import cori, datasets, discretize_serial_interval
from domains.epi.cori import COLUMNS, default_windows
from domains.epi.io import check_incidence, read_incidence_csv
from domains.epi.serial_interval import check_serial_interval, read_serial_interval_csv, serial_interval_moments
from probe.errors import ProbeError


def test_reproduces_epiestim_example1():
    flu = datasets.load("Flu2009")
    ref = datasets.epiestim_example1()
    out = cori(flu.incidence, flu.serial_interval, t_start=range(2, 27), t_end=range(8, 33))
    assert list(out.columns) == list(COLUMNS)
    np.testing.assert_allclose(out.to_numpy(float), ref.to_numpy(float), rtol=0, atol=1e-8)


def test_default_windows_are_epiestims():
    flu = datasets.load("Flu2009")
    out = cori(flu.incidence, flu.serial_interval)  # window 7: t_start = 2..26
    ref = datasets.epiestim_example1()
    np.testing.assert_allclose(out.to_numpy(float), ref.to_numpy(float), atol=1e-8)
    ts, te = default_windows(32, 7)
    assert ts[0] == 2 and te[-1] == 32 and len(ts) == 25


def test_posterior_closed_form_by_hand():
    # w = [0, 1]: Lambda_t = I_{t-1}; window [3, 4] of I = (2, 3, 5, 7): a = 1 + 5 + 7, 1/b = 1/5 + 3 + 5
    out = cori([2, 3, 5, 7], [0.0, 1.0], t_start=[3], t_end=[4])
    a, b = 1 + 12, 1 / (0.2 + 8)
    assert out["mean"].iloc[0] == pytest.approx(a * b, rel=1e-14)
    assert out["std"].iloc[0] == pytest.approx(math.sqrt(a) * b, rel=1e-14)
    from scipy.stats import gamma

    assert out["q975"].iloc[0] == pytest.approx(gamma.ppf(0.975, a, scale=b), rel=1e-12)
    assert out["median"].iloc[0] == pytest.approx(gamma.ppf(0.5, a, scale=b), rel=1e-12)


def test_imported_cases_infect_but_are_not_counted():
    local = np.array([0, 4, 6, 8, 10, 12.0])
    imported = np.array([3, 0, 2, 0, 0, 0.0])
    w = [0, 0.5, 0.5]
    out = cori(local, w, t_start=[4], t_end=[6], imported=imported)
    total = local + imported
    lam = [0.5 * total[t - 1] + 0.5 * total[t - 2] for t in (3, 4, 5)]
    a, b = 1 + local[3:6].sum(), 1 / (0.2 + sum(lam))
    assert out["mean"].iloc[0] == pytest.approx(a * b, rel=1e-14)
    frame = pd.DataFrame({"local": local, "imported": imported})
    assert cori(frame, w, t_start=[4], t_end=[6])["mean"].iloc[0] == pytest.approx(a * b, rel=1e-14)


def test_first_day_counts_as_imported():
    # EpiEstim: cases on day 1 seed the epidemic; changing them changes Lambda only
    a = cori([5, 1, 2, 3], [0, 1.0], t_start=[2], t_end=[4])
    b = cori([0, 1, 2, 3], [0, 1.0], t_start=[2], t_end=[4], imported=[5, 0, 0, 0])
    np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float))


def test_many_series_at_once_equal_one_at_a_time():
    rng = np.random.default_rng(0)
    X = rng.poisson(30, size=(5, 40)).astype(float)
    w = discretize_serial_interval(4.0, 2.0, n_days=20)
    w = w / w.sum()
    many = cori(X, w, window=5)
    assert many["series"].nunique() == 5
    for i in range(5):
        one = cori(X[i], w, window=5)
        np.testing.assert_allclose(many[many["series"] == str(i)][list(COLUMNS)].to_numpy(float),
                                   one.to_numpy(float), rtol=1e-12)


def test_window_ending_before_mean_si_is_nan():
    w = np.zeros(12)
    w[10] = 1.0  # mean serial interval 10 days
    out = cori(np.arange(1, 16), w, t_start=[2, 8], t_end=[8, 14])
    assert np.isnan(out["mean"].iloc[0]) and np.isfinite(out["mean"].iloc[1])


def test_parametric_serial_interval_matches_discr_si():
    flu = datasets.load("Flu2009")
    n = len(flu.incidence)
    w = discretize_serial_interval(2.6, 1.5, np.arange(n))
    a = cori(flu.incidence, (2.6, 1.5))
    b = cori(flu.incidence, {"mean": 2.6, "std": 1.5})
    c = cori(flu.incidence.to_numpy(), np.r_[w])
    np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float))
    np.testing.assert_allclose(a.to_numpy(float), c.to_numpy(float))


# ----------------------------------------------------------------------- serial interval


def test_discr_si_closed_form_exponential():
    # mean 2, sd 1: SI - 1 ~ Exp(1); the triangular-kernel integrals are e^-1 and e^-(k-2) (1 - e^-1)^2
    k = np.arange(12)
    w = discretize_serial_interval(2.0, 1.0, k)
    e = math.exp(-1)
    expected = np.array([0.0, e] + [math.exp(-(j - 2)) * (1 - e) ** 2 for j in range(2, 12)])
    np.testing.assert_allclose(w, expected, rtol=1e-12, atol=1e-15)


@settings(max_examples=30, deadline=None)
@given(st.floats(1.5, 12.0), st.floats(0.5, 6.0))
def test_discr_si_keeps_mass_and_mean(mean, std):
    w = discretize_serial_interval(mean, std)
    assert w[0] == 0 and (w >= 0).all()
    assert w.sum() == pytest.approx(1.0, abs=1e-8)
    m, _ = serial_interval_moments(w)
    assert m == pytest.approx(mean, abs=1e-6)


def test_discr_si_rejects_bad_parameters():
    with pytest.raises(ProbeError, match="mean"):
        discretize_serial_interval(1.0, 1.0)
    with pytest.raises(ProbeError, match="std"):
        discretize_serial_interval(3.0, -1.0)


@pytest.mark.parametrize("w, match", [([0.1, 0.9], "w\\[0\\]"), ([0, 1.2, -0.2], "day 2"), ([0, 0.5], "sum"),
                                      ([0, np.nan, 1], "day 1")])
def test_bad_serial_interval(w, match):
    with pytest.raises(ProbeError, match=match):
        check_serial_interval(w)


def test_serial_interval_csv(tmp_path):
    p = tmp_path / "si.csv"
    p.write_text("t,w\n0,0\n1,0.25\n2,0.75\n")
    np.testing.assert_array_equal(read_serial_interval_csv(p), [0, 0.25, 0.75])
    p.write_text("t,w\n0,0\n1,x\n2,0.75\n")
    with pytest.raises(ProbeError, match="line 3"):
        read_serial_interval_csv(p)


# ----------------------------------------------------------------------- incidence input


@pytest.mark.parametrize("values, match", [
    ([1, 2, -3, 4], r"day 3.*negative count -3"),
    ([1, np.nan, 3, 4], r"day 2.*nan"),
    ([1, 2, 3.5, 4], r"day 3.*non-integer count 3.5"),
])
def test_bad_counts_name_day_and_value(values, match):
    with pytest.raises(ProbeError, match=match):
        check_incidence(values)
    with pytest.raises(ProbeError, match=match):
        cori(values, [0, 1.0], t_start=[2], t_end=[4])


def test_dates_named_in_errors_and_gaps_rejected():
    idx = pd.date_range("2020-03-01", periods=5)
    s = pd.Series([1, 2, 3, -1, 5], index=idx)
    with pytest.raises(ProbeError, match=r"day 4 \(2020-03-04\).*-1"):
        check_incidence(s)
    gap = pd.Series([1, 2, 3, 4], index=idx.delete(2))
    with pytest.raises(ProbeError, match="2020-03-03 is missing"):
        check_incidence(gap)
    twice = pd.Series([1, 2, 3], index=pd.DatetimeIndex(["2020-01-01", "2020-01-02", "2020-01-02"]))
    with pytest.raises(ProbeError, match="not strictly increasing"):
        check_incidence(twice)


def test_series_shorter_than_window():
    with pytest.raises(ProbeError, match="5 day"):
        cori([1, 2, 3, 4, 5], [0, 1.0], window=7)


def test_dataframe_of_many_series_with_dates():
    idx = pd.date_range("2021-01-01", periods=20)
    df = pd.DataFrame({"north": np.arange(20) + 1, "south": np.arange(20)[::-1] + 1}, index=idx)
    out = cori(df, [0, 0.5, 0.5], window=5)
    assert set(out["series"]) == {"north", "south"}
    df.iloc[7, 1] = -2
    with pytest.raises(ProbeError, match=r"'south' at day 8 \(2021-01-08\)"):
        cori(df, [0, 0.5, 0.5], window=5)


def test_csv_roundtrip_and_errors(tmp_path):
    flu = datasets.load("Flu2009")
    p = tmp_path / "flu.csv"
    flu.incidence.rename_axis("date").reset_index().to_csv(p, index=False)
    s = read_incidence_csv(p)
    assert isinstance(s.index, pd.DatetimeIndex) and len(s) == 32
    np.testing.assert_allclose(cori(p, flu.serial_interval).to_numpy(float),
                               cori(flu.incidence, flu.serial_interval).to_numpy(float))
    p.write_text("date,I\n2020-01-01,3\n2020-01-02,abc\n")
    with pytest.raises(ProbeError, match="line 3.*'abc'"):
        read_incidence_csv(p)
    p.write_text("date,I\n2020-01-01,3\n2020-01-03,4\n")
    with pytest.raises(ProbeError, match="2020-01-02 is missing"):
        read_incidence_csv(p)
    p.write_text("day,I\n1,3\n2,\n3,4\n")
    with pytest.raises(ProbeError, match="day 2"):
        check_incidence(p)


def test_inputs_not_mutated():
    x = np.array([1.0, 2, 3, 4, 5, 6, 7, 8, 9])
    imp = np.array([2.0, 0, 0, 0, 0, 0, 0, 0, 0])
    x0, imp0 = x.copy(), imp.copy()
    cori(x, [0, 1.0], window=3, imported=imp)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(imp, imp0)


@pytest.mark.parametrize("name", datasets.names())
def test_every_shipped_epidemic_runs(name):
    ep = datasets.load(name)
    out = cori(ep.incidence, ep.serial_interval)
    assert len(out) == len(ep.incidence) - 7 and np.isfinite(out["mean"].iloc[-1])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(1.0, 1e6), min_size=1, max_size=30), st.sampled_from((0.01, 0.025, 0.3, 0.5, 0.975)))
def test_gamma_quantiles_match_gammaincinv(shapes, q):
    from scipy.special import gammaincinv

    from domains.epi.cori import gamma_standard_quantiles

    a = np.asarray(shapes)
    np.testing.assert_allclose(gamma_standard_quantiles(a, (q,))[0], gammaincinv(a, q), rtol=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 500), min_size=1, max_size=60), st.floats(0.01, 30), st.booleans())
def test_linear_time_unique_equals_numpy(ints, offset, fractional):
    from domains.epi.cori import _unique

    a = np.asarray(ints, dtype=np.float64) + offset + (0.5 * (np.arange(len(ints)) % 2) if fractional else 0.0)
    values, inverse = _unique(a)
    ref_values, ref_inverse = np.unique(a, return_inverse=True)
    np.testing.assert_array_equal(values, ref_values)
    np.testing.assert_array_equal(values[inverse], a)


def test_series_indexed_by_day_numbers_must_be_consecutive():
    ok = pd.Series([1, 2, 3, 4], index=[5, 6, 7, 8])
    assert check_incidence(ok).n_days == 4
    with pytest.raises(ProbeError, match="day 8 follows day 6"):
        check_incidence(pd.Series([1, 2, 3], index=[5, 6, 8]))
