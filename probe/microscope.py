"""The microscope one-liners: the smallest change that flips a model, and robustness against budget."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch

from .attacks.base import Attack
from .criteria import Criterion, Misclassify
from .devices import as_input, batches, model_hygiene, resolve_device
from .errors import ProbeError
from .models import clean_outputs, forward, has_gradient
from .norms import check_norm
from .results import AttackResult, RobustnessCurve
from .spaces import Space, as_space, check_distance_norm

__all__ = ["minimal_perturbation", "robustness_curve", "shrink_along_delta", "MINIMAL_METHODS"]

MINIMAL_METHODS = ("auto", "fmn", "deepfool", "cw", "edit_search", "hopskipjump")


def _make_attack(method: str, norm: str, options: dict) -> Attack:
    if method == "fmn":
        from .attacks.fmn import FMN

        return FMN(norm=norm, **options)
    if method == "deepfool":
        from .attacks.deepfool import DeepFool

        return DeepFool(norm=norm, **options)
    if method == "cw":
        if norm != "l2":
            raise ProbeError(f"method='cw' (Carlini-Wagner L2) measures L2 distances; got norm={norm!r}")
        from .attacks.cw import CarliniWagner

        return CarliniWagner(**options)
    if method == "edit_search":
        try:
            from .attacks.edit_search import EditSearch
        except ImportError as err:  # pragma: no cover - depends on the installed version
            raise ProbeError(f"the edit search for OneHot spaces is not available: {err}") from err
        return EditSearch(**options)
    if method == "hopskipjump":
        try:
            from .attacks.hopskipjump import HopSkipJump
        except ImportError as err:  # pragma: no cover - depends on the installed version
            raise ProbeError(f"the gradient-free HopSkipJump search is not available: {err}") from err
        return HopSkipJump(norm=norm, **options)
    raise ProbeError(f"unknown method {method!r}; use one of {MINIMAL_METHODS} or a minimal-norm Attack instance")


def _best_of(results: list[AttackResult], name: str) -> AttackResult:
    """Per input, the successful result of smallest distance (queries add up)."""
    first = results[0]
    x_adv, dist, success = first.x_adv.clone(), first.distance.clone(), first.success.clone()
    queries = first.queries.clone()
    for r in results[1:]:
        better = r.distance < dist
        x_adv[better] = r.x_adv[better]
        dist = torch.where(better, r.distance, dist)
        success = success | r.success
        queries = queries + r.queries
    delta = x_adv - (first.x_adv - first.delta)
    return AttackResult(x_adv=x_adv, delta=delta, success=success, distance=dist, queries=queries,
                        norm=first.norm, method=name)


def shrink_along_delta(model: object, x: torch.Tensor, result: AttackResult, criterion: Criterion | None = None, *,
                       space: Space | None = None, steps: int = 20, batch_size: int | None = 256,
                       device: str | torch.device | None = None) -> AttackResult:
    r"""Shorten each successful perturbation by bisection on its length.

    Finds, per input, the smallest :math:`t \in (0, 1]` (to :math:`2^{-\text{steps}}`) such that
    :math:`\Pi_S(x + t\,\delta)` still satisfies the criterion. Never lengthens a perturbation
    and never turns a success into a failure.

    Parameters
    ----------
    model, x, criterion, space : as for :func:`minimal_perturbation`
    result : AttackResult
        A result on the same ``x``.
    steps : int, default 20
        Bisection steps.

    Returns
    -------
    AttackResult
        With ``queries`` increased by the model calls spent here.
    """
    dev = resolve_device(device, model, x)
    space = as_space(space)
    criterion = Misclassify() if criterion is None else criterion
    x = as_input(x, device=dev)
    x_adv = result.x_adv.detach().to(dev).clone()
    delta = x_adv - x
    view = (-1,) + (1,) * (x.dim() - 1)
    todo = (result.success.to(dev) & (result.distance.to(dev) > 0)).nonzero().flatten()
    queries = result.queries.to(dev).clone()
    with model_hygiene(model, dev) as m, torch.no_grad():
        reference_all = criterion.prepare(clean_outputs(m, x, batch_size))
        for s in batches(len(todo), batch_size):
            idx = todo[s]
            xb, db = x[idx], delta[idx]
            reference = reference_all[idx]
            lo = torch.zeros(len(idx), dtype=x.dtype, device=dev)
            hi = torch.ones_like(lo)
            for _ in range(int(steps)):
                mid = (lo + hi) / 2
                cand = space.project(xb, xb + mid.view(view) * db)
                ok = criterion.satisfied(forward(m, cand, check=False), reference)
                hi = torch.where(ok, mid, hi)
                lo = torch.where(ok, lo, mid)
            cand = space.project(xb, xb + hi.view(view) * db)
            ok = criterion.satisfied(forward(m, cand, check=False), reference)
            x_adv[idx[ok]] = cand[ok]
            queries[idx] += int(steps) + 2
    new_delta = x_adv - x
    distance = space.distance(x, x_adv, result.norm if space.continuous else None)
    distance = torch.where(result.success.to(dev), distance, torch.full_like(distance, float("inf")))
    return AttackResult(x_adv=x_adv, delta=new_delta, success=result.success.to(dev), distance=distance,
                        queries=queries, norm=result.norm, method=result.method)


def minimal_perturbation(model: object, x: object, criterion: Criterion | None = None, *, norm: str = "l2",
                         space: Space | None = None, method: str | Attack = "auto", batch_size: int | None = 256,
                         device: str | torch.device | None = None, already_satisfied: str = "raise",
                         refine: bool = True, progress: bool = False, **options: object) -> AttackResult:
    r"""The smallest change to ``x`` that makes ``criterion`` hold, per input.

    Default searches (``method="auto"``):

    - continuous space, differentiable model: DeepFool (Moosavi-Dezfooli et al. 2016) and FMN
      (Pintor et al. 2021) both run, the smaller successful perturbation is kept per input and
      shortened by bisection along its direction (:func:`shrink_along_delta`);
    - ``OneHot`` space: the gradient-guided edit search (stops at the first edit set that
      satisfies the criterion, then prunes edits that are not needed); distance is the
      number of changed positions;
    - model without gradients (``probe.models.has_gradient(model)`` is False): HopSkipJump
      (Chen, Jordan & Wainwright 2020).

    Every search returns a point that the model was seen to flip, so the distance found is an
    *upper* bound on the true minimal distance :math:`\min \{\lVert\delta\rVert_p : x+\delta \in S,
    \text{criterion}(f(x+\delta))\}`; for an affine classifier the latter is
    :math:`\min_{j\ne y}(z_y - z_j)/\lVert w_y - w_j\rVert_q` (``probe.testing.affine_margin``).

    Parameters
    ----------
    model : torch.nn.Module or callable
        Maps inputs (N, ...) to outputs (N, K) or (N,).
    x : torch.Tensor or array-like, shape (N, ...)
        Inputs; never modified.
    criterion : Criterion, optional
        Default ``Misclassify()`` (leave the model's own clean prediction).
    norm : {"l2", "linf", "l1"}, default "l2"
        Norm of the distance (ignored in a ``OneHot`` space, which counts changed positions).
    space : Space, optional
        ``Box`` (bounds, immutable features) or ``OneHot``; default unconstrained.
    method : str or Attack, default "auto"
        "auto", "fmn", "deepfool", "cw", "edit_search", "hopskipjump", or a minimal-norm
        ``Attack`` instance.
    batch_size : int or None, default 256
        Inputs searched at a time; results do not depend on it.
    device : str or torch.device, optional
        Default: the model's device; for a model without parameters the input's; else the CPU.
    already_satisfied : {"raise", "keep"}, default "raise"
        Inputs that already satisfy the criterion raise ``ProbeError`` or count as distance 0.
    refine : bool, default True
        Shorten every successful perturbation by bisection along its direction.
    progress : bool, default False
        Progress bar over batches (only on a terminal).
    **options
        Passed to the attack's constructor (e.g. ``steps=200`` for FMN, ``max_edits=5`` for the
        edit search). With ``method="auto"`` in a continuous space: ``steps``, ``step_size``,
        ``gamma`` go to FMN and ``overshoot`` to DeepFool.

    Returns
    -------
    AttackResult
        ``distance`` in ``norm`` (``inf`` where nothing was found).

    Examples
    --------
    >>> from probe.testing import AffineClassifier
    >>> model = AffineClassifier.random(n_features=4, n_classes=3)
    >>> res = minimal_perturbation(model, torch.randn(5, 4), norm="l2")
    >>> bool(res.success.all())
    True
    """
    space = as_space(space)
    kw = dict(batch_size=batch_size, device=device, already_satisfied=already_satisfied, progress=progress)
    if isinstance(method, Attack):
        if not getattr(method, "minimal", False):
            raise ProbeError(f"{type(method).__name__} is a fixed-budget attack; wrap it in "
                             "probe.attacks.margin_search.MarginSearch to search for the minimal budget")
        attacks = [method]
        name = method.name
    else:
        if not isinstance(method, str):
            raise ProbeError(f"method must be a string or an Attack, got {type(method).__name__}")
        if method == "auto":
            if not space.continuous:
                attacks, name = [_make_attack("edit_search", "l0", options)], "edit_search"
            elif not has_gradient(model):
                attacks, name = [_make_attack("hopskipjump", check_norm(norm), options)], "hopskipjump"
            else:
                norm = check_norm(norm)
                fmn_opts = {k: options.pop(k) for k in ("steps", "step_size", "gamma", "gamma_final") if k in options}
                df_opts = {k: options.pop(k) for k in ("overshoot", "candidates") if k in options}
                if options:
                    raise ProbeError(f"unknown option(s) {sorted(options)} for method='auto'; pick a method "
                                     f"({MINIMAL_METHODS}) to pass its own options")
                attacks = [_make_attack("deepfool", norm, df_opts), _make_attack("fmn", norm, fmn_opts)]
                name = "deepfool+fmn"
        else:
            if method in ("fmn", "deepfool", "hopskipjump", "cw"):
                norm = check_norm(norm)
            try:
                attacks = [_make_attack(method, norm, options)]
            except TypeError as err:
                raise ProbeError(f"bad option for method={method!r}: {err}") from None
            name = method
    dist_norm = check_distance_norm(space, norm)
    results = []
    for a in attacks:
        r = a(model, x, criterion, space=space, **kw)
        if r.norm != dist_norm and space.continuous:
            raise ProbeError(f"{a!r} measures {r.norm} distances, but norm={norm!r} was asked for")
        # a gradient-free search spends its query budget itself; refining would overspend it
        if refine and space.continuous and a.needs_gradient:
            r = shrink_along_delta(model, x, r, criterion, space=space, batch_size=batch_size, device=device)
        results.append(r)
    return results[0] if len(results) == 1 else _best_of(results, name)


def _sorted_budgets(eps: object) -> torch.Tensor:
    e = torch.as_tensor(eps, dtype=torch.get_default_dtype()).reshape(-1).cpu()
    if e.numel() == 0:
        raise ProbeError("eps must hold at least one budget")
    bad = ~torch.isfinite(e) | (e < 0)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ProbeError(f"eps[{i}] = {e[i].item()} must be a finite budget >= 0")
    return e.sort().values


def _certified_radius(certifier: object, model: object, x: torch.Tensor, y: torch.Tensor, norm: str) -> torch.Tensor:
    if isinstance(certifier, str):
        from .certify import certified_radius

        return certified_radius(model, x, norm=norm, method=certifier, labels=y)
    if callable(certifier):
        return certifier(model, x, y)
    raise ProbeError(f"certifier must be a method name ('ibp', 'crown', ...) or a callable "
                     f"(model, x, labels) -> radius, got {type(certifier).__name__}")


def robustness_curve(model: object, x: object, y: object = None, *, eps: Sequence[float] | torch.Tensor,
                     norm: str = "linf", attack: Attack | str | None = None,
                     certifier: str | Callable[..., torch.Tensor] | None = None, space: Space | None = None,
                     steps: int = 20, restarts: int = 1, batch_size: int | None = 256,
                     device: str | torch.device | None = None, progress: bool = False) -> RobustnessCurve:
    r"""Robust accuracy against perturbation budget: empirical (attack) and, optionally, certified.

    Empirical robust accuracy at budget :math:`\epsilon` is the fraction of inputs that are
    classified correctly and on which the attack found no misclassified point within
    :math:`\epsilon` -- an *upper* bound on the true robust accuracy. A point found at a smaller
    budget also lies in every larger ball, so the curve is made non-increasing by counting an
    input as broken from the first budget at which it broke. Certified robust accuracy is
    :math:`\frac1N \sum_i [\hat y_i = y_i] \, [r_i \ge \epsilon]` with :math:`r_i` the certified
    radius -- a *lower* bound. The truth lies between the two curves.

    Parameters
    ----------
    model : torch.nn.Module or callable
        A classifier returning class scores (N, C).
    x : torch.Tensor, shape (N, ...)
    y : array-like of int, shape (N,), optional
        True labels; default the model's own predictions (clean accuracy 1).
    eps : sequence of float
        Budgets (>= 0; sorted ascending in the result).
    norm : {"linf", "l2", "l1"}, default "linf"
    attack : Attack, "minimal" or None
        None: PGD with ``steps`` and ``restarts`` at every budget (or, for a model without
        gradients, a minimal-norm search). A fixed-budget ``Attack`` with an ``eps`` attribute is
        copied per budget; a minimal-norm ``Attack`` (``attack.minimal``) or ``"minimal"``
        (:func:`minimal_perturbation`) runs once and an input counts as broken at every budget
        at or above its distance.
    certifier : str or callable, optional
        A method name for ``probe.certify.certified_radius`` ("ibp", "crown", ...), or a callable
        ``(model, x, labels) -> Tensor[N]`` of certified radii in ``norm``.
    space : Space, optional
        Where inputs may go (e.g. ``Box(0, 1)`` for images).
    steps, restarts : int, default 20, 1
        PGD settings when ``attack`` is None (``steps`` also sets the FMN steps of ``"minimal"``).
    batch_size : int or None, default 256
    device : str or torch.device, optional
    progress : bool, default False

    Returns
    -------
    RobustnessCurve
    """
    norm = check_norm(norm)
    budgets = _sorted_budgets(eps)
    dev = resolve_device(device, model, x)
    xt = as_input(x, device=dev)
    with model_hygiene(model, dev) as m:
        clean = clean_outputs(m, xt, batch_size)
    pred = Misclassify().prepare(clean)
    labels = pred if y is None else Misclassify(y).prepare(clean)
    correct = pred == labels
    criterion = Misclassify(labels)
    kw = dict(space=space, batch_size=batch_size, device=dev, already_satisfied="keep", progress=progress)
    broken = torch.zeros(len(budgets), len(xt), dtype=torch.bool, device=dev)
    if attack is None and not has_gradient(model):
        attack = "minimal"
    if attack == "minimal" or (isinstance(attack, Attack) and getattr(attack, "minimal", False)):
        if attack == "minimal":
            res = minimal_perturbation(model, xt, criterion, norm=norm, steps=steps, **kw)
            name = f"minimal:{res.method}"
        else:
            res = attack(model, xt, criterion, **kw)
            name = attack.name
        dist = torch.where(res.success, res.distance.to(dev), torch.full_like(res.distance.to(dev), float("inf")))
        broken = dist[None, :] <= budgets.to(dev)[:, None] * (1 + 1e-6)
    else:
        if attack is None:
            from .attacks.pgd import PGD

            template: Attack = PGD(eps=1.0, norm=norm, steps=steps, restarts=restarts)
        elif isinstance(attack, Attack) and hasattr(attack, "eps"):
            template = attack
        else:
            raise ProbeError(f"attack must be None, 'minimal' or a probe Attack, got {attack!r}")
        name = template.name
        for i, e in enumerate(budgets.tolist()):
            if e == 0:
                broken[i] = ~correct
                continue
            a = copy.copy(template)
            a.eps = e
            broken[i] = a(model, xt, criterion, **kw).success
        broken = broken.cummax(0).values
    broken = broken | ~correct[None, :]
    empirical = (~broken).float().mean(1)
    certified = None
    if certifier is not None:
        radius = torch.as_tensor(_certified_radius(certifier, model, xt, labels, norm)).to(dev).reshape(-1)
        if radius.shape[0] != len(xt):
            raise ProbeError(f"the certifier returned {radius.shape[0]} radii for {len(xt)} inputs")
        certified = (correct[None, :] & (radius[None, :] >= budgets.to(dev)[:, None])).float().mean(1)
        name = f"{name}+{certifier if isinstance(certifier, str) else getattr(certifier, '__name__', 'certifier')}"
    return RobustnessCurve(eps=budgets.to(dev), empirical=empirical, certified=certified, norm=norm,
                           clean=float(correct.float().mean()), method=name)
