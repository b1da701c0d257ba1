"""``probe epi``: R_t with hard error bounds under reporting error, for shipped or user data."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from probe.cli import Command
from probe.errors import ProbeError

if TYPE_CHECKING:  # numpy loads when the command runs, not for ``probe epi --help``
    import numpy as np

__all__ = ["COMMAND"]


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--csv", type=Path, default=None,
                        help="your incidence CSV (columns date or day, and I or --column); default: shipped data")
    parser.add_argument("--column", default=None, help="column of counts in --csv")
    parser.add_argument("--si-mean", type=float, default=None, help="mean serial interval in days (with --si-std)")
    parser.add_argument("--si-std", type=float, default=None, help="sd of the serial interval in days")
    parser.add_argument("--si-csv", type=Path, default=None, help="non-parametric serial interval CSV (t, w)")
    parser.add_argument("--relative", type=float, default=0.1,
                        help="per-day relative reporting error, 0.1 = 10%% (default 0.1; 0 to leave out)")
    parser.add_argument("--absolute", type=float, default=None, help="per-day absolute reporting error (cases)")
    parser.add_argument("--l1", type=float, default=None, help="bound on the total reporting error (cases)")
    parser.add_argument("--window", type=int, default=7, help="Cori window in days (default 7)")
    parser.add_argument("--no-neural", action="store_true", help="skip the neural estimator")
    parser.add_argument("--seed", type=int, default=0)


def _serial_interval(args: argparse.Namespace) -> object:
    from .serial_interval import discretize_serial_interval, read_serial_interval_csv

    if args.si_csv is not None:
        if args.si_mean is not None or args.si_std is not None:
            raise ProbeError("give either --si-csv or --si-mean/--si-std, not both")
        return read_serial_interval_csv(args.si_csv)
    if args.si_mean is None or args.si_std is None:
        raise ProbeError("--csv needs a serial interval: --si-mean and --si-std, or --si-csv")
    w = discretize_serial_interval(args.si_mean, args.si_std)
    return w / w.sum()


def _error_model(args: argparse.Namespace) -> object:
    from .bounds import ReportingError

    rel = args.relative if args.relative else None
    return ReportingError(relative=rel, absolute=args.absolute, l1=args.l1)


def _jobs(args: argparse.Namespace) -> list[dict]:
    import numpy as np

    from . import datasets
    from .io import read_incidence_csv
    from .simulate import simulate

    if args.csv is not None:
        series = read_incidence_csv(args.csv, column=args.column)
        return [{"name": args.csv.stem, "counts": series, "si": _serial_interval(args), "truth": None}]
    if args.si_mean is not None or args.si_std is not None or args.si_csv is not None:
        raise ProbeError("--si-mean/--si-std/--si-csv go with --csv")
    names = ("Flu2009",) if args.quick else datasets.names()
    jobs = []
    for name in names:
        ep = datasets.load(name)
        jobs.append({"name": name, "counts": ep.incidence, "si": ep.serial_interval, "truth": None,
                     "source": ep.source})
    n_days = 70 if args.quick else 120
    r_true = np.interp(np.arange(n_days), [0, 25, 45, 70, n_days - 1], [1.8, 1.6, 0.8, 1.1, 0.9])
    # influenza's serial interval (EpiEstim's Flu2009 one), so one trained network serves three series
    flu_si = datasets.load("Flu2009").serial_interval
    sim = simulate(n_days, r_t=r_true, serial_interval=flu_si, seed_cases=40.0, reporting_rate=0.5, seed=args.seed)
    jobs.append({"name": "simulated", "counts": sim.observed[0], "si": sim.serial_interval,
                 "truth": sim.window_mean_r(7)[0], "source": "renewal-equation simulator, R_t known"})
    return jobs


def _median_rel_width(lower: np.ndarray, upper: np.ndarray, est: np.ndarray) -> float:
    import numpy as np

    w = (upper - lower) / est
    w = w[np.isfinite(w)]
    return float(np.median(w)) if len(w) else float("nan")


def _run(args: argparse.Namespace) -> dict:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")

    from probe.progress import Steps, enabled
    from probe.style import save
    from probe.tables import write_table

    from .bounds import cori_mean_bounds, neural_bounds
    from .cori import cori
    from .io import check_incidence
    from .neural import train_neural_estimator
    from .plots import plot_report
    from .tables import rt_table

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    error = _error_model(args)
    jobs = _jobs(args)
    trained: dict[bytes, object] = {}
    report: dict[str, dict] = {}
    step = Steps("epi", len(jobs))
    for job in jobs:
        name, counts, si = job["name"], job["counts"], job["si"]
        step(f"{name}: Cori estimate, exact bounds" + ("" if args.no_neural else ", neural estimator"))
        t0 = time.perf_counter()
        frame = cori(counts, si, window=args.window)
        y = np.asarray(counts, dtype=np.float64)
        cb = cori_mean_bounds(y, si, error, window=args.window)
        entry: dict = {"days": int(len(y)), "windows": int(len(frame)), "source": job.get("source", str(args.csv)),
                       "cori": {"last_mean": float(frame["mean"].iloc[-1]),
                                "median_rel_width_95cri": _median_rel_width(frame["q025"].to_numpy(),
                                                                             frame["q975"].to_numpy(),
                                                                             frame["mean"].to_numpy()),
                                "median_rel_width_certified": _median_rel_width(cb.lower, cb.upper, cb.estimate),
                                "max_lp_check_gap": float(np.nanmax(cb.check_gap)),
                                "seconds": round(time.perf_counter() - t0, 3)}}
        nb = None
        length = 21
        if not args.no_neural and len(y) >= length:
            key = np.asarray(si, dtype=np.float64).tobytes()
            t1 = time.perf_counter()
            if key not in trained:
                # the demo budget: a few seconds per serial interval (the benchmark trains the full-size one)
                settings = ({"n_epidemics": 40, "n_days": 80, "epochs": 6} if args.quick
                            else {"n_epidemics": 150, "n_days": 100, "epochs": 20})
                trained[key] = train_neural_estimator(length=length, window=args.window, serial_interval=si,
                                                      seed=args.seed, progress=enabled(), **settings)
            est = trained[key]
            nb = neural_bounds(est, y, error)
            entry["neural"] = {"median_rel_width_certified": _median_rel_width(nb.lower, nb.upper, nb.estimate),
                               "tightest_method_counts": {str(k): int(v) for k, v in
                                                          zip(*np.unique(nb.best_upper, return_counts=True))},
                               "lipschitz_linf": nb.lipschitz.get("linf"),
                               "seconds": round(time.perf_counter() - t1, 3)}
        if job["truth"] is not None:
            truth = job["truth"]
            ok = np.isfinite(cb.estimate)
            entry["cori"]["mae_vs_truth"] = float(np.mean(np.abs(cb.estimate[ok] - truth[cb.t_end[ok] - 1])))
            entry["cori"]["truth_in_certified_band"] = float(np.mean(
                (truth[cb.t_end[ok] - 1] >= cb.lower[ok]) & (truth[cb.t_end[ok] - 1] <= cb.upper[ok])))
            if nb is not None:
                entry["neural"]["mae_vs_truth"] = float(np.mean(np.abs(nb.estimate - truth[nb.t_end - 1])))
        dates = check_incidence(counts, allow_fractional=True).dates  # calendar dates where the data have them
        fig = plot_report(y, frame, cb, nb, truth=job["truth"], dates=dates,
                          title=f"{name}: R_t under a reporting error of {error.describe()}")
        path = save(fig, out / f"epi_{name}.png")
        entry["figure"] = path.name
        table = rt_table(frame, cb, nb, dates=dates)
        entry["table"] = write_table(out, f"rt_{name}", table)[0].name
        report[name] = entry
    step.finish()
    return {"error_model": error.describe(), "window": args.window, "epidemics": report}


COMMAND = Command(name="epi", help="R_t (Cori and neural) with hard error bounds under reporting error",
                  add_arguments=_add_arguments, run=_run)
