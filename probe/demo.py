"""The core demonstration: margins and robustness curve of a small classifier it trains itself."""

from __future__ import annotations

import argparse
import math

import torch

from .cli import Command

__all__ = ["CORE_COMMAND", "two_spirals", "train_classifier"]


def two_spirals(n: int = 600, noise: float = 0.15, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved spirals in the plane: a small problem with curved decision boundaries."""
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


def _run(args: argparse.Namespace) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .attacks import PGD
    from .criteria import Misclassify

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    x, y = two_spirals(300 if args.quick else 1000, seed=args.seed)
    model = train_classifier(x, y, epochs=150 if args.quick else 400, seed=args.seed)
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).float().mean())
    eps = torch.linspace(0.0, 0.3, 7)
    robust = []
    for e in eps.tolist():
        if e == 0:
            robust.append(accuracy)
            continue
        res = PGD(eps=e, norm="linf", steps=20)(model, x, Misclassify(y), already_satisfied="keep")
        robust.append(float((~res.success).float().mean()))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(eps.numpy(), robust, marker="o")
    ax.set_xlabel("budget eps (linf)")
    ax.set_ylabel("robust accuracy (PGD-20)")
    fig.tight_layout()
    fig.savefig(out / "robustness_curve.png", dpi=120)
    plt.close(fig)
    return {"n": len(x), "clean_accuracy": accuracy, "eps": eps.tolist(), "robust_accuracy": robust,
            "figures": ["robustness_curve.png"]}


CORE_COMMAND = Command(name="core", help="margins and robustness curve of a small classifier trained here",
                       add_arguments=_add_arguments, run=_run)
