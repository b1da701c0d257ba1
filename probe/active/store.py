"""A durable, append-only label store on SQLite.

Every label is one row, committed with ``synchronous=FULL`` before ``append`` returns,
so a label a caller has been handed survives a crash of the process (or a power cut)
at any later moment. Rows cannot be updated or deleted (SQL triggers abort such
statements), each row carries a SHA-256 checksum of its content, and a file that is
not a label store or whose rows do not match their checksums raises ``ProbeError``.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ProbeError

__all__ = ["Label", "LabelStore", "encode_arrays", "decode_arrays"]

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS probe_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS labels (
    seq INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    inputs BLOB NOT NULL,
    targets BLOB NOT NULL,
    info TEXT NOT NULL,
    checksum TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS labels_no_update BEFORE UPDATE ON labels
    BEGIN SELECT RAISE(ABORT, 'the label store is append-only'); END;
CREATE TRIGGER IF NOT EXISTS labels_no_delete BEFORE DELETE ON labels
    BEGIN SELECT RAISE(ABORT, 'the label store is append-only'); END;
"""


def encode_arrays(arrays: Mapping[str, Any]) -> bytes:
    """Serialise named arrays to ``.npz`` bytes (no pickles)."""
    buf = io.BytesIO()
    np.savez(buf, **{str(k): np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def decode_arrays(blob: bytes) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_arrays`."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _checksum(key: str, inputs: bytes, targets: bytes, info: str) -> str:
    h = hashlib.sha256()
    for part in (key.encode(), inputs, targets, info.encode()):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


@dataclass(frozen=True)
class Label:
    """One stored label.

    Attributes
    ----------
    seq : int
        Position in the store (0-based, insertion order).
    key : str
        Caller's unique key (the loop uses the labelling event number).
    inputs : dict of str -> numpy.ndarray
        The configuration that was labelled.
    targets : dict of str -> numpy.ndarray
        The oracle's answer.
    info : dict
        JSON metadata (step, walker, trigger reason, ...).
    """

    seq: int
    key: str
    inputs: dict
    targets: dict
    info: dict


class LabelStore:
    """Append-only store of labelled configurations (SQLite file).

    Parameters
    ----------
    path : str or pathlib.Path
        The database file; created if missing. ``":memory:"`` keeps it in memory.
    config : dict, optional
        JSON-serialisable description of the run that owns the store. It is written on
        first use and compared on every later open; a different one raises ``ProbeError``
        so that a resumed run can never mix labels of two different runs.

    Raises
    ------
    ProbeError
        If the file is not an SQLite database, is damaged, is not a label store, was made by a
        different run, or a row's checksum does not match its content (row named).
    """

    def __init__(self, path: str | Path, *, config: Mapping[str, Any] | None = None) -> None:
        self.path = str(path)
        if self.path != ":memory:" and not Path(self.path).resolve().parent.is_dir():
            raise ProbeError(f"label store {self.path}: the folder {Path(self.path).resolve().parent} does not exist")
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA synchronous=FULL")
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and not {"probe_meta", "labels"} <= tables:
                raise ProbeError(f"{self.path} is an SQLite file but not a label store (tables {sorted(tables)})")
            self._db.executescript(_SCHEMA)
            self._init_meta(config)
        except sqlite3.DatabaseError as err:
            self._close_quietly()
            raise ProbeError(f"label store {self.path} is corrupt or not a database: {err}") from err
        except ProbeError:
            self._close_quietly()
            raise
        self.verify()

    def _close_quietly(self) -> None:
        try:
            self._db.close()
        except Exception:  # noqa: BLE001
            pass

    def _init_meta(self, config: Mapping[str, Any] | None) -> None:
        rows = dict(self._db.execute("SELECT name, value FROM probe_meta").fetchall())
        if "schema" in rows and int(rows["schema"]) != _SCHEMA_VERSION:
            raise ProbeError(f"label store {self.path} has schema {rows['schema']}, expected {_SCHEMA_VERSION}")
        wanted = json.dumps(dict(config), sort_keys=True, default=str) if config is not None else None
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if "schema" not in rows:
                self._db.execute("INSERT INTO probe_meta VALUES ('schema', ?)", (str(_SCHEMA_VERSION),))
            if wanted is not None:
                if "config" not in rows:
                    self._db.execute("INSERT INTO probe_meta VALUES ('config', ?)", (wanted,))
                elif rows["config"] != wanted:
                    raise ProbeError(f"label store {self.path} belongs to a different run: stored config "
                                     f"{rows['config']} differs from {wanted}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self.config = json.loads(wanted if wanted is not None else rows.get("config", "null"))

    # -- reading ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM labels").fetchone()[0])

    def _row(self, row: tuple) -> Label:
        seq, key, inputs, targets, info, checksum = row
        if _checksum(key, inputs, targets, info) != checksum:
            raise ProbeError(f"label store {self.path}: row {seq - 1} (key {key!r}) does not match its checksum")
        try:
            return Label(seq - 1, key, decode_arrays(inputs), decode_arrays(targets), json.loads(info))
        except (ValueError, OSError) as err:
            raise ProbeError(f"label store {self.path}: row {seq - 1} (key {key!r}) cannot be decoded: {err}") from err

    def __iter__(self) -> Iterator[Label]:
        try:
            for row in self._db.execute("SELECT seq, key, inputs, targets, info, checksum FROM labels ORDER BY seq"):
                yield self._row(row)
        except sqlite3.DatabaseError as err:
            raise ProbeError(f"label store {self.path} is corrupt: {err}") from err

    def labels(self) -> list[Label]:
        """All labels in insertion order."""
        return list(self)

    def get(self, key: str) -> Label | None:
        """The label stored under ``key``, or ``None``."""
        row = self._db.execute("SELECT seq, key, inputs, targets, info, checksum FROM labels WHERE key = ?",
                               (key,)).fetchone()
        return None if row is None else self._row(row)

    def verify(self) -> int:
        """Check every row against its checksum; return the number of rows."""
        return sum(1 for _ in self)

    # -- writing ----------------------------------------------------------------------------------
    def append(self, key: str, inputs: Mapping[str, Any], targets: Mapping[str, Any],
               info: Mapping[str, Any] | None = None) -> Label:
        """Commit one label durably and return it as stored.

        Raises
        ------
        ProbeError
            If ``key`` is already stored (a label is never written twice).
        """
        ib, tb = encode_arrays(inputs), encode_arrays(targets)
        js = json.dumps(dict(info or {}), sort_keys=True, default=float)
        try:
            cur = self._db.execute("INSERT INTO labels (key, inputs, targets, info, checksum) VALUES (?, ?, ?, ?, ?)",
                                   (key, ib, tb, js, _checksum(key, ib, tb, js)))
        except sqlite3.IntegrityError as err:
            raise ProbeError(f"label store {self.path} already holds a label with key {key!r}") from err
        return Label(cur.lastrowid - 1, key, decode_arrays(ib), decode_arrays(tb), json.loads(js))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LabelStore({self.path!r}, labels={len(self)})"
