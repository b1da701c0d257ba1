"""Global sensitivity of a property model over descriptor ranges (domains.chem.gsa)."""

import numpy as np
import pytest
import torch

from probe import ProbeError

NAMES = ["MolLogP", "TPSA", "MolWt", "NumHDonors", "NumRotatableBonds"]


@pytest.fixture(scope="module")
def solubility_features():
    from domains.chem import datasets, featurize

    df = datasets.solubility().iloc[::6]  # 214 molecules spread over the whole set
    return featurize(df.set_index("name")["smiles"], kind="descriptors", descriptors=tuple(NAMES)), df["logS"]


def linear_fit(features, y):
    """Least squares on the standardised descriptors, as a torch model."""
    X = features.X.double().numpy()
    A = np.c_[X, np.ones(len(X))]
    coef = np.linalg.lstsq(A, np.asarray(y, dtype=float), rcond=None)[0]
    lin = torch.nn.Linear(X.shape[1], 1).double()
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(coef[:-1])[None])
        lin.bias.fill_(coef[-1])
    return lin, coef[:-1]


def test_descriptor_model_reads_raw_units(solubility_features):
    from domains.chem import descriptor_model

    features, y = solubility_features
    lin, _ = linear_fit(features, y)
    fn = descriptor_model(lin, features)
    raw = torch.as_tensor(features.raw[:7])
    np.testing.assert_allclose(fn(raw).detach().numpy(), lin(features.X[:7].double()).detach().numpy(), rtol=1e-6)


def test_linear_model_indices_equal_closed_form(solubility_features):
    """For f = sum_j w_j (x_j - m_j) / s_j with x_j ~ U(a_j, b_j): S_j = ST_j = (w_j (b_j - a_j) / s_j)^2 / sum."""
    from domains.chem import descriptor_problem, descriptor_sobol

    features, y = solubility_features
    lin, w = linear_fit(features, y)
    problem = descriptor_problem(features)
    width = np.diff(np.asarray(problem["bounds"]), axis=1)[:, 0]
    share = (w * width / features.scale) ** 2
    share /= share.sum()
    res = descriptor_sobol(lin, features, n=512, second_order=False)
    np.testing.assert_allclose(res.S1, share, atol=0.02)
    np.testing.assert_allclose(res.ST, share, atol=0.02)
    # solubility is lipophilicity first (the general solubility equation, Jain & Yalkowsky 2001)
    assert res.to_frame()["ST"].idxmax() == "MolLogP"


def test_correlated_descriptors_get_shapley_shares(solubility_features):
    from domains.chem import descriptor_problem, descriptor_shapley

    features, y = solubility_features
    lin, _ = linear_fit(features, y)
    problem = descriptor_problem(features, correlated=True)
    R = np.asarray(problem["corr"])
    assert R[NAMES.index("TPSA"), NAMES.index("NumHDonors")] > 0.5  # polar surface and H donors move together
    res = descriptor_shapley(lin, features, n_outer=200, n_var=2000, num_resamples=20)
    assert res.Sh.sum() == pytest.approx(1.0, abs=1e-9)
    assert list(res.to_frame().index) == NAMES


def test_constant_descriptor_is_named(solubility_features):
    from domains.chem import descriptor_problem

    features, _ = solubility_features
    with pytest.raises(ProbeError, match="NumHDonors"):
        descriptor_problem(features, ["MolLogP", "NumHDonors"], quantiles=(0.0, 0.05))
    with pytest.raises(ProbeError, match="LogX"):
        descriptor_problem(features, ["LogX"])
