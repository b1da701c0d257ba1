"""Plots: R_t with the posterior interval and the certified band side by side, incidence, worst cases."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_band", "plot_incidence", "plot_worst_case", "plot_report"]


def _axes(ax: object = None, figsize: tuple[float, float] = (6, 3.5)) -> object:
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_band(t: np.ndarray, estimate: np.ndarray, lower: np.ndarray, upper: np.ndarray, *, ax: object = None,
              label: str = "estimate", band_label: str = "certified band", color: str = "tab:red",
              interval: tuple[np.ndarray, np.ndarray] | None = None, interval_label: str = "95% CrI",
              truth: np.ndarray | None = None) -> object:
    """R_t over time (by window end day) with a certified band and, optionally, a credible interval and the truth."""
    ax = _axes(ax)
    t = np.asarray(t)
    if interval is not None:
        ax.fill_between(t, interval[0], interval[1], color="tab:blue", alpha=0.2, label=interval_label, lw=0)
    ax.fill_between(t, lower, upper, color=color, alpha=0.25, label=band_label, lw=0, step=None)
    ax.plot(t, lower, color=color, lw=0.6)
    ax.plot(t, upper, color=color, lw=0.6)
    ax.plot(t, estimate, color="k", lw=1.4, label=label)
    if truth is not None:
        ax.plot(t, truth, color="tab:green", lw=1.2, ls="--", label="true R (window mean)")
    ax.axhline(1.0, color="grey", lw=0.7, ls=":")
    ax.set_xlabel("day (window end)")
    ax.set_ylabel("R_t")
    ax.legend(frameon=False, fontsize=8)
    return ax


def plot_incidence(counts: np.ndarray, *, ax: object = None, label: str = "reported", color: str = "tab:grey"
                   ) -> object:
    """Daily counts as bars (day 1 first)."""
    ax = _axes(ax)
    counts = np.asarray(counts, dtype=float)
    ax.bar(np.arange(1, len(counts) + 1), counts, color=color, width=1.0, label=label)
    ax.set_xlabel("day")
    ax.set_ylabel("cases")
    return ax


def plot_worst_case(counts: np.ndarray, worst_lower: np.ndarray, worst_upper: np.ndarray, *, window: tuple[int, int],
                    ax: object = None, history: int = 14) -> object:
    """The reported series and the two series of counts that attain the bounds for one window.

    Shows the window and the ``history`` days before it (the days its infectiousness comes from).
    """
    first = max(1, window[0] - history)
    last = window[1]
    ax = plot_incidence(np.asarray(counts)[first - 1:last], ax=ax)
    days = np.arange(first, last + 1)
    for patch in ax.patches:
        patch.set_x(patch.get_x() + first - 1)
    ax.step(days, np.asarray(worst_upper)[first - 1:last], where="mid", color="tab:red", lw=1.4,
            label="worst case: R highest")
    ax.step(days, np.asarray(worst_lower)[first - 1:last], where="mid", color="tab:blue", lw=1.4,
            label="worst case: R lowest")
    ax.axvspan(window[0] - 0.5, window[1] + 0.5, color="gold", alpha=0.2, label=f"window {window[0]}-{window[1]}")
    ax.set_xlim(first - 0.5, last + 0.5)
    ax.legend(frameon=False, fontsize=8)
    return ax


def plot_report(counts: np.ndarray, cori_frame: object, cori_bounds: object, neural: object = None, *,
                truth: np.ndarray | None = None, title: str = "", window_index: int | None = None) -> object:
    """Four panels: incidence; Cori with posterior interval and exact band; neural with certified band;
    worst-case series for one window. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    plot_incidence(counts, ax=axes[0, 0])
    axes[0, 0].set_title("incidence")
    t = cori_bounds.t_end
    tru = None if truth is None else np.asarray(truth)[t - 1]
    plot_band(t, cori_bounds.estimate, cori_bounds.lower, cori_bounds.upper, ax=axes[0, 1], label="Cori mean",
              band_label=f"exact band ({cori_bounds.error.describe()})",
              interval=(cori_frame["q025"].to_numpy(), cori_frame["q975"].to_numpy()), truth=tru)
    axes[0, 1].set_title("Cori: posterior interval vs certified band")
    if neural is not None:
        tn = neural.t_end
        plot_band(tn, neural.estimate, neural.lower, neural.upper, ax=axes[1, 0], label="neural estimate",
                  band_label=f"certified band ({neural.error.describe()})", color="tab:purple",
                  truth=None if truth is None else np.asarray(truth)[tn - 1])
        axes[1, 0].set_xlim(axes[0, 1].get_xlim())
        lo = min(axes[0, 1].get_ylim()[0], axes[1, 0].get_ylim()[0])
        hi = max(axes[0, 1].get_ylim()[1], axes[1, 0].get_ylim()[1])
        axes[0, 1].set_ylim(lo, hi)
        axes[1, 0].set_ylim(lo, hi)
        axes[1, 0].set_title("neural: certified band (CROWN/IBP/Lipschitz)")
    else:
        axes[1, 0].set_axis_off()
    if window_index is None:  # the window whose band is widest relative to the estimate, in the second half
        widths = (cori_bounds.upper - cori_bounds.lower) / cori_bounds.estimate
        widths[: len(widths) // 2] = np.nan
        window_index = int(np.nanargmax(np.where(np.isfinite(widths), widths, -np.inf)))
    j = window_index
    plot_worst_case(counts, cori_bounds.worst_lower[j], cori_bounds.worst_upper[j],
                    window=(int(cori_bounds.t_start[j]), int(cori_bounds.t_end[j])), ax=axes[1, 1])
    axes[1, 1].set_title(f"worst-case counts: Cori R in [{cori_bounds.lower[j]:.2f}, {cori_bounds.upper[j]:.2f}]")
    if title:
        fig.suptitle(title)
    return fig
