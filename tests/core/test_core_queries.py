"""Per-input query counts and hyper-parameter checks before any work."""

import pytest
import torch

import probe
from probe.attacks import FGSM, FMN, PGD, CarliniWagner, DeepFool, MarginSearch
from probe.testing import AffineClassifier

ATTACKS = {
    "pgd": PGD(eps=0.6, norm="linf", steps=12),
    "deepfool": DeepFool(norm="l2"),
    "fmn": FMN(norm="l2", steps=15),
    "cw": CarliniWagner(steps=10, binary_search_steps=2),
    "fgsm": FGSM(eps=0.5),
    "margin": MarginSearch(PGD(eps=1.0, steps=5), steps=4),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_queries_do_not_depend_on_batch_size(name):
    model = AffineClassifier.random(n_features=6, n_classes=4, seed=3)
    x = torch.randn(13, 6, generator=torch.Generator().manual_seed(1))
    counts = [ATTACKS[name](model, x, batch_size=b).queries for b in (None, 4, 1)]
    assert all(torch.equal(counts[0], c) for c in counts[1:])
    assert (counts[0] >= 1).all()


def test_pgd_counts_each_input_until_its_own_success():
    # an input that breaks with the first step (step size 2.5 eps / 7 > its margin) is charged two
    # evaluations (the start and the first step), not the batch's average
    model = AffineClassifier.random(n_features=4, n_classes=2, seed=0)
    x = torch.randn(20, 4, generator=torch.Generator().manual_seed(0))
    margin = probe.testing.affine_margin(model, x, "linf")
    res = PGD(eps=float(margin.median()), norm="linf", steps=7, random_start=False)(model, x)
    easy = margin < 0.2 * float(margin.median())
    assert easy.any() and (res.queries[easy] == 2).all()
    assert (res.queries[~res.success] == 8).all()  # seven steps and the final check


class _Exploding(torch.nn.Module):
    def forward(self, x):
        raise AssertionError("the model was called before the hyper-parameters were checked")


@pytest.mark.parametrize("attack,match", [(PGD(eps=0.1, steps=0), "steps >= 1"), (PGD(eps=-1.0), "eps"),
                                          (DeepFool(overshoot=-1), "overshoot"), (FMN(gamma=2.0), "gamma"),
                                          (CarliniWagner(c=0), "c > 0"), (FGSM(eps=0), "eps"),
                                          (MarginSearch(PGD(eps=1.0, steps=0)), "steps >= 1")])
def test_validate_runs_before_any_model_call(attack, match):
    with pytest.raises(probe.ProbeError, match=match):
        attack(_Exploding(), torch.zeros(2, 3))
    with pytest.raises(probe.ProbeError, match=match):
        attack.validate()
