"""Property-based checks: interval bounds are nested in the budget and contain random points."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from probe.certify.base import bound_outputs


def _net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2)).double().eval()


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 5), e1=st.floats(0.0, 1.0), e2=st.floats(0.0, 1.0),
       norm=st.sampled_from(["linf", "l2", "l1"]), method=st.sampled_from(["ibp", "crown"]))
def test_bounds_are_nested_in_eps_for_ibp_and_sound_for_both(seed, e1, e2, norm, method):
    model = _net(seed)
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    small, big = sorted((e1, e2))
    a = bound_outputs(model, x, small, norm=norm, method=method)
    b = bound_outputs(model, x, big, norm=norm, method=method)
    if method == "ibp":
        assert (b.lower <= a.lower + 1e-12).all() and (a.upper <= b.upper + 1e-12).all()
    # the centre and a random corner-ish point of the small ball lie inside both
    d = torch.randn(2, 3, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    d = d / d.norm(p={"linf": float("inf"), "l2": 2, "l1": 1}[norm], dim=1, keepdim=True) * small
    with torch.no_grad():
        for pt in (x, x + d):
            out = model(pt)
            for c in (a, b):
                assert (c.lower <= out + 1e-9).all() and (out <= c.upper + 1e-9).all()
    assert (a.lower <= a.upper + 1e-12).all()
