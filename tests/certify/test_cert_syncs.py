"""Bound propagation and smoothing on the device: host syncs per layer and per batch of noise stay bounded."""

import torch
from torch import nn

from probe.certify import Smoothing, bound_outputs
from probe.certify.base import compute_bounds, get_bound_method, make_input_set
from probe.certify.graph import build_graph
from probe.testing import count_host_syncs


def _mlp(depth, act=nn.ReLU, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Linear(6, 16), act()]
    for _ in range(depth - 1):
        layers += [nn.Linear(16, 16), act()]
    return nn.Sequential(*layers, nn.Linear(16, 3)).eval()


def _syncs(fn, device):
    fn()
    with count_host_syncs(device) as counter:
        fn()
    return counter.count


def _bound_syncs(net, x, method, device):
    graph = build_graph(net, x)  # traced outside the count: only the propagation is counted
    inputs = make_input_set(x, 0.1)
    return _syncs(lambda: compute_bounds(graph, inputs, get_bound_method(method)), device)


def test_bound_propagation_syncs_per_layer(device):
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(0)).to(device)
    extra = {}
    for method, act in (("ibp", nn.ReLU), ("crown", nn.ReLU), ("crown", nn.Tanh)):
        shallow, deep = (_bound_syncs(_mlp(d, act).to(device), x, method, device) for d in (2, 6))
        extra[(method, act.__name__)] = deep - shallow
    # four more hidden layers: IBP and CROWN on tanh never wait; CROWN on ReLU reads, once per layer,
    # which neurons are unstable (their number sizes the backward passes)
    assert extra == {("ibp", "ReLU"): 0, ("crown", "ReLU"): 4, ("crown", "Tanh"): 0}


def test_crown_on_the_device_matches_the_cpu_and_contains_samples(device):
    net = _mlp(2, nn.Tanh).double()
    x = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    cpu = bound_outputs(net, x, 0.2)
    dev = bound_outputs(net.to(device), x.to(device), 0.2)
    assert dev.lower.device.type == torch.device(device).type
    torch.testing.assert_close(dev.lower.cpu(), cpu.lower, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(dev.upper.cpu(), cpu.upper, atol=1e-9, rtol=1e-9)
    g = torch.Generator().manual_seed(2)
    z = x[:, None] + 0.2 * (2 * torch.rand(4, 2000, 6, generator=g, dtype=torch.float64) - 1)
    with torch.no_grad():
        y = net.cpu()(z)
    assert (y >= cpu.lower[:, None] - 1e-9).all() and (y <= cpu.upper[:, None] + 1e-9).all()


def test_smoothing_sampling_loop_does_not_wait_per_batch(device):
    net = _mlp(1).to(device)
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(3)).to(device)
    counts = {}
    for n in (1000, 4000):  # 6 and 24 batches of 500 noisy copies, plus the n0 = 100 selection samples
        smoothing = Smoothing(net, 0.25, n0=100, n=n, batch_size=500)
        counts[n] = _syncs(lambda s=smoothing: s.certify(x), device)
    assert counts[1000] == counts[4000], counts
