"""Certificates: tightness against exact answers and smoothing speed against Cohen et al.'s loop.

Tightness
  * CROWN (and IBP) certified L-inf radius / exact MILP margin (scipy HiGHS) on small random
    ReLU networks, median over inputs (target >= 0.5, never above 1).
  * LipSDP-neuron (and -layer) / product of spectral norms on 2-10-30-20-2 networks
    (target <= 0.85).

Speed
  * Randomized-smoothing certification (n0, n, batch size equal) with ``probe.certify.Smoothing``
    against a plain loop written as in Cohen et al.'s ``core.py`` (one input at a time,
    ``x.repeat``, ``randn_like``, predictions copied to NumPy and counted element by element,
    Clopper-Pearson through the Beta quantile). Target >= 1.5x certifications per second.

  * Substitution smoothing (``probe.certify.SubstitutionSmoothing``, Lee et al. 2019) on one-hot DNA
    and on fingerprint bits, against the same plain loop with the substitution noise: one input at a
    time, ``x.repeat``, the noise drawn with ``rand`` + ``randint`` and one-hot encoded with
    ``F.one_hot``, predictions counted element by element; and against that loop counting with
    ``np.bincount``. Target >= 3x certifications per second. probe's columns: the default (the first
    layer read from symbol codes or bit flips), with exact early termination, and with the plain
    forward pass (``fast=False``); all three must give the same labels and radii.

Run: ``python benchmarks/certify.py [--device cuda] [--quick] [--only substitution [--early-stop]]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from math import ceil
from pathlib import Path

import numpy as np
import torch
from scipy.stats import beta, norm
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's probe, not an installed one

import probe
from probe.attacks.pgd import PGD
from probe.certify import Smoothing, SubstitutionSmoothing, certified_radius, lipschitz_bound, substitution_radius
from probe.testing.milp import exact_linf_margin


# ------------------------------------------------------------------------------------------------------------------
# Cohen et al. (2019), core.py, as published (certify and its helpers), with the Clopper-Pearson bound written
# through scipy's Beta quantile (statsmodels' proportion_confint(method="beta") computes the same number)
class CohenSmooth:
    ABSTAIN = -1

    def __init__(self, base_classifier, num_classes, sigma, device):
        self.base_classifier = base_classifier
        self.num_classes = num_classes
        self.sigma = sigma
        self.device = device

    def certify(self, x, n0, n, alpha, batch_size):
        self.base_classifier.eval()
        counts_selection = self._sample_noise(x, n0, batch_size)
        c_a = counts_selection.argmax().item()
        counts_estimation = self._sample_noise(x, n, batch_size)
        n_a = counts_estimation[c_a].item()
        p_a = self._lower_confidence_bound(n_a, n, alpha)
        if p_a < 0.5:
            return CohenSmooth.ABSTAIN, 0.0
        return c_a, self.sigma * norm.ppf(p_a)

    def _sample_noise(self, x, num, batch_size):
        with torch.no_grad():
            counts = np.zeros(self.num_classes, dtype=int)
            for _ in range(ceil(num / batch_size)):
                this_batch_size = min(batch_size, num)
                num -= this_batch_size
                batch = x.repeat((this_batch_size, 1, 1, 1))
                noise = torch.randn_like(batch, device=self.device) * self.sigma
                predictions = self.base_classifier(batch + noise).argmax(1)
                counts += self._count_arr(predictions.cpu().numpy(), self.num_classes)
            return counts

    def _count_arr(self, arr, length):
        counts = np.zeros(length, dtype=int)
        for idx in arr:
            counts[idx] += 1
        return counts

    def _lower_confidence_bound(self, n_a, n, alpha):
        return beta.ppf(alpha, n_a, n - n_a + 1) if n_a > 0 else 0.0


# ------------------------------------------------------------------------------------------------------------------
def relu_net(seed: int, widths: tuple[int, ...]) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double().eval()


def pgd_distance(model: nn.Module, x: torch.Tensor, iters: int = 14) -> torch.Tensor:
    lo = torch.zeros(len(x), dtype=torch.float64)
    hi = torch.full((len(x),), 4.0, dtype=torch.float64)
    found = torch.full((len(x),), float("inf"), dtype=torch.float64)
    for _ in range(iters):
        mid = (lo + hi) / 2
        res = PGD(eps=mid, steps=40, restarts=2)(model, x)
        found = torch.where(res.success, torch.minimum(found, res.distance.double()), found)
        hi = torch.where(res.success, mid, hi)
        lo = torch.where(res.success, lo, mid)
    return found


def tightness_crown(nets: int, inputs: int) -> dict:
    ratios_crown, ratios_ibp, ratios_alpha, above, skipped = [], [], [], 0, 0
    t_crown = t_milp = 0.0
    for seed in range(nets):
        model = relu_net(seed, (5, 16, 16, 3))
        x = torch.randn(inputs, 5, generator=torch.Generator().manual_seed(1000 + seed), dtype=torch.float64)
        pgd = pgd_distance(model, x)
        t0 = time.perf_counter()
        # PGD's distance bounds the margin from above and keeps the big-M constants tight
        exact = exact_linf_margin(model, x, eps_max=torch.where(torch.isfinite(pgd), pgd * 1.001 + 1e-9, 8.0))
        t_milp += time.perf_counter() - t0
        t0 = time.perf_counter()
        crown = certified_radius(model, x, norm="linf", method="crown")
        t_crown += time.perf_counter() - t0
        ibp = certified_radius(model, x, norm="linf", method="ibp")
        alpha = certified_radius(model, x, norm="linf", method="alpha-crown")
        # an input no attack flips within the search box has no finite exact margin to compare with
        ok = torch.isfinite(exact) & (exact > 0)
        skipped += int((~ok).sum())
        ratios_crown += (crown[ok] / exact[ok]).tolist()
        ratios_alpha += (alpha[ok] / exact[ok]).tolist()
        ratios_ibp += (ibp[ok] / exact[ok]).tolist()
        above += int((crown > exact + 1e-6).sum() + (alpha > exact + 1e-6).sum())
    return {"crown_median": statistics.median(ratios_crown), "ibp_median": statistics.median(ratios_ibp),
            "alpha_median": statistics.median(ratios_alpha), "crown_min": min(ratios_crown),
            "crown_max": max(ratios_crown), "n": len(ratios_crown), "skipped": skipped,
            "above_exact": above, "t_crown": t_crown, "t_milp": t_milp}


def tightness_lipsdp(nets: int) -> dict:
    neuron, layer = [], []
    t_sdp = 0.0
    for seed in range(nets):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(2, 10), nn.ReLU(), nn.Linear(10, 30), nn.ReLU(), nn.Linear(30, 20), nn.ReLU(),
                              nn.Linear(20, 2))
        spectral = lipschitz_bound(model).value
        t0 = time.perf_counter()
        neuron.append(lipschitz_bound(model, method="lipsdp-neuron").value / spectral)
        t_sdp += time.perf_counter() - t0
        layer.append(lipschitz_bound(model, method="lipsdp-layer").value / spectral)
    return {"neuron_median": statistics.median(neuron), "neuron_max": max(neuron),
            "layer_median": statistics.median(layer), "n": nets, "t_sdp": t_sdp / nets}


def best_time(fn, device: torch.device, repeats: int) -> tuple[float, object]:
    """The shortest wall time of ``repeats`` calls of ``fn`` (the machine is shared), and the last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out


def smoothing_speed(model: nn.Module, shape: tuple[int, ...], k: int, inputs: int, n: int, batch: int,
                    device: torch.device, sigma: float = 0.25, repeats: int = 3) -> dict:
    model = model.to(device).eval()
    x = torch.randn((inputs,) + shape, device=device)
    ref = CohenSmooth(model, k, sigma, device)
    ours = Smoothing(model, sigma, n0=100, n=n, alpha=0.001, batch_size=batch, device=device)
    ours.certify(x[:1])  # warm-up of both paths
    ref.certify(x[0], 100, batch, 0.001, batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t_ours, cert = best_time(lambda: ours.certify(x), device, repeats)
    t_ref, ref_r = best_time(lambda: [ref.certify(x[i], 100, n, 0.001, batch)[1] for i in range(inputs)], device,
                             repeats)
    return {"ours_per_s": inputs / t_ours, "ref_per_s": inputs / t_ref, "ratio": t_ref / t_ours,
            "mean_radius_ours": float(cert.radius.mean()), "mean_radius_ref": float(np.mean(ref_r))}


class PlainSubstitutionLoop:
    """Cohen et al.'s certify loop with substitution noise instead of Gaussian noise (one input at a time)."""

    def __init__(self, model, num_classes, keep, alphabet, device, count="loop"):
        self.model, self.k, self.keep, self.alphabet, self.device, self.count = (model, num_classes, keep, alphabet,
                                                                                 device, count)

    def certify(self, x, n0, n, alpha, batch_size):
        c_a = self._sample_noise(x, n0, batch_size).argmax()
        n_a = self._sample_noise(x, n, batch_size)[c_a]
        p_a = beta.ppf(alpha, n_a, n - n_a + 1) if n_a > 0 else 0.0
        return (-1, 0) if p_a < 0.5 else (int(c_a), substitution_radius(p_a, keep=self.keep, alphabet=self.alphabet,
                                                                        max_radius=x.shape[-1]))

    def _sample_noise(self, x, num, batch_size):
        with torch.no_grad():
            counts = np.zeros(self.k, dtype=int)
            onehot = x.dim() == 2                                     # (K, L) one-hot, else (F,) bits
            codes = x.argmax(0) if onehot else x.long()
            for _ in range(ceil(num / batch_size)):
                b = min(batch_size, num)
                num -= b
                batch = codes.repeat((b, 1))
                change = torch.rand(batch.shape, device=self.device) >= self.keep
                shift = torch.randint(1, self.alphabet, batch.shape, device=self.device)
                noisy = torch.where(change, (batch + shift) % self.alphabet, batch)
                inp = F.one_hot(noisy, self.alphabet).permute(0, 2, 1).float() if onehot else noisy.float()
                predictions = self.base(inp).argmax(1).cpu().numpy()
                if self.count == "loop":
                    for idx in predictions:
                        counts[idx] += 1
                else:
                    counts += np.bincount(predictions, minlength=self.k)
            return counts

    def base(self, x):
        return self.model(x)


def best_times(fns: dict, device: torch.device, repeats: int) -> tuple[dict, dict]:
    """The shortest wall time of each of ``fns`` over ``repeats`` rounds that call them in turn (on a shared
    machine every variant then meets the same load), and the last results."""
    best, out = {k: float("inf") for k in fns}, {}
    for _ in range(repeats):
        for k, fn in fns.items():
            t, out[k] = best_time(fn, device, 1)
            best[k] = min(best[k], t)
    return best, out


def substitution_speed(model: nn.Module, x: torch.Tensor, k: int, n: int, batch: int, keep: float, alphabet: int,
                       device: torch.device, repeats: int = 3) -> dict:
    model = model.to(device).eval()
    x = x.to(device)
    space = probe.OneHot() if x.dim() == 3 else probe.Bits()
    kw = dict(keep=keep, space=space, n0=100, n=n, alpha=0.001, batch_size=batch)
    ours = {"fast": SubstitutionSmoothing(model, **kw), "early": SubstitutionSmoothing(model, early_stop=True, **kw),
            "plain": SubstitutionSmoothing(model, fast=False, **kw)}
    loops = {c: PlainSubstitutionLoop(model, k, keep, alphabet, device, count=c) for c in ("loop", "bincount")}
    for s in ours.values():
        s.certify(x[:1])
    loops["loop"].certify(x[0], 100, batch, 0.001, batch)
    fns = {name: (lambda s=s: s.certify(x)) for name, s in ours.items()}
    for c, loop in loops.items():
        fns[c] = lambda loop=loop: [loop.certify(x[i], 100, n, 0.001, batch)[1] for i in range(len(x))]
    t, out = best_times(fns, device, repeats)
    cert, ref = out["fast"], out["loop"]
    same = all(torch.equal(out[v].label, cert.label) and torch.equal(out[v].radius, cert.radius)
               for v in ("early", "plain"))
    return {"ours_per_s": len(x) / t["fast"], "early_per_s": len(x) / t["early"], "plain_per_s": len(x) / t["plain"],
            "loop_per_s": len(x) / t["loop"], "bin_per_s": len(x) / t["bincount"],
            "ratio": t["loop"] / t["fast"], "ratio_bin": t["bincount"] / t["fast"],
            "ratio_early": t["loop"] / t["early"], "ratio_plain": t["loop"] / t["plain"], "same": same,
            "mean_radius_ours": float(cert.radius.double().mean()), "mean_radius_ref": float(np.mean(ref))}


def early_stop_share(model: nn.Module, x: torch.Tensor, n: int, keep: float, device: torch.device) -> dict:
    """How much of the n samples exact early termination evaluates (one run)."""
    space = probe.OneHot() if x.dim() == 3 else probe.Bits()
    cert = SubstitutionSmoothing(model.to(device).eval(), keep=keep, space=space, n0=100, n=n, batch_size=1000,
                                 early_stop=True).certify(x.to(device))
    return {"share": float(cert.samples.double().mean()) / n, "stopped": int((cert.samples < n).sum()),
            "inputs": len(x), "radii": sorted(set(cert.radius.tolist())), "abstain": int((cert.label < 0).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="smaller settings")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    parser.add_argument("--only", choices=["all", "substitution"], default="all",
                        help="'substitution': the substitution-smoothing speed table alone")
    parser.add_argument("--repeats", type=int, default=3, help="with --only substitution: timing rounds (best of)")
    parser.add_argument("--early-stop", action="store_true",
                        help="with --only substitution: also how much early termination saves at n and 10 n")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    q = args.quick

    if args.only == "substitution":
        substitution_table(q, device, 2_000 if q else 10_000, early=args.early_stop, repeats=args.repeats)
        return
    crown = tightness_crown(nets=2 if q else 5, inputs=5 if q else 10)
    sdp = tightness_lipsdp(nets=2 if q else 5)
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    cnn = nn.Sequential(nn.Conv2d(1, 16, 5, stride=2), nn.ReLU(), nn.Conv2d(16, 32, 5, stride=2), nn.ReLU(),
                        nn.Flatten(), nn.Linear(32 * 4 * 4, 10))
    tab = nn.Sequential(nn.Flatten(), nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 2))
    n = 2_000 if q else 10_000
    speed = {
        "tabular MLP 20-64-2": smoothing_speed(tab, (1, 1, 20), 2, 10, n, 1000, device),
        "MLP 784-256-10": smoothing_speed(mlp, (1, 28, 28), 10, 5, n, 1000, device),
        "CNN 2 conv (MNIST size)": smoothing_speed(cnn, (1, 28, 28), 10, 3, n, 1000, device),
    }

    print("\n## Tightness (exact answers from MILP / closed forms)")
    print("| quantity | median | min / max | target |")
    print("|---|---|---|---|")
    print(f"| CROWN radius / exact MILP L-inf margin (5-16-16-3, {crown['n']} inputs) | {crown['crown_median']:.3f} | "
          f"{crown['crown_min']:.3f} / {crown['crown_max']:.3f} | >= 0.5, never above 1 "
          f"({crown['above_exact']} above; {crown['skipped']} inputs with no flip found skipped) |")
    print(f"| IBP radius / exact MILP margin | {crown['ibp_median']:.3f} | | |")
    print(f"| alpha-CROWN radius / exact MILP margin | {crown['alpha_median']:.3f} | | |")
    print(f"| LipSDP-neuron / product of spectral norms (2-10-30-20-2, {sdp['n']} nets) | {sdp['neuron_median']:.3f} | "
          f"max {sdp['neuron_max']:.3f} | <= 0.85 |")
    print(f"| LipSDP-layer / product of spectral norms | {sdp['layer_median']:.3f} | | |")
    print(f"\nCROWN radius (bisection) {crown['t_crown']:.1f} s vs MILP {crown['t_milp']:.1f} s in all; "
          f"LipSDP-neuron {sdp['t_sdp']:.1f} s per net")
    print(f"\n## Randomized smoothing certification, n0=100, n={n}, batch 1000, device {device}")
    print("| model | probe (cert/s) | Cohen core.py loop (cert/s) | ratio | mean radius probe / Cohen |")
    print("|---|---|---|---|---|")
    for name, r in speed.items():
        print(f"| {name} | {r['ours_per_s']:.2f} | {r['ref_per_s']:.2f} | {r['ratio']:.2f}x | "
              f"{r['mean_radius_ours']:.3f} / {r['mean_radius_ref']:.3f} |")
    substitution_table(q, device, n)


def substitution_table(q: bool, device: torch.device, n: int, early: bool = False, repeats: int = 3) -> None:
    from domains.dna import datasets
    from domains.dna.models import small_cnn

    dna = datasets.promoters(40, 60, seed=0).X[: 5 if q else 20]
    torch.manual_seed(0)
    bits_mlp = nn.Sequential(nn.Linear(2048, 128), nn.ReLU(), nn.Linear(128, 2))
    fingerprints = (torch.rand(5 if q else 20, 2048, generator=torch.Generator().manual_seed(0)) < 0.03).float()
    torch.manual_seed(0)
    tiny = nn.Sequential(nn.Conv1d(4, 4, 5, padding=2), nn.ReLU(), nn.AdaptiveMaxPool1d(1), nn.Flatten(),
                         nn.Linear(4, 2))
    models = {
        "DNA CNN 60 bp (small_cnn, 16 channels)": (small_cnn(3, channels=16).eval(), dna, 3, 4),
        "tiny DNA CNN 60 bp (4 channels, kernel 5)": (tiny, dna, 2, 4),
        "fingerprint MLP 2048-128-2 (bits)": (bits_mlp, fingerprints, 2, 2),
    }
    sub = {name: substitution_speed(m, x, k, n, 1000, 0.9, a, device, repeats)
           for name, (m, x, k, a) in models.items()}
    print(f"\n## Substitution smoothing certification, keep 0.9, n0=100, n={n}, batch 1000, device {device}, "
          f"best of {repeats} rounds")
    print("| model | probe (cert/s) | plain loop (cert/s) | ratio | plain loop, np.bincount (cert/s) | ratio | "
          "probe, early stop (cert/s) | ratio | probe, plain forward (cert/s) | ratio | same labels and radii | "
          "mean radius probe / loop |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in sub.items():
        print(f"| {name} | {r['ours_per_s']:.2f} | {r['loop_per_s']:.2f} | {r['ratio']:.2f}x | {r['bin_per_s']:.2f} | "
              f"{r['ratio_bin']:.2f}x | {r['early_per_s']:.2f} | {r['ratio_early']:.2f}x | {r['plain_per_s']:.2f} | "
              f"{r['ratio_plain']:.2f}x | {'yes' if r['same'] else 'NO'} | "
              f"{r['mean_radius_ours']:.2f} / {r['mean_radius_ref']:.2f} |")
    if early:
        print("\n## Exact early termination: share of the n samples evaluated (keep 0.9, n0=100, batch 1000)")
        print("| model | n | samples evaluated | inputs stopped early | radii | abstentions |")
        print("|---|---|---|---|---|---|")
        for name, (m, x, _, _) in models.items():
            for size in (n, 10 * n):
                r = early_stop_share(m, x, size, 0.9, device)
                print(f"| {name} | {size:,} | {100 * r['share']:.1f} % | {r['stopped']} of {r['inputs']} | "
                      f"{r['radii']} | {r['abstain']} |")


if __name__ == "__main__":
    main()
