"""HopSkipJump: probe against foolbox's HopSkipJumpAttack and ART's HopSkipJump on the same model and inputs.

Model: a small MLP trained on scikit-learn's handwritten digits (8x8 images scaled to [0, 1],
shipped with scikit-learn). All attacks see only decisions and run for the same numbers of
iterations with the paper's settings; the model is wrapped in one row counter, so the queries of all
are counted the same way (clean and final checks included). Success means an L2 distance within
``--slack`` (1.25) times the white-box minimal distance of ``probe.minimal_perturbation``
(DeepFool + FMN, refined) for that input.
The table gives, per iteration count, mean queries per input, wall time and that success rate;
the summary gives the queries and time each tool needs to reach the target success rate.

    python benchmarks/blackbox.py [--device cuda] [--n 100] [--targets 0.5,0.8,0.9] [--steps 1,2,4,8,16,32]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # this checkout's probe, not an installed one

from probe.testing import digits_mlp  # noqa: E402


class Counted(torch.nn.Module):
    """Counts the rows evaluated (a query per input row)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += int(x.shape[0])
        return self.net(x.float())   # ART's searches hand over float64 arrays


def train_digits(device: torch.device) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    return digits_mlp(device=device)


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


def run_art(model: Counted, x: torch.Tensor, steps: int) -> tuple[torch.Tensor, float, float]:
    from art.attacks.evasion import HopSkipJump as ArtHSJ
    from art.estimators.classification import PyTorchClassifier

    clf = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                            nb_classes=10, clip_values=(0.0, 1.0), device_type="gpu" if x.is_cuda else "cpu")
    attack = ArtHSJ(clf, targeted=False, norm=2, max_iter=steps, max_eval=10000, init_eval=100, init_size=100,
                    verbose=False)
    xn = x.detach().cpu().numpy()
    model.rows = 0
    t0 = time.perf_counter()
    adv = torch.as_tensor(attack.generate(xn), device=x.device)
    elapsed = time.perf_counter() - t0
    queries = model.rows / len(x)
    with torch.no_grad():
        flipped = model.net(adv).argmax(1) != model.net(x).argmax(1)
    dist = (adv - x).flatten(1).norm(dim=1)
    return torch.where(flipped, dist, torch.full_like(dist, float("inf"))), queries, elapsed


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

    import art
    import foolbox

    import probe
    from probe.microscope import minimal_perturbation

    net, X, Y = train_digits(device)
    correct = net(X).argmax(1) == Y
    x, y = X[correct][: args.n], Y[correct][: args.n]
    white = minimal_perturbation(net, x, norm="l2", space=probe.Box(0.0, 1.0)).distance
    limit = args.slack * white
    model = Counted(net).eval()
    print(f"digits MLP, {len(x)} inputs, device {device}, foolbox {foolbox.__version__}, ART {art.__version__}; "
          f"success = L2 distance <= {args.slack:g} x white-box minimal distance (median {float(white.median()):.3f})")
    tools = {"probe": lambda k: run_probe(model, x, k), "foolbox": lambda k: run_foolbox(model, x, y, k),
             "ART": lambda k: run_art(model, x, k)}
    table = {name: [] for name in tools}   # name -> [(iters, queries/input, seconds, success, median L2)]
    for steps in [int(s) for s in args.steps.split(",")]:
        for name, fn in tools.items():
            dist, q, t = fn(steps)
            table[name].append((steps, q, t, float((dist <= limit).float().mean()), float(dist.median())))
    head = f"{'tool':>8} {'iters':>5} {'queries/input':>13} {'time s':>8} {'success':>7} {'median L2':>9}"
    print(head)
    print("-" * len(head))
    for name, rows in table.items():
        for r in rows:
            print(f"{name:>8} {r[0]:>5} {r[1]:>13.0f} {r[2]:>8.2f} {r[3]:>7.2f} {r[4]:>9.3f}")

    def reach(rows: list, ok) -> tuple[float, float] | None:
        return next(((r[1], r[2]) for r in rows if ok(r)), None)

    def compare(label: str, ok) -> None:
        p = reach(table["probe"], ok)
        parts = [f"{name} " + ("not reached" if (c := reach(rows, ok)) is None else f"{c[0]:.0f} q/input, {c[1]:.2f} s")
                 for name, rows in table.items()]
        for name in ("foolbox", "ART"):
            c = reach(table[name], ok)
            if p is not None and c is not None:
                parts.append(f"{name}/probe: queries {c[0] / p[0]:.2f}x, time {c[1] / p[1]:.2f}x")
        print(f"{label}: " + "; ".join(parts))

    print()
    for target in [float(t) for t in args.targets.split(",")]:
        compare(f"to reach {target:.0%} success", lambda r, t=target: r[3] >= t)
    for name in ("foolbox", "ART"):
        best = min(r[4] for r in table[name])
        compare(f"to reach median L2 <= {best:.3f} ({name}'s best)", lambda r, b=best: r[4] <= b)

if __name__ == "__main__":
    main()
