"""Triggers run side by side on one system, seed and step budget, scored against the oracle."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ase import Atoms

from probe.active import Trigger

from .metrics import energy_drift, force_errors
from .reference import reference_trajectory
from .runner import run_onthefly

__all__ = ["TriggerComparison", "compare_triggers"]


@dataclass(frozen=True)
class TriggerComparison:
    """Triggers run on the same system, seed and step budget.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per trigger: ``oracle_calls``, ``labels``, ``force_rmse`` and ``force_mae``
        (eV/A, final committee against the oracle on a held-out oracle trajectory),
        ``energy_rmse_heldout`` (eV), ``max_abs_drift`` and ``final_drift`` (eV, oracle total
        energy along the run's own trajectory), ``steps``.
    runs : dict of str -> OnTheFlyRun
    drifts : dict of str -> pandas.DataFrame
    reference_steps_per_second : float
        ASE MD with the oracle at every step.
    """

    table: pd.DataFrame
    runs: dict = field(repr=False)
    drifts: dict = field(repr=False)
    reference_steps_per_second: float = float("nan")

    def to_frame(self) -> pd.DataFrame:
        return self.table

    def plot(self, axes: Sequence[Any] | None = None) -> Any:
        """Three panels: energy drift over time, uncertainty over time with labelling events, oracle calls."""
        import matplotlib.pyplot as plt

        if axes is None:
            fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
            fig.suptitle("triggers side by side: same system, seed and step budget")
        ax_d, ax_u, ax_c = axes
        for k, (name, df) in enumerate(self.drifts.items()):
            color = f"C{k}"
            ax_d.plot(df["time_fs"], df["drift"], color=color, label=name)
            hist = self.runs[name].result.history
            h0 = hist[hist["walker"] == 0]
            ax_u.plot(h0["step"] * self.runs[name].timestep, h0["max_force_deviation"], color=color, lw=0.8,
                      label=name)
            ev = self.runs[name].result.events
            if len(ev):
                # one row of ticks per trigger along the bottom (axes fraction), so that neither hides the other
                ax_u.plot(ev["step"] * self.runs[name].timestep, np.full(len(ev), 0.04 + 0.07 * k), "|", ms=8,
                          color=color, transform=ax_u.get_xaxis_transform(), label=f"{name}: oracle call")
        ax_d.set_xlabel("time (fs)")
        ax_d.set_ylabel("oracle total-energy drift (eV)")
        ax_d.set_title("energy drift along each run")
        ax_d.legend(fontsize=8)
        lo, hi = ax_u.dataLim.y0, ax_u.dataLim.y1
        ax_u.set_ylim(min(lo, 0.0) - 0.25 * (hi - min(lo, 0.0)), hi * 1.05)  # room for the tick rows below
        ax_u.set_yticks([v for v in ax_u.get_yticks() if lo <= v <= hi * 1.05 or v == 0.0])
        ax_u.set_xlabel("time (fs)")
        ax_u.set_ylabel("max force deviation (eV/Å)")
        ax_u.set_title("committee disagreement (walker 0)")
        ax_u.legend(fontsize=7)
        ax_c.bar(range(len(self.table)), self.table["oracle_calls"], color=[f"C{k}" for k in range(len(self.table))])
        ax_c.set_xticks(range(len(self.table)), self.table.index, rotation=15, fontsize=8)
        ax_c.set_xlabel("trigger")
        ax_c.set_ylabel("oracle calls")
        ax_c.set_title("oracle calls per run")
        return axes


def compare_triggers(atoms: Atoms, triggers: Mapping[str, Trigger], *, oracle: str = "emt", steps: int = 200,
                     seed: int = 0, heldout_steps: int | None = None, heldout_every: int = 5,
                     drift_every: int = 5, workdir: str | Path | None = None,
                     **options: Any) -> TriggerComparison:
    """Run each trigger on the same system, seed and step budget and score them side by side.

    Scores: oracle calls; force error of the final committee against the oracle on a held-out
    trajectory (ASE MD with the oracle, a different seed); and the drift of the oracle total
    energy along each run's own NVE trajectory.

    Parameters
    ----------
    atoms : ase.Atoms
    triggers : mapping of name -> Trigger
    oracle : str, default "emt"
    steps : int, default 200
    seed : int, default 0
    heldout_steps : int, optional
        Length of the held-out trajectory (default ``steps``).
    heldout_every, drift_every : int, default 5
        Frame spacing of the two evaluations.
    workdir : path, optional
        Where the label stores are written (``None``: temporary files).
    **options
        Passed to :func:`run_onthefly` (``timestep``, ``temperature``, ``n_members``, ...).
    """
    import time

    dynamics = {k: options[k] for k in ("integrator", "timestep", "temperature", "friction") if k in options}
    t0 = time.perf_counter()
    held = reference_trajectory(atoms, oracle=oracle, steps=heldout_steps or steps, seed=seed + 7919, every=1,
                                **dynamics)
    ref_sps = (heldout_steps or steps) / (time.perf_counter() - t0)
    held = held[::heldout_every]
    rows, runs, drifts = [], {}, {}
    for name, trig in triggers.items():
        store = None if workdir is None else Path(workdir) / f"labels-{name}.sqlite"
        run = run_onthefly(atoms, trig, oracle=oracle, steps=steps, seed=seed, store=store, **options)
        drift = energy_drift(run, oracle=oracle, every=drift_every)
        err = force_errors(run.potential, held)
        runs[name], drifts[name] = run, drift
        rows.append({"trigger": name, "oracle_calls": run.result.oracle_calls + run.result.reused,
                     "labels": run.result.n_labels, "force_rmse": err["force_rmse"], "force_mae": err["force_mae"],
                     "energy_rmse_heldout": err["energy_rmse"], "max_abs_drift": float(drift["drift"].abs().max()),
                     "final_drift": float(drift["drift"].iloc[-1]), "steps": steps,
                     "steps_per_second": steps / run.seconds})
    return TriggerComparison(table=pd.DataFrame(rows).set_index("trigger"), runs=runs, drifts=drifts,
                             reference_steps_per_second=ref_sps)
