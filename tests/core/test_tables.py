"""probe.tables.write_table: exact floats, Parquet beside the CSV, errors that name the bad item."""

import math

import numpy as np
import pandas as pd
import pytest

from probe.errors import ProbeError
from probe.tables import parquet_available, table_frame, write_table


def test_floats_read_back_bit_for_bit(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(500) * 10.0 ** rng.integers(-300, 300, 500)
    x[:4] = [0.1, 1 / 3, math.pi, 5e-324]  # decimals a short format would round
    y = (rng.standard_normal(500) * 10.0 ** rng.integers(-30, 30, 500)).astype(np.float32)
    paths = write_table(tmp_path, "exact", pd.DataFrame({"x": x, "y32": y}), parquet=False)
    assert paths == [tmp_path / "exact.csv"]
    back = pd.read_csv(paths[0])
    np.testing.assert_array_equal(back["x"].to_numpy(), x)
    # float32 values keep every float32 digit
    np.testing.assert_array_equal(back["y32"].to_numpy().astype(np.float32), y)


def test_records_keep_order_and_missing_values_are_empty(tmp_path):
    rows = [{"step": 2, "energy_eV": -1.5, "reason": "tolerance"},
            {"step": 5, "energy_eV": float("nan"), "reason": None}]
    (csv, *_) = write_table(tmp_path / "sub", "labels", rows, parquet=False)
    assert csv.read_text().splitlines() == ["step,energy_eV,reason", "2,-1.5,tolerance", "5,,"]
    # columns= fixes the order and gives an empty table its header
    (csv, *_) = write_table(tmp_path, "none", [], columns=["step", "energy_eV"], parquet=False)
    assert csv.read_text().strip() == "step,energy_eV"
    (csv, *_) = write_table(tmp_path, "order", rows, columns=["reason", "step", "energy_eV"], parquet=False)
    assert csv.read_text().splitlines()[0] == "reason,step,energy_eV"


def test_a_named_index_becomes_a_column():
    df = pd.DataFrame({"calls": [3, 4]}, index=pd.Index(["energy-rate", "max-force-dev"], name="trigger"))
    frame = table_frame(df)
    assert list(frame.columns) == ["trigger", "calls"] and list(frame["trigger"]) == ["energy-rate", "max-force-dev"]
    plain = table_frame(pd.DataFrame({"a": [1, 2]}))
    assert list(plain.columns) == ["a"]


def test_parquet_beside_the_csv(tmp_path):
    assert parquet_available(), "pyarrow (in the test extra) is not installed"
    df = pd.DataFrame({"name": ["a", "b", "c"], "value": [1.25, np.nan, 3.0],
                       "change": [0.5, "search failed", None]})  # one column mixing numbers and text
    paths = write_table(tmp_path, "t", df)
    assert [p.name for p in paths] == ["t.csv", "t.parquet"]
    back = pd.read_parquet(paths[1])
    assert list(back.columns) == ["name", "value", "change"]
    np.testing.assert_array_equal(back["value"].to_numpy(), df["value"].to_numpy())
    assert list(back["change"])[:2] == ["0.5", "search failed"] and back["change"].isna().iloc[2]
    assert write_table(tmp_path, "u", df, parquet=False) == [tmp_path / "u.csv"]


def test_parquet_required_without_pyarrow(tmp_path, monkeypatch):
    import probe.tables

    monkeypatch.setattr(probe.tables, "parquet_available", lambda: False)
    assert write_table(tmp_path, "t", [{"a": 1}]) == [tmp_path / "t.csv"]  # never required by default
    with pytest.raises(ProbeError, match="pyarrow"):
        write_table(tmp_path, "t", [{"a": 1}], parquet=True)


@pytest.mark.parametrize("name, match", [("", "non-empty"), ("   ", "non-empty"), (None, "non-empty"),
                                         ("a/b", "'a/b' is not a plain file name"), (".hidden", "plain file name"),
                                         ("rt.csv", "extension")])
def test_bad_names(tmp_path, name, match):
    with pytest.raises(ProbeError, match=match):
        write_table(tmp_path, name, [{"a": 1}])
    assert not list(tmp_path.iterdir())


def test_ragged_records_name_the_record_and_the_keys(tmp_path):
    rows = [{"step": 1, "energy_eV": 0.5}, {"step": 2, "energy_eV": 0.25}, {"step": 3, "force": 1.0}]
    with pytest.raises(ProbeError, match=r"'labels': record 2 .*missing \['energy_eV'\]; unexpected \['force'\]"):
        write_table(tmp_path, "labels", rows)
    with pytest.raises(ProbeError, match=r"record 0 .*the columns.*missing \['x'\]"):
        write_table(tmp_path, "labels", rows[:1], columns=["step", "energy_eV", "x"])
    with pytest.raises(ProbeError, match="record 1 is a list"):
        write_table(tmp_path, "labels", [{"a": 1}, [1]])
    with pytest.raises(ProbeError, match="no records and no columns"):
        write_table(tmp_path, "labels", [])
    with pytest.raises(ProbeError, match="DataFrame or a list of dicts, got int"):
        write_table(tmp_path, "labels", 3)
    with pytest.raises(ProbeError, match=r"no column\(s\) \['b'\]"):
        write_table(tmp_path, "t", pd.DataFrame({"a": [1]}), columns=["a", "b"])
    with pytest.raises(ProbeError, match=r"duplicate column\(s\) \['a'\]"):
        write_table(tmp_path, "t", pd.DataFrame([[1, 2]], columns=["a", "a"]))
    assert not list(tmp_path.glob("*.csv"))
