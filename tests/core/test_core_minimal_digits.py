"""minimal_perturbation against its own parts and its peers on a trained ReLU MLP (scikit-learn digits).

On this model DeepFool used to stop on the decision boundary of images with pixels at 0 or 1 (top-2
scores tied: no success, although Carlini-Wagner flips the same images), and such tied points were
reported as failures although their argmax had moved. These tests hold minimal_perturbation to:
success wherever CW or PGD succeeds, a median within 2 % of CW's, success decided by the criterion on
the returned point, distance inf exactly on failures, and results that do not depend on batch_size.
"""

import pytest
import torch

import probe
from probe.attacks.pgd import PGD
from probe.microscope import _best_of, minimal_perturbation
from probe.results import AttackResult
from probe.testing import digits_mlp

N_TEST = 200
BOX = probe.Box(0.0, 1.0)


@pytest.fixture(scope="module")
def digits():
    """A 64-64-10 ReLU MLP trained on scikit-learn's digits (pixels in [0, 1]) and 200 test images."""
    net, x_test, _ = digits_mlp()
    x = x_test[:N_TEST]
    return net, x, net(x).argmax(1)


@pytest.fixture(scope="module")
def l2_results(digits):
    net, x, _ = digits
    auto = minimal_perturbation(net, x, norm="l2", space=BOX)
    cw = minimal_perturbation(net, x, norm="l2", space=BOX, method="cw")
    return auto, cw


def test_succeeds_wherever_cw_succeeds_and_median_within_cw(digits, l2_results):
    auto, cw = l2_results
    assert cw.success.float().mean() >= 0.9, "the reference attack must itself work for the comparison to mean much"
    missed = (cw.success & ~auto.success).nonzero().flatten().tolist()
    assert missed == [], f"CW flips inputs {missed} that minimal_perturbation gives up on"
    assert auto.distance.median() <= 1.02 * cw.distance.median()


def test_success_is_the_criterion_on_the_returned_point(digits, l2_results):
    net, x, pred = digits
    auto, _ = l2_results
    z = net(auto.x_adv)
    # the regression: points whose argmax had moved (top-2 scores tied) came back as failures
    assert torch.equal(auto.success, z.argmax(1) != pred)
    assert torch.equal(auto.success, probe.Misclassify().satisfied(z, pred))
    assert torch.equal(torch.isfinite(auto.distance), auto.success)
    top2 = z.topk(2, dim=1).values
    assert (top2[auto.success, 0] > top2[auto.success, 1]).all(), "a tied point satisfies nothing"
    # scored again one input at a time (another batch size, other rounding), every success still holds
    alone = torch.cat([net(auto.x_adv[i : i + 1]) for i in range(len(x))])
    assert torch.equal(probe.Misclassify().satisfied(alone, pred), auto.success)
    assert torch.allclose(auto.distance[auto.success], auto.delta[auto.success].norm(dim=1), rtol=1e-6)
    assert BOX.contains(x, auto.x_adv).all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_succeeds_wherever_pgd_succeeds_at_the_largest_budget(digits, norm):
    net, x, pred = digits
    xs = x[:100]
    sweep = {"linf": [0.02, 0.05, 0.1, 0.2], "l2": [0.25, 0.5, 1.0, 2.0]}[norm]
    pgd = PGD(eps=sweep[-1], norm=norm, steps=20, restarts=2)(net, xs, space=BOX)
    auto = minimal_perturbation(net, xs, norm=norm, space=BOX)
    assert pgd.success.float().mean() >= 0.9
    missed = (pgd.success & ~auto.success).nonzero().flatten().tolist()
    assert missed == [], f"PGD at eps={sweep[-1]} flips inputs {missed} that minimal_perturbation gives up on"
    assert torch.equal(auto.success, net(auto.x_adv).argmax(1) != pred[:100])
    # the robustness curve built on it never claims more robustness than PGD's at any budget of the sweep
    cur_min = probe.robustness_curve(net, xs, pred[:100], eps=sweep, norm=norm, attack="minimal", space=BOX)
    cur_pgd = probe.robustness_curve(net, xs, pred[:100], eps=sweep, norm=norm, space=BOX, steps=20)
    assert (cur_min.empirical <= cur_pgd.empirical + 1e-12).all()


def test_failure_iff_infinite_distance_and_batch_size_does_not_matter(digits):
    net, x, pred = digits
    # only the 8 pixels of the top row may change: some images can be flipped that way, others cannot
    mask = torch.ones(64, dtype=torch.bool)
    mask[:8] = False
    space = probe.Box(0.0, 1.0, mask=mask)
    xs = x[:24]
    a = minimal_perturbation(net, xs, norm="l2", space=space, batch_size=None)
    b = minimal_perturbation(net, xs, norm="l2", space=space, batch_size=7)
    assert 0 < int(a.success.sum()) < len(xs), "the mask should leave both successes and failures"
    for r in (a, b):
        assert torch.equal(torch.isfinite(r.distance), r.success)
        assert torch.equal(r.success, probe.Misclassify().satisfied(net(r.x_adv), pred[:24]))
        assert (r.delta[:, 8:] == 0).all()
    assert torch.equal(a.success, b.success)
    assert torch.allclose(a.distance[a.success], b.distance[a.success], rtol=1e-3)


def test_batch_size_does_not_matter_on_the_digits(digits):
    net, x, _ = digits
    xs = x[:60]
    for norm in ("l2", "linf"):
        a = minimal_perturbation(net, xs, norm=norm, space=BOX, batch_size=None)
        b = minimal_perturbation(net, xs, norm=norm, space=BOX, batch_size=16)
        assert torch.equal(a.success, b.success)
        assert torch.allclose(a.distance, b.distance, rtol=1e-3)


class Plateau(torch.nn.Module):
    """Two classes. Class 1 scores ``10 * sum_i relu(x_i - 0.6)`` against a constant 0.5 for class 0.

    Below 0.6 in every feature all gradients vanish: DeepFool, FMN and CW, which start at the input,
    see nothing; a PGD random start lands where some feature is above 0.6 and climbs from there.
    """

    def forward(self, x):
        z1 = 10 * torch.relu(x - 0.6).sum(1)
        return torch.stack([torch.full_like(z1, 0.5), z1], 1)


def _plateau_linf_margin(x):
    """Exact minimal L-inf distance in Box(0, 1): the smallest e with 10 * sum_i relu(min(x_i + e, 1) - 0.6) > 0.5."""
    lo, hi = torch.zeros(len(x), dtype=x.dtype), torch.ones(len(x), dtype=x.dtype)
    for _ in range(60):
        mid = (lo + hi) / 2
        ok = 10 * torch.relu((x + mid[:, None]).clamp(max=1) - 0.6).sum(1) > 0.5
        hi, lo = torch.where(ok, mid, hi), torch.where(ok, lo, mid)
    return hi


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_escalation_flips_what_deepfool_and_fmn_cannot(norm):
    model = Plateau().double()
    x = torch.rand(12, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 0.5
    plain = minimal_perturbation(model, x, norm=norm, space=BOX, escalate=False)
    assert not plain.success.any() and torch.isinf(plain.distance).all()
    pgd = PGD(eps=0.8, norm="linf", steps=20, restarts=3)(model, x, space=BOX)
    assert pgd.success.all()
    res = minimal_perturbation(model, x, norm=norm, space=BOX)
    assert res.success.all() and torch.isfinite(res.distance).all()
    assert (model(res.x_adv).argmax(1) == 1).all()
    exact = _plateau_linf_margin(x)
    # no success can be closer than the exact L-inf margin (and ||d||_2 >= ||d||_inf)
    assert (res.distance >= exact * (1 - 1e-9)).all()
    if norm == "linf":
        # the budget search finds what PGD's random starts reach, within twice the margin here
        assert (res.distance <= 2 * exact).all()


def test_best_of_takes_point_and_verdict_from_the_same_search():
    x = torch.zeros(3, 2)
    far, tied = torch.tensor([[3.0, 0.0]] * 3), torch.tensor([[0.5, 0.0]] * 3)
    inf = float("inf")
    # input 0: only the second search succeeds; input 1: both, the first is closer; input 2: neither
    first = AttackResult(x_adv=tied, delta=tied - x, success=torch.tensor([False, True, False]),
                         distance=torch.tensor([inf, 0.5, inf]), queries=torch.tensor([1, 1, 1]))
    second = AttackResult(x_adv=far, delta=far - x, success=torch.tensor([True, True, False]),
                          distance=torch.tensor([3.0, 3.0, inf]), queries=torch.tensor([2, 2, 2]))
    best = _best_of([first, second], "both")
    assert torch.equal(best.success, torch.tensor([True, True, False]))
    assert torch.equal(best.x_adv, torch.stack([far[0], tied[1], tied[2]]))
    assert torch.equal(best.distance, torch.tensor([3.0, 0.5, inf]))
    assert torch.equal(best.delta, best.x_adv - x) and torch.equal(best.queries, torch.tensor([3, 3, 3]))

