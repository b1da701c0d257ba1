"""The bound-propagation view of the captured model graph (:mod:`probe.graph`).

Bound propagation needs to know, for every operation, whether it is affine (and how to apply
its transpose and its absolute value), an element-wise activation (and its linear relaxation),
a max-pool, a sum of two nodes or a concatenation. :func:`build_graph` reads the one captured
graph of :func:`probe.graph.capture` (nothing here traces models) into these five kinds and
raises a :class:`~probe.ProbeError` naming the first operation it cannot bound.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ProbeError
from ..graph import LINEAR_KINDS, GraphNode, ModelGraph, NodeList, capture
from ..operator_norms import abs_linear_apply, batchnorm_affine

__all__ = ["Node", "Graph", "build_graph", "abs_apply", "affine_backward", "batchnorm_affine"]

_CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_BATCHNORMS = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
#: activations with a relaxation: the CROWN name of each graph activation
_ACTS = {"relu": "relu", "leaky_relu": "leaky_relu", "tanh": "tanh", "sigmoid": "sigmoid", "softplus": "convex",
         "elu": "convex", "exp": "convex", "gelu": "gelu", "silu": "silu",
         # monotone increasing: the interval between the end points' values is their exact range
         "hardtanh": "monotone", "log_sigmoid": "monotone", "hardsigmoid": "monotone", "celu": "monotone",
         "selu": "monotone"}


@dataclass
class Node:
    """One operation of the graph.

    ``kind`` is "input", "affine", "act", "maxpool", "add" (``a + alpha * b``) or "cat" (along
    ``dim``); ``inputs`` index earlier nodes. ``module`` is a Linear, ConvNd or BatchNorm layer for
    the nodes that are one (the user's own layer where the graph came from one), else None.
    """

    name: str
    kind: str
    inputs: list[int]
    fn: object = None
    module: nn.Module | None = None
    act: str = ""
    slope: float = 0.0
    shape: tuple[int, ...] = ()
    alpha: float = 1.0
    dim: int = 1
    source: str = ""
    abs_fn: Callable | None = None
    attrs: dict = field(default_factory=dict)

    def __call__(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(*xs)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """Slope of an element-wise activation at ``x`` (by autograd, so any smooth activation works)."""
        z = x.detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self.fn(z).sum(), z)
        return g

    def describe(self) -> str:
        return f"{self.name!r}{' at ' + self.source if self.source else ''}"


@dataclass
class Graph(NodeList):
    """Nodes in topological order; the last node is the model's output."""

    nodes: list[Node] = field(default_factory=list)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Values of every node on ``x``."""
        return self.values(x)


def _layer(g: GraphNode) -> nn.Module | None:
    """The node as an nn.Linear / ConvNd / BatchNorm holding the graph's own tensors (no copies)."""
    a = g.attrs
    m = g.module
    if g.kind == "linear":
        if isinstance(m, nn.Linear) and m.weight is a["weight"]:
            return m
        w = a["weight"]
        lin = nn.Linear(w.shape[1], w.shape[0], bias=a["bias"] is not None, device="meta")
        lin.weight, lin.bias = _param(w), _param(a["bias"])
        return lin
    if g.kind == "conv":
        w = a["weight"]
        d = w.dim() - 2
        if isinstance(m, _CONVS[d]) and m.weight is w and m.padding_mode == "zeros":
            return m
        conv = _CONVS[d](w.shape[1] * a["groups"], w.shape[0], w.shape[2:], stride=a["stride"],
                         padding=a["padding"], dilation=a["dilation"], groups=a["groups"],
                         bias=a["bias"] is not None, device="meta")
        conv.weight, conv.bias = _param(w), _param(a["bias"])
        return conv
    if g.kind == "batchnorm":
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_var is a["var"]:
            return m
        c = a["var"].shape[0]
        bn = nn.BatchNorm1d(c, eps=a["eps"], affine=a["weight"] is not None, device="meta")
        bn.weight, bn.bias = _param(a["weight"]), _param(a["bias"])
        bn.running_mean, bn.running_var = a["mean"], a["var"]
        return bn.eval()
    return None


def _param(t: torch.Tensor | None) -> nn.Parameter | None:
    if t is None:
        return None
    return t if isinstance(t, nn.Parameter) else nn.Parameter(t, requires_grad=False)


def _abs_fn(g: GraphNode) -> Callable | None:
    """|M| r for the linear part of nodes whose coefficients can be negative or that add an offset."""
    a = g.attrs
    if g.kind in ("shift", "identity"):
        return lambda r: r
    if g.kind in ("scale", "scale_shift"):
        c = a["value"] if g.kind == "scale" else a["scale"]
        return lambda r, c=c: r * (c.abs().to(r) if torch.is_tensor(c) else abs(c))
    if g.kind == "pad":
        return lambda r, p=a["pad"]: torch.nn.functional.pad(r, p, value=0.0)
    return None


def build_graph(model: nn.Module, x: torch.Tensor, *, output: int | str | None = None,
                reduce: Callable | None = None) -> Graph:
    """The bound-propagation graph of ``model`` on inputs shaped like ``x`` (see :func:`probe.graph.capture`).

    Raises
    ------
    ProbeError
        Naming the first operation, and its source line, that has no bound rule.
    """
    if not isinstance(model, nn.Module):
        raise ProbeError(f"bound propagation needs a torch.nn.Module, got {type(model).__name__}")
    return from_model_graph(capture(model, x, output=output, reduce=reduce))


def from_model_graph(mg: ModelGraph) -> Graph:
    """Read a captured :class:`~probe.graph.ModelGraph` into the bound-propagation kinds."""
    graph = Graph()
    for g in mg.nodes:
        common = dict(name=g.name, inputs=list(g.inputs), fn=g, shape=tuple(g.shape), source=g.source,
                      attrs=g.attrs)
        if g.kind == "input":
            node = Node(kind="input", **common)
        elif g.kind in LINEAR_KINDS:
            layer = _layer(g)
            if layer is g.module and g.path:
                common["name"] = g.path  # the user's own layer: named as in the model ("0", "rconvs.3")
            node = Node(kind="affine", module=layer, abs_fn=_abs_fn(g), **common)
        elif g.kind == "act":
            if g.act not in _ACTS:
                raise ProbeError(f"activation {g.act} ({g.describe()}) has no bound rule; bounded are "
                                 f"{', '.join(sorted(_ACTS))}")
            act = _ACTS[g.act]
            if g.act == "elu" and not (0 <= g.attrs["alpha"] <= 1 and g.attrs["scale"] == 1.0
                                       and g.attrs["input_scale"] == 1.0):
                raise ProbeError(f"activation {g.describe()}: ELU with alpha {g.attrs['alpha']} (or scaled) is not "
                                 "convex; bound propagation handles 0 <= alpha <= 1")
            if g.act == "leaky_relu" and not 0 <= g.attrs["slope"] <= 1:
                raise ProbeError(f"activation {g.describe()}: LeakyReLU with negative_slope {g.attrs['slope']} "
                                 "outside [0, 1] has no bound rule")
            node = Node(kind="act", act=act, slope=float(g.attrs.get("slope", 0.0)), **common)
        elif g.kind == "maxpool":
            if g.attrs["ceil_mode"] or any(d != 1 for d in g.attrs["dilation"]):
                raise ProbeError(f"max pooling {g.describe()} uses ceil_mode or dilation, which bound propagation "
                                 "does not handle")
            node = Node(kind="maxpool", **common)
        elif g.kind == "add":
            node = Node(kind="add", alpha=float(g.attrs["alpha"]), **common)
        elif g.kind == "cat":
            node = Node(kind="cat", dim=int(g.attrs["dim"]), **common)
        else:  # pragma: no cover - capture admits no other kinds
            raise ProbeError(f"no bound rule for {g.describe()}")
        graph.nodes.append(node)
    return graph


# --------------------------------------------------------------------------------------------------------------
# affine operations: apply |M| and the transpose


def abs_apply(node: Node, r: torch.Tensor) -> torch.Tensor:
    """``|M| r`` for the linear part M of an affine node (``r >= 0``): the radius of an interval."""
    if node.abs_fn is not None:
        return node.abs_fn(r)
    return abs_linear_apply(node.module, r, node.fn)


def affine_backward(node: Node, A: torch.Tensor, in_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pull a linear function ``A . y`` of the node's output back to its input.

    Parameters
    ----------
    A : torch.Tensor, shape (N, S, *out_shape)

    Returns
    -------
    A_in : torch.Tensor, shape (N, S, *in_shape)
        ``A M`` with M the linear part.
    offset : torch.Tensor, shape (N, S)
        ``A . f(0)``.
    """
    n, s = A.shape[:2]
    m = node.module
    if isinstance(m, nn.Linear):
        # Linear acts on the last dimension; any middle dimensions (sequence positions) ride along
        offset = torch.einsum("...o,o->...", A, m.bias).reshape(n, s, -1).sum(2) if m.bias is not None \
            else A.new_zeros(n, s)
        return torch.einsum("...o,oi->...i", A, m.weight), offset
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        scale, shift = batchnorm_affine(m)
        view = (1, 1, -1) + (1,) * (A.dim() - 3)
        return A * scale.view(view), (A * shift.view(view)).flatten(2).sum(2)
    kind = getattr(node.fn, "kind", None)
    if kind in ("reshape", "identity"):
        return A.reshape((n, s) + tuple(in_shape)), A.new_zeros(n, s)
    if kind in ("scale", "shift", "scale_shift") and A.shape[2:] == tuple(in_shape):
        # element-wise: A_in = A * c, offset = A . f(0)
        y0 = node(torch.zeros((1,) + tuple(in_shape), dtype=A.dtype, device=A.device))
        c = node.attrs["value"] if kind == "scale" else (node.attrs["scale"] if kind == "scale_shift" else 1.0)
        c = c.to(A) if torch.is_tensor(c) else c  # right-aligned broadcasting skips the (N, S) axes
        return A * c, (A * y0.unsqueeze(1)).flatten(2).sum(2)
    # convolutions, pools, slices, means, pads, permutations: the transpose is the vector-Jacobian product
    z = torch.zeros((n * s,) + tuple(in_shape), dtype=A.dtype, device=A.device, requires_grad=True)
    with torch.enable_grad():
        y = node(z)
        # keep the graph when A itself carries gradients (alpha-CROWN optimises through this product)
        (grad,) = torch.autograd.grad(y, z, grad_outputs=A.reshape(y.shape), create_graph=A.requires_grad)
    offset = (A.reshape(n, s, -1) * y.detach().reshape(n, s, -1)).sum(2)
    return grad.reshape((n, s) + tuple(in_shape)), offset
