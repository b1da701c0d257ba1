r"""Training for larger certified Hamming radii: substitution-noise augmentation and budgeted bound training.

``substitution_noise`` is to substitution smoothing what Gaussian augmentation is to Cohen et al.'s
smoothing: the base classifier learns on the noise it will be smoothed with, so the top class keeps
a high probability under it (Lee et al., NeurIPS 2019, train their base classifiers this way).
With ``ablate=k`` it trains on randomly ablated inputs instead (Levine & Feizi, AAAI 2020).

``hamming_certified`` is interval-bound-propagation training (Gowal et al., "On the Effectiveness
of Interval Bound Propagation for Training Verifiably Robust Models", 2018) with the budgeted
bound: the loss mixes the clean cross-entropy with the cross-entropy of the worst-case logits
:math:`\hat z_j = -\underline{(z_y - z_j)}` over the set of inputs within r substitutions,

.. math:: \mathcal{L} = \kappa\, \mathrm{CE}(z(x), y) + (1 - \kappa)\, \mathrm{CE}(\hat z, y),

after ``warmup`` epochs of clean training, with r ramped up from 1 to ``radius`` and :math:`\kappa` from
1 down to ``kappa`` over half of the remaining epochs, as Gowal et al. ramp :math:`\epsilon` and
:math:`\kappa` (starting with the full budget collapses a small network to a constant).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F

from ..errors import ProbeError
from ..spaces import OneHot, Space
from .loop import Callback, TrainResult, check_positive, fit

__all__ = ["substitution_noise", "hamming_certified"]


def _noisy(x: torch.Tensor, space: Space, keep: float | None, ablate: int | None) -> torch.Tensor:
    from ..certify.hamming import symbol_encoding
    from ..certify.substitution import encode_batch, substitute

    enc = symbol_encoding(space, x)
    codes = enc.codes(x)
    mutable = enc.mutable(space, x)
    if ablate is None:
        noisy = substitute(codes, mutable & (codes >= 0), float(keep), enc.alphabet)
    else:
        u = torch.rand(codes.shape, device=x.device).masked_fill_(~mutable, 2.0)
        kept = torch.zeros_like(mutable).scatter_(1, u.topk(int(ablate), dim=1, largest=False).indices, True)
        noisy = torch.where(kept | ~mutable, codes, torch.full_like(codes, -1))
    return encode_batch(enc, noisy, x.dtype, x)


def substitution_noise(model: torch.nn.Module, loader: Iterable, *, keep: float | None = None,
                       ablate: int | None = None, space: Space | None = None, epochs: int = 10, lr: float = 1e-3,
                       optimizer: object = None, device: str | torch.device | None = None,
                       callbacks: Sequence[Callback] | Callback = (), progress: bool = False,
                       seed: int | None = None) -> TrainResult:
    r"""Train on inputs drawn from the smoothing noise: :math:`\min_\theta \mathbb{E}\,\mathrm{CE}(f(\phi(x)), y)`.

    Parameters
    ----------
    model : torch.nn.Module
        Trained in place.
    loader : iterable of (x, y)
        One-hot sequences (N, K, L) (or bit vectors with ``space=probe.Bits()``) and class indices.
    keep : float, optional
        Substitution noise: each position keeps its symbol with this probability, else takes another
        uniformly (the noise of :class:`probe.certify.SubstitutionSmoothing`).
    ablate : int, optional
        Instead, keep this many positions and blank the rest (:class:`probe.certify.RandomizedAblation`).
    space : OneHot or Bits, default OneHot()
    epochs, lr, optimizer, device, callbacks, progress, seed
        As in :func:`probe.train.standard`.

    Returns
    -------
    TrainResult
        ``loss`` is the cross-entropy on the noisy inputs.
    """
    if (keep is None) == (ablate is None):
        raise ProbeError("give exactly one of keep= (substitution noise) and ablate= (randomized ablation)")
    if keep is not None and not 0 < float(keep) < 1:
        raise ProbeError(f"keep must lie in (0, 1), got {keep!r}")
    if ablate is not None:
        check_positive(ablate, "ablate", integer=True)
    space = OneHot() if space is None else space

    def batch_loss(m: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            xn = _noisy(x, space, keep, ablate)
            m.eval()
            clean = m(x)
        m.train()
        return F.cross_entropy(m(xn), y), clean

    settings = {"keep": keep, "ablate": ablate}
    return fit(model, loader, batch_loss, method="substitution_noise", epochs=epochs, optimizer=optimizer, lr=lr,
               device=device, callbacks=callbacks, progress=progress, seed=seed, settings=settings)


def hamming_certified(model: torch.nn.Module, loader: Iterable, *, radius: int, method: str = "positional",
                      kappa: float = 0.5, warmup: int = 1, space: Space | None = None, epochs: int = 10,
                      lr: float = 1e-3,
                      optimizer: object = None, device: str | torch.device | None = None,
                      callbacks: Sequence[Callback] | Callback = (), progress: bool = False,
                      seed: int | None = None) -> TrainResult:
    r"""IBP-style certified training over a budget of ``radius`` substitutions (see the module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        A classifier whose graph bound propagation reads; captured once (in eval mode) and trained in place.
    loader : iterable of (x, y)
    radius : int
        Training budget r (substituted positions), reached after half of the epochs.
    method : {"positional", "crown", "ibp"}, default "positional"
        The bound: the positional interval bound (:class:`probe.certify.PositionalIBP`) is cheap and
        differentiable; CROWN is tighter on some models and slower.
    kappa : float, default 0.5
        Final weight of the clean cross-entropy.
    warmup : int, default 1
        Epochs of clean training first (no bound computed).
    space : OneHot or Bits, default OneHot()
    epochs, lr, optimizer, device, callbacks, progress, seed
        As in :func:`probe.train.standard`.

    Returns
    -------
    TrainResult
        ``loss`` is the mixed objective; extras per epoch hold the budget ``radius`` and ``kappa`` used.
    """
    from ..certify.base import get_bound_method
    from ..certify.graph import build_graph
    from ..certify.hamming import _margin_spec, hamming_set

    radius = check_positive(radius, "radius", integer=True)
    if not 0 <= float(kappa) <= 1:
        raise ProbeError(f"kappa must lie in [0, 1], got {kappa!r}")
    epochs = check_positive(epochs, "epochs", integer=True)
    warmup = int(check_positive(warmup, "warmup", integer=True, allow_zero=True))
    space = OneHot() if space is None else space
    bm = get_bound_method(method)
    state = {"graph": None, "epoch": 0}
    ramp = max(1, (epochs - warmup) // 2)

    def schedule() -> tuple[int, float]:
        if state["epoch"] < warmup:
            return 0, 1.0
        t = min(1.0, (state["epoch"] - warmup + 1) / ramp)
        return max(1, round(t * radius)), 1.0 - t * (1.0 - float(kappa))

    def batch_loss(m: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if state["graph"] is None:
            m.eval()
            state["graph"] = build_graph(m, x)
        m.train()
        r, k = schedule()
        logits = m(x)
        if r == 0:
            return F.cross_entropy(logits, y), logits.detach()
        spec = _margin_spec(y, logits.shape[1]).to(x.dtype)
        lo, _ = bm.bounds(state["graph"], hamming_set(x, r, space=space), spec)   # (N, C-1) lower margins
        worst = torch.cat([torch.zeros_like(lo[:, :1]), -lo], 1)                   # class y first
        robust = F.cross_entropy(worst, torch.zeros_like(y))
        return k * F.cross_entropy(logits, y) + (1 - k) * robust, logits.detach()

    def extras(m: torch.nn.Module) -> dict:
        r, k = schedule()
        state["epoch"] += 1
        return {"radius": r, "kappa": k}

    settings = {"radius": radius, "method": bm.name, "kappa": float(kappa)}
    return fit(model, loader, batch_loss, method="hamming_certified", epochs=epochs, optimizer=optimizer, lr=lr,
               device=device, callbacks=callbacks, progress=progress, seed=seed, settings=settings,
               epoch_extras=extras)
