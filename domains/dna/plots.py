"""Pictures: attribution logos (logomaker), ISM heat maps, edits and sites marked, in genome coordinates.

Every mark has a legend entry (sites shaded, edits as triangles or boxes, reference bases as dots),
and labels that would overlap are set on separate rows. With ``coordinates=(chrom, start[, strand])``
the x axis reads genome positions (1-based, as genome browsers show them; a ``-`` strand window runs
right to left in the genome), and :func:`plot_window` stacks a logo and an ISM map on one x axis.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from probe import Attribution, ProbeError

from .io import ALPHABET

__all__ = ["plot_logo", "plot_ism", "plot_window", "zoom_span"]

_SITE = {"color": "orange", "alpha": 0.15}
_EDIT = {"color": "red"}


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


def _coordinates(ax: object, length: int, coordinates: tuple | None) -> None:
    """Label the x axis with genome positions for a window starting (0-based) at ``start``."""
    if coordinates is None:
        ax.set_xlabel("position (bp from the window start)")
        return
    if not 2 <= len(coordinates) <= 3:
        raise ProbeError(f"coordinates must be (chrom, start) or (chrom, start, strand), got {coordinates!r}")
    chrom, start = coordinates[0], int(coordinates[1])
    strand = coordinates[2] if len(coordinates) == 3 else "+"
    if strand not in ("+", "-", "."):
        raise ProbeError(f"strand must be '+' or '-', got {strand!r}")
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    def genome_pos(i: float) -> int:  # 1-based genome position of window index i
        return start + int(round(i)) + 1 if strand != "-" else start + length - int(round(i))

    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda i, _: f"{genome_pos(i):,}"))
    ax.set_xlabel(f"{chrom} ({'-' if strand == '-' else '+'} strand, 1-based)")


def _span(span: tuple[int, int] | None, length: int) -> tuple[int, int]:
    """The positions ``[a, b)`` a panel shows (default: all ``length``), checked."""
    if span is None:
        return 0, length
    a, b = (int(v) for v in span)
    if not 0 <= a < b <= length:
        raise ProbeError(f"span must satisfy 0 <= start < end <= {length} (the window's length), got {span!r}")
    return a, b


def _in_span(edits: list | None, sites: pd.DataFrame | None, a: int, b: int) -> tuple[list, pd.DataFrame | None]:
    """The edits inside ``[a, b)`` and the sites that reach into it (clipped to it)."""
    edits = [e for e in edits or [] if a <= e[0] < b]
    if sites is not None and len(sites):
        sites = sites[(sites["end"] > a) & (sites["start"] < b)].copy()
        sites["start"], sites["end"] = sites["start"].clip(lower=a), sites["end"].clip(upper=b)
    return edits, sites


def _rows(spans: list[tuple[float, float]], gap: float) -> list[int]:
    """Row of each label so that labels on one row do not overlap: greedy, in order of start."""
    rows, ends = [0] * len(spans), []
    for k in sorted(range(len(spans)), key=lambda k: spans[k][0]):
        lo, hi = spans[k]
        for r, end in enumerate(ends):
            if lo >= end + gap:
                ends[r], rows[k] = hi, r
                break
        else:
            ends.append(hi)
            rows[k] = len(ends) - 1
    return rows


def _char_width(ax: object, fontsize: float) -> float:
    """Width of one character of ``fontsize`` points in data units of the x axis (roughly 0.6 em)."""
    fig = ax.figure
    width_in = ax.get_position().width * fig.get_figwidth()
    lo, hi = ax.get_xlim()
    return abs(hi - lo) / max(width_in * 72.0, 1.0) * fontsize * 0.62


def _legend(ax: object, handles: list, right: float = 1.005) -> None:
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(right, 1.0), fontsize=7, frameon=False,
                  borderaxespad=0.0)


def plot_logo(values: object, index: int = 0, *, ax: object = None, edits: list | None = None,
              sites: pd.DataFrame | None = None, title: str | None = None, coordinates: tuple | None = None,
              legend: bool = True, span: tuple[int, int] | None = None, ylabel: str = "attribution") -> object:
    """Sequence logo of attributions (4, L) — letters scaled by their value, below the axis when negative.

    Parameters
    ----------
    values : Attribution or tensor (N, 4, L) (row ``index``) or (4, L)
    index : int, default 0
    ax : matplotlib Axes, optional
    edits : list of (position, ref, alt), optional
        Marked with red triangles under the axis, labelled ``ref>alt``.
    sites : pandas.DataFrame, optional
        Rows with ``start``, ``end`` (window positions) and ``factor`` (or ``motif``): shaded and labelled.
    title : str, optional
    coordinates : (chrom, start) or (chrom, start, strand), optional
        The window's place in the genome (0-based ``start``): the x axis shows genome positions.
    legend : bool, default True
        A legend entry for each kind of mark drawn.
    span : (int, int), optional
        Draw positions ``[start, end)`` only (a zoom into a long window; the x axis keeps the
        window's positions). Default: all.
    ylabel : str, default "attribution"
        With its unit where it has one, e.g. ``"gradient x input (logit)"``.

    Returns
    -------
    matplotlib Axes
    """
    import logomaker

    v = _np(values, index)
    a, b = _span(span, v.shape[1])
    ax = _axes(ax, b - a)
    df = pd.DataFrame(v[:, a:b].T, columns=list(ALPHABET), index=pd.RangeIndex(a, b))
    logomaker.Logo(df, ax=ax, color_scheme="classic", flip_below=False)
    ax.axhline(0, color="black", lw=0.5)
    handles = _mark(ax, *_in_span(edits, sites, a, b), v[:, a:b], (a, b))
    _coordinates(ax, v.shape[1], coordinates)
    ax.set_ylabel(ylabel)
    if legend:
        _legend(ax, handles)
    if title:
        ax.set_title(title)
    return ax


def plot_ism(table: object, x: object = None, *, ax: object = None, edits: list | None = None,
             sites: pd.DataFrame | None = None, title: str | None = None, coordinates: tuple | None = None,
             legend: bool = True, colorbar: bool = True, span: tuple[int, int] | None = None,
             label: str = "ISM change", unit: str | None = None) -> object:
    """Heat map of an ISM table (4, L): change of the output for every substitution.

    Reference bases (where ``x`` is given) are dotted, ``edits`` are boxed at their new base, ``sites``
    are marked by a bar along the top; ``coordinates``, ``legend`` and ``span`` as in :func:`plot_logo`.
    The colour bar (``label`` and ``unit``, e.g. ``"logit"``) sits outside the axes, so a logo above on
    the same x axis lines up with the map.
    """
    import matplotlib.lines as mlines
    import matplotlib.patches as mpatches

    from probe.style import with_unit

    t = _np(table, 0)
    a, b = _span(span, t.shape[1])
    edits, sites = _in_span(edits, sites, a, b)
    ax = _axes(ax, b - a)
    lim = float(np.abs(t[:, a:b]).max()) or 1.0
    im = ax.imshow(t[:, a:b], aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest",
                   extent=(a - 0.5, b - 0.5, 3.5, -0.5))
    handles = []
    if colorbar:
        cax = ax.inset_axes([1.005, 0.0, 0.012, 1.0])
        ax.figure.colorbar(im, cax=cax, label=with_unit(label, unit))
    ax.set_yticks(range(4), list(ALPHABET))
    ax.set_ylabel("base substituted in")
    if x is not None:
        xr = _np(x, 0)[:, a:b]
        base, p = np.nonzero(xr == 1)
        ax.scatter(p + a, base, s=2, color="black")
        handles.append(mlines.Line2D([], [], color="black", marker="o", ms=2, ls="", label="reference base"))
    for pos, _ref, alt in edits:
        ax.add_patch(mpatches.Rectangle((pos - 0.5, ALPHABET.index(alt) - 0.5), 1, 1, fill=False, ec="lime",
                                        lw=1.5))
    if edits:
        handles.append(mpatches.Patch(fill=False, ec="lime", lw=1.5, label="minimal edit (new base)"))
    if sites is not None and len(sites):
        for r in sites.itertuples():
            ax.axvspan(r.start - 0.5, r.end - 0.5, ymin=0.97, ymax=1.0, color="orange")
        handles.append(mpatches.Patch(color="orange", label="site"))
    _coordinates(ax, t.shape[1], coordinates)
    if legend:
        _legend(ax, handles, right=1.09 if colorbar else 1.005)  # clear of the colour bar and its label
    if title:
        ax.set_title(title)
    return ax


def zoom_span(attribution: object, width: int, *, index: int = 0, edits: list | None = None) -> tuple[int, int]:
    """The ``width`` positions of a window to show when the whole cannot be read: where the attribution is.

    The span maximises the summed absolute attribution (over bases) and, where ``edits`` are given, is
    centred on them when they fit in ``width``.

    Returns
    -------
    (int, int)
        ``[start, end)``.
    """
    v = np.abs(_np(attribution, index)).sum(0)
    length = len(v)
    if width >= length:
        return 0, length
    pos = sorted(p for p, _, _ in edits or [])
    if pos and pos[-1] - pos[0] < width:
        a = (pos[0] + pos[-1] + 1) // 2 - width // 2
    else:
        a = int(np.argmax(np.convolve(v, np.ones(width), mode="valid")))
    a = min(max(a, 0), length - width)
    return a, a + width


def plot_window(attribution: object, ism: object = None, x: object = None, *, index: int = 0,
                edits: list | None = None, sites: pd.DataFrame | None = None, coordinates: tuple | None = None,
                title: str | None = None, figsize: tuple[float, float] | None = None, max_letters: int = 100,
                attribution_label: str = "attribution", ism_label: str = "ISM change", unit: str | None = None
                ) -> object:
    """A window's attribution logo above its ISM map, on one x axis (genome positions with ``coordinates``).

    Letters stay readable: a window longer than ``max_letters`` is drawn whole as a line of its summed
    absolute attribution, with the ``max_letters`` positions of :func:`zoom_span` shaded there and shown
    below as logo and map.

    Parameters
    ----------
    attribution : Attribution or tensor (N, 4, L) or (4, L)
    ism : tensor (N, 4, L) or (4, L), optional
        The ISM table; without it the figure is the logo alone.
    x : tensor (N, 4, L) or (4, L), optional
        The one-hot window (reference bases dotted on the map).
    index : int, default 0
        Row of batched inputs.
    edits, sites, coordinates
        As in :func:`plot_logo`.
    title : str, optional
        The figure's title.
    figsize : (float, float), optional
    max_letters : int, default 100
        Most positions drawn as letters.
    attribution_label, ism_label : str
        What the logo's letters and the map's colours show.
    unit : str, optional
        Their unit (the model output's, e.g. ``"logit"``).

    Returns
    -------
    matplotlib Figure
    """
    import matplotlib.pyplot as plt

    from probe.style import style, with_unit

    v = _np(attribution, index)
    length = v.shape[1]
    a, b = zoom_span(v, max_letters, edits=edits)
    zoomed = (a, b) != (0, length)
    n = (1 if ism is None else 2) + zoomed
    heights = ([1.0] if zoomed else []) + [2.3] * (n - zoomed)
    with style():
        fig = plt.figure(figsize=figsize or (max(8.0, (b - a) / 8 + 3), sum(heights) + 0.8))
        axes = fig.subplots(n, 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
        if zoomed:
            _overview(axes[0], v, (a, b), coordinates)
            axes = axes[1:]
        for ax in axes[1:]:
            ax.sharex(axes[0])
        plot_logo(v, ax=axes[0], edits=edits, sites=sites, coordinates=coordinates, span=(a, b),
                  ylabel=with_unit(attribution_label, unit))
        if ism is not None:
            xr = None if x is None else _np(x, index)
            plot_ism(_np(ism, index), xr, ax=axes[1], edits=edits, sites=sites, coordinates=coordinates,
                     span=(a, b), label=ism_label, unit=unit)
            axes[0].set_xlabel("")
            axes[0].tick_params(labelbottom=False)
        axes[0].set_xlim(a - 0.5, b - 0.5)
        if title:
            fig.suptitle(title)
    return fig


def _overview(ax: object, v: np.ndarray, span: tuple[int, int], coordinates: tuple | None) -> None:
    """The whole window as summed absolute attribution, the zoomed positions shaded."""
    length = v.shape[1]
    ax.plot(np.arange(length), np.abs(v).sum(0), color="black", lw=0.7, label="|attribution| summed over bases")
    ax.axvspan(span[0] - 0.5, span[1] - 0.5, color="tab:blue", alpha=0.15, label="shown below")
    ax.set_xlim(-0.5, length - 0.5)
    ax.set_ylabel("|attribution|")
    _coordinates(ax, length, coordinates)
    ax.set_title(f"whole window ({length} bp); positions {span[0]}-{span[1] - 1} below", fontsize=8)
    _legend(ax, ax.get_legend_handles_labels()[0])


def _mark(ax: object, edits: list | None, sites: pd.DataFrame | None, v: np.ndarray, span: tuple[int, int]
          ) -> list:
    """Shade sites and mark edits, with labels set on rows that do not overlap; the legend handles."""
    import matplotlib.lines as mlines
    import matplotlib.patches as mpatches

    top = float(np.abs(v).max()) or 1.0
    ax.set_xlim(span[0] - 0.5, span[1] - 0.5)
    handles = []
    cw = _char_width(ax, 7)
    if sites is not None and len(sites):
        labels = [str(getattr(r, "factor", getattr(r, "motif", ""))) for r in sites.itertuples()]
        centres = [(r.start + r.end - 1) / 2 for r in sites.itertuples()]
        rows = _rows([(c - len(s) * cw / 2, c + len(s) * cw / 2) for c, s in zip(centres, labels)], cw)
        for r, label, c, row in zip(sites.itertuples(), labels, centres, rows):
            ax.axvspan(r.start - 0.5, r.end - 0.5, **_SITE)
            ax.text(c, top * (1.05 + 0.2 * row), label, ha="center", va="bottom", fontsize=7)
        ax.set_ylim(top=max(ax.get_ylim()[1], top * (1.3 + 0.2 * max(rows))))
        handles.append(mpatches.Patch(label="site", **_SITE))
    if edits:
        labels = [f"{ref}>{alt}" for _, ref, alt in edits]
        rows = _rows([(p - len(s) * cw / 2, p + len(s) * cw / 2) for (p, _, _), s in zip(edits, labels)], cw / 2)
        for (pos, _ref, _alt), label, row in zip(edits, labels, rows):
            ax.plot([pos], [-top * 0.1], marker="^", ms=6, ls="", **_EDIT)
            ax.text(pos, -top * (0.25 + 0.18 * row), label, ha="center", va="top", fontsize=6, **_EDIT)
        ax.set_ylim(bottom=min(ax.get_ylim()[0], -top * (0.5 + 0.18 * max(rows))))
        handles.append(mlines.Line2D([], [], marker="^", ms=6, ls="", label="minimal edit", **_EDIT))
    return handles
