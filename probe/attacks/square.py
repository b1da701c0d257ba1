"""Square attack (Andriushchenko et al., 2020): score-based random search in L-inf and L2 balls."""

from __future__ import annotations

import math

import torch

from ..criteria import Criterion
from ..errors import ProbeError
from ..norms import check_norm
from ..spaces import Space
from .base import Attack, Forward, RunResult, check_eps

__all__ = ["Square", "counter_uniform", "counter_draw"]

# splitmix64 constants as signed 64-bit integers (torch has no unsigned 64-bit arithmetic)
_GOLDEN = 0x9E3779B97F4A7C15 - (1 << 64)
_MIX1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_MIX2 = 0x94D049BB133111EB - (1 << 64)


def _srl(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 values."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _splitmix(z: torch.Tensor) -> torch.Tensor:
    z = z + _GOLDEN
    z = (z ^ _srl(z, 30)) * _MIX1
    z = (z ^ _srl(z, 27)) * _MIX2
    return z ^ _srl(z, 31)


def counter_uniform(keys: torch.Tensor, counter: int, m: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Uniform numbers in [0, 1), shape (N, m), from per-input keys (N,) and a counter.

    A counter-based generator (splitmix64 of key, counter and index): input ``i`` always
    draws the same numbers whatever else is in its batch, so random searches give the
    same result for any ``batch_size``.
    """
    base = _splitmix(keys.long() ^ _splitmix(torch.tensor(int(counter), dtype=torch.long, device=keys.device)))
    idx = torch.arange(m, dtype=torch.long, device=keys.device)
    z = _splitmix(base[:, None] + idx[None, :] * _GOLDEN)
    return (_srl(z, 11).to(torch.float64) * 2.0**-53).to(dtype)


def counter_draw(keys: torch.Tensor, counter: int, m: int, kind: str = "normal",
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Many random numbers per input, shape (N, m): standard normal or uniform in [0, 1).

    Same property as :func:`counter_uniform` (input ``i`` draws the same numbers in any
    batch), faster for large ``m``: each row comes from torch's generator seeded by the hash
    of its key and the counter.
    """
    seeds = _splitmix(keys.long() ^ _splitmix(torch.tensor(int(counter), dtype=torch.long, device=keys.device)))
    out = torch.empty(len(keys), m, dtype=dtype, device=keys.device)
    draw = torch.randn if kind == "normal" else torch.rand
    gen = torch.Generator(device=keys.device)
    for i, seed in enumerate(seeds.tolist()):
        gen.manual_seed(seed & ((1 << 63) - 1))
        out[i] = draw(m, generator=gen, dtype=dtype, device=keys.device)
    return out


def p_schedule(p_init: float, it: int, n_iters: int) -> float:
    """Fraction of the input changed at iteration ``it``: ``p_init`` halved at fixed points.

    The breakpoints 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of a 10,000-query run
    (Andriushchenko et al. 2020, their ``p_selection``), rescaled to ``n_iters``.
    """
    it = int(it / max(n_iters, 1) * 10000)
    for k, bound in enumerate((10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)):
        if it <= bound:
            return p_init / 2**k
    return p_init / 512


def _bump_1d(n: int) -> torch.Tensor:
    """1-d analogue of the paper's ``pseudo_gaussian_pert_rectangles``: sum of nested centred boxes."""
    if n <= 0:
        return torch.zeros(0, dtype=torch.float64)
    c = n // 2
    d = (torch.arange(n) - c).abs().to(torch.float64)
    k = torch.arange(n, dtype=torch.float64)
    v = ((k[None, :] >= d[:, None]) / (k[None, :] + 1) ** 2).sum(1)
    return v / v.norm()


def _bump_2d(x: int, y: int) -> torch.Tensor:
    """The paper's ``pseudo_gaussian_pert_rectangles(x, y)``: nested centred rectangles weighted 1/(k+1)^2."""
    delta = torch.zeros(x, y, dtype=torch.float64)
    xc, yc = x // 2 + 1, y // 2 + 1
    c0, c1 = xc - 1, yc - 1
    for counter in range(max(xc, yc)):
        w = 1.0 / (counter + 1) ** 2
        delta[max(c0, 0):min(c0 + 2 * counter + 1, x), max(0, c1):min(c1 + 2 * counter + 1, y)] += w
        c0 -= 1
        c1 -= 1
    return delta / delta.norm()


def _meta_pattern(s: int, dim: int) -> torch.Tensor:
    """Unit-norm window pattern: two halves of opposite sign (``meta_pseudo_gaussian_pert``), flattened."""
    if dim == 2:
        d = torch.zeros(s, s, dtype=torch.float64)
        d[: s // 2] = _bump_2d(s // 2, s)
        d[s // 2:] = -_bump_2d(s - s // 2, s)
    else:
        d = torch.cat([_bump_1d(s // 2), -_bump_1d(s - s // 2)])
    return (d / d.norm()).reshape(-1)


class _Layout:
    """Positions of an input (N, C, P) and how windows of a given size are drawn over them.

    (N, D) inputs: windows are random subsets of features (tabular data has no locality);
    (N, C, L): contiguous windows along L; (N, C, H, W): s x s squares, as in the paper.
    """

    def __init__(self, shape: tuple[int, ...]):
        if len(shape) == 1:
            self.kind, self.channels, self.spatial = "subset", 1, (shape[0],)
        elif len(shape) == 3:
            self.kind, self.channels, self.spatial = "square", shape[0], shape[1:]
        else:
            self.kind, self.channels = "line", shape[0]
            self.spatial = (int(math.prod(shape[1:])),)
        self.positions = int(math.prod(self.spatial))

    def size(self, p: float, minimum: int) -> int:
        if self.kind == "square":
            s = max(int(round(math.sqrt(p * self.positions))), minimum)
            return min(s, *self.spatial)
        return min(max(int(round(p * self.positions)), minimum), self.positions)

    def window(self, u: torch.Tensor, s: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask (N, P) of a window of size ``s`` and each position's index into its pattern.

        ``u`` holds uniform numbers (N, >= P) for subsets, (N, >= 2) otherwise.
        """
        dev = u.device
        if self.kind == "subset":
            rank = u[:, : self.positions].argsort(1).argsort(1)
            return rank < s, rank.clamp(max=s - 1)
        if self.kind == "line":
            pos = torch.arange(self.positions, device=dev)
            start = (u[:, 0] * (self.positions - s + 1)).floor().long()[:, None]
            off = pos[None, :] - start
            return (off >= 0) & (off < s), off.clamp(0, s - 1)
        h, w = self.spatial
        pos = torch.arange(self.positions, device=dev)
        row, col = pos // w, pos % w
        r0 = (u[:, 0] * (h - s + 1)).floor().long()[:, None]
        c0 = (u[:, 1] * (w - s + 1)).floor().long()[:, None]
        dr, dc = row[None, :] - r0, col[None, :] - c0
        mask = (dr >= 0) & (dr < s) & (dc >= 0) & (dc < s)
        return mask, (dr.clamp(0, s - 1) * s + dc.clamp(0, s - 1))

    def pattern_values(self, s: int, index: torch.Tensor, mask: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """The unit window pattern laid over the window (zero elsewhere), transposed where ``flip``."""
        dim = 2 if self.kind == "square" else 1
        pat = _meta_pattern(s, dim).to(index.device)
        alt = pat.view(s, s).T.reshape(-1) if dim == 2 else pat.flip(0)
        vals = torch.where(flip[:, None], alt[index], pat[index])
        return vals * mask


class Square(Attack):
    r"""Square attack: score-based random search on the vertices of the L-inf (or L2) ball.

    Starts from vertical stripes (L-inf) or a grid of the pseudo-Gaussian patterns (L2)
    at radius ``eps``; each iteration redraws the perturbation inside one randomly placed
    window covering a fraction :math:`p_t` of the input (:math:`p_t` halves on a fixed
    schedule from ``p_init``) and keeps the candidate only if the criterion's margin loss
    improves:

    .. math:: \delta_{t+1} = \delta' \ \text{if}\ L(x_0 + \delta') > L(x_0 + \delta_t)\ \text{else}\ \delta_t,

    where in L-inf :math:`\delta'` sets the window to :math:`\pm\epsilon` (one sign per
    channel), and in L2 it moves the mass of a second window into the first with the
    two-halves pseudo-Gaussian pattern, keeping :math:`\lVert\delta'\rVert_2 = \epsilon`.
    One query per input per iteration; inputs stop at the first success (Andriushchenko,
    Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box adversarial
    attack via random search", ECCV 2020).

    Windows are squares over (N, C, H, W) images, contiguous runs over (N, C, L)
    sequences and random feature subsets over (N, D) tabular inputs.

    Parameters
    ----------
    eps : float or torch.Tensor of shape (N,)
        Radius of the ball.
    norm : {"linf", "l2"}, default "linf"
    max_queries : int, default 1000
        Model evaluations per input, the initial one included; never exceeded.
    p_init : float, optional
        Initial fraction of the input changed per iteration; default 0.05 (L-inf) and
        0.1 (L2), the paper's ImageNet settings.
    seed : int, default 0

    Notes
    -----
    ``queries`` counts the evaluations made by the search; the template's clean and final
    scoring passes (one each per input) come on top.
    """

    name = "square"
    needs_gradient = False

    def __init__(self, *, eps: float | torch.Tensor, norm: str = "linf", max_queries: int = 1000,
                 p_init: float | None = None, seed: int = 0):
        self.eps = eps
        self.norm = norm
        self.max_queries = max_queries
        self.p_init = p_init
        self.seed = seed

    def validate(self) -> None:
        self._checked()

    def _checked(self) -> tuple[str, float | torch.Tensor, int, float]:
        norm = check_norm(self.norm)
        if norm not in ("linf", "l2"):
            raise ProbeError(f"Square searches L-inf and L2 balls, got norm={self.norm!r}")
        if int(self.max_queries) < 1:
            raise ProbeError(f"max_queries must be at least 1, got {self.max_queries}")
        p = self.p_init if self.p_init is not None else (0.05 if norm == "linf" else 0.1)
        if not 0 < p <= 1:
            raise ProbeError(f"p_init must lie in (0, 1], got {p}")
        return norm, check_eps(self.eps), int(self.max_queries), float(p)

    def presample(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        _, eps, _, _ = self._checked()
        n = x.shape[0]
        eps_vec = eps if torch.is_tensor(eps) else torch.full((n,), eps)
        if eps_vec.shape[0] != n:
            raise ProbeError(f"eps has {eps_vec.shape[0]} entries for {n} inputs")
        keys = torch.randint(-(2**62), 2**62, (n,), generator=generator, dtype=torch.long)
        return {"eps": eps_vec, "keys": keys}

    def run(self, f: Forward, x: torch.Tensor, criterion: Criterion, reference: torch.Tensor, space: Space,
            eps: torch.Tensor, keys: torch.Tensor) -> RunResult:
        norm, _, budget, p_init = self._checked()
        n = x.shape[0]
        lay = _Layout(tuple(x.shape[1:]))
        c, npos = lay.channels, lay.positions
        x0 = x.reshape(n, c, npos)
        e = eps.to(x).view(n, 1, 1)

        def rand(counter: int, m: int) -> torch.Tensor:
            return counter_uniform(keys, counter, m, x.dtype)

        def evaluate(z: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            with torch.no_grad():
                out = f(z.reshape((len(rows),) + tuple(x.shape[1:])))
            return criterion.loss(out, reference[rows]), criterion.satisfied(out, reference[rows])

        def proj(rows: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            shape = (len(rows),) + tuple(x.shape[1:])
            return space.project(x[rows], z.reshape(shape)).reshape(len(rows), c, npos)

        all_rows = torch.arange(n, device=x.device)
        if norm == "linf":
            if lay.kind == "square":   # vertical stripes: one sign per channel and column
                h, w = lay.spatial
                sign = (rand(0, c * w).view(n, c, 1, w) < 0.5).to(x) * 2 - 1
                delta = (sign.expand(n, c, h, w) * e.view(n, 1, 1, 1)).reshape(n, c, npos)
            else:
                delta = ((rand(0, c * npos).view(n, c, npos) < 0.5).to(x) * 2 - 1) * e
        else:
            delta = self._l2_init(lay, rand, n, x) * e
        best = proj(all_rows, x0 + delta)
        loss, ok = evaluate(best, all_rows)
        queries = torch.ones(n, dtype=torch.long, device=x.device)

        for it in range(budget - 1):
            active = (~ok).nonzero().flatten()
            if len(active) == 0:
                break
            p = p_schedule(p_init, it, budget)
            counter = 1 + it
            if norm == "linf":
                cand = self._linf_step(lay, rand, counter, p, x0, best, e, active)
            else:
                cand = self._l2_step(lay, rand, counter, p, x0, best, e, active)
            cand = proj(active, cand)
            new_loss, new_ok = evaluate(cand, active)
            queries[active] += 1
            better = new_loss > loss[active]
            rows = active[better]
            best[rows] = cand[better]
            loss[rows] = new_loss[better]
            ok[rows] = new_ok[better]
        return RunResult(best.reshape(x.shape), queries)

    @staticmethod
    def _l2_init(lay: _Layout, rand, n: int, x: torch.Tensor) -> torch.Tensor:
        """Grid of pseudo-Gaussian blocks with random signs per channel, scaled to unit L2 norm."""
        c, npos = lay.channels, lay.positions
        delta = torch.zeros(n, c, npos, dtype=x.dtype, device=x.device)
        if lay.kind == "square":
            h, w = lay.spatial
            s = max(h // 5, 1)
            sp = (h - s * 5) // 2 if h >= 5 * s else 0
            pat = _meta_pattern(s, 2).view(s, s).to(x)
            grid = delta.view(n, c, h, w)
            nb_h, nb_w = h // s, w // s
            signs = (rand(0, c * nb_h * nb_w).view(n, c, nb_h, nb_w) < 0.5).to(x) * 2 - 1
            for i in range(nb_h):
                for j in range(nb_w):
                    r, q = sp + i * s, sp + j * s
                    if r + s <= h and q + s <= w:
                        grid[:, :, r:r + s, q:q + s] += pat * signs[:, :, i, j, None, None]
        else:
            s = max(npos // 5, 1)
            nb = npos // s
            pat = _meta_pattern(s, 1).to(x) if s > 1 else torch.ones(1, dtype=x.dtype, device=x.device)
            signs = (rand(0, c * nb).view(n, c, nb) < 0.5).to(x) * 2 - 1
            for j in range(nb):
                delta[:, :, j * s:(j + 1) * s] += pat * signs[:, :, j, None]
        nrm = delta.flatten(1).norm(dim=1).clamp(min=1e-12).view(n, 1, 1)
        return delta / nrm

    @staticmethod
    def _linf_step(lay: _Layout, rand, counter: int, p: float, x0: torch.Tensor, best: torch.Tensor,
                   e: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        c = lay.channels
        s = lay.size(p, 1)
        u = rand(counter * 64, max(lay.positions, 2))[active]
        mask, _ = lay.window(u, s)
        delta = best[active] - x0[active]
        ea = e[active]
        # redraw the signs (no query) while the window would not change: the paper's resampling loop,
        # here with 8 draws made at once and the first one that changes the window kept
        tries = 8
        signs = (rand(counter * 64 + 1, tries * c)[active].view(-1, tries, c) < 0.5).to(x0) * 2 - 1
        target = signs[:, :, :, None] * ea[:, None]                          # (n, tries, c, 1)
        moved = ((target - delta[:, None]).abs() * mask[:, None, None, :]).amax((2, 3)) > 1e-7
        pick = torch.where(moved.any(1), moved.float().argmax(1), torch.zeros_like(moved[:, 0], dtype=torch.long))
        sign = signs[torch.arange(len(active), device=x0.device), pick]
        cand = torch.where(mask[:, None, :], sign[:, :, None] * ea, delta)
        return x0[active] + cand

    @staticmethod
    def _l2_step(lay: _Layout, rand, counter: int, p: float, x0: torch.Tensor, best: torch.Tensor,
                 e: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        c = lay.channels
        s = lay.size(p, 3 if lay.kind == "square" else 2)
        if lay.kind == "square" and s % 2 == 0 and s < min(lay.spatial):
            s += 1
        m = max(lay.positions, 2)
        mask1, index1 = lay.window(rand(counter * 64, m)[active], s)
        mask2, _ = lay.window(rand(counter * 64 + 1, m)[active], s)
        flip = rand(counter * 64 + 2, 1)[active, 0] < 0.5
        sign = (rand(counter * 64 + 3, c)[active] < 0.5).to(x0) * 2 - 1
        xa = x0[active]
        delta = best[active] - xa
        ea = e[active]
        m1, m2 = mask1[:, None, :].to(x0), mask2[:, None, :].to(x0)
        norm_w1 = (delta * m1).norm(dim=2, keepdim=True)
        norm_img = delta.flatten(1).norm(dim=1).view(-1, 1, 1)
        norm_w12 = (delta * torch.maximum(m1, m2)).norm(dim=2, keepdim=True)
        pat = lay.pattern_values(s, index1, mask1, flip).to(x0)
        new = pat[:, None, :] * sign[:, :, None] + delta * m1 / (1e-10 + norm_w1)
        new = new / new.norm(dim=2, keepdim=True).clamp(min=1e-12)
        new = new * ((ea**2 - norm_img**2).clamp(min=0) / c + norm_w12**2).sqrt()
        delta = delta * (1 - m2)
        delta = torch.where(m1.bool(), new, delta)
        nrm = delta.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, 1, 1)
        return xa + delta / nrm * ea
