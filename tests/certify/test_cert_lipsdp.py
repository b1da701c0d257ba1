"""LipSDP: the built-in interior-point method against closed forms, cvxpy and the other bounds."""

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks.lipsdp import old_formulation
from probe import ProbeError
from probe.certify import lipsdp as L
from probe.certify.graph import build_graph
from probe.certify.lipschitz import empirical_lipschitz_lower_bound, lipschitz_bound


def _layers(net, n_in):
    graph = build_graph(net, torch.zeros(2, n_in, dtype=next(net.parameters()).dtype))
    return L.dense_layers(graph)


def _reference(weights, slopes, variant):
    """The program as first written in cvxpy (one dense D x D matrix per neuron), solved by Clarabel."""
    return math.sqrt(old_formulation(weights, slopes, variant)[0])


NETS = {
    "relu": lambda: nn.Sequential(nn.Linear(4, 10), nn.ReLU(), nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3)),
    "tanh-relu": lambda: nn.Sequential(nn.Linear(2, 10), nn.ReLU(), nn.Linear(10, 12), nn.Tanh(), nn.Linear(12, 2)),
    "leaky-sigmoid": lambda: nn.Sequential(nn.Linear(5, 8), nn.LeakyReLU(0.1), nn.Linear(8, 8), nn.Sigmoid(),
                                           nn.Linear(8, 3)),
}


@pytest.mark.parametrize("variant", ["neuron", "layer"])
@pytest.mark.parametrize("kind", sorted(NETS))
def test_value_equals_the_dense_cvxpy_formulation(kind, variant):
    torch.manual_seed(5)
    net = NETS[kind]()
    weights, slopes = _layers(net, net[0].in_features)
    ref = _reference(weights, slopes, variant)
    got = lipschitz_bound(net, method=f"lipsdp-{variant}")
    assert got.value == pytest.approx(ref, rel=1e-4)
    assert got.layers["max_eigenvalue"] < 0
    # the sparse cvxpy path solves the same program
    assert lipschitz_bound(net, method=f"lipsdp-{variant}", solver="clarabel").value == pytest.approx(ref, rel=1e-4)


def test_closed_form_for_diagonal_relu_networks():
    # f(x) = 3 relu(diag(d) x) has Lipschitz constant 3 max|d| = 6. The LMI splits into 2 x 2 blocks
    # [[-rho, d_i t_i], [d_i t_i, 9 - 2 t_i]] <= 0, i.e. rho >= d_i^2 t_i^2 / (2 t_i - 9), least at t_i = 9:
    # rho* = 9 max d_i^2 = 36 for both variants (one t serves every neuron)
    d = torch.tensor([0.5, -2.0, 1.5, 1.0], dtype=torch.float64)
    net = nn.Sequential(nn.Linear(4, 4, bias=False), nn.ReLU(), nn.Linear(4, 4, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.diag(d))
        net[2].weight.copy_(3.0 * torch.eye(4, dtype=torch.float64))
    for method in ("lipsdp-neuron", "lipsdp-layer"):
        assert lipschitz_bound(net, method=method).value == pytest.approx(6.0, rel=1e-6)


def test_single_linear_layer_is_its_spectral_norm():
    torch.manual_seed(1)
    lin = nn.Sequential(nn.Linear(7, 4))
    sv = torch.linalg.matrix_norm(lin[0].weight.detach().double(), 2).item()
    for method in ("lipsdp-neuron", "lipsdp-layer"):
        assert lipschitz_bound(lin, method=method).value == pytest.approx(sv, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_order_of_the_bounds_on_random_nets(seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 2))
    neuron = lipschitz_bound(net, method="lipsdp-neuron").value
    layer = lipschitz_bound(net, method="lipsdp-layer").value
    spectral = lipschitz_bound(net).value
    lower = empirical_lipschitz_lower_bound(net, torch.randn(16, 3), steps=30, seed=seed)
    assert lower <= neuron * (1 + 1e-6)
    assert neuron <= layer * (1 + 1e-6)
    assert layer <= spectral * (1 + 1e-6)


def test_certificate_is_checked_not_trusted(monkeypatch):
    # a solver that returns half the optimal rho: the check raises rho back to a sound value
    torch.manual_seed(3)
    net = NETS["relu"]()
    exact = lipschitz_bound(net, method="lipsdp-neuron").value
    solve = L._solve_ipm

    def sloppy(*args, **kwargs):
        rho, t, gap = solve(*args, **kwargs)
        return 0.25 * rho, t, gap

    monkeypatch.setattr(L, "_solve_ipm", sloppy)
    got = lipschitz_bound(net, method="lipsdp-neuron")
    assert got.layers["rho_increase"] > 0
    assert got.layers["max_eigenvalue"] < 0
    assert got.value >= exact * (1 - 1e-7)
    assert got.value == pytest.approx(exact, rel=1e-6)


def test_check_rejects_multipliers_no_rho_can_repair():
    torch.manual_seed(3)
    weights, slopes = _layers(NETS["relu"](), 4)
    lmi = L._lmi(weights, slopes)
    # T = 0 leaves W_l^T W_l alone on the hidden block: positive, whatever rho
    with pytest.raises(ProbeError, match="hidden block"):
        L._certify(lmi, 1e6, np.zeros(lmi.n))


def test_returned_point_satisfies_the_lmi():
    torch.manual_seed(4)
    weights, slopes = _layers(NETS["tanh-relu"](), 2)
    lmi = L._lmi(weights, slopes)
    rho, t, gap = L._solve_ipm(lmi, "neuron", 1e-8, False)
    assert np.linalg.eigvalsh(L._matrix(lmi, rho, t)).max() < 0
    assert 0 <= gap <= 1e-6 * rho
    assert (t >= 0).all()


def test_warns_before_a_long_solve(monkeypatch):
    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(L, "_solve_ipm", stop)
    big = nn.Sequential(nn.Linear(64, 700), nn.ReLU(), nn.Linear(700, 700), nn.ReLU(), nn.Linear(700, 10))
    with pytest.warns(UserWarning, match=r"1400 neurons \(a 1464 x 1464 matrix inequality\).*about \d+ s"):
        with pytest.raises(Stop):
            lipschitz_bound(big, method="lipsdp-neuron")
    assert L.lipsdp_expected_seconds(64, 1400) > L._WARN_SECONDS
    # a small net solves without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monkeypatch.undo()
        lipschitz_bound(NETS["relu"](), method="lipsdp-neuron")


def test_progress_bar_and_bad_variant():
    torch.manual_seed(0)
    net = NETS["relu"]()
    assert lipschitz_bound(net, method="lipsdp-neuron", progress=True).value == pytest.approx(
        lipschitz_bound(net, method="lipsdp-neuron", progress=False).value, rel=1e-12)
    with pytest.raises(ProbeError, match="variant 'block'"):
        L.lipsdp(net, build_graph(net, torch.zeros(2, 4)), variant="block")


def test_low_accuracy_solver_still_returns_a_sound_bound():
    # SCS stops at 1e-4 here; its point is checked, and rho raised where it falls short of the LMI
    torch.manual_seed(5)
    net = NETS["tanh-relu"]()
    exact = lipschitz_bound(net, method="lipsdp-neuron").value
    rough = lipschitz_bound(net, method="lipsdp-neuron", solver="scs", solver_options={"eps_abs": 1e-4,
                                                                                       "eps_rel": 1e-4})
    assert rough.layers["max_eigenvalue"] < 0
    assert rough.value >= exact * (1 - 1e-9)
