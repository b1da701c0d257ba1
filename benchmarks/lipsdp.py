"""LipSDP-neuron on a 64-64-10 ReLU MLP: solvers side by side.

The network is Linear(64, 64)-ReLU-Linear(64, 64)-ReLU-Linear(64, 10), trained for 200 full-batch
Adam steps (lr 1e-2, torch seed 0) on scikit-learn's digits scaled to [0, 1]; the LMI has dimension
64 + 128 = 192 and 128 neuron multipliers. Each path solves the same program
(:mod:`probe.certify.lipsdp`) and its (rho, T) goes through the same eigenvalue check:

* ``ipm``: the built-in primal-dual interior-point method (the default), through
  ``lipschitz_bound(net, method="lipsdp-neuron")``, with one BLAS thread (the default) and with
  the process's BLAS threads (``threads=None``);
* ``cvxpy-CLARABEL`` / ``cvxpy-SCS``: the same LMI assembled from one sparse coefficient matrix
  and handed to cvxpy (SCS with an iteration limit, ``--scs-iters``, default 2000);
* ``old-CLARABEL`` (``--old``, minutes): the formulation the package had before, verbatim: one
  dense D x D matrix per neuron, ``t @ G`` in cvxpy, Clarabel.

Columns: wall seconds (LMI building, solve and check), the solver's value sqrt(rho), the
certified (sound) value after the eigenvalue check, its relative difference to the reference,
and what the check did: "passed" (the solver's point satisfies the LMI with margin), "raised"
(rho raised until it does) or "failed" (the hidden block is violated: no sound value; the
library raises ``ProbeError``), and the largest eigenvalue of M at the certified point.
The reference is the built-in interior-point method at ``gap_tol=1e-12`` (its duality gap is
printed); ``--old`` adds the old formulation as a second reference.

Run: ``python benchmarks/lipsdp.py [--old] [--skip-clarabel] [--scs-iters 2000] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's probe, not an installed one

from probe import ProbeError
from probe.certify import lipsdp as L
from probe.certify.graph import build_graph
from probe.certify.lipschitz import lipschitz_bound


def train_digits() -> torch.nn.Module:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = torch.as_tensor((X / 16.0).astype(np.float32))
    y = torch.as_tensor(y)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                              torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(X), y).backward()
        opt.step()
    return net.eval()


def old_formulation(weights: list, slopes: list, variant: str = "neuron") -> tuple[float, np.ndarray]:
    """The package's LipSDP program before the rewrite (one dense D x D matrix per neuron), solved by Clarabel.

    Returns rho and the multipliers per neuron; the Lipschitz bound is sqrt(rho). Written apart from
    ``probe.certify.lipsdp`` so that it can serve as the reference the tests compare against.
    """
    import cvxpy as cp

    n0 = weights[0].shape[1]
    sizes = [s[2] for s in slopes]
    n = sum(sizes)
    W_last = weights[-1]
    A = np.zeros((n, n0 + n))
    row, col = 0, 0
    for W in weights[:-1]:
        A[row:row + W.shape[0], col:col + W.shape[1]] = W
        row, col = row + W.shape[0], col + W.shape[1]
    B = np.hstack([np.zeros((n, n0)), np.eye(n)])
    alpha = np.concatenate([np.full(k, a) for a, _, k in slopes])
    beta = np.concatenate([np.full(k, b) for _, b, k in slopes])
    if variant == "neuron":
        t = cp.Variable(n, nonneg=True)
    else:
        lam = cp.Variable(len(sizes), nonneg=True)
        t = cp.hstack([lam[i] * np.ones(k) for i, k in enumerate(sizes)])
    rho = cp.Variable(nonneg=True)
    D = n0 + n
    G = (-2 * alpha * beta)[:, None, None] * A[:, :, None] * A[:, None, :] \
        + (alpha + beta)[:, None, None] * (A[:, :, None] * B[:, None, :] + B[:, :, None] * A[:, None, :]) \
        - 2 * B[:, :, None] * B[:, None, :]
    last = np.zeros((D, D))
    k_last = W_last.shape[1]
    last[-k_last:, -k_last:] = W_last.T @ W_last
    E0 = np.zeros((D, D))
    E0[:n0, :n0] = np.eye(n0)
    M = cp.reshape(t @ G.reshape(n, D * D), (D, D), order="C") - rho * E0 + last
    M = (M + M.T) / 2
    prob = cp.Problem(cp.Minimize(rho), [M << 0])
    prob.solve(solver="CLARABEL")
    return float(rho.value), np.asarray(t.value, dtype=float)


def run(name: str, solve, lmi) -> dict:
    t0 = time.perf_counter()
    rho = math.nan
    try:
        rho, t = solve()
        rho_sound, top = L._certify(lmi, rho, t)
    except ProbeError as err:  # a solver that fails, or a point the check rejects, is a row of the table
        rho_sound, top = math.nan, math.nan
        print(f"{name}: {err}")
    check = "failed" if math.isnan(rho_sound) else "passed" if rho_sound == rho else "raised"
    return {"solver": name, "seconds": time.perf_counter() - t0, "raw": math.sqrt(rho) if rho >= 0 else math.nan,
            "value": math.sqrt(rho_sound), "check": check, "top": top}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", action="store_true", help="also run the old formulation (minutes)")
    ap.add_argument("--skip-clarabel", action="store_true", help="leave out cvxpy-CLARABEL (minutes)")
    ap.add_argument("--scs-iters", type=int, default=2000, help="SCS iteration limit (its default, 100000, "
                    "takes about half an hour here)")
    ap.add_argument("--threads", type=int, default=2, help="BLAS and torch threads")
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        net = train_digits()
        graph = build_graph(net, torch.zeros(2, 64))
        weights, slopes = L.dense_layers(graph)
        lmi = L._lmi(weights, slopes)
        spectral = lipschitz_bound(net).value
        with threadpool_limits(limits=1):
            rho_ref, t_ref, gap_ref = L._solve_ipm(lmi, "neuron", 1e-12, False)
            ref = math.sqrt(L._certify(lmi, rho_ref, t_ref)[0])
        rows = []
        for name, kw in [("ipm (default, 1 BLAS thread)", {}), (f"ipm (threads=None: {args.threads} BLAS)",
                                                                 {"threads": None})]:
            t0 = time.perf_counter()
            api = lipschitz_bound(net, method="lipsdp-neuron", progress=False, **kw)
            rows.append({"solver": name, "seconds": time.perf_counter() - t0, "value": api.value,
                         "raw": math.sqrt(api.value**2 - api.layers["rho_increase"]),
                         "check": "passed" if api.layers["rho_increase"] == 0.0 else "raised",
                         "top": api.layers["max_eigenvalue"]})
        rows.append(run(f"cvxpy-SCS ({args.scs_iters} it.)",
                        lambda: L._solve_cvxpy(lmi, "neuron", "SCS", {"max_iters": args.scs_iters}), lmi))
        if not args.skip_clarabel:
            rows.append(run("cvxpy-CLARABEL", lambda: L._solve_cvxpy(lmi, "neuron", "CLARABEL"), lmi))
        if args.old:
            rows.append(run("old-CLARABEL", lambda: old_formulation(weights, slopes), lmi))
    print(f"64-64-10 ReLU MLP on digits; LMI {lmi.D} x {lmi.D}, {lmi.n} multipliers; {args.threads} threads")
    print(f"spectral product {spectral:.6f}; reference (ipm, gap_tol 1e-12) {ref:.8f}, rho gap {gap_ref:.1e}")
    print(f"{'solver':30s} {'seconds':>8s} {'solver value':>13s} {'certified':>13s} {'rel. diff':>10s} "
          f"{'check':>7s} {'max eig':>10s}")
    for r in rows:
        print(f"{r['solver']:30s} {r['seconds']:8.2f} {r['raw']:13.8f} {r['value']:13.8f} "
              f"{(r['value'] - ref) / ref:10.2e} {r['check']:>7s} {r['top']:10.2e}")


if __name__ == "__main__":
    main()
