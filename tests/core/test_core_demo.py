"""The core demonstration runs through the CLI and writes its summary and figures."""

import json

import probe.cli


def test_core_demo_quick(tmp_path):
    out = tmp_path / "core"
    assert probe.cli.main(["core", "--quick", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for name in summary["figures"]:
        assert (out / name).stat().st_size > 1000
    assert summary["clean_accuracy"] > 0.8
    assert summary["margin_success_rate"] == {"l2": 1.0, "linf": 1.0}
    robust = summary["robust_accuracy"]
    assert robust[0] == summary["clean_accuracy"]
    assert all(b <= a for a, b in zip(robust, robust[1:]))
    # the L-inf margin of a 2-d input is at most its L2 margin, at least L2 / sqrt(2)
    assert summary["median_margin_linf"] <= summary["median_margin_l2"] * 1.0001
    # the tables hold the numbers the summary reports
    import numpy as np
    import pandas as pd

    margins, curve = pd.read_csv(out / "margins.csv"), pd.read_csv(out / "robustness_curve.csv")
    assert len(margins) == summary["margins_on"]
    for norm in ("l2", "linf"):  # torch's median: the lower middle value
        d = np.sort(margins[f"margin_{norm}"].to_numpy())
        assert d[(len(d) - 1) // 2] == summary[f"median_margin_{norm}"]
    np.testing.assert_array_equal(curve.eps_linf, summary["eps"])
    np.testing.assert_array_equal(curve.robust_accuracy_pgd, summary["robust_accuracy"])
    np.testing.assert_array_equal(curve.certified_accuracy, summary["certified_accuracy"])
