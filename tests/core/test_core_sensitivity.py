"""Sensitivity maps against their closed forms on affine models."""

import numpy as np
import pytest
import torch

import probe
from probe.sensitivity import METHODS, register_method, sensitivity
from probe.testing import AffineClassifier


def _affine(device, c=3, d=6, n=5, seed=0):
    model = AffineClassifier.random(n_features=d, n_classes=c, seed=seed).to(device).double()
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64).to(device)
    return model, x


def test_gradient_and_gradient_x_input_are_the_weights(device):
    model, x = _affine(device)
    W = model.linear.weight.detach()
    pred = model(x).argmax(1)
    g = sensitivity(model, x, method="gradient")
    assert torch.allclose(g.values, W[pred])
    gx = sensitivity(model, x, method="gradient_x_input", target=2)
    assert torch.allclose(gx.values, x * W[2])
    base = torch.full_like(x[0], 0.5)
    gx = sensitivity(model, x, method="gradient_x_input", target=[0, 1, 2, 0, 1], baseline=base)
    assert torch.allclose(gx.values, (x - 0.5) * W[torch.tensor([0, 1, 2, 0, 1])])


def test_integrated_gradients_exact_on_affine_and_complete_on_a_relu_net(device):
    model, x = _affine(device)
    W = model.linear.weight.detach()
    ig = sensitivity(model, x, method="integrated_gradients", target=1, steps=4)
    assert torch.allclose(ig.values, x * W[1])
    assert ig.extras["completeness_gap"].abs().max() < 1e-10
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2)).to(device).double()
    ig = sensitivity(net, x, method="integrated_gradients", target=0, steps=48)
    with torch.no_grad():
        change = net(x)[:, 0] - net(torch.zeros_like(x))[:, 0]
    assert torch.allclose(ig.values.sum(1), change, atol=5e-2 * change.abs().max().item())
    assert torch.allclose(ig.extras["completeness_gap"], ig.values.sum(1) - change, atol=1e-10)


def test_occlusion_matches_hand_computation_and_needs_no_gradient(device):
    model, x = _affine(device)
    W = model.linear.weight.detach()
    occ = sensitivity(model, x, method="occlusion", target=0)
    assert torch.allclose(occ.values, x * W[0])                          # window 1: w_i (x_i - 0)
    occ = sensitivity(model, x, method="occlusion", target=0, window=2, stride=1)
    contrib = x * W[0]                                                   # windows [i, i+1] for i = 0..4
    win = contrib[:, :-1] + contrib[:, 1:]
    expect = torch.zeros_like(x)
    expect[:, 0], expect[:, -1] = win[:, 0], win[:, -1]
    expect[:, 1:-1] = (win[:, :-1] + win[:, 1:]) / 2
    assert torch.allclose(occ.values, expect)

    class BlackBox:
        differentiable = False

        def __call__(self, z):
            with torch.no_grad():
                return model(z)

    occ_bb = sensitivity(BlackBox(), x, method="occlusion", target=0)
    assert torch.allclose(occ_bb.values, x * W[0])
    with pytest.raises(probe.ProbeError, match="occlusion"):
        sensitivity(BlackBox(), x, method="gradient")


def test_occlusion_on_images_covers_every_pixel():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(2 * 4 * 4, 3))
    x = torch.rand(2, 1, 6, 6)
    occ = sensitivity(net, x, method="occlusion", window=(1, 4, 4), stride=(1, 4, 4))
    assert occ.values.shape == x.shape and occ.extras["windows"] == 4      # starts 0 and 2 on each axis


def test_attack_based_map_is_the_minimal_perturbation(device):
    model, x = _affine(device, c=2)
    att = sensitivity(model, x, method="attack", norm="l2")
    w = (model.linear.weight[1] - model.linear.weight[0]).detach()
    cos = torch.nn.functional.cosine_similarity(att.values, w.expand_as(x), dim=1).abs()
    assert (cos > 1 - 1e-6).all()                                        # along the normal of the boundary
    assert att.extras["success"].all()
    l1 = sensitivity(model, x, method="attack", norm="l1")
    assert ((l1.values.abs() > 1e-9).sum(1) == 1).all()                  # L1: one feature, the largest |w_i|
    assert ((l1.values.abs().argmax(1)) == w.abs().argmax()).all()


def test_criterion_objective_is_the_margin(device):
    model, x = _affine(device)
    W = model.linear.weight.detach()
    z = model(x)
    y = z.argmax(1)
    other = z.scatter(1, y[:, None], float("-inf")).argmax(1)
    g = sensitivity(model, x, method="gradient", criterion=probe.Misclassify())
    assert torch.allclose(g.values, W[other] - W[y])


def test_register_method_dispatches_explicitly():
    def constant(model, x, objective, *, batch_size=None, value=1.0):
        return torch.full_like(x, value)

    register_method("constant_for_test", constant, forward_only=True)
    try:
        model, x = _affine("cpu")
        att = sensitivity(model, x, method="constant_for_test", value=3.0)
        assert att.method == "constant_for_test" and (att.values == 3).all()
        with pytest.raises(probe.ProbeError, match="option"):
            sensitivity(model, x, method="constant_for_test", nonsense=3)
    finally:
        METHODS.pop("constant_for_test")
    with pytest.raises(probe.ProbeError, match="callable"):
        register_method("x", 3)


def test_attribution_frame_and_plot():
    model, x = _affine("cpu")
    att = sensitivity(model, x, method="gradient")
    df = att.to_frame()
    assert len(df) == x.numel()
    # one bar per feature, largest |attribution| on top, bar lengths the attribution values
    import matplotlib.pyplot as plt

    v = att.values[2].numpy()
    ax = att.plot(index=2)
    order = np.argsort(np.abs(v))  # bottom to top
    assert len(ax.patches) == len(v)
    np.testing.assert_allclose([bar.get_width() for bar in ax.patches], v[order])
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(i) for i in order]
    red = np.array([bar.get_facecolor()[0] > bar.get_facecolor()[2] for bar in ax.patches])
    np.testing.assert_array_equal(red, v[order] >= 0)  # red for positive, blue for negative
    assert ax.get_title() == "gradient" and ax.get_xlabel() == "attribution"
    names = [f"f{i}" for i in range(len(v))]
    top = att.plot(index=2, names=names, top=3)
    assert [t.get_text() for t in top.get_yticklabels()] == [names[i] for i in order[-3:]]
    plt.close("all")
