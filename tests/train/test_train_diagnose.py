import dataclasses

import pytest
import torch

import probe
from probe.devices import single_thread
from probe.diagnose import CHECKS, MaskingReport, gradient_masking, random_search
from probe.testing import AffineClassifier, affine_margin


class Quantize(torch.nn.Module):
    """Rounds inputs to 16 levels: the digits are multiples of 1/16, so clean predictions are unchanged,
    but the gradient through ``round`` is zero everywhere."""

    def forward(self, x):
        return torch.round(x * 16) / 16


class _ZeroGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.zeros_like(grad)


class ZeroGradient(torch.nn.Module):
    """Identity forward, zero gradient backward."""

    def forward(self, x):
        return _ZeroGrad.apply(x)


class Noisy(torch.nn.Module):
    """A randomised 'defence': Gaussian noise on the input, even in eval mode."""

    def forward(self, x):
        return x + 0.05 * torch.randn_like(x)


SETTINGS = dict(eps=0.1, norm="linf", space=probe.Box(0, 1), queries=300, surrogate_epochs=40)


@pytest.fixture(scope="module")
def reports(standard_mlp, digits):
    _, _, xt, yt = digits
    x, y = xt[:120], yt[:120]
    with single_thread():
        return {name: gradient_masking(model, x, y, **SETTINGS) for name, model in [
            ("normal", standard_mlp),
            ("quantized", torch.nn.Sequential(Quantize(), standard_mlp)),
            ("zero_gradient", torch.nn.Sequential(ZeroGradient(), standard_mlp)),
        ]}


def test_normal_network_is_not_flagged(reports):
    rep = reports["normal"]
    assert isinstance(rep, MaskingReport)
    assert not rep.suspicious, rep.summary()
    # the eps is informative: the attack succeeds on part of the inputs
    assert 0.2 < rep.rates["whitebox"] < 0.9
    assert rep.rates["unbounded"] == 1.0


@pytest.mark.parametrize("name", ["quantized", "zero_gradient"])
def test_masked_networks_are_flagged(reports, name):
    rep = reports[name]
    assert rep.suspicious
    for check in ("zero_gradients", "random_search_beats_gradient", "unbounded_fails", "transfer_beats_whitebox"):
        assert rep.flags[check], (check, rep.summary())
    assert not rep.flags["nonfinite_gradients"] and not rep.flags["stochastic_gradients"]
    # the masked model is exactly as vulnerable as the plain one, which the gradient-free search shows
    assert rep.rates["random_search"] > 3 * rep.rates["whitebox"]
    text = str(rep)
    assert "SUSPICIOUS" in text and "BPDA" in text


def test_report_is_frozen_and_explains_every_check(reports):
    rep = reports["quantized"]
    assert set(rep.flags) == set(CHECKS) == set(rep.explanations)
    assert all(len(v) > 80 for v in rep.explanations.values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        rep.eps = 1.0
    with pytest.raises(TypeError):
        rep.flags["zero_gradients"] = False
    frame = rep.to_frame()
    assert list(frame.index) == list(CHECKS) and frame["flag"].sum() == len(rep.raised)


def test_randomised_model_is_flagged(standard_mlp, digits):
    _, _, xt, yt = digits
    model = torch.nn.Sequential(Noisy(), standard_mlp)
    rep = gradient_masking(model, xt[:40], yt[:40], eps=0.1, queries=50, noise_samples=5, surrogate_epochs=10)
    assert rep.flags["stochastic_gradients"] and rep.suspicious


def test_inputs_and_model_left_as_found(standard_mlp, digits):
    _, _, xt, yt = digits
    x = xt[:30].clone()
    standard_mlp.train()
    grads = [None if p.grad is None else p.grad.clone() for p in standard_mlp.parameters()]
    try:
        gradient_masking(standard_mlp, x, yt[:30], eps=0.1, queries=30, noise_samples=2, surrogate_epochs=5)
        assert standard_mlp.training
        assert all(p.requires_grad for p in standard_mlp.parameters())
        assert all((g is None and p.grad is None) or torch.equal(g, p.grad)
                   for g, p in zip(grads, standard_mlp.parameters()))
    finally:
        standard_mlp.eval()
    assert torch.equal(x, xt[:30])


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_search_finds_points_beyond_the_exact_margin(norm):
    model = AffineClassifier.random(n_features=8, n_classes=3, seed=1)
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(0))
    margin = affine_margin(model, x, norm)
    y = model(x).argmax(1)
    below = random_search(model, x, y, eps=margin * 0.95, norm=norm, queries=200)
    assert not below.any()
    above = random_search(model, x, y, eps=margin * 1.5, norm=norm, queries=400)
    assert above.float().mean() >= 0.8


def test_bad_input_raises_probe_error(standard_mlp, digits):
    _, _, xt, yt = digits
    with pytest.raises(probe.ProbeError, match="eps"):
        gradient_masking(standard_mlp, xt[:10], yt[:10], eps=0.0)
    with pytest.raises(probe.ProbeError, match="labels"):
        gradient_masking(standard_mlp, xt[:10], yt[:9], eps=0.1)
    with pytest.raises(probe.ProbeError, match="class index"):
        gradient_masking(standard_mlp, xt[:3], torch.tensor([0, 1, 10]), eps=0.1)
    with torch.no_grad():
        wrong = (standard_mlp(xt[:10]).argmax(1) + 1) % 10
    with pytest.raises(probe.ProbeError, match="none of the inputs"):
        gradient_masking(standard_mlp, xt[:10], wrong, eps=0.1)
