"""Pictures: attribution logos (logomaker), ISM heat maps, edits and planted sites marked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from probe import Attribution

from .io import ALPHABET

__all__ = ["plot_logo", "plot_ism"]


def _axes(ax: object, width: float) -> object:
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, width / 12), 2.2))
    return ax


def _np(v: object, index: int) -> np.ndarray:
    if isinstance(v, Attribution):
        v = v.values
    v = torch.as_tensor(v).detach().cpu()
    if v.dim() == 3:
        v = v[index]
    return v.double().numpy()


def plot_logo(values: object, index: int = 0, *, ax: object = None, edits: list | None = None,
              sites: pd.DataFrame | None = None, title: str | None = None) -> object:
    """Sequence logo of attributions (4, L) — letters scaled by their value, below the axis when negative.

    ``values`` is an Attribution or tensor (N, 4, L) (row ``index``) or (4, L). ``edits`` (a list of
    ``(position, ref, alt)``) are marked with red triangles; ``sites`` (rows with ``start``, ``end``,
    ``factor``) are shaded.
    """
    import logomaker

    v = _np(values, index)
    ax = _axes(ax, v.shape[1])
    df = pd.DataFrame(v.T, columns=list(ALPHABET))
    logomaker.Logo(df, ax=ax, color_scheme="classic", flip_below=False)
    ax.axhline(0, color="black", lw=0.5)
    _mark(ax, edits, sites, v)
    ax.set_xlabel("position")
    ax.set_ylabel("attribution")
    if title:
        ax.set_title(title)
    return ax


def plot_ism(table: object, x: object = None, *, ax: object = None, edits: list | None = None,
             sites: pd.DataFrame | None = None, title: str | None = None) -> object:
    """Heat map of an ISM table (4, L): change of the output for every substitution.

    Reference bases (where ``x`` is given) are dotted; ``edits`` are boxed.
    """
    t = _np(table, 0)
    ax = _axes(ax, t.shape[1])
    lim = float(np.abs(t).max()) or 1.0
    im = ax.imshow(t, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.figure.colorbar(im, ax=ax, shrink=0.8, pad=0.01, label="change")
    ax.set_yticks(range(4), list(ALPHABET))
    if x is not None:
        xr = _np(x, 0)
        b, p = np.nonzero(xr == 1)
        ax.scatter(p, b, s=2, color="black")
    for pos, _ref, alt in edits or []:
        ax.add_patch(__import__("matplotlib.patches", fromlist=["Rectangle"]).Rectangle(
            (pos - 0.5, ALPHABET.index(alt) - 0.5), 1, 1, fill=False, ec="lime", lw=1.5))
    if sites is not None:
        for r in sites.itertuples():
            ax.axvspan(r.start - 0.5, r.end - 0.5, ymin=0.97, ymax=1.0, color="orange")
    ax.set_xlabel("position")
    if title:
        ax.set_title(title)
    return ax


def _mark(ax: object, edits: list | None, sites: pd.DataFrame | None, v: np.ndarray) -> None:
    top = float(np.abs(v).max()) or 1.0
    if sites is not None:
        for r in sites.itertuples():
            ax.axvspan(r.start - 0.5, r.end - 0.5, color="orange", alpha=0.15)
            ax.text((r.start + r.end - 1) / 2, top * 1.05, r.factor, ha="center", va="bottom", fontsize=7)
    for pos, ref, alt in edits or []:
        ax.plot([pos], [-top * 0.1], marker="^", color="red", ms=6)
        ax.text(pos, -top * 0.25, f"{ref}>{alt}", ha="center", va="top", fontsize=6, color="red")
