"""Oracles and their dispatch through any executor, with retries and finiteness checks.

An oracle is any object with ``label(batch) -> list of targets``, where a target is a
mapping from names to arrays (e.g. ``{"energy": ..., "forces": ...}``). Calls go through a
:class:`concurrent.futures.Executor` (thread or process pool) or anything with the same
``submit(fn, *args) -> future`` / ``future.result()`` shape, such as a
``dask.distributed.Client``, so labelling can move to a cluster without code changes.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import ProbeError

__all__ = ["Oracle", "OracleError", "label_batch", "check_targets"]

Targets = dict[str, np.ndarray]


@runtime_checkable
class Oracle(Protocol):
    """The expensive reference: ``label(batch)`` returns one target mapping per item."""

    def label(self, batch: Sequence[Any]) -> Sequence[Mapping[str, Any]]: ...


class OracleError(ProbeError):
    """The oracle failed on an item after every retry."""


def check_targets(targets: Mapping[str, Any], *, item: int) -> Targets:
    """Convert one item's targets to float arrays and check they are finite.

    Raises
    ------
    ProbeError
        Naming the item and the target holding a non-finite value, or an empty mapping.
    """
    if not isinstance(targets, Mapping) or not targets:
        raise ProbeError(f"oracle returned {type(targets).__name__} for item {item}; expected a non-empty mapping")
    out = {}
    for name, value in targets.items():
        arr = np.array(value, dtype=np.float64)
        bad = ~np.isfinite(arr)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0]) if arr.ndim else ()
            raise ProbeError(f"oracle returned a non-finite {name!r} for item {item} at index {where}")
        out[str(name)] = arr
    return out


def _call(oracle: Oracle, item: Any, attempt: int) -> Mapping[str, Any]:
    # ``attempt`` makes each retry a distinct task (a Dask client would otherwise reuse a failed result)
    result = list(oracle.label([item]))
    if len(result) != 1:
        raise ProbeError(f"oracle returned {len(result)} targets for 1 item")
    return result[0]


def label_batch(oracle: Oracle, batch: Sequence[Any], *, executor: Executor | Any | None = None,
                retries: int = 2, first_index: int = 0) -> list[Targets]:
    """Label every item of ``batch``, one task per item, retrying failures.

    Each item is submitted as its own task, so a pool of ``k`` workers labels ``k`` items at
    once. A task that raises or returns a non-finite target is resubmitted up to ``retries``
    times; then :class:`OracleError` names the item and the last failure. Nothing is returned
    unless every item succeeded, so a caller that stores the result never stores half a batch
    whose other half failed silently.

    Parameters
    ----------
    oracle : Oracle
        Must be picklable when the executor runs in other processes.
    batch : sequence
        Items to label.
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        ``None`` runs in the calling thread.
    retries : int, default 2
        Extra attempts per item after the first.
    first_index : int, default 0
        Index of ``batch[0]`` in the caller's numbering (used in messages).

    Returns
    -------
    list of dict of str -> numpy.ndarray
    """
    if retries < 0:
        raise ProbeError(f"retries must be >= 0, got {retries}")
    if not isinstance(oracle, Oracle):
        raise ProbeError(f"{type(oracle).__name__} is not an oracle: it has no label(batch) method")
    results: list[Targets | None] = [None] * len(batch)
    errors: list[BaseException | None] = [None] * len(batch)
    pending = list(range(len(batch)))
    for attempt in range(retries + 1):
        if not pending:
            break
        if executor is None:
            outcomes = []
            for i in pending:
                try:
                    outcomes.append(_call(oracle, batch[i], attempt))
                except Exception as err:  # noqa: BLE001 - any oracle failure is retried
                    outcomes.append(err)
        else:
            futures = [executor.submit(_call, oracle, batch[i], attempt) for i in pending]
            outcomes = []
            for fut in futures:
                try:
                    outcomes.append(fut.result())
                except Exception as err:  # noqa: BLE001
                    outcomes.append(err)
        still = []
        for i, outcome in zip(pending, outcomes):
            if isinstance(outcome, BaseException):
                errors[i] = outcome
                still.append(i)
                continue
            try:
                results[i] = check_targets(outcome, item=first_index + i)
            except ProbeError as err:
                errors[i] = err
                still.append(i)
        if still and attempt < retries:
            warnings.warn(f"oracle failed on item(s) {[first_index + i for i in still]} "
                          f"(attempt {attempt + 1} of {retries + 1}): {errors[still[0]]}; retrying", stacklevel=2)
        pending = still
    if pending:
        i = pending[0]
        raise OracleError(f"oracle failed on item {first_index + i} after {retries + 1} attempts: "
                          f"{type(errors[i]).__name__}: {errors[i]}") from errors[i]
    return results  # type: ignore[return-value]
