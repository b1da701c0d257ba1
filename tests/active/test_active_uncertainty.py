import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probe.active.uncertainty import (
    max_vector_deviation,
    member_covariance,
    member_variance,
    rate_variance,
    vector_deviation,
)
from probe.errors import ProbeError


def test_variance_and_covariance_match_numpy(device):
    rng = np.random.default_rng(0)
    y = rng.normal(size=(5, 4, 3))
    t = torch.tensor(y, device=device)
    np.testing.assert_allclose(member_variance(t).cpu().numpy(), y.var(0))
    np.testing.assert_allclose(member_variance(t, unbiased=True).cpu().numpy(), y.var(0, ddof=1))
    cov = member_covariance(t).cpu().numpy()
    for i in range(4):
        np.testing.assert_allclose(cov[i], np.cov(y[:, i, :].T, bias=True), atol=1e-12)


def test_force_deviation_by_hand():
    # two members, one atom: forces (1, 0, 0) and (-1, 0, 0): deviation 1; a second atom agrees
    f = torch.tensor([[[1.0, 0, 0], [2.0, 2, 2]], [[-1.0, 0, 0], [2.0, 2, 2]]])
    torch.testing.assert_close(vector_deviation(f), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(max_vector_deviation(f.unsqueeze(1)), torch.tensor([1.0]))


def test_rate_variance_is_sum_of_quadratic_forms():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(6, 2, 5, 3))
    v = rng.normal(size=(2, 5, 3))
    expected = np.zeros(2)
    full = np.zeros(2)
    for b in range(2):
        for i in range(5):
            c = np.cov(f[:, b, i, :].T, bias=True)
            expected[b] += v[b, i] @ c @ v[b, i]
        full[b] = np.var((f[:, b] * v[b]).sum((-1, -2)))
    np.testing.assert_allclose(rate_variance(torch.tensor(f), torch.tensor(v)).numpy(), expected)
    np.testing.assert_allclose(rate_variance(torch.tensor(f), torch.tensor(v), block_diagonal=False).numpy(), full)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.1, 10.0))
def test_rate_variance_shift_invariant_and_quadratic_in_velocity(seed, scale):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(4, 1, 3, 3, generator=g, dtype=torch.float64)
    v = torch.randn(1, 3, 3, generator=g, dtype=torch.float64)
    base = rate_variance(f, v)
    torch.testing.assert_close(rate_variance(f + torch.randn(1, 1, 3, 3, generator=g, dtype=torch.float64), v), base)
    torch.testing.assert_close(rate_variance(f, scale * v), scale**2 * base)
    assert float(base) >= 0


def test_bad_shapes():
    with pytest.raises(ProbeError, match="at least 2 ensemble members"):
        member_variance(torch.zeros(1, 3))
    with pytest.raises(ProbeError, match="velocity has shape"):
        rate_variance(torch.zeros(3, 1, 4, 3), torch.zeros(1, 5, 3))
