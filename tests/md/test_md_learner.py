"""Warm-started retraining: cheaper updates that keep the run deterministic and resumable."""

import numpy as np
import pytest

from domains.md.learner import PotentialLearner
from domains.md.onthefly import load_system, run_onthefly
from domains.md.potential import EnsemblePotential
from domains.md.triggers import hybrid_trigger
from probe.active.store import LabelStore
from probe.errors import ProbeError

TINY = {"timestep": 5.0, "temperature": 500.0, "cutoff": 5.0, "hidden": 8, "n_members": 3, "first_steps": 40,
        "fit_steps": 5, "n_initial": 3, "device": "cpu", "progress": False, "update": "warm", "batch_size": 3}


def _contents(path):
    with LabelStore(path) as s:
        return [(lab.key, lab.inputs["positions"].tobytes(), lab.targets["forces"].tobytes()) for lab in s]


def test_warm_updates_resume_exactly(tmp_path):
    trig = hybrid_trigger(0.02, floor=0.1, warmup=3)
    kw = dict(oracle="emt", seed=4, bootstrap=True, **TINY)
    full = run_onthefly(load_system("cu13"), trig, steps=10, store=tmp_path / "a.sqlite", **kw)
    assert full.result.n_labels > TINY["n_initial"] + 2
    assert "floor" in set(full.result.events["reason"])  # the warm-up floor labelled
    run_onthefly(load_system("cu13"), trig, steps=5, store=tmp_path / "b.sqlite", **kw)
    resumed = run_onthefly(load_system("cu13"), trig, steps=10, store=tmp_path / "b.sqlite", **kw)
    assert resumed.result.reused > 0
    assert _contents(tmp_path / "a.sqlite") == _contents(tmp_path / "b.sqlite")
    np.testing.assert_array_equal(resumed.result.history["sigma_dE"], full.result.history["sigma_dE"])


def test_warm_update_keeps_the_optimiser_and_takes_minibatches():
    pot = EnsemblePotential([29], n_members=2, hidden=4, cutoff=5.0)
    learner = PotentialLearner(pot, first_steps=2, steps=2, update="warm", batch_size=2)
    calls = []
    original = pot.fit

    def spy(confs, **kw):
        calls.append((len(confs), kw.get("batch_size"), kw.get("warm_optimizer", False)))
        return original(confs, **kw)

    pot.fit = spy

    class Lab:
        def __init__(self, k):
            atoms = load_system("cu13")
            self.inputs = {"numbers": atoms.numbers, "positions": atoms.positions + 0.01 * k}
            self.targets = {"energy": np.array(-1.0 * k), "forces": np.zeros((13, 3))}

    learner.start(0)
    learner.fit([Lab(k) for k in range(3)])
    optimiser = pot._optimizer
    learner.fit([Lab(k) for k in range(4)])
    assert calls == [(3, None, False), (4, 2, True)] and pot._optimizer is optimiser
    with pytest.raises(ProbeError, match="update"):
        PotentialLearner(pot, update="lazy")
