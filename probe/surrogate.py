"""Local linear surrogates (LIME) for models seen only through their outputs."""

from __future__ import annotations

import math

import numpy as np
import torch

from .devices import as_input, batches, model_hygiene, resolve_device
from .errors import ProbeError
from .models import as_model, forward
from .results import Attribution

__all__ = ["lime", "surrogate"]


def _targets(target: object, clean: torch.Tensor) -> torch.Tensor:
    n, k = clean.shape
    if target is None:
        return clean.argmax(1) if k > 1 else torch.zeros(n, dtype=torch.long, device=clean.device)
    t = torch.as_tensor(target, device=clean.device).long()
    t = t.expand(n) if t.dim() == 0 else t.reshape(-1)
    if t.shape[0] != n:
        raise ProbeError(f"target has {t.shape[0]} entries for {n} inputs")
    bad = ((t < -k) | (t >= k)).nonzero()
    if len(bad):
        i = int(bad[0])
        raise ProbeError(f"target[{i}] = {int(t[i])} is not an output of a model with {k} outputs")
    return t % k


def lime(model: object, x: object, *, n_samples: int = 1000, kernel_width: float | None = None,
         target: object = None, mode: str = "mask", baseline: object = 0.0, scale: object = 1.0,
         groups: object = None, alpha: float = 1.0, batch_size: int | None = 4096, seed: int = 0,
         device: str | torch.device | None = None) -> Attribution:
    r"""LIME: a weighted linear model fitted to the model's outputs around each input.

    For each input :math:`x` draws ``n_samples`` perturbations :math:`x'_s` with
    interpretable coordinates :math:`z_s`, queries the model, and fits (scikit-learn's
    ``Ridge``) the surrogate :math:`g(z) = \beta_0 + \beta^\top z` minimising

    .. math:: \sum_s \pi(z_s)\,(f_t(x'_s) - g(z_s))^2 + \alpha \lVert\beta\rVert_2^2,
        \qquad \pi(z) = \sqrt{\exp(-D(z)^2 / w^2)}

    (LIME's default kernel; Ribeiro, Singh & Guestrin, "Why should I trust you?", KDD 2016).
    The attribution is :math:`\beta`; the surrogate's fit quality, the weighted
    :math:`R^2 = 1 - \sum_s \pi_s (f_s - g_s)^2 / \sum_s \pi_s (f_s - \bar f_\pi)^2`, is
    returned in ``extras["r2"]``: a low value says the model is not locally linear at this
    scale and the map should not be read as an explanation.

    Parameters
    ----------
    model : torch.nn.Module, callable, BlackBox or scikit-learn estimator
        Only forward evaluations are used (estimators are wrapped with :func:`probe.models.wrap`).
    x : torch.Tensor or array-like, shape (N, ...)
        Inputs; never modified.
    n_samples : int, default 1000
        Model evaluations per input (the first sample is the input itself).
    kernel_width : float, optional
        :math:`w`; default :math:`0.75\sqrt{F}` for :math:`F` features (LIME tabular).
    target : int or array-like of shape (N,), optional
        Output column explained; default the predicted class (argmax) of a multi-output
        model, else output 0.
    mode : {"mask", "gaussian"}, default "mask"
        ``"mask"``: :math:`z \in \{0,1\}^F`, feature ``j`` kept where :math:`z_j = 1` and
        replaced by ``baseline`` elsewhere; the number of features removed is uniform in
        1..F (LIME text/images); :math:`D(z) = \lVert 1 - z \rVert_2`. On an affine model,
        :math:`\beta_j = w_j (x_j - b_j)` (gradient times input). ``"gaussian"``:
        :math:`x' = x + \sigma \odot \epsilon`, :math:`\epsilon \sim N(0, I)`,
        :math:`z = \epsilon`, :math:`D(z) = \lVert z\rVert_2` (LIME tabular on standardised
        features); :math:`\beta_j / \sigma_j` estimates the local slope
        :math:`\partial f / \partial x_j` and is what is returned.
    baseline : float or torch.Tensor broadcastable to one input, default 0.0
        ``"mask"`` only: the value of a removed feature (0 is DNA's ``N`` in one-hot).
    scale : float or torch.Tensor broadcastable to one input, default 1.0
        ``"gaussian"`` only: :math:`\sigma`, e.g. the training data's per-feature std.
    groups : int tensor shaped like one input, optional
        ``"mask"`` only: feature ids (0..F-1); elements sharing an id are removed together
        (e.g. the four one-hot rows of a sequence position, or a fingerprint's bits of one atom).
        Each element's attribution is that of its group.
    alpha : float, default 1.0
        Ridge penalty (LIME's default).
    batch_size : int or None, default 4096
        Model evaluations per call.
    seed : int, default 0
    device : str or torch.device, optional

    Returns
    -------
    Attribution
        ``values`` shaped like ``x``; ``extras``: ``r2`` (N,), ``intercept`` (N,),
        ``local_prediction`` (N,) (the surrogate at the unperturbed input),
        ``prediction`` (N,) (the model there), ``target`` (N,), ``queries`` (N,).
    """
    model = as_model(model)
    dev = resolve_device(device, model, x)
    x = as_input(x, device=dev)
    settings = _settings(x, n_samples=n_samples, kernel_width=kernel_width, mode=mode, baseline=baseline,
                         scale=scale, groups=groups, alpha=alpha, batch_size=batch_size, seed=seed)
    with model_hygiene(model, dev) as m, torch.no_grad():
        clean = torch.cat([forward(m, x[sl]) for sl in batches(len(x), batch_size)])
        targets = _targets(target, clean)

        def objective(pts: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            out = forward(m, pts, check=False)
            return out.gather(1, targets[rows].to(out.device)[:, None]).squeeze(1)

        att = _fit(objective, x, **settings)
    att.extras["target"] = targets.cpu()
    return att


def surrogate(model: object, x: torch.Tensor, objective: object, *, batch_size: int | None = 256,
              **options: object) -> Attribution:
    """LIME of any scalar objective, in the form ``probe.sensitivity`` registers methods.

    Called as ``surrogate(model, x, objective, batch_size=..., **options)`` with ``objective(x_rows, rows)``
    returning one value per row (an output column or a criterion's margin loss); ``options`` are those
    of :func:`lime` from ``n_samples`` on (``target`` is the objective's business).
    """
    x = as_input(x, device=x.device if isinstance(x, torch.Tensor) else None)
    settings = _settings(x, batch_size=batch_size, **options)
    with torch.no_grad():
        return _fit(objective, x, **settings)


def _settings(x: torch.Tensor, *, n_samples: int = 1000, kernel_width: float | None = None, mode: str = "mask",
              baseline: object = 0.0, scale: object = 1.0, groups: object = None, alpha: float = 1.0,
              batch_size: int | None = 4096, seed: int = 0) -> dict:
    """Check LIME's options once, for :func:`lime` and :func:`surrogate`."""
    if mode not in ("mask", "gaussian"):
        raise ProbeError(f"mode must be 'mask' or 'gaussian', got {mode!r}")
    if int(n_samples) < 2:
        raise ProbeError(f"n_samples must be at least 2, got {n_samples}")
    if kernel_width is not None and not float(kernel_width) > 0:
        raise ProbeError(f"kernel_width must be positive, got {kernel_width}")
    if not float(alpha) >= 0:
        raise ProbeError(f"alpha must be non-negative, got {alpha}")
    dev = x.device
    shape = tuple(x.shape[1:])
    numel = int(math.prod(shape)) or 1
    if groups is not None:
        if mode != "mask":
            raise ProbeError("groups apply to mode='mask' only")
        g = torch.as_tensor(groups, device=dev).long()
        if tuple(g.shape) != shape:
            raise ProbeError(f"groups has shape {tuple(g.shape)}, one input has shape {shape}")
        n_feat = int(g.max()) + 1
        if int(g.min()) < 0 or len(torch.unique(g)) != n_feat:
            raise ProbeError(f"groups must number the features 0..{n_feat - 1} with no id missing")
        g = g.reshape(-1)
    else:
        g, n_feat = None, numel
    width = float(kernel_width) if kernel_width is not None else 0.75 * math.sqrt(n_feat)
    try:
        base = torch.as_tensor(baseline, dtype=x.dtype, device=dev).expand(shape).reshape(-1)
        sigma = torch.as_tensor(scale, dtype=x.dtype, device=dev).expand(shape).reshape(-1)
    except RuntimeError:
        raise ProbeError(f"baseline and scale must broadcast to one input's shape {shape}") from None
    if mode == "gaussian" and not (sigma > 0).all():
        raise ProbeError("scale must be positive")
    return {"n_samples": int(n_samples), "width": width, "mode": mode, "base": base, "sigma": sigma, "groups": g,
            "n_feat": n_feat, "alpha": float(alpha), "batch_size": batch_size, "seed": int(seed)}


def _fit(objective, x: torch.Tensor, *, n_samples: int, width: float, mode: str, base: torch.Tensor,
         sigma: torch.Tensor, groups: torch.Tensor | None, n_feat: int, alpha: float, batch_size: int | None,
         seed: int) -> Attribution:
    """Sample, query and fit the weighted ridge surrogate for each input in turn."""
    from sklearn.linear_model import Ridge

    s, dev, shape = n_samples, x.device, tuple(x.shape[1:])
    numel = int(math.prod(shape)) or 1
    g = groups
    generator = torch.Generator().manual_seed(seed)
    values = torch.zeros(len(x), numel, dtype=x.dtype, device=dev)
    r2, icpt, local, pred = (torch.zeros(len(x), dtype=torch.float64) for _ in range(4))
    for i in range(len(x)):
        xi = x[i].reshape(-1)
        if mode == "mask":
            z = _mask_samples(s, n_feat, generator).to(dev, x.dtype)
            keep = z if g is None else z[:, g]
            pts = keep * xi + (1 - keep) * base
            dist = (1 - z).norm(dim=1)
        else:
            z = torch.randn(s, numel, generator=generator, dtype=x.dtype).to(dev)
            z[0] = 0
            pts = xi + z * sigma
            dist = z.norm(dim=1)
        pts = pts.reshape((s,) + shape)
        rows = torch.full((s,), i, dtype=torch.long, device=dev)
        y = torch.cat([objective(pts[sl], rows[sl]) for sl in batches(s, batch_size)]).double().cpu().numpy()
        w = torch.sqrt(torch.exp(-(dist**2) / width**2)).double().cpu().numpy()
        zn = z.double().cpu().numpy()
        reg = Ridge(alpha=alpha).fit(zn, y, sample_weight=w)
        coef = torch.as_tensor(reg.coef_, dtype=x.dtype, device=dev)
        if mode == "gaussian":
            coef = coef / sigma
        values[i] = coef if g is None else coef[g]
        r2[i] = _weighted_r2(y, reg.predict(zn), w)
        icpt[i] = float(reg.intercept_)
        local[i] = float(reg.predict(zn[:1])[0])
        pred[i] = float(y[0])
    extras = {"r2": r2, "intercept": icpt, "local_prediction": local, "prediction": pred,
              "queries": torch.full((len(x),), s, dtype=torch.long), "mode": mode, "kernel_width": width}
    return Attribution(values=values.view(x.shape), method="lime", extras=extras)


def _mask_samples(s: int, f: int, generator: torch.Generator) -> torch.Tensor:
    """First row all ones; then, per row, a uniform number in 1..f of features switched off (LIME)."""
    removed = torch.randint(1, f + 1, (s,), generator=generator)
    order = torch.rand(s, f, generator=generator).argsort(1).argsort(1)
    z = (order >= removed[:, None]).to(torch.get_default_dtype())
    z[0] = 1
    return z


def _weighted_r2(y: np.ndarray, yhat: np.ndarray, w: np.ndarray) -> float:
    mean = np.average(y, weights=w)
    total = float(np.sum(w * (y - mean) ** 2))
    if total <= 0:
        return 1.0 if np.allclose(y, yhat) else 0.0
    return 1.0 - float(np.sum(w * (y - yhat) ** 2)) / total
