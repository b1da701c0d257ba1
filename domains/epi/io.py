"""Incidence series in: arrays, pandas Series/DataFrames with dates, CSV files.

Every reader ends in :func:`check_incidence`, which returns a float64 array of shape
(S, T) (S series of T consecutive days) and the dates when they are known. Bad data a
user can cause (negative, NaN or non-integer counts, gaps or repeats in the dates, a
series shorter than the estimation window) raises :class:`probe.ProbeError` naming the
day and the value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from probe.errors import ProbeError

__all__ = ["Incidence", "check_incidence", "read_incidence_csv", "day_label"]


@dataclass(frozen=True)
class Incidence:
    """Checked incidence: S series of T consecutive days.

    Attributes
    ----------
    counts : numpy.ndarray, shape (S, T)
        Cases per day (float64, non-negative; integer-valued unless fractional counts were allowed).
    dates : pandas.DatetimeIndex or None
        The T days, when the input carried dates.
    names : tuple of str
        One name per series ("I" for a single unnamed series).
    single : bool
        True when the input was one series (results then carry no ``series`` column).
    """

    counts: np.ndarray
    dates: pd.DatetimeIndex | None
    names: tuple[str, ...]
    single: bool

    @property
    def n_days(self) -> int:
        return int(self.counts.shape[1])


def day_label(day: int, dates: pd.DatetimeIndex | None) -> str:
    """Human name of a 0-based day index: ``day 5 (2009-05-01)``, 1-based as in EpiEstim."""
    if dates is not None and 0 <= day < len(dates):
        return f"day {day + 1} ({dates[day].date()})"
    return f"day {day + 1}"


def _check_dates(index: pd.Index, name: str) -> pd.DatetimeIndex:
    try:
        dates = pd.DatetimeIndex(pd.to_datetime(index))
    except (ValueError, TypeError) as err:
        raise ProbeError(f"{name}: dates could not be parsed: {err}") from None
    if dates.isna().any():
        i = int(np.flatnonzero(dates.isna())[0])
        raise ProbeError(f"{name}: date of row {i + 1} is missing ({index[i]!r})")
    dates = dates.normalize()
    if len(dates) > 1:
        step = np.diff(dates.values).astype("timedelta64[D]").astype(np.int64)
        bad = np.flatnonzero(step != 1)
        if len(bad):
            i = int(bad[0])
            a, b = dates[i].date(), dates[i + 1].date()
            if step[i] <= 0:
                raise ProbeError(f"{name}: dates are not strictly increasing: {b} follows {a} "
                                 f"(day {i + 2})")
            missing = (dates[i] + pd.Timedelta(days=1)).date()
            raise ProbeError(f"{name}: gap in the dates: {missing} is missing between {a} and {b} "
                             f"(after day {i + 1}); give every day, with 0 where no case was reported")
    return dates


def _frame_to_series(df: pd.DataFrame, name: str) -> tuple[np.ndarray, pd.DatetimeIndex | None, tuple[str, ...]]:
    df = df.copy()
    dates = None
    for col in ("dates", "date"):
        if col in df.columns:
            df = df.set_index(col)
            break
    if isinstance(df.index, pd.DatetimeIndex) or df.index.name in ("date", "dates"):
        dates = _check_dates(df.index, name)
    if "I" in df.columns:
        df = df[["I"]]
    numeric = [c for c in df.columns if c != "day"]
    if not numeric:
        raise ProbeError(f"{name}: no column of counts found (columns: {list(df.columns)})")
    values = df[numeric].apply(pd.to_numeric, errors="coerce")
    raw = df[numeric]
    coerced = values.isna() & raw.notna()
    if coerced.to_numpy().any():
        r, c = (int(v[0]) for v in np.nonzero(coerced.to_numpy()))
        raise ProbeError(f"{name}: series {numeric[c]!r} has a non-numeric count {raw.iat[r, c]!r} at "
                         f"{day_label(r, dates)}")
    return values.to_numpy(dtype=np.float64).T, dates, tuple(str(c) for c in numeric)


def check_incidence(incidence: object, *, name: str = "incidence", min_days: int = 2,
                    allow_fractional: bool = False) -> Incidence:
    """Validate incidence and return it as (S, T) float64 counts.

    Parameters
    ----------
    incidence : array-like of shape (T,) or (S, T), pandas.Series, pandas.DataFrame, str or Path
        One series or S series of daily counts. A Series/DataFrame indexed by dates (or with a
        ``date``/``dates`` column) must cover consecutive days. A DataFrame with an ``I`` column
        is one series (EpiEstim's convention); otherwise each numeric column is one series. A
        path is read with :func:`read_incidence_csv`.
    name : str, default "incidence"
        How the data is named in error messages.
    min_days : int, default 2
        Fewest days accepted (the estimation window plus one for :func:`domains.epi.cori`).
    allow_fractional : bool, default False
        Accept non-integer counts (re-scaled or perturbed data); counts must still be >= 0.

    Raises
    ------
    ProbeError
        Negative, NaN, infinite or (unless allowed) non-integer counts, naming series, day and value;
        gaps or repeats in dates; fewer than ``min_days`` days.
    """
    dates = None
    if isinstance(incidence, (str, Path)):
        s = read_incidence_csv(incidence)
        return check_incidence(s, name=str(incidence), min_days=min_days, allow_fractional=allow_fractional)
    if isinstance(incidence, pd.Series):
        if isinstance(incidence.index, pd.DatetimeIndex):
            dates = _check_dates(incidence.index, name)
        elif pd.api.types.is_integer_dtype(incidence.index) and len(incidence) > 1:
            step = np.diff(incidence.index.to_numpy())
            if (step != 1).any():
                i = int(np.flatnonzero(step != 1)[0])
                raise ProbeError(f"{name}: days are not consecutive: day {incidence.index[i + 1]} follows day "
                                 f"{incidence.index[i]}; give every day, with 0 where no case was reported")
        values = pd.to_numeric(incidence, errors="coerce")
        if (values.isna() & incidence.notna()).any():
            i = int(np.flatnonzero((values.isna() & incidence.notna()).to_numpy())[0])
            raise ProbeError(f"{name}: non-numeric count {incidence.iloc[i]!r} at {day_label(i, dates)}")
        counts = values.to_numpy(dtype=np.float64)[None, :]
        names = (str(incidence.name) if incidence.name is not None else "I",)
        single = True
    elif isinstance(incidence, pd.DataFrame):
        counts, dates, names = _frame_to_series(incidence, name)
        single = counts.shape[0] == 1
    else:
        try:
            arr = np.asarray(incidence, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ProbeError(f"{name} must be numbers (array, Series, DataFrame or CSV path): {err}") from None
        if arr.ndim not in (1, 2):
            raise ProbeError(f"{name} must have shape (T,) or (S, T), got {arr.shape}")
        single = arr.ndim == 1
        counts = arr[None, :] if single else arr
        names = ("I",) if single else tuple(str(i) for i in range(arr.shape[0]))
    counts = np.array(counts, dtype=np.float64, copy=True)
    _check_values(counts, names, dates, name, allow_fractional, single)
    if counts.shape[1] < min_days:
        raise ProbeError(f"{name} has {counts.shape[1]} day(s); at least {min_days} are needed "
                         "(the estimation window plus the first day, which EpiEstim treats as imported)")
    return Incidence(counts=counts, dates=dates, names=names, single=single)


def _check_values(counts: np.ndarray, names: tuple[str, ...], dates: pd.DatetimeIndex | None, name: str,
                  allow_fractional: bool, single: bool) -> None:
    def where(s: int, t: int) -> str:
        return f"{name}{'' if single else f' series {names[s]!r}'} at {day_label(t, dates)}"

    bad = ~np.isfinite(counts)
    if bad.any():
        s, t = (int(v[0]) for v in np.nonzero(bad))
        raise ProbeError(f"{where(s, t)}: count is {counts[s, t]} (missing or infinite); "
                         "report 0 for a day without cases")
    neg = counts < 0
    if neg.any():
        s, t = (int(v[0]) for v in np.nonzero(neg))
        raise ProbeError(f"{where(s, t)}: negative count {counts[s, t]:g}")
    if not allow_fractional:
        frac = counts != np.round(counts)
        if frac.any():
            s, t = (int(v[0]) for v in np.nonzero(frac))
            raise ProbeError(f"{where(s, t)}: non-integer count {counts[s, t]:g} (pass allow_fractional=True "
                             "for re-scaled data)")


def read_incidence_csv(path: str | Path, *, column: str | None = None, date_column: str | None = None) -> pd.Series:
    """Read one incidence series from a CSV file.

    Parameters
    ----------
    path : str or Path
        CSV with a header. Counts come from ``column`` (default: ``I`` if present, else the only
        numeric column other than ``day``); dates from ``date_column`` (default: ``date`` or
        ``dates`` if present).

    Returns
    -------
    pandas.Series
        Counts indexed by dates (a DatetimeIndex) when the file has them, else by day 1..T.

    Raises
    ------
    ProbeError
        Unreadable file, missing column, or a count that is not a number (naming line and value).
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ProbeError(f"{path}: cannot read incidence CSV: {err}") from None
    if date_column is None:
        date_column = next((c for c in ("date", "dates") if c in df.columns), None)
    elif date_column not in df.columns:
        raise ProbeError(f"{path}: no date column {date_column!r} (columns: {list(df.columns)})")
    if column is None:
        if "I" in df.columns:
            column = "I"
        else:
            candidates = [c for c in df.columns if c not in ("day", date_column)]
            if len(candidates) != 1:
                raise ProbeError(f"{path}: name the column of counts (column=...); candidates: {candidates}")
            column = candidates[0]
    elif column not in df.columns:
        raise ProbeError(f"{path}: no column {column!r} (columns: {list(df.columns)})")
    raw = df[column].str.strip()
    values = pd.to_numeric(raw.replace({"": "nan", "NA": "nan"}), errors="coerce")
    bad = values.isna() & ~raw.isin(["", "NA", "nan", "NaN"])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ProbeError(f"{path}: line {i + 2}: count {raw.iloc[i]!r} in column {column!r} is not a number")
    if date_column is not None:
        dates = _check_dates(pd.Index(df[date_column]), str(path))
        return pd.Series(values.to_numpy(np.float64), index=dates, name=column)
    index = pd.Index(np.arange(1, len(df) + 1), name="day")
    if "day" in df.columns:
        day = pd.to_numeric(df["day"], errors="coerce")
        step = np.diff(day.to_numpy())
        if day.isna().any() or (len(step) and (step != 1).any()):
            i = int(np.flatnonzero(day.isna().to_numpy() | np.r_[False, step != 1])[0])
            raise ProbeError(f"{path}: line {i + 2}: day {df['day'].iloc[i]!r} does not follow day "
                             f"{df['day'].iloc[i - 1] if i else '(start)'}: days must be consecutive")
        index = pd.Index(day.astype(int).to_numpy(), name="day")
    return pd.Series(values.to_numpy(np.float64), index=index, name=column)
