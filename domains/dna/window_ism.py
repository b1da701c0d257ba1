r"""Saturation mutagenesis on the captured model graph, each mutant carried as the window it changes.

A substitution at position ``p`` of the input changes, at a node whose output runs along the
sequence axis, only the positions in a window ``[a_i(p), a_i(p) + W_i)``. Through a convolution or
pooling with kernel ``K``, stride ``s``, dilation ``d`` and left padding ``P`` a window
``[a, a + W)`` becomes

.. math:: a' = \left\lceil \frac{a + P - (K - 1) d}{s} \right\rceil, \qquad
          W' = \left\lfloor \frac{W - 1 + (K - 1) d}{s} \right\rfloor + 1,

a crop (slice) shifts it by its start (and divides by its step), padding shifts it the other
way, a residual addition or a concatenation along channels takes the union of its inputs'
windows, and element-wise nodes (activations, batch norm, scaling and shifting by per-channel
constants) keep it. Every window is then clipped to ``[0, L_i)`` (a window wider than the axis
becomes the whole axis), so no value outside the axis is ever computed: a consumer that reads past
the ends reads its own padding (zeros for a convolution, ``-inf`` for a max pool), exactly as the
full forward pass does, whatever ``f(0)`` the element-wise nodes before it have.

The activations of the unedited sequence are computed once per sequence (``ModelGraph.values``);
each node's window for a batch of ``M`` mutants is an ``(M, C, W_i)`` tensor, computed from the
reference activations around it with the inputs' windows written in. Offsets, widths and the read
positions are worked out once, for every input position, when the plan is made, so the loop over
batches never waits on the device. A mean or sum over the sequence axis changes by the sum of the
window's difference, and is updated so; any other node that mixes the whole axis (a flatten and a
linear layer, a reshape of the axis, a concatenation along it) gets its full input, the reference
with the window written in, and the rest of the graph runs in full from there.

Along the common chain of a sequence model (stride-1 convolutions, activations, residual
additions, crops, and a mean or sum over the axis), each node carries its window's *change* from
the reference instead of its value, position-major and channels-last: a convolution's change is a
few matrix products written into shifted blocks, an addition reads no reference at all, and an
activation reads its input's reference once (:meth:`WindowISM._plan_changes`). Each batch computes
only the part of each window that can reach the output for one of its edits (a crop before a mean
leaves about half of the last layers' windows unread), and a batch of the three edits at each of
consecutive positions reads the references as strided views, not gathered copies.

This is the idea of fastISM (Nair et al., "fastISM: performant in silico saturation mutagenesis
for convolutional neural networks", Bioinformatics 38:2397, 2022) and of tangermeme's
``fast=True`` (Schreiber, 2024), done on the one captured graph of :mod:`probe.graph`, so any
model it captures (own ``forward``, residual towers, crops, several heads) takes the fast path.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from probe import ProbeError
from probe.graph import GraphNode, ModelGraph, capture
from probe.progress import enabled

__all__ = ["WindowISM", "Unsupported", "window_table", "auto_batch_size"]

_TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}
#: multiply-adds (parameters x length x edits, roughly) below which fast=None does not capture the graph
_WORTH_CAPTURING = 2e9
_ELEMENTWISE = {"act", "batchnorm", "identity", "scale", "shift", "scale_shift"}


class Unsupported(Exception):
    """The window plan cannot be made for this graph (the caller falls back to full passes)."""


@dataclass
class _Window:
    """Where a node's changed positions lie: axis ``ax`` of the batched tensor, of length ``length``;
    for an edit at input position ``p`` the window starts at ``off[p]`` and is ``width`` wide."""

    ax: int
    length: int
    width: int
    off: np.ndarray  # (L0,) int64, on the host (plan time)
    off_dev: torch.Tensor | None = None  # the same on the compute device


@dataclass
class _Read:
    """Positions ``[start[p], start[p] + width)`` of node ``src``: the reference there, with the node's
    window written in (window index ``t + rel[p]`` at read index ``t``). ``masked``: positions outside
    ``[0, L)`` read ``fill`` (the consumer's padding), else what lies there does not matter."""

    src: int
    width: int
    fill: float
    masked: bool
    start: torch.Tensor  # (L0,) long, on the device
    rel: torch.Tensor  # (L0,) long, on the device
    shift: int | None  # rel when it is the same for every p (then the window is copied in as a block)
    margin: tuple[int, int]
    same: bool  # the read is exactly the window
    key: tuple


def auto_batch_size(device: torch.device, bytes_per_item: int, *, default: int = 256, cpu_bytes: int = 1 << 25
                    ) -> int:
    """Batch size from the memory an item takes: half the free memory on CUDA, a cache-sized batch on a CPU.

    Parameters
    ----------
    device : torch.device
    bytes_per_item : int
        Working memory of one item (one mutant).
    default : int, default 256
        Lower bound on CUDA, and the answer when ``bytes_per_item`` is unknown (0).
    cpu_bytes : int, default 32 MiB
        Working set aimed at on a CPU (the batch stays in cache).

    Returns
    -------
    int
    """
    if bytes_per_item <= 0:
        return default
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(max(default, min(1 << 17, free // 2 // bytes_per_item)))
    return int(max(32, min(4096, cpu_bytes // bytes_per_item)))


def _cast(graph: ModelGraph, device: torch.device, dtype: torch.dtype) -> list[GraphNode]:
    """The graph's nodes with their constant tensors on ``device`` in ``dtype`` (batch norm folded first)."""
    out = []
    for node in graph.nodes:
        attrs = {}
        for k, v in node.attrs.items():
            attrs[k] = v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype) \
                if torch.is_tensor(v) else v
        if node.kind == "batchnorm":  # scale and shift in float64, then rounded once to the compute dtype
            a = node.attrs
            scale = 1.0 / torch.sqrt(a["var"].double() + a["eps"])
            shift = -a["mean"].double() * scale
            if a["weight"] is not None:
                scale = scale * a["weight"].double()
                shift = shift * a["weight"].double() + (a["bias"].double() if a["bias"] is not None else 0)
            rank = len(node.shape) + 1
            view = (-1,) + (1,) * (rank - 2)
            node = replace(node, kind="scale_shift", attrs={"scale": scale.to(device, dtype).view(view),
                                                            "value": shift.to(device, dtype).view(view)})
            out.append(node)
            continue
        out.append(replace(node, attrs=attrs))
    return out


def _sequence_axis_of_reshape(shape_in: tuple[int, ...], ax: int, shape_out: tuple[int, ...]) -> int | None:
    """The axis of ``shape_out`` (batched index) that is the sequence axis ``ax`` of ``shape_in``, kept whole."""
    before, after = math.prod(shape_in[:ax - 1]), math.prod(shape_in[ax:])
    length = shape_in[ax - 1]
    for k, size in enumerate(shape_out):
        if size == length and math.prod(shape_out[:k]) == before and math.prod(shape_out[k + 1:]) == after:
            return k + 1
    return None


def _varies_along(value: object, rank: int, ax: int) -> bool:
    """Whether a constant broadcast against a batched tensor of ``rank`` changes along axis ``ax``."""
    if not torch.is_tensor(value) or value.dim() == 0:
        return False
    lead = rank - value.dim()
    return ax - lead >= 0 and value.shape[ax - lead] > 1


def _per_channel(value: object, channels: int) -> object:
    """A constant of a (B, C, L) node as a factor of a channels-last (W, M, C) change, or None."""
    if not torch.is_tensor(value) or value.numel() == 1:
        return value if not torch.is_tensor(value) else value.reshape(())
    try:
        return torch.broadcast_to(value, (1, channels, 1)).reshape(channels).contiguous()
    except RuntimeError:
        return None


class WindowISM:
    """The window plan of a captured graph for inputs of length ``length``.

    Parameters
    ----------
    graph : ModelGraph
        From :func:`probe.graph.capture` on inputs (B, 4, L).
    length : int
        The input length ``L``.
    device : torch.device
    dtype : torch.dtype
        Compute dtype (the graph's constants are cast to it).

    Raises
    ------
    Unsupported
        If the input is not (4, L) or the output does not depend on it through windows at all.
    """

    def __init__(self, graph: ModelGraph, length: int, device: torch.device, dtype: torch.dtype):
        if len(graph.input_shape) != 2 or graph.input_shape[0] != 4:
            raise Unsupported(f"the graph's input has shape {graph.input_shape}, not (4, L)")
        self.nodes = _cast(graph, device, dtype)
        # nodes computed in full (reductions, heads) run in float32 under a half-precision compute dtype:
        # f(mutant) - f(reference) of outputs of size ~1 would otherwise round away
        self.tail_dtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
        self.tail = self.nodes if self.tail_dtype == dtype else _cast(graph, device, self.tail_dtype)
        self.length, self.device, self.dtype = length, device, dtype
        self.win: list[_Window | None] = []  # None: the node is computed in full
        self.steps: list[Callable] = []
        self.reads: dict[tuple, _Read] = {}
        self.full_macs = 0.0  # multiply-adds per mutant of a full forward pass, and of the windows
        self.window_macs = 0.0
        self.materialised: list[str] = []
        self._positions = np.arange(length, dtype=np.int64)
        for i, node in enumerate(self.nodes):
            self._plan(i, node)
        if self.win[-1] is not None:  # the output runs along the sequence axis: written in full
            self.steps[-1] = self._materialising(len(self.nodes) - 1, self.steps[-1])
        if all(w is None for w in self.win[1:]):
            raise Unsupported("no node after the input keeps the sequence axis")
        for w in self.win:
            if w is not None:
                w.off_dev = torch.from_numpy(w.off).to(device)
        self._plan_changes()

    # ------------------------------------------------------------------------------------------ planning

    def _shape(self, i: int) -> tuple[int, ...]:
        return (1,) + tuple(self.nodes[i].shape)

    def _clip(self, ax: int, length: int, off: torch.Tensor, width: int) -> _Window:
        # windows are not clipped to [0, L): offsets stay affine in p (so reads copy the window in as one
        # block), and whatever lies outside the axis is masked where a consumer reads its padding
        if length < 1:
            raise Unsupported("a node's sequence axis has length 0")
        return _Window(ax, length, max(1, width), off)

    def _read(self, src: int, start: torch.Tensor, width: int, fill: float, masked: bool = True) -> _Read:
        w = self.win[src]
        lo, hi = int(start.min()), int(start.max()) + width
        margin = (max(0, -lo), max(0, hi - w.length))
        rel = start - w.off
        shift = int(rel[0]) if (rel == rel[0]).all() else None
        same = shift == 0 and width == w.width and not masked
        key = (src, width, fill, masked, tuple(start.tolist()))
        if key not in self.reads:
            self.reads[key] = _Read(src, width, fill, masked, torch.from_numpy(start).to(self.device),
                                    torch.from_numpy(rel).to(self.device), shift, margin, same, (src, fill, margin))
        return self.reads[key]

    def _macs(self, node: GraphNode, w_out: int, full_out: int) -> None:
        if node.kind == "conv":
            wt = node.attrs["weight"]
            per = wt.shape[0] * wt[0].numel()
            self.full_macs += per * full_out
            self.window_macs += per * w_out
        elif node.kind == "linear":
            wt = node.attrs["weight"]
            rows = math.prod(node.shape[:-1]) if len(node.shape) > 1 else 1
            self.full_macs += wt.numel() * rows
            self.window_macs += wt.numel() * rows * w_out / max(full_out, 1)

    def _plan(self, i: int, node: GraphNode) -> None:
        kind = node.kind
        if kind == "input":
            self.win.append(_Window(2, self.length, 1, self._positions.copy()))
            self.steps.append(self._input_step)
            return
        ins = [self.win[j] for j in node.inputs]
        if all(w is None for w in ins):
            self._full(i, node)
            return
        if len(ins) == 1:
            w = ins[0]
            planner = getattr(self, f"_plan_{kind}", None)
            if planner is not None and planner(i, node, w):
                return
            if kind in _ELEMENTWISE and not any(_varies_along(v, len(node.shape) + 1, w.ax)
                                                for v in node.attrs.values()):
                self.win.append(_Window(w.ax, w.length, w.width, w.off))
                self.steps.append(lambda st, node=node, j=node.inputs[0]: node(st.vals[j]))
                return
        elif kind in ("add", "cat") and self._plan_union(i, node, ins):
            return
        self._full(i, node)

    def _full(self, i: int, node: GraphNode) -> None:
        """Compute the node in full; windowed inputs are written into their references first."""
        node, dt = self.tail[i], self.tail_dtype
        full_in = {}
        for j in node.inputs:
            if self.win[j] is not None and j not in full_in:
                w = self.win[j]
                full_in[j] = self._read(j, np.zeros_like(w.off), w.length, 0.0, masked=False)
                self.materialised.append(self.nodes[j].name)
        self.win.append(None)
        size = math.prod(node.shape[-1:]) if node.shape else 1
        self._macs(node, size, size)

        def step(st, node=node, full_in=full_in):
            return node(*[st.read(full_in[j]).to(dt) if j in full_in else st.vals[j] for j in node.inputs])
        self.steps.append(step)

    def _materialising(self, i: int, step: Callable) -> Callable:
        w = self.win[i]
        r = self._read(i, np.zeros_like(w.off), w.length, 0.0, masked=False)
        self.materialised.append(self.nodes[i].name)

        def last(st, step=step, r=r, i=i):
            st.vals[i] = step(st)
            return st.read(r)
        return last

    def _plan_mixing(self, i: int, node: GraphNode, w: _Window, kernel: int, stride: int, dilation: int,
                     left: int, fill: float, apply: Callable) -> bool:
        if w.ax != len(node.shape):  # the window must run along the last axis of (B, C, L)
            return False
        length_out = node.shape[-1]
        ext = (kernel - 1) * dilation
        off = -((ext - left - w.off) // stride)  # ceil((off + left - ext) / stride)
        out = self._clip(w.ax, length_out, off, (w.width - 1 + ext) // stride + 1)
        width_in = (out.width - 1) * stride + ext + 1
        r = self._read(node.inputs[0], out.off * stride - left, width_in, fill)
        self.win.append(out)
        self._macs(node, out.width, length_out)
        self.steps.append(lambda st, r=r, apply=apply: apply(st.read(r)))
        return True

    def _plan_conv(self, i: int, node: GraphNode, w: _Window) -> bool:
        a = node.attrs
        if a["weight"].dim() != 3:
            return False
        k, s, d = a["weight"].shape[-1], a["stride"][0], a["dilation"][0]
        pad = a["padding"]
        left = 0 if pad == "valid" else d * (k - 1) // 2 if pad == "same" else pad[0]
        wt, b, g = a["weight"], a["bias"], a["groups"]
        if s == 1 and w.ax == len(node.shape):
            return self._plan_conv_change(i, node, w, k, d, left)
        return self._plan_mixing(i, node, w, k, s, d, left, 0.0,
                                 lambda x: F.conv1d(x, wt, b, s, 0, d, g))

    def _plan_conv_change(self, i: int, node: GraphNode, w: _Window, k: int, d: int, left: int) -> bool:
        """A stride-1 convolution is linear: its window is the reference plus the convolution of the change.

        The change ``x' - x`` is zero outside the input's window, so the transposed convolution of
        those ``W`` columns alone gives the ``W + (K - 1) d`` changed outputs, with ``W K`` instead
        of ``(W + (K - 1) d) K`` columns of multiply-adds (half of them for BPNet's widest layers).
        """
        j = node.inputs[0]
        ext = (k - 1) * d
        out = self._clip(w.ax, node.shape[-1], w.off + left - ext, w.width + ext)
        self.win.append(out)
        under = self._read(j, w.off, w.width, 0.0)
        ref_out = self._read(i, out.off, out.width, 0.0, masked=False)
        weight, g = node.attrs["weight"], node.attrs["groups"]
        c_out, c_in, _ = weight.shape
        # conv1d weight (C_out, C_in / g, K) as a conv_transpose1d weight (C_in, C_out / g, K), flipped
        wt = weight.reshape(g, c_out // g, c_in, k).transpose(1, 2).reshape(g * c_in, c_out // g, k).flip(-1)
        wt = wt.contiguous()
        self._macs(node, w.width, node.shape[-1])
        zero = torch.zeros((), dtype=self.dtype, device=self.device)

        def step(st, j=j, under=under, ref_out=ref_out):
            diff = torch.where(st.inside(j), st.vals[j], zero) - st.reference(under)
            return st.reference(ref_out) + F.conv_transpose1d(diff, wt, None, 1, 0, 0, g, d)
        self.steps.append(step)
        return True

    def _plan_maxpool(self, i: int, node: GraphNode, w: _Window) -> bool:
        a = node.attrs
        if len(a["kernel"]) != 1:
            return False
        k, s, p, d = a["kernel"][0], a["stride"][0], a["padding"][0], a["dilation"][0]
        return self._plan_mixing(i, node, w, k, s, d, p, float("-inf"),
                                 lambda x: F.max_pool1d(x, k, s, 0, d))

    def _plan_avgpool(self, i: int, node: GraphNode, w: _Window) -> bool:
        a = node.attrs
        if len(a["kernel"]) != 1 or a["ceil_mode"] or (a["padding"][0] and not a["count_include_pad"]):
            return False  # the divisor would change at the ends
        k, s, p = a["kernel"][0], a["stride"][0], a["padding"][0]
        return self._plan_mixing(i, node, w, k, s, 1, p, 0.0, lambda x: F.avg_pool1d(x, k, s, 0))

    def _plan_slice(self, i: int, node: GraphNode, w: _Window) -> bool:
        a = node.attrs
        if a["dim"] != w.ax:
            return False
        step = a["step"]
        if step == 1:  # a crop: the window moves by its start, and positions inside stay inside
            self.win.append(self._clip(w.ax, node.shape[w.ax - 1], w.off - a["start"], w.width))
            self.steps.append(lambda st, j=node.inputs[0]: st.vals[j])
            return True
        return self._plan_mixing(i, node, w, 1, step, 1, -a["start"], 0.0,
                                 lambda x, step=step: x[..., ::step] if step > 1 else x)

    def _plan_pad(self, i: int, node: GraphNode, w: _Window) -> bool:
        pad = list(node.attrs["pad"])
        rank = len(node.shape) + 1
        k = 2 * (rank - 1 - w.ax)  # the pair of the sequence axis
        if k >= len(pad):
            return False  # pads other axes only: element-wise
        left = pad[k]
        rest = pad[:k] + [0, 0] + pad[k + 2:]
        out = self._clip(w.ax, node.shape[w.ax - 1], w.off + left, w.width)
        r = self._read(node.inputs[0], out.off - left, out.width, node.attrs["value"])
        self.win.append(out)
        value = node.attrs["value"]
        self.steps.append(lambda st, r=r: F.pad(st.read(r), rest, value=value) if any(rest) else st.read(r))
        return True

    def _plan_reduction(self, i: int, node: GraphNode, w: _Window) -> bool:
        dims, keep = node.attrs["dims"], node.attrs["keepdim"]
        if w.ax not in dims:
            ax = w.ax if keep else w.ax - sum(d < w.ax for d in dims)
            self.win.append(_Window(ax, w.length, w.width, w.off))
            self.steps.append(lambda st, node=node, j=node.inputs[0]: node(st.vals[j]))
            return True
        # the reduction changes by the window's difference from the reference
        j = node.inputs[0]
        shape_in = self._shape(j)
        count = math.prod(shape_in[d] for d in dims) if node.kind == "mean" else 1
        ref = self._read(j, w.off, w.width, 0.0)
        self.win.append(None)
        self.materialised.append(f"{node.name} (incremental)")

        def step(st, i=i, j=j, ref=ref, count=count):
            diff = st.vals[j] - st.reference(ref)
            diff = torch.where(st.inside(j), diff, torch.zeros((), dtype=diff.dtype, device=diff.device))
            delta = diff.to(self.tail_dtype).sum(dims, keepdim=keep)
            return st.ref(i) + (delta / count if count != 1 else delta)
        self.steps.append(step)
        return True

    _plan_mean = _plan_sum = _plan_reduction

    def _plan_select(self, i: int, node: GraphNode, w: _Window) -> bool:
        d = node.attrs["dim"]
        if d == w.ax:
            return False
        self.win.append(_Window(w.ax - (d < w.ax), w.length, w.width, w.off))
        self.steps.append(lambda st, node=node, j=node.inputs[0]: node(st.vals[j]))
        return True

    def _plan_reshape(self, i: int, node: GraphNode, w: _Window) -> bool:
        j = node.inputs[0]
        shape_in = self._shape(j)[1:]
        ax = _sequence_axis_of_reshape(shape_in, w.ax, tuple(node.shape))
        if ax is None:
            return False
        shape = list(node.shape)
        self.win.append(_Window(ax, w.length, w.width, w.off))

        def step(st, j=j, ax=ax, shape=shape):
            x = st.vals[j]
            s = list(shape)
            s[ax - 1] = x.shape[w.ax]
            return x.reshape([x.shape[0]] + s)
        self.steps.append(step)
        return True

    def _plan_permute(self, i: int, node: GraphNode, w: _Window) -> bool:
        perm = node.attrs["perm"]
        self.win.append(_Window(perm.index(w.ax), w.length, w.width, w.off))
        self.steps.append(lambda st, node=node, j=node.inputs[0]: node(st.vals[j]))
        return True

    def _plan_linear(self, i: int, node: GraphNode, w: _Window) -> bool:
        if w.ax == len(node.shape):
            return False  # mixes the sequence axis: computed in full
        self.win.append(_Window(w.ax, w.length, w.width, w.off))
        self._macs(node, w.width, w.length)
        self.steps.append(lambda st, node=node, j=node.inputs[0]: node(st.vals[j]))
        return True

    def _plan_union(self, i: int, node: GraphNode, ins: list[_Window | None]) -> bool:
        if any(w is None for w in ins):
            return False
        ax = ins[0].ax
        if any(w.ax != ax or w.length != ins[0].length for w in ins):
            return False
        if node.kind == "cat" and node.attrs["dim"] == ax:
            return False
        shapes = [self._shape(j)[1:] for j in node.inputs]
        if node.kind == "add" and any(s != shapes[0] for s in shapes):
            return False  # broadcasting against the window is not tracked
        lo = np.min([w.off for w in ins], axis=0)
        hi = np.max([w.off + w.width for w in ins], axis=0)
        out = self._clip(ax, ins[0].length, lo, int((hi - lo).max()))
        reads = [self._read(j, out.off, out.width, 0.0, masked=False) for j in node.inputs]
        self.win.append(out)
        self.steps.append(lambda st, node=node, reads=reads: node(*[st.read(r) for r in reads]))
        return True

    def _input_step(self, st: _State) -> torch.Tensor:
        return (st.base[:, None] == torch.arange(4, device=st.base.device)).to(self.dtype)[:, :, None]

    # ------------------------------------------------------------------------------------------ changes

    def _plan_changes(self) -> None:
        """Carry the change ``x' - x`` instead of the value wherever the graph allows it.

        From the input on, as long as the nodes are stride-1 convolutions, element-wise nodes,
        residual additions, channel concatenations, crops and pads along the sequence axis of
        (B, C, L) activations, each node's window is held as its change from the reference,
        position-major and channels-last, ``(W, M, C)``. A convolution's change is then ``K``
        matrix products accumulated in place into shifted blocks of its output (no reference read),
        an addition adds its inputs' changes at their offsets (no reference read), and only an
        activation reads the reference, once: ``f(r + d) - f(r)``. The change is zero outside each
        node's axis, so a mean or sum over the sequence axis is the reference plus the change's sum.
        Where the graph leaves this set, the window is written back into the reference (the value
        form above) for the nodes that follow.

        When a batch's positions are known on the host (``span``), each node computes only the part
        of its window that can reach the output for some edit of the batch (:meth:`_needed`): a
        crop before a mean, for instance, leaves half of the last layers' windows unread.
        """
        self.change: dict[int, tuple] = {}  # node -> (rule, arguments)
        consumers = {i: [] for i in range(len(self.nodes))}
        for i, node in enumerate(self.nodes):
            for j in node.inputs:
                consumers[j].append(i)
        for i, node in enumerate(self.nodes):
            rule = self._change_rule(i, node, consumers)
            if rule is not None:
                self.change[i] = rule
        if len(self.change) < 2:
            self.change = {}
            return
        last = len(self.nodes) - 1
        # nodes whose whole window is needed: read as values by the rest of the graph, or the output
        self.valued = {i for i in self.change if self.win[i] is not None
                       and (i == last or any(c not in self.change for c in consumers[i]))}
        self.order = sorted(self.change)
        # windows that move one position per position edited (the strided reads of a run need it)
        self.affine = {i: bool((self.win[i].off - self.win[i].off[0] == self._positions).all())
                       for i in self.order if self.win[i] is not None}
        steps = list(self.steps)
        for i in self.order:
            if self.win[i] is None:
                steps[i] = self._reduced(i)
            elif i in self.valued:
                steps[i] = self._valued(i, i == last)
            else:
                steps[i] = lambda st, i=i: st.change(i)
        self.steps = steps

    def _change_rule(self, i: int, node: GraphNode, consumers: dict[int, list[int]]) -> tuple | None:
        """How node ``i``'s change follows from its inputs' changes, or None where it does not."""
        kind, w = node.kind, self.win[i]
        if kind == "input":
            return ("input",)
        ins = node.inputs
        if any(j not in self.change for j in ins):
            return None
        if w is None:  # a mean or sum over the sequence axis of a change
            j = ins[0]
            if kind in ("mean", "sum") and node.attrs["dims"] == (2,) and self.win[j] is not None:
                return ("reduce", j)
            return None
        if w.ax != 2 or len(node.shape) != 2:
            return None
        if kind == "conv":
            a = node.attrs
            if a["weight"].dim() != 3 or a["stride"][0] != 1 or a["groups"] != 1:
                return None
            k, d = a["weight"].shape[-1], a["dilation"][0]
            taps = [a["weight"][:, :, t].t().contiguous() for t in range(k)]  # (C_in, C_out) per tap
            return ("conv", ins[0], taps, [(k - 1 - t) * d for t in range(k)])
        if kind == "act":
            return None if any(torch.is_tensor(v) for v in node.attrs.values()) else ("act", ins[0], node)
        if kind in ("scale", "scale_shift"):
            factor = _per_channel(node.attrs["value" if kind == "scale" else "scale"], node.shape[0])
            return None if factor is None else ("scale", ins[0], factor)
        if kind in ("shift", "identity"):
            return ("same", ins[0])
        if (kind == "slice" and node.attrs["step"] == 1) or (kind == "pad" and len(node.attrs["pad"]) == 2):
            # the window moves with the axis; what falls off it is masked, in place where nothing else reads it
            alone = len(consumers[ins[0]]) == 1 and self.nodes[ins[0]].kind in ("conv", "act", "add")
            return ("crop", ins[0], alone)
        if kind == "add":
            parts = []
            for j, coef in zip(ins, (1.0, node.attrs["alpha"])):
                rel = self.win[j].off - w.off
                if not (rel == rel[0]).all() or rel[0] < 0 or rel[0] + self.win[j].width > w.width:
                    return None
                parts.append((j, int(rel[0]), coef))
            # an input as wide as the sum, read by this node alone, takes the others in place
            own = next((t for t, (j, rel, _) in enumerate(parts) if rel == 0 and self.win[j].width == w.width
                        and len(consumers[j]) == 1 and ins.count(j) == 1
                        and self.nodes[j].kind in ("conv", "act", "add")), None)
            if own is not None:
                parts.insert(0, parts.pop(own))
            return ("add", parts, own is not None)
        if kind == "cat" and node.attrs["dim"] == 1:
            if any(self.win[j].width != w.width or (self.win[j].off != w.off).any() for j in ins):
                return None
            return ("cat", ins)
        return None

    def _needed(self, span: tuple[int, int] | None) -> dict[int, tuple[int, int]]:
        """Per node, the range ``[a, b)`` of its window that can reach the output for an edit in ``span``.

        Walked from the output back: a reduction needs the positions inside its input's axis for some
        edit of the span, a convolution's output range ``[a, b)`` needs inputs ``[a - (K - 1) d, b)``,
        an addition its range less each input's offset, an element-wise node, crop or pad the same
        range. None: the whole windows (the positions are not known on the host).
        """
        full = {i: (0, self.win[i].width) for i in self.order if self.win[i] is not None}
        if span is None:
            return full
        lo, hi = span
        need: dict[int, tuple[int, int]] = {i: full[i] for i in self.valued}

        def grow(j, a, b):
            a, b = max(a, 0), min(b, self.win[j].width)
            if b <= a:
                return
            old = need.get(j)
            need[j] = (a, b) if old is None else (min(a, old[0]), max(b, old[1]))

        for i in reversed(self.order):
            rule = self.change[i]
            if rule[0] == "reduce":
                w = self.win[rule[1]]
                off = w.off[lo:hi + 1]
                grow(rule[1], -int(off.max()), w.length - int(off.min()))
                continue
            if i not in need or rule[0] == "input":
                continue
            a, b = need[i]
            if rule[0] == "conv":
                grow(rule[1], a - max(rule[3]), b)
            elif rule[0] == "add":
                for j, rel, _ in rule[1]:
                    grow(j, a - rel, b - rel)
            elif rule[0] == "cat":
                for j in rule[1]:
                    grow(j, a, b)
            else:
                grow(rule[1], a, b)
        return need

    def _reduced(self, i: int) -> Callable:
        node = self.tail[i]
        j = node.inputs[0]
        count = self._shape(j)[2] if node.kind == "mean" else 1
        keep = node.attrs["keepdim"]

        def step(st, i=i, j=j):
            d = st.delta.get(j)
            delta = d.to(self.tail_dtype).sum(0) if d is not None else st.ref(i).new_zeros(())
            delta = delta[:, :, None] if keep and delta.dim() else delta
            return st.ref(i) + (delta / count if count != 1 else delta)
        return step

    def _valued(self, i: int, last: bool) -> Callable:
        """The change, and the window written into the reference for the nodes that read values."""
        w = self.win[i]
        r = self._read(i, w.off, w.width, 0.0, masked=False)

        def step(st, i=i, r=r):
            st.change(i)
            return st.reference(r) + st.delta[i].permute(1, 2, 0)
        if not last:
            return step
        full = self._read(i, np.zeros_like(w.off), w.length, 0.0, masked=False)

        def final(st, step=step, full=full, i=i):
            st.vals[i] = step(st)
            return st.read(full)
        return final

    # ------------------------------------------------------------------------------------------ running

    def bytes_per_mutant(self) -> int:
        """Working memory of one mutant: its windows, the reads and the nodes computed in full."""
        elems = 0
        for i, w in enumerate(self.win):
            shape = self._shape(i)[1:]
            per = math.prod(shape) if shape else 1
            elems += per if w is None else per // max(w.length, 1) * w.width
        for r in self.reads.values():
            shape = self._shape(r.src)[1:]
            elems += math.prod(shape) // max(self.win[r.src].length, 1) * r.width
        return 3 * elems * torch.finfo(self.dtype).bits // 8

    @torch.no_grad()
    def references(self, X: torch.Tensor) -> _References:
        """Activations of the unedited sequences (S, 4, L), computed once for all their mutants."""
        vals: list[torch.Tensor] = []
        for i, w in enumerate(self.win):
            if i == 0:
                vals.append(X.to(self.dtype))
                continue
            node, dt = (self.nodes[i], self.dtype) if w is not None else (self.tail[i], self.tail_dtype)
            vals.append(node(*[vals[j].to(dt) for j in node.inputs]))
        return _References(self, vals)

    @torch.no_grad()
    def outputs(self, refs: _References, seq: torch.Tensor, base: torch.Tensor, pos: torch.Tensor,
                span: tuple[int, int] | None = None, run: tuple[int, int, int] | None = None) -> torch.Tensor:
        """Outputs (M, K) for the mutants (``seq`` indexes ``refs``; ``base`` written at ``pos``).

        ``span``: the smallest and largest of ``pos``, known on the host, which trims each window to
        what the batch needs and spares the masks of the nodes whose windows lie inside their axes
        (None: whole windows, all masked). ``run = (s, p, k)``: the batch is three edits at each of
        the positions ``p, ..., p + k - 1`` of sequence ``s``, in that order, so the references are
        read as strided views instead of gathered.
        """
        st = _State(self, refs, seq, base, pos, span, run)
        for i, step in enumerate(self.steps):
            st.vals[i] = step(st)
        return st.vals[len(self.steps) - 1].reshape(len(seq), -1)


class _References:
    """Reference activations of a group of sequences and, per read, their padded position-major copies."""

    def __init__(self, plan: WindowISM, vals: list[torch.Tensor]):
        self.plan, self.vals = plan, vals
        self.padded: dict[tuple, tuple[torch.Tensor, int]] = {}
        self.channels_last: dict[int, tuple[torch.Tensor, int, int]] = {}

    def rows_cl(self, j: int, form: str = "value") -> tuple[torch.Tensor, int, int]:
        """Node ``j``'s reference (S, C, L) as rows (S * L', C), padded with zeros to cover every window of
        the node; with ``L'`` and the left padding. ``form``: see :meth:`_State.reference_cl`."""
        got = self.channels_last.get((j, form))
        if got is None:
            w = self.plan.win[j]
            left, right = max(0, -int(w.off.min())), max(0, int(w.off.max()) + w.width - w.length)
            v = F.pad(self.vals[j], (left, right)) if left or right else self.vals[j]
            v = v.clamp(max=0) if form == "low" else -v.clamp(min=0) if form == "high" else v
            got = (v.transpose(1, 2).reshape(-1, v.shape[1]).contiguous(), v.shape[2], left)
            self.channels_last[(j, form)] = got
        return got

    def rows(self, r: _Read) -> tuple[torch.Tensor, int]:
        """Node ``r.src``'s reference as (C, S * (L + margins)), padded with ``r.fill``, and ``L + margins``."""
        got = self.padded.get(r.key)
        if got is None:
            w = self.plan.win[r.src]
            v = self.vals[r.src].movedim(w.ax, -1)
            v = v.reshape(v.shape[0], -1, v.shape[-1])
            v = F.pad(v, r.margin, value=r.fill) if any(r.margin) else v
            got = (v.transpose(0, 1).reshape(v.shape[1], -1).contiguous(), v.shape[-1])
            self.padded[r.key] = got
        return got

    def gather(self, r: _Read, seq: torch.Tensor, start: torch.Tensor, width: int) -> torch.Tensor:
        """(M, C, width): ``width`` positions of the padded reference from ``start`` (padded index) of each ``seq``."""
        flat, lp = self.rows(r)
        at = (seq * lp + start)[:, None] + torch.arange(width, device=start.device)
        m, c = len(at), flat.shape[0]
        return torch.gather(flat.expand(m, -1, -1), 2, at[:, None, :].expand(m, c, width))


class _State:
    """One batch of mutants on its way through the graph."""

    def __init__(self, plan: WindowISM, refs: _References, seq: torch.Tensor, base: torch.Tensor,
                 pos: torch.Tensor, span: tuple[int, int] | None = None, run: tuple[int, int, int] | None = None):
        self.plan, self.refs, self.seq, self.base, self.pos, self.span = plan, refs, seq, base, pos, span
        self.run = run
        self.vals: dict[int, torch.Tensor] = {}
        self.delta: dict[int, torch.Tensor] = {}
        self.start: dict[int, int] = {}
        self.need = plan._needed(span) if plan.change else {}

    # the rules of WindowISM._change_rule, each on the range [a, b) of the node's window that the batch needs

    def change(self, i: int) -> None:
        """Node ``i``'s change over its needed range: ``delta[i]`` (b - a, M, C), starting at ``start[i] = a``."""
        rule = self.plan.change[i]
        if rule[0] == "input":
            col = self.refs.vals[0][self.seq, :, self.pos]  # (M, 4): the reference's column at each edit
            onehot = (self.base[:, None] == torch.arange(4, device=self.base.device)).to(col.dtype)
            self.delta[0], self.start[0] = onehot.sub_(col)[None], 0
            return
        if i not in self.need:
            return
        a, b = self.need[i]
        self.start[i] = a
        if rule[0] == "conv":
            self.delta[i] = self.masked(i, self._conv(rule[1], rule[2], rule[3], a, b))
        elif rule[0] == "act":
            d = self._part(rule[1], a, b)
            node = rule[2]
            view = self.reference_run(rule[1], a, b, "low" if node.attrs["act"] == "relu" else "value")
            if view is not None:  # three edits per position: the references as strided (b - a, k, 1, C) views
                n, k = view.shape[:2]
                d = d.view(n, k, 3, -1)
                if node.attrs["act"] == "relu":
                    out = torch.add(d, view)
                    out = torch.maximum(out, self.reference_run(rule[1], a, b, "high"), out=out)
                else:
                    out = node(view + d).sub_(node(view))
                self.delta[i] = out.reshape(n, 3 * k, -1).contiguous()
            elif node.attrs["act"] == "relu":
                # relu(r + d) - relu(r) = max(min(r, 0) + d, -max(r, 0)): two gathers, no further tensor
                low = self.reference_cl(rule[1], a, b, "low").add_(d)
                self.delta[i] = torch.maximum(low, self.reference_cl(rule[1], a, b, "high"), out=low)
            else:
                r = self.reference_cl(rule[1], a, b)
                self.delta[i] = node(r + d).sub_(node(r))
        elif rule[0] == "scale":
            self.delta[i] = self._part(rule[1], a, b) * rule[2]
        elif rule[0] == "same":
            self.delta[i] = self._part(rule[1], a, b)
        elif rule[0] == "crop":
            self.delta[i] = self.masked(i, self._part(rule[1], a, b), copy=not rule[2])
        elif rule[0] == "add":
            self.delta[i] = self._add(rule[1], rule[2], a, b)
        else:  # cat along channels
            self.delta[i] = torch.cat([self._part(j, a, b) for j in rule[1]], 2)

    def _part(self, j: int, a: int, b: int) -> torch.Tensor:
        d, s = self.delta[j], self.start[j]
        return d if (s, s + len(d)) == (a, b) else d[a - s:b - s]

    def _conv(self, j: int, taps: list[torch.Tensor], shifts: list[int], a: int, b: int) -> torch.Tensor:
        """A stride-1 convolution's change over outputs [a, b): each tap's matrix product, in place.

        Taps go in order of their shift (input ``u`` lands on output ``u + shift``); each writes the
        outputs no tap has reached yet and adds into the rest, so no output is filled with zeros first
        unless no tap reaches it.
        """
        d, s = self.delta[j], self.start[j]
        c_in, c_out = taps[0].shape
        out = d.new_empty(b - a, d.shape[1], c_out)
        done = 0  # outputs [a, a + done) hold a value
        for k in sorted(range(len(taps)), key=shifts.__getitem__):
            w, shift = taps[k], shifts[k]
            u0, u1 = max(s, a - shift), min(s + len(d), b - shift)
            if u1 <= u0:
                continue
            o0, o1 = u0 + shift - a, u1 + shift - a
            if o0 > done:
                out[done:o0].zero_()
                done = o0
            if done > o0:  # add into [o0, min(done, o1))
                m = min(done, o1)
                out[o0:m].view(-1, c_out).addmm_(d[u0 - s:u0 - s + m - o0].reshape(-1, c_in), w)
            if o1 > done:  # write [done, o1)
                torch.mm(d[done + a - shift - s:u1 - s].reshape(-1, c_in), w, out=out[done:o1].view(-1, c_out))
                done = o1
        if done < len(out):
            out[done:].zero_()
        return out

    def _add(self, parts: list[tuple[int, int, float]], own: bool, a: int, b: int) -> torch.Tensor:
        """The change of ``x + alpha y`` over [a, b): each input's change added at its offset."""
        j0, _, c0 = parts[0]
        if own and self.start.get(j0) == a and len(self.delta[j0]) == b - a:
            out = self.delta[j0] if c0 == 1.0 else self.delta[j0].mul_(c0)
            rest = parts[1:]
        else:
            some = self.delta[next(j for j, _, _ in parts if j in self.delta)]
            out = some.new_zeros((b - a,) + some.shape[1:])
            rest = parts
        for j, rel, c in rest:  # input u lands on output u + rel
            if j not in self.delta:
                continue
            d, s = self.delta[j], self.start[j]
            u0, u1 = max(s, a - rel), min(s + len(d), b - rel)
            if u1 > u0:
                out[u0 + rel - a:u1 + rel - a].add_(d[u0 - s:u1 - s], alpha=c)
        return out

    def masked(self, i: int, d: torch.Tensor, copy: bool = False) -> torch.Tensor:
        """The change ``d`` of node ``i`` over its range, zero outside the node's axis."""
        w, a = self.plan.win[i], self.start[i]
        if self.span is not None:  # no mask where every window of the span lies inside the axis
            off = w.off[self.span[0]:self.span[1] + 1]
            if int(off.min()) + a >= 0 and int(off.max()) + a + len(d) <= w.length:
                return d
        q = (w.off_dev.index_select(0, self.pos) + a)[None, :] + torch.arange(len(d), device=self.pos.device)[:, None]
        keep = ((q >= 0) & (q < w.length)).to(d.dtype)[:, :, None]
        return d * keep if copy else d.mul_(keep)

    def reference_run(self, j: int, a: int, b: int, form: str) -> torch.Tensor | None:
        """For a batch that is a run (see :meth:`WindowISM.outputs`), node ``j``'s reference over window
        positions [a, b) as a strided view (b - a, k, 1, C) of its rows: mutant ``m`` at position ``p + m``
        reads row ``p + m + t``. None for other batches, or where the window does not move with the edit."""
        if self.run is None or not self.plan.affine.get(j, False):
            return None
        s, p, k = self.run
        rows, lp, left = self.refs.rows_cl(j, form)
        first = s * lp + left + a + int(self.plan.win[j].off[p])
        c = rows.shape[1]
        return rows.as_strided((b - a, k, 1, c), (c, c, c, 1), rows.storage_offset() + first * c)

    def reference_cl(self, j: int, a: int, b: int, form: str = "value") -> torch.Tensor:
        """The reference of node ``j`` over window positions [a, b), position-major, channels-last (b - a, M, C).

        ``form``: "value", or "low" (``min(r, 0)``) or "high" (``-max(r, 0)``) for a relu's change.
        """
        w = self.plan.win[j]
        rows, lp, left = self.refs.rows_cl(j, form)
        at = (self.seq * lp + (left + a) + w.off_dev.index_select(0, self.pos))[None, :] \
            + torch.arange(b - a, device=self.pos.device)[:, None]
        return rows.index_select(0, at.reshape(-1)).view(b - a, len(self.pos), rows.shape[1])

    def ref(self, i: int) -> torch.Tensor:
        return self.refs.vals[i].index_select(0, self.seq)

    def inside(self, i: int) -> torch.Tensor:
        """Mask, broadcastable to node ``i``'s window, of the positions inside ``[0, L_i)``."""
        w = self.plan.win[i]
        q = w.off_dev.index_select(0, self.pos)[:, None] + torch.arange(w.width, device=self.pos.device)
        mask = (q >= 0) & (q < w.length)
        rank = self.vals[i].dim()
        return mask.reshape((len(q),) + (1,) * (w.ax - 1) + (w.width,) + (1,) * (rank - 1 - w.ax))

    def reference(self, r: _Read) -> torch.Tensor:
        """The reference of node ``r.src`` over ``[start, start + width)`` per mutant (no window written in)."""
        w = self.plan.win[r.src]
        shape = list(self.refs.vals[r.src].shape)
        shape[0], shape[w.ax] = len(self.pos), r.width
        start = r.start.index_select(0, self.pos) + r.margin[0]
        ctx = self.refs.gather(r, self.seq, start, r.width)
        return ctx.reshape(*(shape[:w.ax] + shape[w.ax + 1:]), r.width).movedim(-1, w.ax)

    def read(self, r: _Read) -> torch.Tensor:
        """Node ``r.src`` over ``[start, start + width)`` per mutant, in the node's own layout."""
        w = self.plan.win[r.src]
        win = self.vals[r.src]
        if r.same:
            return win
        shape = list(win.shape)
        shape[w.ax] = r.width
        lead = shape[:w.ax] + shape[w.ax + 1:]
        start = r.start.index_select(0, self.pos) + r.margin[0]

        def reference(first: int, width: int) -> torch.Tensor:  # (M, C, width) from the padded reference
            return self.refs.gather(r, self.seq, start + first, width)

        if r.masked:
            win = torch.where(self.inside(r.src), win, torch.full((), r.fill, dtype=win.dtype, device=win.device))
        cw = win.movedim(w.ax, -1).reshape(len(start), -1, w.width)
        if r.shift is not None and 0 <= -r.shift and w.width - r.shift <= r.width:
            # the window lies inside the read at the same place for every edit: reference on either side
            lo, hi = -r.shift, w.width - r.shift
            parts = ([reference(0, lo)] if lo else []) + [cw] + ([reference(hi, r.width - hi)] if hi < r.width
                                                                 else [])
            ctx = torch.cat(parts, -1) if len(parts) > 1 else cw
        elif r.shift is not None:
            ctx = reference(0, r.width)
            lo, hi = max(0, -r.shift), min(r.width, w.width - r.shift)
            if hi > lo:
                ctx[:, :, lo:hi] = cw[:, :, lo + r.shift:hi + r.shift]
        else:
            ctx = reference(0, r.width)
            t = torch.arange(r.width, device=ctx.device)
            u = r.rel.index_select(0, self.pos)[:, None] + t
            idx = torch.where((u >= 0) & (u < w.width), u, t + w.width)
            ctx = torch.cat([cw, ctx], -1).gather(2, idx[:, None, :].expand(-1, ctx.shape[1], -1))
        return ctx.reshape(*lead, r.width).movedim(-1, w.ax)


def window_table(model: object, X: torch.Tensor, edits: torch.Tensor, y0: torch.Tensor, *,
                 plain: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                 batch_size: int | None, output: int | str | None = None, reduce: Callable | None = None,
                 dtype: torch.dtype | None = None, fast: bool | None = None, progress: bool | None = False
                 ) -> tuple[torch.Tensor | None, WindowISM | None]:
    """The ISM table (N, 4, L, K) by the window plan, or None where it does not apply or fails its check.

    Parameters
    ----------
    model : torch.nn.Module
    X : torch.Tensor, shape (N, 4, L)
        On the compute device.
    edits : torch.Tensor, shape (E, 3)
        (sequence, base, position) of each substitution, grouped by sequence in increasing order.
    y0 : torch.Tensor, shape (N, K)
        The model's outputs on ``X``.
    plain : callable
        ``plain(seq, base, pos) -> (M, K)``: full forward passes on mutants, for the check.
    batch_size : int or None
        Mutants per step; None: :func:`auto_batch_size`.
    output, reduce : passed to :func:`probe.graph.capture`.
    dtype : torch.dtype, optional
        Compute dtype (default ``y0``'s).
    fast : bool or None
        True: warn when the plan cannot be made or fails its check.
    progress : bool or None

    Returns
    -------
    (torch.Tensor or None, WindowISM or None)
        The table and the plan that made it.
    """
    from tqdm.auto import tqdm

    with torch.no_grad():
        return _window_table(model, X, edits, y0, plain, batch_size, output, reduce, dtype, fast, progress, tqdm)


def _window_table(model, X, edits, y0, plain, batch_size, output, reduce, dtype, fast, progress, tqdm):
    n, _, length = X.shape
    dtype = y0.dtype if dtype is None else dtype
    try:
        if not isinstance(model, torch.nn.Module):
            raise Unsupported("it is not a torch.nn.Module")
        if fast is None and sum(p.numel() for p in model.parameters()) * length * len(edits) < _WORTH_CAPTURING:
            return None, None  # full passes take less time than capturing the graph
        try:
            graph = capture(model, X[:2], output=output, reduce=reduce)
        except ProbeError as err:
            raise Unsupported(str(err)) from None
        plan = WindowISM(graph, length, X.device, dtype)
    except Unsupported as err:
        if fast:
            warnings.warn(f"saturation_mutagenesis uses full forward passes: {err}", stacklevel=3)
        return None, None
    k = y0.shape[1]
    if batch_size is None:  # a multiple of three: batches of whole positions are runs
        bs = auto_batch_size(X.device, plan.bytes_per_mutant())
        bs = max(3, bs - bs % 3)
    else:
        bs = int(batch_size)
    # where each sequence's edits begin (edits are ordered by sequence): one host read, before the loop
    bounds = torch.searchsorted(edits[:, 0].contiguous(), torch.arange(n + 1, device=edits.device)).tolist()
    # within a sequence, position-major: the edits of one position share their windows (runs, below)
    edits = edits[torch.argsort(edits[:, 0] * (4 * length) + edits[:, 2] * 4 + edits[:, 1])]
    # and the sequences and positions on the host, to know which batches reach the ends of an axis (and
    # need masks) and which are runs of three edits per position
    sq, at = edits[:, [0, 2]].cpu().numpy().T
    counts = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
    group = max(1, min(64, -(-bs // (3 * length))))
    table = torch.zeros(n, 4, length, k, device=X.device, dtype=y0.dtype)
    y_ref = torch.empty(n, k, device=X.device, dtype=table.dtype)
    first = True
    done = 0
    bar = tqdm(total=len(edits), desc="ISM", disable=not enabled(progress),
               leave=False)
    for g0 in range(0, n, group):
        g1 = min(n, g0 + group)
        stop = done + sum(counts[g0:g1])
        if stop == done:
            continue
        refs = plan.references(X[g0:g1])
        y_ref[g0:g1] = refs.vals[-1].reshape(g1 - g0, -1).to(table.dtype)
        c = done
        while c < stop:
            c1 = min(c + bs, stop)
            end = bounds[sq[c] + 1]
            if end - bounds[sq[c]] >= bs:  # a long sequence: batches do not straddle its end
                c1 = min(c1, end)
            seq, base, pos = edits[c:c1].unbind(1)
            y = plan.outputs(refs, seq - g0, base, pos, (int(at[c:c1].min()), int(at[c:c1].max())),
                             _run(sq[c:c1] - g0, at[c:c1]))
            if first:
                first = False
                reason = _check(plan, refs, X, seq, base, pos, y, g0, plain)
                if reason is not None:
                    bar.close()
                    warnings.warn("saturation_mutagenesis fell back to full forward passes: the receptive-field "
                                  f"fast path failed its check, {reason}", stacklevel=3)
                    return None, plan
            table[seq, base, pos] = y.to(table.dtype) - y_ref[seq]
            bar.update(len(seq))
            c = c1
        done = stop
    bar.close()
    return table, plan


def _run(sq: np.ndarray, at: np.ndarray) -> tuple[int, int, int] | None:
    """(s, p, k) when the edits are three at each of positions p, ..., p + k - 1 of sequence s, else None."""
    k, rest = divmod(len(at), 3)
    if rest or sq[0] != sq[-1] or (sq != sq[0]).any() or at[-1] - at[0] != k - 1:
        return None
    return (int(sq[0]), int(at[0]), k) if (at == np.repeat(np.arange(at[0], at[0] + k), 3)).all() else None


def _check(plan: WindowISM, refs: _References, X: torch.Tensor, seq: torch.Tensor, base: torch.Tensor,
           pos: torch.Tensor, y: torch.Tensor, g0: int, plain: Callable) -> str | None:
    """Compare with full forward passes: the first batch's outputs ``y`` at edits spread over it, and the
    edits at both ends of the first sequence, each end a batch of its own."""
    length = X.shape[-1]
    s0 = g0  # the first sequence of the first batch
    spread = torch.from_numpy(np.unique(np.linspace(0, len(seq) - 1, min(len(seq), 24)).round().astype(np.int64)))
    spread = spread.to(X.device)
    fast, want = [y[spread]], [(seq[spread], base[spread], pos[spread])]
    for ends_at in ([0, 1], [length - 2, length - 1]):
        ends_at = sorted({p for p in ends_at if 0 <= p < length})
        column = X[s0][:, ends_at].tolist()
        ends = [[s0, b, p] for j, p in enumerate(ends_at) for b in range(4) if column[b][j] != 1]
        if ends:
            e = np.asarray(ends, dtype=np.int64)
            s2, b2, p2 = torch.from_numpy(e).to(X.device).unbind(1)
            fast.append(plan.outputs(refs, s2 - g0, b2, p2, (min(ends_at), max(ends_at)), _run(e[:, 0] - g0, e[:, 2])))
            want.append((s2, b2, p2))
    fast = torch.cat(fast)
    want = plain(*[torch.cat([w[k] for w in want]) for k in range(3)])
    if fast.shape != want.shape:
        return f"it returned shape {tuple(fast.shape)} where the model returns {tuple(want.shape)}"
    err, scale = torch.stack([(fast.double() - want.double()).abs().max(), want.double().abs().max()]).tolist()
    scale = max(scale, 1.0)
    tol = max(_TOLERANCE.get(plan.dtype, 1e-4), _TOLERANCE.get(want.dtype, 1e-4)) * scale
    return None if err <= tol else f"it differed from full forward passes by {err:.3g} (tolerance {tol:.3g})"
