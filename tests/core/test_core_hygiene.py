"""Model hygiene, batching invariance and bad input for the microscope one-liners."""

import pytest
import torch

import probe
from probe.attacks.deepfool import DeepFool
from probe.attacks.fmn import FMN
from probe.microscope import minimal_perturbation, robustness_curve
from probe.sensitivity import sensitivity
from probe.testing import AffineClassifier


class _Net(torch.nn.Module):
    """A small ReLU net with dropout and batch-norm: eval mode matters for it."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                                        torch.nn.Dropout(0.5), torch.nn.Linear(16, 3))

    def forward(self, x):
        return self.body(x)


def _state(model):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            [p.detach().clone() for p in model.parameters()],
            [b.detach().clone() for b in model.buffers()])


def _same(a, b):
    return a[0] == b[0] and a[1] == b[1] and all(torch.equal(u, v) for u, v in zip(a[2] + a[3], b[2] + b[3]))


CALLS = {
    "minimal_perturbation": lambda m, x: minimal_perturbation(m, x, norm="l2", steps=20),
    "robustness_curve": lambda m, x: robustness_curve(m, x, None, eps=[0.1, 0.5], steps=5),
    "sensitivity_ig": lambda m, x: sensitivity(m, x, method="integrated_gradients", steps=8),
    "sensitivity_occlusion": lambda m, x: sensitivity(m, x, method="occlusion"),
    "sensitivity_attack": lambda m, x: sensitivity(m, x, method="attack", norm="linf", steps=20),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_model_state_restored_and_inputs_untouched(name, device):
    model = _Net().to(device)
    model.train()
    model.body[0].weight.requires_grad_(False)
    x = torch.randn(10, 5, generator=torch.Generator().manual_seed(1)).to(device)
    x_copy, before = x.clone(), _state(model)
    CALLS[name](model, x)
    assert torch.equal(x, x_copy)
    assert _same(before, _state(model)), "mode, requires_grad, weights or buffers changed"
    assert all(p.grad is None for p in model.parameters())


def test_results_do_not_depend_on_batch_size():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    x = torch.randn(13, 5, generator=torch.Generator().manual_seed(2))
    a = minimal_perturbation(model, x, norm="linf", steps=30, batch_size=4)
    b = minimal_perturbation(model, x, norm="linf", steps=30, batch_size=None)
    assert torch.equal(a.success, b.success)
    assert torch.allclose(a.distance, b.distance, rtol=1e-4, atol=1e-6)
    c = sensitivity(model, x, method="integrated_gradients", steps=8, batch_size=3)
    d = sensitivity(model, x, method="integrated_gradients", steps=8, batch_size=None)
    assert torch.allclose(c.values, d.values, atol=1e-6)
    e = robustness_curve(model, x, None, eps=[0.05, 0.3], batch_size=5)
    f = robustness_curve(model, x, None, eps=[0.05, 0.3], batch_size=None)
    assert torch.equal(e.empirical, f.empirical)


def test_model_is_moved_to_the_requested_device_and_back():
    model = AffineClassifier.random(n_features=4)
    x = torch.randn(3, 4)
    minimal_perturbation(model, x, device="cpu")
    assert next(model.parameters()).device.type == "cpu"


@pytest.mark.parametrize("call", [
    lambda m, x: minimal_perturbation(m, x),
    lambda m, x: DeepFool()(m, x),
    lambda m, x: FMN()(m, x),
    lambda m, x: sensitivity(m, x, method="gradient"),
    lambda m, x: robustness_curve(m, x, None, eps=[0.1]),
])
def test_bad_input_raises_probe_error(call):
    model = AffineClassifier.random(n_features=6, n_classes=3)
    x = torch.randn(4, 6)
    nan = x.clone()
    nan[2, 3] = float("nan")
    with pytest.raises(probe.ProbeError, match=r"\(2, 3\)"):
        call(model, nan)
    with pytest.raises(probe.ProbeError, match="shape"):
        call(model, torch.randn(4, 5))
    with pytest.raises(probe.ProbeError, match="batch dimension"):
        call(model, torch.randn(0, 6))
    with pytest.raises(probe.ProbeError, match="returned shape"):
        call(lambda t: model(t)[:2], x)


def test_already_satisfied_and_bad_options_raise_probe_error():
    model = AffineClassifier.random(n_features=6, n_classes=3)
    x = torch.randn(4, 6)
    wrong = (model(x).argmax(1) + 1) % 3
    with pytest.raises(probe.ProbeError, match="already holds"):
        minimal_perturbation(model, x, probe.Misclassify(wrong))
    kept = minimal_perturbation(model, x, probe.Misclassify(wrong), already_satisfied="keep")
    assert kept.success.all() and (kept.distance == 0).all()
    with pytest.raises(probe.ProbeError, match="norm"):
        minimal_perturbation(model, x, norm="l7")
    with pytest.raises(probe.ProbeError, match="method"):
        minimal_perturbation(model, x, method="magic")
    with pytest.raises(probe.ProbeError, match="option"):
        minimal_perturbation(model, x, bogus=1)
    with pytest.raises(probe.ProbeError, match="cw"):
        minimal_perturbation(model, x, norm="linf", method="cw")
    with pytest.raises(probe.ProbeError, match="fixed-budget"):
        minimal_perturbation(model, x, method=probe.attacks.PGD(eps=0.1))
    with pytest.raises(probe.ProbeError, match="steps"):
        FMN(steps=0)(model, x)
    with pytest.raises(probe.ProbeError, match="eps"):
        robustness_curve(model, x, None, eps=[-0.1])
    with pytest.raises(probe.ProbeError, match="eps"):
        robustness_curve(model, x, None, eps=[float("nan")])
    with pytest.raises(probe.ProbeError, match="labels"):
        robustness_curve(model, x, [0, 1], eps=[0.1])
    with pytest.raises(probe.ProbeError, match="sensitivity method"):
        sensitivity(model, x, method="astrology")
    with pytest.raises(probe.ProbeError, match="target"):
        sensitivity(model, x, method="gradient", target=7)


@pytest.mark.parametrize("make", [
    lambda e: __import__("probe.attacks.fgsm", fromlist=["FGSM"]).FGSM(eps=e),
    lambda e: __import__("probe.attacks.margin_search", fromlist=["MarginSearch"]).MarginSearch(
        probe.attacks.PGD(eps=1.0), eps_init=e),
])
@pytest.mark.parametrize("bad", [0.0, -0.5, float("nan"), float("inf")])
def test_non_positive_budgets_raise_probe_error(make, bad):
    model = AffineClassifier.random(n_features=4)
    with pytest.raises(probe.ProbeError, match="eps"):
        make(bad)(model, torch.randn(3, 4))
