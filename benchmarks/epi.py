"""Epidemiology benchmark: Cori speed against epyestim, bound computation time, neural vs Cori accuracy.

    python benchmarks/epi.py [--device cuda] [--series 1000] [--days 365]

1. ``domains.epi.cori`` on S series x T days at once against epyestim's ``estimate_r`` (prior shape 1,
   scale 5 = EpiEstim's mean 5 sd 5) called one series at a time, with the same posterior mean, sd and
   seven quantiles computed from its output; the numbers must agree.
2. Time to compute the exact Cori bounds (LP per window and direction) and the neural certified bands.
3. On simulated epidemics with known R_t: mean absolute error of the neural estimator and of Cori
   against the true window-mean R, and the median relative width of the certified bands at 5 % and
   10 % relative reporting error.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from domains.epi import cori, discretize_serial_interval  # noqa: E402
from domains.epi.bounds import ReportingError, cori_mean_bounds, neural_bounds  # noqa: E402
from domains.epi.cori import COLUMNS, QUANTILES, cori_posterior, split_imported  # noqa: E402
from domains.epi.neural import features, train_neural_estimator  # noqa: E402
from domains.epi.simulate import simulate  # noqa: E402


def bench_cori(n_series: int, n_days: int) -> dict:
    import pandas as pd
    from epyestim.estimate_r import estimate_r, gamma_quantiles

    w = discretize_serial_interval(4.0, 2.0, np.arange(25))
    w = w / w.sum()
    sim = simulate(n_days, n_series=n_series, seed=0, seed_cases=(10.0, 200.0), max_infections=1e5)
    counts = sim.observed
    index = pd.date_range("2020-01-01", periods=n_days)

    t0 = time.perf_counter()
    ours = cori(counts, w, window=7)
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    rows = []
    for s in range(n_series):
        post = estimate_r(pd.Series(counts[s], index=index), w, a_prior=1.0, b_prior=5.0, window_size=7)
        a, b = post["a_posterior"].to_numpy(), post["b_posterior"].to_numpy()
        table = [a * b, np.sqrt(a) * b] + [gamma_quantiles(q, a, b) for q in QUANTILES]
        rows.append(np.stack(table, 1))
    t_ref = time.perf_counter() - t0
    # epyestim's windows start on day 1; EpiEstim's (and ours) on day 2: drop epyestim's first
    ref = np.concatenate([r[1:] for r in rows])
    got = ours[list(COLUMNS[2:])].to_numpy(float)
    diff = float(np.max(np.abs(got - ref) / np.maximum(1.0, np.abs(ref))))
    return {"ours_s": t_ours, "epyestim_s": t_ref, "speedup": t_ref / t_ours, "max_rel_diff": diff,
            "rows": len(ours)}


def bench_bounds(estimator: object, device: str | None) -> dict:
    sim = simulate(120, n_series=1, seed=5, seed_cases=60.0, reporting_rate=0.5,
                   serial_interval=(4.0, 2.0))
    y = sim.observed[0]
    out = {}
    for rho in (0.05, 0.1):
        err = ReportingError(relative=rho)
        t0 = time.perf_counter()
        cb = cori_mean_bounds(y, sim.serial_interval, err)
        out[f"cori_lp_s@{rho}"] = time.perf_counter() - t0
        out["cori_windows"] = int(np.isfinite(cb.upper).sum())
        t0 = time.perf_counter()
        nb = neural_bounds(estimator, y, err, device=device)
        out[f"neural_s@{rho}"] = time.perf_counter() - t0
        out["neural_windows"] = len(nb.t_end)
    return out


def bench_accuracy(estimator: object, n_series: int, device: str | None) -> dict:
    test = simulate(120, n_series=n_series, seed=123, seed_cases=(20.0, 500.0), reporting_rate=(0.2, 1.0))
    length = estimator.length
    x = features(test.observed, length)
    pred = np.exp(estimator.predict_features(x.reshape(-1, length), device=device)).reshape(x.shape[:2])
    truth = test.window_mean_r(7)[:, length - 1:]
    t_end = np.arange(length, length + x.shape[1])
    local, imp = split_imported(test.observed, None)
    cori_mean = cori_posterior(local, imp, test.serial_interval, t_end - 6, t_end, a_prior=1.0, b_prior=5.0).mean
    recent = np.lib.stride_tricks.sliding_window_view(test.observed, 7, axis=1)[:, length - 7:].sum(-1)
    capped = np.lib.stride_tricks.sliding_window_view(test.settings["capped"], length, axis=1).any(-1)
    ok = (recent >= 20) & ~capped
    out = {"windows": int(ok.sum()),
           "neural_mae": float(np.abs(pred - truth)[ok].mean()),
           "cori_mae": float(np.abs(cori_mean - truth)[ok].mean()),
           "lipschitz_linf": estimator.lipschitz_upper_bound("linf")}
    for rho in (0.05, 0.1):
        nw, cw = [], []
        for s in range(min(n_series, 8)):
            err = ReportingError(relative=rho)
            nb = neural_bounds(estimator, test.observed[s], err, device=device)
            nw.append(((nb.upper - nb.lower) / nb.estimate)[ok[s]])
            cb = cori_mean_bounds(test.observed[s], test.serial_interval, err, t_start=t_end - 6, t_end=t_end)
            cw.append(((cb.upper - cb.lower) / cb.estimate)[ok[s]])
        out[f"neural_band@{rho}"] = float(np.median(np.concatenate(nw)))
        out[f"cori_band@{rho}"] = float(np.median(np.concatenate(cw)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None)
    p.add_argument("--series", type=int, default=1000)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--test-series", type=int, default=100)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: a shared machine)")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)

    c = bench_cori(args.series, args.days)
    print(f"\nCori, {args.series} series x {args.days} days ({c['rows']} windows)")
    print(f"{'tool':<28}{'seconds':>10}")
    print(f"{'domains.epi.cori (batched)':<28}{c['ours_s']:>10.3f}")
    print(f"{'epyestim, one at a time':<28}{c['epyestim_s']:>10.3f}")
    print(f"ratio (epyestim / ours): {c['speedup']:.1f}x; max relative difference: {c['max_rel_diff']:.2e}")

    t0 = time.perf_counter()
    est = train_neural_estimator(seed=0, device=args.device)
    t_train = time.perf_counter() - t0
    print(f"\nneural estimator trained in {t_train:.1f} s on {est.history['samples']} windows")

    b = bench_bounds(est, args.device)
    print(f"\nbounds on one 120-day series ({b['cori_windows']} Cori windows, {b['neural_windows']} neural windows)")
    for rho in (0.05, 0.1):
        print(f"  relative error {rho:.0%}: Cori exact LP {b[f'cori_lp_s@{rho}']:.2f} s "
              f"({1e3 * b[f'cori_lp_s@{rho}'] / b['cori_windows']:.1f} ms/window), "
              f"neural CROWN+IBP+Lipschitz {b[f'neural_s@{rho}']:.3f} s")

    a = bench_accuracy(est, args.test_series, args.device)
    print(f"\nsimulated epidemics with known R ({a['windows']} windows): mean absolute error vs true window-mean R")
    print(f"  neural {a['neural_mae']:.4f}   Cori {a['cori_mae']:.4f}")
    print(f"  neural certified L-inf Lipschitz constant (log R per unit log count): {a['lipschitz_linf']:.3f}")
    print("  median relative width of the certified band (upper - lower) / estimate:")
    for rho in (0.05, 0.1):
        print(f"    {rho:.0%} relative error: neural {a[f'neural_band@{rho}']:.4f}   "
              f"Cori (exact) {a[f'cori_band@{rho}']:.4f}")


if __name__ == "__main__":
    main()
