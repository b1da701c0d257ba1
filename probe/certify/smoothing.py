r"""Randomized smoothing: certified L2 robustness of a classifier made noisy on purpose.

The smoothed classifier :math:`g(x) = \arg\max_c P(f(x + \varepsilon) = c)`,
:math:`\varepsilon \sim N(0, \sigma^2 I)`, does not change within radius
:math:`R = \sigma\, \Phi^{-1}(\underline{p_A})` when :math:`\underline{p_A} > 1/2` lower-bounds the
probability of the top class (Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via
Randomized Smoothing", ICML 2019). :math:`\underline{p_A}` is the one-sided Clopper–Pearson
bound :math:`B^{-1}(\alpha; n_A, n - n_A + 1)` from n samples, after the top class was chosen on
n0 separate samples, so the certificate holds with probability at least :math:`1 - \alpha`.

Anisotropic noise :math:`N(0, \mathrm{diag}(\sigma)^2)` certifies the ellipsoid
:math:`\lVert \delta / \sigma \rVert_2 < \Phi^{-1}(\underline{p_A})` (Eiras et al., "ANCER:
Anisotropic Certification via Sample-wise Volume Maximization", TMLR 2022); the L2 ball
inside it has radius :math:`\min_i \sigma_i\, \Phi^{-1}(\underline{p_A})`.

Regression outputs: the p-th percentile of :math:`f(x + \varepsilon)` moves, for
:math:`\lVert\delta\rVert_2 \le \epsilon`, only between the percentiles
:math:`\Phi(\Phi^{-1}(p) \mp \epsilon/\sigma)` at x (Chiang et al., "Detection as Regression:
Certified Object Detection by Median Smoothing", NeurIPS 2020); those percentiles are bounded
by order statistics of the samples with binomial confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import beta, binom, binomtest
from scipy.stats import norm as normal

from ..devices import as_input, model_hygiene, resolve_device
from ..errors import ProbeError
from ..models import forward
from ..results import Certificate

__all__ = ["Smoothing", "SmoothingCertificate", "smoothing_radius", "clopper_pearson_lower"]


def clopper_pearson_lower(n_a: object, n: int, alpha: float) -> np.ndarray:
    """One-sided (1 - alpha) Clopper–Pearson lower confidence bound on a binomial proportion."""
    n_a = np.asarray(n_a, dtype=float)
    return np.where(n_a > 0, beta.ppf(alpha, np.maximum(n_a, 1e-12), n - n_a + 1), 0.0)


def smoothing_radius(n_a: int, n: int, *, alpha: float, sigma: float) -> float:
    r"""Certified L2 radius of Cohen et al.: :math:`\sigma\,\Phi^{-1}(B^{-1}(\alpha; n_A, n - n_A + 1))`.

    Parameters
    ----------
    n_a : int
        Noisy samples (of ``n``) on which the base classifier returned the top class.
    n : int
        Samples drawn.
    alpha : float
        Failure probability of the certificate.
    sigma : float
        Noise level.

    Returns
    -------
    float
        The radius; 0.0 where the lower bound on :math:`p_A` is not above 1/2 (Cohen et al. abstain).

    Examples
    --------
    >>> round(smoothing_radius(99000, 100000, alpha=0.001, sigma=0.25), 4)
    0.5725
    """
    n_a, n = int(n_a), int(n)
    if n <= 0 or not 0 <= n_a <= n:
        raise ProbeError(f"need 0 <= n_a <= n and n > 0, got n_a={n_a}, n={n}")
    if not 0 < alpha < 1 or not sigma > 0:
        raise ProbeError(f"need 0 < alpha < 1 and sigma > 0, got alpha={alpha}, sigma={sigma}")
    p = float(clopper_pearson_lower(n_a, n, alpha))
    return float(sigma * normal.ppf(p)) if p > 0.5 else 0.0


@dataclass(frozen=True)
class SmoothingCertificate(Certificate):
    """Certificate of a smoothed classifier (``lower``/``upper`` are None).

    Attributes
    ----------
    label : torch.Tensor of int64, shape (N,)
        Certified class, -1 where the procedure abstains.
    radius : torch.Tensor, shape (N,)
        Certified L2 radius (0 on abstention); for anisotropic noise the L2 ball inside the ellipsoid.
    gauge_radius : torch.Tensor, shape (N,)
        :math:`\\Phi^{-1}(\\underline{p_A})`: the prediction is constant on
        :math:`\\lVert \\delta / \\sigma \\rVert_2 < ` ``gauge_radius``.
    p_lower : torch.Tensor, shape (N,)
        Clopper–Pearson lower bound on the top-class probability.
    counts : torch.Tensor of int64, shape (N, C)
        Class counts over the n certification samples.
    sigma : torch.Tensor
        The noise level (scalar, or shaped like one input).
    """

    label: torch.Tensor | None = None
    gauge_radius: torch.Tensor | None = None
    p_lower: torch.Tensor | None = None
    counts: torch.Tensor | None = None
    sigma: torch.Tensor | None = None

    def certifies(self, delta: torch.Tensor) -> torch.Tensor:
        """Whether each perturbation ``delta`` (N, ...) lies inside the certified (ellipsoidal) region."""
        scaled = (delta / self.sigma.to(delta)).flatten(1).norm(dim=1)
        return (self.label >= 0) & (scaled < self.gauge_radius.to(delta))


def top_class_or_abstain(counts: torch.Tensor, alpha: float) -> torch.Tensor:
    """Cohen et al.'s PREDICT from class counts (N, C): the top class where a two-sided binomial test at level
    ``alpha`` separates it from the runner-up, else -1 (abstain)."""
    top2 = counts.topk(2, dim=1)
    n_a, n_b = top2.values[:, 0].tolist(), top2.values[:, 1].tolist()
    keep = [binomtest(a, a + b, 0.5).pvalue <= alpha if a + b > 0 else False for a, b in zip(n_a, n_b)]
    label = top2.indices[:, 0].clone()
    label[~torch.tensor(keep, device=counts.device)] = -1
    return label


class Smoothing:
    r"""A Gaussian-smoothed model: prediction, certification (Cohen et al. 2019) and regression bounds.

    Parameters
    ----------
    model : torch.nn.Module or callable
        Base model mapping (B, ...) to scores (B, C) (or to real outputs for :meth:`bound_outputs`).
    sigma : float or torch.Tensor shaped like one input
        Noise standard deviation; a tensor gives anisotropic noise (ANCER).
    n0 : int, default 100
        Samples to choose the top class.
    n : int, default 100_000
        Samples to estimate its probability.
    alpha : float, default 0.001
        Failure probability.
    batch_size : int, default 10_000
        Noisy copies evaluated per model call (across inputs: the samples of all inputs form
        one stream cut into batches, so small inputs fill whole batches).
    device : str or torch.device, optional
    seed : int, default 0
    exploit_linear : bool, default True
        When the model is an ``nn.Sequential`` that starts with (Flatten and) a Linear layer
        with fewer outputs than inputs, sample the noise after that layer: :math:`W(x +
        \varepsilon) = Wx + R^\top z` with :math:`(W\,\mathrm{diag}\,\sigma)^\top = QR` and
        :math:`z \sim N(0, I)` has exactly the same distribution, at a fraction of the cost.
    """

    def __init__(self, model: object, sigma: float | torch.Tensor, *, n0: int = 100, n: int = 100_000,
                 alpha: float = 0.001, batch_size: int = 10_000, device: str | torch.device | None = None,
                 seed: int = 0, exploit_linear: bool = True):
        self.model = model
        self.sigma = sigma
        self.n0 = n0
        self.n = n
        self.alpha = alpha
        self.batch_size = batch_size
        self.device = device
        self.seed = seed
        self.exploit_linear = exploit_linear

    def __repr__(self) -> str:
        return (f"Smoothing(sigma={self.sigma!r}, n0={self.n0}, n={self.n}, alpha={self.alpha}, "
                f"batch_size={self.batch_size})")

    # ----------------------------------------------------------------------------------------------------------
    def _check(self, x: object) -> tuple[torch.device, torch.Tensor, torch.Tensor]:
        if int(self.n0) < 1 or int(self.n) < 1 or int(self.batch_size) < 1:
            raise ProbeError(f"n0, n and batch_size must be positive, got {self.n0}, {self.n}, {self.batch_size}")
        if not 0 < float(self.alpha) < 1:
            raise ProbeError(f"alpha must lie in (0, 1), got {self.alpha}")
        dev = resolve_device(self.device, self.model, x)
        x = as_input(x, device=dev)
        sigma = torch.as_tensor(self.sigma, dtype=x.dtype, device=dev)
        if sigma.dim() > 0 and tuple(sigma.shape) != tuple(x.shape[1:]):
            raise ProbeError(f"sigma must be a number or shaped like one input {tuple(x.shape[1:])}, "
                             f"got {tuple(sigma.shape)}")
        if not torch.isfinite(sigma).all() or (sigma <= 0).any():
            raise ProbeError(f"sigma must be positive and finite, got {self.sigma!r}")
        return dev, x, sigma

    def _linear_head(self, m: object, x: torch.Tensor, sigma: torch.Tensor) -> tuple | None:
        """(offset Wx + b (N, H), noise factor R (H, H), rest of the model) when the noise can enter after layer 1."""
        if not (self.exploit_linear and isinstance(m, torch.nn.Sequential)):
            return None
        mods = list(m)
        k = 0
        while k < len(mods) and isinstance(mods[k], torch.nn.Flatten) and mods[k].start_dim == 1:
            k += 1
        if k >= len(mods) or not isinstance(mods[k], torch.nn.Linear):
            return None
        lin = mods[k]
        d = x[0].numel()
        if lin.in_features != d or lin.out_features >= d or (k == 0 and x.dim() != 2):
            return None
        W = lin.weight.detach().to(torch.float64)
        scaled = W * sigma.detach().to(torch.float64).reshape(-1) if sigma.dim() else W * float(sigma)
        R = torch.linalg.qr(scaled.T, mode="reduced").R                    # scaled = R^T Q^T
        offset = torch.nn.functional.linear(x.flatten(1), lin.weight, lin.bias)
        return offset, R.to(x.dtype), torch.nn.Sequential(*mods[k + 1:])

    def _stream(self, m: object, x: torch.Tensor, sigma: torch.Tensor, n: int, generator: torch.Generator,
                reduce: str) -> torch.Tensor:
        """Run the model on n noisy copies of every input, batch after batch of the flattened stream.

        ``reduce="count"``: class counts (N, C); ``"values"``: outputs (N, n, K).
        """
        total = len(x) * n
        step = int(self.batch_size)
        out = None
        head = self._linear_head(m, x, sigma) if reduce == "count" else None
        src = x if head is None else head[0]
        noise = torch.empty((min(step, total),) + tuple(src.shape[1:]), dtype=x.dtype, device=x.device)
        # read on the host once, not per batch: the loop below never waits for the device
        scale = None if sigma.dim() else float(sigma)
        for start in range(0, total, step):
            stop = min(start + step, total)
            rows = torch.arange(start, stop, device=x.device) // n
            first, last = start // n, (stop - 1) // n
            # one input in the whole batch: broadcast it instead of gathering copies
            centre = src[first] if first == last else src[rows]
            eps = noise[: stop - start]
            if head is not None:
                y = head[2](torch.addmm(centre.expand(stop - start, -1), eps.normal_(generator=generator), head[1]))
            else:
                if sigma.dim():
                    batch = eps.normal_(generator=generator).mul_(sigma).add_(centre)
                else:
                    batch = eps.normal_(0.0, scale, generator=generator).add_(centre)
                y = forward(m, batch, check=False)
            if y.dim() == 1:
                y = y[:, None]
            if reduce == "count":
                if out is None:
                    out = torch.zeros(len(x), max(y.shape[1], 2), dtype=torch.long, device=x.device)
                k = out.shape[1]
                pred = y.argmax(1) if y.shape[1] > 1 else (y[:, 0] > 0).long()
                out.view(-1).index_add_(0, rows * k + pred, torch.ones_like(pred))
            else:
                if out is None:
                    out = torch.empty(total, y.shape[1], dtype=y.dtype, device=x.device)
                out[start:stop] = y
        return out if reduce == "count" else out.view(len(x), n, -1)

    def _generator(self, dev: torch.device) -> torch.Generator:
        return torch.Generator(device=dev).manual_seed(int(self.seed))

    # ----------------------------------------------------------------------------------------------------------
    def predict(self, x: object) -> torch.Tensor:
        """Cohen et al.'s PREDICT: the top class where a two-sided binomial test at level alpha separates it
        from the runner-up on n samples, else -1 (abstain).

        Returns
        -------
        torch.Tensor of int64, shape (N,)
        """
        dev, x, sigma = self._check(x)
        with model_hygiene(self.model, dev) as m, torch.inference_mode():
            counts = self._stream(m, x, sigma, int(self.n), self._generator(dev), "count")
        return top_class_or_abstain(counts, self.alpha)

    def certify(self, x: object) -> SmoothingCertificate:
        """Cohen et al.'s CERTIFY: the top class from n0 samples, its probability bounded from n samples.

        Returns
        -------
        SmoothingCertificate
            ``label`` (-1 on abstention), ``radius`` (L2), ``gauge_radius``, ``p_lower``,
            ``confidence = 1 - alpha``.
        """
        dev, x, sigma = self._check(x)
        g = self._generator(dev)
        with model_hygiene(self.model, dev) as m, torch.inference_mode():
            guess = self._stream(m, x, sigma, int(self.n0), g, "count").argmax(1)
            counts = self._stream(m, x, sigma, int(self.n), g, "count")
        n_a = counts.gather(1, guess[:, None]).squeeze(1)
        p = torch.as_tensor(clopper_pearson_lower(n_a.cpu().numpy(), int(self.n), float(self.alpha)),
                            dtype=x.dtype, device=dev)
        ok = p > 0.5
        gauge = torch.where(ok, torch.as_tensor(normal.ppf(p.clamp(max=1 - 1e-16).cpu().numpy()), dtype=x.dtype,
                                                device=dev), torch.zeros_like(p))
        radius = gauge * sigma.min()
        label = torch.where(ok, guess, torch.full_like(guess, -1))
        return SmoothingCertificate(lower=None, upper=None, radius=radius, method="smoothing",
                                    confidence=1 - float(self.alpha), label=label, gauge_radius=gauge, p_lower=p,
                                    counts=counts, sigma=sigma)

    def bound_outputs(self, x: object, eps: float, *, percentile: float = 0.5) -> Certificate:
        r"""Bounds on the percentile-smoothed regressor over an L2 ball (Chiang et al. 2020).

        :math:`h_p(x) = ` the p-th percentile of :math:`f(x + \varepsilon)`. For every
        :math:`\lVert\delta\rVert_2 \le \epsilon`, :math:`h_{\underline p}(x) \le h_p(x + \delta)
        \le h_{\bar p}(x)` with :math:`\underline p, \bar p = \Phi(\Phi^{-1}(p) \mp \epsilon/\sigma)`
        (isotropic noise). Each is bounded by an order statistic of the n samples whose
        binomial coverage is at least :math:`1 - \alpha / (2K)`, so all 2K bounds hold together
        with probability at least :math:`1 - \alpha`.

        Parameters
        ----------
        x : torch.Tensor, shape (N, ...)
        eps : float
            L2 radius.
        percentile : float, default 0.5
            p (0.5: median smoothing).

        Returns
        -------
        Certificate
            ``lower``/``upper`` of shape (N, K) (-inf/inf where n is too small for the level),
            ``confidence = 1 - alpha``, ``method = "percentile-smoothing"``.
        """
        dev, x, sigma = self._check(x)
        if sigma.dim() > 0:
            raise ProbeError("percentile smoothing bounds need a scalar sigma")
        if not 0 < percentile < 1 or not eps >= 0:
            raise ProbeError(f"need 0 < percentile < 1 and eps >= 0, got {percentile}, {eps}")
        n = int(self.n)
        with model_hygiene(self.model, dev) as m, torch.inference_mode():
            values = self._stream(m, x, sigma, n, self._generator(dev), "values")
        k_out = values.shape[2]
        level = 1 - float(self.alpha) / (2 * k_out)
        z = normal.ppf(percentile)
        p_hi = normal.cdf(z + eps / float(sigma))
        p_lo = normal.cdf(z - eps / float(sigma))
        ks = np.arange(1, n + 1)
        # upper: X_(k) >= q(p_hi) when at most k-1 samples fall below it
        up = ks[binom.cdf(ks - 1, n, p_hi) >= level]
        # lower: X_(k) <= q(p_lo) when at least k samples fall at or below it
        lo = ks[binom.sf(ks - 1, n, p_lo) >= level]
        ordered = values.sort(dim=1).values
        inf = torch.full((len(x), k_out), float("inf"), dtype=values.dtype, device=dev)
        upper = ordered[:, int(up[0]) - 1] if len(up) else inf
        lower = ordered[:, int(lo[-1]) - 1] if len(lo) else -inf
        return Certificate(lower=lower, upper=upper, radius=None, method="percentile-smoothing",
                           confidence=1 - float(self.alpha))
