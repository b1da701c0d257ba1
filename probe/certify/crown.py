r"""CROWN: backward linear relaxation (Zhang et al., "Efficient Neural Network Robustness
Certification with General Activation Functions", NeurIPS 2018).

Every activation :math:`\sigma` with pre-activation bounds :math:`[l, u]` is sandwiched
between two lines, :math:`a^L x + b^L \le \sigma(x) \le a^U x + b^U`. A linear function
:math:`\Lambda^\top y` of a layer is pulled back to the input: through an affine layer
:math:`\Lambda \leftarrow M^\top \Lambda` (bias collected), through an activation
:math:`\Lambda \leftarrow [\Lambda]_+ a^L + [\Lambda]_- a^U` for a lower bound, and at the
input the set is concretized by Hölder's inequality,
:math:`\min_{\lVert x - x_0\rVert_p \le \epsilon} \Lambda^\top x = \Lambda^\top x_0 - \epsilon
\lVert\Lambda\rVert_q`. Pre-activation bounds of every hidden layer come from the same
backward pass (intersected with the interval bounds, which are also sound), computed only
for the neurons whose ReLU is unstable.

Relaxations: convex increasing activations (Softplus, ELU) use the chord above and the tangent
at the midpoint below. ReLU / LeakyReLU use the chord above and CROWN's adaptive lower line (slope 1
if :math:`u > -l`, else the negative slope). Tanh and sigmoid use the DeepPoly rule (Singh
et al., POPL 2019): the chord where the function is convex (upper) or concave (lower), else a
line of slope :math:`\min(\sigma'(l), \sigma'(u))` through the end point. MaxPool: the
lower line is the window's input with the largest lower bound, the upper line the constant
window maximum of the upper bounds (the interval bound).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import ProbeError
from .base import BoundMethod, InputSet, register_bound_method
from .graph import Graph, Node, affine_backward
from .ibp import backward_to_box, interval_bounds

__all__ = ["CROWN", "AlphaCROWN", "relax_activation"]

_CHUNK_ELEMENTS = 1 << 24  # size of the linear coefficients held at once during intermediate bounds


def _derivative(act: str, x: torch.Tensor) -> torch.Tensor:
    if act == "tanh":
        return 1 - torch.tanh(x) ** 2
    s = torch.sigmoid(x)
    return s * (1 - s)


def relax_activation(node: Node, l: torch.Tensor, u: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lines ``(a_lower, b_lower, a_upper, b_upper)`` with a_l x + b_l <= act(x) <= a_u x + b_u on [l, u]."""
    act = node.act
    if act in ("relu", "leaky_relu"):
        s = node.slope if act == "leaky_relu" else 0.0
        if not 0.0 <= s <= 1.0:
            raise ProbeError(f"layer {node.name!r}: LeakyReLU with negative_slope {s} outside [0, 1] is not "
                             "handled by CROWN")
        active, inactive = l >= 0, u <= 0
        unstable = ~(active | inactive)
        width = torch.where(unstable, u - l, torch.ones_like(u))
        chord = torch.where(unstable, (u - s * l) / width, torch.where(active, 1.0, s).to(u))
        b_up = torch.where(unstable, s * l - chord * l, torch.zeros_like(u))
        a_lo = torch.where(unstable, torch.where(u > -l, 1.0, s).to(u), chord)
        return a_lo, torch.zeros_like(u), chord, b_up
    if act == "convex":
        return _relax_convex(node, l, u)
    if act == "monotone":  # increasing: the constant lines at the end points' values
        fl, fu = node(l), node(u)
        return torch.zeros_like(u), fl, torch.zeros_like(u), fu
    if act in _CURVATURE:
        return _relax_smooth(node, l, u)
    f = torch.tanh if act == "tanh" else torch.sigmoid
    fl, fu = f(l), f(u)
    width = u - l
    tiny = width <= 1e-6 * (1 + l.abs())
    chord = torch.where(tiny, _derivative(act, l), (fu - fl) / torch.where(tiny, torch.ones_like(width), width))
    flat = torch.minimum(_derivative(act, l), _derivative(act, u))
    a_lo = torch.where(l >= 0, chord, flat)
    a_up = torch.where(u <= 0, chord, flat)
    # degenerate intervals: the flat slope is sound on both sides (applied everywhere: no host test of `tiny`)
    a_lo = torch.where(tiny, flat, a_lo)
    a_up = torch.where(tiny, flat, a_up)
    return a_lo, fl - a_lo * l, a_up, fu - a_up * u


#: bounds on |f''| over the real line: GELU phi(x)(2 - x^2) peaks at 2 phi(0) = 0.79788; SiLU's at x = 0, 1/2
_CURVATURE = {"gelu": 0.7979, "silu": 0.5001}
_GRID = 17


def _relax_smooth(node: Node, l: torch.Tensor, u: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Activations that are neither monotone nor convex (GELU, SiLU): two lines parallel to the chord.

    With slope :math:`a = (f(u) - f(l)) / (u - l)`, :math:`h(x) = f(x) - a x` is sampled at K
    evenly spaced points of [l, u]. Between two samples :math:`\Delta` apart, a function with
    :math:`|h''| \le M` stays within :math:`M \Delta^2 / 8` of their chord, so
    :math:`\min h \ge \min_k h(t_k) - M\Delta^2/8` and :math:`\max h \le \max_k h(t_k) + M\Delta^2/8`:
    the offsets of the lower and upper lines.
    """
    width = u - l
    tiny = width <= 1e-6 * (1 + l.abs())
    fl, fu = node(l), node(u)
    a = torch.where(tiny, torch.zeros_like(u), (fu - fl) / torch.where(tiny, torch.ones_like(width), width))
    t = torch.linspace(0, 1, _GRID, dtype=l.dtype, device=l.device).view((-1,) + (1,) * l.dim())
    pts = l.unsqueeze(0) + t * width.unsqueeze(0)
    h = node(pts) - a.unsqueeze(0) * pts
    gap = _CURVATURE[node.act] * (width / (_GRID - 1)) ** 2 / 8
    slack = 1e-6 * (1 + h.abs().amax(0))
    return a, h.amin(0) - gap - slack, a, h.amax(0) + gap + slack


def _relax_convex(node: Node, l: torch.Tensor, u: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Convex increasing activations (Softplus, ELU with alpha <= 1): chord above, tangent at the midpoint below."""
    fl, fu = node(l), node(u)
    width = u - l
    tiny = width <= 1e-6 * (1 + l.abs())
    chord = (fu - fl) / torch.where(tiny, torch.ones_like(width), width)
    mid = (l + u) / 2
    tangent = node.derivative(mid)
    # Softplus switches to the identity above its threshold, a jump of about exp(-threshold): keep that slack
    slack = 1e-7 * (1 + fl.abs())
    a_lo = torch.where(tiny, torch.zeros_like(u), tangent)
    b_lo = torch.where(tiny, fl, node(mid) - tangent * mid) - slack
    a_up = torch.where(tiny, torch.zeros_like(u), chord)
    b_up = torch.where(tiny, fu, fl - chord * l) + slack
    return a_lo, b_lo, a_up, b_up


def _maxpool_relax(node: Node, l: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat input index of each window's largest lower bound, and the window's largest upper bound."""
    a = node.attrs
    pool = {3: F.max_pool1d, 4: F.max_pool2d, 5: F.max_pool3d}[l.dim()]
    _, idx = pool(l, a["kernel"], a["stride"], a["padding"], return_indices=True)
    umax = pool(u, a["kernel"], a["stride"], a["padding"])
    plane = math.prod(l.shape[2:])
    channel = torch.arange(l.shape[1], device=l.device).view((1, -1) + (1,) * (l.dim() - 2))
    return (idx + channel * plane).flatten(1), umax


def backward_lower(graph: Graph, target: int, A: torch.Tensor, relax: dict, inputs: InputSet) -> torch.Tensor:
    """Lower bound (N, S) of ``A . node_target`` over the input set, given relaxations of earlier nodes."""
    n, s = A.shape[:2]
    coeffs: dict[int, torch.Tensor] = {target: A}
    offset = A.new_zeros(n, s)
    result = None
    for i in range(target, -1, -1):
        if i not in coeffs:
            continue
        A = coeffs.pop(i)
        node = graph.nodes[i]
        if node.kind == "input":
            result = offset + inputs.concretize_lower(A)
            continue
        src = node.inputs[0]
        in_shape = graph.nodes[src].shape
        if node.kind == "affine":
            A_in, b = affine_backward(node, A, in_shape)
            offset = offset + b
        elif node.kind == "act":
            a_lo, b_lo, a_up, b_up = (t if t.dim() == A.dim() else t.unsqueeze(1) for t in relax[i])
            pos, neg = A.clamp(min=0), A.clamp(max=0)
            A_in = pos * a_lo + neg * a_up
            offset = offset + (pos * b_lo + neg * b_up).flatten(2).sum(2)
        elif node.kind == "maxpool":
            idx, umax = relax[i]
            pos, neg = A.clamp(min=0).flatten(2), A.clamp(max=0).flatten(2)
            d_in = math.prod(in_shape)
            A_in = A.new_zeros(n, s, d_in).scatter_add_(2, idx.unsqueeze(1).expand(n, s, -1), pos)
            A_in = A_in.view((n, s) + tuple(in_shape))
            offset = offset + (neg * umax.flatten(1).unsqueeze(1)).sum(2)
        elif node.kind == "add":  # a + alpha b: the coefficients flow to both summands
            other = node.inputs[1]
            coeffs[other] = coeffs.get(other, 0) + (A if node.alpha == 1.0 else node.alpha * A)
            A_in = A
        else:  # cat: each input takes its slice of the coefficients
            sizes = [graph.nodes[j].shape[node.dim - 1] for j in node.inputs]
            parts = torch.split(A, sizes, dim=node.dim + 1)
            for j, part in zip(node.inputs[1:], parts[1:]):
                coeffs[j] = coeffs[j] + part if j in coeffs else part
            A_in = parts[0]
        coeffs[src] = coeffs[src] + A_in if src in coeffs else A_in
    return result


def _needs_bounds(graph: Graph) -> dict[int, bool]:
    """Nodes whose bounds feed a relaxation -> whether only unstable ReLU neurons matter."""
    out: dict[int, bool] = {}
    for node in graph.nodes:
        if node.kind in ("act", "maxpool"):
            j = node.inputs[0]
            relu_only = node.kind == "act" and node.act in ("relu", "leaky_relu")
            out[j] = out.get(j, True) and relu_only
    return out


@register_bound_method
class CROWN(BoundMethod):
    """Backward linear relaxation; see the module docstring.

    Parameters
    ----------
    intermediate : {"crown", "ibp"}, default "crown"
        How pre-activation bounds of hidden layers are obtained: by CROWN itself (tighter,
        one backward pass per hidden layer) or by interval propagation (CROWN-IBP, Zhang et
        al. 2020: one pass in all).
    """

    name = "crown"

    def __init__(self, *, intermediate: str = "crown"):
        self.intermediate = intermediate

    def bounds(self, graph: Graph, inputs: InputSet, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        boxes, relax = self.intermediate_bounds(graph, inputs)
        out = graph.output
        A = spec.reshape(spec.shape[:2] + graph.nodes[out].shape)
        s = spec.shape[1]
        A2 = torch.cat([A, -A], 1)
        both = self._final(graph, out, A2, relax, boxes, inputs)
        # interval bounds (on CROWN's tightened boxes) are sound too: keep the better of the two
        both = torch.maximum(both, backward_to_box(graph, out, A2, boxes, inputs))
        return both[:, :s], -both[:, s:]

    def intermediate_bounds(self, graph: Graph, inputs: InputSet) -> tuple[list, dict]:
        """Boxes ``(lower, upper)`` of every node (tightened where they feed a relaxation) and the relaxations."""
        if self.intermediate not in ("crown", "ibp"):
            raise ProbeError(f"intermediate must be 'crown' or 'ibp', got {self.intermediate!r}")
        boxes = interval_bounds(graph, inputs)
        need = _needs_bounds(graph)
        relax: dict = {}
        for i, node in enumerate(graph.nodes):
            if node.kind in ("act", "maxpool"):
                l, u = boxes[node.inputs[0]]
                relax[i] = relax_activation(node, l, u) if node.kind == "act" else _maxpool_relax(node, l, u)
            if i in need and self.intermediate == "crown" and graph.nodes[i].kind != "input":
                boxes[i] = self._tighten(graph, i, boxes[i], need[i], relax, inputs)
        return boxes, relax

    def _final(self, graph: Graph, out: int, A: torch.Tensor, relax: dict, boxes: list, inputs: InputSet
               ) -> torch.Tensor:
        return backward_lower(graph, out, A, relax, inputs)

    def _tighten(self, graph: Graph, i: int, box: tuple[torch.Tensor, torch.Tensor], relu_only: bool,
                 relax: dict, inputs: InputSet) -> tuple[torch.Tensor, torch.Tensor]:
        l, u = box
        n = l.shape[0]
        shape = l.shape[1:]
        lf, uf = l.flatten(1).clone(), u.flatten(1).clone()
        if relu_only:
            # the one host sync per hidden layer: only unstable neurons need a backward pass, and their
            # number sizes the work (computing all of them would cost far more than the wait)
            rows = ((lf < 0) & (uf > 0)).any(0).nonzero().flatten()
        else:
            rows = torch.arange(lf.shape[1], device=l.device)
        if len(rows) == 0:
            return box
        widest = max(math.prod(nd.shape) for nd in graph.nodes[: i + 1])
        chunk = max(1, _CHUNK_ELEMENTS // max(1, 2 * n * widest))
        for start in range(0, len(rows), chunk):
            r = rows[start:start + chunk]
            eye = torch.zeros(len(r), lf.shape[1], dtype=l.dtype, device=l.device)
            eye[torch.arange(len(r)), r] = 1
            A = eye.view((1, len(r)) + tuple(shape)).expand((n, len(r)) + tuple(shape))
            both = backward_lower(graph, i, torch.cat([A, -A], 1), relax, inputs)
            lf[:, r] = torch.maximum(lf[:, r], both[:, : len(r)])
            uf[:, r] = torch.minimum(uf[:, r], -both[:, len(r):])
        l2, u2 = lf.view_as(l), uf.view_as(u)
        # relaxations of activations fed by this node are rebuilt from the tighter box by the caller
        return l2, u2


@register_bound_method
class AlphaCROWN(CROWN):
    r"""CROWN with the lower slopes of unstable ReLUs optimised (alpha-CROWN; Xu et al., "Fast and Complete:
    Enabling Complete Neural Network Verification with Rapid and Massively Parallel Incomplete Verifiers",
    ICLR 2021).

    Any slope :math:`a \in [s, 1]` gives a valid lower line of a (leaky) ReLU, so every iterate's
    bound is sound; projected Adam ascends the final bound with one slope per neuron, output
    row and input, and the best bound seen per entry is kept. Intermediate bounds are CROWN's.

    Parameters
    ----------
    iterations : int, default 20
        Adam steps.
    lr : float, default 0.1
    intermediate : {"crown", "ibp"}, default "crown"
    """

    name = "alpha-crown"

    def __init__(self, *, iterations: int = 20, lr: float = 0.1, intermediate: str = "crown"):
        super().__init__(intermediate=intermediate)
        self.iterations = iterations
        self.lr = lr

    def _final(self, graph: Graph, out: int, A: torch.Tensor, relax: dict, boxes: list, inputs: InputSet
               ) -> torch.Tensor:
        best = backward_lower(graph, out, A, relax, inputs)
        free = {}
        for i, node in enumerate(graph.nodes):
            if node.kind == "act" and node.act in ("relu", "leaky_relu") and i in relax:
                l, u = boxes[node.inputs[0]]
                unstable = (l < 0) & (u > 0)
                if unstable.any():
                    init = relax[i][0].unsqueeze(1).expand((A.shape[0], A.shape[1]) + tuple(l.shape[1:]))
                    free[i] = (init.clone().requires_grad_(True), unstable.unsqueeze(1), node.slope)
        if not free or int(self.iterations) < 1:
            return best
        opt = torch.optim.Adam([v[0] for v in free.values()], lr=float(self.lr))
        with torch.enable_grad():
            for _ in range(int(self.iterations)):
                trial = dict(relax)
                for i, (alpha, unstable, slope) in free.items():
                    a_lo, b_lo, a_up, b_up = relax[i]
                    a = torch.where(unstable, alpha.clamp(slope, 1.0), a_lo.unsqueeze(1))
                    trial[i] = (a, b_lo, a_up, b_up)
                bound = backward_lower(graph, out, A, trial, inputs)
                best = torch.maximum(best, bound.detach())
                opt.zero_grad()
                (-bound.sum()).backward()
                opt.step()
        return best
