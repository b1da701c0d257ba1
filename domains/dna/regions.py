r"""Predictions and saturation mutagenesis over genome windows (BED regions, genome tiles), streamed in chunks.

Each chunk of windows is cut from the indexed genome, one-hot encoded, and run through the model in
batches of ``batch_size``; the results go to a Zarr store (:mod:`domains.dna.store`) with the windows'
coordinates, so a job over millions of windows holds one chunk in memory at a time and resumes after a
kill. With ``rc=True`` the prediction is the average over both strands,

.. math:: \bar f(x) = \tfrac12 \left( f(x) + f(\mathrm{rc}(x)) \right),

the reverse-complement averaging of Basset/Basenji-style evaluation (Kelley et al., Genome Res. 28:739,
2018). With ``client`` the chunks run on a Dask cluster (``dask.distributed.Client``); each worker
process keeps its own copy of the model on its ``device`` (``"cuda"`` on a worker started with one
GPU visible, e.g. dask-cuda's ``LocalCUDACluster``: one worker per GPU).
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from probe import ProbeError
from probe.devices import model_hygiene, resolve_device
from probe.graph import select_output
from probe.models import forward

from .genome import Genome, _check_windows, _window_label
from .store import WindowStore, fingerprint, run_chunks

__all__ = ["predict_windows", "region_ism", "ModelRunner"]


class ModelRunner:
    """The model as a chunk task sees it: batched, on its device, one output tensor (N, K) per batch.

    In this process (``private=False``) the model is used as it is (the caller holds it in
    :func:`probe.devices.model_hygiene`); on a cluster worker (``private=True``) the runner makes one copy
    of it on ``device`` in eval mode, the first time it is called there, and keeps it.
    """

    def __init__(self, model: object, *, device: str | torch.device | None, batch_size: int, rc: bool = False,
                 output: int | str | None = None, reduce: object = None, private: bool = False):
        self.model, self.device, self.batch_size, self.rc = model, device, int(batch_size), bool(rc)
        self.output, self.reduce, self.private = output, reduce, private
        self._ready = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_ready"], state["_lock"] = None, None
        state["private"] = True
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def prepared(self) -> object:
        """The model to call: the caller's, or this process's own copy on ``device``."""
        if not self.private or not isinstance(self.model, torch.nn.Module):
            return self.model
        with self._lock:
            if self._ready is None:
                dev = resolve_device(self.device, self.model, None)
                m = copy.deepcopy(self.model).to(dev).eval()
                for p in m.parameters():
                    p.requires_grad_(False)
                self._ready = m
        return self._ready

    def call(self, m: object) -> object:
        """``m`` as a callable returning one tensor (``output`` and ``reduce`` applied)."""
        if self.output is None and self.reduce is None:
            return m
        return lambda x: select_output(m(x), self.output, self.reduce)

    def predict(self, X: torch.Tensor, labels: object = None) -> np.ndarray:
        """Outputs (N, K) of one-hot windows X, strand-averaged when ``rc``; ``labels(i)`` names window i."""
        m = self.prepared()
        dev = resolve_device(self.device, m, X)
        f = self.call(m)
        out = []
        with torch.no_grad():
            for lo in range(0, len(X), self.batch_size):
                x = X[lo:lo + self.batch_size].to(dev)
                try:
                    y = forward(f, x)
                    if self.rc:
                        y = (y + forward(f, x.flip(1, 2))) / 2
                except ProbeError as err:
                    where = labels(lo) if labels is not None else f"window {lo}"
                    raise ProbeError(f"on {where} and the {len(x) - 1} after it: {err}") from None
                out.append(y.detach().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


class _PredictTask:
    def __init__(self, runner: ModelRunner, genome: Genome, windows: pd.DataFrame):
        self.runner, self.genome, self.windows = runner, genome, windows

    def __call__(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        out, bs = [], self.runner.batch_size
        for b in range(lo, hi, bs):  # one batch of windows is encoded at a time, not the whole chunk
            w = self.windows.iloc[b:min(hi, b + bs)]
            out.append(self.runner.predict(self.genome.one_hot(w), labels=lambda i, w=w: _window_label(w, i)))
        return {"y": np.concatenate(out)}


class _ISMTask:
    def __init__(self, runner: ModelRunner, genome: Genome, windows: pd.DataFrame, options: dict):
        self.runner, self.genome, self.windows, self.options = runner, genome, windows, options

    def __call__(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        from .ism import saturation_mutagenesis

        w = self.windows.iloc[lo:hi]
        X = self.genome.one_hot(w)
        m = self.runner.prepared()
        r = self.runner
        table = saturation_mutagenesis(m, X, batch_size=r.batch_size, device=r.device, output=r.output,
                                       reduce=r.reduce, **self.options)
        return {"y": r.predict(X, labels=lambda i: _window_label(w, i)), "ism": table.cpu().numpy()}


def _job(model: object, genome: Genome | str | Path, windows: pd.DataFrame, device: object, batch_size: int,
         rc: bool, output: object, reduce: object, client: object) -> tuple[ModelRunner, Genome, pd.DataFrame]:
    genome = genome if isinstance(genome, Genome) else Genome(genome)
    w = _check_windows(windows).reset_index(drop=True)
    if len(w) == 0:
        raise ProbeError("no windows to work on")
    if int(batch_size) < 1:
        raise ProbeError(f"batch_size must be a positive integer, got {batch_size}")
    cols = [c for c in ("chrom", "start", "end", "strand", "name") if c in w]
    w = w[cols].copy()
    if "strand" not in w:
        w["strand"] = "+"
    for r in w[["chrom"]].drop_duplicates().itertuples():
        genome.length(r.chrom)  # unknown chromosomes are named before any work
    runner = ModelRunner(model, device=device, batch_size=batch_size, rc=rc, output=output, reduce=reduce,
                         private=client is not None)
    return runner, genome, w


def _local_device(device: object, model: object, client: object) -> torch.device | None:
    """Where this process puts the model for the job (None on a cluster: the workers place their copies)."""
    return None if client is not None else resolve_device(device, model, None)


def predict_windows(model: object, genome: Genome | str | Path, windows: pd.DataFrame, *, rc: bool = False,
                    batch_size: int = 256, chunk_size: int = 8192, store: str | Path | None = None,
                    client: object = None, device: str | torch.device | None = None,
                    output: int | str | None = None, reduce: object = None, progress: bool | None = None,
                    overwrite: bool = False) -> pd.DataFrame | WindowStore:
    """The model's outputs on genome windows, in chunks, into memory or a resumable store.

    Parameters
    ----------
    model : torch.nn.Module or callable
        Maps (B, 4, L) to (B, K) (or what ``output``/``reduce`` turn into that).
    genome : Genome or path
    windows : pandas.DataFrame
        ``chrom``, ``start``, ``end`` (equal widths), optional ``strand`` (``-``: reverse complement)
        and ``name``: :func:`~domains.dna.genome.centred_windows`, :func:`~domains.dna.genome.tile_genome`.
    rc : bool, default False
        Average the outputs over the window and its reverse complement.
    batch_size : int, default 256
        Windows per forward pass.
    chunk_size : int, default 8192
        Windows per chunk written (memory holds one chunk per worker thread).
    store : str or Path, optional
        Zarr directory; an interrupted job resumes there. Default: in memory.
    client : dask.distributed.Client, optional
        Run the chunks on a Dask cluster; results equal one process's.
    device : str or torch.device, optional
        Default: the model's device, else the CPU.
    output, reduce : as in :func:`~domains.dna.saturation_mutagenesis`.
    progress : bool or None, default None
        Progress bar with windows per second (None: only on a terminal).
    overwrite : bool, default False
        Replace a store holding another job.

    Returns
    -------
    pandas.DataFrame (the windows plus ``y_0 .. y_{K-1}``), or the WindowStore (array ``y``, (N, K))
    """
    runner, genome, w = _job(model, genome, windows, device, batch_size, rc, output, reduce, client)
    fp = fingerprint(w, model, job="predict", rc=rc, output=output, reduce=repr(reduce), genome=str(genome.path))
    with model_hygiene(model, _local_device(device, model, client)):
        res = run_chunks(_PredictTask(runner, genome, w), w, chunk_size=chunk_size, store=store, fingerprint=fp,
                         client=client, progress=progress, desc="predict", overwrite=overwrite)
    if isinstance(res, WindowStore):
        return res
    out = w.copy()
    for k in range(res["y"].shape[1]):
        out[f"y_{k}"] = res["y"][:, k]
    return out


def region_ism(model: object, genome: Genome | str | Path, windows: pd.DataFrame, *, rc: bool = False,
               batch_size: int = 256, chunk_size: int = 256, store: str | Path | None = None, client: object = None,
               device: str | torch.device | None = None, output: int | str | None = None, reduce: object = None,
               progress: bool | None = None, overwrite: bool = False, **ism_options: object
               ) -> dict[str, np.ndarray] | WindowStore:
    """Saturation mutagenesis of genome windows (BED regions centred on their summits, say), chunk by chunk.

    Each window's table is :func:`~domains.dna.saturation_mutagenesis` of its one-hot sequence (read on its
    strand), :math:`\\Delta_{b,p} = f(x^{(b,p)}) - f(x)`, with the receptive-field fast path where the
    model allows; the window's own prediction is kept beside it.

    Parameters
    ----------
    model, genome, windows, batch_size, store, client, device, output, reduce, progress, overwrite
        As in :func:`predict_windows` (``batch_size`` counts mutants here).
    rc : bool, default False
        Average the stored prediction ``y`` over both strands (the ISM table is of the window as read).
    chunk_size : int, default 256
        Windows per chunk: a chunk holds ``chunk_size x 4 x L x K`` values. Each chunk decides on its own
        whether to capture the model's graph for the fast path (and pays for the capture), so chunks should
        be large enough for the capture to be a small part of their time.
    **ism_options
        Passed to :func:`~domains.dna.saturation_mutagenesis` (``target``, ``start``, ``end``, ``fast``, ...).

    Returns
    -------
    dict {"y": (N, K), "ism": (N, 4, L[, K])} in memory, or the WindowStore holding those arrays.
    """
    runner, genome, w = _job(model, genome, windows, device, batch_size, rc, output, reduce, client)
    fp = fingerprint(w, model, job="ism", rc=rc, output=output, reduce=repr(reduce), genome=str(genome.path),
                     **{k: repr(v) for k, v in ism_options.items()})
    with model_hygiene(model, _local_device(device, model, client)):
        return run_chunks(_ISMTask(runner, genome, w, ism_options), w, chunk_size=chunk_size, store=store,
                          fingerprint=fp, client=client, progress=progress, desc="ISM", overwrite=overwrite)
