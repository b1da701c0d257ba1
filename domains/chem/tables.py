"""Per-molecule tables ``probe chem`` writes: atom weights (long format) and descriptor shifts."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["atom_weight_table", "shift_table"]

#: what a molecule's rows say when no change within the bounds satisfied the criterion
SEARCH_FAILED = "search failed"


def _suffix(unit: str | None) -> str:
    return f"_{unit}" if unit else ""


def atom_weight_table(maps: object, unit: str | None = None) -> pd.DataFrame:
    """Atom weights in long format, one row per (molecule, atom).

    Parameters
    ----------
    maps : AtomWeights
        :func:`domains.chem.atom_weights` (or the MPNN maps).
    unit : str, optional
        The model output's unit (``"pIC50"``): the weight column is then ``weight_pIC50``.

    Returns
    -------
    pandas.DataFrame
        ``molecule`` (index among those probed), ``name``, ``atom`` (RDKit atom index), ``element``,
        ``weight`` (change of the prediction the atom carries, in the output's unit), ``method``,
        ``prediction`` (the molecule's prediction).
    """
    table = maps.to_frame().rename(columns={"weight": f"weight{_suffix(unit)}"})
    table[f"prediction{_suffix(unit)}"] = np.asarray(maps.prediction, dtype=np.float64)[table["molecule"].to_numpy()]
    return table


def shift_table(shifts: object, names: object = None, unit: str | None = None) -> pd.DataFrame:
    """Descriptor shifts, one row per (molecule, moved descriptor); one row per molecule whose search failed.

    Parameters
    ----------
    shifts : DescriptorShifts
        :func:`domains.chem.descriptor_shifts`.
    names : sequence of str, optional
        The probed molecules' names (default: those in ``shifts.table``; a molecule whose search
        failed has no row there, so pass them to name it).
    unit : str, optional
        The output's unit, added to the prediction columns' names.

    Returns
    -------
    pandas.DataFrame
        ``molecule``, ``name``, ``status`` (``"found"`` or ``"search failed"``), ``descriptor``,
        ``before``, ``after`` (raw descriptor units, integers rounded), ``change`` (``after -
        before``), ``change_std`` (in standard deviations of the data), ``integer``,
        ``prediction_before``, ``prediction_after``. Failed searches leave the descriptor cells empty.
    """
    t = shifts.table
    n = len(shifts.success)
    if names is None:
        known = dict(zip(t["molecule"], t["name"]))
        names = [known.get(k, str(k)) for k in range(n)]
    s = _suffix(unit)
    rows = []
    for k in range(n):
        common = {"molecule": k, "name": str(names[k])}
        pred = {f"prediction_before{s}": float(shifts.prediction[k]),
                f"prediction_after{s}": float(shifts.new_prediction[k])}
        moved = t[t["molecule"] == k]
        if not bool(shifts.success[k]) or moved.empty:
            rows.append({**common, "status": SEARCH_FAILED, "descriptor": None, "before": np.nan, "after": np.nan,
                         "change": np.nan, "change_std": np.nan, "integer": None, **pred})
            continue
        for r in moved.reindex(moved["change_std"].abs().sort_values(ascending=False).index).itertuples():
            rows.append({**common, "status": "found", "descriptor": r.feature, "before": float(r.value),
                         "after": float(r.new_value), "change": float(r.change), "change_std": float(r.change_std),
                         "integer": bool(r.integer), **pred})
    return pd.DataFrame(rows)
