"""SDP certificates and late-fusion certificates: the figures of benchmarks/README.md.

Three tables:

1. **Tightness** on one-hidden-layer ReLU nets (``--nets`` random nets per size, weights N(0, 1/fan_in),
   biases N(0, 0.3^2), input N(0, 1), L-inf ball of radius 0.5, objective z_0 - z_1): the exact minimum
   (MILP, HiGHS through scipy), SDP-cert (cvxpy + Clarabel), CROWN; the gap of each to the exact value
   and the median ratio gap_SDP / gap_CROWN.
2. **First-order vs cvxpy**: the first-order solver (ADMM in torch, on ``--device``) against Clarabel on
   the same programs, lower and upper bounds of every output, L-inf and L2.
3. **Fusion**: a two-modality late-fusion model (two MLP branches on 4 features each; the label is the
   sign of a linear function of the *strong* modality plus 0.2 x one of the *weak* one), trained for 300
   Adam steps; for each rule (sum of logits, averaged probabilities with equal weights and with weights
   0.8 / 0.2) and each modality: single-source PGD
   success at the budget, the fraction certified at the budget, the fraction certified with the modality
   unbounded within its domain box [-3, 3]^4 and fully unbounded, and the median certified single-source
   radius (bracket [0, 4] for the strong modality, [0, 8] for the weak one).

Run: ``python benchmarks/sdp.py [--nets 10] [--device cpu|cuda] [--quick] [--tables tightness,first-order,fusion]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's probe, not an installed one

import probe  # noqa: E402
from probe.certify import bound_outputs, certify_fusion, sdp_bounds  # noqa: E402
from probe.certify.sdp import SDP  # noqa: E402
from probe.multimodal import LateFusion  # noqa: E402
from probe.testing.milp import exact_linf_minimum  # noqa: E402


def relu_net(sizes: tuple[int, ...], seed: int) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        lin = nn.Linear(a, b).double()
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=g, dtype=torch.float64) / a ** 0.5)
            lin.bias.copy_(0.3 * torch.randn(b, generator=g, dtype=torch.float64))
        layers += [lin, nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def tightness(n_nets: int) -> None:
    print("\n## tightness: one-hidden-layer ReLU nets, L-inf eps = 0.5, objective z_0 - z_1")
    print("| net | nets | median gap SDP | median gap CROWN | median ratio | max ratio | SDP s/solve | sound |")
    print("|---|---|---|---|---|---|---|---|")
    for sizes in [(4, 12, 3), (8, 20, 3), (16, 32, 3)]:
        ratios, g_sdp, g_crown, secs, sound = [], [], [], [], True
        c = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64)
        for seed in range(n_nets):
            net = relu_net(sizes, 1000 + seed)
            x = torch.randn(1, sizes[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
            t = time.perf_counter()
            sdp = sdp_bounds(net, x, 0.5, spec=c[None], sides="lower").lower.item()
            secs.append(time.perf_counter() - t)
            crown = bound_outputs(net, x, 0.5, spec=c[None]).lower.item()
            exact = exact_linf_minimum(net, x, 0.5, c)
            sound &= sdp <= exact + 1e-7 and crown <= exact + 1e-7
            g_sdp.append(exact - sdp)
            g_crown.append(exact - crown)
            ratios.append((exact - sdp) / max(exact - crown, 1e-12))
        print(f"| {'-'.join(map(str, sizes))} | {n_nets} | {np.median(g_sdp):.4f} | {np.median(g_crown):.4f} | "
              f"{np.median(ratios):.3f} | {np.max(ratios):.3f} | {np.median(secs):.2f} | {sound} |")


def first_order(device: str) -> None:
    print(f"\n## first-order (ADMM in torch, {device}) against cvxpy + Clarabel, eps = 0.4, all outputs, both sides")
    print("| net | norm | inputs | max abs diff | cvxpy s | first-order s | max Clarabel gap |")
    print("|---|---|---|---|---|---|---|")
    for sizes in [(3, 8, 3), (4, 12, 3), (3, 8, 8, 2)]:
        for norm in ["linf", "l2"]:
            net = relu_net(sizes, 7).to(device)
            x = torch.randn(3, sizes[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(device)
            t = time.perf_counter()
            ref = sdp_bounds(net, x, 0.4, norm=norm)
            t_ref = time.perf_counter() - t
            t = time.perf_counter()
            fo = sdp_bounds(net, x, 0.4, norm=norm, solver="first-order")
            t_fo = time.perf_counter() - t
            diff = max(float((fo.lower - ref.lower).abs().max()), float((fo.upper - ref.upper).abs().max()))
            gap = max(float(ref.gap_lower.abs().max()), float(ref.gap_upper.abs().max()))
            print(f"| {'-'.join(map(str, sizes))} | {norm} | 3 | {diff:.2e} | {t_ref:.2f} | {t_fo:.2f} | {gap:.1e} |")


def fusion(quick: bool) -> None:
    print("\n## fusion: strong and weak modality, late fusion, 200 test inputs, L-inf budgets")
    g = torch.Generator().manual_seed(0)
    n = 1200
    strong = torch.randn(n, 4, generator=g).clamp(-3, 3)
    weak = torch.randn(n, 4, generator=g).clamp(-3, 3)
    y = (strong[:, 0] - strong[:, 1] + 0.2 * weak[:, 0] > 0).long()
    box = (torch.full((4,), -3.0), torch.full((4,), 3.0))
    print("| rule | modality | eps | PGD success | certified at eps | certified, unbounded in box | "
          "certified, unbounded | median radius |")
    print("|---|---|---|---|---|---|---|---|")
    for rule, weights in [("sum", None), ("probabilities", None), ("probabilities", (0.8, 0.2))]:
        torch.manual_seed(0)
        branches = {k: nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)) for k in ("strong", "weak")}
        model = LateFusion(branches, rule=rule, weights=weights)
        if weights is not None:
            rule = f"{rule} {weights[0]}/{weights[1]}"
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(100 if quick else 300):
            opt.zero_grad()
            out = model(strong[:1000], weak[:1000])
            loss = nn.functional.nll_loss(torch.log(out + 1e-9), y[:1000]) if rule == "probabilities" else \
                nn.functional.cross_entropy(out, y[:1000])
            loss.backward()
            opt.step()
        model.eval()
        xs = {"strong": strong[1000:], "weak": weak[1000:]}
        with torch.no_grad():
            acc = float((model(*xs.values()).argmax(1) == y[1000:]).float().mean())
        eps = {"strong": 0.1, "weak": 0.5}
        rep = probe.modality_report(model, xs, eps=eps, domain={"strong": box, "weak": box}, steps=20, restarts=2,
                                    radius_max={"strong": 4.0, "weak": 8.0})
        for name in ("strong", "weak"):
            free = certify_fusion(model, xs, unbounded=name).certified_fraction
            r = rep.frame.loc[name]
            print(f"| {rule} (test acc {acc:.3f}) | {name} | {eps[name]} | {r.attack_success:.3f} | "
                  f"{r.certified:.3f} | {r.certified_unbounded:.3f} | {free:.3f} | {r.median_radius:.3f} |")
        print(f"| {rule} | leans on: **{rep.leans_on}** | | | | | | |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="fewer nets and training steps (a smoke run)")
    ap.add_argument("--tables", default="tightness,first-order,fusion", help="comma-separated subset to run")
    args = ap.parse_args()
    torch.set_num_threads(1)
    assert SDP.name == "sdp"
    tables = set(args.tables.split(","))
    if "tightness" in tables:
        tightness(3 if args.quick else args.nets)
    if "first-order" in tables:
        first_order(args.device)
    if "fusion" in tables:
        fusion(args.quick)


if __name__ == "__main__":
    main()
