"""`probe epi`'s per-window R_t table: EpiEstim's columns and numbers, dates, and the bounds beside them."""

import json
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from domains.epi import cori, cori_mean_bounds, datasets
from domains.epi.bounds import ReportingError
from domains.epi.tables import rt_table
from probe.cli import main
from probe.errors import ProbeError


def _epiestim_example1() -> pd.DataFrame:
    """EpiEstim's own saved ``estimate_R`` output for Flu2009, with EpiEstim's column names."""
    with resources.files("domains.epi.data").joinpath("EpiEstim_Example1_R.csv").open("r") as fh:
        return pd.read_csv(fh)


@pytest.fixture(scope="module")
def epi_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("epi")
    assert main(["epi", "--quick", "--out", str(out)]) == 0  # one torch thread (conftest)
    return out, json.loads((out / "summary.json").read_text())


def test_flu2009_table_is_epiestims(epi_run):
    out, summary = epi_run
    ref = _epiestim_example1()
    table = pd.read_csv(out / summary["epidemics"]["Flu2009"]["table"])
    # EpiEstim's columns, in its order, first; the default 7-day windows are Example 1's windows
    assert list(table.columns[:2]) == ["t_start", "t_end"]
    epiestim = table.drop(columns=["date_start", "date_end"])[list(ref.columns)]
    assert list(table.drop(columns=["date_start", "date_end"]).columns[:len(ref.columns)]) == list(ref.columns)
    np.testing.assert_array_equal(epiestim[["t_start", "t_end"]].to_numpy(), ref[["t_start", "t_end"]].to_numpy())
    np.testing.assert_allclose(epiestim.to_numpy(float), ref.to_numpy(float), rtol=0, atol=1e-10)


def test_tables_agree_with_the_summary_and_the_data(epi_run):
    out, summary = epi_run
    flu = datasets.load("Flu2009")
    for name, entry in summary["epidemics"].items():
        assert entry["table"] == f"rt_{name}.csv" and (out / f"rt_{name}.parquet").exists()
        t = pd.read_csv(out / entry["table"])
        assert len(t) == entry["windows"]
        assert t["Mean(R)"].iloc[-1] == entry["cori"]["last_mean"]
        assert (t["t_end"] - t["t_start"] == summary["window"] - 1).all() and t["t_end"].iloc[-1] == entry["days"]
        # the exact range of the posterior mean holds the mean itself
        assert (t["Lower.Mean(R)"] <= t["Mean(R)"] * (1 + 1e-12)).all()
        assert (t["Mean(R)"] <= t["Upper.Mean(R)"] * (1 + 1e-12)).all()
        w = (t["Upper.Mean(R)"] - t["Lower.Mean(R)"]) / t["Mean(R)"]
        assert np.median(w) == pytest.approx(entry["cori"]["median_rel_width_certified"], rel=1e-12)
        # the network reads 21 days: no neural estimate before, sound bounds after
        nn = t["Neural(R)"].notna()
        assert not nn[t["t_end"] < 21].any() and nn[t["t_end"] >= 21].all()
        n = t[nn]
        assert (n["Lower.Neural(R)"] <= n["Neural(R)"]).all() and (n["Neural(R)"] <= n["Upper.Neural(R)"]).all()
        assert set(n["Method.Lower.Neural(R)"]) <= {"crown", "ibp", "lipschitz-linf", "lipschitz-l1"}
        wn = (n["Upper.Neural(R)"] - n["Lower.Neural(R)"]) / n["Neural(R)"]
        assert np.median(wn) == pytest.approx(entry["neural"]["median_rel_width_certified"], rel=1e-12)
    t = pd.read_csv(out / "rt_Flu2009.csv")
    dates = flu.incidence.index.strftime("%Y-%m-%d")
    assert list(t["date_start"]) == list(dates[t["t_start"] - 1]) and t["date_end"].iloc[-1] == dates[-1]
    assert "date_start" not in pd.read_csv(out / "rt_simulated.csv").columns  # simulated days have no dates


def test_progress_stays_off_a_terminal(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PROBE_PROGRESS", raising=False)
    assert main(["epi", "--quick", "--no-neural", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().err == f"[probe epi] wrote {tmp_path}/summary.json; report: {tmp_path}/report.html\n"
    t = pd.read_csv(tmp_path / "rt_Flu2009.csv")
    assert "Neural(R)" not in t.columns and "Lower.Mean(R)" in t.columns


def test_rt_table_checks_its_inputs():
    flu = datasets.load("Flu2009")
    frame = cori(flu.incidence, flu.serial_interval)
    cb = cori_mean_bounds(flu.incidence.to_numpy(float), flu.serial_interval, ReportingError(absolute=1.0))
    table = rt_table(frame, cb)
    assert list(table.columns[-2:]) == ["Lower.Mean(R)", "Upper.Mean(R)"] and "date_start" not in table
    with pytest.raises(ProbeError, match="other windows"):
        rt_table(frame.iloc[1:], cb)
    with pytest.raises(ProbeError, match="missing"):
        rt_table(frame.drop(columns="q975"))
    with pytest.raises(ProbeError, match="10 dates, but a window ends on day 32"):
        rt_table(frame, dates=flu.incidence.index[:10])
    two = cori(np.stack([flu.incidence.to_numpy(float)] * 2), flu.serial_interval)
    with pytest.raises(ProbeError, match="one series"):
        rt_table(two)
