"""Certified Hamming radii on the planted-promoter model: the sandwich and the code-distance ceiling.

For a standard, a substitution-noise-trained and a certifiably trained CNN on the generated promoters
(``domains.dna.datasets.promoters``, 60 bp), over the first test sequences:

* median certified radius of substitution smoothing (keep 0.9, Clopper-Pearson at alpha 0.001),
* median deterministic certified radius (positional interval bound and CROWN over the budget),
* exact radius where enumeration reaches (all single substitutions, so "exact >= 1" is exact),
* median number of edits the greedy search needs to flip the prediction (an upper bound),
  all of the model's own decision (accuracy is reported beside),
* the code-distance ceiling: half the distance to the nearest differently labelled sequence.

Writes a table to stdout and ``benchmarks/hamming_radii.png``.

Run: ``python benchmarks/hamming.py [--quick] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's probe, not an installed one

import probe
from domains.dna import datasets
from domains.dna.edits import minimal_edits
from domains.dna.models import fit, small_cnn
from probe.certify import SubstitutionSmoothing, certified_radius, code_distance
from probe.testing import exact_hamming_radius


def evaluate(name: str, model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, n_smooth: int, keep: float,
             crown: bool, device: torch.device) -> dict:
    model = model.to(device).eval()
    X, y = X.to(device), y.to(device)
    out: dict = {"model": name}
    with torch.no_grad():
        pred = model(X).argmax(1)
    out["accuracy"] = float((pred == y).float().mean())
    y = pred  # the radii are those of the model's own decision
    t0 = time.perf_counter()
    cert = SubstitutionSmoothing(model, keep=keep, n0=100, n=n_smooth, alpha=0.001, batch_size=8192).certify(X)
    out["t_smooth"] = time.perf_counter() - t0
    out["smooth"] = torch.where(cert.label == y, cert.radius, torch.zeros_like(cert.radius)).cpu().numpy()
    out["smooth_abstain"] = float((cert.label < 0).float().mean())
    t0 = time.perf_counter()
    out["positional"] = certified_radius(model, X, norm="hamming", method="positional", labels=y,
                                         batch_size=16).cpu().numpy()
    out["t_positional"] = time.perf_counter() - t0
    if crown:
        t0 = time.perf_counter()
        out["crown"] = certified_radius(model, X, norm="hamming", method="crown", labels=y,
                                        batch_size=16).cpu().numpy()
        out["t_crown"] = time.perf_counter() - t0
    exact = exact_hamming_radius(model, X, labels=y, max_radius=1).cpu().numpy()
    out["exact_ge1"] = float((exact >= 1).mean())
    edits = minimal_edits(model, X, probe.Misclassify(y), max_edits=12)
    found = edits.n_edits.cpu().numpy()
    out["edits"] = np.where(np.isfinite(found), found, 13)   # not flipped within 12: shown as 13
    # the sandwich, sequence by sequence: a certified radius r means no r substitutions flip the decision
    certified = [out[k] for k in ("smooth", "positional", "crown") if k in out]
    out["violations"] = int(sum(((c >= found) & np.isfinite(found)).sum() for c in certified))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    q = args.quick
    n, n_report = (600, 16) if q else (2000, 30)
    data = datasets.promoters(n, 60, seed=0, sharpen=3)
    X, y = data.X, data.y
    split = int(0.8 * n)
    Xte, yte = X[split:split + n_report], y[split:split + n_report]
    cd = code_distance(X, y)
    ceiling = cd.nearest_ceiling[split:split + n_report].numpy()
    loader = DataLoader(TensorDataset(X[:split], y[:split]), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    keep = 0.9
    # p_lower <= alpha ** (1 / n): 50,000 samples reach rho_2 = 0.99931 at keep 0.9, 10,000 do not
    n_smooth = 2_000 if q else 50_000
    epochs = 6 if q else 12
    models = {}
    t0 = time.perf_counter()
    models["standard"] = fit(small_cnn(3, channels=16, seed=0), X[:split], y[:split], epochs=epochs, seed=0,
                             device=dev)
    times = {"standard": time.perf_counter() - t0}
    t0 = time.perf_counter()
    noisy = small_cnn(3, channels=16, seed=0).to(dev)
    probe.train.substitution_noise(noisy, loader, keep=keep, epochs=epochs + 2, lr=1e-2, seed=0, device=dev)
    models["noise-trained (keep 0.9)"] = noisy
    times["noise-trained (keep 0.9)"] = time.perf_counter() - t0
    if not q:
        t0 = time.perf_counter()
        cert = small_cnn(3, channels=16, seed=0).to(dev)
        probe.train.hamming_certified(cert, loader, radius=2, epochs=6, warmup=2, kappa=0.7, lr=3e-3, seed=0,
                                      device=dev)
        models["certified (r = 2)"] = cert
        times["certified (r = 2)"] = time.perf_counter() - t0
    rows = []
    for name, model in models.items():
        r = evaluate(name, model, Xte, yte, n_smooth, keep, crown=not q, device=dev)
        r["ceiling"] = ceiling
        r["t_train"] = times[name]
        rows.append(r)

    print(f"\n## Planted promoters (60 bp, {n_report} test sequences, code distance of the set {cd.distance}, "
          f"ceiling {(cd.distance - 1) // 2})")
    print("| model | test acc. | smoothing (keep 0.9) | positional | CROWN | exact radius >= 1 | minimal edits found "
          "| code-distance ceiling |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        crown = f"{np.median(r['crown']):g} (mean {np.mean(r['crown']):.2f})" if "crown" in r else "-"
        name = f"{r['model']} ({r['violations']} sandwich violations)"
        print(f"| {name} | {r['accuracy']:.3f} | {np.median(r['smooth']):g} (mean {np.mean(r['smooth']):.2f}, "
              f"abstain {r['smooth_abstain']:.2f}) | {np.median(r['positional']):g} (mean "
              f"{np.mean(r['positional']):.2f}) | {crown} | {r['exact_ge1']:.2f} | {np.median(r['edits']):g} (mean "
              f"{np.mean(r['edits']):.2f}) | {np.median(r['ceiling']):g} |")
    print("\nseconds: " + "; ".join(f"{r['model']}: train {r['t_train']:.0f}, smoothing {r['t_smooth']:.0f}, "
                                    f"positional {r['t_positional']:.0f}"
                                    + (f", CROWN {r['t_crown']:.0f}" if "t_crown" in r else "") for r in rows))
    plot(rows, Path(__file__).with_name("hamming_radii.png"))


def plot(rows: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("smooth", "smoothing"), ("positional", "positional"), ("crown", "CROWN"), ("edits", "edits found"),
            ("ceiling", "ceiling")]
    fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 3.6), sharey=True, constrained_layout=True)
    axes = np.atleast_1d(axes)
    rng = np.random.default_rng(0)
    for ax, r in zip(axes, rows):
        present = [(k, lab) for k, lab in keys if k in r]
        for i, (k, _) in enumerate(present):
            v = np.asarray(r[k], dtype=float)
            ax.scatter(i + rng.uniform(-0.18, 0.18, len(v)), v, s=9, alpha=0.5)
            ax.hlines(np.median(v), i - 0.3, i + 0.3, color="k", lw=2)
        ax.set_xticks(range(len(present)), [lab for _, lab in present], rotation=30)
        ax.set_yscale("symlog", linthresh=2)
        ax.set_title(f"{r['model']} (acc. {r['accuracy']:.2f})", fontsize=9)
    axes[0].set_ylabel("substitutions (median: bar)")
    fig.suptitle("Certified radius <= exact <= edits found; ceiling = half the code distance", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
