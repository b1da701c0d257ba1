"""Sensitivity maps: which input features an output rests on.

``sensitivity(model, x, method=...)`` dispatches through an explicit registry
(:data:`METHODS`, extended with :func:`register_method`). Every method explains one scalar
per input, the *objective*: the output column ``target`` (default: the predicted class of
a classifier, the only output of a regressor), or, when a ``criterion`` is given, the
criterion's margin loss (how close the input is to changing the model's mind).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch

from .criteria import Criterion
from .devices import as_input, batches, model_hygiene, resolve_device
from .errors import ProbeError
from .models import forward, has_gradient
from .results import Attribution

__all__ = ["sensitivity", "register_method", "METHODS", "Objective"]


class Objective:
    """The scalar each sensitivity method explains, one per input.

    Call as ``objective(x_rows, rows)`` with inputs (B, ...) and the indices ``rows`` (B,) of
    the original inputs they stand for (so that per-input targets and references follow).
    """

    def __init__(self, model: object, target: torch.Tensor | None, criterion: Criterion | None,
                 reference: torch.Tensor | None):
        self.model = model
        self.target = target
        self.criterion = criterion
        self.reference = reference

    def __call__(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        out = forward(self.model, x, check=False)
        if self.criterion is not None:
            return self.criterion.loss(out, self.reference[rows])
        return out.gather(1, self.target[rows].to(out.device)[:, None]).squeeze(1)


def _objective(model: object, x: torch.Tensor, target: object, criterion: Criterion | None,
               batch_size: int | None) -> Objective:
    from .microscope import clean_outputs

    clean = clean_outputs(model, x, batch_size)
    if criterion is not None:
        if not isinstance(criterion, Criterion):
            raise ProbeError(f"criterion must be a probe Criterion, got {type(criterion).__name__}")
        return Objective(model, None, criterion, criterion.prepare(clean))
    k = clean.shape[1]
    if target is None:
        t = clean.argmax(1) if k > 1 else torch.zeros(len(x), dtype=torch.long, device=x.device)
    else:
        t = torch.as_tensor(target, device=x.device).long().reshape(-1)
        t = t.expand(len(x)) if t.numel() == 1 else t
        if t.shape[0] != len(x):
            raise ProbeError(f"target has {t.shape[0]} entries for {len(x)} inputs")
        bad = ((t < -k) | (t >= k)).nonzero()
        if len(bad):
            i = int(bad[0])
            raise ProbeError(f"target[{i}] = {int(t[i])} is not an output index of a model with {k} outputs")
        t = t % k
    return Objective(model, t, None, None)


def _grad(objective: Objective, x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xr = x.detach().requires_grad_(True)
    with torch.enable_grad():
        value = objective(xr, rows)
        if not value.requires_grad:
            raise ProbeError("the model's output does not depend differentiably on its input; "
                             "use method='occlusion'")
        (g,) = torch.autograd.grad(value.sum(), xr)
    return g.detach(), value.detach()


def _baseline(baseline: object, x: torch.Tensor) -> torch.Tensor:
    b = torch.as_tensor(0.0 if baseline is None else baseline, dtype=x.dtype, device=x.device)
    try:
        return b.expand_as(x) if b.dim() < x.dim() else b.reshape(x.shape)
    except RuntimeError:
        raise ProbeError(f"baseline of shape {tuple(b.shape)} does not fit inputs of shape {tuple(x.shape)}") from None


def gradient(model: object, x: torch.Tensor, objective: Objective, *, batch_size: int | None = 256) -> Attribution:
    r"""Saliency: :math:`\partial F(x) / \partial x` (Simonyan, Vedaldi & Zisserman, 2014)."""
    parts = [_grad(objective, x[s], torch.arange(len(x), device=x.device)[s])[0] for s in batches(len(x), batch_size)]
    return Attribution(values=torch.cat(parts), method="gradient")


def gradient_x_input(model: object, x: torch.Tensor, objective: Objective, *, baseline: object = None,
                     batch_size: int | None = 256) -> Attribution:
    r"""Gradient times input: :math:`(x - x') \odot \partial F(x)/\partial x` (Shrikumar et al., 2016).

    ``baseline`` :math:`x'` defaults to 0.
    """
    g = gradient(model, x, objective, batch_size=batch_size).values
    return Attribution(values=(x - _baseline(baseline, x)) * g, method="gradient_x_input")


def integrated_gradients(model: object, x: torch.Tensor, objective: Objective, *, baseline: object = None,
                         steps: int = 50, batch_size: int | None = 256) -> Attribution:
    r"""Integrated gradients (Sundararajan, Taly & Yan, ICML 2017).

    :math:`\mathrm{IG}_i(x) = (x_i - x'_i) \int_0^1 \partial_i F(x' + \alpha (x - x'))\, d\alpha`,
    the integral by ``steps``-point Gauss-Legendre quadrature. Completeness says
    :math:`\sum_i \mathrm{IG}_i = F(x) - F(x')`; ``extras["completeness_gap"]`` (N,) is
    :math:`\sum_i \mathrm{IG}_i - (F(x) - F(x'))`, the quadrature error (0 for a model that is
    affine along the path).

    Parameters
    ----------
    baseline : float or torch.Tensor broadcastable to x, default 0
    steps : int, default 50
    """
    if int(steps) < 1:
        raise ProbeError(f"integrated gradients needs steps >= 1, got {steps}")
    nodes, weights = np.polynomial.legendre.leggauss(int(steps))
    alphas, weights = (nodes + 1) / 2, weights / 2
    base = _baseline(baseline, x)
    total = torch.zeros_like(x)
    gap = torch.zeros(len(x), dtype=x.dtype, device=x.device)
    rows_all = torch.arange(len(x), device=x.device)
    for s in batches(len(x), batch_size):
        xb, bb, rows = x[s], base[s], rows_all[s]
        acc = torch.zeros_like(xb)
        for a, w in zip(alphas.tolist(), weights.tolist()):
            g, _ = _grad(objective, bb + a * (xb - bb), rows)
            acc += w * g
        total[s] = (xb - bb) * acc
        with torch.no_grad():
            gap[s] = total[s].flatten(1).sum(1) - (objective(xb, rows) - objective(bb, rows))
    return Attribution(values=total, method="integrated_gradients",
                       extras={"completeness_gap": gap, "steps": int(steps)})


def occlusion(model: object, x: torch.Tensor, objective: Objective, *, window: int | tuple[int, ...] = 1,
              stride: int | tuple[int, ...] | None = None, baseline: object = 0.0,
              batch_size: int | None = 256) -> Attribution:
    r"""Occlusion (Zeiler & Fergus, ECCV 2014): the drop in the objective when a window is replaced.

    For every window position :math:`w`, :math:`\Delta_w = F(x) - F(x \text{ with } w \text{ set to the
    baseline})`; each feature gets the mean of :math:`\Delta_w` over the windows covering it. With
    ``window=1`` this is in-silico mutagenesis towards the baseline. Forward passes only, so it
    works for models without gradients.

    Parameters
    ----------
    window : int or tuple of int, default 1
        Window extent along each non-batch dimension (an int applies to all).
    stride : int or tuple of int, optional
        Default ``window`` (non-overlapping windows).
    baseline : float or torch.Tensor broadcastable to x, default 0
    """
    shape = tuple(x.shape[1:])
    win = (window,) * len(shape) if isinstance(window, int) else tuple(window)
    std = win if stride is None else ((stride,) * len(shape) if isinstance(stride, int) else tuple(stride))
    if len(win) != len(shape) or len(std) != len(shape) or min(win + std, default=1) < 1:
        raise ProbeError(f"window {window!r} and stride {stride!r} must be positive and give one entry per "
                         f"non-batch dimension of inputs of shape {tuple(x.shape)}")
    starts = [sorted(set(list(range(0, max(d - w, 0) + 1, s)) + [max(d - w, 0)])) for d, w, s in zip(shape, win, std)]
    masks = []
    for corner in itertools.product(*starts):
        m = torch.zeros(shape, dtype=torch.bool, device=x.device)
        m[tuple(slice(c, c + w) for c, w in zip(corner, win))] = True
        masks.append(m)
    masks_t = torch.stack(masks)                                    # (P, ...)
    base = _baseline(baseline, x)
    total = torch.zeros_like(x)
    count = masks_t.sum(0).to(x.dtype).clamp(min=1)
    rows_all = torch.arange(len(x), device=x.device)
    chunk = max(1, (batch_size or 256))
    with torch.no_grad():
        for i in range(len(x)):
            f0 = objective(x[i : i + 1], rows_all[i : i + 1])
            for s in batches(len(masks_t), chunk):
                mk = masks_t[s]
                occluded = torch.where(mk, base[i].expand_as(mk), x[i].expand_as(mk))
                drop = f0 - objective(occluded, rows_all[i].expand(len(mk)))
                total[i] += (drop.view((-1,) + (1,) * len(shape)) * mk).sum(0)
    return Attribution(values=total / count, method="occlusion", extras={"windows": len(masks_t)})


def attack_based(model: object, x: torch.Tensor, objective: Objective, *, criterion: Criterion | None = None,
                 norm: str = "l2", space: object = None, batch_size: int | None = 256, **options: object
                 ) -> Attribution:
    r"""The minimal perturbation itself: :math:`\delta^* = \arg\min \{\lVert\delta\rVert_p : \text{criterion}
    (F(x + \delta))\}`, from :func:`probe.minimal_perturbation`.

    Its nonzero entries are the features the decision rests on; an L1 search gives sparse maps.
    ``extras`` holds ``distance`` and ``success`` (N,).
    """
    from .microscope import minimal_perturbation

    res = minimal_perturbation(model, x, criterion, norm=norm, space=space, batch_size=batch_size,
                               device=x.device, **options)
    return Attribution(values=res.delta, method="attack",
                       extras={"distance": res.distance, "success": res.success, "norm": res.norm,
                               "search": res.method})


METHODS: dict[str, Callable[..., Attribution]] = {
    "gradient": gradient,
    "gradient_x_input": gradient_x_input,
    "integrated_gradients": integrated_gradients,
    "occlusion": occlusion,
    "attack": attack_based,
}
_FORWARD_ONLY = {"occlusion"}


def _surrogate(model: object, x: torch.Tensor, objective: object, **options: object) -> Attribution:
    from .surrogate import surrogate

    return surrogate(model, x, objective, **options)


METHODS["surrogate"] = _surrogate
_FORWARD_ONLY.add("surrogate")


def register_method(name: str, func: Callable[..., Attribution], *, forward_only: bool = False) -> None:
    """Add a method to :func:`sensitivity`.

    Parameters
    ----------
    name : str
        The ``method=`` value that selects it.
    func : callable
        Called as ``func(model, x, objective, *, batch_size, **options)`` with ``x`` a checked
        tensor on the compute device, ``model`` in eval mode (restored afterwards) and
        ``objective`` an :class:`Objective`; returns an ``Attribution`` (or a tensor shaped
        like ``x``).
    forward_only : bool, default False
        True if the method never takes gradients (it may then run on black-box models).
    """
    if not isinstance(name, str) or not name:
        raise ProbeError(f"method name must be a non-empty string, got {name!r}")
    if not callable(func):
        raise ProbeError(f"method {name!r} must be callable")
    METHODS[name] = func
    if forward_only:
        _FORWARD_ONLY.add(name)


def sensitivity(model: object, x: object, *, method: str, target: object = None, criterion: Criterion | None = None,
                batch_size: int | None = 256, device: str | torch.device | None = None,
                **options: object) -> Attribution:
    r"""Attribute a model's output to its input features.

    Parameters
    ----------
    model : torch.nn.Module or callable
        Maps inputs (N, ...) to outputs (N, K) or (N,).
    x : torch.Tensor or array-like, shape (N, ...)
        Inputs; never modified.
    method : str
        "gradient", "gradient_x_input", "integrated_gradients" (extras: ``completeness_gap``),
        "occlusion" (forward passes only), "attack" (the minimal perturbation), or a name added
        with :func:`register_method`.
    target : int or array-like of int (N,), optional
        Output column to explain; default the predicted class (or output 0 for one output).
    criterion : Criterion, optional
        Explain the criterion's margin loss instead of an output column (for "attack": the
        criterion the minimal perturbation must satisfy; default ``Misclassify()``).
    batch_size : int or None, default 256
    device : str or torch.device, optional
    **options
        Passed to the method (``baseline``, ``steps``, ``window``, ``stride``, ``norm``,
        ``space``, ...).

    Returns
    -------
    Attribution
        ``values`` shaped like ``x``.
    """
    if method not in METHODS:
        raise ProbeError(f"unknown sensitivity method {method!r}; available: {sorted(METHODS)}")
    if method not in _FORWARD_ONLY and method != "attack" and not has_gradient(model):
        raise ProbeError(f"method {method!r} needs gradients and the model has none; use method='occlusion'")
    dev = resolve_device(device, model, x)
    xt = as_input(x, device=dev)
    with model_hygiene(model, dev) as m:
        objective = _objective(m, xt, target, criterion, batch_size)
        kwargs = dict(options)
        if method == "attack":
            kwargs["criterion"] = criterion
        try:
            out = METHODS[method](m, xt, objective, batch_size=batch_size, **kwargs)
        except TypeError as err:
            if "argument" in str(err):
                raise ProbeError(f"bad option for sensitivity method {method!r}: {err}") from None
            raise
    if isinstance(out, torch.Tensor):
        out = Attribution(values=out, method=method)
    if tuple(out.values.shape) != tuple(xt.shape):
        raise ProbeError(f"sensitivity method {method!r} returned values of shape {tuple(out.values.shape)} "
                         f"for inputs of shape {tuple(xt.shape)}")
    return out
