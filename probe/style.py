"""One look for the figures ``probe`` and its domains save: sizes, a fixed resolution, a layout that keeps text in.

Use :func:`style` around the code that builds a figure, :func:`save` to write it, :func:`colorbar` where
colour carries a value and :func:`date_axis` where the x axis holds calendar dates::

    with probe.style.style():
        fig, ax = plt.subplots()
        ...
        probe.style.colorbar(im, ax, "change", "logit")
        probe.style.save(fig, out / "map.png")

Every saved figure is then checked the same way (:func:`probe.testing.figures.figure_problems`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["DPI", "RC", "style", "save", "colorbar", "date_axis", "with_unit"]

DPI = 120
"""Resolution of every saved raster figure (dots per inch)."""

RC: dict[str, Any] = {
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.labelsize": 9.0,
    "xtick.labelsize": 8.0,
    "ytick.labelsize": 8.0,
    "legend.fontsize": 8.0,
    "legend.frameon": False,
    "figure.titlesize": 11.0,
    "savefig.dpi": DPI,
    "figure.constrained_layout.use": True,
    "image.interpolation": "nearest",
}
"""The rc settings :func:`style` applies (matplotlib ``rcParams`` names)."""


@contextlib.contextmanager
def style(overrides: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Apply :data:`RC` (and ``overrides``) to the figures created inside the block.

    Figures created inside the block use matplotlib's constrained layout from the start, so colour bars
    and legends placed outside the axes (``fig.legend(loc="outside lower center")``) take their room.

    The settings last for the block only (``matplotlib.rc_context``): nothing changes for the
    caller's own figures afterwards.

    Parameters
    ----------
    overrides : mapping of str to value, optional
        Further ``rcParams`` for this block.
    """
    import matplotlib

    with matplotlib.rc_context({**RC, **(overrides or {})}):
        yield


def save(fig: Any, path: str | Path, *, dpi: int = DPI, close: bool = True) -> Path:
    """Lay ``fig`` out and write it to ``path`` at ``dpi``.

    A figure without a layout engine gets matplotlib's constrained layout (axes, colour bars, legends
    and titles kept inside the canvas and apart); one that cannot take it (a colour bar made for
    another engine) gets the tight layout. A figure that set its own engine keeps it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or Path
        The format follows the suffix (``.png``, ``.svg``, ``.pdf``).
    dpi : int, default :data:`DPI`
    close : bool, default True
        Close the figure afterwards (``pyplot`` keeps every open figure alive).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    if fig.get_layout_engine() is None:
        try:
            fig.set_layout_engine("constrained")
        except RuntimeError:
            fig.set_layout_engine("tight")
    fig.savefig(path, dpi=dpi)
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return path


def with_unit(label: str, unit: str | None) -> str:
    """``"label (unit)"``, or ``label`` alone when ``unit`` is empty (a dimensionless quantity)."""
    return f"{label} ({unit})" if unit else label


def colorbar(mappable: Any, ax: Any, label: str, unit: str | None = None, **options: Any) -> Any:
    """A colour bar for ``mappable`` beside ``ax``, labelled with what the colour means and its unit.

    Parameters
    ----------
    mappable : matplotlib ScalarMappable
        What the colours come from (an image, a scatter, a ``ScalarMappable`` made for the purpose).
    ax : matplotlib Axes, or a list or array of Axes
        Room is taken from these; ``cax=`` in ``options`` draws into a given axes instead.
    label : str
        What the colour shows, e.g. ``"ISM change"``.
    unit : str, optional
        Its unit, e.g. ``"logit"``; ``None`` for a dimensionless quantity.
    **options
        Passed to ``Figure.colorbar`` (``shrink``, ``pad``, ``cax``, ...).

    Returns
    -------
    matplotlib.colorbar.Colorbar
    """
    import numpy as np

    fig = (ax if hasattr(ax, "figure") else np.ravel(ax)[0]).figure  # one axes, or a list / array of them
    if "cax" in options:
        cb = fig.colorbar(mappable, **options)
    else:
        cb = fig.colorbar(mappable, ax=ax, **options)
    cb.set_label(with_unit(label, unit))
    return cb


def date_axis(ax: Any, label: str = "date") -> Any:
    """Calendar dates on the x axis of ``ax``: concise tick labels (year and month once, then days).

    The data drawn on ``ax`` must be dates (``datetime64``, pandas ``Timestamp`` or ``datetime``).

    Returns
    -------
    matplotlib Axes
        ``ax``.
    """
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel(label)
    return ax
