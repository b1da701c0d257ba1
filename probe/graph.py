r"""The one captured model graph: a model's structure read once into a small set of node kinds.

Bound propagation (IBP, CROWN, alpha-CROWN), Lipschitz bounds and receptive-field fast paths
(DNA saturation mutagenesis) all need to know what a model computes, operation by operation.
:func:`capture` reads it once with ``torch.export`` (non-strict, with a dynamic batch
dimension), or, where export fails, by ``make_fx`` tracing of the ATen operations actually run;
both give ATen graphs, which are normalised here to the kinds below. Custom ``forward`` methods,
wrapper modules, residual additions, concatenation, slicing and cropping, reductions over an axis,
reshapes and permutations are all plain graph nodes; a tuple or dict output is selected by index
or name, or reduced by a user function, inside the captured graph.

Node kinds
----------
=============  ================================================================================
``input``      the model's input
``conv``       N-d convolution (weight, bias, stride, padding, dilation, groups), zero padding
``linear``     ``x @ W.T + b`` on the last axis
``batchnorm``  eval-mode batch norm, ``scale * x + shift`` per channel
``scale``      ``x * c`` (c a number or a constant tensor)
``shift``      ``x + c`` (c a number or a constant tensor); ``scale_shift``: ``a x + c``
``add``        ``a + alpha * b`` of two nodes
``cat``        concatenation of nodes along a non-batch axis
``slice``      ``x[..., start:end:step, ...]`` along one axis (cropping)
``select``     one index of one axis
``mean``       mean over non-batch axes; ``sum`` likewise
``reshape``    any view, flatten, squeeze or unsqueeze that keeps the batch axis first
``permute``    a permutation of the non-batch axes
``pad``        constant padding
``avgpool``    average pooling; ``maxpool`` max pooling (adaptive pools included)
``act``        element-wise activation: relu, leaky_relu, gelu, silu, softplus, elu, tanh, sigmoid, exp
``identity``   eval-mode dropout, copies, aliases
=============  ================================================================================

An operation outside this list raises :class:`~probe.ProbeError` naming the ATen operation and
the line of the user's source that produced it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ProbeError

__all__ = ["GraphNode", "ModelGraph", "NodeList", "capture", "select_output", "format_graph", "LINEAR_KINDS",
           "ACTIVATIONS"]

#: kinds that are affine maps of their (single) input
LINEAR_KINDS = frozenset({"conv", "linear", "batchnorm", "scale", "shift", "scale_shift", "slice", "select", "mean",
                          "sum", "reshape", "permute", "pad", "avgpool", "identity"})
ACTIVATIONS = ("relu", "leaky_relu", "gelu", "silu", "softplus", "elu", "tanh", "sigmoid", "exp", "hardtanh", "mish",
               "prelu", "celu", "selu", "log_sigmoid", "hardswish", "hardsigmoid")

_aten = torch.ops.aten


@dataclass
class GraphNode:
    """One normalised operation.

    Attributes
    ----------
    name : str
        The ATen node's name (``conv1d_2``).
    kind : str
        One of the kinds in the module docstring.
    inputs : tuple of int
        Indices of the nodes it reads (earlier in the graph).
    attrs : dict
        Kind-specific settings: tensors (``weight``, ``bias``, ``scale``, ``shift``, ``value``) and
        ints (``dim``, ``start``, ``end``, ``step``, ``stride`` ...). Dims never count the batch axis
        (axis 1 of the batched tensor is dim 1 here too: dims index the batched tensor, >= 1).
    shape : tuple of int
        Output shape of one input (no batch axis).
    source : str
        ``file:line`` of the user's code that produced it, where known.
    module : nn.Module or None
        The innermost module it ran in (``nn.Conv1d``, ``nn.Linear``, or the model itself).
    path : str
        That module's name in the model (``"rconvs.0"``; ``""`` for the model itself).
    """

    name: str
    kind: str
    inputs: tuple[int, ...]
    attrs: dict = field(default_factory=dict)
    shape: tuple[int, ...] = ()
    source: str = ""
    module: nn.Module | None = None
    path: str = ""

    @property
    def act(self) -> str:
        return self.attrs.get("act", "")

    def __call__(self, *xs: torch.Tensor) -> torch.Tensor:
        return _APPLY[self.kind](self, *xs)

    def describe(self) -> str:
        where = f" at {self.source}" if self.source else ""
        return f"{self.kind} {self.name!r}{where}"


class NodeList:
    """Walking a list of nodes in topological order (``nodes``; each has ``kind`` and ``inputs`` and is callable)."""

    nodes: list

    @property
    def output(self) -> int:
        return len(self.nodes) - 1

    def consumers(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {i: [] for i in range(len(self.nodes))}
        for i, n in enumerate(self.nodes):
            for j in n.inputs:
                out[j].append(i)
        return out

    def values(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every node's value on the batch ``x``."""
        vals: list[torch.Tensor] = []
        for n in self.nodes:
            vals.append(x if n.kind == "input" else n(*[vals[j] for j in n.inputs]))
        return vals

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.values(x)[-1]


@dataclass
class ModelGraph(NodeList):
    """Nodes in topological order; the last is the (selected) output."""

    nodes: list[GraphNode]
    input_shape: tuple[int, ...]
    method: str = "export"

    def kinds(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for n in self.nodes:
            out[n.kind] = out.get(n.kind, 0) + 1
        return out


# ----------------------------------------------------------------------------------------------------------------
# output selection


def select_output(out: object, output: int | str | None, reduce: Callable | None) -> torch.Tensor:
    """One tensor from a model's output: ``output`` picks a tuple/list entry or dict key, ``reduce`` maps it."""
    if output is not None:
        if isinstance(out, dict):
            if output not in out:
                raise ProbeError(f"output={output!r} is not a key of the model's output; keys: {sorted(map(str, out))}")
            out = out[output]
        elif isinstance(out, (tuple, list)):
            if not isinstance(output, int) or not -len(out) <= output < len(out):
                raise ProbeError(f"output={output!r} does not index the model's {len(out)} outputs")
            out = out[output]
        elif not (output in (0, -1) and torch.is_tensor(out)):
            raise ProbeError(f"output={output!r} was given, but the model returns one {type(out).__name__}")
    if reduce is not None:
        out = reduce(out)
    if isinstance(out, dict):
        raise ProbeError(f"the model returns a dict with keys {sorted(map(str, out))}: pass output=<key> (and "
                         "optionally reduce=<callable>) to pick the tensor to probe")
    if isinstance(out, (tuple, list)):
        raise ProbeError(f"the model returns {len(out)} outputs: pass output=<index> (and optionally "
                         "reduce=<callable>) to pick the tensor to probe")
    if not torch.is_tensor(out):
        raise ProbeError(f"the model returns {type(out).__name__}, not a tensor")
    return out


class _Selected(nn.Module):
    def __init__(self, model: nn.Module | Callable, output: int | str | None, reduce: Callable | None):
        super().__init__()
        self.model = model
        self.output = output
        self.reduce = reduce

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return select_output(self.model(x), self.output, self.reduce)


# ----------------------------------------------------------------------------------------------------------------
# capture


def _source(fx_node: torch.fx.Node) -> str:
    trace = fx_node.meta.get("stack_trace") or ""
    frames = [ln.strip() for ln in trace.splitlines() if ln.strip().startswith("File ")]
    for frame in reversed(frames):
        if "/torch/" not in frame and "/probe/graph.py" not in frame:
            try:
                path = frame.split('"')[1]
                line = frame.split("line ")[1].split(",")[0]
                return f"{path}:{line}"
            except IndexError:
                return frame
    return ""


def _export(wrapped: nn.Module, example: torch.Tensor) -> tuple[torch.fx.GraphModule, dict, str]:
    """ATen graph, {placeholder name: tensor} for lifted parameters/buffers/constants, and the method used."""
    errors = []
    for dynamic in (True, False):
        try:
            shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
            ep = torch.export.export(wrapped, (example,), dynamic_shapes=shapes, strict=False)
        except ProbeError:
            raise  # the output could not be selected: the user's choice, not the tracer's
        except Exception as err:  # noqa: BLE001 - export raises many kinds of errors on dynamic code
            errors.append(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
            continue
        sig = ep.graph_signature
        lifted: dict[str, torch.Tensor] = {}
        for name, fqn in sig.inputs_to_parameters.items():
            lifted[name] = wrapped.get_parameter(fqn)
        for name, fqn in sig.inputs_to_buffers.items():
            lifted[name] = wrapped.get_buffer(fqn)
        for name, fqn in getattr(sig, "inputs_to_lifted_tensor_constants", {}).items():
            lifted[name] = ep.constants[fqn]
        return ep.graph_module, lifted, "export"
    try:
        from torch.fx.experimental.proxy_tensor import make_fx

        gm = make_fx(wrapped)(example)
        return gm, {}, "make_fx"
    except Exception as err:  # noqa: BLE001
        errors.append(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    raise ProbeError(f"could not capture {type(wrapped.model).__name__} as a graph: torch.export and make_fx both "
                     f"failed ({'; '.join(errors)}); the model's forward must be traceable on an example input")


def capture(model: nn.Module | Callable, example: torch.Tensor, *, output: int | str | None = None,
            reduce: Callable | None = None) -> ModelGraph:
    """Capture ``model`` (in eval mode, on ``example``'s device) as a :class:`ModelGraph`.

    Parameters
    ----------
    model : torch.nn.Module or callable
        Any module with its own ``forward`` (wrappers, residual blocks, several heads).
    example : torch.Tensor, shape (N, ...)
        An input of the right shape; its values do not matter.
    output : int or str, optional
        Which entry of a tuple/list (index) or dict (key) output to probe.
    reduce : callable, optional
        Applied to the selected output inside the graph (e.g. ``lambda y: y.sum(-1)`` over a
        profile), like tangermeme's ``func``.

    Returns
    -------
    ModelGraph

    Raises
    ------
    ProbeError
        Naming the ATen operation and the user's source line that has no node kind.
    """
    if not torch.is_tensor(example) or example.dim() < 1:
        raise ProbeError("capture needs an example input tensor with a batch axis")
    ex = example[:1].detach()
    ex = torch.cat([ex, ex]) if len(ex) else ex  # a batch of two keeps the batch axis apart from size-1 axes
    wrapped = _Selected(model, output, reduce)
    was = [(m, m.training) for m in wrapped.modules()]
    wrapped.eval()
    try:
        with torch.no_grad():
            gm, lifted, method = _export(wrapped, ex)
    finally:
        for m, mode in was:
            m.train(mode)
    nodes = _normalise(gm, lifted, wrapped)
    graph = ModelGraph(nodes=_prune(nodes), input_shape=tuple(ex.shape[1:]), method=method)
    _check_against_model(graph, wrapped, example)
    return graph


def _check_against_model(graph: ModelGraph, wrapped: nn.Module, example: torch.Tensor) -> None:
    """The graph must compute what the model computes, on a random input of the example's shape.

    A tracer that followed one branch of data-dependent control flow would fail here instead of
    being silently wrong.
    """
    g = torch.Generator().manual_seed(0)
    z = torch.rand(example[:2].shape, generator=g, dtype=example.dtype).to(example.device)
    was = [(m, m.training) for m in wrapped.modules()]
    wrapped.eval()
    try:
        with torch.no_grad():
            want, got = wrapped(z), graph(z)
    finally:
        for m, mode in was:
            m.train(mode)
    tol = 1e-4 if want.dtype in (torch.float32, torch.float64) else 1e-2
    scale = float(want.abs().max()) if want.numel() else 0.0
    if got.shape != want.shape or not torch.allclose(got, want, rtol=tol, atol=tol * max(scale, 1.0)):
        diff = float((got - want).abs().max()) if got.shape == want.shape else float("nan")
        raise ProbeError(f"the captured graph of {type(wrapped.model).__name__} does not reproduce the model "
                         f"(largest difference {diff:.3g}, shapes {tuple(got.shape)} and {tuple(want.shape)}): its "
                         "forward may branch on input values, which a graph cannot follow")


# ----------------------------------------------------------------------------------------------------------------
# normalisation of ATen nodes


class _Const:
    """A value that does not depend on the input (weights, shapes, folded constant expressions)."""

    def __init__(self, value: object):
        self.value = value


def _shape(fx_node: torch.fx.Node) -> tuple[int, ...]:
    v = fx_node.meta.get("val")
    if v is None or not hasattr(v, "shape"):
        return ()
    return tuple(int(s) if not isinstance(s, torch.SymInt) else -1 for s in v.shape[1:])


def _owner(fx_node: torch.fx.Node, root: nn.Module) -> nn.Module | None:
    """The innermost module the operation ran in (``root`` is the capture's wrapper, so paths start "model")."""
    stack = fx_node.meta.get("nn_module_stack") or {}
    if not stack:
        return None
    path = list(stack.values())[-1][0]
    try:
        return root.get_submodule(path) if path else None
    except AttributeError:
        return None


def _path(fx_node: torch.fx.Node) -> str:
    stack = fx_node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    return path[len("model."):] if path.startswith("model.") else ("" if path == "model" else path)


def _dim(d: int, rank: int) -> int:
    return d + rank if d < 0 else d


_IDENTITY_OPS = {"clone", "alias", "contiguous", "detach", "lift_fresh_copy", "_to_copy", "to", "dropout",
                 "feature_dropout", "alpha_dropout", "lift_fresh"}


def _normalise(gm: torch.fx.GraphModule, lifted: dict, root: nn.Module) -> list[GraphNode]:
    nodes: list[GraphNode] = []
    env: dict[str, object] = {}  # fx name -> node index (int) or _Const

    def val(a: object) -> object:
        if isinstance(a, torch.fx.Node):
            return env[a.name]
        if isinstance(a, (list, tuple)):
            return type(a)(val(b) for b in a)
        return _Const(a)

    def const(a: object) -> object:
        if _depends([val(a)]):
            raise _Dependent()
        return _unwrap(val(a))

    user_input_seen = False
    for fx_node in gm.graph.nodes:
        op, tgt = fx_node.op, fx_node.target
        if op == "placeholder":
            if fx_node.name in lifted:
                env[fx_node.name] = _Const(lifted[fx_node.name])
                continue
            if user_input_seen:
                raise ProbeError("the graph takes more than one input; probe models take one input tensor")
            user_input_seen = True
            env[fx_node.name] = len(nodes)
            nodes.append(GraphNode(fx_node.name, "input", (), shape=_shape(fx_node)))
            continue
        if op == "get_attr":
            obj = gm
            for part in str(tgt).split("."):
                obj = getattr(obj, part)
            env[fx_node.name] = _Const(obj)
            continue
        if op == "output":
            outs = fx_node.args[0]
            outs = outs if isinstance(outs, (list, tuple)) else (outs,)
            if len(outs) != 1 or not isinstance(env.get(getattr(outs[0], "name", "")), int):
                raise ProbeError("the captured graph must return one tensor that depends on the input")
            out_index = env[outs[0].name]
            if out_index != len(nodes) - 1:
                nodes.append(GraphNode("output", "identity", (out_index,), shape=nodes[out_index].shape))
            break
        meta_val = fx_node.meta.get("val")
        if isinstance(meta_val, (torch.SymInt, torch.SymFloat, torch.SymBool)) or \
                (meta_val is None and not fx_node.users):
            env[fx_node.name] = _Const(None)  # a shape computed from the input's size, or a run-time assertion
            continue
        args = [val(a) for a in fx_node.args]
        kwargs = {k: val(v) for k, v in fx_node.kwargs.items()}
        depends = _depends(args) or _depends(list(kwargs.values()))
        if not depends:
            # fold: weights transposed, shapes computed, constants built
            try:
                res = tgt(*[_unwrap(a) for a in args], **{k: _unwrap(v) for k, v in kwargs.items()})
            except Exception as err:  # noqa: BLE001
                raise ProbeError(f"could not evaluate the constant operation {fx_node.name} ({tgt}) at "
                                 f"{_source(fx_node) or 'an unknown line'}: {err}") from None
            env[fx_node.name] = _Const(res)
            continue
        if tgt is operator.getitem:
            base, index = args[0], const(fx_node.args[1])
            if not isinstance(base, _Multi):
                raise _unsupported(fx_node, "indexing of a tensor by getitem")
            if index != 0:
                if fx_node.users:
                    raise _unsupported(fx_node, "the indices output of a pooling")
                continue
            env[fx_node.name] = base.index
            continue
        try:
            made = _make(fx_node, tgt, args, kwargs, const, root)
        except _Dependent:
            raise _unsupported(fx_node, "an argument that depends on the input where a constant is needed") from None
        if made is None:
            raise _unsupported(fx_node)
        node, multi = made
        if isinstance(node, int):  # an identity: reuse the input's node
            env[fx_node.name] = _Multi(node) if multi else node
            continue
        node.source = _source(fx_node)
        node.shape = _shape(fx_node) if not multi else _shape_of_first(fx_node)
        if node.module is None:
            node.module = _owner(fx_node, root)
        node.path = _path(fx_node)
        env[fx_node.name] = _Multi(len(nodes)) if multi else len(nodes)
        nodes.append(node)
    return nodes


class _Dependent(Exception):
    pass


class _Multi:
    """An operation with several outputs (pooling with indices); output 0 is the node ``index``."""

    def __init__(self, index: int):
        self.index = index


def _depends(args: Sequence) -> bool:
    for a in args:
        if isinstance(a, (int, _Multi)) and not isinstance(a, bool):
            return True
        if isinstance(a, (list, tuple)) and _depends(a):
            return True
    return False


def _unwrap(a: object) -> object:
    if isinstance(a, _Const):
        return a.value
    if isinstance(a, (list, tuple)):
        return type(a)(_unwrap(b) for b in a)
    return a


def _shape_of_first(fx_node: torch.fx.Node) -> tuple[int, ...]:
    v = fx_node.meta.get("val")
    v = v[0] if isinstance(v, (tuple, list)) else v
    return tuple(int(s) if not isinstance(s, torch.SymInt) else -1 for s in v.shape[1:])


def _module_path(fx_node: torch.fx.Node) -> str:
    """``'2.1' (LayerNorm)``: the innermost module the operation ran in, without the capture's own wrapper."""
    stack = fx_node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path, kind = _path(fx_node), list(stack.values())[-1][1]
    kind = getattr(kind, "__name__", str(kind)).rsplit(".", 1)[-1]
    return f"{path!r} ({kind})" if path else f"({kind})"


def _unsupported(fx_node: torch.fx.Node, what: str | None = None) -> ProbeError:
    where = _source(fx_node)
    module = _module_path(fx_node)
    what = what or f"operation {fx_node.target}"
    here = (" in module " + module if module else "") + (", at " + where if where else "")
    return ProbeError(f"the model graph has no rule for {what} (node {fx_node.name!r}{here}); supported are "
                      "convolutions, linear layers, batch norm (eval), additions, scaling by constants, "
                      "concatenation, slicing, means and sums over axes, reshapes and permutations, padding, pooling "
                      f"and the activations {', '.join(ACTIVATIONS)}")


def _rank(fx_node: torch.fx.Node, arg: int = 0) -> int:
    a = fx_node.args[arg]
    v = a.meta.get("val") if isinstance(a, torch.fx.Node) else None
    return v.dim() if v is not None else 0


def _make(fx_node: torch.fx.Node, tgt: object, args: list, kwargs: dict, const: Callable, root: nn.Module
          ) -> tuple[GraphNode | int, bool] | None:
    name = getattr(tgt, "__name__", str(tgt))
    base = name.split(".")[0]
    packet = getattr(tgt, "_overloadpacket", None)
    base = getattr(packet, "__name__", base)
    n = fx_node.name
    x = args[0] if args else None

    def node_input(a: object) -> int:
        if isinstance(a, _Multi):
            return a.index
        if not isinstance(a, int):
            raise _Dependent()
        return a

    if base in _IDENTITY_OPS:
        if base in ("dropout", "feature_dropout", "alpha_dropout") and len(fx_node.args) > 2 and \
                bool(const(fx_node.args[2])):
            return None
        return node_input(x), False  # a dtype change (_to_copy) keeps the values too
    if base in ACTIVATIONS:
        act = base
        attrs: dict = {"act": act}
        if act == "leaky_relu":
            attrs["slope"] = float(const(fx_node.args[1])) if len(fx_node.args) > 1 else 0.01
        if act == "gelu":
            attrs["approximate"] = fx_node.kwargs.get("approximate", "none")
        if act == "softplus":
            attrs["beta"] = float(const(fx_node.args[1])) if len(fx_node.args) > 1 else 1.0
            attrs["threshold"] = float(const(fx_node.args[2])) if len(fx_node.args) > 2 else 20.0
        if act == "elu":
            a = [const(v) for v in fx_node.args[1:4]] + [1.0, 1.0, 1.0][len(fx_node.args) - 1:]
            attrs["alpha"], attrs["scale"], attrs["input_scale"] = (float(v) for v in a[:3])
        if act == "hardtanh":
            attrs["min"] = float(const(fx_node.args[1])) if len(fx_node.args) > 1 else -1.0
            attrs["max"] = float(const(fx_node.args[2])) if len(fx_node.args) > 2 else 1.0
        if act == "celu":
            attrs["alpha"] = float(const(fx_node.args[1])) if len(fx_node.args) > 1 else 1.0
        if act == "prelu":
            attrs["weight"] = const(fx_node.args[1])
        return GraphNode(n, "act", (node_input(x),), attrs), False
    if base in ("conv1d", "conv2d", "conv3d", "convolution", "_convolution"):
        w = const(fx_node.args[1])
        b = const(fx_node.args[2]) if len(fx_node.args) > 2 else None
        d = w.dim() - 2
        if base.startswith("conv") and base != "convolution":
            rest = [const(a) for a in fx_node.args[3:]]
            stride, padding, dilation, groups = (rest + [1, 0, 1, 1][len(rest):])[:4]
        else:
            stride, padding, dilation, transposed, _, groups = (const(a) for a in fx_node.args[3:9])
            if transposed:
                return None
        return GraphNode(n, "conv", (node_input(x),), {"weight": w, "bias": b, "stride": _tuple(stride, d),
                                                        "padding": padding if isinstance(padding, str)
                                                        else _tuple(padding, d),
                                                        "dilation": _tuple(dilation, d), "groups": int(groups)}), False
    if base == "linear":
        w = const(fx_node.args[1])
        b = const(fx_node.args[2]) if len(fx_node.args) > 2 else None
        return GraphNode(n, "linear", (node_input(x),), {"weight": w, "bias": b}), False
    if base in ("addmm", "mm", "matmul"):
        if base == "addmm":
            bias, xa, w = args[0], args[1], args[2]
            bias = const(fx_node.args[0])
        else:
            xa, w, bias = args[0], args[1], None
        if not isinstance(w, _Const):
            return None
        return GraphNode(n, "linear", (node_input(xa),), {"weight": w.value.T, "bias": bias}), False
    if base in ("batch_norm", "_native_batch_norm_legit_no_training", "native_batch_norm",
                "_native_batch_norm_legit"):
        weight, bias, mean, var = (const(a) for a in fx_node.args[1:5])
        if base == "_native_batch_norm_legit_no_training":
            eps = float(const(fx_node.args[6]))
        else:
            if bool(const(fx_node.args[5])):
                return None  # training-mode statistics depend on the batch
            eps = float(const(fx_node.args[7]))
        return GraphNode(n, "batchnorm", (node_input(x),), {"weight": weight, "bias": bias, "mean": mean,
                                                             "var": var, "eps": eps}), base != "batch_norm"
    if base in ("add", "sub"):
        sign = 1.0 if base == "add" else -1.0
        alpha = float(const(fx_node.kwargs["alpha"])) if "alpha" in fx_node.kwargs else 1.0
        a, b = args[0], args[1]
        if isinstance(a, int) and isinstance(b, int):
            return GraphNode(n, "add", (a, b), {"alpha": sign * alpha}), False
        if isinstance(a, int):
            return GraphNode(n, "shift", (a,), {"value": _scaled(b, sign * alpha)}), False
        if isinstance(b, int):  # c - alpha * x or c + alpha * x
            return GraphNode(n, "scale_shift", (b,), {"scale": sign * alpha, "value": _unwrap(a)}), False
        return None
    if base == "rsub":
        alpha = float(const(fx_node.args[2])) if len(fx_node.args) > 2 else 1.0
        return GraphNode(n, "scale_shift", (node_input(x),), {"scale": -alpha, "value": const(fx_node.args[1])}), \
            False
    if base in ("mul", "div"):
        a, b = args[0], args[1]
        if isinstance(a, int) and isinstance(b, int):
            return None  # products of two input-dependent tensors are not affine
        xi, c = (a, b) if isinstance(a, int) else (b, a)
        if base == "div" and not isinstance(a, int):
            return None
        cv = _unwrap(c)
        cv = (1.0 / cv) if base == "div" else cv
        return GraphNode(n, "scale", (node_input(xi),), {"value": cv}), False
    if base == "neg":
        return GraphNode(n, "scale", (node_input(x),), {"value": -1.0}), False
    if base == "cat":
        parts = args[0]
        rank = fx_node.meta["val"].dim()
        dim = _dim(int(const(fx_node.args[1])) if len(fx_node.args) > 1 else 0, rank)
        if dim == 0:
            return None
        if not all(isinstance(p, int) for p in parts):
            return None
        return GraphNode(n, "cat", tuple(parts), {"dim": dim}), False
    if base in ("slice", "narrow"):
        rank = _rank(fx_node)
        dim = _dim(int(const(fx_node.args[1])) if len(fx_node.args) > 1 else 0, rank)
        in_size = fx_node.args[0].meta["val"].shape[dim]
        if base == "narrow":
            start = int(const(fx_node.args[2]))
            end, step = start + int(const(fx_node.args[3])), 1
        else:
            start = const(fx_node.args[2]) if len(fx_node.args) > 2 else None
            end = const(fx_node.args[3]) if len(fx_node.args) > 3 else None
            step = int(const(fx_node.args[4])) if len(fx_node.args) > 4 else 1
        if dim == 0:  # only the whole batch, x[:], is a slice of the batch axis that keeps inputs apart
            full = start in (None, 0) and step == 1 and (end is None or (not isinstance(end, torch.SymInt)
                                                                         and int(end) >= 2 ** 62))
            return (node_input(x), False) if full else None
        start, end, _ = slice(start, end, step).indices(int(in_size))
        return GraphNode(n, "slice", (node_input(x),), {"dim": dim, "start": start, "end": end, "step": step}), False
    if base == "select":
        rank = _rank(fx_node)
        dim = _dim(int(const(fx_node.args[1])), rank)
        if dim == 0:
            return None
        size = int(fx_node.args[0].meta["val"].shape[dim])
        index = int(const(fx_node.args[2]))
        return GraphNode(n, "select", (node_input(x),), {"dim": dim, "index": index % size}), False
    if base in ("mean", "sum"):
        rank = _rank(fx_node)
        dims = const(fx_node.args[1]) if len(fx_node.args) > 1 else None
        if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
            return None  # a reduction over everything mixes the batch
        dims = tuple(sorted(_dim(int(d), rank) for d in (dims if isinstance(dims, (list, tuple)) else [dims])))
        if 0 in dims:
            return None
        keep = bool(const(fx_node.args[2])) if len(fx_node.args) > 2 else bool(fx_node.kwargs.get("keepdim", False))
        return GraphNode(n, base, (node_input(x),), {"dims": dims, "keepdim": keep}), False
    if base in ("view", "reshape", "_unsafe_view", "flatten", "unflatten", "squeeze", "unsqueeze", "expand_as",
                "view_as"):
        out = fx_node.meta["val"]
        inp = fx_node.args[0].meta["val"]
        if not _keeps_batch(inp, out):
            return None
        return GraphNode(n, "reshape", (node_input(x),), {}), False
    if base in ("permute", "transpose", "t"):
        rank = _rank(fx_node)
        if base == "permute":
            perm = [_dim(int(d), rank) for d in const(fx_node.args[1])]
        else:
            d0, d1 = (_dim(int(const(a)), rank) for a in fx_node.args[1:3])
            perm = list(range(rank))
            perm[d0], perm[d1] = perm[d1], perm[d0]
        if perm[0] != 0:
            return None
        return GraphNode(n, "permute", (node_input(x),), {"perm": tuple(perm)}), False
    if base in ("constant_pad_nd", "pad"):
        pad = tuple(int(p) for p in const(fx_node.args[1]))
        value = float(const(fx_node.args[2])) if base == "constant_pad_nd" and len(fx_node.args) > 2 and \
            fx_node.args[2] is not None else 0.0  # aten.pad's third argument is the mode
        if base == "pad" and len(fx_node.args) > 2 and const(fx_node.args[2]) not in ("constant", None):
            return None
        if base == "pad":
            value = float(const(fx_node.args[3])) if len(fx_node.args) > 3 and fx_node.args[3] is not None else 0.0
        if len(pad) // 2 >= _rank(fx_node):
            return None
        return GraphNode(n, "pad", (node_input(x),), {"pad": pad, "value": value}), False
    if base in ("max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices",
                "max_pool3d_with_indices"):
        d = _rank(fx_node) - 2
        a = [const(v) for v in fx_node.args[1:]]
        kernel = _tuple(a[0], d)
        stride = _tuple(a[1] if len(a) > 1 and a[1] not in ([], None) else kernel, d)
        padding = _tuple(a[2] if len(a) > 2 else 0, d)
        dilation = _tuple(a[3] if len(a) > 3 else 1, d)
        ceil = bool(a[4]) if len(a) > 4 else False
        return GraphNode(n, "maxpool", (node_input(x),), {"kernel": kernel, "stride": stride, "padding": padding,
                                                           "dilation": dilation, "ceil_mode": ceil}), \
            base.endswith("indices")
    if base in ("adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
                "_adaptive_avg_pool2d", "_adaptive_avg_pool1d"):
        d = _rank(fx_node) - 2
        size = fx_node.args[0].meta["val"].shape[2:]
        out_size = _tuple(const(fx_node.args[1]), d)
        if any(int(s) % int(o) for s, o in zip(size, out_size)):
            return None
        kernel = tuple(int(s) // int(o) for s, o in zip(size, out_size))
        kind = "maxpool" if "max" in base else "avgpool"
        attrs = {"kernel": kernel, "stride": kernel, "padding": (0,) * d, "ceil_mode": False}
        if kind == "maxpool":
            attrs["dilation"] = (1,) * d
        else:
            attrs["count_include_pad"] = True
        return GraphNode(n, kind, (node_input(x),), attrs), "max" in base
    if base in ("avg_pool1d", "avg_pool2d", "avg_pool3d"):
        d = _rank(fx_node) - 2
        a = [const(v) for v in fx_node.args[1:]]
        kernel = _tuple(a[0], d)
        stride = _tuple(a[1] if len(a) > 1 and a[1] not in ([], None) else kernel, d)
        padding = _tuple(a[2] if len(a) > 2 else 0, d)
        ceil = bool(a[3]) if len(a) > 3 else False
        include = bool(a[4]) if len(a) > 4 else True
        if len(a) > 5 and a[5] is not None:
            return None  # divisor_override
        return GraphNode(n, "avgpool", (node_input(x),), {"kernel": kernel, "stride": stride, "padding": padding,
                                                           "ceil_mode": ceil, "count_include_pad": include}), False
    return None


def _scaled(c: object, alpha: float) -> object:
    v = _unwrap(c)
    return v * alpha if alpha != 1.0 else v


def _keeps_batch(inp: torch.Tensor, out: torch.Tensor) -> bool:
    if out.dim() == 0 or inp.dim() == 0:
        return False
    a, b = inp.shape[0], out.shape[0]
    if isinstance(a, torch.SymInt) or isinstance(b, torch.SymInt):
        return str(a) == str(b)
    # a static capture uses a batch of two: the batch axis stays first with the same size, and the rest keeps
    # the number of elements per input
    return int(a) == int(b) and math.prod(inp.shape[1:]) == math.prod(out.shape[1:])


def _tuple(v: object, d: int) -> tuple[int, ...]:
    if isinstance(v, (list, tuple)):
        v = [int(t) for t in v]
        return tuple(v) if len(v) == d else tuple(v * d) if len(v) == 1 else tuple(v)
    return (int(v),) * d


def _prune(nodes: list[GraphNode]) -> list[GraphNode]:
    """Drop nodes the output does not depend on (the other heads of a multi-head model); renumber."""
    keep = [False] * len(nodes)
    keep[-1] = True
    for i in range(len(nodes) - 1, -1, -1):
        if keep[i]:
            for j in nodes[i].inputs:
                keep[j] = True
    if not keep[0] or nodes[0].kind != "input":
        raise ProbeError("the selected output does not depend on the model's input")
    new_index = {}
    out = []
    for i, nd in enumerate(nodes):
        if keep[i]:
            new_index[i] = len(out)
            nd.inputs = tuple(new_index[j] for j in nd.inputs)
            out.append(nd)
    return out


# ----------------------------------------------------------------------------------------------------------------
# execution of each kind (batched tensors; dims index the batched tensor)


def _bn_affine(node: GraphNode) -> tuple[torch.Tensor, torch.Tensor]:
    a = node.attrs
    scale = 1.0 / torch.sqrt(a["var"] + a["eps"])
    shift = -a["mean"] * scale
    if a["weight"] is not None:
        scale = scale * a["weight"]
        shift = shift * a["weight"] + (a["bias"] if a["bias"] is not None else 0)
    return scale, shift


def _conv(node: GraphNode, x: torch.Tensor, weight: torch.Tensor | None = None, bias: object = "node"
          ) -> torch.Tensor:
    a = node.attrs
    w = a["weight"] if weight is None else weight
    b = a["bias"] if bias == "node" else bias
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[w.dim() - 2]
    return fn(x, w, b, a["stride"], a["padding"], a["dilation"], a["groups"])


def _activation(node: GraphNode, x: torch.Tensor) -> torch.Tensor:
    a = node.attrs
    act = a["act"]
    if act == "relu":
        return torch.relu(x)
    if act == "leaky_relu":
        return F.leaky_relu(x, a["slope"])
    if act == "gelu":
        return F.gelu(x, approximate=a.get("approximate", "none"))
    if act == "silu":
        return F.silu(x)
    if act == "softplus":
        return F.softplus(x, a["beta"], a["threshold"])
    if act == "elu":
        return a["scale"] * F.elu(a["input_scale"] * x, a["alpha"]) if (a["scale"], a["input_scale"]) != (1.0, 1.0) \
            else F.elu(x, a["alpha"])
    if act == "hardtanh":
        return F.hardtanh(x, a["min"], a["max"])
    if act == "prelu":
        return F.prelu(x, a["weight"])
    if act == "celu":
        return F.celu(x, a["alpha"])
    if act in _PLAIN:
        return _PLAIN[act](x)
    if act == "tanh":
        return torch.tanh(x)
    if act == "sigmoid":
        return torch.sigmoid(x)
    return torch.exp(x)


_PLAIN = {"mish": F.mish, "selu": F.selu, "log_sigmoid": F.logsigmoid, "hardswish": F.hardswish,
          "hardsigmoid": F.hardsigmoid}


def _pool(node: GraphNode, x: torch.Tensor) -> torch.Tensor:
    a = node.attrs
    d = x.dim() - 2
    if node.kind == "maxpool":
        fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[d]
        return fn(x, a["kernel"], a["stride"], a["padding"], a["dilation"], a["ceil_mode"])
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[d]
    return fn(x, a["kernel"], a["stride"], a["padding"], a["ceil_mode"], a["count_include_pad"])


def _reshape(node: GraphNode, x: torch.Tensor) -> torch.Tensor:
    return x.reshape((x.shape[0],) + tuple(node.shape))


def _value(v: object, x: torch.Tensor) -> object:
    return v.to(x) if torch.is_tensor(v) else v


_APPLY: dict[str, Callable] = {
    "conv": _conv,
    "linear": lambda n, x: F.linear(x, n.attrs["weight"], n.attrs["bias"]),
    "batchnorm": lambda n, x: x * _bn_affine(n)[0].view((1, -1) + (1,) * (x.dim() - 2))
    + _bn_affine(n)[1].view((1, -1) + (1,) * (x.dim() - 2)),
    "scale": lambda n, x: x * _value(n.attrs["value"], x),
    "shift": lambda n, x: x + _value(n.attrs["value"], x),
    "scale_shift": lambda n, x: x * n.attrs["scale"] + _value(n.attrs["value"], x),
    "add": lambda n, a, b: a + n.attrs["alpha"] * b if n.attrs["alpha"] != 1.0 else a + b,
    "cat": lambda n, *xs: torch.cat(xs, n.attrs["dim"]),
    "slice": lambda n, x: x[(slice(None),) * n.attrs["dim"] + (slice(n.attrs["start"], n.attrs["end"],
                                                                     n.attrs["step"]),)],
    "select": lambda n, x: x.select(n.attrs["dim"], n.attrs["index"]),
    "mean": lambda n, x: x.mean(n.attrs["dims"], keepdim=n.attrs["keepdim"]),
    "sum": lambda n, x: x.sum(n.attrs["dims"], keepdim=n.attrs["keepdim"]),
    "reshape": _reshape,
    "permute": lambda n, x: x.permute(n.attrs["perm"]),
    "pad": lambda n, x: F.pad(x, n.attrs["pad"], value=n.attrs["value"]),
    "avgpool": _pool,
    "maxpool": _pool,
    "act": _activation,
    "identity": lambda n, x: x,
}


def format_graph(graph: ModelGraph) -> str:
    """One line per node: index, kind, inputs, shape and source (for error messages and debugging)."""
    lines = []
    for i, n in enumerate(graph.nodes):
        extra = f" {n.act}" if n.kind == "act" else ""
        lines.append(f"{i:3d} {n.kind}{extra} {n.name} <- {list(n.inputs)} {n.shape} {n.source}")
    return "\n".join(lines)
