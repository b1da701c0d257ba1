"""DGSM by autograd against SALib's finite differences; Sobol' indices of a batched torch model against SALib.

    python benchmarks/gsa.py [--device cuda] [--d 50] [--threads 1] [--sobol-n 512] [--dgsm-n 256 1024 4096]

1. DGSM on a 50-input torch MLP (50-128-128-1, tanh, float64, inputs uniform on [1, 2]):
   ``probe.gsa.dgsm`` (one forward and one backward pass per sample) against SALib's
   ``finite_diff.sample`` -> model -> ``dgsm.analyze`` (N (D + 1) model evaluations, the model
   called on the whole design at once, SALib's best case). Accuracy is the largest relative error
   of nu_i against a reference from 2^16 autograd samples on another seed; wall time includes
   sampling, evaluation and analysis (100 bootstrap resamples each); the model's share (forward and
   backward passes, or the N (D + 1) forward passes) is given beside it.
2. Sobol' indices (first and total order) of the same model: ``probe.gsa.sobol`` (batched on the
   model's device) against SALib's ``sobol.sample`` -> Python model function -> ``sobol.analyze``
   with the same seed, where the Python function evaluates one row at a time (the common way to
   write a SALib model) and, for SALib's best case, the whole design in one call. The designs are
   identical, so the indices must agree to rounding error.

Each timing is the best of ``--repeat`` runs after a warm-up.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from SALib.analyze import dgsm as salib_dgsm  # noqa: E402
from SALib.analyze import sobol as salib_sobol  # noqa: E402
from SALib.sample import finite_diff  # noqa: E402
from SALib.sample import sobol as salib_sobol_sample  # noqa: E402

from probe import gsa  # noqa: E402


def make_model(d: int, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d, 128), nn.Tanh(), nn.Linear(128, 128), nn.Tanh(),
                         nn.Linear(128, 1)).double().to(device).eval()


def best_of(fn, repeat: int) -> tuple[float, object]:
    fn()  # warm-up
    times, out = [], None
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return min(times), out


def batched_numpy(model: nn.Module, device: torch.device):
    def f(X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.as_tensor(X, device=device)).cpu().numpy().ravel()
    return f


def row_by_row(model: nn.Module, device: torch.device):
    def f(X: np.ndarray) -> np.ndarray:
        out = np.empty(len(X))
        with torch.no_grad():
            for i, x in enumerate(X):
                out[i] = model(torch.as_tensor(x[None], device=device)).item()
        return out
    return f


def bench_dgsm(model, problem, device, ns, delta, repeat, ref_n):
    ref = gsa.dgsm(model, problem, n=ref_n, seed=12345, lipschitz=None, device=device).vi
    D = problem["num_vars"]
    f = batched_numpy(model, device)
    rows = []
    for n in ns:
        t_probe, res = best_of(lambda n=n: gsa.dgsm(model, problem, n=n, seed=1, lipschitz=None, device=device),
                               repeat)

        def salib(n=n):
            X = finite_diff.sample(problem, n, delta=delta, seed=1)
            return salib_dgsm.analyze(problem, X, f(X), seed=1)

        t_salib, ref_salib = best_of(salib, repeat)
        X_base = gsa.base_sample(problem, n, seed=1)
        X_fd = finite_diff.sample(problem, n, delta=delta, seed=1)
        e_probe, _ = best_of(lambda X=X_base: gsa.evaluate_with_gradients(model, X, device=device), repeat)
        e_salib, _ = best_of(lambda X=X_fd: f(X), repeat)
        err_p = np.max(np.abs(res.vi - ref) / ref)
        err_s = np.max(np.abs(ref_salib["vi"] - ref) / ref)
        rows.append((n, t_probe, e_probe, err_p, t_salib, e_salib, err_s, n * (D + 1)))
    return rows


def bench_sobol(model, problem, device, n, repeat):
    t_probe, res = best_of(lambda: gsa.sobol(model, problem, n=n, seed=3, second_order=False, device=device), repeat)
    out = {}
    for name, fn in (("row by row", row_by_row(model, device)), ("one batched call", batched_numpy(model, device))):
        def salib(fn=fn):
            X = salib_sobol_sample.sample(problem, n, calc_second_order=False, seed=3)
            return salib_sobol.analyze(problem, fn(X), calc_second_order=False, seed=3)

        t, S = best_of(salib, 1 if name == "row by row" else repeat)
        out[name] = (t, np.max(np.abs(S["S1"] - res.S1)), np.max(np.abs(S["ST"] - res.ST)))
    return t_probe, res, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--d", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dgsm-n", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--delta", type=float, default=1e-4, help="SALib's relative finite-difference step")
    ap.add_argument("--sobol-n", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ref-n", type=int, default=2**16)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = make_model(args.d, device)
    problem = {"num_vars": args.d, "names": [f"x{i}" for i in range(args.d)], "bounds": [[1.0, 2.0]] * args.d}

    print(f"# DGSM, {args.d}-input MLP on {device}, {args.threads} torch thread(s); SALib delta = {args.delta}")
    print("| N | probe autograd: total s (model s) | max rel err | SALib finite diff: total s (model s) | max rel err "
          "| SALib evaluations | speed-up total (model) |")
    print("|---|---|---|---|---|---|---|")
    for n, tp, mp, ep, ts, ms, es, evals in bench_dgsm(model, problem, device, args.dgsm_n, args.delta, args.repeat,
                                                        args.ref_n):
        print(f"| {n} | {tp:.4f} ({mp:.4f}) | {ep:.4f} | {ts:.4f} ({ms:.4f}) | {es:.4f} | {evals} | "
              f"{ts / tp:.1f}x ({ms / mp:.1f}x) |")

    t_probe, res, out = bench_sobol(model, problem, device, args.sobol_n, args.repeat)
    evals = args.sobol_n * (args.d + 2)
    print(f"\n# Sobol' S1/ST, N = {args.sobol_n} ({evals} evaluations), same model and design")
    print("| tool | wall s | speed-up of probe | max abs diff S1 | max abs diff ST |")
    print("|---|---|---|---|---|")
    print(f"| probe.gsa.sobol (batched, {device}) | {t_probe:.4f} | | | |")
    for name, (t, d1, dT) in out.items():
        print(f"| SALib, Python model function, {name} | {t:.4f} | {t / t_probe:.1f}x | {d1:.1e} | {dT:.1e} |")
    top = np.argsort(-res.ST)[:3]
    print("\nlargest ST:", ", ".join(f"{res.names[i]} {res.ST[i]:.3f} ± {res.ST_conf[i]:.3f}" for i in top))


if __name__ == "__main__":
    main()
