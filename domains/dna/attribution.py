"""Attribution maps for DNA models: corrected saliency, gradient x input, integrated gradients, ISM, edits.

Every function returns a :class:`probe.Attribution` whose ``values`` have the input's shape
(N, 4, L). ``target`` picks the output: an int column, or None for the single output of a
one-output model and, for a classifier, the logit of the class the model predicts on each
sequence.
"""

from __future__ import annotations

import torch

from probe import Attribution, ProbeError
from probe.devices import model_hygiene, resolve_device
from probe.models import forward

from .ism import prepare_input, saturation_mutagenesis

__all__ = ["saliency", "gradient_x_input", "integrated_gradients", "ism_attribution", "attribute", "METHODS"]


def _scores(out: torch.Tensor, target: int | torch.Tensor | None) -> torch.Tensor:
    if target is None:
        if out.shape[1] == 1:
            return out[:, 0]
        return out.gather(1, out.argmax(1, keepdim=True).detach()).squeeze(1)
    if torch.is_tensor(target) and target.dim() == 1:
        return out.gather(1, target.to(out.device).long()[:, None]).squeeze(1)
    t = int(target)
    if not -out.shape[1] <= t < out.shape[1]:
        raise ProbeError(f"target={t} is out of range for a model with {out.shape[1]} outputs")
    return out[:, t]


def _targets(model: object, X: torch.Tensor, target: int | None, batch_size: int) -> torch.Tensor | int | None:
    """Fix the per-sequence class once (on the clean input), so paths like IG keep one target."""
    if target is not None:
        return target
    with torch.no_grad():
        out = torch.cat([forward(model, X[s:s + batch_size]) for s in range(0, len(X), batch_size)])
    return None if out.shape[1] == 1 else out.argmax(1)


def _grad(model: object, X: torch.Tensor, target: object, batch_size: int) -> torch.Tensor:
    grads = []
    for s in range(0, len(X), batch_size):
        x = X[s:s + batch_size].detach().requires_grad_(True)
        t = target[s:s + batch_size] if torch.is_tensor(target) else target
        with torch.enable_grad():
            score = _scores(forward(model, x), t)
            (g,) = torch.autograd.grad(score.sum(), x)
        grads.append(g.detach())
    return torch.cat(grads)


def saliency(model: object, X: object, *, target: int | None = None, correct: bool = True, batch_size: int = 256,
             device: str | torch.device | None = None) -> Attribution:
    r"""Input gradient, with the across-bases correction of Majdandzic et al. (2023).

    A one-hot model is only ever evaluated on the simplex :math:`\sum_b x_{b,p} = 1`, so the
    component of the gradient along :math:`(1,1,1,1)` at each position is arbitrary and adds
    off-simplex noise. The correction removes it:

    .. math:: \tilde g_{b,p} = g_{b,p} - \frac14 \sum_{b'} g_{b',p}

    (Majdandzic, Rajesh & Koo, "Correcting gradient-based interpretations of deep neural networks
    for genomics", Genome Biology 24:109, 2023).

    Returns
    -------
    Attribution
        ``values`` (N, 4, L): the (corrected) gradient at every base, hypothetical bases included.
    """
    dev = resolve_device(device, model, X)
    X, _ = prepare_input(X, dev)
    with model_hygiene(model, dev) as m:
        g = _grad(m, X, _targets(m, X, target, batch_size), batch_size)
    if correct:
        g = g - g.mean(1, keepdim=True)
    return Attribution(values=g, method="saliency_corrected" if correct else "saliency")


def gradient_x_input(model: object, X: object, *, target: int | None = None, correct: bool = True,
                     batch_size: int = 256, device: str | torch.device | None = None) -> Attribution:
    r"""Gradient times input, :math:`x_{b,p}\,\tilde g_{b,p}`: the (corrected) gradient at the observed base
    (Shrikumar et al., "Not Just a Black Box", arXiv:1605.01713, 2016)."""
    dev = resolve_device(device, model, X)
    X, _ = prepare_input(X, dev)
    g = saliency(model, X, target=target, correct=correct, batch_size=batch_size, device=dev).values
    return Attribution(values=g * X, method="gradient_x_input")


def integrated_gradients(model: object, X: object, *, target: int | None = None,
                         baseline: str | torch.Tensor = "uniform", steps: int = 32, batch_size: int = 256,
                         device: str | torch.device | None = None
                         ) -> Attribution:
    r"""Integrated gradients (Sundararajan, Taly & Yan, ICML 2017), trapezoid rule over ``steps`` intervals.

    .. math:: \mathrm{IG}_{b,p} = (x - x')_{b,p} \int_0^1 \partial_{b,p} f(x' + \alpha (x - x'))\, d\alpha

    with baseline :math:`x'` ``"uniform"`` (0.25 at every base), ``"zeros"`` or a tensor shaped
    like ``X``. Completeness, :math:`\sum \mathrm{IG} = f(x) - f(x')`, holds up to the quadrature
    error; ``extras["completeness_gap"]`` holds its size per sequence.
    """
    if int(steps) < 1:
        raise ProbeError(f"integrated_gradients needs steps >= 1, got {steps}")
    dev = resolve_device(device, model, X)
    X, _ = prepare_input(X, dev)
    if isinstance(baseline, str):
        if baseline not in ("uniform", "zeros"):
            raise ProbeError(f"baseline must be 'uniform', 'zeros' or a tensor, got {baseline!r}")
        base = torch.full_like(X, 0.25) if baseline == "uniform" else torch.zeros_like(X)
    else:
        base = torch.as_tensor(baseline, dtype=X.dtype, device=dev).expand_as(X)
    alphas = torch.linspace(0, 1, int(steps) + 1, device=dev, dtype=X.dtype)
    weights = torch.full_like(alphas, 1.0 / steps)
    weights[0] = weights[-1] = 0.5 / steps
    with model_hygiene(model, dev) as m:
        tgt = _targets(m, X, target, batch_size)
        total = torch.zeros_like(X)
        for a, w in zip(alphas, weights):
            total += w * _grad(m, base + a * (X - base), tgt, batch_size)
        with torch.no_grad():
            fx = _scores(forward(m, X), tgt)
            fb = _scores(forward(m, base), tgt)
    ig = (X - base) * total
    gap = (ig.flatten(1).sum(1) - (fx - fb)).abs()
    return Attribution(values=ig, method="integrated_gradients", extras={"completeness_gap": gap})


def ism_attribution(model: object, X: object, *, target: int | None = None, hypothetical: bool = False,
                    batch_size: int = 256, device: str | torch.device | None = None) -> Attribution:
    r"""In-silico mutagenesis, centred across bases (tangermeme's attribution):
    :math:`\Delta_{b,p} - \frac14\sum_{b'}\Delta_{b',p}`, times the input unless ``hypothetical``.

    With ``target=None`` and several outputs, the column of the class predicted on each sequence.
    """
    dev = resolve_device(device, model, X)
    X, _ = prepare_input(X, dev)
    with model_hygiene(model, dev) as m:
        tgt = _targets(m, X, target, batch_size)
    table = saturation_mutagenesis(model, X, target=None, batch_size=batch_size, device=dev)
    if table.dim() == 4:
        idx = torch.as_tensor(tgt if tgt is not None else 0, device=dev).long()
        idx = idx.expand(len(X)) if idx.dim() == 0 else idx
        table = table.gather(3, idx[:, None, None, None].expand(-1, 4, X.shape[2], 1))[..., 0]
    attr = table - table.mean(1, keepdim=True)
    return Attribution(values=attr if hypothetical else attr * X, method="ism")


def attribute(model: object, X: object, *, method: str = "saliency", **options: object) -> Attribution:
    """Dispatch on ``method``: "saliency", "gradient_x_input", "integrated_gradients", "ism", "edits"
    (the substitutions of :func:`minimal_edits`, marked at their reference bases) or "attack"
    (``probe.sensitivity(method="attack")`` in a ``OneHot`` space: the minimal edit set as a change
    x_adv - x, +1 at the new base and -1 at the old)."""
    if method == "attack":
        from probe import OneHot, sensitivity

        dev = resolve_device(options.pop("device", None), model, X)
        X, _ = prepare_input(X, dev)
        options.setdefault("space", OneHot())
        return sensitivity(model, X, method="attack", device=dev, **options)
    if method == "edits":
        from .edits import minimal_edits

        return minimal_edits(model, X, **options).attribution()
    if method not in METHODS:
        raise ProbeError(f"unknown attribution method {method!r}; use one of "
                         f"{sorted(METHODS) + ['edits', 'attack']}")
    return METHODS[method](model, X, **options)


METHODS = {"saliency": saliency, "gradient_x_input": gradient_x_input, "integrated_gradients": integrated_gradients,
           "ism": ism_attribution}
