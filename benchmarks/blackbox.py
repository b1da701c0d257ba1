"""HopSkipJump: probe against foolbox's HopSkipJumpAttack on the same model and inputs.

Model: a small MLP trained on scikit-learn's handwritten digits (8x8 images scaled to [0, 1],
shipped with scikit-learn). Both attacks see only decisions and run for the same numbers of
iterations; the model is wrapped in one row counter, so the queries of both are counted the same
way (clean and final checks included). Success means an L2 distance within ``--slack`` (1.25) times the white-box
minimal distance of ``probe.minimal_perturbation`` (DeepFool + FMN, refined) for that input.
The table gives, per iteration count, mean queries per input, wall time and that success rate;
the summary gives the queries and time each tool needs to reach the target success rate.

    python benchmarks/blackbox.py [--device cuda] [--n 100] [--targets 0.5,0.8,0.9] [--steps 1,2,4,8,16,32]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # this checkout's probe, not an installed one


class Counted(torch.nn.Module):
    """Counts the rows evaluated (a query per input row)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += int(x.shape[0])
        return self.net(x)


def train_digits(device: torch.device) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    xt, yt = torch.as_tensor(Xtr, device=device), torch.as_tensor(ytr, device=device)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, torch.as_tensor(Xte, device=device), torch.as_tensor(yte, device=device)


def run_probe(model: Counted, x: torch.Tensor, steps: int) -> tuple[torch.Tensor, float, float]:
    import probe
    from probe.attacks.hopskipjump import HopSkipJump

    model.rows = 0
    t0 = time.perf_counter()
    res = HopSkipJump(norm="l2", max_iter=steps, max_queries=10**7)(model, x, space=probe.Box(0.0, 1.0),
                                                                     batch_size=None)
    if x.is_cuda:
        torch.cuda.synchronize()
    return res.distance, model.rows / len(x), time.perf_counter() - t0


def run_foolbox(model: Counted, x: torch.Tensor, y: torch.Tensor, steps: int) -> tuple[torch.Tensor, float, float]:
    import foolbox as fb

    fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0), device=x.device)
    attack = fb.attacks.HopSkipJumpAttack(steps=steps, constraint="l2")
    model.rows = 0
    t0 = time.perf_counter()
    _, adv, success = attack(fmodel, x, fb.criteria.Misclassification(y), epsilons=None)
    if x.is_cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    dist = (adv - x).flatten(1).norm(dim=1)
    return torch.where(success, dist, torch.full_like(dist, float("inf"))), model.rows / len(x), elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--targets", default="0.5,0.8,0.9", help="success rates to reach")
    ap.add_argument("--steps", default="1,2,4,8,16,32")
    ap.add_argument("--slack", type=float, default=1.25, help="success: distance <= slack x white-box distance")
    args = ap.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)

    import foolbox

    import probe
    from probe.microscope import minimal_perturbation

    net, X, Y = train_digits(device)
    correct = net(X).argmax(1) == Y
    x, y = X[correct][: args.n], Y[correct][: args.n]
    white = minimal_perturbation(net, x, norm="l2", space=probe.Box(0.0, 1.0)).distance
    limit = args.slack * white
    model = Counted(net).eval()
    print(f"digits MLP, {len(x)} inputs, device {device}, foolbox {foolbox.__version__}; "
          f"success = L2 distance <= {args.slack:g} x white-box minimal distance (median {float(white.median()):.3f})")
    rows = []
    for steps in [int(s) for s in args.steps.split(",")]:
        dp, qp, tp = run_probe(model, x, steps)
        df, qf, tf = run_foolbox(model, x, y, steps)
        sp, sf = float((dp <= limit).float().mean()), float((df <= limit).float().mean())
        rows.append((steps, qp, tp, sp, float(dp.median()), qf, tf, sf, float(df.median())))
    head = (f"{'iters':>5} | {'probe q/input':>13} {'time s':>7} {'success':>7} {'median L2':>9} | "
            f"{'foolbox q/input':>15} {'time s':>7} {'success':>7} {'median L2':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r[0]:>5} | {r[1]:>13.0f} {r[2]:>7.2f} {r[3]:>7.2f} {r[4]:>9.3f} | "
              f"{r[5]:>15.0f} {r[6]:>7.2f} {r[7]:>7.2f} {r[8]:>9.3f}")

    def first(col_q: int, col_t: int, col_s: int, target: float) -> tuple[float, float] | None:
        for r in rows:
            if r[col_s] >= target:
                return r[col_q], r[col_t]
        return None

    for target in [float(t) for t in args.targets.split(",")]:
        p, f = first(1, 2, 3, target), first(5, 6, 7, target)
        line = f"to reach {target:.0%} success: probe "
        line += "not reached" if p is None else f"{p[0]:.0f} queries/input in {p[1]:.2f} s"
        line += "; foolbox " + ("not reached" if f is None else f"{f[0]:.0f} queries/input in {f[1]:.2f} s")
        if p is not None and f is not None:
            line += f"; ratio foolbox/probe: queries {f[0] / p[0]:.2f}x, wall time {f[1] / p[1]:.2f}x"
        print(line)

if __name__ == "__main__":
    main()
