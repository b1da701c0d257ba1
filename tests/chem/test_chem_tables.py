"""The descriptor-shift table: moves largest first, one 'search failed' row for a molecule nothing moved."""

from types import SimpleNamespace

import numpy as np
import pandas as pd

from domains.chem.tables import SEARCH_FAILED, shift_table


def test_shift_table_lists_moves_and_failures():
    moves = pd.DataFrame([(0, "m0", "MolWt", 300.0, 290.0, -10.0, -0.5, False),
                          (0, "m0", "NumHDonors", 2.0, 1.0, -1.0, -1.5, True)],
                         columns=["molecule", "name", "feature", "value", "new_value", "change", "change_std",
                                  "integer"])
    sh = SimpleNamespace(table=moves, success=np.array([True, False]), prediction=np.array([7.5, 6.0]),
                         new_prediction=np.array([6.4, 6.0]))
    t = shift_table(sh, ["m0", "m1"], unit="pIC50")
    assert list(t.descriptor[:2]) == ["NumHDonors", "MolWt"]  # largest change in standard deviations first
    assert list(t.status) == ["found", "found", SEARCH_FAILED] and list(t.name) == ["m0", "m0", "m1"]
    assert t.before.iloc[0] == 2.0 and t.after.iloc[0] == 1.0 and t.change.iloc[1] == -10.0
    failed = t.iloc[2]
    assert pd.isna(failed.descriptor) and np.isnan(failed.change)
    assert failed.prediction_before_pIC50 == failed.prediction_after_pIC50 == 6.0
    assert t.prediction_after_pIC50.iloc[0] == 6.4
    # without names, a failed molecule is named by its index
    assert list(shift_table(sh).name) == ["m0", "m0", "1"]
