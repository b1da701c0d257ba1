"""Active learning for MD: committee cost, throughput, on-the-fly speed, committees and triggers over seeds.

1. ``ensemble``: committee energy + forces, one vectorised call (``probe.active.Ensemble``) against
   a Python loop over members, each a complete potential.
2. ``throughput``: committee configurations per second for 4 and 8 members on ``--device`` in
   ``--dtype`` (``--device cuda --dtype float32`` on a GPU).
3. ``steps``: steps per second of on-the-fly MD (GFN2-xTB oracle) with full and with warm-started
   retraining, of committee MD with B walkers in one call per step, against ASE MD with the oracle.
4. ``committees``: how honest each committee's spread is (the rate error at the labels against the
   predicted sigma(dE/dt)): different initialisations only, bootstrap, randomized priors, feature
   subsets.
5. ``pareto``: oracle calls against max |drift| of the oracle total energy for the energy-rate family
   (raw spread; whole-run budget and hybrid with a force-deviation floor, both rate-calibrated) and DP-GEN's max force
   deviation, over ``--seeds`` seeds on Cu13/EMT, ethanol/GFN2-xTB and glyoxal/GFN2-xTB, with bootstrap 95%
   confidence intervals of the means; a figure and a markdown table.

Run: ``python benchmarks/active.py [--device cuda] [--dtype float32] [--quick] [--only pareto ...]``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the checkout this script lives in

from domains.md.onthefly import (  # noqa: E402
    MDExplorer,
    calibration_summary,
    energy_drift,
    load_system,
    reference_trajectory,
    run_onthefly,
)
from domains.md.potential import EnsemblePotential  # noqa: E402
from domains.md.triggers import (  # noqa: E402
    energy_budget_trigger,
    energy_rate_trigger,
    hybrid_trigger,
    max_force_deviation_trigger,
)

DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: system -> (oracle, MD settings, steps, the max-force-deviation trust_lo sweep)
SYSTEMS = {
    "cu13": ("emt", {"timestep": 5.0, "temperature": 500.0, "cutoff": 5.0}, 80, (0.1, 0.2, 0.3)),
    "ethanol": ("tblite", {"timestep": 0.5, "temperature": 300.0, "cutoff": 6.0}, 80, (0.2, 0.3, 0.5)),
    "glyoxal": ("tblite", {"timestep": 0.5, "temperature": 300.0, "cutoff": 6.0}, 80, (0.2, 0.3, 0.5)),
}
#: warm-started updates (10 minibatch Adam steps a label) keep a run cheap enough for 5 seeds x 3 systems here
LEARNING = {"hidden": 16, "first_steps": 100, "fit_steps": 10, "update": "warm", "batch_size": 8, "n_members": 4,
            "progress": False}


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _best(fn, repeats: int, device: str = "cpu") -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
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
                vec = _best(lambda pot=pot, pos=pos, z=z: pot.energy_and_forces(pos, z), repeats, device)
                loop = _best(lambda pot=pot, pos=pos, z=z, mem=members: pot.energy_and_forces_loop(pos, z, members=mem),
                             repeats, device)
                rows.append({"system": system, "members": m, "configs": b, "vectorised_ms": 1e3 * vec,
                             "loop_ms": 1e3 * loop, "speedup": loop / vec})
    return rows


def bench_throughput(device: str, dtype: str, repeats: int, configs: int = 64) -> list[dict]:
    """Committee configurations per second (energy + forces of every member), batches of ``configs``."""
    rows = []
    for system in ("ethanol", "cu13"):
        atoms = load_system(system)
        pos = atoms.positions[None] + np.random.default_rng(0).normal(scale=0.05, size=(configs, len(atoms), 3))
        pos_t = torch.as_tensor(pos, dtype=DTYPES[dtype], device=device)
        for m in (4, 8):
            pot = EnsemblePotential(sorted(set(atoms.numbers.tolist())), n_members=m, hidden=32, device=device,
                                    dtype=DTYPES[dtype])
            seconds = _best(lambda pot=pot, x=pos_t, z=atoms.numbers: pot.energy_and_forces(x, z), repeats, device)
            rows.append({"system": system, "device": device, "dtype": dtype, "members": m, "configs": configs,
                         "ms_per_batch": 1e3 * seconds, "configs_per_second": configs / seconds})
    return rows


def _committee_md(potential, atoms, steps: int, walkers: int) -> float:
    explorer = MDExplorer(atoms, potential, timestep=0.5, temperature=300.0, walkers=walkers, n_initial=1)
    explorer.start(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        explorer.step()
    return steps / (time.perf_counter() - t0)


def bench_steps(device: str, steps: int) -> list[dict]:
    rows = []
    atoms = load_system("ethanol")
    t0 = time.perf_counter()
    reference_trajectory(atoms, oracle="tblite", steps=steps, timestep=0.5, temperature=300.0)
    rows.append({"what": "ASE-style MD, tblite at every step", "walkers": 1, "oracle_calls": steps,
                 "steps_per_second": steps / (time.perf_counter() - t0)})
    run = None
    for update, fit_steps in (("full", 60), ("warm", 10)):
        run = run_onthefly(atoms, energy_rate_trigger(0.05), oracle="tblite", steps=steps, seed=0, timestep=0.5,
                           temperature=300.0, fit_steps=fit_steps, update=update, device=device, progress=False)
        drift = float(energy_drift(run, oracle="tblite", every=5)["drift"].abs().max())
        rows.append({"what": f"on-the-fly, {update} retraining ({fit_steps} Adam steps a label)", "walkers": 1,
                     "oracle_calls": run.result.oracle_calls, "steps_per_second": steps / run.seconds,
                     "max_abs_drift": drift})
    for walkers in (4, 8):
        run = run_onthefly(atoms, energy_rate_trigger(0.05), oracle="tblite", steps=steps, seed=0, timestep=0.5,
                           temperature=300.0, fit_steps=10, update="warm", walkers=walkers, device=device,
                           progress=False)
        rows.append({"what": "on-the-fly, warm retraining, batched walkers", "walkers": walkers,
                     "oracle_calls": run.result.oracle_calls, "steps_per_second": steps / run.seconds,
                     "walker_steps_per_second": walkers * steps / run.seconds})
    for walkers in (1, 4, 16):
        sps = _committee_md(run.potential, atoms, steps, walkers)
        rows.append({"what": "committee MD, no labelling, one call per step", "walkers": walkers, "oracle_calls": 0,
                     "steps_per_second": sps, "walker_steps_per_second": walkers * sps})
    return rows


COMMITTEES = {"init": {}, "bootstrap": {"bootstrap": True}, "prior": {"prior_scale": 1.0},
              "features": {"feature_fraction": 0.6}}


def _triggers(steps: int, levels: tuple) -> dict:
    out = {}
    for tol in (0.02, 0.05, 0.1):
        out[("energy-rate", f"tol={tol}")] = energy_rate_trigger(tol)
        out[("hybrid", f"tol={tol}")] = hybrid_trigger(tol, floor=levels[0], warmup=5, calibration="rate")
    for budget in (0.2, 0.4):
        out[("budget", f"B={budget}")] = energy_budget_trigger(budget, steps, calibration="rate")
    for lo in levels:
        out[("max-force-dev", f"lo={lo}")] = max_force_deviation_trigger(lo, 3 * lo)
    return out


def _one(job: tuple) -> dict:
    system, family, setting, trigger, seed, committee = job
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    oracle, md, steps, _ = SYSTEMS[system]
    run = run_onthefly(load_system(system), trigger, oracle=oracle, steps=steps, seed=seed,
                       **{**LEARNING, **md, **COMMITTEES[committee]})
    drift = energy_drift(run, oracle=oracle, every=1)["drift"]
    return {"system": system, "family": family, "setting": setting, "committee": committee, "seed": seed,
            "oracle_calls": run.result.oracle_calls, "max_abs_drift": float(drift.abs().max()),
            "final_drift": float(drift.iloc[-1]), "seconds": run.seconds,
            **{f"cal_{k}": v for k, v in calibration_summary(run.calibration).items()}}


def _jobs(systems, committee_systems, seeds, parts) -> list[tuple]:
    jobs = []
    for seed in seeds:  # seed by seed, so that an interrupted run leaves whole seeds in the CSV
        for system in systems:
            steps, levels = SYSTEMS[system][2], SYSTEMS[system][3]
            if "pareto" in parts:
                for (family, setting), trig in _triggers(steps, levels).items():
                    jobs.append((system, family, setting, trig, seed, "init"))
            if "committees" in parts and system in committee_systems:
                for committee in COMMITTEES:
                    jobs.append((system, "energy-rate-cal", "tol=0.05", energy_rate_trigger(0.05, calibration="rate"),
                                 seed, committee))
    return jobs


class _Serial:
    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def map(self, fn, jobs):  # noqa: ANN001, ANN201
        return map(fn, jobs)


def _ci(x: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Bootstrap 95% percentile interval of the mean."""
    rng = np.random.default_rng(seed)
    means = rng.choice(x, size=(n_boot, len(x)), replace=True).mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (system, family, setting, committee), g in runs.groupby(["system", "family", "setting", "committee"],
                                                                  sort=False):
        calls, drift = g["oracle_calls"].to_numpy(float), g["max_abs_drift"].to_numpy(float)
        rows.append({"system": system, "family": family, "setting": setting, "committee": committee,
                     "seeds": len(g), "calls": calls.mean(), "calls_lo": _ci(calls)[0], "calls_hi": _ci(calls)[1],
                     "drift": drift.mean(), "drift_lo": _ci(drift)[0], "drift_hi": _ci(drift)[1],
                     "drift_median": float(np.median(drift)), "rate_s2": g["cal_rate_s2"].mean(),
                     "rate_coverage": g["cal_rate_coverage"].mean(), "force_s2": g["cal_force_s2"].mean()})
    return pd.DataFrame(rows)


def pareto_front(points: pd.DataFrame) -> pd.DataFrame:
    """The settings no other setting of the family beats on both mean calls and mean drift."""
    keep = [i for i, r in points.iterrows()
            if not ((points["calls"] <= r["calls"]) & (points["drift"] <= r["drift"])
                    & ((points["calls"] < r["calls"]) | (points["drift"] < r["drift"]))).any()]
    return points.loc[keep].sort_values("calls")


def plot_pareto(summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summary[summary["committee"] == "init"]
    systems = list(dict.fromkeys(s["system"]))
    fig, axes = plt.subplots(1, len(systems), figsize=(4.6 * len(systems), 3.9), squeeze=False)
    markers = {"energy-rate": "o", "budget": "D", "hybrid": "v", "max-force-dev": "s"}
    for ax, system in zip(axes[0], systems):
        for k, (family, marker) in enumerate(markers.items()):
            pts = s[(s["system"] == system) & (s["family"] == family)].sort_values("calls")
            if not len(pts):
                continue
            xerr = [pts["calls"] - pts["calls_lo"], pts["calls_hi"] - pts["calls"]]
            yerr = [pts["drift"] - pts["drift_lo"], pts["drift_hi"] - pts["drift"]]
            ax.errorbar(pts["calls"], pts["drift"], xerr=xerr, yerr=yerr, fmt=marker, color=f"C{k}", ms=5, lw=0.8,
                        capsize=2, alpha=0.85, label=family)
            front = pareto_front(pts)
            ax.plot(front["calls"], front["drift"], color=f"C{k}", lw=1.2)
        ax.set_yscale("log")
        ax.set_xlabel("oracle calls (mean over seeds)")
        ax.set_ylabel("max |oracle total-energy drift| (eV)")
        ax.set_title(f"{system} ({SYSTEMS[system][0]}), {int(s[s['system'] == system]['seeds'].max())} seeds",
                     fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("on-the-fly MD: calls vs drift, means with bootstrap 95% CIs; lines: each family's Pareto front",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def markdown(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float64", choices=sorted(DTYPES))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1, help="processes for the runs of committees and pareto")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--systems", nargs="*", default=list(SYSTEMS), choices=list(SYSTEMS))
    p.add_argument("--committee-systems", nargs="*", default=["cu13"], choices=list(SYSTEMS))
    p.add_argument("--resume", action="store_true", help="skip the runs already in --out")
    p.add_argument("--only", nargs="*", default=["ensemble", "throughput", "steps", "committees", "pareto"],
                   choices=["ensemble", "throughput", "steps", "committees", "pareto"])
    p.add_argument("--out", default=str(HERE / "active_runs.csv"), help="CSV of every run (committees, pareto)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", DeprecationWarning)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 30)
    repeats = 3 if args.quick else 10
    if "ensemble" in args.only:
        print("\n## committee energy + forces: vectorised vs loop over members")
        print(pd.DataFrame(bench_ensemble(args.device, repeats)).round(3).to_string(index=False))
    if "throughput" in args.only:
        print(f"\n## committee throughput, {args.device}, {args.dtype}")
        print(pd.DataFrame(bench_throughput(args.device, args.dtype, repeats, 8 if args.quick else 64))
              .round(2).to_string(index=False))
    if "steps" in args.only:
        print("\n## steps per second, ethanol, 0.5 fs")
        print(pd.DataFrame(bench_steps(args.device, 30 if args.quick else 200)).round(3).to_string(index=False))
    parts = [x for x in ("committees", "pareto") if x in args.only]
    if parts:
        if args.quick:
            for name in SYSTEMS:
                SYSTEMS[name] = (*SYSTEMS[name][:2], 12, SYSTEMS[name][3])
        jobs = _jobs(args.systems, args.committee_systems, range(args.seeds), parts)
        rows = []
        if args.resume and Path(args.out).exists():
            rows = pd.read_csv(args.out).to_dict("records")
            done = {(r["system"], r["family"], r["setting"], r["committee"], r["seed"]) for r in rows}
            jobs = [j for j in jobs if (j[0], j[1], j[2], j[5], j[4]) not in done]
        print(f"\n## {len(jobs)} on-the-fly runs ({', '.join(parts)})", flush=True)
        with ProcessPoolExecutor(args.jobs) if args.jobs > 1 else _Serial() as pool:
            for row in pool.map(_one, jobs):
                rows.append(row)
                pd.DataFrame(rows).to_csv(args.out, index=False)  # every run, as it comes
        runs = pd.DataFrame(rows)
        summary = summarise(runs)
        summary.to_csv(Path(args.out).with_suffix(".summary.csv"), index=False)
        print(markdown(summary.drop(columns=["calls_lo", "calls_hi", "drift_lo", "drift_hi"])))
        if "pareto" in parts:
            plot_pareto(summary, HERE / "active_pareto.png")
            print(f"figure: {HERE / 'active_pareto.png'}")


if __name__ == "__main__":
    main()
