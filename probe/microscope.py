"""The microscope one-liners: the smallest change that flips a model, and robustness against budget."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch

from .attacks.base import Attack
from .criteria import Criterion, Misclassify
from .devices import as_input, batches, model_hygiene, resolve_device
from .errors import ProbeError
from .models import clean_outputs, forward, has_gradient
from .norms import check_norm, lp_norm
from .results import AttackResult, RobustnessCurve
from .spaces import Box, Space, as_space, check_distance_norm

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
    """Per input, the successful result of smallest distance (queries add up).

    Point, success and distance of an input all come from the one result picked for it (the first
    result where none succeeded), so no input gets the point of one search and the verdict of another.
    """
    first = results[0]
    x = first.x_adv - first.delta
    dist = torch.stack([torch.where(r.success, r.distance, torch.full_like(r.distance, float("inf")))
                        for r in results])                                            # (R, N)
    found = torch.stack([r.success for r in results]).any(0)
    pick = torch.where(found, dist.argmin(0), torch.zeros_like(found, dtype=torch.long))
    rows = torch.arange(len(first), device=pick.device)
    x_adv = torch.stack([r.x_adv for r in results])[pick, rows]
    success = torch.stack([r.success for r in results])[pick, rows]
    distance = torch.where(success, dist[pick, rows], torch.full_like(first.distance, float("inf")))
    queries = torch.stack([r.queries for r in results]).sum(0)
    return AttackResult(x_adv=x_adv, delta=x_adv - x, success=success, distance=distance, queries=queries,
                        norm=first.norm, method=name)


def _clear(criterion: Criterion, outputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Satisfied with a margin above the rounding error of the outputs, shape (N,).

    A point whose criterion loss is within a few units in the last place of the outputs (top-2 scores
    tied, a threshold met to the last bit) may fail when the same point is scored again in a batch of
    another size; a refined point is kept only where it is clear of that.
    """
    z = outputs if outputs.dim() > 1 else outputs[:, None]
    tol = 16 * torch.finfo(z.dtype).eps * (1 + z.detach().abs().flatten(1).amax(1))
    return criterion.satisfied(outputs, reference) & (criterion.loss(outputs, reference) > tol)


# factors by which a perturbation whose end point lies within rounding of the boundary may be lengthened
_STRETCH = (1.0, 1.0 + 1e-4, 1.0 + 1e-3, 1.0 + 1e-2)


def shrink_along_delta(model: object, x: torch.Tensor, result: AttackResult, criterion: Criterion | None = None, *,
                       space: Space | None = None, steps: int = 20, batch_size: int | None = 256,
                       device: str | torch.device | None = None) -> AttackResult:
    r"""Shorten each successful perturbation by bisection on its length.

    Finds, per input, the smallest :math:`t` (to :math:`2^{-\text{steps}}` of the bracket) such that
    :math:`\Pi_S(x + t\,\delta)` satisfies the criterion with a margin above the rounding error of
    the outputs, so that the returned point stays a success when it is scored again (in a batch of
    another size, on another device). The bracket is :math:`(0, t_{hi}]` with :math:`t_{hi}` the
    first of 1, 1.0001, 1.001, 1.01 at which the criterion holds with that margin: only a point within
    rounding of the boundary is lengthened, by at most 1 %. Where no such :math:`t_{hi}` exists the
    bisection uses the criterion as it is. Every step keeps the ``hi`` end, a point seen to satisfy
    the criterion, so a success never turns into a failure.

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

            def at(t: torch.Tensor, xb: torch.Tensor = xb, db: torch.Tensor = db) -> torch.Tensor:
                return space.project(xb, xb + t.view(view) * db)

            def judge(cand: torch.Tensor, strict: torch.Tensor, reference: torch.Tensor = reference) -> torch.Tensor:
                out = forward(m, cand, check=False)
                return torch.where(strict, _clear(criterion, out, reference), criterion.satisfied(out, reference))

            hi = torch.ones(len(idx), dtype=x.dtype, device=dev)
            strict = torch.zeros(len(idx), dtype=torch.bool, device=dev)
            calls = 0
            for factor in _STRETCH:
                t = torch.full_like(hi, factor)
                clear = _clear(criterion, forward(m, at(t), check=False), reference) & ~strict
                calls += 1
                hi = torch.where(clear, t, hi)
                strict = strict | clear
                if strict.all():
                    break
            lo = torch.zeros_like(hi)
            for _ in range(int(steps)):
                mid = (lo + hi) / 2
                ok = judge(at(mid), strict)
                hi = torch.where(ok, mid, hi)
                lo = torch.where(ok, lo, mid)
            cand = at(hi)
            ok = judge(cand, strict)
            x_adv[idx[ok]] = cand[ok]
            queries[idx] += int(steps) + calls + 1
    new_delta = x_adv - x
    distance = space.distance(x, x_adv, result.norm if space.continuous else None)
    distance = torch.where(result.success.to(dev), distance, torch.full_like(distance, float("inf")))
    return AttackResult(x_adv=x_adv, delta=new_delta, success=result.success.to(dev), distance=distance,
                        queries=queries, norm=result.norm, method=result.method)


class _Rows(Criterion):
    """A criterion whose reference is fixed to the rows of a subset of the inputs (for a search on them)."""

    def __init__(self, criterion: Criterion, reference: torch.Tensor):
        self.criterion = criterion
        self.reference = reference

    def prepare(self, clean_outputs: torch.Tensor) -> torch.Tensor:
        return self.reference.to(clean_outputs.device)

    def loss(self, outputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return self.criterion.loss(outputs, reference)

    def satisfied(self, outputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return self.criterion.satisfied(outputs, reference)

    def __repr__(self) -> str:
        return repr(self.criterion)


def _rows(result: AttackResult, idx: torch.Tensor) -> AttackResult:
    return AttackResult(x_adv=result.x_adv[idx], delta=result.delta[idx], success=result.success[idx],
                        distance=result.distance[idx], queries=result.queries[idx], norm=result.norm,
                        method=result.method)


def _put(result: AttackResult, idx: torch.Tensor, part: AttackResult, name: str) -> AttackResult:
    fields = {}
    for key in ("x_adv", "delta", "success", "distance", "queries"):
        whole = getattr(result, key).clone()
        whole[idx] = getattr(part, key).to(whole)
        fields[key] = whole
    return AttackResult(**fields, norm=result.norm, method=name)


def _rescored(model: object, x: torch.Tensor, result: AttackResult, criterion: Criterion, reference: torch.Tensor,
              space: Space, batch_size: int | None, dev: torch.device) -> AttackResult:
    """Success decided by the criterion on the returned points; distance measured on them, ``inf`` where they fail."""
    with model_hygiene(model, dev) as m, torch.no_grad():
        out = torch.cat([forward(m, result.x_adv[s], check=False) for s in batches(len(x), batch_size)])
    success = criterion.satisfied(out, reference)
    distance = space.distance(x, result.x_adv, result.norm if space.continuous else None).to(result.distance)
    distance = torch.where(success, distance, torch.full_like(distance, float("inf")))
    return AttackResult(x_adv=result.x_adv, delta=result.x_adv - x, success=success, distance=distance,
                        queries=result.queries, norm=result.norm, method=result.method)


def _doublings(space: Space, x: torch.Tensor, norm: str, eps_init: float) -> int:
    """Doublings of ``eps_init`` a budget search needs to cover a bounded ``Box`` (20 where unbounded)."""
    if not isinstance(space, Box) or len(x) == 0:
        return 20
    width = (space.upper.to(x) - space.lower.to(x)).expand_as(x[:1])
    if space.mask is not None:
        width = torch.where(space.mask.to(x.device), torch.zeros_like(width), width)
    diameter = float(lp_norm(width, norm)[0])
    if not math.isfinite(diameter):
        return 20
    return int(min(20, max(0, math.ceil(math.log2(max(diameter, 1e-30) / eps_init)))))


def _fmn_from(start: torch.Tensor, **options: object) -> Attack:
    """FMN begun at given points, one per input (``FMN.run``'s ``start``, handed over as a presampled tensor)."""
    from .attacks.fmn import FMN

    class _FMNFrom(FMN):
        def presample(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
            return {**super().presample(x, generator), "start": start.detach().cpu()}

    return _FMNFrom(**options)


def _escalation(norm: str, fmn_opts: dict, eps_init: float, doublings: int) -> list[tuple[str, Attack | None]]:
    """Stronger searches, in order of cost, for the inputs DeepFool and FMN did not flip.

    ``None`` stands for FMN begun at the current points of the failures (DeepFool's last iterate,
    near the boundary), built when the stage runs.
    """
    from .attacks.cw import CarliniWagner
    from .attacks.fmn import FMN
    from .attacks.margin_search import MarginSearch
    from .attacks.pgd import PGD

    steps = 4 * int(fmn_opts.get("steps", 100))
    ladder: list[tuple[str, Attack | None]] = [
        ("fmn_restart", None),
        ("fmn_long", FMN(norm=norm, **{**fmn_opts, "steps": steps})),
    ]
    if norm == "l2":
        ladder.append(("cw", CarliniWagner()))
    ladder.append(("pgd_search", MarginSearch(PGD(eps=1.0, norm=norm, steps=50, restarts=4), steps=12,
                                              eps_init=eps_init, max_doublings=doublings)))
    return ladder


def _escalate(model: object, x: torch.Tensor, result: AttackResult, criterion: Criterion, reference: torch.Tensor,
              space: Space, norm: str, fmn_opts: dict, refine: bool, kw: dict, dev: torch.device) -> AttackResult:
    """Run the escalation ladder on the failures only; each stage sees what the previous ones left."""
    ok = result.success & torch.isfinite(result.distance)
    eps_init = float(result.distance[ok].median()) if ok.any() else 1.0
    eps_init = eps_init if eps_init > 0 else 1.0
    name = result.method
    failed = ~result.success
    polish_opts = {**fmn_opts, "norm": norm, "steps": int(fmn_opts.get("steps", 100))}
    for stage, attack in _escalation(norm, fmn_opts, eps_init, _doublings(space, x, norm, eps_init)):
        idx = (~result.success).nonzero().flatten()
        if len(idx) == 0:
            break
        if attack is None:
            attack = _fmn_from(result.x_adv[idx], **{**polish_opts, "steps": 4 * polish_opts["steps"]})
        name = f"{name}+{stage}"
        result = _stage(model, x, result, idx, attack, criterion, reference, space, refine, kw, dev, name)
    # what a stronger search found is shortened by FMN begun at it (the radius only shrinks from there)
    idx = (failed & result.success).nonzero().flatten()
    if len(idx):
        attack = _fmn_from(result.x_adv[idx], **polish_opts)
        result = _stage(model, x, result, idx, attack, criterion, reference, space, refine, kw, dev, name)
    return result


def _stage(model: object, x: torch.Tensor, result: AttackResult, idx: torch.Tensor, attack: Attack,
           criterion: Criterion, reference: torch.Tensor, space: Space, refine: bool, kw: dict, dev: torch.device,
           name: str) -> AttackResult:
    """Run ``attack`` on the inputs ``idx``, keep per input the better of its result and the current one."""
    sub_criterion = _Rows(criterion, reference[idx])
    xs = x[idx]
    r = attack(model, xs, sub_criterion, space=space, **{**kw, "already_satisfied": "keep"})
    if refine:
        r = shrink_along_delta(model, xs, r, sub_criterion, space=space, batch_size=kw["batch_size"], device=dev)
    part = _best_of([_rows(result, idx), r], name)
    part = _rescored(model, xs, part, sub_criterion, reference[idx], space, kw["batch_size"], dev)
    return _put(result, idx, part, name)


def minimal_perturbation(model: object, x: object, criterion: Criterion | None = None, *, norm: str = "l2",
                         space: Space | None = None, method: str | Attack = "auto", batch_size: int | None = 256,
                         device: str | torch.device | None = None, already_satisfied: str = "raise",
                         refine: bool = True, escalate: bool = True, progress: bool = False,
                         **options: object) -> AttackResult:
    r"""The smallest change to ``x`` that makes ``criterion`` hold, per input.

    Default searches (``method="auto"``):

    - continuous space, differentiable model: DeepFool (Moosavi-Dezfooli et al. 2016) and FMN
      (Pintor et al. 2021) both run, each perturbation is shortened by bisection along its direction
      (:func:`shrink_along_delta`) and the smaller successful one is kept per input. On the inputs
      neither flips, and on those alone, stronger searches run in turn until one succeeds: FMN with
      four times the steps begun at DeepFool's last point, the same begun at ``x``, Carlini-Wagner
      L2 (``norm="l2"``), and PGD (Madry et al. 2018; 4 restarts of 50 steps) under a bisection over
      its budget
      (:class:`~probe.attacks.margin_search.MarginSearch`, doubling from the median distance found
      on the other inputs); what they find is then shortened by FMN begun at it. So an input counts
      as a failure only where all of these failed;
    - ``OneHot`` space: the gradient-guided edit search (stops at the first edit set that
      satisfies the criterion, then prunes edits that are not needed); distance is the
      number of changed positions;
    - model without gradients (``probe.models.has_gradient(model)`` is False): HopSkipJump
      (Chen, Jordan & Wainwright 2020).

    Success is decided by the criterion on the returned point (one more model call), so every
    success satisfies ``criterion.satisfied(model(x_adv))`` and a failure has distance ``inf``; a
    point whose top scores are tied satisfies no misclassification. Every success is a point that
    the model was seen to flip, so the distance found is an
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
    escalate : bool, default True
        ``method="auto"`` in a continuous space: run the stronger searches on the inputs DeepFool and
        FMN did not flip (False: report those as failures).
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
    escalating, fmn_opts = False, {}
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
                escalating = bool(escalate)
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
    result = results[0] if len(results) == 1 else _best_of(results, name)
    dev = resolve_device(device, model, x)
    xt = as_input(x, device=dev)
    criterion = Misclassify() if criterion is None else criterion
    with model_hygiene(model, dev) as m:
        reference = criterion.prepare(clean_outputs(m, xt, batch_size))
    result = _rescored(model, xt, result, criterion, reference, space, batch_size, dev)
    if escalating and not result.success.all():
        result = _escalate(model, xt, result, criterion, reference, space, norm, fmn_opts, refine,
                           {**kw, "device": dev}, dev)
    return result


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


def _check_class_scores(model: object, x: torch.Tensor) -> None:
    """A robustness curve counts misclassifications: it needs class scores (N, C), or one binary logit (N, 1)."""
    with torch.no_grad():
        out = model(x[:1]) if callable(model) else None
    if torch.is_tensor(out) and out.dim() == 2:
        return
    shape = (len(x),) + tuple(out.shape[1:]) if torch.is_tensor(out) else type(out).__name__
    raise ProbeError(f"robustness_curve needs class scores of shape (N, C) (or one binary logit, (N, 1)), but the "
                     f"model returned shape {shape} for {len(x)} inputs; for a regression output use "
                     "minimal_perturbation with a Threshold or Shift criterion")


def _corruption_curve(model: object, x: torch.Tensor, labels: torch.Tensor, levels: torch.Tensor, corruption: object,
                      space: Space | None, batch_size: int | None, dev: torch.device) -> tuple[torch.Tensor, str]:
    from .corruptions import as_corruption, corruption_accuracy

    c = as_corruption(corruption)
    with model_hygiene(model, dev) as m:
        return corruption_accuracy(m, x, labels, levels, c, space=space, batch_size=batch_size), f"corruption:{c.kind}"


def robustness_curve(model: object, x: object, y: object = None, *, eps: Sequence[float] | torch.Tensor,
                     norm: str = "linf", attack: Attack | str | None = None,
                     certifier: str | Callable[..., torch.Tensor] | None = None, space: Space | None = None,
                     steps: int = 20, restarts: int = 1, batch_size: int | None = 256,
                     device: str | torch.device | None = None, progress: bool = False,
                     corruption: object = None) -> RobustnessCurve:
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
        A classifier returning class scores (N, C), or one binary logit (N, 1) read as [0, z]
        (anything else, such as a regression output (N,), raises ``ProbeError``).
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
    corruption : {"gaussian", "uniform", "salt_pepper"} or probe.corruptions.Corruption, optional
        Instead of an attack, random corruption: ``eps`` are noise levels (the standard deviation,
        the half-width, or the share of features hit; see :class:`probe.corruptions.Corruption`) and
        ``empirical`` is the mean accuracy on the corrupted inputs
        (:func:`probe.corruptions.corruption_accuracy`). ``norm`` then only concerns the certifier.

    Returns
    -------
    RobustnessCurve
    """
    norm = check_norm(norm)
    budgets = _sorted_budgets(eps)
    dev = resolve_device(device, model, x)
    xt = as_input(x, device=dev)
    with model_hygiene(model, dev) as m:
        clean = clean_outputs(m, xt, batch_size)  # a model that cannot take x fails here, with ProbeError
        _check_class_scores(m, xt)
    pred = Misclassify().prepare(clean)
    labels = pred if y is None else Misclassify(y).prepare(clean)
    correct = pred == labels
    criterion = Misclassify(labels)
    kw = dict(space=space, batch_size=batch_size, device=dev, already_satisfied="keep", progress=progress)
    broken = torch.zeros(len(budgets), len(xt), dtype=torch.bool, device=dev)
    if attack is None and not has_gradient(model):
        attack = "minimal"
    if corruption is not None:
        empirical, name = _corruption_curve(model, xt, labels, budgets.to(dev), corruption, space, batch_size, dev)
    elif attack == "minimal" or (isinstance(attack, Attack) and getattr(attack, "minimal", False)):
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
    if corruption is None:
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
