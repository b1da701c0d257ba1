"""Scores of an on-the-fly run against the oracle: force errors, energy drift, drift per interval."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from ase import Atoms

from probe.errors import ProbeError

from .committee import Committee
from .oracles import CalculatorOracle

__all__ = ["force_errors", "energy_drift", "interval_drift", "calibration_summary"]


def force_errors(potential: Committee, frames: Sequence[Atoms]) -> dict[str, float]:
    """Committee-mean force and energy errors against the oracle on reference frames.

    Returns ``force_rmse`` and ``force_mae`` (eV/A, over all components), ``energy_rmse`` (eV)
    and ``energy_mae_per_atom`` (eV/atom, after removing the mean offset: the potential's
    energy zero is learned from few labels).
    """
    if not frames:
        raise ProbeError("force_errors needs at least one frame")
    pos = np.stack([f.get_positions() for f in frames])
    pred = potential.predict(pos, frames[0].numbers)
    fp = pred.forces.mean(0).double().cpu().numpy()
    fr = np.stack([f.arrays["ref_forces"] for f in frames])
    ep = pred.energy.mean(0).double().cpu().numpy()
    er = np.array([f.info["energy"] for f in frames])
    d = ep - er
    return {"force_rmse": float(np.sqrt(((fp - fr) ** 2).mean())), "force_mae": float(np.abs(fp - fr).mean()),
            "energy_rmse": float(np.sqrt((d ** 2).mean())),
            "energy_mae_per_atom": float(np.abs(d - d.mean()).mean() / len(frames[0]))}


def energy_drift(run: object, *, oracle: str = "emt", every: int = 1, walker: int = 0) -> pd.DataFrame:
    """Total energy along the on-the-fly trajectory, re-evaluated with the oracle.

    With exact forces Velocity Verlet conserves ``E_oracle + E_kin`` up to integrator error; the
    drift ``E_tot(t) - E_tot(0)`` therefore measures the energy error the committee's forces
    put into the dynamics (the quantity the energy-rate trigger predicts). These evaluation
    calls are not oracle calls of the run.

    Parameters
    ----------
    run : OnTheFlyRun
    oracle : str, default "emt"
    every : int, default 1
        Frame spacing.
    walker : int, default 0

    Returns
    -------
    pandas.DataFrame
        Columns ``step``, ``time_fs``, ``e_pot_oracle``, ``e_kin``, ``e_total``, ``drift``.
    """
    calc = CalculatorOracle(oracle).calculator()
    rows = []
    for w, step, pos, vel in run.frames:
        if w != walker or step % every:
            continue
        a = Atoms(numbers=run.numbers, positions=pos)
        a.set_velocities(vel)
        a.calc = calc
        rows.append({"step": step, "time_fs": step * run.timestep, "e_pot_oracle": float(a.get_potential_energy()),
                     "e_kin": float(a.get_kinetic_energy())})
    df = pd.DataFrame(rows)
    df["e_total"] = df["e_pot_oracle"] + df["e_kin"]
    df["drift"] = df["e_total"] - df["e_total"].iloc[0]
    return df


def interval_drift(run: object, *, oracle: str = "emt", walker: int = 0) -> pd.DataFrame:
    """Realised energy error of each interval between two labels against the trigger's prediction.

    An interval runs from one label (or the start) to the next label (or the end) of
    ``walker``; its realised error is the change of the oracle total energy along it,
    ``dE = E_tot(end) - E_tot(start)`` (see :func:`energy_drift`), and its predicted standard
    deviations are the accumulated ``sum sigma(dE/dt) dt`` with the raw and with each
    recalibrated spread (the values the energy-rate trigger compares with its tolerance). A
    trigger is honest when ``|dE|`` exceeds its prediction about as often as a Gaussian would
    (``P(|dE| > sigma) = 0.32``) or less.

    Returns
    -------
    pandas.DataFrame
        Columns ``start``, ``end`` (steps), ``realised`` (eV), ``predicted``,
        ``predicted_cal_rate``, ``predicted_cal_forces`` (eV).
    """
    drift = energy_drift(run, oracle=oracle, every=1, walker=walker).set_index("step")["drift"]
    h = run.result.history
    h = h[h["walker"] == walker]
    ev = run.result.events
    labelled = sorted(ev[ev["walker"] == walker]["step"].tolist()) if len(ev) else []
    last = int(h["step"].max()) + 1  # frames: step 0 is the start, step k + 1 follows history step k
    bounds = [0] + [s + 1 for s in labelled if s + 1 < last] + [last]
    rows = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        seg = h[(h["step"] + 1 > a) & (h["step"] + 1 <= b)]
        rows.append({"start": a, "end": b, "realised": float(drift.loc[b] - drift.loc[a]),
                     "predicted": float(seg["sigma_dE"].sum()),
                     "predicted_cal_rate": float(seg["sigma_dE_cal_rate"].sum()),
                     "predicted_cal_forces": float(seg["sigma_dE_cal_forces"].sum())})
    return pd.DataFrame(rows, columns=["start", "end", "realised", "predicted", "predicted_cal_rate",
                                       "predicted_cal_forces"])


def calibration_summary(table: pd.DataFrame) -> dict[str, float]:
    """How honest the committee's spread was at the labels (from ``OnTheFlyRun.calibration``).

    ``rate_s2 = sum_k e_k^2 / sum_k sigma_k^2`` for the rate errors ``e_k = sum_i dF_i . v_i`` and
    their predicted ``sigma_k(dE/dt)`` (1 for an honest spread; the unshrunk Musil et al. 2019
    scale), ``rate_coverage`` the fraction of labels with ``|e_k| <= sigma_k`` (0.68 for a Gaussian
    error of that standard deviation), ``rate_median_z`` the median ``|e_k| / sigma_k`` (0.67), and
    ``force_s2 = sum |dF|^2 / sum tr Cov(F)``. NaN without labels after the start.
    """
    if len(table) == 0:
        return {"labels": 0, "rate_s2": float("nan"), "rate_coverage": float("nan"),
                "rate_median_z": float("nan"), "force_s2": float("nan")}
    e, s = table["rate_error"].to_numpy(), table["rate_sigma"].to_numpy()
    z = np.abs(e) / np.maximum(s, 1e-300)
    return {"labels": int(len(table)), "rate_s2": float((e ** 2).sum() / max((s ** 2).sum(), 1e-300)),
            "rate_coverage": float((z <= 1).mean()), "rate_median_z": float(np.median(z)),
            "force_s2": float(table["force_sq_error"].sum() / max(table["force_variance"].sum(), 1e-300))}
