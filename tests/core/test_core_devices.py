"""The device policy: explicit device, else the model's parameters, else the input tensor's, else the CPU."""

import pytest
import torch

import probe
from probe.devices import model_hygiene, resolve_device


def test_explicit_device_wins():
    assert resolve_device("cpu", torch.nn.Linear(2, 2).to("meta"), torch.zeros(1, device="meta")) == torch.device("cpu")


def test_parameters_give_the_device():
    assert resolve_device(None, torch.nn.Linear(2, 2).to("meta"), torch.zeros(1)) == torch.device("meta")


def test_buffers_give_the_device_of_a_module_without_parameters():
    m = torch.nn.BatchNorm1d(3, affine=False).to("meta")
    assert resolve_device(None, m, torch.zeros(1)) == torch.device("meta")


def test_parameterless_callable_follows_its_input():
    x = torch.zeros(2, 3, device="meta")
    assert resolve_device(None, lambda z: z.sum(1), x) == torch.device("meta")


@pytest.mark.parametrize("model", [lambda z: z, torch.nn.ReLU(), None])
def test_never_cuda_by_default(monkeypatch, model):
    # with CUDA present, a parameterless callable on a CPU input (or a non-tensor input) stays on the CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None, model, torch.zeros(2, 3)) == torch.device("cpu")
    assert resolve_device(None, model, [[0.0, 1.0]]) == torch.device("cpu")


def test_closure_over_cpu_tensors_runs_where_cuda_exists(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    w = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    res = probe.minimal_perturbation(lambda z: z @ w, torch.tensor([[1.0, 0.0], [0.0, 2.0]]), norm="l2")
    assert res.success.all() and res.x_adv.device.type == "cpu"
    # the margin of z @ w between the two logits is 2 |x0 - x1| / ||(2, -2)||_2
    assert torch.allclose(res.distance, torch.tensor([1.0, 2.0]) / 2**0.5, rtol=0.02)


def test_hygiene_leaves_a_parameterless_model_alone():
    f = torch.nn.Tanh()
    with model_hygiene(f, torch.device("cpu")) as m:
        assert m is f
