"""The bound-method template and registry, input perturbation sets, and ``bound_outputs``.

A bound method receives a traced :class:`~probe.certify.graph.Graph`, an :class:`InputSet`
(a norm ball or a per-feature box around each input) and optionally a specification
matrix ``C``; it returns sound lower and upper bounds on ``C f(x)`` over the set. The
final :func:`bound_outputs` validates, batches, restores the model and wraps the bounds
in a :class:`~probe.results.Certificate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..devices import as_input, batches, model_hygiene, resolve_device
from ..errors import ProbeError
from ..norms import check_norm
from ..results import Certificate
from .graph import Graph, build_graph

__all__ = ["InputSet", "BoundMethod", "BOUND_METHODS", "register_bound_method", "get_bound_method",
           "bound_outputs", "make_input_set", "compute_bounds"]


@dataclass(frozen=True)
class InputSet:
    r"""Perturbation set around each of N inputs.

    ``norm`` is "linf", "l2" or "l1" (ball :math:`\lVert x - c\rVert_p \le \epsilon_n`, ``eps`` of
    shape (N,)) or "box" (:math:`l \le x \le u`, ``lower``/``upper`` shaped like ``center``).
    """

    center: torch.Tensor
    norm: str
    eps: torch.Tensor | None = None
    lower: torch.Tensor | None = None
    upper: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.center.shape[0])

    def _eps_view(self) -> torch.Tensor:
        return self.eps.view((-1,) + (1,) * (self.center.dim() - 1))

    def box(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Smallest per-feature box containing the set."""
        if self.norm == "box":
            return self.lower, self.upper
        e = self._eps_view()
        return self.center - e, self.center + e

    def concretize_lower(self, A: torch.Tensor) -> torch.Tensor:
        r"""``min_{x in set} A . x`` for ``A`` of shape (N, S, *shape) -> (N, S).

        Hölder: :math:`A c - \epsilon \lVert A\rVert_q` with q the dual norm; for a box
        :math:`A m - |A| r` with midpoint m and half-width r.
        """
        flat = A.flatten(2)
        if self.norm == "box":
            mid = ((self.lower + self.upper) / 2).flatten(1)
            rad = ((self.upper - self.lower) / 2).flatten(1)
            return torch.einsum("nsd,nd->ns", flat, mid) - torch.einsum("nsd,nd->ns", flat.abs(), rad)
        dual = {"linf": 1, "l2": 2, "l1": float("inf")}[self.norm]
        centre = torch.einsum("nsd,nd->ns", flat, self.center.flatten(1))
        return centre - self.eps[:, None] * flat.norm(p=dual, dim=2)

    def select(self, s: slice | torch.Tensor) -> InputSet:
        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[s]

        return InputSet(self.center[s], self.norm, pick(self.eps), pick(self.lower), pick(self.upper))


def make_input_set(x: torch.Tensor, eps: object = None, *, norm: str = "linf", lower: object = None,
                   upper: object = None) -> InputSet:
    """Build the perturbation set from the user's arguments (see :func:`bound_outputs`)."""
    if lower is not None or upper is not None:
        if eps is not None or lower is None or upper is None:
            raise ProbeError("give either eps, or both lower and upper (a per-feature box), not a mix")
        lo = torch.as_tensor(lower, dtype=x.dtype, device=x.device).expand_as(x).clone()
        hi = torch.as_tensor(upper, dtype=x.dtype, device=x.device).expand_as(x).clone()
        if (lo > hi).any():
            i = tuple(int(k) for k in (lo > hi).nonzero()[0])
            raise ProbeError(f"lower > upper at index {i}: {lo[i].item()} > {hi[i].item()}")
        if ((x < lo) | (x > hi)).any():
            i = tuple(int(k) for k in ((x < lo) | (x > hi)).nonzero()[0])
            raise ProbeError(f"x lies outside the box [lower, upper] at index {i}")
        return InputSet(x, "box", lower=lo, upper=hi)
    if eps is None:
        raise ProbeError("eps is required (a number, one per input, or a tensor shaped like x)")
    e = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if not torch.isfinite(e).all() or (e < 0).any():
        bad = (~torch.isfinite(e) | (e < 0)).nonzero()
        idx = tuple(int(k) for k in bad[0]) if e.dim() else ()
        raise ProbeError(f"eps must be finite and non-negative; eps{list(idx) if idx else ''} = "
                         f"{e[idx].item() if idx else e.item()}")
    if e.dim() > 0 and tuple(e.shape) == tuple(x.shape) and x.dim() > 1:
        return InputSet(x, "box", lower=x - e, upper=x + e)
    norm = check_norm(norm)
    if e.dim() == 0:
        e = e.expand(x.shape[0])
    if e.dim() != 1 or e.shape[0] != x.shape[0]:
        raise ProbeError(f"eps must be a number, one per input ({x.shape[0]},) or shaped like x "
                         f"{tuple(x.shape)}; got shape {tuple(e.shape)}")
    return InputSet(x, norm, eps=e.clone())


class BoundMethod:
    """Base class of bound-propagation methods.

    Subclasses store keyword-only options in ``__init__`` (no work there) and implement
    ``bounds(graph, inputs, spec)`` returning ``(lower, upper)`` of shape (N, S): sound
    bounds on ``spec @ f(x).flatten(1)`` for every ``x`` in the set.
    """

    name: str = ""

    def bounds(self, graph: Graph, inputs: InputSet, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError  # pragma: no cover

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


BOUND_METHODS: dict[str, type[BoundMethod]] = {}


def register_bound_method(cls: type[BoundMethod]) -> type[BoundMethod]:
    """Class decorator adding a bound method to :data:`BOUND_METHODS` under ``cls.name``."""
    if not cls.name:
        raise ProbeError(f"{cls.__name__} needs a non-empty name to be registered")
    BOUND_METHODS[cls.name] = cls
    return cls


def get_bound_method(method: str | BoundMethod) -> BoundMethod:
    """An instance of the named bound method (or the instance given)."""
    if isinstance(method, BoundMethod):
        return method
    key = str(method).lower()
    if key not in BOUND_METHODS:
        raise ProbeError(f"unknown bound method {method!r}; registered: {sorted(BOUND_METHODS)}")
    return BOUND_METHODS[key]()


def compute_bounds(graph: Graph, inputs: InputSet, method: BoundMethod, spec: torch.Tensor | None = None,
                   batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds on ``spec @ f(x)`` (identity spec: the outputs), ``batch_size`` inputs at a time."""
    n = len(inputs)
    k = 1
    for d in graph.nodes[-1].shape:
        k *= d
    if spec is None:
        spec = torch.eye(k, dtype=inputs.center.dtype, device=inputs.center.device)
    spec = spec.to(inputs.center)
    if spec.dim() == 2:
        spec = spec.expand(n, -1, -1)
    if spec.shape[0] != n or spec.shape[2] != k:
        raise ProbeError(f"spec must have shape (S, {k}) or ({n}, S, {k}); got {tuple(spec.shape)}")
    lo, hi = [], []
    with torch.no_grad():
        for s in batches(n, batch_size):
            l, u = method.bounds(graph, inputs.select(s), spec[s])
            lo.append(l)
            hi.append(u)
    return torch.cat(lo), torch.cat(hi)


def bound_outputs(model: torch.nn.Module, x: object, eps: object = None, *, norm: str = "linf",
                  method: str | BoundMethod = "crown", lower: object = None, upper: object = None,
                  spec: torch.Tensor | None = None, batch_size: int | None = 256,
                  device: str | torch.device | None = None, output: int | str | None = None,
                  reduce: object = None) -> Certificate:
    r"""Sound bounds on every output of ``model`` over a perturbation set around each input.

    For every :math:`x'` with :math:`\lVert x' - x_n\rVert_p \le \epsilon_n` (or inside the
    per-feature box), ``lower[n] <= f(x') <= upper[n]``.

    Parameters
    ----------
    model : torch.nn.Module
        Any module :func:`probe.graph.capture` reads: custom ``forward`` methods and wrappers of
        Linear, Conv1d/2d/3d (dilated, strided), BatchNorm (eval), pooling, residual additions,
        concatenation, slicing and cropping, means and sums over axes, reshapes and permutations,
        and the activations ReLU, LeakyReLU, GELU, SiLU, Softplus, ELU, Tanh, Sigmoid and exp.
    x : torch.Tensor, shape (N, ...)
        Centres; never modified.
    eps : float, torch.Tensor of shape (N,) or shaped like ``x``
        Radius of the ball (one per input), or a per-feature half-width (a box).
    norm : {"linf", "l2", "l1"}, default "linf"
        Norm of the ball (ignored for a box).
    method : {"crown", "ibp", "sdp"} or BoundMethod, default "crown"
        ``"ibp"``: interval bound propagation (Gowal et al. 2018); ``"crown"``: backward linear
        relaxation (Zhang et al., "Efficient Neural Network Robustness Certification with
        General Activation Functions", NeurIPS 2018).
        ``"sdp"``: the semidefinite relaxation SDP-cert (Raghunathan et al., NeurIPS 2018) for
        chains of affine layers and ReLUs (:mod:`probe.certify.sdp`).
    lower, upper : torch.Tensor shaped like ``x``, optional
        A per-feature box instead of ``eps``.
    spec : torch.Tensor of shape (S, K) or (N, S, K), optional
        Bound ``spec @ f(x)`` instead of the K outputs (e.g. logit differences).
    batch_size : int or None, default 256
        Inputs bounded at a time; results do not depend on it.
    device : str or torch.device, optional
        Default: the model's device; for a model without parameters the input's; else the CPU.
    output, reduce : optional
        For a model with several outputs (a tuple or dict): which one to bound (index or key),
        and an optional reduction of it (see :func:`probe.graph.capture`).

    Returns
    -------
    Certificate
        ``lower``/``upper`` of shape (N, K) (or (N, S) with ``spec``), ``confidence=None``.
    """
    dev = resolve_device(device, model, x)
    bm = get_bound_method(method)
    x = as_input(x, device=dev)
    inputs = make_input_set(x, eps, norm=norm, lower=lower, upper=upper)
    with model_hygiene(model, dev) as m:
        graph = build_graph(m, x, output=output, reduce=reduce)
        lo, hi = compute_bounds(graph, inputs, bm, spec, batch_size)
    return Certificate(lower=lo, upper=hi, radius=None, method=bm.name, confidence=None)
