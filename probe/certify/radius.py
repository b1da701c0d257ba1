r"""Certified radius: the largest budget for which a sound method proves the answer cannot change.

For bound-propagation methods the radius is found by bisection on the budget, all inputs at
once (one bound computation per step, each input with its own interval): at budget
:math:`\epsilon` a label y is certified when the lower bound of every margin
:math:`z_y - z_j` over the ball is positive; a regression output is certified when its bounds
stay within ``tolerance`` of its clean value. The result is a lower bound on the exact
minimal adversarial distance, up to the bisection's resolution (which is always rounded
down: the returned budget was certified).

``method="lipschitz"`` uses the closed-form Lipschitz-margin radius
(:func:`probe.certify.lipschitz.lipschitz_margin_radius`) and ``method="smoothing"`` the
radius of the smoothed classifier (probabilistic, L2 only; it certifies the smoothed model,
not ``model`` itself).
"""

from __future__ import annotations

import copy

import torch

from ..criteria import _labels
from ..devices import as_input, model_hygiene, resolve_device
from ..errors import ProbeError
from ..models import forward
from ..norms import check_norm
from .base import compute_bounds, get_bound_method, make_input_set
from .graph import build_graph

__all__ = ["certified_radius"]


def _margin_spec(labels: torch.Tensor, k: int) -> torch.Tensor:
    """Rows e_y - e_j for all j != y: shape (N, K-1, K)."""
    n = len(labels)
    eye = torch.eye(k, device=labels.device)
    spec = eye[labels][:, None, :] - eye[None, :, :]              # (N, K, K), row y is zero
    keep = ~torch.nn.functional.one_hot(labels, k).bool()
    return spec[keep].view(n, k - 1, k)


def certified_radius(model: object, x: object, *, norm: str = "linf", method: str = "crown", labels: object = None,
                     tolerance: float | None = None, output: int | None = None, eps_max: float | None = None,
                     steps: int = 25, batch_size: int | None = 256, device: str | torch.device | None = None,
                     space: object = None, **options: object) -> torch.Tensor:
    r"""Largest budget, per input, within which ``method`` proves the prediction (or output) stable.

    Parameters
    ----------
    model : torch.nn.Module
    x : torch.Tensor, shape (N, ...)
        Inputs; never modified.
    norm : {"linf", "l2", "l1", "hamming"}, default "linf"
        ``"hamming"``: the number of substituted positions of a ``OneHot`` or ``Bits`` input
        (:mod:`probe.certify.hamming`); the radii are integers.
    method : {"crown", "ibp", "sdp", "lipschitz", "smoothing", "ablation"} or a registered bound method, default "crown"
        With ``norm="hamming"``: a bound method, ``"smoothing"`` (substitution smoothing, needs
        ``keep=``) or ``"ablation"`` (randomized ablation, needs ``kept=``).
    labels : array-like of int, shape (N,), optional
        Classes to certify; default the model's predictions. Inputs whose clean prediction
        differs from the label get radius 0.
    tolerance : float, optional
        Regression mode: certify that output(s) stay within ``tolerance`` of their clean values.
    output : int, optional
        Regression mode: the output column to certify (default all).
    eps_max : float, optional
        Largest budget tried; default: doubled from 1 until nothing more is certified (up to 2**20).
    steps : int, default 25
        Bisection steps (relative resolution 2**-steps of the bracket).
    batch_size : int or None, default 256
    device : str or torch.device, optional
    space : probe.OneHot or probe.Bits, optional
        ``norm="hamming"`` only: how the inputs hold symbols and which positions may change (default ``OneHot()``).
    **options
        Passed to the method: ``lipschitz`` (a float or LipschitzBound) or ``input_shape`` for
        "lipschitz"; ``sigma``, ``n0``, ``n``, ``alpha`` for "smoothing"; ``intermediate`` for "crown";
        ``solver``, ``steps`` for "sdp" (:class:`probe.certify.SDP`).

    Returns
    -------
    torch.Tensor, shape (N,)
        Certified radii (0 where nothing is certified); int64 for ``norm="hamming"``.
    """
    if str(norm).lower() in ("hamming", "l0"):
        return _hamming(model, x, method, labels, space, batch_size, device, options)
    norm = check_norm(norm)
    dev = resolve_device(device, model, x)
    x = as_input(x, device=dev)
    regression = tolerance is not None
    if regression and not float(tolerance) > 0:
        raise ProbeError(f"tolerance must be positive, got {tolerance}")
    if method == "lipschitz":
        return _lipschitz_radius(model, x, norm, labels, dev, regression, tolerance, output, options)
    if method == "smoothing":
        return _smoothing_radius(model, x, norm, labels, dev, options)
    bm = copy.copy(get_bound_method(method))  # options never change the caller's instance
    for key, value in options.items():
        if not hasattr(bm, key):
            raise ProbeError(f"unknown option {key!r} for method {method!r}")
        setattr(bm, key, value)
    if hasattr(bm, "sides") and not regression:
        bm.sides = "lower"  # margins need only their lower bounds (an SDP per side)
    with model_hygiene(model, dev) as m:
        graph = build_graph(m, x)
        with torch.no_grad():
            clean = forward(m, x)
        k = clean.shape[1]
        if regression:
            cols = list(range(k)) if output is None else [int(output)]
            if any(not 0 <= c < k for c in cols):
                raise ProbeError(f"output {output} is not a column of a model with {k} outputs")
            spec = torch.eye(k, dtype=x.dtype, device=dev)[cols]
            centre = clean[:, cols]
            ok0 = torch.ones(len(x), dtype=torch.bool, device=dev)
        else:
            if k < 2:
                raise ProbeError("certified_radius for a classifier needs at least 2 outputs; for a real-valued "
                                 "output pass tolerance=")
            y = clean.argmax(1) if labels is None else _labels(labels, len(x), k, "labels").to(dev)
            spec = _margin_spec(y, k).to(x.dtype)
            ok0 = clean.argmax(1) == y

        def certified(eps: torch.Tensor) -> torch.Tensor:
            inputs = make_input_set(x, eps, norm=norm)
            lo, hi = compute_bounds(graph, inputs, bm, spec, batch_size)
            if regression:
                return ((lo >= centre - tolerance) & (hi <= centre + tolerance)).all(1)
            return (lo > 0).all(1)

        return _bisect(certified, ok0, x, eps_max, int(steps))


def _bisect(certified: object, ok0: torch.Tensor, x: torch.Tensor, eps_max: float | None, steps: int
            ) -> torch.Tensor:
    n = len(x)
    lo = torch.zeros(n, dtype=x.dtype, device=x.device)
    if eps_max is not None:
        hi = torch.full((n,), float(eps_max), dtype=x.dtype, device=x.device)
    else:
        hi = torch.ones(n, dtype=x.dtype, device=x.device)
        grow = ok0.clone()
        for _ in range(20):
            if not grow.any():
                break
            ok = certified(hi) & grow
            lo = torch.where(ok, hi, lo)
            hi = torch.where(ok, hi * 2, hi)
            grow = ok
    if eps_max is not None:
        ok = certified(hi) & ok0
        lo = torch.where(ok, hi, lo)
    active = ok0 & (lo < hi)
    for _ in range(steps):
        if not active.any():
            break
        mid = (lo + hi) / 2
        ok = certified(torch.where(active, mid, lo)) & active
        lo = torch.where(ok, mid, lo)
        hi = torch.where(active & ~ok, mid, hi)
    return torch.where(ok0, lo, torch.zeros_like(lo))


def _lipschitz_radius(model: object, x: torch.Tensor, norm: str, labels: object, dev: torch.device,
                      regression: bool, tolerance: float | None, output: int | None, options: dict) -> torch.Tensor:
    from .lipschitz import lipschitz_bound, lipschitz_margin_radius

    L = options.pop("lipschitz", None)
    if L is None:
        L = lipschitz_bound(model, norm=norm, input_shape=options.pop("input_shape", tuple(x.shape[1:])),
                            device=dev, **options)
    if regression:
        # |f_k(x') - f_k(x)| <= ||f(x') - f(x)||_p <= L ||x' - x||_p
        return torch.full((len(x),), float(tolerance) / float(L), dtype=x.dtype, device=dev)
    return lipschitz_margin_radius(model, x, L, norm=norm, labels=labels, device=dev)


def _smoothing_radius(model: object, x: torch.Tensor, norm: str, labels: object, dev: torch.device,
                      options: dict) -> torch.Tensor:
    from .smoothing import Smoothing

    if norm != "l2":
        raise ProbeError(f"randomized smoothing certifies L2 radii, not {norm}")
    if "sigma" not in options:
        raise ProbeError("method='smoothing' needs sigma=")
    cert = Smoothing(model, options.pop("sigma"), device=dev, **options).certify(x)
    radius = cert.radius
    if labels is not None:
        y = torch.as_tensor(labels, device=dev).long().reshape(-1)
        radius = torch.where(cert.label == y, radius, torch.zeros_like(radius))
    return radius


def _hamming(model: object, x: object, method: str, labels: object, space: object, batch_size: int | None,
             device: str | torch.device | None, options: dict) -> torch.Tensor:
    if method in ("smoothing", "ablation"):
        from .ablation import RandomizedAblation
        from .substitution import SubstitutionSmoothing

        need = "keep" if method == "smoothing" else "kept"
        if need not in options:
            raise ProbeError(f"method={method!r} with norm='hamming' needs {need}=")
        cls = SubstitutionSmoothing if method == "smoothing" else RandomizedAblation
        cert = cls(model, space=space, device=device, **options).certify(x)
        radius = cert.radius
        if labels is not None:
            y = torch.as_tensor(labels, device=radius.device).long().reshape(-1)
            radius = torch.where(cert.label == y, radius, torch.zeros_like(radius))
        return radius
    from .hamming import hamming_radius

    return hamming_radius(model, x, space=space, method=method, labels=labels, batch_size=batch_size,
                          device=device, **options)
