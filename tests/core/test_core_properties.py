"""Property-based tests: projections of every space and the contract of every attack."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import probe
from probe.attacks.cw import CarliniWagner
from probe.attacks.deepfool import DeepFool
from probe.attacks.fgsm import FGSM
from probe.attacks.fmn import FMN
from probe.attacks.margin_search import MarginSearch
from probe.attacks.pgd import PGD
from probe.norms import lp_norm, project_ball
from probe.testing import check_attack, check_space

SETTINGS = settings(max_examples=40, deadline=None)


@SETTINGS
@given(n=st.integers(1, 4), d=st.integers(1, 7), lo=st.floats(-3, 0), width=st.floats(0, 4),
       seed=st.integers(0, 2**16), masked=st.booleans(), scale=st.floats(0.01, 10))
def test_box_projection_is_idempotent_and_inside(n, d, lo, width, seed, masked, scale):
    g = torch.Generator().manual_seed(seed)
    lower = lo + torch.rand(d, generator=g) * 0.5
    upper = lower + width
    mask = (torch.rand(d, generator=g) < 0.3) if masked else None
    space = probe.Box(lower, upper, mask=mask)
    x0 = lower + torch.rand(n, d, generator=g) * width
    x = x0 + scale * torch.randn(n, d, generator=g)
    check_space(space, x0, x)


@SETTINGS
@given(n=st.integers(1, 4), k=st.integers(2, 5), length=st.integers(1, 9), seed=st.integers(0, 2**16),
       unknown=st.booleans(), masked=st.booleans())
def test_onehot_projection_is_idempotent_and_inside(n, k, length, seed, unknown, masked):
    g = torch.Generator().manual_seed(seed)
    letters = torch.randint(0, k, (n, length), generator=g)
    x0 = torch.nn.functional.one_hot(letters, k).transpose(1, 2).float()
    if unknown:  # an unknown letter (DNA's N) is an all-zero position
        x0[:, :, 0] = 0
    mask = (torch.rand(length, generator=g) < 0.3) if masked else None
    space = probe.OneHot(axis=1, mask=mask)
    x = torch.randn(n, k, length, generator=g)
    check_space(space, x0, x)
    p = space.project(x0, x)
    assert (space.distance(x0, p) <= length).all()


@SETTINGS
@given(n=st.integers(1, 4), d=st.integers(1, 30), eps=st.floats(0.01, 5), norm=st.sampled_from(["linf", "l2", "l1"]),
       seed=st.integers(0, 2**16))
def test_ball_projection_is_idempotent_and_inside(n, d, eps, norm, seed):
    v = 3 * torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    p = project_ball(v, eps, norm)
    assert (lp_norm(p, norm) <= eps * (1 + 1e-9)).all()
    assert torch.allclose(project_ball(p, eps, norm), p, atol=1e-12)
    inside = lp_norm(v, norm) <= eps
    assert torch.equal(p[inside], v[inside])


ATTACKS = [
    FGSM(eps=0.4, norm="linf"),
    FGSM(eps=0.8, norm="l2"),
    PGD(eps=0.4, norm="linf", steps=10),
    PGD(eps=1.0, norm="l2", steps=10, restarts=2),
    PGD(eps=2.0, norm="l1", steps=10),
    DeepFool(norm="l2"),
    DeepFool(norm="linf"),
    DeepFool(norm="l1"),
    FMN(norm="l2", steps=30),
    FMN(norm="linf", steps=30),
    FMN(norm="l1", steps=30),
    CarliniWagner(steps=20, binary_search_steps=2, lr=0.05),
    MarginSearch(PGD(eps=1.0, norm="l2", steps=8), steps=4),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: f"{type(a).__name__}-{getattr(a, 'norm', '')}")
def test_every_attack_passes_check_attack(attack):
    check_attack(attack)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**16), which=st.sampled_from(range(len(ATTACKS))))
def test_check_attack_holds_on_random_problems(seed, which):
    check_attack(ATTACKS[which], seed=seed)


class _Cheater(FGSM):
    """Reports success by moving further than its budget: check_attack must catch it."""

    def run(self, f, x, criterion, reference, space, eps):
        return super().run(f, x, criterion, reference, space, eps * 10)


def test_check_attack_catches_a_broken_attack():
    with pytest.raises(AssertionError, match="budget"):
        check_attack(_Cheater(eps=0.2))


def test_check_space_catches_a_broken_projection():
    class Shrink(probe.Box):
        def project(self, x0, x):  # not idempotent
            return x0 + 0.5 * (x - x0)

    with pytest.raises(AssertionError, match="idempotent|contained"):
        check_space(Shrink(), torch.zeros(2, 3), torch.ones(2, 3))


def test_pgd_cross_entropy_surrogate_passes_check_attack_and_rejects_regression_criteria():
    check_attack(PGD(eps=0.5, norm="linf", steps=10, loss="ce"))
    model = torch.nn.Linear(3, 1)
    with pytest.raises(probe.ProbeError, match="Misclassify or TargetClass"):
        PGD(eps=0.5, loss="ce")(model, torch.randn(2, 3), probe.Threshold(100.0, direction="up"))
    with pytest.raises(probe.ProbeError, match="loss"):
        PGD(eps=0.5, loss="hinge")(model, torch.randn(2, 3))
