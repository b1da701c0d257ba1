"""Robust and non-robust features on scikit-learn's digits: Ilyas et al. (NeurIPS 2019) reproduced offline.

Trains a standard and a PGD-adversarially trained (L2) bottleneck MLP (64-128-16-10) on the 8x8
digits, then builds four training sets from the 1400 training images:

* D_R:    each image re-grown, from another random training image, until the robust model's
          16-d representation matches the original's (``probe.features.feature_dataset``);
* D_NR:   the same through the standard model's representation;
* D_rand: each image attacked (targeted L2 PGD on the standard model) towards a random class and
          labelled with that class (``probe.features.relabelled_dataset``);
* D_det:  the same with target y + 1 mod 10.

A fresh standard MLP (64-128-10) is trained on each and scored on the *original* test images:
clean accuracy and L2 PGD robust accuracy. Prints a table, saves ``features.png`` and with
``--readme`` appends the table to ``benchmarks/README.md``.

    python benchmarks/features.py [--device cuda] [--quick] [--out DIR] [--readme]
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import probe  # noqa: E402
from probe import features  # noqa: E402
from probe import train as robust  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tradeoff import digits  # noqa: E402  (the same split as the trade-off figure)

SETS = ("D", "D_R", "D_NR", "D_rand", "D_det")


def bottleneck(seed: int = 0) -> torch.nn.Sequential:
    """The source models: a 16-unit representation, narrower than the 64 pixels, so inversion is not unique."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 10))


def mlp(seed: int = 1) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))


def loader(x: torch.Tensor, y: torch.Tensor) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64, shuffle=True,
                                       generator=torch.Generator().manual_seed(0))


def build(x: torch.Tensor, y: torch.Tensor, *, epochs: int, robust_epochs: int, lr: float, eps_robust: float,
          eps_relabel: float, invert_steps: int, attack_steps: int, device: torch.device) -> dict:
    """The source models and the four constructed training sets."""
    box = probe.Box(0, 1)
    std, rob = bottleneck().to(device), bottleneck().to(device)
    robust.standard(std, loader(x, y), epochs=epochs, lr=lr, seed=0, device=device)
    robust.adversarial(rob, loader(x, y), eps=eps_robust, norm="l2", steps=7, space=box, epochs=robust_epochs, lr=lr,
                       seed=0, device=device)
    std.eval()
    rob.eval()
    sets = {"D": (x, y)}
    for name, source in (("D_R", rob), ("D_NR", std)):
        ds = features.feature_dataset(features.penultimate(source), x, y, kind=name, steps=invert_steps,
                                      step_size=0.5, space=box, seed=0, device=device)
        sets[name] = (ds.x, ds.y)
    for name, kind in (("D_rand", "rand"), ("D_det", "det")):
        ds = features.relabelled_dataset(std, x, y, eps=eps_relabel, norm="l2", kind=kind, steps=attack_steps,
                                         space=box, seed=0, device=device)
        with torch.no_grad():
            hit = float((std(ds.x).argmax(1) == ds.y).float().mean())
        sets[name] = (ds.x, ds.y, hit)
    return {"standard": std, "robust": rob, "sets": sets}


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: list[float], steps: int) -> np.ndarray:
    cur = probe.robustness_curve(model, x, y, eps=[0.0] + eps, norm="l2", space=probe.Box(0, 1), steps=steps,
                                 restarts=1)
    return cur.empirical.cpu().numpy()


def run(*, quick: bool, device: torch.device, eps_robust: float = 1.0) -> dict:
    epochs, invert_steps, attack_steps, n_test, steps = (6, 60, 20, 80, 10) if quick else (30, 300, 100, 397, 20)
    # quick: few steps, so a larger learning rate, and more epochs for adversarial training
    lr, robust_epochs = (1e-2, 20) if quick else (1e-3, epochs)
    eps_eval = [0.5, 1.0]
    x, y, xt, yt = digits(device)
    if quick:
        x, y = x[:300], y[:300]
    xt, yt = xt[:n_test], yt[:n_test]
    t0 = time.perf_counter()
    built = build(x, y, epochs=epochs, robust_epochs=robust_epochs, lr=lr, eps_robust=eps_robust, eps_relabel=2.0,
                  invert_steps=invert_steps, attack_steps=attack_steps, device=device)
    rows = {}
    for name in SETS:
        xs, ys = built["sets"][name][:2]
        model = mlp().to(device)
        robust.standard(model, loader(xs, ys), epochs=epochs, lr=lr, seed=0, device=device)
        model.eval()
        rows[name] = evaluate(model, xt, yt, eps_eval, steps)
    for name in ("standard", "robust"):
        rows[f"source: {name}"] = evaluate(built[name], xt, yt, eps_eval, steps)
    agree = {name: float((built["sets"][name][1] == y).float().mean()) for name in ("D_rand", "D_det")}
    hits = {name: built["sets"][name][2] for name in ("D_rand", "D_det")}
    return {"rows": rows, "eps": eps_eval, "built": built, "x": x, "y": y, "agree": agree, "hits": hits,
            "seconds": time.perf_counter() - t0, "settings": dict(epochs=epochs, invert_steps=invert_steps,
                                                                  eps_robust=eps_robust, robust_epochs=robust_epochs,
                                                                  attack_steps=attack_steps, n_train=len(x),
                                                                  n_test=len(xt), pgd_steps=steps)}


def table(out: dict) -> str:
    e1, e2 = out["eps"]
    lines = [f"| training set | clean acc | PGD-L2 acc @{e1:g} | PGD-L2 acc @{e2:g} |", "|---|---|---|---|"]
    for name, acc in out["rows"].items():
        lines.append(f"| {name} | {acc[0]:.3f} | {acc[1]:.3f} | {acc[2]:.3f} |")
    return "\n".join(lines)


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 4.6))
    grid = fig.add_gridspec(2, 6, width_ratios=[3.2, 1, 1, 1, 1, 1])
    ax = fig.add_subplot(grid[:, 0])
    names = list(out["rows"])
    acc = np.array([out["rows"][n] for n in names])
    width = 0.27
    pos = np.arange(len(names))
    labels = ["clean"] + [f"PGD L2 eps={e:g}" for e in out["eps"]]
    for j, lab in enumerate(labels):
        ax.bar(pos + (j - 1) * width, acc[:, j], width, label=lab)
    ax.axhline(0.1, color="k", ls=":", lw=1, label="chance (10 classes)")
    ax.set_xticks(pos, [n.replace("source: ", "source\n") for n in names], fontsize=8)
    ax.set_ylabel("accuracy on the original test set")
    ax.set_xlabel("training set (a fresh standard MLP on each; last two: the source models)")
    ax.set_ylim(0, 1.02)
    ax.set_title("What models trained on constructed sets keep")
    ax.legend(frameon=False, fontsize=8, loc="upper right")
    sets = out["built"]["sets"]
    for col, name in enumerate(SETS):
        xs, ys = sets[name][:2]
        for row in range(2):
            a = fig.add_subplot(grid[row, col + 1])
            a.imshow(xs[row].detach().cpu().view(8, 8).numpy(), cmap="gray_r", vmin=0, vmax=1)
            a.set_title(f"{name}: label {int(ys[row])}", fontsize=8)
            a.set_xticks([])
            a.set_yticks([])
            if col == 0:
                a.set_ylabel(f"image {row}", fontsize=8)
    fig.suptitle("Robust and non-robust features on 8x8 digits (Ilyas et al. 2019); images: original labels "
                 f"{int(out['y'][0])}, {int(out['y'][1])}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default=None, help="e.g. cuda; default the CPU")
    ap.add_argument("--quick", action="store_true", help="small settings (seconds)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks"))
    ap.add_argument("--readme", action="store_true", help="append the table to benchmarks/README.md")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eps-robust", type=float, default=1.0, help="L2 budget of the robust source model")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device or "cpu")
    quick = args.quick or os.environ.get("PROBE_QUICK") == "1"
    out = run(quick=quick, device=device, eps_robust=args.eps_robust)
    text = table(out)
    print(text)
    print(f"D_rand / D_det labels that agree with the original ones: {out['agree']}; targets the standard model "
          f"predicts on them: {out['hits']}; {out['seconds']:.0f} s")
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    plot(out, dest / "features.png")
    if args.readme:
        s = out["settings"]
        with open(ROOT / "benchmarks" / "README.md", "a") as fh:
            fh.write(
                "\n## Robust and non-robust features (`benchmarks/features.py`)\n\n" + textwrap.fill(
                f"Ilyas et al. (NeurIPS 2019) on scikit-learn's 8x8 digits, {s['n_train']} train / {s['n_test']} "
                f"test images. Source models: bottleneck MLP 64-128-16-10, standard and PGD-L2 adversarially "
                f"trained (eps {s['eps_robust']:g}, 7 steps), {s['epochs']} / {s['robust_epochs']} epochs. "
                f"D_R / D_NR: representation inversion ({s['invert_steps']} normalised steps from another random "
                f"training image); D_rand / D_det: targeted L2 PGD (eps 2.0, {s['attack_steps']} steps) on the "
                f"standard model, labelled with the target. Each set trains a fresh 64-128-10 MLP ({s['epochs']} "
                f"epochs); accuracy on the original "
                f"test images, PGD-L2 {s['pgd_steps']} steps. Only {out['agree']['D_rand']:.3f} (D_rand) and "
                f"{out['agree']['D_det']:.3f} (D_det) of the relabelled training labels equal the true ones; "
                f"the standard model predicts the target on {out['hits']['D_rand']:.3f} / "
                f"{out['hits']['D_det']:.3f} of them. Machine: the shared 2-core CPU, torch {torch.__version__} "
                f"CPU, {datetime.date.today().isoformat()}; {out['seconds']:.0f} s. Figure: "
                f"`benchmarks/features.png`.", 115, break_on_hyphens=False) + "\n\n" + text + "\n")
    return out


if __name__ == "__main__":
    main()
