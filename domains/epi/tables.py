"""The per-window R_t table ``probe epi`` writes: EpiEstim's columns plus the hard bounds beside them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from probe.errors import ProbeError

from .cori import COLUMNS

__all__ = ["EPIESTIM_COLUMNS", "rt_table"]

#: EpiEstim's names (``estimate_R(...)$R``) for :func:`domains.epi.cori`'s columns, in its order
EPIESTIM_COLUMNS = dict(zip(COLUMNS, ("t_start", "t_end", "Mean(R)", "Std(R)", "Quantile.0.025(R)",
                                      "Quantile.0.05(R)", "Quantile.0.25(R)", "Median(R)", "Quantile.0.75(R)",
                                      "Quantile.0.95(R)", "Quantile.0.975(R)")))


def rt_table(cori_frame: pd.DataFrame, cori_bounds: object = None, neural: object = None, *,
             dates: pd.DatetimeIndex | None = None) -> pd.DataFrame:
    """One row per window: EpiEstim's R table, calendar dates, and the bounds under reporting error.

    Parameters
    ----------
    cori_frame : pandas.DataFrame
        :func:`domains.epi.cori`'s result for one series (columns ``t_start ... q975``).
    cori_bounds : CoriBounds, optional
        :func:`domains.epi.cori_mean_bounds` on the same windows: adds ``Lower.Mean(R)`` and
        ``Upper.Mean(R)``, the exact minimum and maximum of the posterior mean over every count
        series the error model allows.
    neural : NeuralBounds, optional
        :func:`domains.epi.neural_bounds`: adds ``Neural(R)``, ``Lower.Neural(R)`` and
        ``Upper.Neural(R)`` on the windows the network reads (it needs ``length`` days, so the first
        windows have empty cells), and ``Method.Lower.Neural(R)``/``Method.Upper.Neural(R)``, which
        sound method gave each bound.
    dates : pandas.DatetimeIndex, optional
        The series' days: adds ``date_start`` and ``date_end`` (ISO dates) after ``t_end``.

    Returns
    -------
    pandas.DataFrame
        ``t_start, t_end, Mean(R), Std(R), Quantile.0.025(R), Quantile.0.05(R), Quantile.0.25(R),
        Median(R), Quantile.0.75(R), Quantile.0.95(R), Quantile.0.975(R)`` (the columns and order of
        EpiEstim's ``estimate_R(...)$R``; 1-based inclusive windows), then the dates and bounds above.

    Raises
    ------
    ProbeError
        A frame without Cori's columns or with several series, bounds on other windows, dates that do
        not cover the windows.
    """
    missing = [c for c in COLUMNS if c not in cori_frame.columns]
    if missing:
        raise ProbeError(f"rt_table needs domains.epi.cori's columns; missing {missing}")
    if "series" in cori_frame.columns and cori_frame["series"].nunique() > 1:
        raise ProbeError("rt_table takes one series; select one with frame[frame.series == name]")
    table = cori_frame[list(COLUMNS)].rename(columns=EPIESTIM_COLUMNS).reset_index(drop=True)
    ts, te = table["t_start"].to_numpy(int), table["t_end"].to_numpy(int)
    if dates is not None:
        dates = pd.DatetimeIndex(dates)
        if te.max() > len(dates):
            raise ProbeError(f"rt_table: {len(dates)} dates, but a window ends on day {te.max()}")
        table.insert(2, "date_start", dates[ts - 1].strftime("%Y-%m-%d"))
        table.insert(3, "date_end", dates[te - 1].strftime("%Y-%m-%d"))
    if cori_bounds is not None:
        if not (np.array_equal(cori_bounds.t_start, ts) and np.array_equal(cori_bounds.t_end, te)):
            raise ProbeError("rt_table: the Cori bounds were computed on other windows than the frame's")
        table["Lower.Mean(R)"] = np.asarray(cori_bounds.lower, dtype=np.float64)
        table["Upper.Mean(R)"] = np.asarray(cori_bounds.upper, dtype=np.float64)
    if neural is not None:
        nn = pd.DataFrame({"t_start": neural.t_start, "t_end": neural.t_end, "Neural(R)": neural.estimate,
                           "Lower.Neural(R)": neural.lower, "Upper.Neural(R)": neural.upper,
                           "Method.Lower.Neural(R)": neural.best_lower, "Method.Upper.Neural(R)": neural.best_upper})
        unknown = set(zip(nn.t_start, nn.t_end)) - set(zip(ts, te))
        if unknown:
            raise ProbeError(f"rt_table: the neural bounds have windows the Cori table lacks: {sorted(unknown)[:3]}")
        table = table.merge(nn, on=["t_start", "t_end"], how="left", validate="one_to_one")
    return table
