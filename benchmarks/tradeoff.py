"""The robustness-accuracy trade-off, made visible.

Trains the same MLP on the same data (scikit-learn's 8x8 digits, real images that ship with
scikit-learn) and seed four ways — standard training, PGD adversarial training (Madry et al.
2018), TRADES (Zhang et al. 2019) and training under Lipschitz budgets — plus a linear model
trained by Wasserstein distributionally robust optimisation (``probe.train.wasserstein_dro``, the
closed-form dual-norm penalty of Shafieezadeh-Abadeh et al. 2019), and measures, for every L2
budget eps on a grid:

* clean accuracy (eps = 0),
* accuracy under Gaussian pixel noise of standard deviation sigma (``robustness_curve(...,
  corruption="gaussian")``, 8 draws per image), on a grid of sigma,
* empirical robust accuracy under probe's PGD (an *upper* bound on the true robust accuracy),
  cross-checked by torchattacks' PGDL2 on the same models and inputs when it is installed,
* certified robust accuracy (a *lower* bound): the larger of the CROWN certified radius
  (``probe.certify.certified_radius``) and the Lipschitz-margin radius from the spectral
  Lipschitz bound (``probe.certify.lipschitz_bound``), both sound.

Prints a table, saves ``tradeoff.png`` (attack, certified and noise accuracy against the budget,
and clean against attack, certified and noise accuracy at the training budget), and with
``--readme`` appends the figures to ``benchmarks/README.md``.

    python benchmarks/tradeoff.py [--device cuda] [--quick] [--out DIR] [--readme]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
import sys
import textwrap
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
from probe.corruptions import Corruption  # noqa: E402


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


def linear(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(64, 10)


def loader(x: torch.Tensor, y: torch.Tensor) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64, shuffle=True,
                                       generator=torch.Generator().manual_seed(0))


def train_all(x: torch.Tensor, y: torch.Tensor, eps_train: float, budgets: list[float], epochs: int,
              device: torch.device, rhos: list[float] = ()) -> dict[str, tuple[torch.nn.Module, float]]:
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
    for r in rhos:
        # the closed form holds for linear models: the DRO model is a linear softmax classifier
        runs[f"DRO linear rho={r:g}"] = functools.partial(
            lambda m, rho: robust.wasserstein_dro(m, loader(x, y), rho=rho, norm="l2", loss="cross_entropy",
                                                  epochs=epochs, lr=1e-2, seed=0, device=device), rho=r)
    out = {}
    for name, run in runs.items():
        model = (linear() if name.startswith("DRO") else mlp()).to(device)
        t0 = time.perf_counter()
        run(model)
        out[name] = (model.eval(), time.perf_counter() - t0)
        print(f"  trained {name:<24s} {out[name][1]:6.1f} s", flush=True)
    return out


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, grid: np.ndarray, steps: int,
             sigmas: np.ndarray) -> dict[str, np.ndarray | float]:
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
    noise = probe.robustness_curve(model, x, y, eps=sigmas.tolist(), corruption=Corruption("gaussian", samples=8),
                                   space=probe.Box(0, 1)).empirical.cpu().numpy()
    return {"empirical": np.array(empirical), "certified": np.array(cert), "crown": np.array(cert_crown),
            "noise": noise,
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


def plot(results: dict, grid: np.ndarray, sigmas: np.ndarray, eps_train: float, sigma_mark: float,
         path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    k = int(np.argmin(np.abs(grid - eps_train)))
    j = int(np.argmin(np.abs(sigmas - sigma_mark)))
    for i, (name, r) in enumerate(results.items()):
        c = colors[i % len(colors)]
        axes[0].plot(grid, r["empirical"], marker="o", ms=3, color=c, label=name)
        axes[1].plot(grid, r["certified"], marker="s", ms=3, color=c, ls="--", label=name)
        axes[2].plot(sigmas, r["noise"], marker="^", ms=3, color=c, ls="-.", label=name)
        axes[3].scatter(r["empirical"][0], r["empirical"][k], color=c, s=40, marker="o")
        axes[3].scatter(r["empirical"][0], r["certified"][k], color=c, s=40, marker="x")
        axes[3].scatter(r["empirical"][0], r["noise"][j], color=c, s=40, marker="^")
    axes[0].set_title("attack: PGD robust accuracy (upper bound)")
    axes[1].set_title("certified robust accuracy (CROWN / Lipschitz margin)")
    axes[2].set_title("corruption: accuracy under Gaussian noise")
    for ax in axes[:2]:
        ax.set_xlabel("L2 budget eps (eps = 0: clean accuracy)")
        ax.axvline(eps_train, color="grey", lw=0.8, ls=":", label=f"training eps = {eps_train:g}")
    axes[2].set_xlabel("noise standard deviation sigma per pixel (sigma = 0: clean)")
    for ax in axes[:3]:
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.02)
        ax.legend(frameon=False, fontsize=7)
    handles = [Line2D([], [], color=colors[i % len(colors)], marker="s", ls="", label=name)
               for i, name in enumerate(results)]
    handles += [Line2D([], [], color="k", marker="o", ls="", label=f"PGD @ eps={grid[k]:g}"),
                Line2D([], [], color="k", marker="x", ls="", label=f"certified @ eps={grid[k]:g}"),
                Line2D([], [], color="k", marker="^", ls="", label=f"Gaussian noise @ sigma={sigmas[j]:g}")]
    axes[3].legend(handles=handles, frameon=False, fontsize=7, loc="best")
    axes[3].set_xlabel("clean accuracy")
    axes[3].set_ylabel("accuracy under attack, certificate or noise")
    axes[3].set_ylim(0, 1.02)
    axes[3].set_title("the trade-off")
    fig.suptitle("Accuracy-robustness trade-off on 8x8 digits: standard, adversarial, TRADES, Lipschitz-budget "
                 "and Wasserstein-DRO training", fontsize=11)
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
    rhos = [0.2] if quick else [0.05, 0.2]
    eps_train = 0.5
    grid = np.round(np.linspace(0.0, 1.5, 7), 3)
    sigmas = np.round(np.linspace(0.0, 0.5, 6), 3)
    sigma_mark = 0.3

    x, y, xt, yt = digits(device)
    xt, yt = xt[:n_test], yt[:n_test]
    print(f"digits: {len(x)} train / {len(xt)} test images, L2 budgets {grid.tolist()}, device {device}")
    models = train_all(x, y, eps_train, budgets, epochs, device, rhos)
    results, rows = {}, []
    k = int(np.argmin(np.abs(grid - eps_train)))
    for name, (model, seconds) in models.items():
        r = evaluate(model, xt, yt, grid, steps, sigmas)
        ta = torchattacks_accuracy(model, xt, yt, float(grid[k]), steps)
        results[name] = r
        rows.append((name, r["empirical"][0], r["empirical"][k], ta, r["crown"][k], r["lipschitz_margin"][k],
                     r["lipschitz_bound"], seconds, r["noise"][int(np.argmin(np.abs(sigmas - sigma_mark)))]))

    head = (f"| model | clean acc | PGD acc @{grid[k]:g} (probe) | PGD acc @{grid[k]:g} (torchattacks) | "
            f"ratio probe/torchattacks | CROWN cert @{grid[k]:g} | Lip-margin cert @{grid[k]:g} | "
            f"Lipschitz bound | train s | Gaussian-noise acc @sigma={sigma_mark:g} |")
    lines = [head, "|" + "---|" * 10]
    for name, clean, emp, ta, crown, lipm, lip, sec, noise in rows:
        ta_s = "n/a" if ta is None else f"{ta:.3f}"
        ratio = "n/a" if ta is None or ta == 0 else f"{emp / ta:.3f}"
        lines.append(f"| {name} | {clean:.3f} | {emp:.3f} | {ta_s} | {ratio} | {crown:.3f} | {lipm:.3f} | "
                     f"{lip:.3g} | {sec:.1f} | {noise:.3f} |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = out / "tradeoff.png"
    plot(results, grid, sigmas, eps_train, sigma_mark, png)
    print(f"saved {png}")
    if args.readme:
        machine = f"{platform.machine()} {platform.system()}, {torch.get_num_threads()} thread(s), torch " \
                  f"{torch.__version__}, device {device}"
        with open(ROOT / "benchmarks" / "README.md", "a") as fh:
            fh.write("\n## Robustness-accuracy trade-off with Wasserstein DRO and noise (`benchmarks/tradeoff.py`)\n\n"
                     + textwrap.fill(
                     f"Digits 8x8 MLP (64-128-10), {len(x)} train / {len(xt)} test images, L2 budgets; "
                     f"{epochs} epochs, training eps {eps_train}, PGD {steps} steps x 2 restarts, "
                     f"torchattacks PGDL2 {steps} steps as the reference attack. The DRO models are linear "
                     "(64-10 softmax), trained on the closed-form Wasserstein worst case (L2 transport, "
                     "`probe.train.wasserstein_dro`). Gaussian-noise accuracy: 8 draws per test image, clipped "
                     f"to [0, 1]. Machine: {machine} (the shared 2-core CPU, so timings are noisy), "
                     f"{datetime.date.today().isoformat()}. Robust accuracy: lower is a stronger "
                     "attack, so a probe/torchattacks ratio <= 1 means probe's PGD is at least as strong. "
                     "Figure: `benchmarks/tradeoff.png`.", 115, break_on_hyphens=False) + "\n\n" + table + "\n")
    return {"rows": rows, "grid": grid, "sigmas": sigmas, "results": results}


if __name__ == "__main__":
    main()
