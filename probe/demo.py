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


def _decision_map(ax: object, model: torch.nn.Module, x: torch.Tensor) -> None:
    import torch

    lo, hi = x.min(0).values - 0.3, x.max(0).values + 0.3
    gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], 200), torch.linspace(lo[1], hi[1], 200), indexing="xy")
    with torch.no_grad():
        z = model(torch.stack([gx.flatten(), gy.flatten()], 1)).argmax(1).view(gx.shape)
    ax.contourf(gx.numpy(), gy.numpy(), z.numpy(), levels=[-0.5, 0.5, 1.5], colors=["#dbe8f5", "#f8e0d5"])


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

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    x, y = two_spirals(200 if args.quick else 1000, seed=args.seed)
    model = train_classifier(x, y, hidden=32 if args.quick else 64, epochs=150 if args.quick else 400,
                             seed=args.seed)
    with torch.no_grad():
        pred = model(x).argmax(1)
    accuracy = float((pred == y).float().mean())
    correct = (pred == y).nonzero().flatten()
    xs = x[correct[: 60 if args.quick else 500]]
    steps = 20 if args.quick else 100
    margins = {norm: minimal_perturbation(model, xs, norm=norm, steps=steps) for norm in ("l2", "linf")}

    fig, ax = plt.subplots(figsize=(5, 5))
    _decision_map(ax, model, x)
    res = margins["l2"]
    sc = ax.scatter(xs[:, 0], xs[:, 1], c=res.distance.numpy(), cmap="viridis", s=10, zorder=3)
    for i in range(0, len(xs), max(1, len(xs) // 40)):
        ax.annotate("", xy=tuple(res.x_adv[i].tolist()), xytext=tuple(xs[i].tolist()),
                    arrowprops={"arrowstyle": "->", "color": "k", "lw": 0.6}, zorder=4)
    fig.colorbar(sc, ax=ax, shrink=0.8, label="minimal L2 perturbation")
    ax.set_title("smallest change that flips each point", fontsize=10)
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(out / "margins.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for norm, r in margins.items():
        r.plot(ax=ax)
        ax.lines[-1].set_label(f"{norm} ({r.method})")
    ax.set_xlabel("minimal perturbation size")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(out / "margin_cdf.png", dpi=120)
    plt.close(fig)

    eps = torch.linspace(0.0, 0.3, 5 if args.quick else 7)
    certifier = None
    try:  # the certified curve needs probe.certify
        import probe.certify  # noqa: F401

        certifier = "crown"
    except ImportError:
        pass
    curve = robustness_curve(model, x, y, eps=eps, norm="linf", steps=10 if args.quick else 20, certifier=certifier)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    curve.plot(ax=ax, label=f"PGD-{10 if args.quick else 20}")
    minimal = robustness_curve(model, x, y, eps=eps, norm="linf", attack="minimal", steps=steps)
    ax.plot(eps.numpy(), minimal.empirical.numpy(), marker="^", ms=3, label="minimal-norm search")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(out / "robustness_curve.png", dpi=120)
    plt.close(fig)
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
    return summary


CORE_COMMAND = Command(name="core", help="margins and robustness curve of a small classifier trained here",
                       add_arguments=_add_arguments, run=_run)
