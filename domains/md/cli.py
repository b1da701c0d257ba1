"""``probe md``: on-the-fly MD of a small molecule, two triggers side by side."""

from __future__ import annotations

import argparse
import importlib.util
import warnings
from pathlib import Path

from probe.cli import Command

__all__ = ["COMMAND"]


def markdown_table(table: object) -> str:
    """A pandas DataFrame as a GitHub markdown table (4 significant digits)."""
    cols = [table.index.name or ""] + list(table.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for idx, row in table.iterrows():
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join([str(idx), *cells]) + " |")
    return "\n".join(lines)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    from .systems import SYSTEMS

    p.add_argument("--system", choices=sorted(SYSTEMS), default=None,
                   help="starting structure (default: ethanol; cu13 with --quick)")
    p.add_argument("--oracle", choices=["tblite", "emt", "pyscf"], default=None,
                   help="reference calculator (default: tblite GFN2-xTB; emt with --quick or when tblite is missing)")
    p.add_argument("--steps", type=int, default=None, help="MD steps per trigger (default 200; 30 with --quick)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--integrator", choices=["verlet", "langevin"], default="verlet")
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="energy-rate trigger: accumulated sigma(dE/dt) dt in eV (default 0.05)")
    p.add_argument("--calibration", choices=["none", "rate", "forces"], default="none",
                   help="energy-rate trigger: rescale the committee spread by the errors observed at the labels "
                        "(on the energy rate or the force components; default none: the raw spread)")
    p.add_argument("--trust-lo", type=float, default=None, help="max-force-deviation trust_lo, eV/A")
    p.add_argument("--trust-hi", type=float, default=None, help="max-force-deviation trust_hi, eV/A")
    p.add_argument("--device", default=None, help="torch device of the committee (default: the CPU)")


def _oracle(args: argparse.Namespace) -> str:
    if args.oracle is not None:
        return args.oracle
    if args.quick:
        return "emt"
    # look, do not import: importing tblite costs time and is only needed when it runs
    if importlib.util.find_spec("tblite") is None:
        warnings.warn("tblite is not installed; falling back to the EMT oracle", stacklevel=2)
        return "emt"
    return "tblite"


def _uncertainty_figure(cmp: object, system: str) -> object:
    """Committee energy, sigma(dE/dt) and max force deviation along each run (walker 0), oracle calls marked."""
    import matplotlib.lines as mlines
    import matplotlib.patches as mpatches
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(8, 7.5), sharex=True)
    handles = []
    for k, (name, run) in enumerate(cmp.runs.items()):
        h = run.result.history
        h = h[h["walker"] == 0]
        t = h["step"] * run.timestep
        axes[0].plot(t, h["energy"], color=f"C{k}", lw=0.8)
        axes[0].fill_between(t, h["energy"] - h["energy_std"], h["energy"] + h["energy_std"], color=f"C{k}", alpha=0.3)
        axes[1].plot(t, h["sigma_dEdt"], color=f"C{k}", lw=0.8)
        axes[2].plot(t, h["max_force_deviation"], color=f"C{k}", lw=0.8)
        for ax in axes:
            for s in run.result.events["step"]:
                ax.axvline(s * run.timestep, color=f"C{k}", lw=0.3, alpha=0.5)
        handles += [mlines.Line2D([], [], color=f"C{k}", lw=0.8, label=f"{name} trigger: committee mean"),
                    mpatches.Patch(color=f"C{k}", alpha=0.3, label=f"{name}: mean +/- committee std"),
                    mlines.Line2D([], [], color=f"C{k}", lw=0.6, alpha=0.5, label=f"{name}: oracle call")]
    axes[0].set_ylabel("energy (eV)")
    axes[0].set_title("committee energy")
    axes[1].set_ylabel("sigma(dE/dt) (eV/fs)")
    axes[1].set_title("predicted energy-error rate")
    axes[2].set_ylabel("max force dev. (eV/Å)")
    axes[2].set_title("max force deviation")
    axes[2].set_xlabel("time (fs)")
    fig.suptitle(f"{system}: uncertainty along each run (walker 0)")
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=7)
    return fig


def _run(args: argparse.Namespace) -> dict:
    from probe.devices import single_thread

    # the committee's tensors are tiny (tens of atoms): one thread avoids OpenMP overhead
    with single_thread():
        return _run_single_threaded(args)


def _run_single_threaded(args: argparse.Namespace) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from probe.progress import Steps
    from probe.style import save, style
    from probe.tables import write_table

    from .comparison import compare_triggers
    from .systems import load_system
    from .tables import label_table, step_table
    from .triggers import energy_rate_trigger, max_force_deviation_trigger

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    oracle = _oracle(args)
    metal = oracle == "emt" and args.system is None
    system = args.system or ("cu13" if metal or args.quick else "ethanol")
    is_cluster = system in ("cu13", "pt13")
    steps = args.steps or (30 if args.quick else 200)
    lo = args.trust_lo if args.trust_lo is not None else (0.1 if is_cluster else 0.3)
    hi = args.trust_hi if args.trust_hi is not None else (0.4 if is_cluster else 0.9)
    options = {
        "timestep": 5.0 if is_cluster else 0.5,
        "temperature": 500.0 if is_cluster else 300.0,
        "integrator": args.integrator,
        "cutoff": 5.0 if is_cluster else 6.0,
        "hidden": 8 if args.quick else 32,
        "n_members": 3 if args.quick else 4,
        "first_steps": 60 if args.quick else 300,
        "fit_steps": 15 if args.quick else 60,
        "n_initial": 3 if args.quick else 4,
        "device": args.device,
    }
    calibration = None if args.calibration == "none" else args.calibration
    triggers = {"energy-rate": energy_rate_trigger(args.tolerance, calibration=calibration),
                "max-force-dev": max_force_deviation_trigger(lo, hi)}
    step = Steps("md", 3)
    step(f"on-the-fly MD of {system}, {steps} steps with the {oracle} oracle, per trigger: {', '.join(triggers)}")
    # the label stores live in the output folder, so an interrupted run resumes where it stopped
    cmp = compare_triggers(load_system(system), triggers, oracle=oracle, steps=steps, seed=args.seed, workdir=out,
                           heldout_every=2 if args.quick else 5, drift_every=2 if args.quick else 5, **options)
    step("tables: trigger comparison, one row per MD step, one per oracle label")
    table = cmp.table
    write_table(out, "trigger_comparison", table)
    (out / "trigger_comparison.md").write_text(markdown_table(table) + "\n")
    write_table(out, "steps", step_table(cmp.runs))
    write_table(out, "labels", label_table(cmp.runs, out))
    step("figures")
    with style():
        save(cmp.plot()[0].figure, out / "trigger_comparison.png")
        save(_uncertainty_figure(cmp, system), out / "energy_uncertainty.png")

    er, mf = table.loc["energy-rate"], table.loc["max-force-dev"]
    verdict = []
    for col, what in (("oracle_calls", "fewer oracle calls"), ("force_rmse", "lower held-out force RMSE"),
                      ("max_abs_drift", "smaller energy drift")):
        best = "energy-rate" if er[col] < mf[col] else ("max-force-dev" if mf[col] < er[col] else "tie")
        verdict.append(f"{what}: {best} ({er[col]:.4g} vs {mf[col]:.4g})")
    step.finish()
    return {
        "system": system,
        "oracle": oracle,
        "steps": int(steps),
        "oracle_calls": int(er["oracle_calls"]),
        "triggers": {name: {k: (float(v) if isinstance(v, (float, np.floating)) else int(v))
                            for k, v in row.items()} for name, row in table.iterrows()},
        "trust_lo": lo,
        "trust_hi": hi,
        "tolerance_eV": args.tolerance,
        "calibration": args.calibration,
        "reference_md_steps_per_second": float(cmp.reference_steps_per_second),
        "verdict": verdict,
        "figures": ["trigger_comparison.png", "energy_uncertainty.png"],
    }


COMMAND = Command(
    name="md",
    help="on-the-fly MD with an ensemble potential: energy-rate vs max-force-deviation triggers",
    add_arguments=_add_arguments,
    run=_run,
)
