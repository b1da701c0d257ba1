"""ISM wall time against tangermeme, and minimal-edit search time per sequence.

    python benchmarks/dna.py [--device cuda] [--n 4] [--bpnet-length 2114] [--length 1500] [--threads 1]

Runs ``domains.dna.saturation_mutagenesis`` (the window path on the captured graph) and
tangermeme's ``saturation_mutagenesis(fast=True, raw_outputs=True)`` on the same models and
sequences, checks that the values agree, and prints wall times, ratios, time per sequence and the
multiply-adds per mutant of the windows against a full forward pass. Models: (a) bpnet-lite's BPNet
(64 filters, 8 dilated residual layers, 2114 bp, count head through ``CountWrapper``), (b) a
hand-written 3-layer CNN (64 channels, own ``forward``, global mean pooling, 1500 bp), and
optionally (``--models basset``) a Basset-style ``nn.Sequential`` with a dense head. tangermeme
skips its fast path for jobs it expects to finish within 30 s; the threshold is set to 0 here so
that ``fast=True`` really runs its fast path (its capture and check included, as a user pays them).
Both tools are warmed up first (torch.export's first call costs seconds). Then times
``minimal_edits`` on a small CNN trained on the generated promoters.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from domains import dna  # noqa: E402
from domains.dna.datasets import promoters  # noqa: E402
from probe import Misclassify  # noqa: E402


def basset(length: int) -> nn.Sequential:
    """Basset-style trunk (Kelley et al., Genome Res. 2016), narrowed: 3 conv/pool blocks and a dense head."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(4, 64, 19, padding=9), nn.ReLU(), nn.MaxPool1d(3),
        nn.Conv1d(64, 64, 11, padding=5), nn.ReLU(), nn.MaxPool1d(4),
        nn.Conv1d(64, 64, 7, padding=3), nn.ReLU(), nn.MaxPool1d(4),
        nn.Flatten(), nn.Linear(64 * (length // 3 // 4 // 4), 2),
    ).eval()


class HandCNN(nn.Module):
    """A hand-written 3-layer CNN with its own forward and global mean pooling (not an nn.Sequential)."""

    def __init__(self, channels: int = 64, n_out: int = 2):
        super().__init__()
        torch.manual_seed(0)
        self.c1 = nn.Conv1d(4, channels, 7, padding=3)
        self.c2 = nn.Conv1d(channels, channels, 5, padding=2)
        self.c3 = nn.Conv1d(channels, channels, 3, padding=1)
        self.head = nn.Linear(channels, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.relu(self.c1(x))
        h = nn.functional.relu(self.c2(h))
        h = nn.functional.relu(self.c3(h))
        return self.head(h.mean(dim=-1))


def bpnet() -> nn.Module:
    """bpnet-lite's BPNet (Avsec et al., Nat. Genet. 2021): 64 filters, 8 dilated residual layers, count head."""
    from bpnetlite.bpnet import BPNet, CountWrapper

    torch.manual_seed(0)
    return CountWrapper(BPNet(n_filters=64, n_layers=8, n_control_tracks=0, verbose=False)).eval()


def timed(fn, device, cpu: list | None = None):
    """Wall time of ``fn()``; the process's CPU time is appended to ``cpu`` (steadier on a shared machine)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    if cpu is not None:
        cpu.append(time.process_time() - c)
    return out, time.perf_counter() - t


def sequences(n: int, length: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return nn.functional.one_hot(torch.randint(0, 4, (n, length), generator=g), 4).permute(0, 2, 1).float()


def macs_ratio(model: nn.Module, X: torch.Tensor, device) -> tuple[float, float]:
    from domains.dna.window_ism import WindowISM
    from probe.graph import capture

    plan = WindowISM(capture(model, X[:2].to(device)), X.shape[-1], device, torch.float32)
    return plan.full_macs, plan.window_macs


def bench_ism(name, model, X, args, device):
    import tangermeme.saturation_mutagenesis as tsm

    tsm._FAST_MIN_SECONDS = 0.0  # always try the fast path
    model = model.to(device)
    n, _, length = X.shape
    edits = n * length * 3
    cpu: list[float] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours, t_ours = timed(lambda: dna.saturation_mutagenesis(model, X, device=device, batch_size=args.batch,
                                                                fast=True), device, cpu)
        (y0, y_fast), t_tf = timed(lambda: tsm.saturation_mutagenesis(model, X, raw_outputs=True, fast=True,
                                                                      batch_size=args.tbatch, device=device),
                                   device, cpu)
    notes = [str(w.message)[:160] for w in caught if "fast" in str(w.message) or "full forward" in str(w.message)]
    ref = (y_fast - y0[:, None, None, :]).to(ours.device)
    ref = ref[..., 0] if ref.shape[-1] == 1 and ours.dim() == 3 else ref
    diff = float((ours - ref).abs().max())
    scale = float(y_fast.abs().max())
    full, window = macs_ratio(model, X, device)
    print(f"\nISM on {n} x {length} bp, {name}, {device}: {edits} edits")
    for note in notes:
        print("  warning:", note)
    print(f"{'method':26s} {'seconds':>9s} {'CPU s':>8s} {'s/sequence':>11s} {'edits/s':>10s}")
    print(f"{'probe (window path)':26s} {t_ours:9.2f} {cpu[0]:8.2f} {t_ours / n:11.2f} {edits / t_ours:10.0f}")
    print(f"{'tangermeme fast=True':26s} {t_tf:9.2f} {cpu[1]:8.2f} {t_tf / n:11.2f} {edits / t_tf:10.0f}")
    print(f"ratio vs tangermeme fast=True: {t_tf / t_ours:.2f}x wall, {cpu[1] / cpu[0]:.2f}x CPU time; "
          f"max |difference| {diff:.2e} "
          f"(outputs up to {scale:.3g}: {diff / max(scale, 1e-30):.1e} relative)")
    print(f"multiply-adds per mutant: full pass {full / 1e6:.1f} M, windows {window / 1e6:.1f} M "
          f"({full / window:.2f}x fewer)")
    return {"ours": t_ours, "tangermeme_fast": t_tf, "cpu": cpu, "diff": diff, "macs_ratio": full / window}


def warm_up(device):
    """torch.export's first capture costs seconds in either tool: pay it once before timing."""
    import tangermeme.saturation_mutagenesis as tsm

    model, X = HandCNN(8).to(device), sequences(1, 64)
    dna.saturation_mutagenesis(model, X, device=device, fast=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tsm.saturation_mutagenesis(model, X, raw_outputs=True, fast=True, device=device)


def bench_edits(args, device):
    data = promoters(1500, 60, seed=0, sharpen=3)
    model = dna.fit(dna.small_cnn(3, channels=32), data.X[:1200], data.y[:1200], epochs=15, device=device)
    test = data.subset(np.arange(1200, 1500))
    X = test.X.to(device)
    with torch.no_grad():
        keep = ((model(X).argmax(1).cpu() == test.y) & (test.y < 2)).nonzero().flatten()[: args.edit_n]
    print(f"\nminimal edits on {len(keep)} correctly classified promoters (60 bp, small CNN), {device}")
    print(f"{'guide':10s} {'beam':>4s} {'ms/sequence':>12s} {'success':>8s} {'median edits':>13s}")
    for guide, beam in (("ism", 1), ("gradient", 1), ("ism", 3)):
        res, t = timed(lambda g=guide, b=beam: dna.minimal_edits(model, X[keep], Misclassify(test.y[keep]),
                                                               max_edits=8, guide=g, beam_width=b, device=device),
                       device)
        ok = res.success.cpu()
        print(f"{guide:10s} {beam:4d} {1000 * t / len(keep):12.1f} {float(ok.float().mean()):8.3f} "
              f"{float(res.n_edits.cpu()[ok].median()):13.1f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--n", type=int, default=4, help="sequences for ISM")
    p.add_argument("--bpnet-length", type=int, default=2114)
    p.add_argument("--length", type=int, default=1500, help="length for the hand-written CNN (and Basset)")
    p.add_argument("--models", default="bpnet,hand", help="comma-separated: bpnet, hand, basset")
    p.add_argument("--batch", type=int, default=None, help="probe's batch size (default: its own choice)")
    p.add_argument("--tbatch", type=int, default=32, help="tangermeme's batch size (its default)")
    p.add_argument("--edit-n", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-edits", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {device}")
    warm_up(device)
    for name in args.models.split(","):
        if name == "bpnet":
            bench_ism("bpnet-lite BPNet (64 filters, 8 layers), count head", bpnet(),
                      sequences(args.n, args.bpnet_length), args, device)
        elif name == "hand":
            bench_ism("hand-written 3-layer CNN (64 channels, global mean pooling)", HandCNN(),
                      sequences(args.n, args.length), args, device)
        elif name == "basset":
            bench_ism("Basset-style nn.Sequential", basset(args.length), sequences(args.n, args.length), args,
                      device)
        else:
            raise SystemExit(f"unknown model {name!r}")
    if not args.skip_edits:
        bench_edits(args, device)


if __name__ == "__main__":
    main()
