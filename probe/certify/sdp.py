r"""SDP-cert: output bounds of feed-forward ReLU networks by semidefinite programming (Raghunathan,
Steinhardt & Liang, "Semidefinite relaxations for certifying robustness to adversarial examples",
NeurIPS 2018).

For :math:`f(x) = W_L z_{L-1} + b_L`, :math:`z_k = \mathrm{ReLU}(y_k)`, :math:`y_k = W_k z_{k-1} + b_k`,
:math:`z_0 = x`, the minimum of :math:`c^\top f(x)` over the input set is a quadratically
constrained programme: each ReLU is exactly

.. math:: z \ge 0, \quad z \ge y, \quad z \odot (z - y) = 0,

the input box :math:`l \le x \le u` is :math:`(x - l) \odot (u - x) \ge 0` and an L2 ball adds
:math:`\epsilon^2 - \lVert x - x_0\rVert^2 \ge 0`. Lifting :math:`v = (1, x, z_1, \dots)` to
:math:`V = v v^\top` and dropping the rank condition leaves a semidefinite programme whose
minimum is a lower bound. As in SDP-cert, every variable also gets its interval
(pre-activation bounds :math:`[l_k, u_k]` from CROWN, the ReLU outputs in
:math:`[\mathrm{ReLU}(l_k), \mathrm{ReLU}(u_k)]`), which is what makes the relaxation tight;
stable neurons are eliminated (a dead one is 0, an active one equals its pre-activation), and
unstable ones also get the linear upper line of the triangle relaxation,
:math:`(u - l) z \le u (y - l)` (Ehlers, ATVA 2017), so the bound is never looser than the LP
relaxation over the same intervals, hence than CROWN's. Variables are normalised to
:math:`[-1, 1]` (:mod:`probe.certify.sdp_dual`).

Solvers and soundness
---------------------
``solver="clarabel"`` (default) or ``"scs"`` solve the SDP with cvxpy (``pip install 'probe[sdp]'``);
``solver="first-order"`` runs the first-order dual ascent of :mod:`probe.certify.sdp_dual` in
torch (Dathathri et al., NeurIPS 2020), on the model's device. Either way the bound returned is
the dual function evaluated in double precision at the solver's multipliers
(:func:`~probe.certify.sdp_dual.dual_bound`), valid for any multipliers, so it never rests on
the solver's tolerance. :func:`sdp_bounds` also reports the primal value of the conic solver
and the primal-dual gap (primal minus certified dual).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..devices import as_input, model_hygiene, resolve_device
from ..errors import ProbeError
from ..results import Certificate
from .base import BoundMethod, InputSet, get_bound_method, make_input_set, register_bound_method
from .crown import CROWN
from .graph import Graph, build_graph
from .lipsdp import _dense
from .sdp_dual import QCQP, DualVariables, dual_bound, solve_first_order

__all__ = ["SDP", "SDPBounds", "sdp_bounds", "relu_chain", "verification_qcqp"]

_SOLVERS = ("clarabel", "scs", "first-order")


def relu_chain(graph: Graph) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[int]]:
    """Affine maps ``[(W_0, b_0), ..., (W_L, b_L)]`` (consecutive affine nodes merged) with ReLUs between.

    Returns the maps (float64) and, per ReLU, the index of its pre-activation node in ``graph``.
    """
    maps, pre = [], []
    d = math.prod(graph.nodes[0].shape)
    W, b = np.eye(d), np.zeros(d)
    for node in graph.nodes[1:]:
        if node.kind == "affine":
            in_shape = graph.nodes[node.inputs[0]].shape
            Wn = _dense(node, in_shape)
            p = next(iter(node.module.parameters()), None) if node.module is not None else None
            dtype = p.dtype if p is not None else torch.float64
            with torch.no_grad():
                bn = node(torch.zeros((1,) + tuple(in_shape), dtype=dtype, device=p.device if p is not None
                                      else "cpu")).reshape(-1).double().cpu().numpy()
            W, b = Wn @ W, Wn @ b + bn
        elif node.kind == "act" and node.act == "relu" and node.slope == 0.0:
            maps.append((W, b))
            pre.append(node.inputs[0])
            W, b = np.eye(W.shape[0]), np.zeros(W.shape[0])
        else:
            what = node.act if node.kind == "act" else node.kind
            raise ProbeError(f"method='sdp' handles chains of affine layers and ReLUs; node {node.describe()} is a "
                             f"{what}")
    maps.append((W, b))
    return maps, pre


def verification_qcqp(maps: list, pre_bounds: list[tuple[np.ndarray, np.ndarray]], lower: np.ndarray,
                      upper: np.ndarray, spec: np.ndarray, *, center: np.ndarray | None = None,
                      radius: float | None = None, triangle: bool = True) -> QCQP:
    r"""The QCQP of the module docstring for one input.

    Parameters
    ----------
    maps : list of (W, b)
        From :func:`relu_chain`.
    pre_bounds : list of (l, u)
        Bounds on each ReLU's pre-activation (flat float64 arrays).
    lower, upper : numpy.ndarray, shape (d,)
        Input box.
    spec : numpy.ndarray, shape (S, K)
        Rows c: the objectives :math:`c^\top f(x)`, minimised.
    center, radius : optional
        An L2 ball :math:`\lVert x - x_0\rVert_2 \le \epsilon` intersected with the box.
    triangle : bool, default True
        Add the triangle relaxation's upper line on unstable neurons.
    """
    # variables: free inputs (upper > lower), then the unstable neurons of each layer
    free_x = np.flatnonzero(upper > lower)
    unstable = [np.flatnonzero((l < 0) & (u > 0)) for l, u in pre_bounds]
    n = len(free_x) + sum(len(k) for k in unstable)
    d = len(lower)
    # E maps v = (1, s) to the current layer's values: x = m + r * s
    E = np.zeros((d, n + 1))
    mid, rad = (lower + upper) / 2, (upper - lower) / 2
    E[:, 0] = mid
    E[free_x, 1 + np.arange(len(free_x))] = rad[free_x]
    e0 = np.zeros(n + 1)
    e0[0] = 1
    Ps, Qs, eq = [], [], []
    G = []
    if radius is not None:
        D = E.copy()
        D[:, 0] -= center
        G.append(radius ** 2 * np.outer(e0, e0) - D.T @ D)
    offset = 1 + len(free_x)
    for (W, b), (l, u), idx in zip(maps[:-1], pre_bounds, unstable):
        Y = W @ E
        Y[:, 0] += b
        Z = np.where((l >= 0)[:, None], Y, 0.0)       # active: z = y; dead: z = 0
        k = len(idx)
        cols = offset + np.arange(k)
        Z[idx] = 0.0
        Z[idx, 0] = u[idx] / 2
        Z[idx, cols] = u[idx] / 2                      # z in [0, u] as u/2 (1 + s)
        zy = Z[idx] - Y[idx]
        Ps += [Z[idx], zy, Z[idx]]
        Qs += [np.tile(e0, (k, 1)), np.tile(e0, (k, 1)), zy]
        eq += [np.zeros(k, bool), np.zeros(k, bool), np.ones(k, bool)]
        if triangle:
            li, ui = l[idx][:, None], u[idx][:, None]
            tri = ui * Y[idx] - (ui - li) * Z[idx]
            tri[:, 0] -= (ui * li)[:, 0]
            Ps.append(tri)
            Qs.append(np.tile(e0, (k, 1)))
            eq.append(np.zeros(k, bool))
        E = Z
        offset += k
    W, b = maps[-1]
    out = W @ E
    out[:, 0] += b
    c = spec @ out
    t = dict(dtype=torch.float64)
    P = torch.as_tensor(np.concatenate(Ps) if Ps else np.zeros((0, n + 1)), **t)
    Q = torch.as_tensor(np.concatenate(Qs) if Qs else np.zeros((0, n + 1)), **t)
    return QCQP(torch.as_tensor(c, **t), P, Q, torch.as_tensor(np.concatenate(eq) if eq else np.zeros(0, bool)),
                torch.as_tensor(np.array(G) if G else np.zeros((0, n + 1, n + 1)), **t))


def _solve_cvxpy(qp: QCQP, solver: str, options: dict | None) -> tuple[np.ndarray, DualVariables, list[str]]:
    """Solve the lifted SDP for every objective row; returns primal values and the multipliers."""
    try:
        import cvxpy as cp
    except ImportError as err:  # pragma: no cover - cvxpy is an optional extra
        raise ProbeError("method='sdp' with a conic solver needs cvxpy: pip install 'probe[sdp]' (or pass "
                         "solver='first-order')") from err
    n1 = qp.n + 1
    P, Q = qp.P.numpy(), qp.Q.numpy()
    eq = qp.equality.numpy()
    V = cp.Variable((n1, n1), symmetric=True)
    c = cp.Parameter(n1)
    cons = [V >> 0, V[0, 0] == 1]
    if qp.n:
        cons.append(cp.diag(V)[1:] <= 1)
    ineq_rows, eq_rows = np.flatnonzero(~eq), np.flatnonzero(eq)
    if len(ineq_rows):
        cons.append(cp.sum(cp.multiply(P[ineq_rows] @ V, Q[ineq_rows]), axis=1) >= 0)
    if len(eq_rows):
        cons.append(cp.sum(cp.multiply(P[eq_rows] @ V, Q[eq_rows]), axis=1) == 0)
    gcons = [cp.trace(g @ V) >= 0 for g in qp.G.numpy()]
    prob = cp.Problem(cp.Minimize(c @ V[:, 0]), cons + gcons)
    s = qp.c.shape[0]
    m = len(eq)
    primal = np.full(s, np.nan)
    lam, mu, kappa = np.zeros((s, m)), np.zeros((s, len(gcons))), np.zeros((s, qp.n))
    status = []
    for r in range(s):
        c.value = qp.c[r].numpy()
        try:
            with warnings.catch_warnings():
                # "solution may be inaccurate": the bound is certified from the multipliers whatever their accuracy
                warnings.simplefilter("ignore", UserWarning)
                prob.solve(solver=solver.upper(), **(options or {}))
        except cp.error.SolverError as err:
            status.append(f"error: {err}")
            continue
        status.append(prob.status)
        if prob.status not in ("optimal", "optimal_inaccurate"):
            continue
        primal[r] = prob.value
        k = 2
        if qp.n:
            kappa[r] = np.asarray(cons[k].dual_value).reshape(-1)
            k += 1
        if len(ineq_rows):
            lam[r, ineq_rows] = np.asarray(cons[k].dual_value).reshape(-1)
            k += 1
        if len(eq_rows):
            lam[r, eq_rows] = np.asarray(cons[k].dual_value).reshape(-1)
        for j, g in enumerate(gcons):
            mu[r, j] = float(np.asarray(g.dual_value).reshape(-1)[0])
    t = dict(dtype=torch.float64)
    return primal, DualVariables(torch.as_tensor(lam, **t), torch.as_tensor(mu, **t),
                                 torch.as_tensor(kappa, **t)), status


def _certified(qp: QCQP, dv: DualVariables) -> torch.Tensor:
    """The better of the two sign conventions for the equality multipliers (both bounds are sound)."""
    flipped = DualVariables(torch.where(qp.equality, -dv.lam, dv.lam), dv.mu, dv.kappa)
    return torch.maximum(dual_bound(qp, dv), dual_bound(qp, flipped))


@dataclass(frozen=True)
class SDPBounds:
    """Bounds of :func:`sdp_bounds` with the solver's report.

    Attributes
    ----------
    lower, upper : torch.Tensor, shape (N, S)
        Certified bounds (the dual function at the solver's multipliers).
    primal_lower, primal_upper : torch.Tensor, shape (N, S)
        The conic solver's primal values of the SDP (NaN for the first-order solver, which has no
        primal iterate).
    gap_lower, gap_upper : torch.Tensor, shape (N, S)
        Primal-dual gaps ``primal - certified`` (for the upper side, ``certified - primal``).
    solver : str
    """

    lower: torch.Tensor
    upper: torch.Tensor
    primal_lower: torch.Tensor
    primal_upper: torch.Tensor
    gap_lower: torch.Tensor
    gap_upper: torch.Tensor
    solver: str

    def certificate(self) -> Certificate:
        return Certificate(lower=self.lower, upper=self.upper, radius=None, method="sdp", confidence=None)

    def to_frame(self) -> pd.DataFrame:
        """One row per (input, specification row)."""
        n, s = self.lower.shape
        cols = {k: getattr(self, k).detach().cpu().numpy().reshape(-1) for k in
                ("lower", "upper", "primal_lower", "primal_upper", "gap_lower", "gap_upper")}
        index = pd.MultiIndex.from_product([range(n), range(s)], names=["input", "output"])
        return pd.DataFrame(cols, index=index).assign(solver=self.solver)


@register_bound_method
class SDP(BoundMethod):
    """SDP-cert bounds; see the module docstring.

    Parameters
    ----------
    solver : {"clarabel", "scs", "first-order"}, default "clarabel"
    steps : int, default 3000
        Largest number of iterations of the first-order solver.
    triangle : bool, default True
        Add the triangle relaxation's upper line on unstable neurons.
    sides : {"both", "lower"}, default "both"
        ``"lower"`` skips the upper bounds (returned as +inf), halving the work of a certified radius.
    solver_options : dict, optional
        Keyword arguments of cvxpy's ``Problem.solve``.
    """

    name = "sdp"

    def __init__(self, *, solver: str = "clarabel", steps: int = 3000, triangle: bool = True, sides: str = "both",
                 solver_options: dict | None = None):
        self.solver = solver
        self.steps = steps
        self.triangle = triangle
        self.sides = sides
        self.solver_options = solver_options

    def bounds(self, graph: Graph, inputs: InputSet, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        res = self.solve(graph, inputs, spec)
        return res.lower.to(inputs.center), res.upper.to(inputs.center)

    def solve(self, graph: Graph, inputs: InputSet, spec: torch.Tensor) -> SDPBounds:
        """Bounds with the solver's primal values and gaps (see :class:`SDPBounds`)."""
        solver = str(self.solver).lower()
        if solver not in _SOLVERS:
            raise ProbeError(f"solver must be one of {_SOLVERS}, got {self.solver!r}")
        if self.sides not in ("both", "lower"):
            raise ProbeError(f"sides must be 'both' or 'lower', got {self.sides!r}")
        if inputs.norm == "l1":
            raise ProbeError("method='sdp' bounds L-inf and L2 balls and boxes; an L1 ball is not quadratic")
        maps, pre = relu_chain(graph)
        boxes, _ = CROWN().intermediate_bounds(graph, inputs)
        lo_box, hi_box = inputs.box()
        n = len(inputs)
        s = spec.shape[1]
        out = {k: torch.full((n, s), math.nan, dtype=torch.float64) for k in ("lo", "hi", "plo", "phi")}
        specs = spec.detach().double().cpu().numpy()
        for i in range(n):
            pb = [tuple(t[i].reshape(-1).double().cpu().numpy() for t in boxes[j]) for j in pre]
            rows = specs[i] if self.sides == "lower" else np.concatenate([specs[i], -specs[i]])
            kw = {}
            if inputs.norm == "l2":
                kw = dict(center=inputs.center[i].reshape(-1).double().cpu().numpy(), radius=float(inputs.eps[i]))
            qp = verification_qcqp(maps, pb, lo_box[i].reshape(-1).double().cpu().numpy(),
                                   hi_box[i].reshape(-1).double().cpu().numpy(), rows, triangle=self.triangle, **kw)
            if solver == "first-order":
                dev = inputs.center.device
                on = QCQP(*(t.to(dev) for t in (qp.c, qp.P, qp.Q, qp.equality, qp.G)))
                bound, _ = solve_first_order(on, steps=self.steps)
                primal = torch.full_like(bound, math.nan)
            else:
                primal_np, dv, _ = _solve_cvxpy(qp, solver, self.solver_options)
                bound = _certified(qp, dv)
                primal = torch.as_tensor(primal_np)
            out["lo"][i] = bound[:s]
            out["plo"][i] = primal[:s]
            if self.sides == "both":
                out["hi"][i] = -bound[s:]
                out["phi"][i] = -primal[s:]
            else:
                out["hi"][i] = math.inf
        # a failed solve leaves the box bound of c . f over the interval boxes (still sound): CROWN's
        bad = torch.isnan(out["lo"]) | torch.isnan(out["hi"])
        if bad.any():  # pragma: no cover - a solver failure
            lo_c, hi_c = CROWN().bounds(graph, inputs, spec)
            out["lo"] = torch.where(torch.isnan(out["lo"]), lo_c.double().cpu(), out["lo"])
            out["hi"] = torch.where(torch.isnan(out["hi"]), hi_c.double().cpu(), out["hi"])
        dev = inputs.center.device
        return SDPBounds(out["lo"].to(dev), out["hi"].to(dev), out["plo"].to(dev), out["phi"].to(dev),
                         (out["plo"] - out["lo"]).to(dev), (out["hi"] - out["phi"]).to(dev), solver)


def sdp_bounds(model: torch.nn.Module, x: object, eps: object = None, *, norm: str = "linf", lower: object = None,
               upper: object = None, spec: torch.Tensor | None = None, device: str | torch.device | None = None,
               **options: object) -> SDPBounds:
    r"""SDP-cert bounds on ``spec @ model(x')`` over the perturbation set, with the solver's report.

    The same bounds as ``bound_outputs(model, x, eps, norm=norm, method="sdp")``, with the primal
    values and primal-dual gaps of the solver (:class:`SDPBounds`).

    Parameters
    ----------
    model : torch.nn.Module
        A chain of affine layers (Linear, Conv, BatchNorm in eval mode, Flatten, ...) and ReLUs.
    x : torch.Tensor, shape (N, ...)
    eps, norm, lower, upper, spec, device
        As in :func:`probe.certify.bound_outputs` (norm "linf" or "l2", or a box).
    **options
        :class:`SDP`'s options (``solver``, ``steps``, ``triangle``, ``sides``, ``solver_options``).
    """
    dev = resolve_device(device, model, x)
    bm = get_bound_method("sdp")
    for key, value in options.items():
        if not hasattr(bm, key):
            raise ProbeError(f"unknown option {key!r} for method 'sdp'")
        setattr(bm, key, value)
    x = as_input(x, device=dev)
    inputs = make_input_set(x, eps, norm=norm, lower=lower, upper=upper)
    with model_hygiene(model, dev) as m, torch.no_grad():
        graph = build_graph(m, x)
        k = math.prod(graph.nodes[-1].shape)
        sp = torch.eye(k, dtype=x.dtype, device=dev) if spec is None else spec.to(x)
        if sp.dim() == 2:
            sp = sp.expand(len(x), -1, -1)
        return bm.solve(graph, inputs, sp)
