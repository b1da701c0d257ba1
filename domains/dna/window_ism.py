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

    def outputs(self, refs: _References, seq: torch.Tensor, base: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Outputs (M, K) for the mutants (``seq`` indexes ``refs``; ``base`` written at ``pos``)."""
        st = _State(self, refs, seq, base, pos)
        for i, step in enumerate(self.steps):
            st.vals[i] = step(st)
        return st.vals[len(self.steps) - 1].reshape(len(seq), -1)


class _References:
    """Reference activations of a group of sequences and, per read, their padded position-major copies."""

    def __init__(self, plan: WindowISM, vals: list[torch.Tensor]):
        self.plan, self.vals = plan, vals
        self.padded: dict[tuple, tuple[torch.Tensor, int]] = {}

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
                 pos: torch.Tensor):
        self.plan, self.refs, self.seq, self.base, self.pos = plan, refs, seq, base, pos
        self.vals: dict[int, torch.Tensor] = {}

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
    bs = auto_batch_size(X.device, plan.bytes_per_mutant()) if batch_size is None else int(batch_size)
    # where each sequence's edits begin (edits are ordered by sequence): one host read, before the loop
    bounds = torch.searchsorted(edits[:, 0].contiguous(), torch.arange(n + 1, device=edits.device)).tolist()
    counts = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
    group = max(1, min(64, -(-bs // (3 * length))))
    table = torch.zeros(n, 4, length, k, device=X.device, dtype=y0.dtype)
    y_ref = torch.empty(n, k, device=X.device, dtype=table.dtype)
    first = True
    done = 0
    bar = tqdm(total=len(edits), desc="ISM", disable=progress is False if progress is not None else None,
               leave=False)
    for g0 in range(0, n, group):
        g1 = min(n, g0 + group)
        stop = done + sum(counts[g0:g1])
        if stop == done:
            continue
        refs = plan.references(X[g0:g1])
        y_ref[g0:g1] = refs.vals[-1].reshape(g1 - g0, -1).to(table.dtype)
        for c in range(done, stop, bs):
            seq, base, pos = edits[c:min(c + bs, stop)].unbind(1)
            y = plan.outputs(refs, seq - g0, base, pos)
            if first:
                first = False
                reason = _check(plan, refs, X, seq, base, pos, g0, plain)
                if reason is not None:
                    bar.close()
                    warnings.warn("saturation_mutagenesis fell back to full forward passes: the receptive-field "
                                  f"fast path failed its check, {reason}", stacklevel=3)
                    return None, plan
            table[seq, base, pos] = y.to(table.dtype) - y_ref[seq]
            bar.update(len(seq))
        done = stop
    bar.close()
    return table, plan


def _check(plan: WindowISM, refs: _References, X: torch.Tensor, seq: torch.Tensor, base: torch.Tensor,
           pos: torch.Tensor, g0: int, plain: Callable) -> str | None:
    """Compare with full forward passes: both ends of the first sequence and edits spread over the batch."""
    length = X.shape[-1]
    ends_at = sorted({p for p in (0, 1, length - 2, length - 1) if 0 <= p < length})
    s0 = g0  # the first sequence of the first batch
    column = X[s0][:, ends_at].tolist()
    ends = [[s0, b, p] for b in range(4) for j, p in enumerate(ends_at) if column[b][j] != 1]
    spread = torch.linspace(0, len(seq) - 1, min(len(seq), 24), device=X.device).round().long()
    chk = torch.cat([torch.tensor(ends, device=X.device, dtype=torch.long).reshape(-1, 3),
                     torch.stack([seq[spread], base[spread], pos[spread]], 1)])
    s2, b2, p2 = chk.unbind(1)
    fast = plan.outputs(refs, s2 - g0, b2, p2)
    want = plain(s2, b2, p2)
    if fast.shape != want.shape:
        return f"it returned shape {tuple(fast.shape)} where the model returns {tuple(want.shape)}"
    err, scale = torch.stack([(fast.double() - want.double()).abs().max(), want.double().abs().max()]).tolist()
    scale = max(scale, 1.0)
    tol = max(_TOLERANCE.get(plan.dtype, 1e-4), _TOLERANCE.get(want.dtype, 1e-4)) * scale
    return None if err <= tol else f"it differed from full forward passes by {err:.3g} (tolerance {tol:.3g})"
