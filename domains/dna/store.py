"""Results of many windows, computed in chunks and written to a Zarr store as they come; resumable after a kill.

A job over ``N`` windows is cut into chunks of ``chunk_size`` windows. Each chunk is computed on its own
(in this process, or on a worker of a Dask cluster), its arrays are written to the store's rows
``[lo, hi)``, and only then is the chunk's flag in ``done`` set. Every array is chunked on disk as the job
is, and Zarr writes each chunk file whole (to a temporary file, then renamed), so a kill at any moment
leaves every flagged chunk complete and every other chunk to be done; a rerun with the same store reads
the flags and computes only the chunks not flagged, so nothing is computed twice and nothing is lost.
Memory is bounded by a chunk (times the chunks in flight on a cluster), not by ``N``.

The store also holds the windows' coordinates (one array per column of the window table) and a
fingerprint of the job (the windows, the model's weights and the options); a store is resumed only by
the job that made it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from probe import ProbeError
from probe.progress import enabled

__all__ = ["WindowStore", "run_chunks", "fingerprint"]

_FORMAT = "probe.dna.WindowStore/1"


def fingerprint(coords: pd.DataFrame, model: object = None, **options: object) -> str:
    """SHA-1 of a job: the window table (row by row), the model's parameters and buffers, and ``options``."""
    h = hashlib.sha1()
    h.update(pd.util.hash_pandas_object(coords.reset_index(drop=True), index=True).to_numpy().tobytes())
    state = getattr(model, "state_dict", None)
    if callable(state):
        for k, v in state().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().view(-1).view(dtype=__import__("torch").uint8).numpy().tobytes())
    elif model is not None:
        h.update(repr(model).encode())
    h.update(json.dumps(options, sort_keys=True, default=str).encode())
    return h.hexdigest()


class WindowStore:
    """A Zarr store of per-window results with the windows' coordinates.

    Open an existing one with ``WindowStore(path)``; jobs create them through :func:`run_chunks`.

    Attributes
    ----------
    path : Path
    n : int
        Windows.
    chunk_size : int
        Windows per chunk.
    """

    def __init__(self, path: str | Path):
        import zarr

        self.path = Path(path)
        if not (self.path / "zarr.json").exists():
            raise ProbeError(f"{str(self.path)!r} is not a window store (no zarr.json)")
        self._group = zarr.open_group(str(self.path), mode="r+")
        attrs = dict(self._group.attrs)
        if attrs.get("format") != _FORMAT:
            raise ProbeError(f"{str(self.path)!r} is a Zarr group but not a window store")
        self.n, self.chunk_size = int(attrs["n"]), int(attrs["chunk_size"])
        self.fingerprint = attrs["fingerprint"]
        self.columns = list(attrs["coords"])

    @classmethod
    def create(cls, path: str | Path, coords: pd.DataFrame, *, chunk_size: int, fingerprint: str) -> WindowStore:
        """A new store for the windows ``coords`` (overwriting any at ``path``)."""
        import zarr

        n = len(coords)
        g = zarr.open_group(str(path), mode="w")
        for col in coords.columns:
            v = coords[col].to_numpy()
            v = v.astype(str) if v.dtype == object else v
            a = g.create_array(f"coords/{col}", shape=(n,), chunks=(max(1, min(n, 1 << 16)),),
                               dtype=str if v.dtype.kind == "U" else v.dtype)
            a[:] = v
        n_chunks = -(-n // chunk_size)
        g.create_array("done", shape=(max(n_chunks, 1),), chunks=(1,), dtype=bool, fill_value=False)
        g.attrs.update({"format": _FORMAT, "n": n, "chunk_size": int(chunk_size), "fingerprint": fingerprint,
                        "coords": list(coords.columns)})
        return cls(path)

    @property
    def done(self) -> np.ndarray:
        """Bool (n_chunks,): which chunks are written."""
        return self._group["done"][:][: self.n_chunks]

    @property
    def n_chunks(self) -> int:
        return -(-self.n // self.chunk_size)

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    def arrays(self) -> list[str]:
        """Names of the result arrays."""
        return sorted(k for k in self._group.array_keys() if k != "done")

    def __getitem__(self, name: str) -> object:
        """The Zarr array ``name`` (index it to read: ``store["ism"][10:20]``)."""
        if name not in self.arrays():
            raise ProbeError(f"window store {self.path.name} has no array {name!r}; it has {self.arrays()}")
        return self._group[name]

    def coords(self) -> pd.DataFrame:
        """The window table the store was made for."""
        return pd.DataFrame({c: self._group[f"coords/{c}"][:] for c in self.columns})

    def write(self, lo: int, hi: int, values: dict[str, np.ndarray]) -> None:
        """Write rows ``[lo, hi)`` of every array (creating arrays on first use), then flag the chunk done."""
        if lo % self.chunk_size or (hi != min(self.n, lo + self.chunk_size)):
            raise ProbeError(f"rows [{lo}, {hi}) are not a chunk of {self.chunk_size} windows")
        for name, v in values.items():
            v = np.asarray(v)
            if len(v) != hi - lo:
                raise ProbeError(f"array {name!r} has {len(v)} rows for a chunk of {hi - lo} windows")
            if name not in self._group:
                fill = np.nan if v.dtype.kind == "f" else 0
                self._group.create_array(name, shape=(self.n, *v.shape[1:]), dtype=v.dtype, fill_value=fill,
                                         chunks=(self.chunk_size, *v.shape[1:]))
            self._group[name][lo:hi] = v
        self._group["done"][lo // self.chunk_size] = True

    def to_frame(self) -> pd.DataFrame:
        """Coordinates plus every result array of one or two axes (columns ``name_k`` for a second axis)."""
        out = self.coords()
        for name in self.arrays():
            a = self._group[name]
            if a.ndim == 1:
                out[name] = a[:]
            elif a.ndim == 2:
                v = a[:]
                for k in range(v.shape[1]):
                    out[f"{name}_{k}"] = v[:, k]
        return out


def run_chunks(task: Callable[[int, int], dict[str, np.ndarray]], coords: pd.DataFrame, *, chunk_size: int,
               store: str | Path | None = None, fingerprint: str = "", client: object = None,
               progress: bool | None = None, desc: str = "windows", overwrite: bool = False
               ) -> WindowStore | dict[str, np.ndarray]:
    """Run ``task`` over the windows ``coords`` chunk by chunk, into a store on disk or into memory.

    Parameters
    ----------
    task : callable ``task(lo, hi) -> {name: array with hi - lo rows}``
        Computes the results of windows ``[lo, hi)``. Sent to the workers when ``client`` is given, so it
        must pickle (hold a :class:`~domains.dna.genome.Genome`, not an open file).
    coords : pandas.DataFrame
        One row per window (written into the store with the results).
    chunk_size : int
        Windows per chunk (and per chunk file on disk).
    store : str or Path, optional
        A Zarr directory. If it exists and holds this job (same ``fingerprint``), only the chunks not yet
        flagged done are computed. Default: results are gathered in memory.
    fingerprint : str
        What identifies the job (see :func:`fingerprint`); a store of another job is refused.
    client : dask.distributed.Client, optional
        Compute the chunks on its workers (the task is sent once, with ``scatter``); results are written by
        this process as they arrive, with at most two chunks per worker thread in flight.
    progress : bool or None, default None
        Progress bar with the rate in windows per second (None: only on a terminal).
    desc : str
        The bar's label.
    overwrite : bool, default False
        Replace a store that holds another job instead of refusing it.

    Returns
    -------
    WindowStore, or dict {name: numpy.ndarray} without ``store``
    """
    from tqdm.auto import tqdm

    n = len(coords)
    chunk_size = int(chunk_size)
    if chunk_size < 1:
        raise ProbeError(f"chunk_size must be a positive integer, got {chunk_size}")
    spans = [(lo, min(n, lo + chunk_size)) for lo in range(0, n, chunk_size)]
    if store is not None:
        ws = _open_or_create(Path(store), coords, chunk_size, fingerprint, overwrite)
        flags = ws.done
        todo = [s for s, f in zip(spans, flags) if not f]
        sink = ws.write
    else:
        ws, todo, parts = None, spans, {}

        def sink(lo: int, hi: int, values: dict) -> None:
            parts[lo] = values

    bar = tqdm(total=n, initial=n - sum(hi - lo for lo, hi in todo), desc=desc, unit="window", unit_scale=True,
               disable=not enabled(progress), smoothing=0.1)
    try:
        if client is None:
            for lo, hi in todo:
                sink(lo, hi, task(lo, hi))
                bar.update(hi - lo)
        else:
            _run_on_cluster(client, task, todo, sink, bar)
    finally:
        bar.close()
    if ws is not None:
        return ws
    if not parts:
        return {}
    names = parts[spans[0][0]].keys()
    return {k: np.concatenate([parts[lo][k] for lo, _ in spans]) for k in names}


def _open_or_create(path: Path, coords: pd.DataFrame, chunk_size: int, fp: str, overwrite: bool) -> WindowStore:
    if (path / "zarr.json").exists():
        ws = WindowStore(path)
        same = ws.fingerprint == fp and ws.n == len(coords) and ws.chunk_size == chunk_size
        if same:
            return ws
        if not overwrite:
            why = (f"{ws.n} windows in chunks of {ws.chunk_size}" if (ws.n, ws.chunk_size) != (len(coords), chunk_size)
                   else "another model, window set or options")
            raise ProbeError(f"store {str(path)!r} holds another job ({why}); give a new path, or "
                             "overwrite=True to replace it")
    elif path.exists() and any(path.iterdir()):
        raise ProbeError(f"{str(path)!r} exists and is not a window store; give a new or empty directory")
    return WindowStore.create(path, coords, chunk_size=chunk_size, fingerprint=fp)


def _run_on_cluster(client: object, task: Callable, todo: list[tuple[int, int]], sink: Callable, bar: object) -> None:
    from distributed import as_completed

    if not todo:
        return
    remote = client.scatter(task, broadcast=True)
    threads = sum(client.nthreads().values()) or 1
    queue = list(reversed(todo))
    running = as_completed()
    spans = {}

    def submit() -> None:
        lo, hi = queue.pop()
        f = client.submit(_call, remote, lo, hi, pure=False)
        spans[f.key] = (lo, hi)
        running.add(f)

    for _ in range(min(len(queue), 2 * threads)):
        submit()
    for f in running:
        lo, hi = spans.pop(f.key)
        sink(lo, hi, f.result())
        bar.update(hi - lo)
        f.release()
        if queue:
            submit()


def _call(task: Callable, lo: int, hi: int) -> dict[str, np.ndarray]:
    return task(lo, hi)
