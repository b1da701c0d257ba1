r"""Interval bound propagation (Gowal et al., "On the Effectiveness of Interval Bound Propagation
for Training Verifiably Robust Models", 2018; Mirman et al. 2018).

Each node carries a box :math:`[l, u]`. An affine map :math:`y = Mx + b` sends the box with
centre :math:`c` and half-width :math:`r` to centre :math:`Mc + b` and half-width :math:`|M| r`;
monotone activations and max-pooling act on the end points; residual additions add the
boxes. Two refinements keep exact answers exact: the first affine layer after an L-p ball
uses :math:`\epsilon \lVert M_i \rVert_q` (Hölder, q the dual norm) instead of the box around
the ball, and the output specification is folded into the trailing affine layers before
their input box is concretized ("elision of the last layer", Gowal et al.).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import BoundMethod, InputSet, register_bound_method
from .graph import Graph, Node, abs_apply, affine_backward

__all__ = ["IBP", "interval_bounds", "backward_to_box", "non_monotone_range", "NON_MONOTONE"]

#: activations decreasing below one minimiser x* and increasing above it: x* (per GELU approximation)
NON_MONOTONE = {"gelu": {"none": -0.751792, "tanh": -0.752461}, "silu": {"none": -1.278465}}


def non_monotone_range(node: Node, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact range of GELU / SiLU over [l, u]: decreasing below their minimiser x*, increasing above it.

    The minimum is at ``clamp(x*, l, u)``, the maximum at one of the end points.
    """
    x_star = NON_MONOTONE[node.act][node.attrs.get("approximate", "none")]
    lo = node(torch.clamp(torch.full_like(l, x_star), l, u))
    # x* is known to 1e-6, where the function is flat to second order (error < 1e-12); the slack is for
    # rounding of the function values themselves
    slack = 1e-7 * (1 + lo.abs())
    return lo - slack, torch.maximum(node(l), node(u)) + slack


def _ball_radius(node: Node, inputs: InputSet, center: torch.Tensor) -> torch.Tensor | None:
    """Exact half-width of a Linear/Conv image of an L2/L1 ball (None where the box is as good)."""
    m = node.module
    e = inputs.eps.view((-1,) + (1,) * (center.dim() - 1))
    if isinstance(m, nn.Linear):
        q = 2 if inputs.norm == "l2" else float("inf")
        rows = m.weight.norm(p=q, dim=1)
        return e * rows
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and m.padding_mode == "zeros":
        ones = torch.ones_like(center)
        if inputs.norm == "l2":
            return e * m._conv_forward(ones, m.weight.square(), None).clamp(min=0).sqrt()
        # the largest |weight| of the kernel bounds the in-bounds taps (equal away from the border)
        amax = m.weight.abs().flatten(1).amax(1)
        out = m._conv_forward(ones, torch.zeros_like(m.weight), None)
        return e * (out + amax.view((1, -1) + (1,) * (out.dim() - 2)))
    return None


def interval_bounds(graph: Graph, inputs: InputSet) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Box ``(lower, upper)`` of every node of the graph, each of shape (N, *node.shape)."""
    out: list[tuple[torch.Tensor, torch.Tensor]] = []
    ball = [False] * len(graph.nodes)  # the node's value is still the input ball, reshaped
    for i, node in enumerate(graph.nodes):
        if node.kind == "input":
            out.append(inputs.box())
            ball[i] = inputs.norm in ("l2", "l1")
            continue
        src = [out[j] for j in node.inputs]
        if node.kind == "affine":
            (l, u), j = src[0], node.inputs[0]
            c, r = (l + u) / 2, (u - l) / 2
            if ball[j] and node.fn.kind in ("reshape", "identity"):
                ball[i] = True
            rb = _ball_radius(node, inputs, c) if ball[j] else None
            c2 = node(c)
            r2 = rb.expand_as(c2) if rb is not None and not ball[i] else abs_apply(node, r)
            out.append((c2 - r2, c2 + r2))
        elif node.kind == "maxpool" or (node.kind == "act" and node.act not in NON_MONOTONE):
            (l, u) = src[0]
            out.append((node(l), node(u)))
        elif node.kind == "act":
            (l, u) = src[0]
            out.append(non_monotone_range(node, l, u))
        elif node.kind == "add":
            (la, ua), (lb, ub) = src
            a = node.alpha
            out.append((la + a * lb, ua + a * ub) if a >= 0 else (la + a * ub, ua + a * lb))
        elif node.kind == "cat":
            out.append((torch.cat([s[0] for s in src], node.dim), torch.cat([s[1] for s in src], node.dim)))
        else:  # pragma: no cover - build_graph admits no other kinds
            raise AssertionError(node.kind)
    return out


def backward_to_box(graph: Graph, target: int, A: torch.Tensor, boxes: list, inputs: InputSet
                    ) -> torch.Tensor:
    """Lower bound of ``A . node_target`` by pulling A back through the affine nodes that feed it.

    Stops at the first node that is not a single-input affine map (or at the input) and
    concretizes there with that node's box (or with the input set itself).
    """
    offset = A.new_zeros(A.shape[:2])
    i = target
    while graph.nodes[i].kind == "affine":
        node = graph.nodes[i]
        j = node.inputs[0]
        A, b = affine_backward(node, A, graph.nodes[j].shape)
        offset = offset + b
        i = j
    if graph.nodes[i].kind == "input":
        return offset + inputs.concretize_lower(A)
    l, u = boxes[i]
    return offset + InputSet(l, "box", lower=l, upper=u).concretize_lower(A)


@register_bound_method
class IBP(BoundMethod):
    """Interval bound propagation; see the module docstring for the rules."""

    name = "ibp"

    def bounds(self, graph: Graph, inputs: InputSet, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        boxes = interval_bounds(graph, inputs)
        out = graph.output
        A = spec.reshape(spec.shape[:2] + graph.nodes[out].shape)
        both = backward_to_box(graph, out, torch.cat([A, -A], 1), boxes, inputs)
        s = spec.shape[1]
        return both[:, :s], -both[:, s:]

