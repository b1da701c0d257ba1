"""Shapley effects against closed forms for linear models with Gaussian inputs."""

import numpy as np
import pytest
import torch

from probe import ProbeError, gsa
from probe.gsa import functions as F


def linear(beta):
    b = torch.tensor(beta, dtype=torch.float64)
    return lambda x: x @ b.to(x.dtype)


def iooss_prieur(beta, sd, rho):
    """Iooss & Prieur (2019), Int. J. Uncertain. Quantif. 9, 493, section 3.1: Y = b1 X1 + b2 X2 + b3 X3,
    X1 independent of (X2, X3), corr(X2, X3) = rho."""
    b1, b2, b3 = beta
    s1, s2, s3 = sd
    c = rho * b2 * b3 * s2 * s3
    V = (b1 * s1) ** 2 + (b2 * s2) ** 2 + (b3 * s3) ** 2 + 2 * c
    return np.array([(b1 * s1) ** 2,
                     (b2 * s2) ** 2 * (1 - rho**2 / 2) + rho**2 * (b3 * s3) ** 2 / 2 + c,
                     (b3 * s3) ** 2 * (1 - rho**2 / 2) + rho**2 * (b2 * s2) ** 2 / 2 + c]) / V


def gaussian_problem(sd, corr, mean=None):
    d = len(sd)
    mean = np.zeros(d) if mean is None else mean
    return {"num_vars": d, "names": [f"x{i + 1}" for i in range(d)],
            "bounds": [[m, s] for m, s in zip(mean, sd)], "dists": ["norm"] * d, "corr": corr}


def test_general_closed_form_matches_iooss_prieur():
    beta, sd, rho = [1.0, -0.5, 2.0], [1.0, 2.0, 0.7], 0.6
    cov = np.diag(sd) @ np.array([[1, 0, 0], [0, 1, rho], [0, rho, 1]]) @ np.diag(sd)
    np.testing.assert_allclose(F.linear_gaussian_shapley(beta, cov), iooss_prieur(beta, sd, rho), atol=1e-12)


def test_correlated_linear_model_equals_closed_form():
    beta, sd, rho = [1.0, 1.0, 1.0], [1.0, 1.0, 2.0], 0.5
    corr = [[1, 0, 0], [0, 1, rho], [0, rho, 1]]
    exact = iooss_prieur(beta, sd, rho)  # (1/8, 19/64, 37/64)
    np.testing.assert_allclose(exact, [0.125, 0.296875, 0.578125])
    res = gsa.shapley(linear(beta), gaussian_problem(sd, corr, mean=[1.0, -2.0, 3.0]), seed=0, n_outer=4000,
                      n_var=40_000, conf_level=0.99)
    assert res.exact_permutations and res.permutations == 6
    assert res.Sh.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.abs(res.Sh - exact) <= res.Sh_conf), (res.Sh, res.Sh_conf, exact)
    assert np.all(res.Sh_conf < 0.03)
    assert list(res.to_frame().columns) == ["Sh", "Sh_conf"]


def test_random_permutations_equal_closed_form_in_five_dimensions():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(5, 5))
    cov = A @ A.T + np.eye(5)
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    beta = [1.0, 0.5, -1.0, 2.0, 0.0]
    exact = F.linear_gaussian_shapley(beta, cov)
    res = gsa.shapley(linear(beta), gaussian_problem(sd, corr), seed=1, permutations=600, n_outer=8,
                      n_var=20_000, conf_level=0.99)
    assert not res.exact_permutations
    assert res.Sh.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.abs(res.Sh - exact) <= res.Sh_conf), (res.Sh, res.Sh_conf, exact)
    # an input the model ignores still gets a share through its correlation with the others
    assert exact[4] > 0.01


def test_independent_additive_inputs_give_first_order_indices():
    """Without dependence and interaction, Sh_i = S1_i = ST_i = b_i^2 s_i^2 / V."""
    beta, sd = np.array([1.0, 2.0, 0.5]), np.array([1.0, 0.5, 3.0])
    res = gsa.shapley(linear(list(beta)), gaussian_problem(list(sd), None), seed=2, n_outer=2000)
    share = (beta * sd) ** 2 / np.sum((beta * sd) ** 2)
    np.testing.assert_allclose(res.Sh, share, atol=0.03)
    assert np.all(np.abs(res.Sh - share) <= res.Sh_conf)


def test_copula_keeps_marginals_and_correlation():
    problem = gsa.as_problem({"num_vars": 2, "names": ["u", "t"], "bounds": [[0, 2], [0, 1, 0.5]],
                              "dists": ["unif", "triang"], "corr": [[1, 0.8], [0.8, 1]]})
    X = gsa.base_sample(problem, 20_000, method="random", seed=0)
    assert X[:, 0].min() >= 0 and X[:, 0].max() <= 2 and abs(X[:, 0].mean() - 1) < 0.02
    assert abs(X[:, 1].mean() - 0.5) < 0.01
    assert np.corrcoef(X.T)[0, 1] > 0.7


def test_shapley_rejects_one_inner_draw():
    with pytest.raises(ProbeError, match="n_inner"):
        gsa.shapley(linear([1.0]), gaussian_problem([1.0], None), n_inner=1)
