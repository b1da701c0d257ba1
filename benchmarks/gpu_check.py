"""GPU readiness: hot-path tests on CUDA, the main benchmarks with ``--device cuda``, host syncs per step.

    python benchmarks/gpu_check.py [--device cuda] [--skip-tests] [--skip-benchmarks] [--syncs-only]

Three parts, under five minutes on a GPU:

1. the hot-path tests (PGD, IBP/CROWN bounds, smoothing, ISM, host-sync counts) with the ``device``
   fixture, their CUDA cases only (``pytest -k cuda``);
2. ``benchmarks/attacks.py``, ``certify.py`` and ``dna.py`` with ``--device cuda`` and short settings
   (a benchmark whose peer library is not installed is reported and skipped);
3. host synchronisations of the PGD step loop, the ISM batch loop (fast and plain path), CROWN / IBP /
   alpha-CROWN bound propagation and the smoothing sampling loop, counted with
   ``probe.testing.count_host_syncs`` (``torch.cuda.set_sync_debug_mode("warn")`` on CUDA), as a
   table: each loop is run at two sizes and the difference, divided by the difference in steps
   (batches, layers, iterations), is the count per step; what is left is the fixed count per call.

Without CUDA it says so, runs the CPU cases of the tests and the sync table with the CPU proxy
(calls that would synchronise on CUDA), skips the benchmarks and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import probe  # noqa: E402
from domains.dna import saturation_mutagenesis  # noqa: E402
from probe.attacks import PGD  # noqa: E402
from probe.certify import Smoothing  # noqa: E402
from probe.certify.base import compute_bounds, get_bound_method, make_input_set  # noqa: E402
from probe.certify.crown import AlphaCROWN  # noqa: E402
from probe.certify.graph import build_graph  # noqa: E402
from probe.testing import count_host_syncs  # noqa: E402

HOT_TESTS = ["tests/test_pgd.py", "tests/test_syncs.py", "tests/certify/test_cert_bounds.py",
             "tests/certify/test_cert_smoothing.py", "tests/certify/test_cert_syncs.py", "tests/dna/test_dna_ism.py",
             "tests/dna/test_dna_ism_syncs.py"]
BENCHMARKS = [  # script, short flags, peer modules it imports
    ("attacks.py", ["--n", "64", "--repeats", "1"], ["foolbox", "torchattacks"]),
    ("certify.py", ["--quick"], []),
    ("dna.py", ["--n", "4", "--length", "500", "--skip-edits"], ["tangermeme"]),
]


def syncs(fn: Callable[[], object], device: torch.device) -> int:
    """Host syncs of one call of ``fn`` (CUDA's debug mode on CUDA, the CPU proxy elsewhere)."""
    with count_host_syncs(device) as counter:
        fn()
    return counter.count


def per_step(fn: Callable[[int], object], small: int, large: int, device: torch.device,
             units: Callable[[int], float] = float) -> tuple[float, float]:
    """(syncs per unit, fixed syncs per call) from calls ``fn(small)`` and ``fn(large)``.

    ``units(size)`` is the number of steps (batches, layers, ...) a call of that size runs.
    """
    fn(small)  # warm-up: first calls may set up caches or kernels
    a, b = syncs(lambda: fn(small), device), syncs(lambda: fn(large), device)
    slope = (b - a) / (units(large) - units(small))
    return slope, a - slope * units(small)


def mlp(widths: list[int], seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers += [nn.Linear(widths[i], widths[i + 1]), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).eval()


def basset(length: int) -> nn.Sequential:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv1d(4, 16, 7, padding=3), nn.ReLU(), nn.MaxPool1d(3),
                      nn.Conv1d(16, 16, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
                      nn.Flatten(), nn.Linear(16 * (length // 3 // 2), 3))
    return m.eval()


def sync_table(device: torch.device) -> list[tuple[str, str, float, float]]:
    """Rows (loop, unit, syncs per unit, fixed syncs per call)."""
    g = torch.Generator().manual_seed(0)
    rows = []

    model = mlp([20, 64, 5]).to(device)
    x = torch.randn(64, 20, generator=g).to(device)
    # eps too small to flip anything: every input runs every step (no early exit)
    for norm in ("linf", "l1"):
        s, c = per_step(lambda k, norm=norm: PGD(eps=1e-3, norm=norm, steps=k)(model, x, batch_size=None),
                        10, 30, device)
        rows.append((f"PGD {norm}, 64 inputs, no success", "step", s, c))
    s, c = per_step(lambda b: PGD(eps=1e-3, steps=10)(model, x, batch_size=b), 64, 8, device, lambda b: 64 / b)
    rows.append(("PGD, 10 steps, 64 inputs, batch_size 64 vs 8", "batch", s, c))

    length = 60
    net = basset(length).to(device)
    X = nn.functional.one_hot(torch.randint(0, 4, (6, length), generator=g), 4).permute(0, 2, 1).float().to(device)
    for fast in (True, False):
        # 3 edits per position, 64 per batch: 2 sequences make 6 batches, 6 sequences 17
        s, c = per_step(lambda n, fast=fast: saturation_mutagenesis(net, X[:n], batch_size=64, fast=fast), 2, 6,
                        device, lambda n: -(-n * length * 3 // 64))
        rows.append((f"ISM {'fast' if fast else 'plain'} path, 60 bp, batch 64", "batch", s, c))

    x = torch.randn(16, 10, generator=g).to(device)
    graphs = {}
    for act in ("relu", "tanh"):  # traced outside the counted calls: only the bound propagation is counted
        for depth in (2, 6):
            net = mlp([10] + [32] * depth + [3])
            if act == "tanh":
                net = nn.Sequential(*[nn.Tanh() if isinstance(m, nn.ReLU) else m for m in net])
            graphs[act, depth] = build_graph(net.to(device), x)
    inputs = make_input_set(x, 0.05)
    for method, act in (("ibp", "relu"), ("crown", "relu"), ("crown", "tanh")):
        s, c = per_step(lambda d, m=method, a=act: compute_bounds(graphs[a, d], inputs, get_bound_method(m)), 2, 6,
                        device)
        rows.append((f"{method.upper()} bounds, {act} MLP 10-32x(2 vs 6)-3", "hidden layer", s, c))
    s, c = per_step(lambda k: compute_bounds(graphs["relu", 2], inputs, AlphaCROWN(iterations=k)), 5, 15, device)
    rows.append(("alpha-CROWN, relu MLP 10-32x2-3", "iteration", s, c))

    tab = mlp([20, 64, 2]).to(device)
    x = torch.randn(4, 20, generator=g).to(device)
    # 4 inputs x n samples in batches of 500: n = 1000 makes 8 batches, n = 3000 makes 24
    s, c = per_step(lambda n: Smoothing(tab, 0.25, n0=100, n=n, batch_size=500).certify(x), 1000, 3000, device,
                    lambda n: 4 * n / 500)
    rows.append(("smoothing certify, 4 inputs, batch 500", "batch", s, c))
    return rows


def print_table(rows: list[tuple[str, str, float, float]], device: torch.device, mode: str) -> None:
    print(f"\nHost syncs ({mode}, device {device}, torch {torch.__version__})")
    print("| loop | unit | syncs per unit | fixed syncs per call |")
    print("|---|---|---|---|")
    for loop, unit, s, c in rows:
        print(f"| {loop} | {unit} | {s:.3g} | {c:.3g} |")


def run_tests(device: torch.device) -> int:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *HOT_TESTS, "-k", device.type]
    print("\n$", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT, env={**os.environ, "MPLBACKEND": "Agg"})


def run_benchmarks(device: torch.device) -> int:
    failed = 0
    for script, flags, peers in BENCHMARKS:
        missing = [p for p in peers if importlib.util.find_spec(p) is None]
        if missing:
            print(f"\n{script}: skipped, {', '.join(missing)} not installed")
            continue
        cmd = [sys.executable, str(ROOT / "benchmarks" / script), "--device", str(device), *flags]
        print("\n$", " ".join(cmd), flush=True)
        t = time.perf_counter()
        rc = subprocess.call(cmd, cwd=ROOT)
        print(f"{script}: exit {rc}, {time.perf_counter() - t:.0f} s")
        failed += rc != 0
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--skip-benchmarks", action="store_true")
    parser.add_argument("--syncs-only", action="store_true", help="only the host-sync table")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda" and torch.cuda.is_available()
    if device.type == "cuda" and not cuda:
        print("CUDA is not available: running the CPU cases of the tests and the host-sync table with the "
              "CPU proxy (calls that would synchronise on CUDA); benchmarks skipped")
        device = torch.device("cpu")
    torch.set_num_threads(min(torch.get_num_threads(), 4))
    print(f"probe {getattr(probe, '__version__', '?')}, torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if cuda else ""))
    failed = 0
    if not (args.skip_tests or args.syncs_only):
        failed += run_tests(device) != 0
    if cuda and not (args.skip_benchmarks or args.syncs_only):
        failed += run_benchmarks(device)
    t = time.perf_counter()
    print_table(sync_table(device), device, "CUDA sync debug mode" if cuda else "CPU proxy")
    print(f"(table in {time.perf_counter() - t:.1f} s)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
