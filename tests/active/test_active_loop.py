"""The loop on a domain-free toy: a seeded random walk labelled with sin(x)."""

import warnings

import numpy as np
import pytest

from probe.active.loop import ActiveLoop, Candidate
from probe.active.oracle import OracleError
from probe.active.store import LabelStore
from probe.active.triggers import Threshold


class Walk:
    """Explorer: a seeded random walk; the observation is the distance to the nearest label."""

    def __init__(self, learner):
        self.learner = learner

    def start(self, seed):
        self.rng = np.random.default_rng(seed)
        self.x = 0.0
        return [0.0, 0.5]

    def step(self):
        self.x += float(self.rng.normal(scale=0.3))
        return [Candidate(self.x, {"distance": self.learner.distance(self.x)})]

    def encode(self, item):
        return {"x": np.array([item])}

    def labelled(self, walker, item, targets):
        pass


class Nearest:
    """Learner: remembers its labels (retraining is re-reading them all)."""

    def start(self, seed):
        self.xs = np.zeros(0)
        self.fits = 0

    def fit(self, labels):
        self.xs = np.array([float(lab.inputs["x"][0]) for lab in labels])
        self.fits += 1

    def distance(self, x):
        return float(np.abs(self.xs - x).min())


class Sine:
    def __init__(self, fail_after=None):
        self.calls, self.fail_after = 0, fail_after

    def label(self, batch):
        self.calls += len(batch)
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("oracle crashed")
        return [{"y": np.sin(x)} for x in batch]


def _run(path, oracle, steps=200, seed=3):
    learner = Nearest()
    with LabelStore(path, config={"seed": seed}) as store:
        loop = ActiveLoop(Walk(learner), learner, Threshold("distance", 0.2), oracle, store, steps=steps, seed=seed,
                          retries=1)
        return loop.run(progress=False), learner


def _contents(path):
    with LabelStore(path) as s:
        return [(lab.key, lab.inputs["x"].tolist(), lab.targets["y"].tolist()) for lab in s]


def test_loop_labels_when_triggered_and_commits_everything(tmp_path):
    res, learner = _run(tmp_path / "a.sqlite", Sine())
    assert res.n_labels == len(_contents(tmp_path / "a.sqlite")) == res.oracle_calls > 2
    assert learner.fits == 1 + len(res.events)
    labelled = res.history[res.history["label"]]
    assert (labelled["distance"] > 0.2).all() and (res.history[~res.history["label"]]["distance"] <= 0.2).all()
    for _key, x, y in _contents(tmp_path / "a.sqlite"):
        assert y == pytest.approx(np.sin(x))


def test_failed_oracle_leaves_a_consistent_store_and_the_run_resumes_exactly(tmp_path):
    full, _ = _run(tmp_path / "full.sqlite", Sine())
    path = tmp_path / "crash.sqlite"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(OracleError, match="oracle crashed"):
            _run(path, Sine(fail_after=5))
    partial = _contents(path)
    assert partial == _contents(tmp_path / "full.sqlite")[: len(partial)] and len(partial) == 5
    oracle = Sine()
    resumed, _ = _run(path, oracle)
    assert _contents(path) == _contents(tmp_path / "full.sqlite")
    assert oracle.calls == resumed.oracle_calls == full.n_labels - 5 and resumed.reused == 5
    # a third run labels nothing
    again, _ = _run(path, Sine(fail_after=0))
    assert again.oracle_calls == 0 and again.n_labels == full.n_labels
