"""Ground truth: minimal perturbations of affine models against their closed forms."""

import pytest
import torch

import probe
from probe.attacks.cw import CarliniWagner
from probe.attacks.deepfool import DeepFool
from probe.attacks.fmn import FMN
from probe.attacks.margin_search import MarginSearch
from probe.attacks.pgd import PGD
from probe.microscope import minimal_perturbation
from probe.testing import AffineClassifier, AffineRegressor, affine_margin, affine_threshold_distance

NORMS = ["l2", "linf", "l1"]


def _problem(device, n=48, d=10, c=4, seed=1, dtype=torch.float64):
    model = AffineClassifier.random(n_features=d, n_classes=c, seed=seed).to(device=device, dtype=dtype)
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed + 100), dtype=dtype).to(device)
    return model, x


@pytest.mark.parametrize("norm", NORMS)
def test_minimal_perturbation_matches_closed_form(norm, device):
    model, x = _problem(device)
    exact = affine_margin(model, x, norm)
    res = minimal_perturbation(model, x, norm=norm)
    assert res.success.all() and res.norm == norm
    ratio = res.distance / exact
    assert (ratio >= 1 - 1e-9).all(), "a real success can never be closer than the exact margin"
    assert (ratio <= 1.01).all(), f"worst ratio {ratio.max().item():.5f}"
    # the reported distance is the norm of the returned delta, and x_adv is misclassified
    assert torch.allclose(res.distance, probe.norms.lp_norm(res.delta, norm))
    assert (model(res.x_adv).argmax(1) != model(x).argmax(1)).all()


@pytest.mark.parametrize("norm", NORMS)
def test_deepfool_is_exact_in_one_step_on_affine_models(norm, device):
    model, x = _problem(device, c=5, seed=2)
    exact = affine_margin(model, x, norm)
    overshoot = 1e-6
    res = DeepFool(norm=norm, steps=1, overshoot=overshoot)(model, x)
    assert res.success.all()
    assert torch.allclose(res.distance, exact * (1 + overshoot), rtol=1e-6)


@pytest.mark.parametrize("norm", NORMS)
def test_fmn_close_to_closed_form(norm, device):
    model, x = _problem(device, seed=3)
    exact = affine_margin(model, x, norm)
    res = FMN(norm=norm, steps=100)(model, x)
    assert res.success.all()
    ratio = res.distance / exact
    assert (ratio >= 1 - 1e-9).all()
    # FMN is a local search: from x it follows the currently strongest class, which on a few inputs is not the
    # class of the nearest boundary; on most it converges to the margin itself
    assert ratio.median() <= 1.001 and (ratio <= 1.01).float().mean() >= 0.9


def test_cw_l2_close_to_closed_form(device):
    # binary: one boundary, so the hinge cannot follow the wrong class (the multi-class case is FMN's story)
    model, x = _problem(device, n=12, c=2, seed=4, dtype=torch.float32)
    exact = affine_margin(model, x, "l2")
    res = CarliniWagner(steps=80, binary_search_steps=5, lr=0.05)(model, x)
    assert (res.distance[~res.success] == float("inf")).all()
    assert res.success.float().mean() >= 0.9
    ratio = res.distance[res.success] / exact[res.success]
    assert (ratio >= 1 - 1e-5).all()
    assert ratio.median() <= 1.01
    # Adam's step (lr) sets the resolution near the boundary
    gap = res.distance[res.success] - exact[res.success]
    assert (gap <= 0.02 * exact[res.success] + 0.05).all()


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_margin_search_brackets_the_margin(norm, device):
    model, x = _problem(device, n=16, seed=5)
    exact = affine_margin(model, x, norm)
    res = MarginSearch(PGD(eps=1.0, norm=norm, steps=30, restarts=3), steps=12, eps_init=0.5)(model, x)
    assert res.success.all()
    ratio = res.distance / exact
    assert (ratio >= 1 - 1e-9).all()
    # the bracket is 2^-12 wide relative to its start; PGD nearly finds the margin at each budget
    assert (ratio <= 1.05).all()


def test_margin_search_wraps_fgsm_and_keeps_the_original_attack():
    from probe.attacks.fgsm import FGSM

    model, x = _problem("cpu", n=8, c=2, seed=6)
    inner = FGSM(eps=0.3, norm="linf")
    res = MarginSearch(inner, steps=15)(model, x)
    # a binary affine model is flipped by the sign step exactly at its margin
    exact = affine_margin(model, x, "linf")
    assert (res.distance >= exact * (1 - 1e-9)).all()
    assert torch.allclose(res.distance, exact, rtol=1e-3, atol=2 * 0.3 * 2.0**-15)
    assert inner.eps == 0.3


@pytest.mark.parametrize("norm", NORMS)
def test_threshold_and_shift_on_affine_regressor(norm, device):
    g = torch.Generator().manual_seed(7)
    model = AffineRegressor(torch.randn(2, 6, generator=g), torch.randn(2, generator=g)).to(device).double()
    x = torch.randn(12, 6, generator=g, dtype=torch.float64).to(device)
    with torch.no_grad():
        y = model(x)[:, 1]
    value = float(y.min()) - 0.5
    res = minimal_perturbation(model, x, probe.Threshold(value, output=1, direction="down"), norm=norm)
    exact = affine_threshold_distance(model, x, value, norm, output=1)
    assert res.success.all()
    assert (res.distance >= exact * (1 - 1e-9)).all() and (res.distance <= exact * 1.01).all()
    res = minimal_perturbation(model, x, probe.Shift(0.7, output=0), norm=norm, steps=20)
    w = model.linear.weight[0]
    q = {"l2": 2, "linf": 1, "l1": float("inf")}[norm]
    exact = torch.full((12,), 0.7, dtype=torch.float64, device=device) / w.norm(p=q)
    assert res.success.all()
    assert (res.distance >= exact * (1 - 1e-9)).all() and (res.distance <= exact * 1.01).all()


def test_minimal_perturbation_in_a_box_with_immutable_features(device):
    model, x = _problem(device, n=32, seed=8)
    x = x.clamp(-1, 1)
    mask = torch.zeros(10, dtype=torch.bool)
    mask[:3] = True
    space = probe.Box(-1.5, 1.5, mask=mask)
    res = minimal_perturbation(model, x, norm="l2", space=space)
    assert space.contains(x, res.x_adv).all()
    assert (res.delta[:, :3] == 0).all()
    ok = res.success
    assert (model(res.x_adv[ok]).argmax(1) != model(x[ok]).argmax(1)).all()
    # the box only removes options: never closer than the unconstrained margin
    assert (res.distance[ok] >= affine_margin(model, x, "l2")[ok] * (1 - 1e-9)).all()


def test_target_class_reaches_the_target(device):
    model, x = _problem(device, n=16, seed=9)
    target = (model(x).argmax(1) + 1) % 4
    res = minimal_perturbation(model, x, probe.TargetClass(target), norm="l2")
    assert res.success.all()
    assert torch.equal(model(res.x_adv).argmax(1), target)


@pytest.mark.parametrize("norm", NORMS)
def test_fmn_begun_at_a_far_success_comes_down_to_the_margin(norm, device):
    from probe.microscope import _fmn_from

    model, x = _problem(device, n=16, seed=10)
    exact = affine_margin(model, x, norm)
    near = DeepFool(norm=norm, steps=1, overshoot=1e-6)(model, x)
    start = x + 2 * near.delta                      # a success at twice the margin
    res = _fmn_from(start, norm=norm, steps=100)(model, x)
    assert res.success.all()
    ratio = res.distance / exact
    assert (ratio >= 1 - 1e-9).all() and (res.distance <= 2 * near.distance).all()
    assert ratio.median() <= 1.01
