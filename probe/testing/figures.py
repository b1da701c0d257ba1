"""A figure-quality check: labelled axes, non-empty legend entries, text that neither overlaps nor leaves the canvas.

:func:`figure_problems` draws a matplotlib figure and names what a reader would stumble on. It looks at
what is drawn: hidden or empty texts, tick labels outside the axis limits and axes turned off are not
texts a reader sees, so they are not checked.
"""

from __future__ import annotations

from typing import Any

__all__ = ["figure_problems", "visible_texts"]

_TOLERANCE = 1.0  # pixels: boxes that merely touch, or anti-aliasing at the canvas edge, are no problem


def _describe(text: Any) -> str:
    s = text.get_text().replace("\n", " ")
    return repr(s if len(s) <= 40 else s[:37] + "...")


def _axes_name(fig: Any, ax: Any) -> str:
    kind = "colour bar" if _is_colorbar(ax) else "axes"
    title = ax.get_title() or ax.get_title("left") or ax.get_title("right")
    return f"{kind} {_all_axes(fig).index(ax)}" + (f" ({title!r})" if title else "")


def _all_axes(fig: Any) -> list:
    """The figure's axes and the axes inset into them (``Axes.inset_axes``: colour bars, zooms)."""
    out, todo = [], list(fig.axes)
    while todo:
        ax = todo.pop(0)
        if ax not in out:
            out.append(ax)
            todo.extend(ax.child_axes)
    return out


def _is_colorbar(ax: Any) -> bool:
    return getattr(ax, "_colorbar", None) is not None


def _drawn(text: Any) -> bool:
    if not text.get_visible() or not text.get_text().strip() or text.get_alpha() == 0:
        return False
    return text.axes is None or text.axes.get_visible()


def _tick_texts(ax: Any) -> tuple[list, set]:
    """The tick labels of ``ax`` a reader sees, and the ids of every tick label (seen or not)."""
    seen, every = [], set()
    for axis in (ax.xaxis, ax.yaxis):
        lo, hi = sorted(axis.get_view_interval())
        span = (hi - lo) * 1e-9 + 1e-12
        for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
            labels = (tick.label1, tick.label2)
            every.update(id(t) for t in labels)
            loc = tick.get_loc()
            inside = loc is not None and lo - span <= loc <= hi + span
            if ax.axison and axis.get_visible() and tick.get_visible() and inside:
                seen.extend(t for t in labels if _drawn(t))
    return seen, every


def _shown(artist: Any) -> list:
    """The texts under ``artist`` whose every ancestor is visible (a hidden legend hides its texts)."""
    from matplotlib.text import Text

    found, todo = [], [artist]
    while todo:
        a = todo.pop()
        if not a.get_visible():
            continue
        if isinstance(a, Text):
            found.append(a)
        todo.extend(reversed(a.get_children()))  # depth first, in drawing order
    return found


def visible_texts(fig: Any) -> list:
    """Every text of ``fig`` a reader sees: titles, axis labels, drawn tick labels, legend texts, annotations.

    Call after drawing the figure (tick labels are set at draw time).
    """
    texts, excluded = [], set()
    for ax in _all_axes(fig):
        seen, every = _tick_texts(ax)
        texts.extend(seen)
        excluded |= every
        if not ax.axison:  # its axis labels and offset texts are not drawn
            for axis in (ax.xaxis, ax.yaxis):
                excluded |= {id(axis.label), id(axis.get_offset_text())}
    ids = {id(t) for t in texts}
    for t in _shown(fig):
        if id(t) not in excluded and id(t) not in ids and _drawn(t):
            texts.append(t)
            ids.add(id(t))
    return texts


def _label_problems(fig: Any) -> list[str]:
    problems = []
    for ax in _all_axes(fig):
        if not ax.axison:
            continue
        name = _axes_name(fig, ax)
        if _is_colorbar(ax):
            if not (ax.get_xlabel().strip() or ax.get_ylabel().strip()):
                problems.append(f"{name} has no label (what the colour means, with its unit)")
            continue
        for which, axis, shared in (("x", ax.xaxis, ax.get_shared_x_axes()), ("y", ax.yaxis, ax.get_shared_y_axes())):
            if not axis.get_visible() or axis.label.get_text().strip():
                continue
            # a panel sharing this axis with a labelled neighbour (stacked panels) is labelled by it
            siblings = [s for s in shared.get_siblings(ax) if s is not ax and s.axison]
            if any((s.get_xlabel() if which == "x" else s.get_ylabel()).strip() for s in siblings):
                continue
            problems.append(f"{name} has no {which} label")
    return problems


def _legend_problems(fig: Any) -> list[str]:
    problems = []
    legends = [(f"legend of {_axes_name(fig, ax)}", ax.get_legend()) for ax in _all_axes(fig)]
    legends += [(f"figure legend {k}", leg) for k, leg in enumerate(fig.legends)]
    for where, leg in legends:
        if leg is None or not leg.get_visible():
            continue
        texts = leg.get_texts()
        if not texts:
            problems.append(f"{where} has no entries")
        for k, t in enumerate(texts):
            if not t.get_text().strip():
                problems.append(f"{where}: entry {k} has an empty label")
    return problems


def _unexplained_lines(fig: Any) -> list[str]:
    """Curves told apart only by colour need a legend: an axes with curves of two or more colours and none."""
    from matplotlib.colors import to_hex

    if any(leg is not None and leg.get_visible() for leg in fig.legends):
        return []
    problems = []
    for ax in _all_axes(fig):
        if not ax.axison or _is_colorbar(ax) or (ax.get_legend() is not None and ax.get_legend().get_visible()):
            continue
        # reference lines (axhline, axvline: two points) are not curves
        colours = {to_hex(line.get_color()) for line in ax.get_lines()
                   if line.get_visible() and len(line.get_xdata()) > 2}
        if len(colours) > 1:
            problems.append(f"{_axes_name(fig, ax)} has curves of {len(colours)} colours but no legend")
    return problems


def _title_problems(fig: Any) -> list[str]:
    suptitle = getattr(fig, "_suptitle", None)
    if suptitle is not None and suptitle.get_text().strip():
        return []
    for ax in _all_axes(fig):
        if any(ax.get_title(loc).strip() for loc in ("center", "left", "right")):
            return []
    return ["figure has no title (neither a suptitle nor an axes title)"]


def _colour_problems(fig: Any) -> list[str]:
    """Colour that carries a value (an image, a mesh or a scatter coloured by data) needs a colour bar."""
    from matplotlib.collections import PathCollection, QuadMesh
    from matplotlib.image import AxesImage

    problems = []
    for ax in _all_axes(fig):
        if _is_colorbar(ax):
            continue
        for artist in [*ax.images, *ax.collections]:
            if not artist.get_visible() or not isinstance(artist, AxesImage | QuadMesh | PathCollection):
                continue
            data = artist.get_array()
            if data is None or (isinstance(artist, AxesImage) and data.ndim != 2):  # RGB(A) pictures
                continue
            if artist.colorbar is None:
                problems.append(f"{_axes_name(fig, ax)}: colour shows values but has no colour bar")
    return problems


def _overlap(a: Any, b: Any) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > _TOLERANCE) and (min(a.y1, b.y1) - max(a.y0, b.y0) > _TOLERANCE)


def _text_problems(fig: Any, renderer: Any) -> list[str]:
    from matplotlib.transforms import Bbox

    problems = []
    canvas = fig.bbox
    boxes = []
    for t in visible_texts(fig):
        b = t.get_window_extent(renderer)
        clip = t.get_clip_box() if t.get_clip_on() else None
        if clip is not None:  # only the part inside the clip box is drawn
            b = Bbox.intersection(b, clip)
            if b is None:
                continue
        boxes.append((t, b))
    for t, b in boxes:
        if (b.x0 < canvas.x0 - _TOLERANCE or b.y0 < canvas.y0 - _TOLERANCE or b.x1 > canvas.x1 + _TOLERANCE
                or b.y1 > canvas.y1 + _TOLERANCE):
            problems.append(f"text {_describe(t)} leaves the canvas")
    for i, (t, b) in enumerate(boxes):
        for u, c in boxes[i + 1:]:
            if _overlap(b, c):
                problems.append(f"text {_describe(t)} overlaps text {_describe(u)}")
    return problems


def figure_problems(fig: Any) -> list[str]:
    """What a reader of ``fig`` would stumble on, one sentence per problem (empty: none found).

    Checks, on the figure as drawn by its own canvas:

    - every axes that is drawn has an x and a y label (an axis shared with a labelled panel counts
      as labelled; a colour bar needs its one label);
    - the figure has a title (a suptitle or an axes title);
    - every legend entry has a non-empty label;
    - curves told apart by colour (two or more colours of curves with more than two points) are
      explained by a legend on their axes or on the figure;
    - colour that carries a value (an image, a mesh, a scatter coloured by data) has a colour bar;
    - no text's bounding box (from ``fig.canvas.get_renderer()``) overlaps another's, or leaves the
      canvas. Texts are the titles, axis labels, drawn tick labels, legend texts, annotations and any
      other visible, non-empty text; boxes that overlap by at most one pixel are taken to touch.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Drawn here (``fig.canvas.draw()``), so its layout engine runs first, as when it is saved.

    Returns
    -------
    list of str
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [*_label_problems(fig), *_title_problems(fig), *_legend_problems(fig), *_unexplained_lines(fig),
            *_colour_problems(fig), *_text_problems(fig, renderer)]
