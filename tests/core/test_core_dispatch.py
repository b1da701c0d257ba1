"""minimal_perturbation's defaults for discrete spaces and gradient-free models."""

import pytest
import torch

import probe
from probe.microscope import minimal_perturbation
from probe.testing import AffineClassifier, affine_margin, onehot_minimal_edits


def test_onehot_space_dispatches_to_the_edit_search():
    k, length = 4, 10
    model = AffineClassifier.random(n_features=k * length, n_classes=2, seed=3)
    letters = torch.randint(0, k, (8, length), generator=torch.Generator().manual_seed(0))
    x = torch.nn.functional.one_hot(letters, k).transpose(1, 2).float()
    space = probe.OneHot(axis=1)
    res = minimal_perturbation(model, x, space=space, max_edits=length)
    assert res.norm == "l0" and res.method.startswith("edit")
    assert space.contains(x, res.x_adv).all()
    exact = onehot_minimal_edits(model, x)
    ok = res.success
    assert ok.float().mean() >= 0.75
    assert (res.distance[ok] >= exact[ok]).all()
    assert (model(res.x_adv[ok]).argmax(1) != model(x[ok]).argmax(1)).all()


def test_model_without_gradients_dispatches_to_hopskipjump():
    model = AffineClassifier.random(n_features=6, n_classes=3, seed=4)

    class BlackBox:
        differentiable = False

        def __call__(self, z):
            with torch.no_grad():
                return model(z)

    x = torch.randn(6, 6, generator=torch.Generator().manual_seed(1))
    res = minimal_perturbation(BlackBox(), x, norm="l2", max_queries=2000)
    assert res.method == "hopskipjump"
    ok = res.success
    assert ok.any()
    assert (res.distance[ok] >= affine_margin(model, x, "l2")[ok] * (1 - 1e-5)).all()


def test_gradient_methods_refuse_a_model_without_gradients():
    class BlackBox:
        differentiable = False

        def __call__(self, z):
            return z[:, :2]

    with pytest.raises(probe.ProbeError, match="gradient"):
        minimal_perturbation(BlackBox(), torch.randn(3, 4), method="fmn")
