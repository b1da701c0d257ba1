import numpy as np
import pytest
from ase import units

from domains.md.onthefly import MDExplorer, energy_drift, interval_drift, load_system, run_onthefly
from domains.md.potential import EnsemblePotential
from domains.md.triggers import energy_rate_trigger
from probe.active.store import LabelStore
from probe.errors import ProbeError

TINY = {"timestep": 5.0, "temperature": 500.0, "cutoff": 5.0, "hidden": 8, "n_members": 3, "first_steps": 40,
        "fit_steps": 10, "n_initial": 3, "device": "cpu", "progress": False}


@pytest.mark.parametrize("c", [0.5, 3.0])
def test_explorer_recovers_a_known_miscalibration_from_the_oracle_forces(c):
    atoms = load_system("cu13")
    pot = EnsemblePotential([29], n_members=3, hidden=8, cutoff=5.0, seed=0, device="cpu")
    explorer = MDExplorer(atoms, pot, timestep=5.0, temperature=500.0)
    explorer.start(0)
    (cand,) = explorer.step()
    obs = cand.observation
    assert obs["calibration_rate"] == obs["calibration_forces"] == 1.0  # no label yet: the raw spread
    assert obs["sigma_dE_cal_rate"] == obs["sigma_dE"]
    member_forces = explorer._members[:, 0]  # (M, N, 3): the committee's forces on walker 0
    mean, var, v = member_forces.mean(0), member_forces.var(0), cand.item.get_velocities()
    # oracle forces whose errors are c times the committee's spread, component by component ...
    sign = np.where(np.arange(var.size).reshape(var.shape) % 2, 1.0, -1.0)
    explorer.labelled(0, cand.item, {"forces": mean + c * np.sqrt(var) * sign, "energy": np.array(0.0)})
    w = explorer.CALIBRATION_PRIOR_WEIGHT  # one label, shrunk towards s^2 = 1 by w pseudo-labels
    assert explorer.calibration_forces.scale2 == pytest.approx((c ** 2 + w) / (1 + w), rel=1e-10)
    # ... and, separately, whose rate error sum_i dF_i . v_i is c times the predicted sigma(dE/dt)
    explorer.calibration_forces.reset()
    explorer.calibration_rate.reset()
    explorer._predicted[0] = (mean, var, v, obs["rate_variance"], 1)
    error = c * np.sqrt(obs["rate_variance"]) * v / (v ** 2).sum()
    explorer.labelled(0, cand.item, {"forces": mean + error, "energy": np.array(0.0)})
    assert explorer.calibration_rate.scale2 == pytest.approx((c ** 2 + w) / (1 + w), rel=1e-10)
    (nxt,) = explorer.step()
    s = np.sqrt((c ** 2 + w) / (1 + w))
    assert nxt.observation["sigma_dE_cal_rate"] == pytest.approx(s * nxt.observation["sigma_dE"], rel=1e-12)


def test_trigger_reads_the_chosen_observation():
    assert energy_rate_trigger(0.1).key == "sigma_dE"
    assert energy_rate_trigger(0.1, calibration="rate").key == "sigma_dE_cal_rate"
    assert energy_rate_trigger(0.1, calibration="forces").key == "sigma_dE_cal_forces"
    with pytest.raises(ProbeError, match="calibration"):
        energy_rate_trigger(0.1, calibration="yes")


def _contents(path):
    with LabelStore(path) as s:
        return [(lab.key, lab.inputs["positions"].tobytes(), lab.targets["forces"].tobytes()) for lab in s]


def test_calibrated_run_is_deterministic_and_resumes_exactly(tmp_path):
    trig = energy_rate_trigger(0.02, calibration="rate")
    full = run_onthefly(load_system("cu13"), trig, oracle="emt", steps=16, seed=3, store=tmp_path / "a.sqlite", **TINY)
    h = full.result.history
    assert full.result.n_labels > 4  # it labelled along the way, so the scale was fitted
    assert (h["calibration_rate"] != 1.0).any()
    np.testing.assert_allclose(h["sigma_dE_cal_rate"], np.sqrt(h["calibration_rate"]) * h["sigma_dE"], rtol=1e-12)
    # stop early, then resume to the same length: the scale is replayed from the stored labels
    run_onthefly(load_system("cu13"), trig, oracle="emt", steps=8, seed=3, store=tmp_path / "b.sqlite", **TINY)
    resumed = run_onthefly(load_system("cu13"), trig, oracle="emt", steps=16, seed=3, store=tmp_path / "b.sqlite",
                           **TINY)
    assert resumed.result.reused > 0
    assert _contents(tmp_path / "a.sqlite") == _contents(tmp_path / "b.sqlite")
    np.testing.assert_array_equal(resumed.result.history["calibration_rate"], h["calibration_rate"])


def test_interval_drift_splits_the_run_at_the_labels(tmp_path):
    run = run_onthefly(load_system("cu13"), energy_rate_trigger(0.02), oracle="emt", steps=12, seed=1, **TINY)
    iv = interval_drift(run, oracle="emt")
    labelled = run.result.events["step"].tolist()
    assert len(iv) == len([s for s in labelled if s + 1 < 12]) + 1
    assert iv["start"].iloc[0] == 0 and iv["end"].iloc[-1] == 12
    assert (iv["start"].iloc[1:].to_numpy() == iv["end"].iloc[:-1].to_numpy()).all()
    d = energy_drift(run, oracle="emt", every=1)
    assert iv["realised"].sum() == pytest.approx(d["drift"].iloc[-1], abs=1e-12)  # the intervals telescope
    h = run.result.history
    assert iv["predicted"].sum() == pytest.approx(h["sigma_dE"].sum(), rel=1e-12)
    # the raw trigger fired exactly where its accumulated prediction passed the tolerance
    assert (iv["predicted"].iloc[:-1] > 0.02).all()


def test_cli_calibration_option(tmp_path):
    import json

    from probe.cli import main

    out = tmp_path / "md"
    assert main(["md", "--quick", "--out", str(out), "--steps", "6", "--calibration", "rate"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["calibration"] == "rate" and summary["steps"] == 6


def test_full_covariance_rate_keeps_the_cross_atom_terms():
    atoms = load_system("cu13")
    pot = EnsemblePotential([29], n_members=3, hidden=8, cutoff=5.0, seed=0, device="cpu")
    explorer = MDExplorer(atoms, pot, timestep=5.0, temperature=500.0)
    explorer.start(0)
    (cand,) = explorer.step()
    fm = explorer._members[:, 0]
    proj = (fm * cand.item.get_velocities()).sum((1, 2))  # sum_i F_mi . v_i for each member
    dt = 5.0 * units.fs
    assert cand.observation["sigma_dE_full"] == pytest.approx(np.sqrt(proj.var()) * dt, rel=1e-9)
    assert energy_rate_trigger(0.1, covariance="full").key == "sigma_dE_full"
    with pytest.raises(ProbeError, match="covariance"):
        energy_rate_trigger(0.1, covariance="diag")
    with pytest.raises(ProbeError, match="calibration=None"):
        energy_rate_trigger(0.1, covariance="full", calibration="rate")
