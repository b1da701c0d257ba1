"""The active-learning loop: explore -> trigger -> label -> retrain, resumable after a crash.

Resumption is by deterministic replay. Given its seed, the loop is a deterministic
function of the labels it has received; every label is committed to the
:class:`~probe.active.store.LabelStore` under a key naming the step and walker that asked
for it *before* the model sees it. A resumed run therefore replays from the start and,
whenever the trigger fires at a step whose label is already stored, takes the stored label
instead of calling the oracle. The replayed trajectory is the original one (checked: the
stored configuration must equal the replayed one), nothing is lost and no configuration is
labelled twice. Replay costs exploration and retraining, never oracle calls.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from ..errors import ProbeError
from ..progress import enabled
from .oracle import Oracle, label_batch
from .store import Label, LabelStore
from .triggers import Trigger

__all__ = ["Candidate", "Explorer", "Learner", "ActiveLoop", "LoopResult"]


@dataclass(frozen=True)
class Candidate:
    """One explored configuration and what the model says about it.

    Attributes
    ----------
    item : object
        What the oracle labels (passed to ``Oracle.label``).
    observation : dict of str -> float
        Named values the trigger reads (uncertainties) and the history records.
    """

    item: Any
    observation: Mapping[str, float]


@runtime_checkable
class Explorer(Protocol):
    """Proposes configurations with the current model (e.g. molecular dynamics walkers)."""

    def start(self, seed: int) -> Sequence[Any]:
        """Reset to the initial state for ``seed``; return the items labelled before exploring."""

    def step(self) -> Sequence[Candidate]:
        """Advance every walker by one step; one candidate per walker."""

    def encode(self, item: Any) -> dict[str, np.ndarray]:
        """The item as named arrays (what the store keeps)."""

    def labelled(self, walker: int, item: Any, targets: Mapping[str, np.ndarray]) -> None:
        """Told that ``walker``'s present item was labelled (after the model was retrained)."""


@runtime_checkable
class Learner(Protocol):
    """The model being learned."""

    def start(self, seed: int) -> None:
        """Reset to the untrained state for ``seed``."""

    def fit(self, labels: Sequence[Label]) -> None:
        """Retrain on all labels so far (deterministically)."""


@dataclass(frozen=True)
class LoopResult:
    """What an active-learning run did.

    Attributes
    ----------
    history : pandas.DataFrame
        One row per step and walker: ``step``, ``walker``, every observation, ``label``,
        ``reason``, ``trigger_value``.
    n_labels : int
        Labels in the store after the run (initial set included).
    oracle_calls : int
        Items sent to the oracle by *this* run (labels reused from the store not counted).
    reused : int
        Labels taken from the store instead of the oracle (a resumed run).
    steps : int
        Exploration steps taken.
    events : pandas.DataFrame
        The labelling events: ``step``, ``walker``, ``key``, ``reason``, ``reused``.
    """

    history: pd.DataFrame
    n_labels: int
    oracle_calls: int
    reused: int
    steps: int
    events: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_frame(self) -> pd.DataFrame:
        return self.history


class ActiveLoop:
    """Explore, trigger, label, retrain; resumable from its label store.

    Parameters
    ----------
    explorer : Explorer
    learner : Learner
    trigger : Trigger
        Copied once per walker (each walker accumulates its own state).
    oracle : Oracle
    store : LabelStore
    steps : int
        Exploration steps per walker.
    seed : int, default 0
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        Runs the oracle calls (``None``: in this thread).
    retries : int, default 2
        Extra attempts per oracle call.
    max_labels : int, optional
        Budget of labels (initial set included); the trigger is ignored once it is spent.
    """

    def __init__(self, explorer: Explorer, learner: Learner, trigger: Trigger, oracle: Oracle, store: LabelStore,
                 *, steps: int, seed: int = 0, executor: Executor | Any | None = None, retries: int = 2,
                 max_labels: int | None = None) -> None:
        self.explorer = explorer
        self.learner = learner
        self.trigger = trigger
        self.oracle = oracle
        self.store = store
        self.steps = int(steps)
        self.seed = int(seed)
        self.executor = executor
        self.retries = int(retries)
        self.max_labels = max_labels

    def _obtain(self, keys: list[str], items: list[Any], infos: list[dict]) -> tuple[list[Label], list[bool]]:
        """Labels for ``items``: from the store where present, else from the oracle (committed first)."""
        out: list[Label | None] = [None] * len(items)
        missing = []
        for i, key in enumerate(keys):
            stored = self.store.get(key)
            if stored is None:
                missing.append(i)
                continue
            encoded = self.explorer.encode(items[i])
            for name, arr in encoded.items():
                old = stored.inputs.get(name)
                if old is None or old.shape != np.shape(arr) or not np.allclose(old, arr, rtol=0, atol=1e-6):
                    raise ProbeError(f"label store {self.store.path}: stored label {key!r} has a different "
                                     f"{name!r} than this run produces; the store belongs to another run or the "
                                     "run is not deterministic")
            out[i] = stored
        if missing:
            targets = label_batch(self.oracle, [items[i] for i in missing], executor=self.executor,
                                  retries=self.retries, first_index=0)
            for i, t in zip(missing, targets):
                # committed before anybody uses it
                out[i] = self.store.append(keys[i], self.explorer.encode(items[i]), t, infos[i])
        return out, [i not in missing for i in range(len(items))]  # type: ignore[return-value]

    def run(self, *, progress: bool | None = None) -> LoopResult:
        """Run (or resume) to ``steps`` exploration steps; see the class docstring."""
        from tqdm.auto import tqdm

        self.learner.start(self.seed)
        initial = list(self.explorer.start(self.seed))
        keys = [f"init-{i}" for i in range(len(initial))]
        labels, flags = self._obtain(keys, initial, [{"step": -1, "walker": -1, "reason": "initial"} for _ in initial])
        reused = sum(flags)
        calls = len(flags) - reused
        if labels:
            self.learner.fit(labels)
        triggers: list[Trigger] | None = None
        rows, events = [], []
        bar = tqdm(range(self.steps), desc="active learning", disable=not enabled(progress))
        for step in bar:
            cands = list(self.explorer.step())
            if triggers is None:
                triggers = [copy.deepcopy(self.trigger) for _ in cands]
            decisions = [t.check(c.observation) for t, c in zip(triggers, cands)]
            budget_left = None if self.max_labels is None else self.max_labels - len(labels)
            chosen = [w for w, d in enumerate(decisions) if d.label]
            if budget_left is not None:
                chosen = chosen[:max(budget_left, 0)]
            for w, (c, d) in enumerate(zip(cands, decisions)):
                rows.append({"step": step, "walker": w, **{k: float(v) for k, v in c.observation.items()},
                             "label": w in chosen, "reason": d.reason, "trigger_value": d.value})
            if not chosen:
                continue
            keys = [f"step-{step}-walker-{w}" for w in chosen]
            infos = [{"step": step, "walker": w, "reason": decisions[w].reason, "value": decisions[w].value}
                     for w in chosen]
            new, flags = self._obtain(keys, [cands[w].item for w in chosen], infos)
            calls += len(flags) - sum(flags)
            reused += sum(flags)
            labels.extend(new)
            self.learner.fit(labels)
            for w, lab, was_stored in zip(chosen, new, flags):
                triggers[w].reset()
                self.explorer.labelled(w, cands[w].item, lab.targets)
                events.append({"step": step, "walker": w, "key": lab.key, "reason": decisions[w].reason,
                               "reused": was_stored})
            bar.set_postfix(labels=len(labels), oracle_calls=calls)
        stored = len(self.store)
        if stored > len(labels):
            warnings.warn(f"label store {self.store.path} holds {stored - len(labels)} label(s) this run did not "
                          "reach (a longer earlier run?)", stacklevel=2)
        return LoopResult(history=pd.DataFrame(rows), n_labels=len(labels), oracle_calls=calls, reused=reused,
                          steps=self.steps, events=pd.DataFrame(events, columns=["step", "walker", "key", "reason",
                                                                                 "reused"]))
