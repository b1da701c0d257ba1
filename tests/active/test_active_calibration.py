import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probe.active.uncertainty import VarianceScaling, member_variance
from probe.errors import ProbeError


@settings(max_examples=30, deadline=None)
@given(c=st.floats(0.1, 10.0), seed=st.integers(0, 1000))
def test_scale_is_exactly_recovered_when_errors_are_a_known_multiple_of_the_spread(c, seed):
    rng = np.random.default_rng(seed)
    cal = VarianceScaling()
    for _ in range(5):  # several labels, each with its own spread
        members = torch.tensor(rng.normal(size=(4, 7, 3)) * rng.uniform(0.01, 1.0))
        var = member_variance(members)
        error = c * var.sqrt() * torch.tensor(rng.choice([-1.0, 1.0], size=var.shape))
        cal.update(error, var)
    assert cal.scale2 == pytest.approx(c ** 2, rel=1e-10)
    assert cal.n_updates == 5


def test_scale_estimates_the_variance_ratio_of_gaussian_errors():
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.05, 0.5, size=20000)
    err = rng.normal(scale=2.5 * sigma)
    cal = VarianceScaling()
    cal.update(err, sigma ** 2)
    assert cal.scale2 == pytest.approx(2.5 ** 2, rel=0.03)


def test_prior_before_any_observation_and_reset():
    cal = VarianceScaling(prior=2.0)
    assert cal.scale2 == 2.0
    cal.update([0.0, 0.0], [0.0, 0.0])  # nothing to scale yet
    assert cal.scale2 == 2.0
    cal.update([1.0], [4.0])
    assert cal.scale2 == pytest.approx(0.25)
    cal.reset()
    assert cal.scale2 == 2.0 and cal.n_updates == 0


def test_prior_weight_shrinks_towards_the_prior_and_fades_with_data():
    cal = VarianceScaling(prior=1.0, prior_weight=2.0)
    cal.update([0.0], [4.0])  # one chance zero error: not a zero scale
    assert cal.scale2 == pytest.approx(2.0 / 3.0)
    for _ in range(998):
        cal.update([3.0 * 2.0], [4.0])  # errors three times the spread
    # (sum E + w * prior * Vbar) / (sum V + w * Vbar), Vbar = 4
    assert cal.scale2 == pytest.approx((998 * 36.0 + 2.0 * 4.0) / (999 * 4.0 + 2.0 * 4.0), rel=1e-12)
    assert cal.scale2 == pytest.approx(9.0, rel=0.01)


def test_bad_input():
    with pytest.raises(ProbeError):
        VarianceScaling(prior=0.0)
    with pytest.raises(ProbeError):
        VarianceScaling(prior_weight=-1.0)
    cal = VarianceScaling()
    with pytest.raises(ProbeError, match="shape"):
        cal.update([1.0, 2.0], [1.0])
    with pytest.raises(ProbeError, match="finite"):
        cal.update([np.nan], [1.0])
    with pytest.raises(ProbeError, match="non-negative"):
        cal.update([1.0], [-1.0])
    assert cal.n_updates == 0 and cal.scale2 == 1.0  # a rejected update changes nothing
