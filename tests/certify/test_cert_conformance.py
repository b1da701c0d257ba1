"""The conformance suite passes for every shipped bound method and catches an unsound one."""

import pytest
import torch

from probe.certify.base import BoundMethod
from probe.certify.conformance import check_bound_method
from probe.certify.crown import AlphaCROWN


@pytest.mark.parametrize("method", ["ibp", "crown", AlphaCROWN(iterations=2)])
def test_shipped_methods_conform(method):
    check_bound_method(method, samples=100)


class CentreOnly(BoundMethod):
    """Unsound: returns the output at the centre as both bounds."""

    name = "centre-only"

    def bounds(self, graph, inputs, spec):
        vals = graph.forward(inputs.center)[-1].flatten(1)
        out = torch.einsum("nsk,nk->ns", spec, vals)
        return out, out


def test_unsound_method_is_caught():
    with pytest.raises(AssertionError, match="not exact on an affine layer"):
        check_bound_method(CentreOnly())
