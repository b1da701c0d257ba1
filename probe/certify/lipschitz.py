r"""Lipschitz constants: upper bounds from operator norms, an empirical lower bound, and the
Lipschitz-margin certificate.

For a feed-forward composition :math:`f = g_K \circ \dots \circ g_1`,
:math:`\mathrm{Lip}_p(f) \le \prod_k \mathrm{Lip}_p(g_k)` (a residual block adds:
:math:`\mathrm{Lip}(x + g(x)) \le 1 + \mathrm{Lip}(g)`). Affine layers contribute a proven
upper bound on their operator norm from :func:`probe.operator_norms.operator_norm_upper_bound`
(convolutions as operators on the given input shape, with their padding and stride, never as a
reshaped kernel): for L2 the largest singular value by float64 SVD of the layer's matrix, or for
layers too large to write out the circular-convolution bound of Sedghi et al. (2019); for L-inf
the largest row sum of :math:`|M|` and for L1 the largest column sum, both exact. Activations
contribute their largest slope (ReLU, tanh: 1; sigmoid: 1/4). LipSDP is in
:mod:`probe.certify.lipsdp`. Power iteration, which approaches the largest singular value from
below, only serves as an estimate (:func:`probe.operator_norms.operator_norm_lower_bound`).

Certificate (Tsuzuku et al., "Lipschitz-Margin Training", NeurIPS 2018): if every logit map
is L-Lipschitz in :math:`\lVert\cdot\rVert_p \to \lVert\cdot\rVert_p`, the prediction cannot
change within radius :math:`(z_{(1)} - z_{(2)}) / (c_p L)` with :math:`c_p = \lVert e_i - e_j
\rVert_q`: :math:`\sqrt{2}` for L2, 2 for L-inf, 1 for L1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..devices import as_input, model_hygiene, resolve_device
from ..errors import ProbeError
from ..models import forward
from ..norms import check_norm, lp_norm
from ..operator_norms import operator_norm_upper_bound
from .graph import Graph, Node, build_graph

__all__ = ["LipschitzBound", "lipschitz_bound", "empirical_lipschitz_lower_bound", "lipschitz_margin_radius",
           "register_lipschitz_method", "LIPSCHITZ_METHODS"]

# largest |f'|: GELU's is Phi(x) + x phi(x) at x = sqrt(2), SiLU's sigma(x)(1 + x(1 - sigma(x))) at x ~ 2.40
_ACT_SLOPE = {"relu": 1.0, "tanh": 1.0, "sigmoid": 0.25, "gelu": 1.1290, "silu": 1.0999}
# largest slopes: SELU's is scale * alpha = 1.0507 * 1.6733 (for x < 0 near 0)
_MONOTONE_SLOPE = {"hardtanh": 1.0, "log_sigmoid": 1.0, "hardsigmoid": 1.0 / 6.0, "celu": 1.0, "selu": 1.7581}
_OUTPUT_FACTOR = {"l2": math.sqrt(2.0), "linf": 2.0, "l1": 1.0}


@dataclass(frozen=True)
class LipschitzBound:
    """An upper bound on the Lipschitz constant of a model.

    Attributes
    ----------
    value : float
        :math:`L` with :math:`\\lVert f(a) - f(b)\\rVert_p \\le L \\lVert a - b\\rVert_p` for all a, b.
    norm : str
        The norm p (on inputs and outputs).
    method : str
        "spectral" (product of operator norms), "lipsdp-neuron" or "lipsdp-layer".
    layers : dict
        Per-layer constants (name -> value) where the method has them.
    """

    value: float
    norm: str
    method: str
    layers: dict = field(default_factory=dict)

    def __float__(self) -> float:
        return float(self.value)


def _node_constant(node: Node, in_shape: tuple[int, ...], norm: str, device: torch.device) -> float:
    if node.kind == "act":
        if node.act == "leaky_relu":
            return max(1.0, abs(node.slope))
        if node.act == "monotone":
            return _MONOTONE_SLOPE[node.fn.act]
        if node.act == "convex":
            if node.fn.act == "exp":
                raise ProbeError(f"activation {node.describe()} is exp, which has no global Lipschitz constant")
            # Softplus(beta) and ELU(alpha <= 1) have slopes in [0, 1]
            return 1.0
        return _ACT_SLOPE[node.act]
    if node.kind == "maxpool":
        k, s = node.attrs["kernel"], node.attrs["stride"]
        windows = math.prod(math.ceil(ki / si) for ki, si in zip(k, s))  # windows sharing one input, at most
        return {"linf": 1.0, "l2": math.sqrt(windows), "l1": float(windows)}[norm]
    if node.fn.kind in ("reshape", "identity", "permute"):
        return 1.0
    return operator_norm_upper_bound(node.module, in_shape, norm=norm, fn=node.fn, abs_fn=node.abs_fn,
                                     device=device).value


def _input_shape(model: nn.Module, input_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    if input_shape is not None:
        return tuple(int(d) for d in input_shape)
    first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))), None)
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    raise ProbeError(f"{type(model).__name__} does not start with a Linear layer: pass input_shape (the shape of "
                     "one input, without the batch dimension) so that its layers can be taken as operators")


def _spectral(graph: Graph, norm: str, device: torch.device) -> tuple[float, dict]:
    to_node = [1.0] * len(graph.nodes)
    layers: dict[str, float] = {}
    for i, node in enumerate(graph.nodes):
        if node.kind == "input":
            continue
        if node.kind == "add":
            to_node[i] = to_node[node.inputs[0]] + abs(node.alpha) * to_node[node.inputs[1]]
            continue
        if node.kind == "cat":
            parts = [to_node[j] for j in node.inputs]
            to_node[i] = {"l2": math.sqrt(sum(p * p for p in parts)), "linf": max(parts), "l1": sum(parts)}[norm]
            continue
        c = _node_constant(node, graph.nodes[node.inputs[0]].shape, norm, device)
        layers[node.name] = c
        to_node[i] = c * to_node[node.inputs[0]]
    return to_node[-1], layers


LIPSCHITZ_METHODS: dict[str, object] = {}


def register_lipschitz_method(name: str, fn: object) -> None:
    """Add a Lipschitz upper-bound method ``fn(model, graph, *, norm, **options) -> LipschitzBound``."""
    LIPSCHITZ_METHODS[name] = fn


def lipschitz_bound(model: nn.Module, *, norm: str = "l2", method: str = "spectral",
                    input_shape: tuple[int, ...] | None = None, device: str | torch.device | None = None,
                    output: int | str | None = None, reduce: object = None, **options: object) -> LipschitzBound:
    r"""Upper bound on the Lipschitz constant of ``model`` (all outputs jointly, same norm in and out).

    Parameters
    ----------
    model : torch.nn.Module
        A feed-forward graph of the layers :func:`probe.certify.bound_outputs` handles.
    norm : {"l2", "linf", "l1"}, default "l2"
    method : {"spectral", "lipsdp-neuron", "lipsdp-layer"}, default "spectral"
        ``"spectral"``: product of per-layer operator norms, each a proven upper bound (float64 SVD
        of the layer's matrix for L2, or the circular-convolution bound for convolutions too large
        to write out; exact row / column sums for L-inf / L1). ``"lipsdp-*"``: the semidefinite
        program of Fazlyab et al. (NeurIPS 2019), solved by a built-in interior-point method
        (cvxpy solvers through ``solver=``; options in :func:`probe.certify.lipsdp.lipsdp`); for
        L-inf it is converted with :math:`\sqrt{d}`.
    input_shape : tuple of int, optional
        Shape of one input; needed when the model does not start with a Linear layer
        (convolutions are operators on a given spatial size).
    device : str or torch.device, optional
    output, reduce : optional
        For a model with several outputs: which one (index or key) and an optional reduction of
        it, as in :func:`probe.graph.capture`.

    Returns
    -------
    LipschitzBound
        ``.value`` is the bound (a float).
    """
    norm = check_norm(norm)
    dev = resolve_device(device, model)
    with model_hygiene(model, dev) as m:
        shape = _input_shape(m, input_shape)
        param = next(iter(m.parameters()), None)
        dtype = param.dtype if param is not None else torch.get_default_dtype()
        graph = build_graph(m, torch.zeros((2,) + shape, dtype=dtype, device=dev), output=output, reduce=reduce)
        if method == "spectral":
            value, layers = _spectral(graph, norm, dev)
            return LipschitzBound(value=float(value), norm=norm, method="spectral", layers=layers)
        if method.startswith("lipsdp") and method not in LIPSCHITZ_METHODS:
            from . import lipsdp  # noqa: F401  (registers the LipSDP methods)
        if method not in LIPSCHITZ_METHODS:
            raise ProbeError(f"unknown Lipschitz method {method!r}; use 'spectral', 'lipsdp-neuron' or "
                             "'lipsdp-layer'")
        return LIPSCHITZ_METHODS[method](m, graph, norm=norm, **options)


def empirical_lipschitz_lower_bound(model: object, x: object, *, norm: str = "l2", steps: int = 50,
                                    step_size: float = 0.01, radius: float = 1.0, seed: int = 0,
                                    device: str | torch.device | None = None) -> float:
    r"""A *lower* bound on the Lipschitz constant: the largest difference quotient found by ascent.

    Starting from pairs :math:`(a, b)` near the inputs ``x``, runs Adam on
    :math:`\lVert f(a) - f(b)\rVert_p / \lVert a - b\rVert_p` (gradient-norm ascent on a
    finite difference, which also works where f is piecewise linear) and returns the largest
    quotient seen. Every quotient is a valid lower bound by definition, so the result never
    exceeds the true constant (up to floating-point error).

    Parameters
    ----------
    model : torch.nn.Module or callable
    x : torch.Tensor, shape (N, ...)
        Starting points (not modified); the pairs stay within ``radius`` (L-inf) of them.
    norm : {"l2", "linf", "l1"}, default "l2"
    steps : int, default 50
    step_size : float, default 0.01
    radius : float, default 1.0
    seed : int, default 0

    Returns
    -------
    float
    """
    norm = check_norm(norm)
    dev = resolve_device(device, model, x)
    x = as_input(x, device=dev)
    g = torch.Generator().manual_seed(seed)
    a = (x + 0.1 * radius * torch.randn(x.shape, generator=g, dtype=x.dtype).to(dev)).requires_grad_(True)
    b = (a.detach() + 1e-2 * torch.randn(x.shape, generator=g, dtype=x.dtype).to(dev)).requires_grad_(True)
    opt = torch.optim.Adam([a, b], lr=step_size)
    best = 0.0
    with model_hygiene(model, dev) as m:
        for _ in range(int(steps) + 1):
            with torch.enable_grad():
                ratio = lp_norm(forward(m, a) - forward(m, b), norm) / lp_norm(a - b, norm).clamp(min=1e-12)
                best = max(best, float(ratio.detach().max()))
                opt.zero_grad()
                (-ratio.sum()).backward()
            opt.step()
            with torch.no_grad():
                a.copy_(x + (a - x).clamp(-radius, radius))
                b.copy_(x + (b - x).clamp(-radius, radius))
    return best


def lipschitz_margin_radius(model: object, x: object, lipschitz: float | LipschitzBound, *, norm: str = "l2",
                            labels: object = None, device: str | torch.device | None = None) -> torch.Tensor:
    r"""Certified radius from a Lipschitz bound: :math:`r = (z_y - \max_{j \ne y} z_j) / (c_p L)`.

    Parameters
    ----------
    lipschitz : float or LipschitzBound
        Upper bound L on the Lipschitz constant of the logits in ``norm``.
    labels : array-like of int, optional
        Default: the model's predictions. Where the label is not predicted the radius is 0.

    Returns
    -------
    torch.Tensor, shape (N,)
    """
    norm = check_norm(norm)
    L = float(lipschitz)
    if not L > 0:
        raise ProbeError(f"the Lipschitz bound must be positive, got {L}")
    dev = resolve_device(device, model, x)
    x = as_input(x, device=dev)
    with model_hygiene(model, dev) as m, torch.no_grad():
        z = forward(m, x)
    y = z.argmax(1) if labels is None else torch.as_tensor(labels, device=dev).long().reshape(-1)
    zy = z.gather(1, y[:, None]).squeeze(1)
    other = z.scatter(1, y[:, None], float("-inf")).amax(1)
    return ((zy - other) / (_OUTPUT_FACTOR[norm] * L)).clamp(min=0)
