"""SDP certificates: the S-lemma's closed form, soundness against the exact MILP minimum, tightness
against CROWN, and the first-order solver against cvxpy."""

import numpy as np
import pytest
import torch
from torch import nn

from probe import ProbeError
from probe.certify import (
    QuadraticNet,
    bound_outputs,
    certified_radius,
    quadratic_bounds,
    quadratic_network_form,
    sdp_bounds,
)
from probe.testing.milp import exact_linf_margin, exact_linf_minimum

cp = pytest.importorskip("cvxpy")


def _net(seed, sizes=(4, 10, 3)):
    g = torch.Generator().manual_seed(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        lin = nn.Linear(a, b).double()
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=g, dtype=torch.float64) / a ** 0.5)
            lin.bias.copy_(0.3 * torch.randn(b, generator=g, dtype=torch.float64))
        layers += [lin, nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def _pgd_min(net, x0, eps, c, norm="linf", steps=200, restarts=8, seed=0):
    """Smallest c . f found by projected gradient descent from random starts (an upper bound on the minimum)."""
    g = torch.Generator().manual_seed(seed)
    x = x0.repeat(restarts, 1) + eps * (2 * torch.rand(restarts, x0.shape[1], generator=g, dtype=x0.dtype) - 1)
    for _ in range(steps):
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad((net(x) @ c).sum(), x)
        with torch.no_grad():
            if norm == "linf":
                x = torch.minimum(torch.maximum(x - eps / 20 * grad.sign(), x0 - eps), x0 + eps)
            else:
                x = x - eps / 20 * grad / grad.norm(dim=1, keepdim=True).clamp(min=1e-12)
                d = x - x0
                x = x0 + d * (eps / d.norm(dim=1, keepdim=True).clamp(min=eps))
    with torch.no_grad():
        return float((net(x) @ c).min())


def _sample_min(net, x0, eps, c, norm="linf", n=4000, seed=1):
    g = torch.Generator().manual_seed(seed)
    if norm == "linf":
        x = x0 + eps * (2 * torch.rand(n, x0.shape[1], generator=g, dtype=x0.dtype) - 1)
    else:
        d = torch.randn(n, x0.shape[1], generator=g, dtype=x0.dtype)
        d = d / d.norm(dim=1, keepdim=True) * eps * torch.rand(n, 1, generator=g, dtype=x0.dtype) ** (1 / x0.shape[1])
        x = x0 + d
    with torch.no_grad():
        return float((net(x) @ c).min())


# --- the S-lemma -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_s_lemma_closed_form_at_the_origin(seed):
    g = torch.Generator().manual_seed(seed)
    B = torch.randn(6, 6, generator=g, dtype=torch.float64)
    A = B + B.T
    eps = 0.7
    cert = quadratic_bounds(A, x=torch.zeros(1, 6, dtype=torch.float64), eps=eps)
    lam = torch.linalg.eigvalsh(A)
    assert abs(cert.upper.item() - eps ** 2 * max(lam[-1].item(), 0.0)) < 1e-6
    assert abs(cert.lower.item() - eps ** 2 * min(lam[0].item(), 0.0)) < 1e-6


def _s_lemma_sdp(A, b, c, x0, eps):
    """max q over the ball as the lifted SDP (exact by the S-lemma), solved by Clarabel."""
    d = len(x0)
    V = cp.Variable((d + 1, d + 1), symmetric=True)
    Q = np.block([[np.array([[c]]), b[None] / 2], [b[:, None] / 2, A]])
    D = np.block([[np.array([[eps ** 2 - x0 @ x0]]), x0[None]], [x0[:, None], -np.eye(d)]])
    prob = cp.Problem(cp.Maximize(cp.trace(Q @ V)), [V >> 0, V[0, 0] == 1, cp.trace(D @ V) >= 0])
    prob.solve(solver="CLARABEL")
    return prob.value


@pytest.mark.parametrize("seed", range(4))
def test_s_lemma_matches_the_lifted_sdp_and_an_ascent(seed):
    g = torch.Generator().manual_seed(10 + seed)
    d = 5
    B = torch.randn(d, d, generator=g, dtype=torch.float64)
    A, b = B + B.T, torch.randn(d, generator=g, dtype=torch.float64)
    x0, eps = torch.randn(d, generator=g, dtype=torch.float64), 0.8
    cert = quadratic_bounds(A, b, 0.3, x=x0[None], eps=eps)
    ref = _s_lemma_sdp(A.numpy(), b.numpy(), 0.3, x0.numpy(), eps)
    assert abs(cert.upper.item() - ref) < 1e-5 * (1 + abs(ref))
    ref_lo = -_s_lemma_sdp(-A.numpy(), -b.numpy(), -0.3, x0.numpy(), eps)
    assert abs(cert.lower.item() - ref_lo) < 1e-5 * (1 + abs(ref_lo))
    # no point of the ball exceeds the bound; projected ascent reaches it
    x = (x0 + 0.1 * torch.randn(64, d, generator=g, dtype=torch.float64)).requires_grad_(True)
    for _ in range(500):
        q = ((x @ A) * x).sum(1) + x @ b + 0.3
        (grad,) = torch.autograd.grad(q.sum(), x)
        with torch.no_grad():
            x = x + 0.02 * grad
            dx = x - x0
            x = (x0 + dx * (eps / dx.norm(dim=1, keepdim=True).clamp(min=eps))).requires_grad_(True)
    with torch.no_grad():
        best = float((((x @ A) * x).sum(1) + x @ b + 0.3).max())
    assert best <= cert.upper.item() + 1e-9
    assert best >= cert.upper.item() - 1e-6


def test_s_lemma_hard_case():
    # b orthogonal to the top eigenvector and too small to fill the ball at mu = lambda_max
    A = torch.diag(torch.tensor([3.0, 1.0, -2.0], dtype=torch.float64))
    b = torch.tensor([0.0, 0.5, 0.0], dtype=torch.float64)
    eps = 1.0
    # maximiser: d_2 = 0.5 / (2 (3 - 1)) = 0.125, the rest of the radius along e_1
    want = 3 * (1 - 0.125 ** 2) + 1 * 0.125 ** 2 + 0.5 * 0.125
    cert = quadratic_bounds(A, b, x=torch.zeros(1, 3, dtype=torch.float64), eps=eps)
    assert abs(cert.upper.item() - want) < 1e-9


def test_quadratic_network_form_and_exact_bounds():
    torch.manual_seed(0)
    net = QuadraticNet(4, 6, 2).double()
    A, b, c = quadratic_network_form(net)
    x = torch.randn(5, 4, dtype=torch.float64)
    direct = torch.einsum("ni,kij,nj->nk", x, A, x) + x @ b.T + c
    assert torch.allclose(direct, net(x), atol=1e-10)
    cert = quadratic_bounds(A, b, c, x=x, eps=0.3)
    d = torch.randn(5, 2000, 4, dtype=torch.float64)
    d = d / d.norm(dim=2, keepdim=True) * 0.3
    with torch.no_grad():
        out = net((x[:, None] + d).reshape(-1, 4)).reshape(5, 2000, 2)
    assert (out <= cert.upper[:, None] + 1e-9).all() and (out >= cert.lower[:, None] - 1e-9).all()
    # the sphere holds the extremes of an indefinite form up to sampling: within a few percent of the range
    span = cert.upper - cert.lower
    assert ((cert.upper - out.amax(1)) < 0.1 * span).all()


# --- SDP-cert on ReLU networks -------------------------------------------------------------------------------------

C = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64)


@pytest.mark.parametrize("seed", range(5))
def test_sdp_lower_bound_is_sound_against_the_milp_minimum(seed):
    net = _net(seed)
    x = torch.randn(1, 4, generator=torch.Generator().manual_seed(100 + seed), dtype=torch.float64)
    eps = 0.4
    res = sdp_bounds(net, x, eps, spec=C[None])
    exact = exact_linf_minimum(net, x, eps, C)
    assert res.lower.item() <= exact + 1e-7
    assert exact <= _pgd_min(net, x, eps, C) + 1e-9
    assert res.lower.item() <= _sample_min(net, x, eps, C)
    exact_up = -exact_linf_minimum(net, x, eps, -C)
    assert res.upper.item() >= exact_up - 1e-7
    # the conic solver converged: its primal value and the certified dual agree
    assert abs(res.gap_lower.item()) < 1e-5 and abs(res.gap_upper.item()) < 1e-5


def test_sdp_is_sound_on_a_deeper_net_and_an_l2_ball():
    net = _net(7, (3, 8, 8, 2))
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    c = torch.tensor([1.0, -1.0], dtype=torch.float64)
    res = sdp_bounds(net, x, 0.3, spec=c[None])
    for i in range(2):
        assert res.lower[i].item() <= exact_linf_minimum(net, x[i], 0.3, c) + 1e-7
    l2 = sdp_bounds(net, x, 0.5, norm="l2", spec=c[None])
    crown = bound_outputs(net, x, 0.5, norm="l2", spec=c[None])
    for i in range(2):
        found = min(_pgd_min(net, x[i:i + 1], 0.5, c, norm="l2"), _sample_min(net, x[i:i + 1], 0.5, c, norm="l2"))
        assert l2.lower[i].item() <= found
    assert (l2.lower >= crown.lower - 1e-6).all()


def test_sdp_gap_to_exact_is_at_most_half_crowns_on_one_hidden_layer_nets():
    ratios = []
    for seed in range(8):
        net = _net(20 + seed, (4, 12, 3))
        x = torch.randn(1, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        eps = 0.5
        sdp = sdp_bounds(net, x, eps, spec=C[None]).lower.item()
        crown = bound_outputs(net, x, eps, spec=C[None]).lower.item()
        exact = exact_linf_minimum(net, x, eps, C)
        assert crown <= sdp + 1e-6 <= exact + 1e-6
        ratios.append((exact - sdp) / max(exact - crown, 1e-12))
    assert np.median(ratios) <= 0.5


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_first_order_solver_is_within_1e3_of_cvxpy(norm):
    for seed in range(2):
        net = _net(40 + seed, (3, 8, 3))
        x = torch.randn(1, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        ref = sdp_bounds(net, x, 0.4, norm=norm)
        fo = sdp_bounds(net, x, 0.4, norm=norm, solver="first-order", steps=1500)
        assert (fo.lower - ref.lower).abs().max() < 1e-3 and (fo.upper - ref.upper).abs().max() < 1e-3
        assert torch.isnan(fo.primal_lower).all()


def test_bound_outputs_and_certified_radius_dispatch_to_sdp():
    net = _net(3, (4, 8, 3))
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cert = bound_outputs(net, x, 0.2, method="sdp")
    assert cert.method == "sdp" and cert.lower.shape == (3, 3)
    assert torch.allclose(cert.lower, sdp_bounds(net, x, 0.2).lower)
    with torch.no_grad():
        out = net(x)
    assert (cert.lower <= out).all() and (out <= cert.upper).all()
    r_sdp = certified_radius(net, x, method="sdp", steps=8, eps_max=2.0)
    r_crown = certified_radius(net, x, steps=8, eps_max=2.0)
    exact = exact_linf_margin(net, x, eps_max=2.0)
    assert (r_sdp <= exact + 1e-9).all()
    # bisection on the same bracket: the SDP's radius is at least CROWN's up to one step of resolution
    assert (r_sdp >= r_crown - 2.0 / 2 ** 8).all()


def test_sdp_refuses_what_it_cannot_bound():
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.zeros(1, 3, dtype=torch.float64)
    with pytest.raises(ProbeError, match="tanh"):
        bound_outputs(net, x, 0.1, method="sdp")
    with pytest.raises(ProbeError, match="L1"):
        bound_outputs(_net(0), torch.zeros(1, 4, dtype=torch.float64), 0.1, norm="l1", method="sdp")
    with pytest.raises(ProbeError, match="solver"):
        sdp_bounds(_net(0), torch.zeros(1, 4, dtype=torch.float64), 0.1, solver="mosek-ish")


def test_sdp_invariants_batch_size_inputs_and_model_state():
    net = _net(5, (3, 6, 2))
    net.train()
    x = torch.randn(3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x0 = x.clone()
    a = bound_outputs(net, x, 0.3, method="sdp", batch_size=1)
    b = bound_outputs(net, x, 0.3, method="sdp", batch_size=None)
    assert torch.allclose(a.lower, b.lower, atol=1e-7) and torch.allclose(a.upper, b.upper, atol=1e-7)
    assert torch.equal(x, x0) and net.training
    # a box given per feature is bounded as such: a zero-width feature does not move
    box = sdp_bounds(net, x, lower=x - torch.tensor([0.3, 0.0, 0.3]), upper=x + torch.tensor([0.3, 0.0, 0.3]))
    assert (box.lower >= a.lower - 1e-7).all() and (box.upper <= a.upper + 1e-7).all()
