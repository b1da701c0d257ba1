"""`probe epi`: shipped data and user CSVs, through probe.cli.main."""

import json

import numpy as np
import pandas as pd
import torch

from domains.epi import datasets
from probe.cli import main


def test_epi_command_quick(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["epi", "--quick", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    summary = json.loads((tmp_path / "summary.json").read_text())
    eps = summary["epidemics"]
    assert set(eps) == {"Flu2009", "simulated"}
    for entry in eps.values():
        assert (tmp_path / entry["figure"]).exists()
        assert entry["cori"]["max_lp_check_gap"] < 1e-6
        assert entry["neural"]["median_rel_width_certified"] > 0
    assert 0 <= eps["simulated"]["cori"]["truth_in_certified_band"] <= 1
    assert np.isfinite(eps["simulated"]["neural"]["mae_vs_truth"])


def test_epi_command_on_user_csv(tmp_path):
    flu = datasets.load("Flu2009")
    csv = tmp_path / "mine.csv"
    pd.DataFrame({"date": flu.incidence.index.strftime("%Y-%m-%d"), "cases": flu.incidence.to_numpy()}).to_csv(
        csv, index=False)
    out = tmp_path / "out"
    argv = ["epi", "--quick", "--no-neural", "--out", str(out), "--csv", str(csv), "--column", "cases",
            "--si-mean", "2.6", "--si-std", "1.5", "--relative", "0", "--absolute", "1"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["error_model"] == "±1 cases/day"
    assert summary["epidemics"]["mine"]["days"] == 32
    # the user's dates label the R_t windows
    table = pd.read_csv(out / summary["epidemics"]["mine"]["table"])
    assert table["date_end"].iloc[-1] == flu.incidence.index[-1].strftime("%Y-%m-%d") and len(table) == 25


def test_epi_command_errors_are_reported(tmp_path, capsys):
    csv = tmp_path / "bad.csv"
    csv.write_text("day,I\n1,3\n2,-4\n3,5\n")
    assert main(["epi", "--quick", "--out", str(tmp_path), "--csv", str(csv), "--si-mean", "3", "--si-std", "1"]) == 2
    assert "day 2" in capsys.readouterr().err
    assert main(["epi", "--quick", "--out", str(tmp_path), "--csv", str(csv)]) == 2
    assert "--si-mean" in capsys.readouterr().err
