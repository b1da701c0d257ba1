r"""Soundness fuzzing of the certificates: random small networks, random norms and budgets, ground truth.

Every case is drawn from a ``random.Random`` (``draw_*``), built deterministically from its description
(``build``) and checked by one property (``check_*``, each returning the violations it found, empty when the
property holds). The hypothesis suite ``tests/certify/test_cert_fuzz.py`` draws the same cases from
hypothesis' own ``Random``; this script draws many more and counts.

Properties
  bounds       points of the ball (centre, uniform samples, linf corners, l1 vertices, l2 sphere points, and
               projected-gradient maximisers and minimisers of every output) lie inside CROWN's and
               alpha-CROWN's bounds, and CROWN's inside IBP's (tolerance 1e-5 relative and absolute, float64).
  radius       linf ReLU networks: certified radius (IBP, CROWN) <= exact MILP margin
               (``probe.testing.milp``) <= ``probe.minimal_perturbation``'s distance.
  radius-any   any architecture and norm: certified radius (IBP, CROWN) <= the attack's distance.
  lip-exact    one Linear, convolution or average-pooling layer: ``lipschitz_bound`` >= the exact induced norm
               of its dense matrix (SVD for l2, largest row / column abs sum for linf / l1), strictly
               (relative 1e-12).
  lip-net      random networks: ``lipschitz_bound`` >= ``empirical_lipschitz_lower_bound`` (relative 1e-9:
               the difference quotient itself carries rounding).
  smoothing    ``smoothing_radius(n_a, n, alpha=, sigma=)`` equals Cohen et al.'s
               :math:`\sigma\,\Phi^{-1}(B^{-1}(\alpha; n_A, n - n_A + 1))`, 0 where that bound is <= 1/2
               (relative 1e-12), and ``Smoothing.certify`` reports the radius of its own counts.

Each case ``i`` of property ``P`` under ``--seed S`` is drawn from ``random.Random(f"{S}/{P}/{i}")``; a violation
is printed and written (one JSON line: seed, property, index, the case's description, what failed and by how
much) so ``--replay P:i`` with the same seed rebuilds it exactly.

Run: ``python benchmarks/soundness.py [--cases 10000] [--seed 0] [--first 0] [--device cpu] [--minutes 60]
[--properties bounds,radius,...] [--out violations.jsonl]``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from scipy.stats import beta as beta_dist
from scipy.stats import norm as normal_dist
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's probe, not an installed one

from probe import ProbeError, minimal_perturbation  # noqa: E402
from probe.certify import (  # noqa: E402
    AlphaCROWN,
    Smoothing,
    bound_outputs,
    certified_radius,
    empirical_lipschitz_lower_bound,
    lipschitz_bound,
    smoothing_radius,
)
from probe.norms import lp_norm, project_ball, sample_ball, steepest_direction  # noqa: E402
from probe.testing.milp import exact_linf_margin  # noqa: E402

NORMS = ("linf", "l2", "l1")
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "softplus", "elu")
BOUND_TOL = 1e-5       # relative and absolute, property "bounds"
RADIUS_TOL = 1e-6      # MILP feasibility tolerances of HiGHS are about 1e-7
EXACT_REL = 1e-12      # lip-exact and smoothing
QUOTIENT_REL = 1e-9    # lip-net: ||f(a) - f(b)|| / ||a - b|| with a - b ~ 1e-2 loses digits to cancellation


@dataclass(frozen=True)
class Case:
    """A reproducible random problem: an architecture, weights (from ``seed``), inputs, a norm and a budget.

    ``layers`` is a tuple of tuples, each ``(kind, *params)``: ``("linear", out, spectrum)``,
    ``("conv", out, kernel, stride, padding, dilation)``, ``("bn",)``, ``("act", name, param)``,
    ``("avgpool", kernel, stride[, padding])``, ``("maxpool", kernel, stride)``, ``("res", inner, act, param, bn)``
    (a module whose forward is ``x + block(x)``), ``("flatten",)``. ``spectrum`` is ``("gaussian", gain)``,
    ``("clustered", top, gap)`` (singular values top, top(1 - gap), top(1 - 2 gap), ...) or
    ``("equal", top, k)`` (k equal top singular values).
    """

    kind: str
    input_shape: tuple
    layers: tuple
    norm: str
    eps: float
    seed: int
    n_inputs: int = 2

    def describe(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_description(cls, text: str) -> Case:
        """The case whose :meth:`describe` is ``text``."""
        def tuples(v: object) -> object:
            return tuple(tuples(u) for u in v) if isinstance(v, list) else v

        return cls(**{k: tuples(v) for k, v in json.loads(text).items()})


class Residual(nn.Module):
    """``x + block(x)``: the residual addition the graph builder reads as an ``add`` node."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


# ------------------------------------------------------------------------------------------------------------------
# drawing cases


def _draw_act(rng: random.Random, names: tuple = ACTIVATIONS) -> tuple:
    name = rng.choice(names)
    param = {"leaky_relu": rng.choice([0.01, 0.1, 0.3]), "softplus": rng.choice([0.5, 1.0, 3.0]),
             "elu": rng.choice([0.3, 1.0])}.get(name, 0.0)
    return ("act", name, param)


def _draw_spectrum(rng: random.Random) -> tuple:
    u = rng.random()
    if u < 0.6:
        return ("gaussian", rng.choice([0.5, 1.0, 2.0]))
    if u < 0.8:
        return ("clustered", rng.choice([0.5, 1.0, 3.0]), 1e-4)
    return ("equal", rng.choice([0.5, 1.0, 3.0]), rng.randint(2, 4))


def _draw_eps(rng: random.Random) -> float:
    return 0.0 if rng.random() < 0.03 else 10 ** rng.uniform(-3, 0)


def _out_len(n: int, k: int, s: int, p: int = 0, d: int = 1) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def draw_network(rng: random.Random, *, acts: tuple = ACTIVATIONS) -> Case:
    """A random small network: an MLP, a Conv1d or a Conv2d net, with batch norm, pooling and residual blocks."""
    kind = rng.choice(["mlp", "conv1d", "conv2d"])
    n_classes = rng.randint(2, 4)
    layers: list[tuple] = []
    if kind == "mlp":
        shape = (rng.randint(2, 8),)
        for _ in range(rng.randint(1, 3)):
            layers.append(("linear", rng.randint(2, 16), _draw_spectrum(rng)))
            if rng.random() < 0.25:
                layers.append(("bn",))
            layers.append(_draw_act(rng, acts))
            if rng.random() < 0.3:
                layers.append(("res", "linear") + _draw_act(rng, acts)[1:] + (rng.random() < 0.3,))
    else:
        dims = 1 if kind == "conv1d" else 2
        channels = rng.randint(1, 3)
        size = rng.randint(6, 12) if dims == 1 else rng.randint(4, 7)
        shape = (channels,) + (size,) * dims
        for _ in range(rng.randint(1, 2)):
            k = rng.randint(1, 3)
            s = rng.randint(1, 2)
            p = rng.randint(0, k - 1)
            dil = rng.choice([1, 1, 2]) if k > 1 else 1
            if _out_len(size, k, s, p, dil) < 2:
                k, s, p, dil = 1, 1, 0, 1
            channels = rng.randint(1, 4)
            size = _out_len(size, k, s, p, dil)
            layers.append(("conv", channels, k, s, p, dil))
            if rng.random() < 0.3:
                layers.append(("bn",))
            layers.append(_draw_act(rng, acts))
            if size >= 3 and rng.random() < 0.4:
                pk, ps = 2, rng.choice([1, 2])
                layers.append((rng.choice(["avgpool", "maxpool"]), pk, ps))
                size = _out_len(size, pk, ps)
            if rng.random() < 0.3:
                layers.append(("res", "conv") + _draw_act(rng, acts)[1:] + (rng.random() < 0.3,))
        layers.append(("flatten",))
    layers.append(("linear", n_classes, _draw_spectrum(rng)))
    return Case(kind, shape, tuple(layers), rng.choice(NORMS), _draw_eps(rng), rng.randrange(2**31))


def draw_relu_mlp(rng: random.Random) -> Case:
    """An alternating Linear/ReLU network small enough for the exact MILP margin (linf)."""
    layers: list[tuple] = []
    for _ in range(rng.randint(1, 2)):
        layers += [("linear", rng.randint(3, 10), _draw_spectrum(rng)), ("act", "relu", 0.0)]
    layers.append(("linear", rng.randint(2, 4), _draw_spectrum(rng)))
    return Case("mlp", (rng.randint(2, 5),), tuple(layers), "linf", 0.0, rng.randrange(2**31), rng.randint(1, 3))


def draw_layer(rng: random.Random) -> Case:
    """One Linear layer (Gaussian or clustered spectrum, up to 160 x 160), one Conv1d / Conv2d or one AvgPool layer."""
    kind = rng.choice(["linear", "linear", "conv1d", "conv2d", "pool"])
    norm = rng.choice(NORMS)
    if kind == "linear":
        d = rng.choice([rng.randint(2, 20), rng.randint(20, 160)])
        out = rng.choice([d, rng.randint(2, 160)])
        spectrum = ("gaussian", 1.0) if rng.random() < 0.3 else _draw_spectrum(rng)
        return Case("linear", (d,), (("linear", out, spectrum),), norm, 0.0, rng.randrange(2**31), 1)
    if kind == "pool":
        dims, k = rng.randint(1, 2), rng.randint(2, 3)
        pool = ("avgpool", k, rng.randint(1, k), rng.randint(0, k // 2))
        return Case(f"pool{dims}d", (rng.randint(1, 3),) + (rng.randint(k, 8),) * dims, (pool,), norm, 0.0,
                    rng.randrange(2**31), 1)
    dims = 1 if kind == "conv1d" else 2
    size = rng.randint(4, 12) if dims == 1 else rng.randint(3, 7)
    k = rng.randint(1, min(3, size))
    s, p, dil = rng.randint(1, 2), rng.randint(0, 2), rng.choice([1, 2]) if k > 1 else 1
    if _out_len(size, k, s, p, dil) < 1:
        dil, p = 1, k - 1
    conv = ("conv", rng.randint(1, 4), k, s, p, dil)
    return Case(kind, (rng.randint(1, 3),) + (size,) * dims, (conv,), norm, 0.0, rng.randrange(2**31), 1)


@dataclass(frozen=True)
class SmoothingCase:
    """Counts for Cohen et al.'s certificate: n_a of n samples, failure probability alpha, noise sigma."""

    n_a: int
    n: int
    alpha: float
    sigma: float

    def describe(self) -> str:
        return json.dumps(asdict(self))


def draw_smoothing(rng: random.Random) -> SmoothingCase:
    n = rng.choice([1, 2, 10, 100, 1000, 100_000, rng.randint(1, 10**6)])
    u = rng.random()
    if u < 0.2:
        n_a = rng.choice([0, n, max(n - 1, 0), n // 2, (n + 1) // 2])
    else:
        n_a = rng.randint(0, n)
    alpha = rng.choice([0.001, 0.01, 0.05, 10 ** rng.uniform(-8, math.log10(0.5))])
    return SmoothingCase(n_a, n, alpha, 10 ** rng.uniform(-2, 0.5))


# ------------------------------------------------------------------------------------------------------------------
# building


def _matrix(spectrum: tuple, out: int, d: int, g: torch.Generator) -> torch.Tensor:
    kind = spectrum[0]
    if kind == "gaussian":
        return torch.randn(out, d, generator=g, dtype=torch.float64) * spectrum[1] / math.sqrt(d)
    r = min(out, d)
    top = spectrum[1]
    if kind == "clustered":
        s = top * (1 - spectrum[2] * torch.arange(r, dtype=torch.float64)).clamp(min=0.1)
    else:
        tail = top * torch.rand(r, generator=g, dtype=torch.float64) * 0.9
        s = torch.cat([torch.full((min(spectrum[2], r),), float(top), dtype=torch.float64), tail])[:r]
    U, _ = torch.linalg.qr(torch.randn(out, r, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(d, r, generator=g, dtype=torch.float64))
    return (U * s) @ V.T


def _act_module(name: str, param: float) -> nn.Module:
    return {"relu": lambda: nn.ReLU(), "leaky_relu": lambda: nn.LeakyReLU(param), "tanh": lambda: nn.Tanh(),
            "sigmoid": lambda: nn.Sigmoid(), "softplus": lambda: nn.Softplus(beta=param),
            "elu": lambda: nn.ELU(alpha=param)}[name]()


def _bn(shape: tuple, g: torch.Generator) -> nn.Module:
    c = shape[0]
    bn = {1: nn.BatchNorm1d, 2: nn.BatchNorm1d, 3: nn.BatchNorm2d}[len(shape)](c).double()
    with torch.no_grad():
        bn.running_mean.copy_(torch.rand(c, generator=g, dtype=torch.float64) * 2 - 1)
        bn.running_var.copy_(0.2 + 1.8 * torch.rand(c, generator=g, dtype=torch.float64))
        bn.weight.copy_(torch.rand(c, generator=g, dtype=torch.float64) * 3 - 1.5)
        bn.bias.copy_(torch.randn(c, generator=g, dtype=torch.float64) * 0.5)
    return bn


def _conv(c_in: int, c_out: int, dims: int, k: int, s: int, p: int, dil: int, g: torch.Generator) -> nn.Module:
    conv = (nn.Conv1d if dims == 1 else nn.Conv2d)(c_in, c_out, k, stride=s, padding=p, dilation=dil).double()
    with torch.no_grad():
        fan_in = c_in * k**dims
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g, dtype=torch.float64) / math.sqrt(fan_in))
        conv.bias.copy_(torch.randn(c_out, generator=g, dtype=torch.float64) * 0.5)
    return conv


def _linear(d: int, out: int, spectrum: tuple, g: torch.Generator) -> nn.Module:
    lin = nn.Linear(d, out).double()
    with torch.no_grad():
        lin.weight.copy_(_matrix(spectrum, out, d, g))
        lin.bias.copy_(torch.randn(out, generator=g, dtype=torch.float64) * 0.5)
    return lin


def build(case: Case, device: str | torch.device = "cpu") -> tuple[nn.Module, torch.Tensor]:
    """The model (float64, eval mode) and the inputs (``case.n_inputs`` of ``case.input_shape``) of a case."""
    g = torch.Generator().manual_seed(case.seed)
    shape = tuple(case.input_shape)
    dims = len(shape) - 1
    mods: list[nn.Module] = []
    for layer in case.layers:
        kind = layer[0]
        if kind == "linear":
            mods.append(_linear(shape[-1], layer[1], layer[2], g))
        elif kind == "conv":
            mods.append(_conv(shape[0], layer[1], dims, *layer[2:], g))
        elif kind == "bn":
            mods.append(_bn(shape, g))
        elif kind == "act":
            mods.append(_act_module(layer[1], layer[2]))
        elif kind in ("avgpool", "maxpool"):
            pool = {("avgpool", 1): nn.AvgPool1d, ("avgpool", 2): nn.AvgPool2d, ("maxpool", 1): nn.MaxPool1d,
                    ("maxpool", 2): nn.MaxPool2d}[kind, dims]
            mods.append(pool(*layer[1:]))
        elif kind == "res":
            inner = _linear(shape[0], shape[0], ("gaussian", 1.0), g) if layer[1] == "linear" \
                else _conv(shape[0], shape[0], dims, 3, 1, 1, 1, g)
            block = [inner] + ([_bn(shape, g)] if layer[4] else []) + [_act_module(layer[2], layer[3])]
            mods.append(Residual(nn.Sequential(*block)))
        elif kind == "flatten":
            mods.append(nn.Flatten())
        else:  # pragma: no cover - draw_* emit no other kinds
            raise AssertionError(kind)
        with torch.no_grad():
            shape = tuple(nn.Sequential(*mods).eval()(torch.zeros((1,) + tuple(case.input_shape),
                                                                   dtype=torch.float64)).shape[1:])
    model = (mods[0] if len(mods) == 1 else nn.Sequential(*mods)).eval().to(device)
    x = torch.randn((case.n_inputs,) + tuple(case.input_shape), generator=g, dtype=torch.float64).to(device)
    return model, x


# ------------------------------------------------------------------------------------------------------------------
# properties


@dataclass(frozen=True)
class Violation:
    """One failed inequality: which, by how much (``excess``, in the units of the quantities) and where."""

    property: str
    what: str
    excess: float
    detail: str = ""


def _over(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest amount by which ``a`` exceeds ``b`` (<= 0 when a <= b everywhere)."""
    return float((a - b).max()) if a.numel() else float("-inf")


def _linear_maximiser(grad: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """argmax of <grad, d> over ||d||_p <= eps: eps sign(g) (linf), eps g / ||g|| (l2), a signed vertex (l1)."""
    if norm == "linf":
        return eps * grad.sign()
    flat = grad.flatten(1)
    if norm == "l2":
        return (eps * flat / flat.norm(dim=1, keepdim=True).clamp(min=1e-300)).view_as(grad)
    top = flat.abs().argmax(1, keepdim=True)
    return torch.zeros_like(flat).scatter_(1, top, eps * flat.gather(1, top).sign()).view_as(grad)


def ball_points(model: nn.Module, x: torch.Tensor, eps: float, norm: str, g: torch.Generator, *,
                n_uniform: int = 48, n_extreme: int = 32, steps: int = 20) -> torch.Tensor:
    """Outputs of ``model`` at points of the ball around each input, shape (M, N, K).

    Centre, uniform samples, extreme points (linf corners, l1 vertices, l2 sphere points), every iterate of
    projected gradient ascent on +f_k and -f_k for each output k (steepest-ascent steps of the norm), and at
    each iterate the point of the ball that maximises the objective's linearisation there.
    """
    n, shape = len(x), tuple(x.shape[1:])
    d = math.prod(shape)
    dev, dt = x.device, x.dtype
    deltas = [torch.zeros((1, n) + shape, dtype=dt, device=dev)]
    deltas.append(sample_ball((n_uniform * n,) + shape, eps, norm, g, dtype=dt).to(dev).view((n_uniform, n) + shape))
    if norm == "linf":
        signs = torch.randint(0, 2, (n_extreme, n) + shape, generator=g).to(dev, dt) * 2 - 1
        deltas.append(eps * signs)
    elif norm == "l1":
        idx = torch.randint(0, d, (n_extreme, n), generator=g)
        sign = torch.randint(0, 2, (n_extreme, n), generator=g).to(dt) * 2 - 1
        v = torch.zeros(n_extreme, n, d, dtype=dt).scatter_(2, idx[..., None], (eps * sign)[..., None])
        deltas.append(v.view((n_extreme, n) + shape).to(dev))
    else:
        v = torch.randn((n_extreme, n, d), generator=g, dtype=dt)
        deltas.append((eps * v / v.norm(dim=2, keepdim=True).clamp(min=1e-30)).view((n_extreme, n) + shape).to(dev))
    pts = x[None] + torch.cat(deltas)
    with torch.no_grad():
        ys = [model(pts.reshape((-1,) + shape)).reshape(len(pts), n, -1)]
    k = ys[0].shape[2]
    if eps > 0:
        # projected gradient ascent on sign * f_k, all 2K objectives and N inputs in one batch
        x0 = x.repeat((2 * k,) + (1,) * len(shape))
        which = torch.arange(2 * k, device=dev).repeat_interleave(n) % k
        sign = (1 - 2 * (torch.arange(2 * k, device=dev).repeat_interleave(n) // k)).to(dt)
        delta = sample_ball((len(x0),) + shape, eps, norm, g, dtype=dt).to(dev)
        step = 2.5 * eps / steps
        for _ in range(steps):
            z = (x0 + delta).requires_grad_(True)
            with torch.enable_grad():
                out = model(z)
                obj = sign * out.gather(1, which[:, None]).squeeze(1)
                (grad,) = torch.autograd.grad(obj.sum(), z)
            ys.append(out.detach().view(2 * k, n, k))
            with torch.no_grad():  # the point of the ball that maximises the linearisation (exact on affine maps)
                ys.append(model(x0 + _linear_maximiser(grad, eps, norm)).view(2 * k, n, k))
            delta = project_ball(delta + step * steepest_direction(grad, norm), eps, norm).detach()
            inside = lp_norm(delta, norm) <= eps * (1 + 1e-12)
            assert bool(inside.all()), "projection left the ball"
        with torch.no_grad():
            ys.append(model(x0 + delta).view(2 * k, n, k))
    return torch.cat(ys)


def check_bounds(case: Case, device: str | torch.device = "cpu") -> list[Violation]:
    """Property "bounds": sampled and attacked outputs inside CROWN's and alpha-CROWN's bounds, CROWN's inside IBP's."""
    model, x = build(case, device)
    certs = {m: bound_outputs(model, x, case.eps, norm=case.norm, method=m) for m in ("ibp", "crown")}
    certs["alpha-crown"] = bound_outputs(model, x, case.eps, norm=case.norm, method=AlphaCROWN(iterations=5))
    y = ball_points(model, x, case.eps, case.norm, torch.Generator().manual_seed(case.seed + 1))
    out: list[Violation] = []

    def tol(t: torch.Tensor) -> torch.Tensor:
        return BOUND_TOL * (1 + t.abs())

    for name, c in certs.items():
        lo, hi = c.lower[None], c.upper[None]
        for what, flagged, excess in ((f"point below {name} lower", _over(lo - tol(lo), y), _over(lo, y)),
                                      (f"point above {name} upper", _over(y, hi + tol(hi)), _over(y, hi)),
                                      (f"{name} lower > upper", _over(c.lower - tol(c.lower), c.upper),
                                       _over(c.lower, c.upper))):
            if flagged > 0:
                out.append(Violation("bounds", what, excess))
    for inner, outer in (("crown", "ibp"), ("alpha-crown", "crown")):
        a, b = certs[inner], certs[outer]
        for what, excess in ((f"{inner} lower below {outer} lower", _over(b.lower - tol(b.lower), a.lower)),
                             (f"{inner} upper above {outer} upper", _over(a.upper, b.upper + tol(b.upper)))):
            if excess > 0:
                out.append(Violation("bounds", what, excess))
    return out


def _exact_margin(model: nn.Module, x: torch.Tensor, eps_max: torch.Tensor, attack: torch.Tensor) -> torch.Tensor:
    """``exact_linf_margin``, retried with a 1 % and a 10 % larger search radius where HiGHS fails.

    HiGHS now and then stops with a solve error, or calls a program infeasible although the attack's point
    (verified: the model flips there) lies inside the search radius; both happen when that point sits on the
    decision boundary at the edge of the box. Any radius above the attack's distance has the same answer (only
    the big-M constants change), so a slightly larger one is tried; the last answer is returned either way.
    """
    exact, error = None, None
    for grow in (1.0, 1.01, 1.1):
        try:
            exact, error = exact_linf_margin(model, x, eps_max=eps_max * grow), None
        except ProbeError as err:
            error = err
            continue
        if not (torch.isinf(exact) & torch.isfinite(attack)).any():
            break
    if error is not None:
        raise error
    return exact


def check_radius(case: Case, device: str | torch.device = "cpu") -> list[Violation]:
    """Property "radius": certified linf radius (IBP, CROWN) <= exact MILP margin <= minimal_perturbation's."""
    model, x = build(case, device)
    attack = minimal_perturbation(model, x, norm="linf").distance.double().cpu()
    radii = {m: certified_radius(model, x, norm="linf", method=m).double().cpu() for m in ("ibp", "crown")}
    eps_max = torch.where(torch.isfinite(attack), attack * 1.001 + 1e-9, torch.full_like(attack, 16.0))
    exact = _exact_margin(model, x, eps_max, attack)
    out = []
    known = torch.isfinite(exact)  # inf: no change within eps_max, so the margin is not known, only large
    for m, r in radii.items():
        excess = _over(r[known], exact[known] + RADIUS_TOL * (1 + exact[known]))
        if excess > 0:
            out.append(Violation("radius", f"{m} radius > exact margin", excess, f"{r.tolist()} {exact.tolist()}"))
    fin = torch.isfinite(attack)
    excess = _over(exact[fin], attack[fin] + RADIUS_TOL * (1 + attack[fin]))
    if excess > 0:
        out.append(Violation("radius", "exact margin > attack distance", excess, f"{exact.tolist()} {attack.tolist()}"))
    return out


def check_radius_any(case: Case, device: str | torch.device = "cpu") -> list[Violation]:
    """Property "radius-any": certified radius (IBP, CROWN) <= the attack's distance, any net, any norm."""
    model, x = build(case, device)
    attack = minimal_perturbation(model, x, norm=case.norm).distance.double().cpu()
    out = []
    for m in ("ibp", "crown"):
        r = certified_radius(model, x, norm=case.norm, method=m, steps=15).double().cpu()
        fin = torch.isfinite(attack)
        excess = _over(r[fin], attack[fin] + RADIUS_TOL * (1 + attack[fin]))
        if excess > 0:
            out.append(Violation("radius-any", f"{m} radius > attack distance", excess,
                                 f"{r.tolist()} {attack.tolist()}"))
    return out


def dense_matrix(layer: nn.Module, shape: tuple) -> torch.Tensor:
    """The matrix M of the linear part of ``layer`` on inputs of ``shape``: (out, in), from its Jacobian."""
    d = math.prod(shape)
    eye = torch.eye(d, dtype=torch.float64).view((d,) + tuple(shape))
    with torch.no_grad():
        return (layer(eye) - layer(torch.zeros((1,) + tuple(shape), dtype=torch.float64))).reshape(d, -1).T


def exact_lipschitz(M: torch.Tensor, norm: str) -> float:
    """Induced norm of M: largest singular value (l2), largest row abs sum (linf), largest column abs sum (l1)."""
    if norm == "l2":
        return float(torch.linalg.svdvals(M)[0])
    return float(M.abs().sum(1 if norm == "linf" else 0).max())


def check_lipschitz_layer(case: Case, device: str | torch.device = "cpu") -> list[Violation]:
    """Property "lip-exact": lipschitz_bound of one layer >= its exact induced norm (relative 1e-12)."""
    layer, _ = build(case, "cpu")
    exact = exact_lipschitz(dense_matrix(layer, case.input_shape), case.norm)
    bound = lipschitz_bound(layer.to(device), norm=case.norm, input_shape=case.input_shape).value
    if bound < exact * (1 - EXACT_REL):
        return [Violation("lip-exact", f"{case.norm} bound below exact", exact - bound,
                          f"bound {bound!r}, exact {exact!r}, relative gap {(exact - bound) / exact:.3e}")]
    return []


def check_lipschitz_net(case: Case, device: str | torch.device = "cpu") -> list[Violation]:
    """Property "lip-net": lipschitz_bound >= empirical_lipschitz_lower_bound on a random network."""
    model, x = build(case, device)
    bound = lipschitz_bound(model, norm=case.norm, input_shape=case.input_shape).value
    lower = empirical_lipschitz_lower_bound(model, x, norm=case.norm, steps=20, step_size=0.05, seed=case.seed)
    if lower > bound * (1 + QUOTIENT_REL):
        return [Violation("lip-net", f"{case.norm} empirical quotient above bound", lower - bound,
                          f"bound {bound!r}, lower {lower!r}")]
    return []


def cohen_radius(n_a: int, n: int, alpha: float, sigma: float) -> float:
    r"""Cohen et al.'s radius, written out: :math:`\sigma\,\Phi^{-1}(\underline{p})` with the one-sided
    Clopper-Pearson bound :math:`\underline{p} = B^{-1}(\alpha; n_A, n - n_A + 1)` (0 for :math:`n_A = 0`),
    and 0 where :math:`\underline{p} \le 1/2`."""
    p = float(beta_dist.ppf(alpha, n_a, n - n_a + 1)) if n_a > 0 else 0.0
    return float(sigma * normal_dist.ppf(p)) if p > 0.5 else 0.0


def check_smoothing(case: SmoothingCase, device: str | torch.device = "cpu") -> list[Violation]:
    """Property "smoothing": smoothing_radius equals Cohen et al.'s formula (relative 1e-12)."""
    got = smoothing_radius(case.n_a, case.n, alpha=case.alpha, sigma=case.sigma)
    want = cohen_radius(case.n_a, case.n, case.alpha, case.sigma)
    if not abs(got - want) <= EXACT_REL * abs(want):
        return [Violation("smoothing", "smoothing_radius differs from Cohen et al.", abs(got - want),
                          f"got {got!r}, want {want!r}")]
    return []


def check_smoothing_certify(case: Case, device: str | torch.device = "cpu") -> list[Violation]:
    """``Smoothing.certify`` on a random network reports the radius of its own counts (Cohen et al.'s CERTIFY)."""
    model, x = build(case, device)
    sigma = max(case.eps, 0.05)
    n, alpha = 400, 0.01
    cert = Smoothing(model, sigma, n0=30, n=n, alpha=alpha, batch_size=500, seed=case.seed).certify(x)
    out = []
    for i in range(len(x)):
        label = int(cert.label[i])
        got = float(cert.radius[i])
        if label >= 0:
            want = cohen_radius(int(cert.counts[i, label]), n, alpha, sigma)
            bad = not abs(got - want) <= 1e-9 * abs(want) or want == 0.0
        else:
            want, bad = 0.0, got != 0.0 or float(cert.p_lower[i]) > 0.5
        if bad:
            out.append(Violation("smoothing", "certify radius differs from its counts", abs(got - want),
                                 f"input {i}: label {label}, got {got!r}, want {want!r}"))
    return out


PROPERTIES = {
    "bounds": (draw_network, check_bounds),
    "radius": (draw_relu_mlp, check_radius),
    "radius-any": (draw_network, check_radius_any),
    "lip-exact": (draw_layer, check_lipschitz_layer),
    "lip-net": (draw_network, check_lipschitz_net),
    "smoothing": (draw_smoothing, check_smoothing),
    "smoothing-certify": (draw_network, check_smoothing_certify),
}


def case_rng(seed: int, prop: str, index: int) -> random.Random:
    """The generator of case ``index`` of property ``prop`` under ``seed`` (string seeds are stable in Python)."""
    return random.Random(f"{seed}/{prop}/{index}")


def run_case(prop: str, seed: int, index: int, device: str) -> tuple[object, list[Violation]]:
    draw, check = PROPERTIES[prop]
    case = draw(case_rng(seed, prop, index))
    try:
        return case, check(case, device)
    except Exception as err:  # noqa: BLE001 - a crash on a supported model is a finding too
        return case, [Violation(prop, "error", float("nan"), f"{type(err).__name__}: {err}")]


# ------------------------------------------------------------------------------------------------------------------
# the long run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10_000, help="cases per property (default 10000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--first", type=int, default=0, help="index of the first case (to continue an earlier run)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--minutes", type=float, default=None, help="stop after this long (all properties together)")
    ap.add_argument("--properties", default=",".join(PROPERTIES), help="comma-separated subset")
    ap.add_argument("--out", default="soundness_violations.jsonl", help="JSON lines of the violating cases")
    ap.add_argument("--replay", default=None, help="PROPERTY:INDEX: rebuild and check one case, print it")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.replay:
        prop, index = args.replay.rsplit(":", 1)
        case, found = run_case(prop, args.seed, int(index), args.device)
        print(case.describe())
        for v in found:
            print(f"  {v.what}: excess {v.excess:.3e} {v.detail}")
        print("holds" if not found else f"{len(found)} violation(s)")
        return 1 if found else 0
    props = [p.strip() for p in args.properties.split(",") if p.strip()]
    unknown = sorted(set(props) - set(PROPERTIES))
    if unknown:
        ap.error(f"unknown properties {unknown}; known: {sorted(PROPERTIES)}")
    tried = dict.fromkeys(props, 0)
    bad = dict.fromkeys(props, 0)
    worst = dict.fromkeys(props, 0.0)
    spent = dict.fromkeys(props, 0.0)
    deadline = time.monotonic() + 60 * args.minutes if args.minutes else float("inf")
    start = time.monotonic()
    with open(args.out, "w") as log:
        # round-robin, so that a time cap leaves every property with its share of cases
        for index in range(args.first, args.first + args.cases):
            for prop in props:
                if time.monotonic() > deadline:
                    break
                t0 = time.perf_counter()
                case, found = run_case(prop, args.seed, index, args.device)
                spent[prop] += time.perf_counter() - t0
                tried[prop] += 1
                if found:
                    bad[prop] += 1
                    worst[prop] = max([worst[prop]] + [v.excess for v in found if math.isfinite(v.excess)])
                    record = {"seed": args.seed, "property": prop, "index": index, "case": json.loads(case.describe()),
                              "violations": [asdict(v) for v in found]}
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    print(f"VIOLATION {prop}:{index} (replay: --seed {args.seed} --replay {prop}:{index}) "
                          f"{found[0].what}, excess {found[0].excess:.3e}", flush=True)
            else:
                if (index + 1 - args.first) % 500 == 0:
                    print(f"{index + 1 - args.first} rounds, {time.monotonic() - start:.0f} s", flush=True)
                continue
            break
    total = time.monotonic() - start
    print(f"\nseed {args.seed}, device {args.device}, {total:.1f} s; violations written to {args.out}")
    print(f"{'property':<18} {'cases':>7} {'violating':>9} {'worst excess':>13} {'ms/case':>8}")
    for p in props:
        ms = 1000 * spent[p] / max(tried[p], 1)
        print(f"{p:<18} {tried[p]:>7} {bad[p]:>9} {worst[p]:>13.3e} {ms:>8.1f}")
    return 1 if any(bad.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
