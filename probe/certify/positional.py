r"""Positional interval bounds: bound propagation that knows a substitution only moves what it can reach.

Over the set :math:`S_r(x)` of inputs that differ from x in at most r positions (a
:class:`~probe.certify.hamming.HammingSet`), every neuron j carries its clean value
:math:`a_j(x)` and a non-negative *charge* :math:`c_{p,j}` per input position p such that

.. math:: |a_j(x') - a_j(x)| \le \sum_{p \in \Delta(x, x')} c_{p,j},

:math:`\Delta` the set of changed positions. Its interval over :math:`S_r` is then
:math:`a_j(x) \pm` the sum of its r largest charges. Rules:

- nodes linear in the input (the first layers up to the first activation): the signed effect of
  every single substitution is computed exactly from the columns of the linear map (shared by all
  inputs), so their intervals are exact and the charge is the largest effect's magnitude;
- affine nodes: :math:`c_{p} \leftarrow |M| c_p`; sums and concatenations act on the charges alike;
- activations with Lipschitz constant L: :math:`c_p \leftarrow \min(L c_p, D)` with D the largest
  deviation the interval allows (summing the r largest clipped charges still bounds the deviation);
- max pooling: the window maximum of the charges, since
  :math:`|\max h' - \max h| \le \max_u |h'_u - h_u| \le \sum_p \max_u c_{p,u}`;
- output: the specification is folded into the last affine layer (the margins' charges are
  :math:`|C M| c_p`), and each margin's lower bound is its clean value minus its r largest charges.

Every interval is also intersected with plain interval propagation from the input box. Unlike a
linear relaxation, a neuron no changed position can reach contributes nothing, which is what a
sparse change does to a convolutional network; the price is that signs are dropped after the first
activation. The bound is differentiable, so certified training can use it.
"""

from __future__ import annotations

import math

import torch

from ..errors import ProbeError
from .base import BoundMethod, InputSet, register_bound_method
from .graph import Graph, abs_apply, affine_backward
from .hamming import HammingSet
from .ibp import NON_MONOTONE, non_monotone_range

__all__ = ["PositionalIBP"]

#: Lipschitz constants of activations over the real line (others charge their whole range to a position)
_LIPSCHITZ = {"relu": 1.0, "leaky_relu": 1.0, "tanh": 1.0, "sigmoid": 0.25}


def _topr_sum(c: torch.Tensor, inputs: HammingSet, n: int, p: int) -> torch.Tensor:
    """Sum of the r_n largest charges over positions: (N*P, *shape) -> (N, *shape)."""
    k = min(int(inputs.max_radius), p)
    shape = c.shape[1:]
    if k <= 0:
        return c.new_zeros((n,) + tuple(shape))
    flat = c.reshape(n, p, -1)
    top = torch.topk(flat, k, dim=1).values                                   # (N, k, D)
    take = (torch.arange(k, device=c.device)[None, :] < inputs.radius[:, None]).to(c)
    return (top * take[:, :, None]).sum(1).reshape((n,) + tuple(shape))


def _linear_columns(graph: Graph, center: torch.Tensor) -> dict[int, torch.Tensor]:
    """For every node linear in the input: its linear part applied to each input coordinate's unit vector,
    shape (D_in, *node.shape) (shared by all inputs)."""
    in_shape = tuple(center.shape[1:])
    d = math.prod(in_shape)
    eye = torch.eye(d, dtype=center.dtype, device=center.device).reshape((d,) + in_shape)
    cols: dict[int, torch.Tensor] = {}
    for i, node in enumerate(graph.nodes):
        if node.kind == "input":
            cols[i] = eye
        elif node.kind == "affine" and node.inputs[0] in cols:
            src = cols[node.inputs[0]]
            zero = node(torch.zeros((1,) + tuple(src.shape[1:]), dtype=src.dtype, device=src.device))
            cols[i] = node(src) - zero
        elif node.kind == "add" and all(j in cols for j in node.inputs):
            cols[i] = cols[node.inputs[0]] + node.alpha * cols[node.inputs[1]]
        elif node.kind == "cat" and all(j in cols for j in node.inputs):
            cols[i] = torch.cat([cols[j] for j in node.inputs], node.dim)
    return cols


def _effects(cols: torch.Tensor, inputs: HammingSet) -> torch.Tensor:
    """Signed change of a linear node under each single substitution: (N, P, A, *shape), A alternatives."""
    enc = inputs.encoding
    n = len(inputs)
    flat = cols.reshape(cols.shape[0], -1)                                   # (D_in, D_out)
    if enc.kind == "bits":
        sign = (1 - 2 * inputs.center.reshape(n, -1))                          # (N, P): +1 sets a bit, -1 clears it
        eff = sign[:, :, None] * flat[None]                                    # (N, P, D_out)
        eff = eff[:, :, None, :]
    else:
        k, p = enc.alphabet, enc.positions
        # coordinate index of (symbol c, position q) in the flattened input, for the category axis enc.axis
        idx = torch.arange(math.prod(enc.shape), device=flat.device).reshape(enc.shape)
        idx = idx.movedim(enc.axis - 1, 0).reshape(k, p)                       # (K, P)
        per = flat[idx.T.reshape(-1)].reshape(p, k, -1)                        # (P, K, D_out)
        xk = inputs.center.movedim(enc.axis, 1).reshape(n, k, p).transpose(1, 2)  # (N, P, K)
        cur = torch.einsum("npk,pkd->npd", xk, per)
        eff = per[None] - cur[:, :, None, :]                                   # (N, P, K, D_out)
    eff = eff * inputs.mutable[:, :, None, None].to(eff)
    return eff.reshape(eff.shape[:3] + tuple(cols.shape[1:]))


def _argmax_index(node: object, h: torch.Tensor) -> torch.Tensor:
    """Flat index into ``h`` (N, C, ...) of each pooling window's clean maximum, shape (N, outputs)."""
    import torch.nn.functional as F

    a = node.attrs
    pool = {3: F.max_pool1d, 4: F.max_pool2d, 5: F.max_pool3d}[h.dim()]
    _, idx = pool(h, a["kernel"], a["stride"], a["padding"], return_indices=True)
    plane = math.prod(h.shape[2:])
    channel = torch.arange(h.shape[1], device=h.device).view((1, -1) + (1,) * (h.dim() - 2))
    return (idx + channel * plane).flatten(1)


@register_bound_method
class PositionalIBP(BoundMethod):
    """Interval bounds with per-position charges over a budget of substitutions; see the module docstring.

    Only for :class:`~probe.certify.hamming.HammingSet` inputs (``certified_radius(..., norm="hamming",
    method="positional")``).
    """

    name = "positional"

    def bounds(self, graph: Graph, inputs: InputSet, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(inputs, HammingSet):
            raise ProbeError("the positional bound needs a Hamming perturbation set (norm='hamming')")
        n, p = len(inputs), inputs.encoding.positions
        x = inputs.center
        vals = graph.values(x)
        cols = _linear_columns(graph, x)
        # per node: (lower, upper) charges, each (N*P, *shape): the deviation lies in [sum of lower, sum of upper]
        charge: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        box: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        out = graph.output
        fold = graph.nodes[out].kind == "affine" and out not in cols
        for i, node in enumerate(graph.nodes):
            if node.kind == "input" or (i == out and fold):
                continue
            v = vals[i]
            if i in cols:
                eff = _effects(cols[i], inputs)                                 # (N, P, A, *shape)
                neg, pos = eff.amin(2).clamp(max=0).flatten(0, 1), eff.amax(2).clamp(min=0).flatten(0, 1)
                charge[i] = (neg, pos)
                box[i] = (v - _topr_sum(-neg, inputs, n, p), v + _topr_sum(pos, inputs, n, p))
                continue
            src = node.inputs[0]
            if node.kind == "affine":
                neg, pos = charge[src]
                zero = node(torch.zeros((1,) + tuple(neg.shape[1:]), dtype=neg.dtype, device=neg.device))
                lin, mag = node(neg + pos) - zero, abs_apply(node, pos - neg)
                c = ((lin - mag) / 2, (lin + mag) / 2)                        # W+ neg + W- pos, W+ pos + W- neg
                (l, u) = box[src]
                mid, rad = node((l + u) / 2), abs_apply(node, (u - l) / 2)
                ibp = (mid - rad, mid + rad)
            elif node.kind == "act":
                (l, u) = box[src]
                ibp = non_monotone_range(node, l, u) if node.act in NON_MONOTONE else (node(l), node(u))
                down, up = (ibp[0] - v).clamp(max=0)[:, None], (ibp[1] - v).clamp(min=0)[:, None]
                neg, pos = (t.reshape((n, p) + tuple(v.shape[1:])) for t in charge[src])
                lip = _LIPSCHITZ.get(node.act)
                if lip is not None and node.act not in NON_MONOTONE:
                    # monotone and L-Lipschitz: the deviation keeps its sign and shrinks by at most L
                    neg, pos = lip * neg, lip * pos
                else:
                    hit = (neg < 0) | (pos > 0)
                    neg = torch.where(hit, down, torch.zeros_like(neg))
                    pos = torch.where(hit, up, torch.zeros_like(pos))
                c = (torch.maximum(neg, down).flatten(0, 1), torch.minimum(pos, up).flatten(0, 1))
            elif node.kind == "maxpool":
                neg, pos = charge[src]
                # max h' - max h <= max_u (h'_u - h_u); >= h'_u* - h_u* at the clean maximiser u*
                idx = _argmax_index(node, vals[src])
                neg = neg.flatten(1).gather(1, idx.repeat_interleave(p, 0)).reshape((-1,) + tuple(v.shape[1:]))
                c = (neg, node(pos))
                ibp = (node(box[src][0]), node(box[src][1]))
            elif node.kind == "add":
                a, b = node.inputs
                al = node.alpha
                (na, pa), (nb, pb) = charge[a], charge[b]
                c = (na + al * nb, pa + al * pb) if al >= 0 else (na + al * pb, pa + al * nb)
                (la, ua), (lb, ub) = box[a], box[b]
                ibp = (la + al * lb, ua + al * ub) if al >= 0 else (la + al * ub, ua + al * lb)
            else:  # cat
                c = tuple(torch.cat([charge[j][k] for j in node.inputs], node.dim) for k in (0, 1))
                ibp = (torch.cat([box[j][0] for j in node.inputs], node.dim),
                       torch.cat([box[j][1] for j in node.inputs], node.dim))
            charge[i] = c
            box[i] = (torch.maximum(v - _topr_sum(-c[0], inputs, n, p), ibp[0]),
                      torch.minimum(v + _topr_sum(c[1], inputs, n, p), ibp[1]))
        return self._margins(graph, inputs, spec, vals, cols, charge, box, fold)

    def _margins(self, graph: Graph, inputs: HammingSet, spec: torch.Tensor, vals: list, cols: dict,
                 charge: dict, box: dict, fold: bool) -> tuple[torch.Tensor, torch.Tensor]:
        n, p = len(inputs), inputs.encoding.positions
        out = graph.output
        s = spec.shape[1]
        m0 = torch.einsum("nsk,nk->ns", spec, vals[out].reshape(n, -1))
        if out in cols:                                                        # a linear model: exact
            eff = _effects(cols[out], inputs).reshape(n, p, -1, spec.shape[2])  # (N, P, A, K)
            meff = torch.einsum("npak,nsk->nspa", eff, spec)
            lo = -_topr_sum(-meff.amin(3).clamp(max=0).permute(0, 2, 1).flatten(0, 1), inputs, n, p)
            hi = _topr_sum(meff.amax(3).clamp(min=0).permute(0, 2, 1).flatten(0, 1), inputs, n, p)
            return m0 + lo, m0 + hi
        if fold:
            node = graph.nodes[out]
            j = node.inputs[0]
            A = spec.reshape((n, s) + tuple(node.shape))
            A_in, _ = affine_backward(node, A, graph.nodes[j].shape)           # (N, S, *in_shape)
            neg, pos = (t.reshape(n, p, -1) for t in charge[j])
            Ap, An = A_in.reshape(n, s, -1).clamp(min=0), A_in.reshape(n, s, -1).clamp(max=0)
            m_neg = torch.einsum("nsd,npd->nps", Ap, neg) + torch.einsum("nsd,npd->nps", An, pos)
            m_pos = torch.einsum("nsd,npd->nps", Ap, pos) + torch.einsum("nsd,npd->nps", An, neg)
            (l, u) = box[j]
            mid, rad = ((l + u) / 2).reshape(n, -1), ((u - l) / 2).reshape(n, -1)
            A2 = A_in.reshape(n, s, -1)
            ibp_lo = torch.einsum("nsd,nd->ns", A2, mid) - torch.einsum("nsd,nd->ns", A2.abs(), rad)
            ibp_hi = torch.einsum("nsd,nd->ns", A2, mid) + torch.einsum("nsd,nd->ns", A2.abs(), rad)
            off = m0 - torch.einsum("nsd,nd->ns", A2, vals[j].reshape(n, -1))   # C b: the same at every x'
            ibp_lo, ibp_hi = ibp_lo + off, ibp_hi + off
        else:
            neg, pos = (t.reshape(n, p, -1) for t in charge[out])
            Ap, An = spec.clamp(min=0), spec.clamp(max=0)
            m_neg = torch.einsum("nsk,npk->nps", Ap, neg) + torch.einsum("nsk,npk->nps", An, pos)
            m_pos = torch.einsum("nsk,npk->nps", Ap, pos) + torch.einsum("nsk,npk->nps", An, neg)
            (l, u) = box[out]
            l, u = l.reshape(n, -1), u.reshape(n, -1)
            pos, neg = spec.clamp(min=0), spec.clamp(max=0)
            ibp_lo = torch.einsum("nsk,nk->ns", pos, l) + torch.einsum("nsk,nk->ns", neg, u)
            ibp_hi = torch.einsum("nsk,nk->ns", pos, u) + torch.einsum("nsk,nk->ns", neg, l)
        lo = m0 - _topr_sum(-m_neg.flatten(0, 1), inputs, n, p)
        hi = m0 + _topr_sum(m_pos.flatten(0, 1), inputs, n, p)
        return torch.maximum(lo, ibp_lo), torch.minimum(hi, ibp_hi)
