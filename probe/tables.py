"""Result tables beside the figures: one CSV per table, Parquet too when pyarrow is installed.

Every ``probe`` command writes its tables through :func:`write_table`, so that they all follow the
same conventions:

- a column that has a unit carries it in its name, after an underscore, with ``per`` for a
  quotient (``energy_eV``, ``time_fs``, ``force_error_eV_per_A``, ``temperature_K``);
- floats are written with every digit needed to read back the same number (the shortest
  representation that round-trips, as Python's ``repr``), so a table is as exact as the result;
- missing values (a search that found nothing, a window with no estimate) are empty cells;
- a named or non-default DataFrame index is written as the first column(s).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import ProbeError

__all__ = ["write_table", "table_frame", "parquet_available"]

_BAD_NAME_CHARS = set('/\\:*?"<>|') | {chr(c) for c in range(32)}


def parquet_available() -> bool:
    """Whether Parquet files can be written (pyarrow is importable)."""
    return importlib.util.find_spec("pyarrow") is not None


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ProbeError(f"table name must be a non-empty string, got {name!r}")
    bad = sorted(set(name) & _BAD_NAME_CHARS)
    if bad or name in (".", "..") or name.startswith("."):
        raise ProbeError(f"table name {name!r} is not a plain file name (bad characters {bad or [name[0]]}); "
                         "give the folder as out and a name such as 'rt_Flu2009'")
    if name.lower().endswith((".csv", ".parquet")):
        raise ProbeError(f"table name {name!r} should not carry an extension; write_table adds .csv and .parquet")
    return name


def table_frame(data: object, *, columns: Sequence[str] | None = None, name: str = "table") -> object:
    """The pandas DataFrame :func:`write_table` writes, from a DataFrame or a list of records.

    Parameters
    ----------
    data : pandas.DataFrame or sequence of mapping
        A frame, or records (one mapping per row) that all have the same keys.
    columns : sequence of str, optional
        Column order for records, and the header of an empty list of records. For a frame, the
        columns to keep, in order.
    name : str, default "table"
        Named in error messages.

    Returns
    -------
    pandas.DataFrame
        With a default integer index (a named or non-default index becomes columns).

    Raises
    ------
    ProbeError
        Records that are not mappings, records whose keys differ from the first one's (naming the
        record and the keys), an empty list of records with no ``columns``, duplicate or missing
        column names.
    """
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        frame = data
        if not isinstance(frame.index, pd.RangeIndex) or any(n is not None for n in frame.index.names):
            frame = frame.reset_index()
        if columns is not None:
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise ProbeError(f"table {name!r} has no column(s) {missing}; it has {list(frame.columns)}")
            frame = frame[list(columns)]
    elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        frame = _from_records(list(data), columns, name)
    else:
        raise ProbeError(f"table {name!r}: data must be a pandas DataFrame or a list of dicts, "
                         f"got {type(data).__name__}")
    labels = [str(c) for c in frame.columns]
    dup = sorted({c for c in labels if labels.count(c) > 1})
    if dup:
        raise ProbeError(f"table {name!r} has duplicate column(s) {dup}")
    if any(not c.strip() for c in labels):
        raise ProbeError(f"table {name!r} has an empty column name: {labels}")
    return frame.reset_index(drop=True)


def _from_records(records: list, columns: Sequence[str] | None, name: str) -> object:
    import pandas as pd

    for i, r in enumerate(records):
        if not isinstance(r, Mapping):
            raise ProbeError(f"table {name!r}: record {i} is a {type(r).__name__}, not a dict")
    if not records:
        if columns is None:
            raise ProbeError(f"table {name!r} has no records and no columns; pass columns= for an empty table")
        return pd.DataFrame(columns=list(columns))
    keys = list(columns) if columns is not None else list(records[0])
    expected = set(keys)
    for i, r in enumerate(records):
        if set(r) != expected:
            missing, extra = sorted(map(str, expected - set(r))), sorted(map(str, set(r) - expected))
            what = "; ".join(p for p in (f"missing {missing}" if missing else "",
                                         f"unexpected {extra}" if extra else "") if p)
            raise ProbeError(f"table {name!r}: record {i} has different keys from "
                             f"{'the columns' if columns is not None else 'record 0'} ({what})")
    return pd.DataFrame.from_records(records, columns=keys)


def _for_parquet(frame: object) -> object:
    """Object columns that mix types (numbers and text, say) become text: Parquet columns have one type."""
    import pandas as pd

    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if s.dtype == object or isinstance(s.dtype, pd.StringDtype):
            kinds = {type(v) for v in s if v is not None and not (isinstance(v, float) and v != v)}
            if len(kinds) > 1:
                out[col] = s.map(lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v))
    out.columns = [str(c) for c in out.columns]
    return out


def write_table(out: str | Path, name: str, data: object, *, columns: Sequence[str] | None = None,
                parquet: bool | None = None) -> list[Path]:
    """Write a table as ``out/name.csv`` (always) and ``out/name.parquet`` (when pyarrow is installed).

    Parameters
    ----------
    out : str or pathlib.Path
        Folder (created if needed).
    name : str
        File name without extension, e.g. ``"rt_Flu2009"``.
    data : pandas.DataFrame or sequence of mapping
        The table: a frame, or one mapping per row, all with the same keys. Units go into the
        column names (``energy_eV``); see the module's conventions.
    columns : sequence of str, optional
        Column order (and the header of an empty list of records); see :func:`table_frame`.
    parquet : bool, optional
        ``None`` (default): write Parquet when pyarrow is importable; ``False``: never; ``True``:
        required (an error when pyarrow is missing).

    Returns
    -------
    list of pathlib.Path
        The files written, CSV first.

    Raises
    ------
    ProbeError
        An empty or non-plain ``name``, ragged records (naming the record and the keys), data that is
        neither a frame nor records, ``parquet=True`` without pyarrow.

    Examples
    --------
    >>> from probe.tables import write_table
    >>> paths = write_table(tmp, "labels", [{"step": 2, "energy_eV": -1.5}, {"step": 5, "energy_eV": -1.25}])
    ... # doctest: +SKIP
    """
    _check_name(name)
    frame = table_frame(data, columns=columns, name=name)
    if parquet and not parquet_available():
        raise ProbeError(f"table {name!r}: parquet=True needs pyarrow (pip install pyarrow)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / f"{name}.csv"
    # float_format=None writes repr(x): the shortest text that reads back as the same double
    frame.to_csv(csv, index=False)
    paths = [csv]
    if parquet is None:
        parquet = parquet_available()
    if parquet:
        path = out / f"{name}.parquet"
        _for_parquet(frame).to_parquet(path, index=False, engine="pyarrow")
        paths.append(path)
    return paths
