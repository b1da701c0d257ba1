r"""Training under a Lipschitz budget: norm-constrained layers projected after every optimiser step.

For a feed-forward chain ``f = g_K o s o ... o s o g_1`` of affine layers ``g_i`` (Linear,
Conv) and 1-Lipschitz element-wise activations ``s``, the Lipschitz constant in the
norm ``p`` is at most the product of the layers' induced operator norms,
:math:`\mathrm{Lip}_p(f) \le \prod_i \lVert W_i \rVert_{p \to p}`. After every optimiser
step the weights are rescaled, all by the same factor, so that this product is at most
``budget`` (Miyato et al. 2018 normalise each layer by its spectral norm estimated by
power iteration; Gouk et al. 2021 project onto a norm ball after each step — here the
projection acts on the product, so the layers may share the budget unevenly).

During training, L2 norms of Linear layers come from warm-started power iteration (cheap,
converging from below) and convolutions from the circular-convolution upper bound (the
zero-padded convolution is a restriction of a circular one on a larger grid, whose singular
values are those of the per-frequency matrices of the kernel's DFT; Sedghi, Gupta & Long, "The
Singular Values of Convolutional Layers", ICLR 2019). At the end every norm is recomputed as a
proven upper bound by :func:`probe.operator_norms.operator_norm_upper_bound` (float64 SVD of each
layer's matrix where it can be written out) and the model is projected once more, so the
returned model *provably* satisfies the budget; certify's ``lipschitz_bound`` uses the same
function.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F

from ..errors import ProbeError
from ..norms import check_norm
from ..operator_norms import conv_l2_upper_bound, operator_norm_upper_bound
from .loop import Callback, TrainResult, check_model, check_positive, fit

__all__ = ["lipschitz_budget", "project_lipschitz", "layer_norms", "lipschitz_upper_bound"]

_ACTIVATIONS = (torch.nn.ReLU, torch.nn.ReLU6, torch.nn.Tanh, torch.nn.Sigmoid, torch.nn.Softplus, torch.nn.Hardtanh,
                torch.nn.Identity, torch.nn.Flatten, torch.nn.Unflatten, torch.nn.Dropout)
_CONV = (torch.nn.Conv1d, torch.nn.Conv2d)
_POOL = (torch.nn.MaxPool1d, torch.nn.MaxPool2d, torch.nn.AvgPool1d, torch.nn.AvgPool2d)


def _pair(v: object, d: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v),) * d


def constrained_layers(model: torch.nn.Module, norm: str) -> list[torch.nn.Module]:
    """The Linear and Conv layers of a feed-forward ``nn.Sequential`` chain whose other modules are 1-Lipschitz.

    Raises ``ProbeError`` naming the first module for which the product of layer norms
    would not bound the Lipschitz constant.
    """
    layers: list[torch.nn.Module] = []

    def walk(m: torch.nn.Module, name: str) -> None:
        if isinstance(m, torch.nn.Sequential):
            for child_name, child in m.named_children():
                walk(child, f"{name}.{child_name}" if name else child_name)
            return
        label = f"{name or 'model'} ({type(m).__name__})"
        if isinstance(m, (torch.nn.Linear, *_CONV)):
            if isinstance(m, _CONV) and m.padding_mode != "zeros":
                raise ProbeError(f"layer {label} uses padding_mode={m.padding_mode!r}; only zero padding is supported")
            layers.append(m)
        elif isinstance(m, (torch.nn.LeakyReLU, torch.nn.ELU)):
            slope = m.negative_slope if isinstance(m, torch.nn.LeakyReLU) else m.alpha
            if abs(slope) > 1:
                raise ProbeError(f"activation {label} has slope {slope} > 1: it is not 1-Lipschitz")
        elif isinstance(m, _POOL):
            d = 1 if isinstance(m, (torch.nn.MaxPool1d, torch.nn.AvgPool1d)) else 2
            k, s = _pair(m.kernel_size, d), _pair(m.stride or m.kernel_size, d)
            if norm == "l2" and any(ki > si for ki, si in zip(k, s)):
                raise ProbeError(f"pooling {label} has overlapping windows (kernel {k} > stride {s}); it is not "
                                 "1-Lipschitz in L2")
            if getattr(m, "dilation", 1) not in (1, (1,), (1, 1)):
                raise ProbeError(f"pooling {label} is dilated; not supported")
        elif not isinstance(m, _ACTIVATIONS) or list(m.children()):
            raise ProbeError(f"module {label} is not a Linear/Conv layer, a 1-Lipschitz activation or an "
                             "nn.Sequential: the product of layer norms would not bound the model's Lipschitz "
                             "constant (build the model as nn.Sequential of supported modules)")

    walk(model, "")
    if not layers:
        raise ProbeError(f"the model {type(model).__name__} has no Linear or Conv layer to constrain")
    return layers


def _f64(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)  # an upper bound rounded to float32 could fall below the norm


def _linf_norm(layer: torch.nn.Module, spatial: tuple[int, ...] | None) -> torch.Tensor:
    if spatial is not None or isinstance(layer, torch.nn.Linear):
        shape = None if spatial is None else (layer.in_channels,) + tuple(spatial)
        return _f64(operator_norm_upper_bound(layer, shape, norm="linf").value)
    # a convolution on inputs of unknown size: each output's row of |M| holds at most every kernel entry once
    return layer.weight.detach().abs().flatten(1).sum(1).amax()


class _Norms:
    """Operator norms of the constrained layers.

    ``exact=True``: the proven upper bounds of :func:`probe.operator_norms.operator_norm_upper_bound`.
    ``exact=False`` (between optimiser steps): warm-started power iteration for Linear L2 layers (an
    estimate from below, cheap) and the circular bound for convolutions.
    """

    def __init__(self, layers: list[torch.nn.Module], norm: str, spatial: dict[int, tuple[int, ...]],
                 iterations: int):
        self.layers = layers
        self.norm = norm
        self.spatial = spatial
        self.iterations = iterations
        self.vectors: dict[int, torch.Tensor] = {}

    def _power(self, layer: torch.nn.Module, iterations: int) -> torch.Tensor:
        w = layer.weight.detach()
        v = self.vectors.get(id(layer))
        if v is None or v.device != w.device:
            g = torch.Generator().manual_seed(0)
            v = torch.randn(w.shape[1], generator=g, dtype=w.dtype).to(w.device)
        for _ in range(iterations):
            u = F.normalize(w @ v, dim=0)
            v = F.normalize(w.T @ u, dim=0)
        self.vectors[id(layer)] = v
        return (w @ v).norm()

    def layer_norm(self, layer: torch.nn.Module, exact: bool) -> torch.Tensor:
        spatial = self.spatial.get(id(layer))
        if self.norm == "linf":
            return _linf_norm(layer, spatial)
        if isinstance(layer, _CONV):
            if spatial is None:
                raise ProbeError(f"the input size of {type(layer).__name__} is unknown; run the model on a batch first")
            if exact:
                shape = (layer.in_channels,) + tuple(spatial)
                return _f64(operator_norm_upper_bound(layer, shape).value)
            return _f64(conv_l2_upper_bound(layer, spatial))
        if exact:
            return _f64(operator_norm_upper_bound(layer).value)
        return self._power(layer, self.iterations)

    def all(self, exact: bool) -> list[torch.Tensor]:
        return [self.layer_norm(layer, exact) for layer in self.layers]


def _project(norms: _Norms, budget: float, exact: bool) -> float:
    """Rescale every constrained weight by the same factor so the product of norms is <= budget."""
    sig = norms.all(exact)
    log_prod = float(sum(torch.log(s.clamp(min=1e-30)) for s in sig))
    k = len(sig)
    if log_prod > math.log(budget):
        factor = math.exp((math.log(budget) - log_prod) / k)
        with torch.no_grad():
            for layer in norms.layers:
                layer.weight.mul_(factor)
        log_prod = math.log(budget)
    return math.exp(log_prod)


def _input_sizes(model: torch.nn.Module, layers: list[torch.nn.Module], x: torch.Tensor) -> dict[int, tuple[int, ...]]:
    """Spatial input size of every convolution, recorded by running the model once on ``x``."""
    sizes: dict[int, tuple[int, ...]] = {}
    convs = [layer for layer in layers if isinstance(layer, _CONV)]
    if not convs:
        return sizes
    hooks = [c.register_forward_pre_hook(lambda mod, inp: sizes.__setitem__(id(mod), tuple(inp[0].shape[2:])))
             for c in convs]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return sizes


def layer_norms(model: torch.nn.Module, *, norm: str = "l2", x: torch.Tensor | None = None) -> list[float]:
    """Upper bounds on the operator norms of the model's Linear/Conv layers, in order.

    Each is :func:`probe.operator_norms.operator_norm_upper_bound`: L2 by float64 SVD of the
    layer's matrix (for convolutions too large to write out, the circular-embedding bound of
    :func:`probe.operator_norms.conv_l2_upper_bound`); L-inf the largest absolute row sum.
    Convolutions need an example input ``x`` to learn their input sizes.
    """
    norm = _check_lipschitz_norm(norm)
    layers = constrained_layers(model, norm)
    spatial = _input_sizes(model, layers, x) if x is not None else {}
    return [float(s) for s in _Norms(layers, norm, spatial, 0).all(exact=True)]


def lipschitz_upper_bound(model: torch.nn.Module, *, norm: str = "l2", x: torch.Tensor | None = None) -> float:
    r"""Product of the layers' operator norms, :math:`\prod_i \lVert W_i \rVert_{p\to p}`: an upper bound on
    the Lipschitz constant of a feed-forward chain with 1-Lipschitz activations.
    """
    return float(math.prod(layer_norms(model, norm=norm, x=x)))


def project_lipschitz(model: torch.nn.Module, *, budget: float, norm: str = "l2",
                      x: torch.Tensor | None = None) -> float:
    """Rescale the model's Linear/Conv weights in place so that the product of their norms is at most ``budget``.

    Returns the product after the projection (computed exactly as in :func:`layer_norms`).
    """
    budget = check_positive(budget, "budget")
    norm = _check_lipschitz_norm(norm)
    layers = constrained_layers(model, norm)
    spatial = _input_sizes(model, layers, x) if x is not None else {}
    return _project(_Norms(layers, norm, spatial, 0), budget, exact=True)


def _check_lipschitz_norm(norm: object) -> str:
    n = check_norm(norm)
    if n not in ("l2", "linf"):
        raise ProbeError(f"Lipschitz budgets are supported in 'l2' and 'linf', got {norm!r}")
    return n


def lipschitz_budget(model: torch.nn.Module, loader: Iterable, *, budget: float, norm: str = "l2",
                     margin_eps: float = 0.0, power_iterations: int = 3, safety: float = 1e-3, epochs: int = 10,
                     lr: float = 1e-3, optimizer: object = None, device: str | torch.device | None = None,
                     callbacks: Sequence[Callback] | Callback = (), progress: bool = False,
                     seed: int | None = None) -> TrainResult:
    r"""Train with the Lipschitz constant of the model held below ``budget``.

    After every optimiser step the weights :math:`W_1..W_K` of the Linear/Conv layers are
    rescaled by a common factor so that :math:`\prod_i \lVert W_i \rVert_{p\to p} \le
    (1 - \text{safety})\, \text{budget}`; at the end the norms are recomputed exactly and the
    projection repeated, so the trained model satisfies
    :math:`\mathrm{Lip}_p(f) \le \prod_i \lVert W_i \rVert \le \text{budget}`. With
    ``margin_eps > 0`` the loss is the Lipschitz-margin cross-entropy of Tsuzuku et al.
    (2018), :math:`\mathrm{CE}(z + c L \epsilon (1 - e_y), y)` with :math:`c = \sqrt 2` (L2) or
    2 (L-inf), which enlarges the margins that :func:`probe.certify.lipschitz_margin_radius` certifies.

    Parameters
    ----------
    model : torch.nn.Module
        An ``nn.Sequential`` chain of Linear/Conv1d/Conv2d layers and 1-Lipschitz modules
        (ReLU, LeakyReLU, Tanh, Sigmoid, Flatten, Dropout, non-overlapping pooling); trained in place.
    loader : iterable of (x, y)
    budget : float
        The Lipschitz constant not to exceed (> 0).
    norm : {"l2", "linf"}, default "l2"
    margin_eps : float, default 0.0
        Radius the Lipschitz-margin loss asks to certify; 0 gives plain cross-entropy.
    power_iterations : int, default 3
        Warm-started power-iteration steps per optimiser step (L2 Linear layers).
    safety : float, default 1e-3
        Relative room kept below the budget during training, absorbing the lag of the
        power-iteration estimates between exact projections.
    epochs, lr, optimizer, device, callbacks, progress, seed
        As in :func:`probe.train.standard`.

    Returns
    -------
    TrainResult
        ``extras["lipschitz_upper_bound"]``: the final product of exact layer norms (<= budget);
        ``extras["layer_norms"]``: the norms per layer.

    Raises
    ------
    ProbeError
        ``budget <= 0``, an unsupported norm or module, an empty loader, a model without parameters.

    References
    ----------
    Miyato, Kataoka, Koyama & Yoshida, "Spectral Normalization for Generative Adversarial
    Networks", ICLR 2018. Gouk, Frank, Pfahringer & Cree, "Regularisation of neural networks
    by enforcing Lipschitz continuity", Machine Learning 2021. Tsuzuku, Sato & Sugiyama,
    "Lipschitz-Margin Training", NeurIPS 2018.
    """
    budget = check_positive(budget, "budget")
    norm = _check_lipschitz_norm(norm)
    margin_eps = check_positive(margin_eps, "margin_eps", allow_zero=True)
    power_iterations = check_positive(power_iterations, "power_iterations", integer=True)
    safety = check_positive(safety, "safety", allow_zero=True)
    if safety >= 1:
        raise ProbeError(f"safety must be below 1, got {safety}")
    model = check_model(model)
    layers = constrained_layers(model, norm)
    target = budget * (1.0 - safety)
    c = math.sqrt(2.0) if norm == "l2" else 2.0
    state: dict = {"norms": None, "product": budget}

    def setup(m: torch.nn.Module, x: torch.Tensor) -> _Norms:
        if state["norms"] is None:
            was = m.training
            m.eval()
            state["norms"] = _Norms(layers, norm, _input_sizes(m, layers, x), power_iterations)
            m.train(was)
            # start inside the budget: the first step's margin term uses the product
            state["product"] = _project(state["norms"], target, exact=True)
        return state["norms"]

    def batch_loss(m: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        setup(m, x)
        logits = m(x)
        if margin_eps > 0:
            shift = c * state["product"] * margin_eps
            push = torch.full_like(logits, shift).scatter(1, y[:, None], 0.0)
            return F.cross_entropy(logits + push, y), logits
        return F.cross_entropy(logits, y), logits

    def after_step(m: torch.nn.Module) -> None:
        state["product"] = _project(state["norms"], target, exact=False)

    def epoch_extras(m: torch.nn.Module) -> dict:
        return {"lipschitz_estimate": state["product"]}

    def finish(m: torch.nn.Module) -> dict:
        norms = state["norms"]
        _project(norms, target, exact=True)
        sig = [float(s) for s in norms.all(exact=True)]
        bound = math.prod(sig)
        if bound > budget:  # pragma: no cover - exact norms after an exact projection
            raise ProbeError(f"the projection left a Lipschitz bound {bound} above the budget {budget}")
        return {"lipschitz_upper_bound": bound, "layer_norms": sig}

    settings = {"budget": budget, "norm": norm, "margin_eps": margin_eps, "power_iterations": power_iterations,
                "safety": safety}
    return fit(model, loader, batch_loss, method="lipschitz_budget", epochs=epochs, optimizer=optimizer, lr=lr,
               device=device, callbacks=callbacks, progress=progress, seed=seed, settings=settings,
               after_step=after_step, finish=finish, epoch_extras=epoch_extras)
