"""Active learning for MD: vectorised committee vs a loop, on-the-fly MD vs the oracle, trigger comparison.

1. Committee energy + forces: one vectorised call (``probe.active.Ensemble``) against a Python
   loop over members, each a complete potential (target >= 3x).
2. Steps per second: on-the-fly MD (committee, oracle only when triggered, retraining included)
   against ASE MD with the oracle (GFN2-xTB through tblite) at every step.
3. Triggers: DP-GEN's max force deviation against the accumulated energy-error rate (raw committee
   spread, and recalibrated on the realised rate errors at the labels), swept over their thresholds
   on the same system, seed and step budget: oracle calls against the energy error (drift of the
   oracle total energy along the NVE trajectory), the held-out force error, and per interval between
   two labels the realised energy error against the tolerance.

Run: ``python benchmarks/active.py [--device cuda] [--quick]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the checkout this script lives in

from domains.md.onthefly import (  # noqa: E402
    compare_triggers,
    interval_drift,
    load_system,
    reference_trajectory,
    run_onthefly,
)
from domains.md.potential import EnsemblePotential  # noqa: E402
from domains.md.triggers import energy_rate_trigger, max_force_deviation_trigger  # noqa: E402


def _best(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def bench_ensemble(device: str, repeats: int) -> list[dict]:
    rows = []
    for system in ("ethanol", "cu13"):
        atoms = load_system(system)
        for m in (4, 8):
            pot = EnsemblePotential(sorted(set(atoms.numbers.tolist())), n_members=m, hidden=32, device=device)
            members = pot.ensemble.members()
            for b in (1, 32):
                pos = atoms.positions[None] + np.random.default_rng(0).normal(scale=0.05, size=(b, len(atoms), 3))
                z = atoms.numbers
                vec = _best(lambda pot=pot, pos=pos, z=z: pot.energy_and_forces(pos, z), repeats)
                loop = _best(lambda pot=pot, pos=pos, z=z, mem=members: pot.energy_and_forces_loop(pos, z, members=mem),
                             repeats)
                a = pot.energy_and_forces(pos, atoms.numbers)
                c = pot.energy_and_forces_loop(pos, atoms.numbers, members=members)
                err = float((a.forces - c.forces).abs().max())
                rows.append({"system": system, "members": m, "configs": b, "vectorised_ms": 1e3 * vec,
                             "loop_ms": 1e3 * loop, "speedup": loop / vec, "max_force_diff": f"{err:.1e}"})
    return rows


def bench_steps(device: str, steps: int) -> list[dict]:
    rows = []
    atoms = load_system("ethanol")
    for oracle in ("tblite", "pyscf"):
        n = steps if oracle == "tblite" else max(steps // 20, 5)
        t0 = time.perf_counter()
        reference_trajectory(atoms, oracle=oracle, steps=n, timestep=0.5, temperature=300.0)
        ref = n / (time.perf_counter() - t0)
        rows.append({"what": f"ASE MD, {oracle} at every step", "steps": n, "steps_per_second": ref})
    t0 = time.perf_counter()
    run = run_onthefly(atoms, energy_rate_trigger(0.05), oracle="tblite", steps=steps, seed=0, timestep=0.5,
                       temperature=300.0, fit_steps=60, device=device, progress=False)
    otf = steps / (time.perf_counter() - t0)
    rows.append({"what": f"on-the-fly (tblite oracle, {run.result.oracle_calls} calls, retraining included)",
                 "steps": steps, "steps_per_second": otf})
    # committee alone, after training: the cost per step once the model is trusted
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from domains.md.calculator import EnsembleCalculator

    a = atoms.copy()
    a.calc = EnsembleCalculator(run.potential)
    dyn = VelocityVerlet(a, timestep=0.5 * units.fs)
    t0 = time.perf_counter()
    for _ in range(steps):
        dyn.step()
    rows.append({"what": "committee MD, no labelling", "steps": steps,
                 "steps_per_second": steps / (time.perf_counter() - t0)})
    return rows


def bench_triggers(device: str, steps: int, system: str, oracle: str) -> tuple:
    atoms = load_system(system)
    cluster = system in ("cu13", "pt13")
    options = {"timestep": 5.0 if cluster else 0.5, "temperature": 500.0 if cluster else 300.0,
               "cutoff": 5.0 if cluster else 6.0, "hidden": 16, "first_steps": 200, "fit_steps": 40,
               "device": device, "progress": False}
    triggers, tolerances = {}, {}
    for tol in (0.02, 0.05, 0.1, 0.2):
        triggers[f"energy-rate tol={tol}"] = energy_rate_trigger(tol)
        triggers[f"energy-rate-cal tol={tol}"] = energy_rate_trigger(tol, calibration="rate")
        triggers[f"energy-rate-calF tol={tol}"] = energy_rate_trigger(tol, calibration="forces")
        triggers[f"energy-rate-full tol={tol}"] = energy_rate_trigger(tol, covariance="full")
        for prefix in ("energy-rate", "energy-rate-cal", "energy-rate-calF", "energy-rate-full"):
            tolerances[f"{prefix} tol={tol}"] = tol
    for lo in (0.05, 0.1, 0.2, 0.3):
        triggers[f"max-force-dev lo={lo}"] = max_force_deviation_trigger(lo, 3 * lo)
    cmp = compare_triggers(atoms, triggers, oracle=oracle, steps=steps, seed=0, heldout_every=5, drift_every=5,
                           **options)
    # per interval between two labels: the realised change of the oracle total energy
    for name, run in cmp.runs.items():
        iv = interval_drift(run, oracle=oracle)
        real = iv["realised"].abs()
        cmp.table.loc[name, "median_interval_dE"] = float(real.median())
        cmp.table.loc[name, "max_interval_dE"] = float(real.max())
        cmp.table.loc[name, "frac_over_tol"] = float((real > tolerances[name]).mean()) if name in tolerances else np.nan
        cmp.table.loc[name, "rate_scale2"] = float(run.result.history["calibration_rate"].iloc[-1])
        cmp.table.loc[name, "force_scale2"] = float(run.result.history["calibration_forces"].iloc[-1])
    return cmp


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip", nargs="*", default=[], choices=["ensemble", "steps", "triggers"])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import pandas as pd

    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    if "ensemble" not in args.skip:
        print("\n## committee energy + forces: vectorised vs loop over members")
        print(pd.DataFrame(bench_ensemble(args.device, 3 if args.quick else 10)).round(3).to_string(index=False))
    if "steps" not in args.skip:
        print("\n## steps per second, ethanol, 0.5 fs")
        print(pd.DataFrame(bench_steps(args.device, 40 if args.quick else 200)).round(2).to_string(index=False))
    if "triggers" not in args.skip:
        steps = 40 if args.quick else 150
        cmp = bench_triggers(args.device, steps, "cu13", "emt")
        print(f"\n## triggers, Cu13 (EMT oracle), {steps} NVE steps of 5 fs, seed 0")
        print(cmp.table.round(4).to_string())
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        t = cmp.table
        for k, (prefix, marker) in enumerate((("energy-rate ", "o"), ("energy-rate-cal ", "^"),
                                              ("energy-rate-calF ", "v"), ("energy-rate-full ", "D"),
                                              ("max-force-dev ", "s"))):
            sel = t[t.index.str.startswith(prefix)]
            sel = sel.sort_values("oracle_calls")
            axes[0].plot(sel["oracle_calls"], sel["max_abs_drift"], marker=marker, color=f"C{k}", label=prefix.strip())
            axes[1].plot(sel["oracle_calls"], sel["force_rmse"], marker=marker, color=f"C{k}", label=prefix.strip())
            for name, row in sel.iterrows():
                axes[0].annotate(name.split(" ")[1], (row["oracle_calls"], row["max_abs_drift"]), fontsize=7)
        axes[0].set_xlabel("oracle calls")
        axes[0].set_ylabel("max |oracle total-energy drift| (eV)")
        axes[1].set_xlabel("oracle calls")
        axes[1].set_ylabel("held-out force RMSE (eV/A)")
        axes[0].legend()
        fig.suptitle(f"Cu13, EMT oracle, {steps} NVE steps, same seed")
        fig.tight_layout()
        fig.savefig(HERE / "active_triggers.png", dpi=120)
        print(f"figure: {HERE / 'active_triggers.png'}")


if __name__ == "__main__":
    main()
