import os
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from domains.md.onthefly import compare_triggers, load_system, run_onthefly
from domains.md.oracles import CalculatorOracle
from domains.md.triggers import energy_rate_trigger, max_force_deviation_trigger
from probe.active.oracle import OracleError
from probe.active.store import LabelStore
from probe.errors import ProbeError

ROOT = Path(__file__).resolve().parents[2]
TINY = {"timestep": 5.0, "temperature": 500.0, "cutoff": 5.0, "hidden": 8, "n_members": 3, "first_steps": 40,
        "fit_steps": 10, "n_initial": 3, "device": "cpu", "progress": False}

RUN = """
import sys, torch
torch.set_num_threads(1)
from domains.md.onthefly import load_system, run_onthefly
from domains.md.triggers import energy_rate_trigger
run_onthefly(load_system("cu13"), energy_rate_trigger(0.02), oracle="emt", steps=int(sys.argv[2]), seed=5,
             store=sys.argv[1], **{TINY!r})
"""


def _contents(path):
    with LabelStore(path) as s:
        return [(lab.key, lab.inputs["positions"].tobytes(), lab.targets["energy"].tobytes(),
                 lab.targets["forces"].tobytes()) for lab in s]


def _count(path):
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.1)
        try:
            return db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path):
    steps = 30
    script = tmp_path / "run.py"
    script.write_text(RUN.replace("{TINY!r}", repr(TINY)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    killed = tmp_path / "killed.sqlite"
    proc = subprocess.Popen([sys.executable, str(script), str(killed), str(steps)], env=env)
    deadline = time.time() + 120
    while _count(killed) < 6 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(_contents(killed))
    assert n_before >= 6
    # resume, and run uninterrupted, here (one thread, as in the script)
    resumed = run_onthefly(load_system("cu13"), energy_rate_trigger(0.02), oracle="emt", steps=steps, seed=5,
                           store=killed, **TINY)
    full = tmp_path / "full.sqlite"
    fresh = run_onthefly(load_system("cu13"), energy_rate_trigger(0.02), oracle="emt", steps=steps, seed=5,
                         store=full, **TINY)
    assert len(_contents(full)) > n_before
    assert resumed.result.reused == n_before and resumed.result.oracle_calls == fresh.result.n_labels - n_before
    assert _contents(killed) == _contents(full)  # same keys, configurations and labels, bit for bit


def test_both_triggers_side_by_side(tmp_path):
    cmp = compare_triggers(load_system("cu13"), {"energy-rate": energy_rate_trigger(0.05),
                                                 "max-force-dev": max_force_deviation_trigger(0.1, 0.4)},
                           oracle="emt", steps=12, seed=0, heldout_every=4, drift_every=4, workdir=tmp_path, **TINY)
    t = cmp.table
    assert list(t.index) == ["energy-rate", "max-force-dev"]
    assert np.isfinite(t[["force_rmse", "max_abs_drift", "energy_rmse_heldout"]].to_numpy()).all()
    for name, run in cmp.runs.items():
        assert len(run.result.history) == 12 and run.result.n_labels == t.loc[name, "labels"]
        # fresh stores: every label is one oracle call, the initial ones plus one per labelled step
        n_steps = int(run.result.history["label"].sum())
        assert run.result.reused == 0 and len(run.result.events) == n_steps
        assert t.loc[name, "oracle_calls"] == TINY["n_initial"] + n_steps == run.result.n_labels
        h = run.result.history
        assert {"sigma_dE", "max_force_deviation", "energy_std"} <= set(h.columns)
        np.testing.assert_allclose(h["sigma_dE"], h["sigma_dEdt"] * TINY["timestep"])  # eV = eV/fs * fs
        assert (tmp_path / f"labels-{name}.sqlite").exists()
    # the uncertainty-free steps were really trusted: a labelled step had a trigger verdict to label
    hist = cmp.runs["max-force-dev"].result.history
    assert (hist[hist["label"]]["max_force_deviation"] >= 0.1).all()
    assert (hist[~hist["label"]]["max_force_deviation"] < 0.1).all()
    assert hist["label"].any()  # so the two lines above are not vacuous
    import matplotlib.pyplot as plt

    ax_d, ax_u, ax_c = cmp.plot()
    # drift panel: one line per trigger, its data the drift table; calls panel: one bar per trigger
    for line, (name, drift) in zip(ax_d.lines, cmp.drifts.items()):
        assert line.get_label() == name
        np.testing.assert_allclose(line.get_xdata(), drift["time_fs"])
        np.testing.assert_allclose(line.get_ydata(), drift["drift"])
    assert len(ax_d.lines) == len(cmp.drifts)
    np.testing.assert_allclose([bar.get_height() for bar in ax_c.patches], t["oracle_calls"])
    assert [tick.get_text() for tick in ax_c.get_xticklabels()] == list(t.index)
    # uncertainty panel: the walker-0 curve of each trigger, and a tick per labelling event
    curves = [line for line in ax_u.lines if line.get_marker() != "|"]
    ticks = [line for line in ax_u.lines if line.get_marker() == "|"]
    assert [c.get_label() for c in curves] == list(t.index)
    assert sum(len(tk.get_xdata()) for tk in ticks) == sum(len(r.result.events) for r in cmp.runs.values())
    plt.close(ax_d.figure)


class NaNAfter(CalculatorOracle):
    """EMT that returns NaN forces from its ``after``-th call on."""

    def __init__(self, after):
        super().__init__("emt")
        self.after, self.calls = after, 0

    def __getstate__(self):
        return self.__dict__

    def label(self, batch):
        self.calls += 1
        out = super().label(batch)
        if self.calls > self.after:
            out[0]["forces"][0, 0] = np.nan
        return out


def test_nan_oracle_is_retried_then_a_clear_error_and_the_store_stays_consistent(tmp_path):
    store = tmp_path / "labels.sqlite"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(OracleError, match="non-finite 'forces'.*index \\(0, 0\\)|after 3 attempts"):
            run_onthefly(load_system("cu13"), max_force_deviation_trigger(0.01, 10.0), oracle=NaNAfter(4), steps=10,
                         seed=0, store=store, retries=2, **TINY)
    with LabelStore(store) as s:
        labels = s.labels()
    assert len(labels) == 4
    assert all(np.isfinite(lab.targets["forces"]).all() for lab in labels)


def test_atoms_outside_the_elements_and_unknown_names():
    from domains.md.onthefly import MDExplorer
    from domains.md.potential import EnsemblePotential

    pot = EnsemblePotential(["Cu"], n_members=2, hidden=4, device="cpu")
    with pytest.raises(ProbeError, match="atom 0 is Pt"):
        MDExplorer(load_system("pt13"), pot)
    with pytest.raises(ProbeError, match="unknown system"):
        load_system("unobtainium")
    with pytest.raises(ProbeError, match="unknown oracle"):
        CalculatorOracle("gaussian")


def test_oracles_return_energy_and_forces(monkeypatch):
    water = load_system("glyoxal")
    (emt,) = CalculatorOracle("emt").label([water])
    assert emt["forces"].shape == (6, 3) and np.isfinite(emt["energy"])
    pytest.importorskip("tblite")
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    (xtb,) = CalculatorOracle("tblite").label([water])
    assert xtb["forces"].shape == (6, 3) and xtb["energy"] < -100  # GFN2-xTB total energy in eV
    assert os.environ["OMP_NUM_THREADS"] == "4"  # the caller's environment is left alone


def test_oracle_calculations_run_on_one_thread_and_restore_the_count():
    from ase.calculators.calculator import Calculator
    from threadpoolctl import threadpool_info, threadpool_limits

    from domains.md.oracles import ThreadLimited

    class Spy(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=()):
            super().calculate(atoms, properties, system_changes)
            self.seen = [d["num_threads"] for d in threadpool_info()]
            self.results = {"energy": 1.5, "forces": np.zeros((len(self.atoms), 3))}

    spy = Spy()
    a = load_system("glyoxal")
    a.calc = ThreadLimited(spy)
    with threadpool_limits(limits=2):
        before = [d["num_threads"] for d in threadpool_info()]
        assert a.get_potential_energy() == 1.5 and a.get_forces().shape == (6, 3)
        assert spy.seen == [1] * len(before) and len(before) >= 1  # every BLAS/OpenMP runtime, during the call
        assert [d["num_threads"] for d in threadpool_info()] == before  # and as it was afterwards


def test_pyscf_forces_are_minus_the_gradient_of_its_energy():
    pytest.importorskip("pyscf")
    from ase import Atoms

    h2 = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.80]])
    oracle = CalculatorOracle("pyscf", method="rhf", basis="sto-3g")
    (lab,) = oracle.label([h2])
    h = 1e-4
    plus, minus = h2.copy(), h2.copy()
    plus.positions[1, 2] += h
    minus.positions[1, 2] -= h
    (ep,), (em,) = oracle.label([plus]), oracle.label([minus])
    assert lab["forces"][1, 2] == pytest.approx(-(ep["energy"] - em["energy"]) / (2 * h), rel=1e-4)
    assert lab["forces"][1, 2] == pytest.approx(-lab["forces"][0, 2])


def test_cli_quick_writes_summary_and_figures(tmp_path, capsys, monkeypatch):
    import json

    import pandas as pd

    from probe.cli import main

    monkeypatch.delenv("PROBE_PROGRESS", raising=False)
    out = tmp_path / "md"
    assert main(["md", "--quick", "--out", str(out), "--steps", "6"]) == 0
    assert capsys.readouterr().err == f"[probe md] wrote {out}/summary.json; report: {out}/report.html\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["oracle_calls"] >= 3
    assert set(summary["triggers"]) == {"energy-rate", "max-force-dev"}
    for name in ("trigger_comparison.png", "energy_uncertainty.png", "trigger_comparison.csv",
                 "trigger_comparison.md", "steps.csv", "labels.csv"):
        assert (out / name).exists()
    # one row per MD step and per label, for each trigger, as many as the summary counts
    steps, labels = pd.read_csv(out / "steps.csv"), pd.read_csv(out / "labels.csv")
    assert "committee_energy_eV" in steps and "time_fs" in steps and "oracle_energy_eV" in labels
    for name, row in summary["triggers"].items():
        s, lab = steps[steps.trigger == name], labels[labels.trigger == name]
        assert list(s.step) == list(range(summary["steps"]))
        assert len(lab) == row["labels"] == row["oracle_calls"]
        assert (lab.reason != "initial").sum() == s.labelled.sum()
        moved = lab[lab.reason != "initial"]
        assert sorted(moved.step) == sorted(s.step[s.labelled]) and moved.oracle_energy_eV.notna().all()
        assert (moved.force_rms_error_eV_per_A > 0).all()
        np.testing.assert_allclose(moved.committee_energy_eV.to_numpy(),
                                   s.set_index("step").loc[moved.step, "committee_energy_eV"].to_numpy())
    assert pd.read_csv(out / "trigger_comparison.csv").trigger.tolist() == list(summary["triggers"])


def test_langevin_walkers_are_reproducible_given_the_seed():
    kw = dict(oracle="emt", steps=6, seed=2, integrator="langevin", walkers=2, **TINY)
    a = run_onthefly(load_system("cu13"), max_force_deviation_trigger(0.05, 1.0), **kw)
    b = run_onthefly(load_system("cu13"), max_force_deviation_trigger(0.05, 1.0), **kw)
    assert set(a.result.history["walker"]) == {0, 1}
    for (wa, sa, pa, va), (wb, sb, pb, vb) in zip(a.frames, b.frames):
        assert (wa, sa) == (wb, sb) and np.array_equal(pa, pb) and np.array_equal(va, vb)
    # the two walkers start from different velocities
    last = {w: p for w, s, p, _ in a.frames if s == 6}
    assert not np.allclose(last[0], last[1])
