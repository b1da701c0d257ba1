"""Plots: R_t with the posterior interval and the certified band side by side, incidence, worst cases.

Days are 1-based (day 1 is the series' first). Where the series has calendar dates (``dates``, e.g. the
DatetimeIndex of a series read by :func:`domains.epi.io.read_incidence_csv`), the x axes show them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_band", "plot_incidence", "plot_worst_case", "plot_report"]

R_LABEL = "R_t (reproduction number)"


def _axes(ax: object = None, figsize: tuple[float, float] = (6, 3.5)) -> object:
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _x(days: np.ndarray, dates: object) -> np.ndarray:
    """Where day ``d`` (1-based) is drawn: the day number, or its calendar date."""
    days = np.asarray(days)
    if dates is None:
        return days
    return np.asarray(dates, dtype="datetime64[ns]")[days.astype(int) - 1]


def _day_name(day: int, dates: object) -> str:
    """Day ``day`` (1-based) as its calendar date, e.g. ``"17 May 2009"``."""
    import pandas as pd

    return pd.Timestamp(_x([day], dates)[0]).strftime("%d %b %Y").lstrip("0")


def _day_axis(ax: object, dates: object, label: str) -> None:
    from matplotlib.ticker import MaxNLocator

    if dates is None:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(label)
    else:
        from probe.style import date_axis

        date_axis(ax, label.replace("day", "date", 1))


def plot_band(t: np.ndarray, estimate: np.ndarray, lower: np.ndarray, upper: np.ndarray, *, ax: object = None,
              label: str = "estimate", band_label: str = "certified band", color: str = "tab:red",
              interval: tuple[np.ndarray, np.ndarray] | None = None, interval_label: str = "95% CrI",
              truth: np.ndarray | None = None, dates: object = None) -> object:
    """R_t over time (by window end day) with a certified band and, optionally, a credible interval and the truth.

    ``t`` are 1-based window end days; with ``dates`` (one per day of the series) they are drawn at
    their calendar dates.
    """
    ax = _axes(ax)
    x = _x(t, dates)
    if interval is not None:
        ax.fill_between(x, interval[0], interval[1], color="tab:blue", alpha=0.2, label=interval_label, lw=0)
    ax.fill_between(x, lower, upper, color=color, alpha=0.25, label=band_label, lw=0, step=None)
    ax.plot(x, lower, color=color, lw=0.6)
    ax.plot(x, upper, color=color, lw=0.6)
    ax.plot(x, estimate, color="k", lw=1.4, label=label)
    if truth is not None:
        ax.plot(x, truth, color="tab:green", lw=1.2, ls="--", label="true R (window mean)")
    ax.axhline(1.0, color="grey", lw=0.7, ls=":", label="R = 1")
    _day_axis(ax, dates, "day (window end)")
    ax.set_ylabel(R_LABEL)
    ax.legend(frameon=False, fontsize=7)
    return ax


def plot_incidence(counts: np.ndarray, *, ax: object = None, label: str = "reported", color: str = "tab:grey",
                   dates: object = None, first: int = 1) -> object:
    """Daily counts as bars; ``counts[0]`` is day ``first`` (1-based), at its date where ``dates`` are given."""
    ax = _axes(ax)
    counts = np.asarray(counts, dtype=float)
    days = np.arange(first, first + len(counts))
    width = 1.0 if dates is None else np.timedelta64(1, "D")
    ax.bar(_x(days, dates), counts, color=color, width=width, label=label)
    _day_axis(ax, dates, "day")
    ax.set_ylabel("cases per day")
    return ax


def plot_worst_case(counts: np.ndarray, worst_lower: np.ndarray, worst_upper: np.ndarray, *, window: tuple[int, int],
                    ax: object = None, history: int = 14, dates: object = None) -> object:
    """The reported series and the two series of counts that attain the bounds for one window.

    Shows the window and the ``history`` days before it (the days its infectiousness comes from).
    """
    first = max(1, window[0] - history)
    last = window[1]
    ax = plot_incidence(np.asarray(counts)[first - 1:last], ax=ax, dates=dates, first=first)
    days = np.arange(first, last + 1)
    x = _x(days, dates)
    ax.step(x, np.asarray(worst_upper)[first - 1:last], where="mid", color="tab:red", lw=1.4,
            label="worst case: R highest")
    ax.step(x, np.asarray(worst_lower)[first - 1:last], where="mid", color="tab:blue", lw=1.4,
            label="worst case: R lowest")
    half = 0.5 if dates is None else np.timedelta64(12, "h")
    span = (f"days {window[0]}-{window[1]}" if dates is None
            else f"{_day_name(window[0], dates)} - {_day_name(window[1], dates)}")
    ax.axvspan(_x([window[0]], dates)[0] - half, _x([window[1]], dates)[0] + half, color="gold", alpha=0.2,
               label=f"window, {span}")
    ax.set_xlim(x[0] - half, x[-1] + half)
    ax.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def plot_report(counts: np.ndarray, cori_frame: object, cori_bounds: object, neural: object = None, *,
                truth: np.ndarray | None = None, title: str = "", window_index: int | None = None,
                dates: object = None) -> object:
    """Four panels: incidence; Cori with posterior interval and exact band; neural with certified band;
    worst-case series for one window. Returns the figure.

    ``dates`` (one calendar date per day of ``counts``, e.g. the series' DatetimeIndex) puts dates on
    the x axes. The neural panel starts at the first day the network has a full input for: the days
    before it are shaded and say so.
    """
    import matplotlib.pyplot as plt

    from probe.style import style

    with style():
        fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
        plot_incidence(counts, ax=axes[0, 0], dates=dates)
        axes[0, 0].set_title("reported incidence")
        axes[0, 0].legend(frameon=False, fontsize=7)
        t = cori_bounds.t_end
        tru = None if truth is None else np.asarray(truth)[t - 1]
        plot_band(t, cori_bounds.estimate, cori_bounds.lower, cori_bounds.upper, ax=axes[0, 1], label="Cori mean",
                  band_label=f"exact band ({cori_bounds.error.describe()})",
                  interval=(cori_frame["q025"].to_numpy(), cori_frame["q975"].to_numpy()), truth=tru, dates=dates)
        axes[0, 1].set_title("Cori: posterior interval vs certified band")
        if neural is not None:
            _neural_panel(axes[1, 0], neural, truth, dates)
            axes[1, 0].set_xlim(axes[0, 1].get_xlim())
            lo = min(axes[0, 1].get_ylim()[0], axes[1, 0].get_ylim()[0])
            hi = max(axes[0, 1].get_ylim()[1], axes[1, 0].get_ylim()[1])
            axes[0, 1].set_ylim(lo, hi)
            axes[1, 0].set_ylim(lo, hi)
        else:
            axes[1, 0].set_axis_off()
        if window_index is None:  # the window whose band is widest relative to the estimate, in the second half
            widths = (cori_bounds.upper - cori_bounds.lower) / cori_bounds.estimate
            widths[: len(widths) // 2] = np.nan
            window_index = int(np.nanargmax(np.where(np.isfinite(widths), widths, -np.inf)))
        j = window_index
        plot_worst_case(counts, cori_bounds.worst_lower[j], cori_bounds.worst_upper[j],
                        window=(int(cori_bounds.t_start[j]), int(cori_bounds.t_end[j])), ax=axes[1, 1], dates=dates)
        axes[1, 1].set_title(f"worst-case counts: Cori R in [{cori_bounds.lower[j]:.2f}, {cori_bounds.upper[j]:.2f}]")
        if title:
            fig.suptitle(title)
    return fig


def _neural_panel(ax: object, neural: object, truth: np.ndarray | None, dates: object) -> None:
    """The neural estimate and its certified band; the days before its first full input shaded and named."""
    tn = np.asarray(neural.t_end)
    reads = int(tn[0])  # the first estimate is for the first day with ``reads`` days of counts behind it
    start, end = _x([1], dates)[0], _x([reads], dates)[0]
    before = f"days 1-{reads - 1}" if dates is None else f"before {_day_name(reads, dates)}"
    ax.axvspan(start, end, color="0.85", lw=0, label=f"{before}: no estimate (the network reads {reads} days)")
    plot_band(tn, neural.estimate, neural.lower, neural.upper, ax=ax, label="neural estimate",
              band_label=f"certified band ({neural.error.describe()})", color="tab:purple",
              truth=None if truth is None else np.asarray(truth)[tn - 1], dates=dates)
    ax.set_title("neural: certified band (CROWN/IBP/Lipschitz)")
