"""Conformance checks a user can run on their own attack or space (like scikit-learn's ``check_estimator``).

Each check raises ``AssertionError`` naming the broken contract, and returns None when all hold.
"""

from __future__ import annotations

import torch

from ..criteria import Misclassify
from ..errors import ProbeError
from ..results import AttackResult
from ..spaces import Box, OneHot, Space
from .problems import AffineClassifier, affine_margin

__all__ = ["check_attack", "check_space", "onehot_minimal_edits"]


def check_space(space: Space, x0: torch.Tensor, x: torch.Tensor | None = None, *, atol: float = 1e-6) -> None:
    """Check the contract of a ``Space`` at reference points ``x0`` and candidates ``x``.

    Checked: ``x0`` validates and is its own projection at distance 0; ``project(x0, x)`` lies
    in the space (``contains``), is idempotent, has a finite non-negative distance and does not
    modify its arguments.

    Parameters
    ----------
    space : Space
    x0 : torch.Tensor, shape (N, ...)
        Points inside the space.
    x : torch.Tensor, shape (N, ...), optional
        Arbitrary candidates; default ``x0`` plus Gaussian noise.
    """
    if x is None:
        x = x0 + torch.randn(x0.shape, generator=torch.Generator().manual_seed(0), dtype=x0.dtype).to(x0.device)
    x0_copy, x_copy = x0.clone(), x.clone()
    space.validate(x0)
    assert torch.allclose(space.project(x0, x0), x0, atol=atol), f"{space!r}: project(x0, x0) != x0"
    d0 = space.distance(x0, x0)
    assert d0.shape == (len(x0),) and bool((d0.abs() <= atol).all()), f"{space!r}: distance(x0, x0) != 0"
    p = space.project(x0, x)
    assert p.shape == x.shape, f"{space!r}: project changed the shape {tuple(x.shape)} -> {tuple(p.shape)}"
    assert torch.equal(x0, x0_copy) and torch.equal(x, x_copy), f"{space!r}: project modified its arguments"
    assert bool(space.contains(x0, p, atol=atol).all()), f"{space!r}: project(x0, x) is not contained in the space"
    pp = space.project(x0, p)
    assert torch.allclose(pp, p, atol=atol), f"{space!r}: project is not idempotent (max change " \
                                             f"{(pp - p).abs().max().item():g})"
    d = space.distance(x0, p)
    assert d.shape == (len(x0),), f"{space!r}: distance must have shape (N,), got {tuple(d.shape)}"
    assert bool(torch.isfinite(d).all() and (d >= 0).all()), f"{space!r}: distance is negative or not finite"
    if isinstance(space, Box):
        lo, hi = space.lower.to(p), space.upper.to(p)
        assert bool(((p >= lo - atol) & (p <= hi + atol)).all()), f"{space!r}: projection leaves the bounds"
        if space.mask is not None:
            m = space.mask.to(p.device).expand_as(p)
            assert torch.equal(p[m], x0[m]), f"{space!r}: projection moved an immutable feature"
    if isinstance(space, OneHot):
        s = p.sum(space.axis)
        assert bool((((p == 0) | (p == 1)).all()) and ((s == 0) | (s == 1)).all()), \
            f"{space!r}: projection is not one-hot"


def onehot_minimal_edits(model: AffineClassifier, x: torch.Tensor) -> torch.Tensor:
    """Exact minimal number of changed positions that flips a *binary* affine classifier on one-hot (N, K, L).

    The logit difference is a sum of independent per-position terms, so the cheapest flip takes
    the positions with the largest possible gain first (greedy is exact here).
    """
    W, b = model.linear.weight.detach(), model.linear.bias.detach()
    n, k, length = x.shape
    with torch.no_grad():
        z = x.flatten(1) @ W.T + b
        y = z.argmax(1)
        w = (W[1] - W[0]).view(k, length)                 # contribution of class 1 minus class 0
        sgn = torch.where(y == 1, -1.0, 1.0).to(x)[:, None, None]
        gain_all = sgn * w[None]                            # (N, K, L): gain for the other class per letter
        current = (gain_all * x).sum(1)                     # (N, L)
        best_gain = (gain_all.amax(1) - current).clamp(min=0)
        need = -(sgn.view(-1) * (z[:, 1] - z[:, 0]))         # how much the gap must close (> 0)
        gains = best_gain.sort(1, descending=True).values.cumsum(1)
        ok = gains > need[:, None]
        count = torch.where(ok.any(1), ok.float().argmax(1).to(x.dtype) + 1,
                            torch.full((n,), float("inf"), dtype=x.dtype))
    return count


def _state(model: torch.nn.Module) -> tuple:
    return (model.training, tuple(p.requires_grad for p in model.parameters()),
            tuple(p.detach().clone() for p in model.parameters()))


def _problem(attack: object, seed: int) -> tuple[AffineClassifier, torch.Tensor, Space | None]:
    g = torch.Generator().manual_seed(seed)
    if getattr(attack, "needs_continuous", True):
        model = AffineClassifier.random(n_features=6, n_classes=3, seed=seed)
        return model, torch.randn(12, 6, generator=g), None
    k, length = 4, 8
    model = AffineClassifier.random(n_features=k * length, n_classes=2, seed=seed)
    letters = torch.randint(0, k, (12, length), generator=g)
    x = torch.nn.functional.one_hot(letters, k).transpose(1, 2).to(torch.get_default_dtype())
    return model, x, OneHot(axis=1)


def check_attack(attack: object, *, seed: int = 0, atol: float = 1e-4) -> None:
    """Check the contract of an ``Attack`` on analytic problems with known answers.

    Continuous attacks run on an affine 3-class classifier (unconstrained and in a ``Box``);
    attacks for ``OneHot`` spaces on a binary affine classifier of one-hot sequences. Checked:

    - the result is an ``AttackResult`` of the right shapes; ``distance`` is the space's
      distance of ``delta`` (``inf`` on failure) and ``x_adv`` lies in the space;
    - every success is real (the criterion holds on ``x_adv``) and *sound*: no distance is
      below the exact minimal distance (``affine_margin`` or the exact edit count);
    - a fixed-budget attack (an ``eps`` attribute) stays within its budget;
    - inputs are not modified; the model's train/eval mode, ``requires_grad`` flags and
      weights are restored;
    - results, per-input query counts included, do not depend on ``batch_size``;
    - bad input raises ``ProbeError``: NaN inputs, inputs of the wrong shape, a criterion that
      the clean inputs already satisfy.

    Parameters
    ----------
    attack : Attack
    seed : int, default 0
        Seed of the problems.
    atol : float, default 1e-4
        Relative and absolute tolerance of the distance checks.
    """
    from ..attacks.base import Attack

    assert isinstance(attack, Attack), f"{attack!r} is not a probe Attack"
    model, x, space = _problem(attack, seed)
    model.train()
    params = list(model.parameters())
    params[-1].requires_grad_(False)
    before = _state(model)
    x_copy = x.clone()
    res = attack(model, x, space=space, batch_size=5)
    after = _state(model)
    name = type(attack).__name__
    assert isinstance(res, AttackResult), f"{name} returned {type(res).__name__}, not AttackResult"
    assert torch.equal(x, x_copy), f"{name} modified its input"
    assert before[0] == after[0] and before[1] == after[1], f"{name} did not restore the model's mode/flags"
    assert all(torch.equal(a, b) for a, b in zip(before[2], after[2])), f"{name} changed the model's weights"
    assert all(p.grad is None for p in model.parameters()), f"{name} left gradients on the model's parameters"
    n = len(x)
    assert res.x_adv.shape == x.shape and res.delta.shape == x.shape, f"{name}: x_adv/delta have the wrong shape"
    for field in ("success", "distance", "queries"):
        assert getattr(res, field).shape == (n,), f"{name}: {field} must have shape ({n},)"
    assert torch.allclose(res.delta, res.x_adv - x, atol=1e-6), f"{name}: delta != x_adv - x"
    sp = space if space is not None else Box()
    assert bool(sp.contains(x, res.x_adv).all()), f"{name}: x_adv leaves the space"
    with torch.no_grad():
        clean, out = model(x), model(res.x_adv)
    crit = Misclassify()
    ok = crit.satisfied(out, crit.prepare(clean))
    assert torch.equal(ok, res.success), f"{name}: success flags disagree with the model on x_adv"
    dist = sp.distance(x, res.x_adv, res.norm if sp.continuous else None)
    assert bool(torch.isinf(res.distance[~res.success]).all()), f"{name}: a failure must have distance inf"
    assert torch.allclose(res.distance[res.success], dist[res.success], rtol=atol, atol=atol), \
        f"{name}: distance is not the {res.norm} size of delta"
    exact = affine_margin(model, x, res.norm) if sp.continuous else onehot_minimal_edits(model, x)
    s = res.success
    assert bool((res.distance[s] >= exact[s] * (1 - atol) - atol).all()), \
        f"{name}: a distance lies below the exact minimal distance (impossible for a real success)"
    eps = getattr(attack, "eps", None)
    if eps is not None and not torch.is_tensor(eps):
        assert bool((dist <= float(eps) * (1 + atol) + atol).all()), f"{name}: x_adv exceeds the budget eps={eps}"
    again = attack(model, x, space=space, batch_size=None)
    assert torch.equal(again.success, res.success), f"{name}: success depends on batch_size"
    assert torch.allclose(again.x_adv, res.x_adv, atol=1e-4), f"{name}: x_adv depends on batch_size"
    assert torch.equal(again.queries, res.queries), f"{name}: queries depend on batch_size"
    assert bool((res.queries >= 1).all()), f"{name}: an attacked input is reported with no model evaluation"
    if sp.continuous:
        bounded = Box(-3.0, 3.0)
        xb = x.clamp(-3, 3)
        rb = attack(model, xb, space=bounded)
        assert bool(((rb.x_adv >= -3 - 1e-6) & (rb.x_adv <= 3 + 1e-6)).all()), f"{name}: x_adv leaves the Box"
    bad = x.clone()
    bad[0].view(-1)[0] = float("nan")
    for what, call in [
        ("NaN input", lambda: attack(model, bad, space=space)),
        ("wrong input shape", lambda: attack(model, x.flatten(1)[:, :-1], space=None)),
        ("criterion already satisfied",
         lambda: attack(model, x, Misclassify((crit.prepare(clean) + 1) % clean.shape[1]), space=space)),
    ]:
        try:
            call()
        except ProbeError:
            continue
        raise AssertionError(f"{name} did not raise ProbeError on {what}")
