"""The captured graph computes what the model computes, and names what it cannot capture."""

import pytest
import torch
from bpnetlite.bpnet import BPNet, CountWrapper
from models import DictHeads, DilatedTower, HandCNN, one_hot
from torch import nn

from probe import ProbeError
from probe.graph import capture


def _bpnet(seed=0, **kw):
    torch.manual_seed(seed)
    kw = {"n_filters": 8, "n_layers": 3, "n_control_tracks": 0, "verbose": False} | kw
    return BPNet(**kw).eval()


@pytest.mark.parametrize("make", [HandCNN, DilatedTower])
def test_graph_equals_model(make):
    model = make().eval()
    x = one_hot(5, 64)
    g = capture(model, x)
    assert g.nodes[0].kind == "input" and g.input_shape == (4, 64)
    with torch.no_grad():
        assert torch.allclose(g(x), model(x), atol=1e-6)


def test_residual_tower_has_adds_crops_and_activations():
    g = capture(DilatedTower(), one_hot(2, 64))
    kinds = g.kinds()
    assert kinds["add"] == 3 and kinds["slice"] == 1 and kinds["batchnorm"] == 3 and kinds["maxpool"] == 1
    assert {n.act for n in g.nodes if n.kind == "act"} == {"relu", "gelu", "softplus"}
    convs = [n for n in g.nodes if n.kind == "conv"]
    assert [c.attrs["dilation"] for c in convs] == [(1,), (2,), (4,), (8,), (1,)]


def test_bpnet_count_head_through_its_wrapper():
    bp = _bpnet()
    x = one_hot(3, 300)
    g = capture(CountWrapper(bp), x)
    with torch.no_grad():
        assert torch.allclose(g(x), CountWrapper(bp)(x), atol=1e-6)
    # the profile head does not feed the counts: it is pruned
    assert len([n for n in g.nodes if n.kind == "conv"]) == 4
    assert g.kinds()["mean"] == 1 and g.kinds()["slice"] == 1


def test_tuple_and_dict_outputs_by_index_name_and_reduction():
    bp = _bpnet()
    x = one_hot(2, 300)
    with torch.no_grad():
        prof = capture(bp, x, output=0, reduce=lambda y: y.sum(-1))
        assert torch.allclose(prof(x), bp(x)[0].sum(-1), atol=1e-5)
        heads = DictHeads().eval()
        for key in ("profile", "count"):
            assert torch.allclose(capture(heads, x, output=key)(x), heads(x)[key], atol=1e-6)
    with pytest.raises(ProbeError, match="returns 2 outputs: pass output=<index>"):
        capture(bp, x)
    with pytest.raises(ProbeError, match=r"with keys \['count', 'profile'\]"):
        capture(DictHeads(), x)
    with pytest.raises(ProbeError, match="is not a key"):
        capture(DictHeads(), x, output="logits")


class _Square(nn.Module):
    def forward(self, x):
        return (x * x).sum(-1)


class _Sorted(nn.Module):
    def forward(self, x):
        return torch.sort(x, dim=-1).values


def test_unsupported_operation_names_the_operation_and_the_source_line():
    with pytest.raises(ProbeError, match=r"mul.*test_graph_capture\.py:\d+"):
        capture(_Square(), torch.randn(2, 3))
    with pytest.raises(ProbeError, match=r"sort.*test_graph_capture\.py:\d+"):
        capture(_Sorted(), torch.randn(2, 3))


class _Branchy(nn.Module):
    def forward(self, x):
        if float(x.sum()) > 0:
            return x * 2.0
        return x * -1.0


def test_value_dependent_control_flow_is_refused():
    with pytest.raises(ProbeError, match="could not capture|does not reproduce"):
        capture(_Branchy(), torch.ones(2, 3))


def test_capture_leaves_the_model_in_its_mode():
    model = DilatedTower().train()
    capture(model, one_hot(2, 32))
    assert all(m.training for m in model.modules())
