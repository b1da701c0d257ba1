"""Sobol' indices of the Cori R_t posterior mean with respect to the estimator's assumptions."""

import numpy as np
import pytest
import torch

from domains.epi import cori, datasets, rt_model, rt_problem, rt_sobol
from probe import ProbeError


@pytest.fixture(scope="module")
def flu():
    return datasets.load("Flu2009").incidence


def test_rt_model_is_the_cori_posterior_mean(flu):
    f = rt_model(flu, t_start=8, t_end=14)
    rows = torch.tensor([[2.6, 1.5, 1.0, 5.0, 5.0], [3.2, 1.1, 0.3, 2.0, 7.0]], dtype=torch.float64)
    out = f(rows).numpy()
    for k, (m, s, rho, pm, ps) in enumerate(rows.numpy()):
        ref = cori(flu.to_numpy() / rho, (m, s), t_start=[8], t_end=[14], mean_prior=pm, std_prior=ps,
                   allow_fractional=True)["mean"].to_numpy()[0]
        assert out[k] == pytest.approx(ref, rel=1e-12)


def test_serial_interval_mean_drives_the_flu_estimate(flu):
    res = rt_sobol(flu, t_start=8, t_end=14, n=128, second_order=False)
    df = res.to_frame()
    assert list(df.index) == ["si_mean", "si_sd", "reporting", "prior_mean", "prior_sd"]
    assert df["ST"].idxmax() == "si_mean" and df.loc["si_mean", "ST"] > 0.5
    # a constant reporting fraction only competes with the prior: a minor effect on ~60 cases
    assert df.loc["reporting", "ST"] < 0.1
    assert np.all(df["ST"] >= -0.05)


def test_reporting_matters_only_through_the_prior(flu):
    """Rescaling every count by 1/rho leaves the likelihood's ratio alone: with a prior that carries no
    weight (shape a -> 0, scale b -> inf), the reporting fraction has no effect at all."""
    f = rt_model(flu, t_start=8, t_end=14)
    x = torch.tensor([[2.6, 1.5, rho, 1e-3, 1e3] for rho in (0.1, 0.5, 1.0)], dtype=torch.float64)
    out = f(x).numpy()
    np.testing.assert_allclose(out, out[0], rtol=1e-6)


def test_bad_windows_and_problems_are_named(flu):
    with pytest.raises(ProbeError, match="t_start"):
        rt_model(flu, t_start=1, t_end=5)
    bad = rt_problem()
    bad["names"] = ["a", "b", "c", "d", "e"]
    with pytest.raises(ProbeError, match="si_mean"):
        rt_sobol(flu, t_start=8, t_end=14, problem=bad, n=4)
