import copy

import pytest
import torch
from torch import nn

from probe.active.ensemble import Ensemble
from probe.errors import ProbeError


def _members(n=4, seed=0):
    out = []
    for m in range(n):
        torch.manual_seed(seed + m)
        out.append(nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)).double())
    return out


def test_vectorised_equals_members_one_by_one(device):
    members = _members()
    ens = Ensemble(members, device=device)
    x = torch.randn(7, 5, dtype=torch.float64, device=device)
    out = ens(x)
    assert out.shape == (4, 7, 3)
    for m, member in enumerate(members):
        torch.testing.assert_close(out[m], member.to(device)(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ens.loop(x), out, rtol=1e-12, atol=1e-12)


def test_per_member_inputs_and_members_round_trip():
    members = _members(3)
    ens = Ensemble(members, device="cpu")
    x = torch.randn(3, 2, 5, dtype=torch.float64)
    out = ens(x, in_dims=(0,))
    for m in range(3):
        torch.testing.assert_close(out[m], members[m](x[m]))
        rebuilt = ens.member(m)
        torch.testing.assert_close(rebuilt(x[m]), members[m](x[m]))


def test_caller_modules_untouched_and_training_moves_each_member_by_its_own_gradient():
    members = _members(2)
    before = [copy.deepcopy(m.state_dict()) for m in members]
    ens = Ensemble(members, device="cpu")
    x = torch.randn(4, 5, dtype=torch.float64)
    y = torch.randn(4, 3, dtype=torch.float64)
    loss = ((ens(x) - y) ** 2).sum()
    loss.backward()
    for m, member in enumerate(members):
        member.zero_grad()
        ((member(x) - y) ** 2).sum().backward()
        torch.testing.assert_close(ens.stacked["0__weight"].grad[m], member[0].weight.grad)
    for m, member in enumerate(members):
        for k, v in member.state_dict().items():
            assert torch.equal(v, before[m][k])


def test_bad_members():
    with pytest.raises(ProbeError, match="at least 2"):
        Ensemble(_members(1))
    other = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3), nn.Linear(3, 3)).double()
    with pytest.raises(ProbeError, match="member 1"):
        Ensemble([_members(1)[0], other])
    with pytest.raises(ProbeError, match="member index 5"):
        Ensemble(_members(2)).member(5)
