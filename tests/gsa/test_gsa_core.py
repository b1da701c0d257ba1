"""Problem checks, invariants (batch size, device, model state), the Lipschitz bridge, frames and plots."""

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

from probe import ProbeError, gsa
from probe.certify import lipschitz_bound
from probe.gsa import functions as F

matplotlib.use("Agg")

UNIT4 = {"num_vars": 4, "names": ["a", "b", "c", "d"], "bounds": [[-1.0, 1.0]] * 4}


def mlp(seed=0, d=4):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), nn.Tanh(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 1)).double()


@pytest.mark.parametrize("problem, match", [
    ({"names": ["a"]}, "'bounds'"),
    ({"num_vars": 2, "names": ["a", "a"], "bounds": [[0, 1], [0, 1]]}, "distinct"),
    ({"num_vars": 1, "names": ["a"], "bounds": [[1, 0]]}, "input 'a'"),
    ({"num_vars": 1, "names": ["a"], "bounds": [[0, 1]], "dists": ["gamma"]}, "'gamma'"),
    ({"num_vars": 1, "names": ["s"], "bounds": [[0, -1]], "dists": ["norm"]}, "input 's'"),
    ({"num_vars": 2, "names": ["a", "b"], "bounds": [[0, 1]] * 2, "corr": [[1, 2], [2, 1]]}, "positive definite"),
    ({"num_vars": 2, "names": ["a", "b"], "bounds": [[0, 1]] * 2, "corr": [[1, 0.5], [0.4, 1]]}, "symmetric"),
])
def test_bad_problems_name_the_bad_item(problem, match):
    with pytest.raises(ProbeError, match=match):
        gsa.as_problem(problem)


def test_sobol_and_morris_refuse_dependent_inputs():
    dep = dict(UNIT4, corr=np.eye(4) + 0.3 * (np.ones((4, 4)) - np.eye(4)))
    with pytest.raises(ProbeError, match="shapley"):
        gsa.sobol(mlp(), dep, n=16)
    with pytest.raises(ProbeError, match="shapley"):
        gsa.morris(mlp(), dep, trajectories=4)
    with pytest.raises(ProbeError, match="'b'"):
        gsa.morris(mlp(), dict(UNIT4, dists=["unif", "norm", "unif", "unif"]), trajectories=4)


def test_results_do_not_depend_on_batch_size():
    model = mlp()
    a = gsa.sobol(model, UNIT4, n=64, batch_size=None)
    b = gsa.sobol(model, UNIT4, n=64, batch_size=7)
    np.testing.assert_allclose(a.S1, b.S1, atol=1e-12)
    np.testing.assert_allclose(a.S2_conf, b.S2_conf, atol=1e-12, equal_nan=True)
    c = gsa.dgsm(model, UNIT4, n=64, batch_size=None, lipschitz=None)
    d = gsa.dgsm(model, UNIT4, n=64, batch_size=5, lipschitz=None)
    np.testing.assert_allclose(c.vi, d.vi, atol=1e-12)


def test_model_state_is_restored_and_device_followed(device):
    model = mlp().to(device).train()
    model[0].weight.requires_grad_(True)
    ref = gsa.dgsm(mlp(), UNIT4, n=128, lipschitz=None)
    res = gsa.dgsm(model, UNIT4, n=128)
    assert model.training and model[0].weight.requires_grad
    assert model[0].weight.device.type == device.type
    np.testing.assert_allclose(res.vi, ref.vi, rtol=1e-9)
    s = gsa.sobol(model, UNIT4, n=32, second_order=False)
    np.testing.assert_allclose(s.ST, gsa.sobol(mlp(), UNIT4, n=32, second_order=False).ST, rtol=1e-9)


def test_dgsm_of_a_linear_model_is_the_squared_slope():
    beta = torch.tensor([3.0, -1.0, 0.0, 0.5], dtype=torch.float64)
    res = gsa.dgsm(lambda x: x @ beta, UNIT4, n=256)
    np.testing.assert_allclose(res.vi, beta.numpy() ** 2, atol=1e-12)
    assert res.lipschitz is None  # a plain callable has no certified constant


def test_dgsm_vi_is_below_certified_lipschitz_squares():
    model = mlp(seed=1)
    L = gsa.input_lipschitz_bounds(model, 4)
    # soundness of the per-input constants: no sampled partial derivative exceeds them
    X = gsa.base_sample(UNIT4, 2048, method="random", seed=5) * 3
    _, G = gsa.evaluate_with_gradients(model, X)
    assert np.all(np.abs(G).max(axis=0) <= L)
    assert np.all(L <= lipschitz_bound(model).value + 1e-12)
    res = gsa.dgsm(model, UNIT4, n=512)
    np.testing.assert_allclose(res.lipschitz, L)
    assert np.all(res.vi <= res.vi_upper)
    df = res.to_frame()
    assert list(df.columns) == ["vi", "vi_conf", "dgsm", "dgsm_conf", "lipschitz", "vi_upper"]


def test_lipschitz_of_a_general_module_falls_back_to_the_global_bound():
    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp(seed=2)

        def forward(self, x):
            return self.net(x)

    model = Wrapped()
    L = gsa.input_lipschitz_bounds(model, 4)
    np.testing.assert_allclose(L, lipschitz_bound(model, input_shape=(4,)).value)
    with pytest.raises(ProbeError, match="Module"):
        gsa.input_lipschitz_bounds(lambda x: x.sum(1), 4)


def test_output_selection_and_bad_outputs():
    two = lambda x: torch.stack([x[:, 0], 5 * x[:, 1]], dim=1)  # noqa: E731
    res = gsa.sobol(two, UNIT4, n=64, output=1, second_order=False)
    assert np.all(res.ST[[0, 2, 3]] == 0) and np.all(res.S1[[0, 2, 3]] == 0)
    assert res.ST[1] == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ProbeError, match="output=2"):
        gsa.sobol(two, UNIT4, n=8, output=2)
    with pytest.raises(ProbeError, match="batch dimension"):
        gsa.sobol(lambda x: x.sum(), UNIT4, n=8)
    with pytest.raises(ProbeError, match="sample"):
        gsa.sobol(lambda x: torch.log(x[:, 0]), UNIT4, n=8)


def test_constant_model_warns_and_gives_zero():
    with pytest.warns(UserWarning, match="constant"):
        res = gsa.sobol(lambda x: torch.ones(x.shape[0], dtype=x.dtype), UNIT4, n=16, second_order=False)
    assert np.all(res.S1 == 0)


@pytest.mark.parametrize("make", [
    lambda: gsa.sobol(F.ishigami, F.ishigami_problem(), n=64),
    lambda: gsa.morris(F.ishigami, F.ishigami_problem(), trajectories=10),
    lambda: gsa.dgsm(F.ishigami, F.ishigami_problem(), n=64),
    lambda: gsa.shapley(F.ishigami, F.ishigami_problem(), n_outer=50, n_var=500, num_resamples=10),
])
def test_frames_indexed_by_names_and_plots_labelled(make):
    res = make()
    df = res.to_frame()
    assert list(df.index) == ["x1", "x2", "x3"] and df.index.name == "input"
    ax = res.plot()
    assert ax.get_title() and ax.get_xlabel() == "input" and ax.get_ylabel()
    assert len(ax.patches) >= 3
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x1", "x2", "x3"]
    import matplotlib.pyplot as plt

    plt.close("all")


def test_sobol_frame_holds_second_order_and_pairs():
    res = gsa.sobol(F.ishigami, F.ishigami_problem(), n=256)
    df = res.to_frame()
    assert list(df.columns) == ["S1", "S1_conf", "ST", "ST_conf", "S2"]
    assert set(df.loc["x1", "S2"]) == {"x2", "x3"}
    pairs = res.second_order_frame()
    assert len(pairs) == 3 and pairs.loc[("x1", "x3"), "S2"] == res.S2[0, 2]


def test_bounds_frame_reports_both_bridges():
    model = mlp(seed=3)
    st = gsa.sobol(model, UNIT4, n=256, second_order=False)
    dg = gsa.dgsm(model, UNIT4, n=256)
    frame = gsa.bounds_frame(st, dg)
    assert list(frame.columns) == ["ST", "ST_conf", "ST_upper", "vi", "vi_upper", "consistent"]
    assert frame["consistent"].all() and np.all(frame["vi"] <= frame["vi_upper"])
    with pytest.raises(ProbeError, match="same inputs"):
        gsa.bounds_frame(gsa.sobol(F.ishigami, F.ishigami_problem(), n=16), dg)


def test_latin_hypercube_has_one_point_per_stratum():
    X = gsa.latin_hypercube(UNIT4, 37, seed=4)
    strata = np.floor((X + 1) / 2 * 37).astype(int)
    for j in range(4):
        assert sorted(strata[:, j]) == list(range(37))


def test_dgsm_with_dependent_inputs_drops_the_poincare_bound():
    beta = torch.tensor([1.0, -2.0, 0.0, 0.5], dtype=torch.float64)
    dep = dict(UNIT4, corr=np.eye(4) + 0.5 * (np.ones((4, 4)) - np.eye(4)))
    res = gsa.dgsm(lambda x: x @ beta, dep, n=128)
    np.testing.assert_allclose(res.vi, beta.numpy() ** 2, atol=1e-12)
    assert np.all(np.isnan(res.dgsm))
    with pytest.raises(ProbeError, match="corr"):
        gsa.saltelli_sample(dep, 8)
