r"""A neural R_t estimator on log counts, trained on simulated epidemics, with a certified Lipschitz constant.

The input is the last ``L`` days of reported counts as features :math:`f_i = \log(1 + y_i)`;
the output is :math:`\log R` averaged over the last ``window`` days (the quantity Cori's window
estimator targets). A multiplicative reporting error is then a small additive change of the
features: for :math:`y' = y(1+e)` with :math:`|e| \le \rho`,

.. math::

    \log(1 + y(1-\rho)) - \log(1+y) \;\le\; f'_i - f_i \;\le\; \log(1 + y(1+\rho)) - \log(1+y),

an exact per-day box (see :func:`feature_box`), contained in the L-inf ball of radius
:math:`-\log(1-\rho)` (not :math:`\log(1+\rho)`: the downward side is the longer one).

The network sees the features centred on their mean (a fixed linear map folded into the first
layer), so it reads growth, not size, and generalises across epidemic sizes. It is a plain
``torch.nn.Sequential`` of ``Linear`` and ``ReLU`` layers, so :mod:`probe.certify` bounds it with
CROWN/IBP and with a Lipschitz constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from probe.devices import model_hygiene, resolve_device
from probe.errors import ProbeError

from .io import check_incidence
from .simulate import simulate

__all__ = ["NeuralRtEstimator", "train_neural_estimator", "feature_box", "features", "training_windows"]


def features(counts: np.ndarray, length: int) -> np.ndarray:
    """Sliding windows of ``log(1 + counts)``: shape (S, T - length + 1, length) for counts (S, T)."""
    counts = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    if counts.shape[1] < length:
        raise ProbeError(f"the series has {counts.shape[1]} days; the neural estimator needs at least {length}")
    win = np.lib.stride_tricks.sliding_window_view(counts, length, axis=1)
    return np.log1p(win)


def feature_box(counts_lo: np.ndarray, counts_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact feature-space box of a per-day count box: ``log1p`` is increasing, so it maps
    ``[lo, hi]`` onto ``[log1p(lo), log1p(hi)]`` day by day."""
    return np.log1p(counts_lo), np.log1p(counts_hi)


def training_windows(sim: object, length: int, window: int, *, min_cases: float = 20.0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Feature windows and targets (log of the true R averaged over the last ``window`` days).

    Windows whose last ``window`` days report fewer than ``min_cases`` in all, or where the
    simulator's population cap bit, are dropped (R is not identifiable there).
    """
    x = features(sim.observed, length)  # (S, n, L): window k ends on day k + length - 1 (0-based)
    target = sim.window_mean_r(window)[:, length - 1:]
    recent = np.lib.stride_tricks.sliding_window_view(sim.observed, window, axis=1)[:, length - window:].sum(-1)
    capped = np.lib.stride_tricks.sliding_window_view(sim.settings["capped"], length, axis=1).any(-1)
    keep = (recent >= min_cases) & ~capped & np.isfinite(target)
    return x[keep], np.log(target[keep])


class _Centre(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(dim=-1, keepdim=True)


@dataclass(frozen=True)
class NeuralRtEstimator:
    """A trained neural R_t estimator.

    Attributes
    ----------
    model : torch.nn.Sequential
        ``Linear``/``ReLU`` network mapping features (N, length) to log R (N, 1).
    length : int
        Days of counts the network reads.
    window : int
        Days over which its target R is averaged.
    history : dict
        Training diagnostics (losses, sample counts).
    """

    model: torch.nn.Sequential
    length: int
    window: int
    history: dict = field(default_factory=dict)

    def predict_features(self, x: np.ndarray | torch.Tensor, *, device: object = None) -> np.ndarray:
        """log R for feature windows (N, length)."""
        dev = resolve_device(device, self.model)
        param = next(self.model.parameters())
        with model_hygiene(self.model, dev) as m, torch.no_grad():
            out = m(torch.as_tensor(np.asarray(x), dtype=param.dtype, device=dev))
        return out[:, 0].double().cpu().numpy()

    def predict(self, incidence: object, *, allow_fractional: bool = False, device: object = None) -> pd.DataFrame:
        """R estimates for every day with ``length`` days of history.

        Returns
        -------
        pandas.DataFrame
            ``t_start, t_end, mean`` (1-based inclusive; ``t_start = t_end - window + 1`` as for a Cori
            window of the same width), and ``series`` first when several series were given.
        """
        inc = check_incidence(incidence, min_days=self.length, allow_fractional=allow_fractional)
        x = features(inc.counts, self.length)
        s, n, _ = x.shape
        r = np.exp(self.predict_features(x.reshape(s * n, self.length), device=device))
        t_end = np.arange(self.length, self.length + n)
        df = pd.DataFrame({"t_start": np.tile(t_end - self.window + 1, s), "t_end": np.tile(t_end, s), "mean": r})
        if not inc.single:
            df.insert(0, "series", np.repeat(np.asarray(inc.names, dtype=object), n))
        return df

    def lipschitz_upper_bound(self, norm: str = "linf") -> float:
        """Certified upper bound on the Lipschitz constant of log R in the features (``probe.certify``)."""
        from probe.certify import lipschitz_bound

        return float(lipschitz_bound(self.model, norm=norm).value)


def train_neural_estimator(*, length: int = 21, window: int = 7, hidden: int = 64, n_epidemics: int = 400,
                           n_days: int = 120, epochs: int = 40, batch_size: int = 512, lr: float = 3e-3,
                           weight_decay: float = 1e-4, lipschitz_penalty: float = 0.01,
                           serial_interval: object = (4.0, 2.0), seed: int = 0, device: object = None,
                           progress: bool = False) -> NeuralRtEstimator:
    r"""Train the estimator on simulated epidemics with random reporting.

    Epidemics come from :func:`domains.epi.simulate.simulate` with random R paths, seed sizes
    (5-500), reporting rates (0.1-1), weekday effects, a 3-day mean reporting delay and
    negative-binomial noise. The loss is the mean squared error in log R (Adam).

    Parameters
    ----------
    length : int, default 21
        Days of counts per input.
    window : int, default 7
        The target is log of the true R averaged over the last ``window`` days.
    hidden : int, default 64
        Width of the two hidden ReLU layers.
    n_epidemics, n_days : int, default 400, 120
        Size of the simulated training set.
    epochs, batch_size, lr, weight_decay : training settings.
    lipschitz_penalty : float, default 0.01
        Weight of :math:`\log \prod_l \lVert W_l \rVert_{\infty}` (the L-inf Lipschitz upper bound of the
        network, centring included) added to the loss: a smoother network gets narrower certified bands.
    serial_interval : (mean, std) or array-like, default (4.0, 2.0)
        Serial interval of the simulated epidemics: train with the one of the data it will read.
    seed : int, default 0
    device : str or torch.device, optional
        Default the CPU (pass "cuda" to train on a GPU).
    progress : bool, default False
        Progress bar over epochs (only on a terminal).

    Returns
    -------
    NeuralRtEstimator
        With ``history["train_rmse_log"]`` and ``history["samples"]``.
    """
    from tqdm.auto import tqdm

    if length < window:
        raise ProbeError(f"length ({length}) must be >= window ({window})")
    dev = resolve_device(device)
    sim = simulate(n_days, n_series=n_epidemics, seed=seed, seed_cases=(5.0, 500.0), reporting_rate=(0.1, 1.0),
                   serial_interval=serial_interval)
    x, y = training_windows(sim, length, window)
    if len(x) < 100:
        raise ProbeError(f"only {len(x)} usable training windows; simulate more epidemics")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(_Centre(), torch.nn.Linear(length, hidden), torch.nn.ReLU(),
                              torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)).to(dev)
    xt = torch.as_tensor(x, dtype=torch.float32, device=dev)
    yt = torch.as_tensor(y, dtype=torch.float32, device=dev)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    losses = []
    for _ in tqdm(range(int(epochs)), desc="train R_t", disable=not progress, leave=False):
        perm = torch.randperm(len(xt), generator=g).to(dev)
        total = 0.0
        for i in range(0, len(xt), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad()
            mse = torch.nn.functional.mse_loss(net(xt[idx])[:, 0], yt[idx])
            loss = mse + lipschitz_penalty * _log_linf_lipschitz(net) if lipschitz_penalty > 0 else mse
            loss.backward()
            opt.step()
            total += float(mse.detach()) * len(idx)
        sched.step()
        losses.append(math.sqrt(total / len(xt)))
    model = _fold_centring(net).cpu().eval()
    return NeuralRtEstimator(model=model, length=length, window=window,
                             history={"train_rmse_log": losses, "samples": int(len(x)), "epidemics": n_epidemics})


def _log_linf_lipschitz(net: torch.nn.Sequential) -> torch.Tensor:
    """log of the product of the layers' L-inf operator norms (max absolute row sums), centring folded in."""
    linear = [m for m in net if isinstance(m, torch.nn.Linear)]
    w1 = linear[0].weight
    first = (w1 - w1.mean(dim=1, keepdim=True)).abs().sum(1).max()
    return torch.log(first) + sum(torch.log(m.weight.abs().sum(1).max()) for m in linear[1:])


def _fold_centring(net: torch.nn.Sequential) -> torch.nn.Sequential:
    """Replace ``x - mean(x)`` followed by ``Linear(W, b)`` with the single ``Linear(W C, b)``."""
    first: torch.nn.Linear = net[1]
    n = first.in_features
    centre = torch.eye(n) - torch.full((n, n), 1.0 / n)
    folded = torch.nn.Linear(n, first.out_features)
    with torch.no_grad():
        folded.weight.copy_(first.weight.detach().cpu() @ centre)
        folded.bias.copy_(first.bias.detach().cpu())
    rest = [m.cpu() for m in list(net)[2:]]
    return torch.nn.Sequential(folded, *rest)
