"""The robustness-accuracy trade-off, made visible.

Trains the same MLP on the same data (scikit-learn's 8x8 digits, real images that ship with
scikit-learn) and seed four ways — standard training, PGD adversarial training (Madry et al.
2018), TRADES (Zhang et al. 2019) and training under Lipschitz budgets — and measures, for
every L2 budget eps on a grid:

* clean accuracy (eps = 0),
* empirical robust accuracy under probe's PGD (an *upper* bound on the true robust accuracy),
  cross-checked by torchattacks' PGDL2 on the same models and inputs when it is installed,
* certified robust accuracy (a *lower* bound): the larger of the CROWN certified radius
  (``probe.certify.certified_radius``) and the Lipschitz-margin radius from the spectral
  Lipschitz bound (``probe.certify.lipschitz_bound``), both sound.

Prints a table, saves ``tradeoff.png`` (robust and certified accuracy against eps, and clean
vs robust accuracy at the training budget), and with ``--readme`` appends the figures to
``benchmarks/README.md``.

    python benchmarks/tradeoff.py [--device cuda] [--quick] [--out DIR] [--readme]
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import probe  # noqa: E402
from probe import certify  # noqa: E402
from probe import train as robust  # noqa: E402
from probe.attacks.pgd import PGD  # noqa: E402


def digits(device: torch.device) -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:1400], perm[1400:]
    return x[tr].to(device), y[tr].to(device), x[te].to(device), y[te].to(device)


def mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    # one hidden layer: with ReLU, deeper norm-constrained nets lose much accuracy under a tight budget
    # (Anil, Lucas & Grosse 2019), which would blur the comparison
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))


def loader(x: torch.Tensor, y: torch.Tensor) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64, shuffle=True,
                                       generator=torch.Generator().manual_seed(0))


def train_all(x: torch.Tensor, y: torch.Tensor, eps_train: float, budgets: list[float], epochs: int,
              device: torch.device) -> dict[str, tuple[torch.nn.Module, float]]:
    space = probe.Box(0, 1)
    runs = {
        "standard": lambda m: robust.standard(m, loader(x, y), epochs=epochs, seed=0, device=device),
        f"adversarial eps={eps_train:g}": lambda m: robust.adversarial(
            m, loader(x, y), eps=eps_train, norm="l2", steps=10, space=space, epochs=epochs, seed=0, device=device),
        f"TRADES eps={eps_train:g}": lambda m: robust.trades(
            m, loader(x, y), eps=eps_train, norm="l2", beta=6.0, steps=10, space=space, epochs=epochs, seed=0,
            device=device),
    }
    for b in budgets:
        runs[f"Lipschitz L={b:g}"] = functools.partial(
            lambda m, budget: robust.lipschitz_budget(m, loader(x, y), budget=budget, norm="l2",
                                                      margin_eps=eps_train / 2, epochs=epochs, lr=1e-3,
                                                      seed=0, device=device), budget=b)
    out = {}
    for name, run in runs.items():
        model = mlp().to(device)
        t0 = time.perf_counter()
        run(model)
        out[name] = (model.eval(), time.perf_counter() - t0)
        print(f"  trained {name:<24s} {out[name][1]:6.1f} s", flush=True)
    return out


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, grid: np.ndarray, steps: int
             ) -> dict[str, np.ndarray | float]:
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    empirical = [float(correct.float().mean())]
    for eps in grid[1:]:
        res = PGD(eps=float(eps), norm="l2", steps=steps, restarts=2)(model, x, probe.Misclassify(y),
                                                                     space=probe.Box(0, 1), already_satisfied="keep")
        empirical.append(1.0 - res.success_rate)
    t0 = time.perf_counter()
    crown = certify.certified_radius(model, x, norm="l2", method="crown", labels=y, steps=10)
    t_crown = time.perf_counter() - t0
    lip = certify.lipschitz_bound(model, norm="l2").value
    margin = certify.lipschitz_margin_radius(model, x, lip, norm="l2", labels=y)
    radius = torch.maximum(crown, margin)
    cert = [float((correct & (radius >= e)).float().mean()) for e in grid]
    cert_crown = [float((correct & (crown >= e)).float().mean()) for e in grid]
    cert_lip = [float((correct & (margin >= e)).float().mean()) for e in grid]
    return {"empirical": np.array(empirical), "certified": np.array(cert), "crown": np.array(cert_crown),
            "lipschitz_margin": np.array(cert_lip), "lipschitz_bound": lip, "crown_seconds": t_crown}


def torchattacks_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int
                          ) -> float | None:
    try:
        import torchattacks
    except ImportError:
        return None
    # torchattacks' PGDL2 expects images (N, C, H, W): the same model behind a Flatten
    image_model = torch.nn.Sequential(torch.nn.Flatten(), model).eval()
    images = x.view(-1, 1, 8, 8)
    atk = torchattacks.PGDL2(image_model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=True)
    with torch.no_grad():
        wrong = image_model(images).argmax(1) != y
    x_adv = atk(images, y)
    with torch.no_grad():
        return float(((image_model(x_adv).argmax(1) == y) & ~wrong).float().mean())


def plot(results: dict, grid: np.ndarray, eps_train: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    k = int(np.argmin(np.abs(grid - eps_train)))
    for i, (name, r) in enumerate(results.items()):
        c = colors[i % len(colors)]
        axes[0].plot(grid, r["empirical"], marker="o", ms=3, color=c, label=name)
        axes[1].plot(grid, r["certified"], marker="s", ms=3, color=c, ls="--", label=name)
        axes[2].scatter(r["empirical"][0], r["empirical"][k], color=c, s=40, label=name)
        axes[2].scatter(r["empirical"][0], r["certified"][k], color=c, s=40, marker="x")
    axes[0].set_title("empirical robust accuracy (PGD, upper bound)")
    axes[1].set_title("certified robust accuracy (CROWN / Lipschitz margin)")
    for ax in axes[:2]:
        ax.set_xlabel("L2 budget eps (eps = 0: clean accuracy)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
        ax.axvline(eps_train, color="grey", lw=0.8, ls=":")
    axes[0].legend(frameon=False, fontsize=8)
    axes[2].set_xlabel("clean accuracy")
    axes[2].set_ylabel(f"accuracy at eps={grid[k]:g} (o: PGD, x: certified)")
    axes[2].set_title("the trade-off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--quick", action="store_true", help="small settings (seconds)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks"))
    ap.add_argument("--readme", action="store_true", help="append the table to benchmarks/README.md")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (tiny models: 1 is fastest)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else torch.device("cuda" if torch.cuda.is_available()
                                                                          else "cpu")
    quick = args.quick or os.environ.get("PROBE_QUICK") == "1"
    epochs, steps, n_test = (4, 10, 100) if quick else (30, 20, 397)
    budgets = [2.0, 8.0] if quick else [2.0, 4.0, 8.0, 16.0]
    eps_train = 0.5
    grid = np.round(np.linspace(0.0, 1.5, 7), 3)

    x, y, xt, yt = digits(device)
    xt, yt = xt[:n_test], yt[:n_test]
    print(f"digits: {len(x)} train / {len(xt)} test images, L2 budgets {grid.tolist()}, device {device}")
    models = train_all(x, y, eps_train, budgets, epochs, device)
    results, rows = {}, []
    k = int(np.argmin(np.abs(grid - eps_train)))
    for name, (model, seconds) in models.items():
        r = evaluate(model, xt, yt, grid, steps)
        ta = torchattacks_accuracy(model, xt, yt, float(grid[k]), steps)
        results[name] = r
        rows.append((name, r["empirical"][0], r["empirical"][k], ta, r["crown"][k], r["lipschitz_margin"][k],
                     r["lipschitz_bound"], seconds))

    head = (f"| model | clean acc | PGD acc @{grid[k]:g} (probe) | PGD acc @{grid[k]:g} (torchattacks) | "
            f"ratio probe/torchattacks | CROWN cert @{grid[k]:g} | Lip-margin cert @{grid[k]:g} | "
            "Lipschitz bound | train s |")
    lines = [head, "|" + "---|" * 9]
    for name, clean, emp, ta, crown, lipm, lip, sec in rows:
        ta_s = "n/a" if ta is None else f"{ta:.3f}"
        ratio = "n/a" if ta is None or ta == 0 else f"{emp / ta:.3f}"
        lines.append(f"| {name} | {clean:.3f} | {emp:.3f} | {ta_s} | {ratio} | {crown:.3f} | {lipm:.3f} | "
                     f"{lip:.3g} | {sec:.1f} |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = out / "tradeoff.png"
    plot(results, grid, eps_train, png)
    print(f"saved {png}")
    if args.readme:
        machine = f"{platform.machine()} {platform.system()}, {torch.get_num_threads()} thread(s), torch " \
                  f"{torch.__version__}, device {device}"
        with open(ROOT / "benchmarks" / "README.md", "a") as fh:
            fh.write(f"\n## Robustness-accuracy trade-off (`benchmarks/tradeoff.py`)\n\n"
                     f"Digits 8x8 MLP (64-128-10), {len(x)} train / {len(xt)} test images, L2 budgets; "
                     f"{epochs} epochs, training eps {eps_train}, PGD {steps} steps x 2 restarts, "
                     f"torchattacks PGDL2 {steps} steps as the reference attack. Machine: {machine}; a 2-core "
                     "CPU shared with other jobs, so timings are noisy. Robust accuracy: lower is a stronger "
                     "attack, so a probe/torchattacks ratio <= 1 means probe's PGD is at least as strong. "
                     "Figure: `benchmarks/tradeoff.png`.\n\n" + table + "\n")
    return {"rows": rows, "grid": grid, "results": results}


if __name__ == "__main__":
    main()
