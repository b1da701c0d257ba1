r"""Certificates for late fusion: per-branch bounds combined exactly.

A :class:`~probe.multimodal.LateFusion` model applies one branch :math:`z_m = f_m(x_m)` per
modality and fuses them. The modalities are perturbed independently (each within its own set,
a fixed one within the point :math:`\{x_m\}`), so the worst case of the fused decision splits
into per-branch worst cases. For label y and rival j:

- **Sum / mean of logits**, :math:`z = \sum_m w_m z_m`: the margin :math:`z_y - z_j` is a sum of
  independent terms, so :math:`\min (z_y - z_j) = \sum_m w_m \min (z_{m,y} - z_{m,j})`; each
  term is bounded by CROWN/IBP on the branch with the specification :math:`e_y - e_j`, and the
  fused bound is exact whenever the branch bounds are.
- **Averaged probabilities**, :math:`p = \sum_m w_m \operatorname{softmax}(z_m)`: likewise
  :math:`\min (p_y - p_j) = \sum_m w_m \min (p_{m,y} - p_{m,j})`. Over a box of logits
  :math:`l \le z \le u` the per-branch minimum has a closed form: :math:`p_y - p_j` increases in
  :math:`z_y` and decreases in :math:`z_j` (:math:`\partial_{z_y} = p_y (1 - p_y + p_j) > 0`), and
  for every other k, :math:`\partial_{z_k} = -p_k (p_y - p_j)` has the sign of
  :math:`e^{z_j} - e^{z_y}`, fixed once :math:`z_y = l_y, z_j = u_j`. So the minimum is at the
  vertex :math:`z_y = l_y`, :math:`z_j = u_j`, :math:`z_k = u_k` if :math:`l_y > u_j` else
  :math:`l_k`:

  .. math:: \min (p_y - p_j) = \frac{e^{l_y} - e^{u_j}}{e^{l_y} + e^{u_j} + \sum_{k \ne y, j} e^{z_k}}.

- **Majority vote** (ties to the lowest class index): each branch's vote is confined to its
  *possible* classes, c being impossible when some :math:`c'` has :math:`\min (z_{m,c'} - z_{m,c}) > 0`.
  Against rival j the adversary makes every branch that can vote j do so and every other
  branch vote anything but y, so with :math:`n_y` the branches whose only possible class is y
  and :math:`n_j` those that can vote j, the decision is certified iff for every j,
  :math:`n_y > n_j`, or :math:`n_y = n_j` and :math:`y < j`.

**A fully adversarial (unbounded) modality** contributes its worst case over everything: a
margin of :math:`-\infty` to a sum of logits (no certificate unless its weight is 0), at most
:math:`-w_m` to averaged probabilities (:math:`p_{m,y} - p_{m,j} > -1`), and a vote for anyone. The
decision is then certified exactly when the other modalities out-vote it: for averaged
probabilities, when :math:`\sum_{m' \ne m} w_{m'} \min (p_{m',y} - p_{m',j}) \ge w_m` for every j.
With a ``domain`` (the modality's valid range, e.g. counts in [0, c_max] or one-hot
sequences in [0, 1]) the unbounded modality is instead bounded over the whole domain box.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
import torch

from ..criteria import _labels
from ..devices import as_input, model_hygiene, resolve_device
from ..errors import ProbeError
from ..multimodal import LateFusion, _named
from .base import compute_bounds, get_bound_method, make_input_set
from .graph import Graph, build_graph
from .radius import _bisect

__all__ = ["FusionCertificate", "certify_fusion", "fusion_radius", "softmax_gap_lower"]


@dataclass(frozen=True)
class FusionCertificate:
    """Certificate of a fused decision.

    Attributes
    ----------
    certified : torch.Tensor of bool, shape (N,)
    margin : torch.Tensor, shape (N,)
        Lower bound on the fused margin :math:`\\min_j` (score of y - score of j): logits or
        probabilities; for a vote, the worst-case vote lead :math:`\\min_j (n_y - n_j)`.
    labels : torch.Tensor of int64, shape (N,)
    rule : str
    perturbed : dict of modality -> radius (``inf`` for an unbounded modality)
    """

    certified: torch.Tensor
    margin: torch.Tensor
    labels: torch.Tensor
    rule: str
    perturbed: dict

    @property
    def certified_fraction(self) -> float:
        return float(self.certified.float().mean())

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"certified": self.certified.cpu().numpy(), "margin": self.margin.cpu().numpy(),
                             "label": self.labels.cpu().numpy()}).rename_axis("input").assign(rule=self.rule)


def softmax_gap_lower(lower: torch.Tensor, upper: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    r"""Exact :math:`\min (p_y - p_j)` of the softmax over the logit box ``[lower, upper]`` (module docstring).

    Parameters
    ----------
    lower, upper : torch.Tensor, shape (N, K)
    labels : torch.Tensor of int64, shape (N,)

    Returns
    -------
    torch.Tensor, shape (N, K)
        Column j: the minimum of :math:`p_y - p_j` (0 at j = y).
    """
    n, k = lower.shape
    lo, hi = lower.double(), upper.double()
    rows = torch.arange(n, device=lower.device)
    ly = lo[rows, labels].unsqueeze(1)                                   # (N, 1)
    shift = torch.maximum(hi.amax(1, keepdim=True), ly)
    ey, ej = torch.exp(ly - shift), torch.exp(hi - shift)                # (N, 1), (N, K) for each rival j
    positive = ly > hi                                                    # (N, K): l_y > u_j
    others = torch.where(positive.unsqueeze(2), hi.unsqueeze(1), lo.unsqueeze(1))   # (N, j, k)
    eye = torch.eye(k, dtype=torch.bool, device=lower.device)
    skip = eye.unsqueeze(0) | torch.nn.functional.one_hot(labels, k).bool().view(n, 1, k)
    rest = torch.where(skip, torch.zeros_like(others), torch.exp(others - shift.unsqueeze(2))).sum(2)
    gap = (ey - ej) / (ey + ej + rest)
    gap[rows, labels] = 0.0
    return gap.to(lower.dtype)


def _box_bounds(graph: Graph, x: torch.Tensor, eps: object, domain: tuple | None, norm: str, method: str,
                spec: torch.Tensor | None, batch_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds of ``spec @ branch`` over the ball (or over the whole domain box when ``eps`` is inf)."""
    if isinstance(eps, float) and math.isinf(eps):
        lo = torch.as_tensor(domain[0], dtype=x.dtype, device=x.device).expand_as(x)
        hi = torch.as_tensor(domain[1], dtype=x.dtype, device=x.device).expand_as(x)
        inputs = make_input_set(torch.minimum(torch.maximum(x, lo), hi), lower=lo, upper=hi)
    else:
        inputs = make_input_set(x, eps, norm=norm)
    return compute_bounds(graph, inputs, get_bound_method(method), spec, batch_size)


def _margin_spec(labels: torch.Tensor, k: int, dtype: torch.dtype) -> torch.Tensor:
    """Rows e_y - e_j for every j (row y is zero): (N, K, K)."""
    eye = torch.eye(k, dtype=dtype, device=labels.device)
    return eye[labels].unsqueeze(1) - eye.unsqueeze(0)


def certify_fusion(model: LateFusion, inputs: object, eps: object = None, *, norm: str = "linf",
                   method: str = "crown", labels: object = None, unbounded: object = (),
                   domain: Mapping | None = None, batch_size: int | None = 256,
                   device: str | torch.device | None = None) -> FusionCertificate:
    r"""Certify the fused decision of a late-fusion model under per-modality budgets (module docstring).

    Parameters
    ----------
    model : LateFusion
    inputs : dict of modality -> torch.Tensor of shape (N, ...), or a sequence in the branches' order
    eps : float or dict of modality -> float or torch.Tensor of shape (N,), optional
        Radius per perturbed modality (a number: every modality); the others stay fixed.
    norm : {"linf", "l2", "l1"}, default "linf"
    method : str, default "crown"
        Bound method of the branches (any of :func:`bound_outputs`'s).
    labels : array-like of int, shape (N,), optional
        Default: the fused model's clean prediction.
    unbounded : modality name or sequence of names
        Fully adversarial modalities.
    domain : dict of modality -> (lower, upper), optional
        The valid range of a modality (numbers or tensors shaped like one example); an
        unbounded modality with a domain is bounded over the whole domain box.
    batch_size, device
        As in :func:`bound_outputs`.

    Returns
    -------
    FusionCertificate
    """
    if not isinstance(model, LateFusion):
        raise ProbeError(f"certify_fusion needs a probe.multimodal.LateFusion model, got {type(model).__name__}")
    named = _named(inputs)
    if list(named) != model.names and set(named) == set(model.names):
        named = {k: named[k] for k in model.names}
    if list(named) != model.names:
        raise ProbeError(f"inputs {list(named)} do not match the branches {model.names}")
    unbounded = [unbounded] if isinstance(unbounded, str) else [str(u) for u in unbounded]
    domain = {} if domain is None else {str(k): v for k, v in domain.items()}
    if isinstance(eps, Mapping):
        budgets = {str(k): v for k, v in eps.items()}
    else:
        budgets = {} if eps is None else {k: eps for k in model.names if k not in unbounded}
    bad = [k for k in list(budgets) + unbounded + list(domain) if k not in model.names]
    if bad:
        raise ProbeError(f"unknown modalities {bad}; the branches are {model.names}")
    both = [k for k in unbounded if k in budgets]
    if both:
        raise ProbeError(f"modalities {both} are given both a budget and unbounded=")
    dev = resolve_device(device, model, next(iter(named.values())))
    xs = {k: as_input(v, device=dev) for k, v in named.items()}
    with model_hygiene(model, dev) as m, torch.no_grad():
        state = _State(m, xs, labels)
        return _certify(state, budgets, unbounded, domain, norm, method, batch_size)


class _State:
    """What every budget shares: the branches' clean outputs, the labels and the captured graphs."""

    def __init__(self, m: LateFusion, xs: dict, labels: object):
        self.m, self.xs = m, xs
        self.zs = dict(zip(m.names, m.branch_outputs(*xs.values())))
        fused = m(*xs.values())
        n, k = fused.shape
        self.y = fused.argmax(1) if labels is None else _labels(labels, n, k, "labels").to(fused.device)
        self.ok0 = fused.argmax(1) == self.y
        self.dtype = fused.dtype
        self.graphs: dict[str, Graph] = {}

    def graph(self, name: str) -> Graph:
        if name not in self.graphs:
            self.graphs[name] = build_graph(self.m.branches[name], self.xs[name])
        return self.graphs[name]


def _certify(state: _State, budgets: dict, unbounded: list, domain: dict, norm: str, method: str,
             batch_size: int | None) -> FusionCertificate:
    m, y = state.m, state.y
    n, k = state.zs[m.names[0]].shape
    dev = y.device
    with torch.no_grad():
        parts = []
        for name, w in zip(m.names, m.weights):
            radius = math.inf if name in unbounded else budgets.get(name)
            if isinstance(radius, (int, float)) and radius == 0:
                radius = None  # a zero budget: the branch is fixed (its exact clean term)
            parts.append(_branch_term(m.rule, state, name, w, radius, domain.get(name), norm, method, batch_size))
        if m.rule == "vote":
            only_y = torch.stack([p[0] for p in parts]).sum(0)          # (N,)
            can = torch.stack([p[1] for p in parts]).sum(0)             # (N, K)
            lead = only_y.unsqueeze(1) - can
            cls = torch.arange(k, device=dev)
            wins = (lead > 0) | ((lead == 0) & (y.unsqueeze(1) < cls))
            wins[torch.arange(n, device=dev), y] = True
            lead[torch.arange(n, device=dev), y] = math.inf
            margin, certified = lead.amin(1), wins.all(1)
        else:
            total = torch.stack(parts).sum(0)                             # (N, K), column y is 0
            total[torch.arange(n, device=dev), y] = math.inf
            margin = total.amin(1)
            certified = margin > 0
        certified = certified & state.ok0
    perturbed = {**budgets, **{k: math.inf for k in unbounded}}
    return FusionCertificate(certified, margin, y, m.rule, perturbed)


def _branch_term(rule: str, state: _State, name: str, w: float, radius: object, domain: tuple | None, norm: str,
                 method: str, batch_size: int | None) -> object:
    """One branch's worst-case contribution: (N, K) for logits and probabilities, (only_y, can) for a vote."""
    x, z, y, dtype = state.xs[name], state.zs[name], state.y, state.dtype
    n, k = z.shape
    rows = torch.arange(n, device=z.device)
    free = radius is not None and not (isinstance(radius, float) and math.isinf(radius) and domain is None)
    if rule == "vote":
        if radius is None:
            vote = torch.nn.functional.one_hot(z.argmax(1), k).bool()
        elif not free:
            vote = torch.ones(n, k, dtype=torch.bool, device=z.device)
        else:
            eye = torch.eye(k, dtype=dtype, device=z.device)
            pairs = (eye.unsqueeze(1) - eye.unsqueeze(0)).reshape(k * k, k)           # row (a, c): z_a - z_c
            lo = _box_bounds(state.graph(name), x, radius, domain, norm, method, pairs, batch_size)[0].view(n, k, k)
            lo = lo.masked_fill(torch.eye(k, dtype=torch.bool, device=z.device), -math.inf)
            vote = ~(lo > 0).any(1)                                                    # c is possible
        only_y = vote[rows, y] & (vote.sum(1) == 1)
        return only_y.to(dtype), vote.to(dtype)
    if w == 0:
        return torch.zeros(n, k, dtype=dtype, device=z.device)
    if rule in ("sum", "mean"):
        if radius is None:
            return w * (z[rows, y].unsqueeze(1) - z)
        if not free:
            return torch.full((n, k), -math.inf, dtype=dtype, device=z.device)
        spec = _margin_spec(y, k, dtype)
        return w * _box_bounds(state.graph(name), x, radius, domain, norm, method, spec, batch_size)[0]
    if radius is None:
        p = torch.softmax(z, 1)
        return w * (p[rows, y].unsqueeze(1) - p)
    if not free:
        return torch.full((n, k), -w, dtype=dtype, device=z.device)
    lo, hi = _box_bounds(state.graph(name), x, radius, domain, norm, method, None, batch_size)
    return w * softmax_gap_lower(lo, hi, y)


def fusion_radius(model: LateFusion, inputs: object, modality: str, *, norm: str = "linf", method: str = "crown",
                  labels: object = None, unbounded: object = (), domain: Mapping | None = None,
                  eps_max: float | None = None, steps: int = 20, batch_size: int | None = 256,
                  device: str | torch.device | None = None) -> torch.Tensor:
    """Certified single-source radius: the largest budget on ``modality`` alone that keeps the decision certified.

    Bisection over the budget as in :func:`~probe.certify.certified_radius` (rounded down), the
    other modalities fixed (or ``unbounded``).

    Returns
    -------
    torch.Tensor, shape (N,)
    """
    if not isinstance(model, LateFusion):
        raise ProbeError(f"fusion_radius needs a probe.multimodal.LateFusion model, got {type(model).__name__}")
    named = _named(inputs)
    if set(named) == set(model.names):
        named = {k: named[k] for k in model.names}
    if modality not in model.names:
        raise ProbeError(f"unknown modality {modality!r}; the branches are {model.names}")
    unbounded = [unbounded] if isinstance(unbounded, str) else [str(u) for u in unbounded]
    domain = {} if domain is None else {str(k): v for k, v in domain.items()}
    dev = resolve_device(device, model, next(iter(named.values())))
    xs = {k: as_input(v, device=dev) for k, v in named.items()}
    with model_hygiene(model, dev) as m, torch.no_grad():
        state = _State(m, xs, labels)
        ok0 = _certify(state, {}, unbounded, domain, norm, method, batch_size).certified

        def certified(eps: torch.Tensor) -> torch.Tensor:
            return _certify(state, {modality: eps}, unbounded, domain, norm, method, batch_size).certified

        ref = torch.zeros(len(state.y), dtype=state.dtype, device=dev)
        return _bisect(certified, ok0, ref, eps_max, int(steps))
