import sqlite3

import numpy as np
import pytest

from probe.active.store import LabelStore
from probe.errors import ProbeError


def _fill(path, n=3, config=None):
    with LabelStore(path, config=config) as s:
        for k in range(n):
            s.append(f"k{k}", {"x": np.arange(3) + k}, {"y": np.array([k * 1.5])}, {"step": k})


def test_round_trip_survives_reopening(tmp_path):
    path = tmp_path / "labels.sqlite"
    _fill(path, config={"seed": 1})
    with LabelStore(path, config={"seed": 1}) as s:
        labels = s.labels()
        assert len(s) == 3 and [lab.key for lab in labels] == ["k0", "k1", "k2"]
        np.testing.assert_array_equal(labels[2].inputs["x"], [2, 3, 4])
        assert labels[1].targets["y"].tolist() == [1.5] and labels[1].info == {"step": 1}
        assert s.get("k1").seq == 1 and s.get("missing") is None


def test_append_only(tmp_path):
    path = tmp_path / "labels.sqlite"
    _fill(path)
    with LabelStore(path) as s:
        with pytest.raises(ProbeError, match="already holds a label with key 'k0'"):
            s.append("k0", {"x": np.zeros(1)}, {"y": np.zeros(1)})
        assert len(s) == 3
    db = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM labels")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE labels SET key = 'x'")
    db.close()


def test_corrupt_file_is_a_probe_error(tmp_path):
    path = tmp_path / "labels.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ProbeError, match="labels.sqlite.*corrupt or not a database"):
        LabelStore(path)


def test_truncated_file_is_a_probe_error(tmp_path):
    path = tmp_path / "labels.sqlite"
    _fill(path, n=50)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + b"\x00" * 100 + data[len(data) // 2 + 100:])
    with pytest.raises(ProbeError, match="labels.sqlite"):
        LabelStore(path)


def test_tampered_row_fails_its_checksum(tmp_path):
    path = tmp_path / "labels.sqlite"
    _fill(path)
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER labels_no_update")
    db.execute("UPDATE labels SET info = '{\"step\": 99}' WHERE key = 'k1'")
    db.commit()
    db.close()
    with pytest.raises(ProbeError, match=r"row 1 \(key 'k1'\) does not match its checksum"):
        LabelStore(path)


def test_a_store_of_another_run_is_refused(tmp_path):
    path = tmp_path / "labels.sqlite"
    _fill(path, config={"seed": 1})
    with pytest.raises(ProbeError, match="different run"):
        LabelStore(path, config={"seed": 2})
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (a)")
    db.close()
    with pytest.raises(ProbeError, match="not a label store"):
        LabelStore(other)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(ProbeError, match="does not exist"):
        LabelStore(tmp_path / "nope" / "labels.sqlite")
