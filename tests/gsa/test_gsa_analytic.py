"""Analytic ground truths: Ishigami (a = 7, b = 0.1) and Sobol' G (a = 0, 1, 4.5, 9, 99, 99, 99, 99).

Published values, to 4 decimals:
- Ishigami: S1 = (0.3139, 0.4424, 0), ST = (0.5576, 0.4424, 0.2437), S13 = 0.2437 (Ishigami & Homma
  1990; Sobol' & Levitan 1999; Saltelli et al., "Global Sensitivity Analysis: The Primer", 2008);
  DGSM nu = (7.7196, 24.5, 10.9873) (Kucherenko & Iooss 2017, Handbook of UQ, closed forms in
  probe.gsa.functions).
- Sobol' G: S1 = (0.7162, 0.1790, 0.0237, 0.0072, 0.0001 x 4), ST = (0.7871, 0.2422, 0.0343, 0.0105,
  0.0001 x 4) (Saltelli & Sobol' 1995; the a-vector of Saltelli et al. 2010, Comput. Phys. Commun. 181, 259).
"""

import numpy as np
import pytest

from probe import gsa
from probe.gsa import functions as F

ISHIGAMI_S1 = [0.3139, 0.4424, 0.0]
ISHIGAMI_ST = [0.5576, 0.4424, 0.2437]
ISHIGAMI_NU = [7.7196, 24.5, 10.9873]
G_S1 = [0.7162, 0.1790, 0.0237, 0.0072] + [0.0001] * 4
G_ST = [0.7871, 0.2422, 0.0343, 0.0105] + [0.0001] * 4


def test_closed_forms_match_published_values():
    ish = F.ishigami_indices(7.0, 0.1)
    np.testing.assert_allclose(ish["S1"], ISHIGAMI_S1, atol=5e-5)
    np.testing.assert_allclose(ish["ST"], ISHIGAMI_ST, atol=5e-5)
    assert ish["S2"][0, 2] == pytest.approx(0.2437, abs=5e-5)
    np.testing.assert_allclose(F.ishigami_dgsm(7.0, 0.1), ISHIGAMI_NU, atol=5e-5)
    g = F.sobol_g_indices()
    np.testing.assert_allclose(g["S1"], G_S1, atol=5e-5)
    np.testing.assert_allclose(g["ST"], G_ST, atol=5e-5)


def _inside(estimate, conf, exact):
    lo, hi = estimate - conf, estimate + conf
    assert np.all((lo <= exact) & (exact <= hi)), (estimate, conf, exact)


def test_ishigami_sobol_exact_inside_bootstrap_interval():
    res = gsa.sobol(F.ishigami, F.ishigami_problem(), n=2**13, seed=0, second_order=True)
    exact = F.ishigami_indices()
    _inside(res.S1, res.S1_conf, exact["S1"])
    _inside(res.ST, res.ST_conf, exact["ST"])
    iu = np.triu_indices(3, 1)
    _inside(res.S2[iu], res.S2_conf[iu], exact["S2"][iu])
    # the intervals are informative, not just wide
    assert res.S1_conf.max() < 0.05 and res.ST_conf.max() < 0.05
    assert res.evaluations == 2**13 * 8


def test_sobol_g_exact_inside_bootstrap_interval():
    res = gsa.sobol(F.sobol_g, F.sobol_g_problem(8), n=2**13, seed=0, second_order=False)
    exact = F.sobol_g_indices()
    _inside(res.S1, res.S1_conf, exact["S1"])
    _inside(res.ST, res.ST_conf, exact["ST"])
    assert res.S1_conf.max() < 0.05
    frame = res.to_frame()
    assert list(frame.index) == [f"x{i}" for i in range(1, 9)]
    assert list(frame.columns) == ["S1", "S1_conf", "ST", "ST_conf"]


def test_jansen_estimators_agree_with_closed_form():
    res = gsa.sobol(F.ishigami, F.ishigami_problem(), n=2**12, seed=1, second_order=False,
                    first_order="jansen", total_order="sobol2007")
    exact = F.ishigami_indices()
    np.testing.assert_allclose(res.S1, exact["S1"], atol=0.03)
    np.testing.assert_allclose(res.ST, exact["ST"], atol=0.03)


def test_ishigami_dgsm_exact_to_monte_carlo_error():
    res = gsa.dgsm(F.ishigami, F.ishigami_problem(), n=2**13, seed=0)
    nu = F.ishigami_dgsm()
    _inside(res.vi, res.vi_conf, nu)
    assert np.all(res.vi_conf / nu < 0.1)


def test_ishigami_dgsm_bounds_total_indices():
    """Sobol'-Kucherenko: ST_i <= (b - a)^2 nu_i / (pi^2 V), exactly and for the estimates."""
    exact = F.ishigami_indices()
    bound = (2 * np.pi) ** 2 * F.ishigami_dgsm() / (np.pi**2 * exact["V"])
    assert np.all(exact["ST"] <= bound)
    res = gsa.dgsm(F.ishigami, F.ishigami_problem(), n=2**12, seed=0)
    np.testing.assert_allclose(res.dgsm, bound, rtol=0.05)
    st = gsa.sobol(F.ishigami, F.ishigami_problem(), n=2**11, seed=0, second_order=False)
    frame = gsa.bounds_frame(st, res)
    assert list(frame.columns) == ["ST", "ST_conf", "ST_upper", "vi", "consistent"]
    assert frame["consistent"].all()
    assert np.all(frame["ST"] < frame["ST_upper"])


def test_morris_ranks_ishigami_inputs_and_flags_interaction():
    res = gsa.morris(F.ishigami, F.ishigami_problem(), trajectories=200, seed=0)
    df = res.to_frame()
    assert list(df.columns[:3]) == ["mu_star", "mu_star_conf", "sigma"]
    # x3 acts only through its interaction with x1: sigma large compared with |mu|
    assert res.sigma[2] > 3 * abs(res.mu[2])
    assert np.all(res.mu_star > 0)
