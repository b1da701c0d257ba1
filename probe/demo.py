"""The core demonstration: margins and robustness curve of a small classifier it trains itself."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

from .cli import Command

if TYPE_CHECKING:  # torch loads when the demonstration runs, not when ``probe --help`` lists it
    import torch

__all__ = ["CORE_COMMAND", "two_spirals", "train_classifier"]


def two_spirals(n: int = 600, noise: float = 0.15, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved spirals in the plane: a small problem with curved decision boundaries."""
    import torch

    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, generator=g) * 3 * math.pi + 0.5
    y = torch.arange(n) % 2
    sign = 1 - 2 * y.to(torch.float32)
    x = torch.stack([t * torch.cos(t) * sign, t * torch.sin(t) * sign], 1) / 5
    x = x + noise * torch.randn(n, 2, generator=g)
    return x, y


def train_classifier(x: torch.Tensor, y: torch.Tensor, *, hidden: int = 64, epochs: int = 300, seed: int = 0
                     ) -> torch.nn.Module:
    """A ReLU MLP fitted with Adam (full batch)."""
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(),
                                torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
                                torch.nn.Linear(hidden, int(y.max()) + 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0)


_REGIONS = ("#dbe8f5", "#f8e0d5")  # the colours of the two predicted classes


def _decision_map(ax: object, model: torch.nn.Module, x: torch.Tensor) -> None:
    import torch

    lo, hi = x.min(0).values - 0.3, x.max(0).values + 0.3
    gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], 200), torch.linspace(lo[1], hi[1], 200), indexing="xy")
    with torch.no_grad():
        z = model(torch.stack([gx.flatten(), gy.flatten()], 1)).argmax(1).view(gx.shape)
    ax.contourf(gx.numpy(), gy.numpy(), z.numpy(), levels=[-0.5, 0.5, 1.5], colors=list(_REGIONS))


def _margin_figures(plt: object, model: torch.nn.Module, x: torch.Tensor, xs: torch.Tensor, margins: dict,
                    out: object) -> None:
    """The decision map with each point's minimal L2 change, and the distribution of the margins found."""
    import matplotlib.lines as mlines
    import matplotlib.patches as mpatches

    from . import style

    fig, ax = plt.subplots(figsize=(5.5, 5))
    _decision_map(ax, model, x)
    res = margins["l2"]
    sc = ax.scatter(xs[:, 0], xs[:, 1], c=res.distance.numpy(), cmap="viridis", s=10, zorder=3)
    for i in range(0, len(xs), max(1, len(xs) // 40)):
        ax.annotate("", xy=tuple(res.x_adv[i].tolist()), xytext=tuple(xs[i].tolist()),
                    arrowprops={"arrowstyle": "->", "color": "k", "lw": 0.6}, zorder=4)
    style.colorbar(sc, ax, "minimal L2 perturbation", None, shrink=0.8)
    fig.legend(handles=[mpatches.Patch(color=c, label=f"predicted class {k}") for k, c in enumerate(_REGIONS)]
               + [mlines.Line2D([], [], color="k", lw=0.6, marker=">", ms=4, label="smallest change (L2)")],
               loc="outside lower center", ncols=3)
    ax.set_title("smallest change that flips each point")
    ax.set_xlabel("x1 (input feature)")
    ax.set_ylabel("x2 (input feature)")
    ax.set_aspect("equal")
    style.save(fig, out / "margins.png")

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for norm, r in margins.items():
        r.plot(ax=ax)
        method = r.method.replace("deepfool", "DeepFool").replace("fmn", "FMN")
        ax.lines[-1].set_label(f"{'L2' if norm == 'l2' else 'L-inf'} ({method})")
    ax.set_xlabel("minimal perturbation size (norm of the input change)")
    ax.set_title(f"minimal perturbations of {len(xs)} correctly classified points")
    ax.legend()
    style.save(fig, out / "margin_cdf.png")


def _run(args: argparse.Namespace) -> dict:
    from .devices import single_thread

    with single_thread():  # the problem is tiny
        return _demo(args)


def _demo(args: argparse.Namespace) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from .microscope import minimal_perturbation, robustness_curve
    from .progress import Steps

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    step = Steps("core", 3)
    step("training a ReLU classifier on two spirals")
    x, y = two_spirals(200 if args.quick else 1000, seed=args.seed)
    model = train_classifier(x, y, hidden=32 if args.quick else 64, epochs=150 if args.quick else 400,
                             seed=args.seed)
    with torch.no_grad():
        pred = model(x).argmax(1)
    accuracy = float((pred == y).float().mean())
    correct = (pred == y).nonzero().flatten()
    xs = x[correct[: 60 if args.quick else 500]]
    steps = 20 if args.quick else 100
    step(f"minimal L2 and L-inf perturbations of {len(xs)} points")
    margins = {norm: minimal_perturbation(model, xs, norm=norm, steps=steps) for norm in ("l2", "linf")}

    from . import style

    with style.style():
        _margin_figures(plt, model, x, xs, margins, out)
    eps = torch.linspace(0.0, 0.3, 5 if args.quick else 7)
    certifier = None
    try:  # the certified curve needs probe.certify
        import probe.certify  # noqa: F401

        certifier = "crown"
    except ImportError:
        pass
    step("robustness curve (PGD" + (", CROWN" if certifier else "") + ", minimal-norm search)")
    curve = robustness_curve(model, x, y, eps=eps, norm="linf", steps=10 if args.quick else 20, certifier=certifier)
    minimal = robustness_curve(model, x, y, eps=eps, norm="linf", attack="minimal", steps=steps)
    with style.style():
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        curve.plot(ax=ax, label=f"PGD-{10 if args.quick else 20}",
                   title=f"two spirals: robust accuracy of {len(x)} points")
        ax.plot(eps.numpy(), minimal.empirical.numpy(), marker="^", ms=3, label="minimal-norm search (attack)")
        ax.set_xlabel("budget eps (L-inf norm of the input change)")
        ax.legend()
        style.save(fig, out / "robustness_curve.png")
    summary = {"n": len(x), "clean_accuracy": accuracy, "margins_on": len(xs),
               "median_margin_l2": float(margins["l2"].distance.median()),
               "median_margin_linf": float(margins["linf"].distance.median()),
               "margin_success_rate": {k: v.success_rate for k, v in margins.items()},
               "eps": eps.tolist(), "robust_accuracy": curve.empirical.tolist(),
               "robust_accuracy_minimal_search": minimal.empirical.tolist(),
               "figures": ["margins.png", "margin_cdf.png", "robustness_curve.png"]}
    if curve.certified is not None:
        summary["certified_accuracy"] = curve.certified.tolist()
        summary["certifier"] = certifier
    _tables(out, xs, margins, eps, curve, minimal)
    step.finish()
    return summary


def _tables(out: object, xs: torch.Tensor, margins: dict, eps: torch.Tensor, curve: object, minimal: object) -> None:
    """``margins.csv`` (one row per point probed) and ``robustness_curve.csv`` (one row per budget)."""
    import pandas as pd

    from .tables import write_table

    rows = {"point": range(len(xs)), "x1": xs[:, 0].tolist(), "x2": xs[:, 1].tolist()}
    for norm, r in margins.items():
        rows[f"margin_{norm}"] = r.distance.tolist()
        rows[f"found_{norm}"] = r.success.tolist()
    write_table(out, "margins", pd.DataFrame(rows))
    table = {"eps_linf": eps.tolist(), "robust_accuracy_pgd": curve.empirical.tolist(),
             "robust_accuracy_minimal_search": minimal.empirical.tolist()}
    if curve.certified is not None:
        table["certified_accuracy"] = curve.certified.tolist()
    write_table(out, "robustness_curve", pd.DataFrame(table))


CORE_COMMAND = Command(name="core", help="margins and robustness curve of a small classifier trained here",
                       add_arguments=_add_arguments, run=_run)
