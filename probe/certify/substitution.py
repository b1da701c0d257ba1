r"""Randomized substitution smoothing: a certified Hamming radius for sequences and bit vectors.

Noise (Lee, Yuan, Chang & Jaakkola, "Tight Certificates of Adversarial Robustness for Randomly
Smoothed Classifiers", NeurIPS 2019). Every position of a sequence over an alphabet of K + 1
symbols keeps its symbol with probability :math:`\alpha` (``keep``) and otherwise takes one of
the K others uniformly, each with probability :math:`\beta = (1 - \alpha)/K`. The smoothed
classifier :math:`g(x) = \arg\max_c P(f(\phi(x)) = c)` is certified at :math:`\bar x` with
:math:`d_H(x, \bar x) = r` when the worst base classifier with :math:`P(f(\phi(x)) = c_A) \ge p_A`
still gives :math:`P(f(\phi(\bar x)) = c_A) > 1/2`.

Likelihood-ratio regions. Positions where x and x̄ agree contribute the same factor to both noise
distributions. Over the r positions where they differ, a noisy z that shows x's symbol at u of
them and x̄'s at v has

.. math:: \frac{P(\phi(x) = z)}{P(\phi(\bar x) = z)} = (\alpha / \beta)^{u - v},

so the regions are indexed by :math:`s = u - v \in \{-r, \dots, r\}` with masses

.. math:: P_x(s) = \sum_{u - v = s} \binom{r}{u, v, r-u-v} \alpha^u \beta^v ((K-1)\beta)^{r-u-v},
   \quad P_{\bar x}(s) = P_x(-s),

independent of the sequence length. By the Neyman–Pearson lemma the worst case fills the
regions in decreasing s until their mass under x reaches :math:`p_A`; the threshold
:math:`\rho_r` is the :math:`p_A` at which the mass under x̄ reaches 1/2. All of this is computed
in exact rational arithmetic (:class:`fractions.Fraction`). For r = 1 and :math:`\alpha \ge 1/2`

.. math:: \rho_1 = \alpha + (K-1)\beta + \beta\,(\alpha - 1/2)/\alpha

(0.958333… for DNA at keep = 0.8). :math:`p_A` is the Clopper–Pearson lower bound from n samples
after the class was chosen on n0 others, as in Cohen et al. (ICML 2019), so the radius holds with
probability at least :math:`1 - \alpha_{\text{conf}}`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

from ..devices import as_input, model_hygiene, resolve_device
from ..errors import ProbeError
from ..models import forward
from ..results import Certificate
from ..spaces import OneHot, Space
from .hamming import SymbolEncoding, symbol_encoding
from .smoothing import clopper_pearson_lower

__all__ = ["substitution_threshold", "substitution_radius", "substitution_regions", "SubstitutionSmoothing",
           "HammingCertificate", "DiscreteSmoothing", "substitute", "flip_positions", "flip_mask"]

_HALF = Fraction(1, 2)


def exact_fraction(value: object, name: str, *, decimal: bool = True) -> Fraction:
    """``value`` as an exact fraction; a float is read as its shortest decimal (0.8 -> 4/5), or with
    ``decimal=False`` as the binary number it is (for computed bounds, which must not move)."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ProbeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(f):
        raise ProbeError(f"{name} must be finite, got {value!r}")
    return Fraction(repr(f)) if decimal else Fraction(f)


def _check(keep: object, alphabet: object) -> tuple[Fraction, int]:
    k = int(alphabet)
    if k != alphabet or k < 2:
        raise ProbeError(f"alphabet must be a whole number of symbols >= 2, got {alphabet!r}")
    a = exact_fraction(keep, "keep")
    if not Fraction(1, k) < a < 1:
        raise ProbeError(f"keep must lie strictly between 1/alphabet = 1/{k} and 1, got {keep!r} (at or below "
                         "1/alphabet the noise forgets the sequence; at 1 there is no noise)")
    return a, k


@functools.lru_cache(maxsize=1024)
def _regions(r: int, keep: Fraction, alphabet: int) -> tuple[tuple[Fraction, Fraction], ...]:
    K = alphabet - 1
    beta = (1 - keep) / K
    other = (K - 1) * beta
    px = {s: Fraction(0) for s in range(-r, r + 1)}
    for u in range(r + 1):
        for v in range(r - u + 1):
            w = r - u - v
            ways = math.comb(r, u) * math.comb(r - u, v)
            px[u - v] += ways * keep ** u * beta ** v * other ** w
    # ordered by decreasing likelihood ratio P_x / P_xbar = (keep / beta) ** s
    return tuple((px[s], px[-s]) for s in range(r, -r - 1, -1))


def substitution_regions(radius: int, *, keep: object, alphabet: int) -> list[tuple[Fraction, Fraction]]:
    r"""Exact masses :math:`(P_x(s), P_{\bar x}(s))` of the likelihood-ratio regions, s = r, r-1, ..., -r.

    Parameters
    ----------
    radius : int
        Number r of positions where x and x̄ differ.
    keep : float or fractions.Fraction
        Probability :math:`\alpha` that a position keeps its symbol.
    alphabet : int
        Number of symbols (4 for DNA, 2 for bits).
    """
    a, k = _check(keep, alphabet)
    return list(_regions(int(radius), a, k))


@functools.lru_cache(maxsize=4096)
def _threshold(r: int, keep: Fraction, alphabet: int) -> Fraction:
    if r == 0:
        return _HALF
    mass_x = mass_xbar = Fraction(0)
    for px, pxb in _regions(r, keep, alphabet):
        if mass_xbar + pxb >= _HALF:
            return mass_x + (_HALF - mass_xbar) * px / pxb
        mass_x += px
        mass_xbar += pxb
    raise AssertionError("the regions hold all the mass")  # pragma: no cover


def threshold_fraction(radius: int, *, keep: object, alphabet: int) -> Fraction:
    """:func:`substitution_threshold` as an exact fraction."""
    a, k = _check(keep, alphabet)
    r = int(radius)
    if r != radius or r < 0:
        raise ProbeError(f"radius must be a non-negative whole number, got {radius!r}")
    return _threshold(r, a, k)


def substitution_threshold(radius: int, *, keep: object, alphabet: int) -> float:
    r"""The smallest lower bound on :math:`p_A` that certifies ``radius`` substitutions (Lee et al. 2019).

    A lower bound :math:`\underline{p_A} > \rho_r` certifies every sequence within r substitutions;
    :math:`\rho_0 = 1/2`. :math:`\rho_r` is computed exactly (see the module docstring) and rounded up
    to the next float, so comparing a float with it never certifies more than the exact value does.

    Parameters
    ----------
    radius : int
    keep : float or fractions.Fraction
        Probability that a position keeps its symbol, in (1/alphabet, 1).
    alphabet : int
        Number of symbols K + 1 >= 2.

    Returns
    -------
    float

    Examples
    --------
    >>> round(substitution_threshold(1, keep=0.8, alphabet=4), 6)
    0.958333
    """
    t = threshold_fraction(radius, keep=keep, alphabet=alphabet)
    f = float(t)
    return f if Fraction(f) >= t else math.nextafter(f, 2.0)


def substitution_radius(p_lower: object, *, keep: object, alphabet: int, max_radius: int | None = None) -> int:
    r"""Largest r with :math:`\underline{p_A} > \rho_r`: the certified number of substitutions.

    Parameters
    ----------
    p_lower : float
        Lower bound on the top-class probability under the noise.
    keep, alphabet : see :func:`substitution_threshold`
    max_radius : int, optional
        Stop here (the number of positions of the sequence); needed when ``p_lower`` is 1.

    Returns
    -------
    int
        0 where ``p_lower <= rho_1`` (also where ``p_lower <= 1/2``, when nothing is certified).

    Examples
    --------
    >>> substitution_radius(0.99, keep=0.8, alphabet=4)
    1
    """
    a, k = _check(keep, alphabet)
    p = exact_fraction(p_lower, "p_lower", decimal=False)
    if max_radius is None and p >= 1:
        raise ProbeError("p_lower = 1 certifies every radius; pass max_radius (the sequence length)")
    r = 0
    while (max_radius is None or r < int(max_radius)) and p > _threshold(r + 1, a, k):
        r += 1
    return r


@dataclass(frozen=True)
class HammingCertificate(Certificate):
    """Certificate of a smoothed classifier over a discrete space (``lower``/``upper`` are None).

    Attributes
    ----------
    label : torch.Tensor of int64, shape (N,)
        Certified class, -1 where the procedure abstains (:math:`\\underline{p_A} \\le 1/2`).
    radius : torch.Tensor of int64, shape (N,)
        Certified Hamming radius (0 on abstention, and where only the prediction itself is certified).
    p_lower : torch.Tensor, shape (N,)
        Clopper–Pearson lower bound on the top-class probability.
    counts : torch.Tensor of int64, shape (N, C)
        Class counts over the certification samples evaluated (all n, unless stopped early).
    samples : torch.Tensor of int64, shape (N,)
        Certification samples evaluated per input: n, or fewer where ``early_stop`` settled the outcome.
    """

    label: torch.Tensor | None = None
    p_lower: torch.Tensor | None = None
    counts: torch.Tensor | None = None
    samples: torch.Tensor | None = None


class DiscreteSmoothing:
    """Template of smoothed classifiers over a ``OneHot`` or ``Bits`` space: sampling, counting, abstaining.

    Subclasses implement ``_noise(codes, mutable, generator) -> codes`` (one noisy copy per row) and
    ``_radius(p_lower, positions) -> int``; they store their own hyperparameters.

    Two ways to spend less on the same certificate, both exact:

    * ``fast=True``: where the model's first layer is a plain ``nn.Conv1d`` on one-hot input or an
      ``nn.Linear`` on bits, it is read from the noisy symbol codes (k-mer table lookups) or from the
      flipped bits (the clean output plus the flipped columns) instead of from encoded inputs
      (:mod:`~probe.certify.symbol_layer`), after a check against the model on the clean inputs and
      on noisy copies; both paths draw the same noise, so the counts are those of the plain path
      (``fast=False``) up to float rounding of the scores.
    * ``early_stop=True``: :meth:`certify` stops sampling an input once no outcome of its remaining
      samples can change its label or radius. The label and radius are functions of the final count
      :math:`n_A` alone, monotone in it; after k of n samples with :math:`c` of class A the final count
      lies in :math:`[c, c + n - k]`, and where the outcome at both ends is the same it is the outcome
      of the full run. The noise of the skipped samples is still drawn (not evaluated), so every other
      input sees the stream of the full run and the labels and radii are those of the full run, bit for
      bit. ``counts`` then holds the samples evaluated (``samples``) and ``p_lower`` is the
      Clopper–Pearson bound with the unseen samples counted as misses, :math:`B^{-1}(\\alpha; c, n - c + 1)`,
      a valid lower bound that certifies the same radius. It reads the counts on the host once per batch.
    """

    method = ""

    def __init__(self, model: object, *, space: Space | None = None, n0: int = 100, n: int = 100_000,
                 alpha: float = 0.001, batch_size: int = 10_000, device: str | torch.device | None = None,
                 seed: int = 0, fast: bool = True, early_stop: bool = False):
        self.model = model
        self.space = space
        self.n0 = n0
        self.n = n
        self.alpha = alpha
        self.batch_size = batch_size
        self.device = device
        self.seed = seed
        self.fast = fast
        self.early_stop = early_stop

    def _noise(self, codes: torch.Tensor, mutable: torch.Tensor, enc: SymbolEncoding,
               generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover

    def _radius(self, p_lower: float, positions: int, enc: SymbolEncoding) -> int:
        raise NotImplementedError  # pragma: no cover

    def _validate(self, enc: SymbolEncoding) -> None:
        """Check the subclass's own hyperparameters against the inputs' encoding."""

    def _prepare(self, x: object) -> tuple[torch.device, torch.Tensor, SymbolEncoding, torch.Tensor, torch.Tensor]:
        if int(self.n0) < 1 or int(self.n) < 1 or int(self.batch_size) < 1:
            raise ProbeError(f"n0, n and batch_size must be positive, got {self.n0}, {self.n}, {self.batch_size}")
        if not 0 < float(self.alpha) < 1:
            raise ProbeError(f"alpha must lie in (0, 1), got {self.alpha}")
        dev = resolve_device(self.device, self.model, x)
        x = as_input(x, device=dev)
        space = OneHot() if self.space is None else self.space
        enc = symbol_encoding(space, x)
        self._validate(enc)
        codes = enc.codes(x)
        mutable = enc.mutable(space, x) & (codes >= 0)   # an unknown position stays unknown
        return dev, x, enc, codes, mutable

    def _plan(self, m: object, x: torch.Tensor, enc: SymbolEncoding, codes: torch.Tensor,
              mutable: torch.Tensor) -> object:
        """The model with its first layer on symbol codes or flips (checked), or None for the plain path."""
        if not self.fast:
            return None
        from .symbol_layer import first_layer_plan

        return first_layer_plan(m, enc, x, codes, mutable, lambda c, mut, g: self._noise(c, mut, enc, g))

    def _counts(self, m: object, plan: object, x: torch.Tensor, enc: SymbolEncoding, codes: torch.Tensor,
                mutable: torch.Tensor, n: int, generator: torch.Generator, stop: _Stop | None = None
                ) -> torch.Tensor:
        """Class counts (N, C) of the model on n noisy copies of every input, batch after batch of one stream.

        With ``stop``, an input whose outcome is settled is no longer evaluated (its noise is still drawn).
        """
        total = len(x) * n
        step = int(self.batch_size)
        out = None
        for start in range(0, total, step):
            end = min(start + step, total)
            first, last = start // n, (end - 1) // n
            if stop is not None and stop.done_from(first):
                break
            rows = torch.arange(start, end, device=x.device) // n
            sample = self._draw(x, codes, mutable, rows, first, last, enc, generator)
            single = first if first == last else None
            if stop is not None and not stop.all_active(first, last):
                keep = stop.active_rows(start, end, n)
                if keep is None:
                    continue                                  # drawn for the stream, nothing to evaluate
                sample, rows, single = sample[keep], rows[keep], None
            y = self._scores(m, plan, x, enc, sample, rows, single)
            if y.dim() == 1:
                y = y[:, None]
            if out is None:
                out = torch.zeros(len(x), max(y.shape[1], 2), dtype=torch.long, device=x.device)
            k = out.shape[1]
            pred = y.argmax(1) if y.shape[1] > 1 else (y[:, 0] > 0).long()
            out.view(-1).index_add_(0, rows * k + pred, torch.ones_like(pred))
            if stop is not None:
                stop.update(out, first, last, start, end, n)
        if out is None:   # pragma: no cover - every input settled before its first batch cannot happen
            raise AssertionError("no batch was evaluated")
        return out

    def _draw(self, x: torch.Tensor, codes: torch.Tensor, mutable: torch.Tensor, rows: torch.Tensor, first: int,
              last: int, enc: SymbolEncoding, generator: torch.Generator) -> torch.Tensor:
        """The noise of one batch for the inputs ``rows``: noisy codes (B, P), or for bits the flips, as a mask
        (B, P) or as flipped features (B, M) padded with -1 (:func:`flip_mask`); a batch of one input
        broadcasts it, no gather."""
        b = len(rows)
        if first == last:
            c, mut = codes[first].expand(b, -1), mutable[first].expand(b, -1)
        else:
            c, mut = codes[rows], mutable[rows]
        noisy = self._noise(c, mut, enc, generator)
        return noisy != c if enc.kind == "bits" else noisy

    def _scores(self, m: object, plan: object, x: torch.Tensor, enc: SymbolEncoding, sample: torch.Tensor,
                rows: torch.Tensor, single: int | None) -> torch.Tensor:
        """The model's scores on one batch drawn by :meth:`_draw` (``single``: every row is that input)."""
        b = len(sample)
        if enc.kind == "bits":
            if plan is not None:
                return plan(sample, rows)
            flat = x.reshape(len(x), -1)
            xb = flat[single].expand(b, -1) if single is not None else flat[rows]
            inp = torch.where(flip_mask(sample, flat.shape[1]), 1 - xb, xb).reshape((b,) + tuple(x.shape[1:]))
        else:
            if plan is not None:
                return plan(sample)
            inp = encode_batch(enc, sample, x.dtype)
        return forward(m, inp, check=False)

    def _generator(self, dev: torch.device) -> torch.Generator:
        return torch.Generator(device=dev).manual_seed(int(self.seed))

    def predict(self, X: object) -> torch.Tensor:
        """Cohen et al.'s PREDICT: the top class where a two-sided binomial test at level alpha separates it
        from the runner-up on n samples, else -1 (abstain).

        Returns
        -------
        torch.Tensor of int64, shape (N,)
        """
        from .smoothing import top_class_or_abstain

        dev, x, enc, codes, mutable = self._prepare(X)
        with model_hygiene(self.model, dev) as m, torch.inference_mode():
            plan = self._plan(m, x, enc, codes, mutable)
            counts = self._counts(m, plan, x, enc, codes, mutable, int(self.n), self._generator(dev))
        return top_class_or_abstain(counts, self.alpha)

    def certify(self, X: object) -> HammingCertificate:
        """Cohen et al.'s CERTIFY with a Hamming radius: the top class from n0 samples, its probability bounded
        below from n samples, the radius from that bound.

        Returns
        -------
        HammingCertificate
            ``label`` (-1 on abstention), ``radius`` (int64), ``p_lower``, ``counts``, ``samples``,
            ``confidence = 1 - alpha``.
        """
        dev, x, enc, codes, mutable = self._prepare(X)
        g = self._generator(dev)
        n = int(self.n)
        positions = mutable.sum(1).tolist()
        with model_hygiene(self.model, dev) as m, torch.inference_mode():
            plan = self._plan(m, x, enc, codes, mutable)
            guess = self._counts(m, plan, x, enc, codes, mutable, int(self.n0), g).argmax(1)
            stop = None
            if self.early_stop:
                steps = {q: self._thresholds(q, enc) for q in set(positions)}
                stop = _Stop(guess, [steps[q] for q in positions], n)
            counts = self._counts(m, plan, x, enc, codes, mutable, n, g, stop)
        n_a = counts.gather(1, guess[:, None]).squeeze(1)
        p = clopper_pearson_lower(n_a.cpu().numpy(), n, float(self.alpha))
        radius = [self._radius(float(pi), int(q), enc) if pi > 0.5 else 0 for pi, q in zip(p, positions)]
        ok = torch.as_tensor(p > 0.5, device=dev)
        samples = torch.as_tensor(stop.drawn if stop is not None else [n] * len(x), dtype=torch.long, device=dev)
        return HammingCertificate(lower=None, upper=None, radius=torch.tensor(radius, dtype=torch.long, device=dev),
                                  method=self.method, confidence=1 - float(self.alpha),
                                  label=torch.where(ok, guess, torch.full_like(guess, -1)),
                                  p_lower=torch.as_tensor(np.asarray(p), dtype=x.dtype, device=dev), counts=counts,
                                  samples=samples)

    def outcome(self, n_a: int, positions: int, enc: SymbolEncoding) -> int:
        """What :meth:`certify` reports for a final count ``n_a`` of the top class among n samples.

        Parameters
        ----------
        n_a : int
        positions : int
            Mutable positions of the input.
        enc : SymbolEncoding

        Returns
        -------
        int
            -1 where the procedure abstains, else the certified radius; non-decreasing in ``n_a``.
        """
        p = float(clopper_pearson_lower(int(n_a), int(self.n), float(self.alpha)))
        return self._radius(p, positions, enc) if p > 0.5 else -1

    def _thresholds(self, positions: int, enc: SymbolEncoding) -> list[int]:
        """The counts t_0 < t_1 < ... at which :meth:`outcome` steps up (t_r: least n_a with outcome >= r)."""
        n = int(self.n)
        top = self.outcome(n, positions, enc)
        out = []
        for level in range(0, top + 1):
            lo, hi = 0, n                                       # outcome(hi) >= level
            while lo < hi:
                mid = (lo + hi) // 2
                if self.outcome(mid, positions, enc) >= level:
                    hi = mid
                else:
                    lo = mid + 1
            out.append(lo)
        return out


class _Stop:
    """Book-keeping of exact early termination: which inputs are settled, how many samples each had."""

    def __init__(self, guess: torch.Tensor, thresholds: list[list[int]], n: int):
        self.guess = guess
        self.thresholds = thresholds
        self.n = n
        self.done = [False] * len(guess)
        self.drawn = [0] * len(guess)

    def done_from(self, first: int) -> bool:
        return all(self.done[first:])

    def all_active(self, first: int, last: int) -> bool:
        return not any(self.done[first:last + 1])

    def active_rows(self, start: int, end: int, n: int) -> torch.Tensor | None:
        """Batch-local indices of the rows of inputs still sampled (None where there are none)."""
        spans = [(max(start, j * n) - start, min(end, (j + 1) * n) - start)
                 for j in range(start // n, (end - 1) // n + 1) if not self.done[j]]
        if not spans:
            return None
        dev = self.guess.device
        return torch.cat([torch.arange(a, b, device=dev) for a, b in spans])

    def update(self, counts: torch.Tensor, first: int, last: int, start: int, end: int, n: int) -> None:
        """After a batch: settle every input whose final count can no longer cross a threshold."""
        live = [j for j in range(first, last + 1) if not self.done[j]]
        for j in live:
            self.drawn[j] += min(end, (j + 1) * n) - max(start, j * n)
        idx = torch.tensor(live, device=counts.device)
        c_a = counts[idx].gather(1, self.guess[idx, None]).squeeze(1).tolist()
        for j, c in zip(live, c_a):
            rest = self.n - self.drawn[j]
            self.done[j] = rest == 0 or not any(c < t <= c + rest for t in self.thresholds[j])


def encode_batch(enc: SymbolEncoding, codes: torch.Tensor, dtype: torch.dtype, like: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """Inputs (B, *shape) from symbol codes (B, P); one scatter for one-hot along axis 1.

    ``like`` (B, *shape): the inputs the codes came from; for bits, every feature whose code did not
    change keeps its value there (masked features need not be 0 or 1).
    """
    if enc.kind == "bits" and like is not None:
        flat = like.reshape(len(like), -1)
        out = torch.where(codes != flat.round().long(), codes.to(flat.dtype), flat)
        return out.to(dtype).reshape((len(codes),) + tuple(enc.shape))
    if enc.kind == "onehot" and enc.axis == 1:
        known = codes >= 0
        out = torch.zeros((len(codes), enc.alphabet, codes.shape[1]), dtype=dtype, device=codes.device)
        out.scatter_(1, codes.clamp(min=0)[:, None, :], known[:, None, :].to(dtype))
        return out.view((len(codes),) + tuple(enc.shape))
    return enc.encode(codes, dtype)


def flip_positions(free: torch.Tensor, rate: float, generator: torch.Generator | None = None, *,
                   per_draw: int | None = None) -> torch.Tensor:
    r"""Where independent flips of probability ``rate`` fall among ``free`` positions, drawn as the gaps.

    The gaps of a Bernoulli process are geometric, :math:`G = \lfloor \log U / \log(1 - q) \rfloor`,
    :math:`P(G \ge k) = (1 - q)^k`, so the flips are :math:`\sum_{i \le j} (G_i + 1) - 1` below ``free``:
    the law of one uniform per position, with about ``rate`` times the draws. M gaps per row cover the
    mean and 6 standard deviations of the flip count; the rare row they do not cover gets more.

    Parameters
    ----------
    free : torch.Tensor of int64, shape (B,)
        Positions per row.
    rate : float
        Flip probability q, in (0, 1).
    generator : torch.Generator, optional
    per_draw : int, optional
        Gaps drawn per row at a time (default: the mean flip count plus 6 standard deviations, plus 8).

    Returns
    -------
    torch.Tensor of int64, shape (B, M)
        Increasing flip positions per row, padded with -1.
    """
    top = int(free.max()) if len(free) else 0
    m = per_draw or max(1, math.ceil(rate * top + 6 * math.sqrt(top * rate * (1 - rate)) + 8))
    scale = 1 / math.log1p(-rate)
    last = torch.full((len(free),), -1, dtype=torch.long, device=free.device)
    parts = []
    while True:
        u = torch.rand((len(free), m), generator=generator, device=free.device, dtype=torch.float64)
        gaps = (torch.log(u) * scale).clamp_(max=float(top + 1)).long()      # u = 0: no further flip
        pos = last[:, None] + (gaps + 1).cumsum(1)
        last = pos[:, -1]
        parts.append(torch.where(pos < free[:, None], pos, -1))
        if not bool((last < free).any()):
            return parts[0] if len(parts) == 1 else torch.cat(parts, 1)


def flip_mask(flips: torch.Tensor, features: int) -> torch.Tensor:
    """Flips as a mask (B, features): ``flips`` is a mask already, or flipped features (B, M) padded with -1."""
    if flips.dtype == torch.bool:
        return flips
    mask = torch.zeros(len(flips), features + 1, dtype=torch.bool, device=flips.device)
    mask.scatter_(1, torch.where(flips >= 0, flips, features), True)               # padding lands in a spare column
    return mask[:, :features]


def substitute(codes: torch.Tensor, mutable: torch.Tensor, keep: float, alphabet: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
    r"""One draw of the substitution noise: each mutable position keeps its symbol with probability ``keep``,
    else takes one of the ``alphabet - 1`` others uniformly.

    One uniform number per position decides both: :math:`u < \alpha` keeps, else the symbol moves
    by :math:`1 + \lfloor (u - \alpha) K / (1 - \alpha) \rfloor` (mod K + 1).

    Parameters
    ----------
    codes : torch.Tensor of int64, shape (B, P)
    mutable : torch.Tensor of bool, shape (B, P)
    keep : float
    alphabet : int
    generator : torch.Generator, optional

    Returns
    -------
    torch.Tensor of int64, shape (B, P)
    """
    return _substitute_with(torch.rand(codes.shape, generator=generator, device=codes.device), codes, mutable, keep,
                            alphabet)


def _substitute_with(u: torch.Tensor, codes: torch.Tensor, mutable: torch.Tensor, keep: float,
                     alphabet: int) -> torch.Tensor:
    others = alphabet - 1
    # in float, in place: floor((u - alpha) K / (1 - alpha)) is <= -1 exactly where u < alpha, so after the
    # clamp to [-1, K - 1] and + 1 it is 0 (keep) or the shift; then (code + shift) mod (K + 1) by a subtraction
    t = (u - keep).mul_(others / (1 - keep)).floor_().clamp_(-1, others - 1).add_(1)
    t.mul_(mutable).add_(codes)
    t.sub_((t >= alphabet).to(t.dtype).mul_(alphabet))
    return t.long()


class SubstitutionSmoothing(DiscreteSmoothing):
    r"""A substitution-smoothed classifier with a certified Hamming radius (Lee et al., NeurIPS 2019).

    Parameters
    ----------
    model : torch.nn.Module or callable
        Base classifier mapping (B, ...) to scores (B, C).
    keep : float
        Probability that a position keeps its symbol, in (1/alphabet, 1).
    space : OneHot or Bits, default OneHot()
        Sequences one-hot along the space's axis (the alphabet is the size of that axis), or bit
        vectors (alphabet 2). Masked positions, and one-hot positions that are unknown (all zeros),
        never change under the noise, and the certificate covers substitutions elsewhere.
    n0 : int, default 100
        Samples to choose the top class.
    n : int, default 100_000
        Samples to bound its probability.
    alpha : float, default 0.001
        Failure probability.
    batch_size : int, default 10_000
        Noisy copies per model call; the copies of all inputs form one stream.
    device : str or torch.device, optional
    seed : int, default 0
    fast : bool, default True
        Read a leading ``nn.Conv1d`` (one-hot) or ``nn.Linear`` (bits) from the noisy symbol codes or the
        flipped bits, where the model has one and the check against the model passes; the same noise
        and the same counts up to float rounding (see :class:`DiscreteSmoothing`). On a CPU the bit
        flips are drawn as the gaps between them (:func:`flip_positions`), on either path.
    early_stop : bool, default False
        Stop sampling an input once its label and radius can no longer change: the same labels and
        radii as the full run, fewer samples (see :class:`DiscreteSmoothing`).

    Examples
    --------
    >>> cert = SubstitutionSmoothing(model, keep=0.8).certify(X)     # doctest: +SKIP
    >>> cert.label, cert.radius                                       # doctest: +SKIP
    """

    method = "substitution-smoothing"

    def __init__(self, model: object, *, keep: float, space: Space | None = None, n0: int = 100, n: int = 100_000,
                 alpha: float = 0.001, batch_size: int = 10_000, device: str | torch.device | None = None,
                 seed: int = 0, fast: bool = True, early_stop: bool = False):
        super().__init__(model, space=space, n0=n0, n=n, alpha=alpha, batch_size=batch_size, device=device,
                         seed=seed, fast=fast, early_stop=early_stop)
        self.keep = keep

    def __repr__(self) -> str:
        return f"SubstitutionSmoothing(keep={self.keep!r}, n0={self.n0}, n={self.n}, alpha={self.alpha})"

    def _validate(self, enc: SymbolEncoding) -> None:
        _check(self.keep, enc.alphabet)

    def _noise(self, codes: torch.Tensor, mutable: torch.Tensor, enc: SymbolEncoding,
               generator: torch.Generator) -> torch.Tensor:
        return substitute(codes, mutable, float(self.keep), enc.alphabet, generator)

    def _draw(self, x: torch.Tensor, codes: torch.Tensor, mutable: torch.Tensor, rows: torch.Tensor, first: int,
              last: int, enc: SymbolEncoding, generator: torch.Generator) -> torch.Tensor:
        if enc.kind != "bits":
            return super()._draw(x, codes, mutable, rows, first, last, enc, generator)
        mut = mutable[first:last + 1]
        if x.device.type != "cpu":   # one uniform per feature: no host read per batch
            mut = mut[0].expand(len(rows), -1) if first == last else mutable[rows]
            u = torch.rand(mut.shape, generator=generator, device=x.device)
            return (u >= float(self.keep)) & mut
        # on a CPU only the flips are drawn, as gaps of a Bernoulli process (the same law, ~1/10 the draws)
        local = rows - first
        free = mut.sum(1)[local]
        pos = flip_positions(free, 1 - float(self.keep), generator)
        if bool(mut.all()):
            return pos
        order = torch.argsort((~mut).to(torch.int8), dim=1, stable=True)     # mutable features first, in order
        cols = order[local[:, None], pos.clamp(min=0)]
        return torch.where(pos >= 0, cols, pos)

    def _radius(self, p_lower: float, positions: int, enc: SymbolEncoding) -> int:
        return substitution_radius(p_lower, keep=self.keep, alphabet=enc.alphabet, max_radius=positions)
