"""A feed-forward model as a small graph of boundable operations, read with ``torch.fx``.

Bound propagation needs to know, for every operation, whether it is affine (and how to
apply its transpose and its absolute value), an element-wise monotone activation (and
its linear relaxation), a max-pool, or a residual addition. :func:`build_graph` traces
the model once (nested ``nn.Sequential`` and plain ``forward`` methods alike) and raises
a :class:`~probe.ProbeError` naming the first operation it cannot bound.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ProbeError
from ..operator_norms import abs_linear_apply, batchnorm_affine

__all__ = ["Node", "Graph", "build_graph", "abs_apply", "affine_backward", "batchnorm_affine"]

_AFFINE_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
                   nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                   nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
_ACT_MODULES = {nn.ReLU: "relu", nn.LeakyReLU: "leaky_relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid",
                nn.Softplus: "convex", nn.ELU: "convex"}
_ACT_FUNCTIONS = {F.relu: "relu", torch.relu: "relu", F.leaky_relu: "leaky_relu", torch.tanh: "tanh",
                  F.tanh: "tanh", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid"}
_ACT_METHODS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid"}
_MAXPOOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)


@dataclass
class Node:
    """One operation of the graph.

    ``kind`` is "input", "affine", "act", "maxpool" or "add"; ``inputs`` index earlier nodes.
    """

    name: str
    kind: str
    inputs: list[int]
    fn: object = None
    module: nn.Module | None = None
    act: str = ""
    slope: float = 0.0
    shape: tuple[int, ...] = ()

    def __call__(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(*xs)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """Slope of an element-wise activation at ``x`` (by autograd, so any smooth activation works)."""
        z = x.detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self.fn(z).sum(), z)
        return g


@dataclass
class Graph:
    """Nodes in topological order; the last node is the model's output."""

    nodes: list[Node] = field(default_factory=list)

    @property
    def output(self) -> int:
        return len(self.nodes) - 1

    def consumers(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {i: [] for i in range(len(self.nodes))}
        for i, n in enumerate(self.nodes):
            for j in n.inputs:
                out[j].append(i)
        return out

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Values of every node on ``x``."""
        vals: list[torch.Tensor] = []
        for n in self.nodes:
            vals.append(x if n.kind == "input" else n(*[vals[j] for j in n.inputs]))
        return vals

    def infer_shapes(self, x: torch.Tensor) -> None:
        with torch.no_grad():
            for n, v in zip(self.nodes, self.forward(x[:1])):
                n.shape = tuple(v.shape[1:])


def _check_module(name: str, m: nn.Module) -> None:
    if isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.running_mean is None or m.running_var is None):
        raise ProbeError(f"layer {name!r} ({type(m).__name__}) has no running statistics "
                         "(track_running_stats=False), so it is not a fixed affine map and cannot be bounded")


def _flatten_fn(args: tuple, kwargs: dict) -> object:
    start = kwargs.get("start_dim", args[1] if len(args) > 1 else 0)
    end = kwargs.get("end_dim", args[2] if len(args) > 2 else -1)
    if start < 1 and start != -1:
        return None
    return lambda t: torch.flatten(t, start, end)


def build_graph(model: nn.Module) -> Graph:
    """Trace ``model`` into a :class:`Graph` of boundable operations.

    Raises
    ------
    ProbeError
        Naming the first layer or operation that has no bound rule.
    """
    if not isinstance(model, nn.Module):
        raise ProbeError(f"bound propagation needs a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, _AFFINE_MODULES + _MAXPOOL + tuple(_ACT_MODULES)):
        model = nn.Sequential(model)  # a single layer is traced as a leaf, not into its functional code
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as err:  # noqa: BLE001 - fx raises many kinds of errors on dynamic code
        raise ProbeError(f"could not trace {type(model).__name__} into a static graph for bound propagation "
                         f"({type(err).__name__}: {err}); use an nn.Sequential of supported layers") from err
    modules = dict(gm.named_modules())
    graph = Graph()
    index: dict[str, int] = {}

    def arg_index(a: object, node_name: str) -> int:
        if not isinstance(a, torch.fx.Node) or a.name not in index:
            raise ProbeError(f"operation {node_name!r} takes an argument bound propagation cannot follow: {a!r}")
        return index[a.name]

    for fx_node in gm.graph.nodes:
        op, tgt, args, kwargs = fx_node.op, fx_node.target, fx_node.args, fx_node.kwargs
        if op == "placeholder":
            if any(n.kind == "input" for n in graph.nodes):
                raise ProbeError(f"bound propagation handles models of one input; {type(model).__name__} takes more")
            node = Node(fx_node.name, "input", [])
        elif op == "output":
            out = args[0]
            if not isinstance(out, torch.fx.Node):
                raise ProbeError(f"{type(model).__name__} returns {type(out).__name__}; bound propagation needs "
                                 "a model that returns one tensor")
            if index[out.name] != len(graph.nodes) - 1:
                graph.nodes.append(Node("output", "affine", [index[out.name]], fn=lambda t: t))
            break
        elif op == "call_module":
            m = modules[tgt]
            src = [arg_index(args[0], tgt)]
            if isinstance(m, _AFFINE_MODULES):
                _check_module(tgt, m)
                node = Node(tgt, "affine", src, fn=m, module=m)
            elif type(m) in _ACT_MODULES:
                if isinstance(m, nn.ELU) and not 0 <= m.alpha <= 1:
                    raise ProbeError(f"layer {tgt!r}: ELU with alpha {m.alpha} is not convex; bound propagation "
                                     "handles 0 <= alpha <= 1")
                slope = float(getattr(m, "negative_slope", 0.0))
                node = Node(tgt, "act", src, fn=m, module=m, act=_ACT_MODULES[type(m)], slope=slope)
            elif isinstance(m, _MAXPOOL):
                if m.ceil_mode or (m.dilation not in (1, (1,), (1, 1), (1, 1, 1))):
                    raise ProbeError(f"layer {tgt!r} ({m}) uses ceil_mode or dilation, which bound propagation "
                                     "does not handle")
                node = Node(tgt, "maxpool", src, fn=m, module=m)
            else:
                raise ProbeError(f"cannot bound layer {tgt!r} ({type(m).__name__}): supported are Linear, "
                                 "Conv1d/2d/3d, ReLU, LeakyReLU, Tanh, Sigmoid, Softplus, ELU, AvgPool, MaxPool, "
                                 "Flatten, "
                                 "BatchNorm (eval), Dropout (eval) and residual additions")
        elif op in ("call_function", "call_method"):
            name = f"{fx_node.name} ({tgt if isinstance(tgt, str) else getattr(tgt, '__name__', tgt)})"
            act = _ACT_FUNCTIONS.get(tgt) if op == "call_function" else _ACT_METHODS.get(tgt)
            if act is not None:
                slope = float(kwargs.get("negative_slope", args[1] if len(args) > 1 else 0.01)) \
                    if act == "leaky_relu" else 0.0
                fn = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
                      "leaky_relu": lambda t, s=slope: F.leaky_relu(t, s)}[act]
                node = Node(name, "act", [arg_index(args[0], name)], fn=fn, act=act, slope=slope)
            elif tgt in (operator.add, torch.add, "add", "__add__") and len(args) == 2 \
                    and all(isinstance(a, torch.fx.Node) for a in args) and not kwargs:
                node = Node(name, "add", [arg_index(args[0], name), arg_index(args[1], name)],
                            fn=lambda a, b: a + b)
            elif tgt in (torch.flatten, "flatten"):
                fn = _flatten_fn(args, kwargs)
                if fn is None:
                    raise ProbeError(f"operation {name!r} flattens the batch dimension")
                node = Node(name, "affine", [arg_index(args[0], name)], fn=fn)
            else:
                raise ProbeError(f"cannot bound operation {name!r}: bound propagation follows modules, "
                                 "relu/tanh/sigmoid/leaky_relu, flatten and residual additions")
        else:
            raise ProbeError(f"cannot bound operation {fx_node.name!r} of kind {op!r} (a tensor attribute or "
                             "constant inside forward); use an nn.Sequential of supported layers")
        index[fx_node.name] = len(graph.nodes)
        graph.nodes.append(node)
    return graph


# --------------------------------------------------------------------------------------------------------------
# affine operations: apply |M| and the transpose


def abs_apply(node: Node, r: torch.Tensor) -> torch.Tensor:
    """``|M| r`` for the linear part M of an affine node (``r >= 0``): the radius of an interval."""
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
    if m is None or isinstance(m, (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
                                   nn.Dropout3d)):
        return A.reshape((n, s) + tuple(in_shape)), A.new_zeros(n, s)
    # convolutions and average pools: the transpose is the vector-Jacobian product at any point
    z = torch.zeros((n * s,) + tuple(in_shape), dtype=A.dtype, device=A.device, requires_grad=True)
    with torch.enable_grad():
        y = node(z)
        # keep the graph when A itself carries gradients (alpha-CROWN optimises through this product)
        (grad,) = torch.autograd.grad(y, z, grad_outputs=A.reshape(y.shape), create_graph=A.requires_grad)
    offset = (A.reshape(n, s, -1) * y.detach().reshape(n, s, -1)).sum(2)
    return grad.reshape((n, s) + tuple(in_shape)), offset
