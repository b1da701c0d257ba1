"""Random corruptions of inputs, and the accuracy a classifier keeps under them.

Where an attack asks how the *worst* change of a given size moves the model, a corruption asks
how a *typical* one does: Gaussian or uniform noise of a given scale, or salt-and-pepper noise
hitting a given share of the features (Hendrycks & Dietterich, "Benchmarking Neural Network
Robustness to Common Corruptions and Perturbations", ICLR 2019). A model can be robust to one and
not the other; :func:`probe.robustness_curve` with ``corruption=`` draws both kinds of curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .criteria import as_logits
from .devices import batches
from .errors import ProbeError
from .models import forward
from .spaces import Box, OneHot, Space, as_space

__all__ = ["CORRUPTIONS", "Corruption", "as_corruption", "corrupt", "corruption_accuracy"]

CORRUPTIONS = ("gaussian", "uniform", "salt_pepper")


@dataclass(frozen=True)
class Corruption:
    """A kind of random corruption and how many draws to average.

    Attributes
    ----------
    kind : {"gaussian", "uniform", "salt_pepper"}
        ``"gaussian"``: :math:`x + \\sigma z`, :math:`z \\sim N(0, I)` (the level is :math:`\\sigma`);
        ``"uniform"``: :math:`x + u`, :math:`u \\sim U[-a, a]^D` (the level is :math:`a`);
        ``"salt_pepper"``: each feature (a ``Box`` with finite bounds: set to its lower or upper
        bound with equal odds) or each position (a ``OneHot`` space: set to a letter drawn
        uniformly, possibly its own) is hit with probability equal to the level.
    samples : int, default 8
        Draws per input and level; the accuracy is their mean.
    seed : int, default 0
        Seed of the draws (a private generator; the global one is not touched).
    """

    kind: str = "gaussian"
    samples: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in CORRUPTIONS:
            raise ProbeError(f"unknown corruption {self.kind!r}; use one of {CORRUPTIONS}")
        if int(self.samples) != self.samples or self.samples < 1:
            raise ProbeError(f"corruption samples must be a positive integer, got {self.samples!r}")


def as_corruption(corruption: str | Corruption) -> Corruption:
    """A :class:`Corruption` from itself or its kind's name."""
    if isinstance(corruption, Corruption):
        return corruption
    if isinstance(corruption, str):
        return Corruption(corruption)
    raise ProbeError(f"corruption must be one of {CORRUPTIONS} or a probe.corruptions.Corruption, "
                     f"got {type(corruption).__name__}")


def _check_level(level: float, kind: str) -> float:
    level = float(level)
    if not level >= 0 or (kind == "salt_pepper" and level > 1):
        raise ProbeError(f"{kind} corruption level must be >= 0" + (" and <= 1 (a probability)"
                                                                    if kind == "salt_pepper" else "")
                         + f", got {level!r}")
    return level


def corrupt(x: torch.Tensor, level: float, kind: str = "gaussian", *, space: Space | None = None,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """One random corruption of every input, projected into ``space``.

    Parameters
    ----------
    x : torch.Tensor, shape (N, ...)
        Never modified.
    level : float
        Noise scale (gaussian, uniform) or the probability a feature or position is hit (salt_pepper).
    kind : {"gaussian", "uniform", "salt_pepper"}, default "gaussian"
    space : Space, optional
        ``Box`` (noisy points are clipped to it; salt and pepper are its bounds) or ``OneHot``
        (only ``"salt_pepper"``).
    generator : torch.Generator, optional
        CPU generator for the draws (noise is drawn on the CPU, then moved to ``x``'s device, so a
        seed gives the same corruption on every device).

    Returns
    -------
    torch.Tensor, shaped like ``x``
    """
    kind = as_corruption(kind).kind
    level = _check_level(level, kind)
    space = as_space(space)
    if isinstance(space, OneHot):
        if kind != "salt_pepper":
            raise ProbeError(f"{kind} noise does not keep one-hot inputs one-hot; use corruption='salt_pepper'")
        axis = space.axis
        k = x.shape[axis]
        positions = x.shape[:axis] + x.shape[axis + 1:]
        hit = (torch.rand(positions, generator=generator) < level).to(x.device)
        letters = torch.randint(k, positions, generator=generator).to(x.device)
        new = torch.nn.functional.one_hot(letters, k).movedim(-1, axis).to(x)
        if space.mask is not None:
            hit = hit & ~space._position_mask(x).squeeze(axis)
        return torch.where(hit.unsqueeze(axis), new, x)
    if kind == "gaussian":
        noisy = x + level * torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    elif kind == "uniform":
        noisy = x + level * (2 * torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device) - 1)
    else:
        if not isinstance(space, Box):
            raise ProbeError("salt_pepper corruption needs a Box with finite bounds or a OneHot space")
        lo = space.lower.to(x).expand_as(x)
        hi = space.upper.to(x).expand_as(x)
        if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
            raise ProbeError(f"salt_pepper corruption sets features to the bounds of the Box; {space!r} has an "
                             "infinite bound")
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        salt = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device) < 0.5
        noisy = torch.where(u < level, torch.where(salt, hi, lo), x)
    return space.project(x, noisy)


def corruption_accuracy(model: object, x: torch.Tensor, labels: torch.Tensor, levels: torch.Tensor,
                        corruption: str | Corruption = "gaussian", *, space: Space | None = None,
                        batch_size: int | None = 256) -> torch.Tensor:
    r"""Mean accuracy under random corruption at each level, shape (E,).

    :math:`\frac{1}{N S} \sum_{i, s} [\arg\max f(\tilde x_{is}) = y_i]` with :math:`\tilde x_{is}`
    the ``s``-th corruption of :math:`x_i` (:math:`S` = ``corruption.samples``). Level 0 gives the
    clean accuracy. The draws depend on ``corruption.seed`` and the input's position in ``x``,
    not on ``batch_size``.

    Parameters
    ----------
    model : callable
        Returns class scores (N, C) (or one binary logit (N, 1), read as [0, z]); called as is.
    x : torch.Tensor, shape (N, ...)
    labels : torch.Tensor, shape (N,)
    levels : torch.Tensor, shape (E,)
    corruption : str or Corruption, default "gaussian"
    space : Space, optional
    batch_size : int or None, default 256

    Returns
    -------
    torch.Tensor, shape (E,)
    """
    c = as_corruption(corruption)
    acc = torch.zeros(len(levels), dtype=torch.float64, device=x.device)
    with torch.no_grad():
        for e, level in enumerate(levels.tolist()):
            g = torch.Generator().manual_seed(int(c.seed) * 1_000_003 + e)
            hits = torch.zeros(len(x), dtype=torch.float64, device=x.device)
            for _ in range(int(c.samples)):
                xc = corrupt(x, level, c.kind, space=space, generator=g)
                for s in batches(len(x), batch_size):
                    out = as_logits(forward(model, xc[s], check=False))
                    hits[s] += (out.argmax(1) == labels[s]).double()
            acc[e] = hits.mean() / int(c.samples)
    return acc.to(torch.get_default_dtype())
