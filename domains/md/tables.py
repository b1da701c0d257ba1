"""Tables ``probe md`` writes: one row per MD step and one per oracle label, for every trigger compared."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["STEP_COLUMNS", "step_table", "label_table"]

#: the loop's history columns, renamed with their units (energies eV, time fs, forces eV/A)
STEP_COLUMNS = {
    "energy": "committee_energy_eV",
    "energy_std": "committee_energy_std_eV",
    "max_force_deviation": "max_force_deviation_eV_per_A",
    "sigma_dEdt": "sigma_dEdt_eV_per_fs",
    "sigma_dE": "sigma_dE_eV",
    "rate_variance": "rate_variance_eV2_per_fs2",
    "sigma_dE_full": "sigma_dE_full_eV",
    "sigma_dE_cal_forces": "sigma_dE_cal_forces_eV",
    "sigma_dE_cal_rate": "sigma_dE_cal_rate_eV",
    "kinetic": "kinetic_energy_eV",
    "total": "total_energy_eV",
    "temperature": "temperature_K",
    "label": "labelled",
}


def step_table(runs: Mapping[str, object]) -> pd.DataFrame:
    """One row per MD step, walker and trigger.

    Parameters
    ----------
    runs : mapping of str -> OnTheFlyRun
        The runs by trigger name (``TriggerComparison.runs``).

    Returns
    -------
    pandas.DataFrame
        ``trigger``, ``step``, ``walker``, ``time_fs``, then the loop's observations with units in
        their names (:data:`STEP_COLUMNS`: ``committee_energy_eV``, ``sigma_dEdt_eV_per_fs``,
        ``max_force_deviation_eV_per_A``, ``temperature_K``, ...), ``labelled`` (the oracle was
        called at this step), ``reason`` and ``trigger_value`` (the quantity the trigger compares
        with its threshold: eV for the energy-rate trigger, eV/A for the max-force-deviation one).
    """
    frames = []
    for name, run in runs.items():
        h = run.result.history.rename(columns=STEP_COLUMNS)
        h.insert(0, "trigger", name)
        h.insert(3, "time_fs", h["step"].to_numpy(np.float64) * float(run.timestep))
        frames.append(h)
    return pd.concat(frames, ignore_index=True)


def _labels_from_store(path: Path) -> list:
    from probe.active.store import LabelStore

    if not path.exists():
        return []
    with LabelStore(path) as store:
        return store.labels()


def _errors_by_key(run: object) -> dict:
    """The committee's realised errors (``run.calibration``) by label key.

    The explorer records one row per labelling event, in the events' order (its step counter runs one
    ahead of the loop's), so the two are paired in order, walker by walker.
    """
    cal, ev = run.calibration, run.result.events
    if not len(cal) or len(cal) != len(ev) or not np.array_equal(cal["walker"].to_numpy(), ev["walker"].to_numpy()):
        return {}
    return {key: row for key, (_, row) in zip(ev["key"], cal.iterrows())}


def label_table(runs: Mapping[str, object], workdir: str | Path | None = None) -> pd.DataFrame:
    """One row per oracle label and trigger: when and why it was asked for, and what it showed.

    The initial labels (before the dynamics) have no step. The label stores ``labels-NAME.sqlite``
    in ``workdir`` give the oracle's answers; without them the labelling events alone are listed.

    Parameters
    ----------
    runs : mapping of str -> OnTheFlyRun
    workdir : path, optional
        The folder :func:`domains.md.compare_triggers` wrote its label stores into.

    Returns
    -------
    pandas.DataFrame
        ``trigger``, ``key``, ``reason`` (``initial``, or the trigger's reason such as ``tolerance``,
        ``candidate``), ``step`` and ``walker`` (empty for initial labels), ``time_fs``,
        ``trigger_value``, ``reused`` (taken from the store of an earlier run), ``oracle_energy_eV``
        and ``oracle_max_force_eV_per_A`` (the oracle's answer), ``committee_energy_eV``,
        ``committee_energy_std_eV``, ``max_force_deviation_eV_per_A``, ``sigma_dEdt_eV_per_fs`` (what
        the committee predicted there), and ``force_rms_error_eV_per_A`` (the committee's realised
        force error at the label before it learned it, root mean square over the 3N components) and
        ``energy_rate_error_eV_per_fs`` (:math:`\\sum_i \\Delta F_i \\cdot v_i`).
    """
    rows = []
    for name, run in runs.items():
        n_atoms = len(run.numbers)
        hist = run.result.history.set_index(["step", "walker"])
        events = run.result.events.set_index("key") if len(run.result.events) else None
        errors = _errors_by_key(run)
        stored = [] if workdir is None else _labels_from_store(Path(workdir) / f"labels-{name}.sqlite")
        if stored:
            items = [(lab.key, lab.info, lab.targets) for lab in stored]
        else:  # the events alone: no oracle answers
            ev = run.result.events
            items = [(r.key, {"reason": r.reason, "step": int(r.step), "walker": int(r.walker)}, None)
                     for r in ev.itertuples()]
        for key, info, targets in items:
            step, walker = int(info.get("step", -1)), int(info.get("walker", -1))
            initial = step < 0
            h = None if initial or (step, walker) not in hist.index else hist.loc[(step, walker)]
            value = info.get("value", h["trigger_value"] if h is not None and "trigger_value" in h else np.nan)
            row = {"trigger": name, "key": key, "reason": info.get("reason", ""),
                   "step": None if initial else step, "walker": None if initial else walker,
                   "time_fs": np.nan if initial else step * float(run.timestep),
                   "trigger_value": float(value),
                   "reused": bool(events.loc[key, "reused"]) if events is not None and key in events.index else False}
            if targets is not None:
                forces = np.asarray(targets["forces"], dtype=np.float64)
                row["oracle_energy_eV"] = float(np.asarray(targets["energy"]))
                row["oracle_max_force_eV_per_A"] = float(np.linalg.norm(forces, axis=-1).max())
            else:
                row["oracle_energy_eV"] = row["oracle_max_force_eV_per_A"] = np.nan
            for src, dst in (("energy", "committee_energy_eV"), ("energy_std", "committee_energy_std_eV"),
                             ("max_force_deviation", "max_force_deviation_eV_per_A"),
                             ("sigma_dEdt", "sigma_dEdt_eV_per_fs")):
                row[dst] = float(h[src]) if h is not None and src in h else np.nan
            c = errors.get(key)
            row["force_rms_error_eV_per_A"] = (float(np.sqrt(c["force_sq_error"] / (3 * n_atoms)))
                                               if c is not None else np.nan)
            row["energy_rate_error_eV_per_fs"] = float(c["rate_error"]) if c is not None else np.nan
            rows.append(row)
    table = pd.DataFrame(rows)
    for col in ("step", "walker"):
        table[col] = pd.array(table[col], dtype="Int64")
    return table
