"""ISM wall time against tangermeme, and minimal-edit search time per sequence.

    python benchmarks/dna.py [--device cuda] [--n 16] [--length 1000] [--threads 1]

Runs ``domains.dna.saturation_mutagenesis`` and tangermeme's ``saturation_mutagenesis``
(``fast=True`` and ``fast=False``, ``raw_outputs=True``) on the same Basset-style convolutional
model and sequences, checks that the values agree, and prints wall times and ratios. tangermeme
skips its fast path for jobs it expects to finish within 30 s; the threshold is set to 0 here so
that ``fast=True`` really runs its fast path (its capture and check included, as a user pays
them), and the time of its edit predictions alone is reported too. Then times ``minimal_edits``
on a small CNN trained on the generated promoters.
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


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def bench_ism(args, device):
    import tangermeme.saturation_mutagenesis as tsm
    from tangermeme._fastism import _FastISM

    tsm._FAST_MIN_SECONDS = 0.0  # always try the fast path
    model = basset(args.length).to(device)
    g = torch.Generator().manual_seed(1)
    X = nn.functional.one_hot(torch.randint(0, 4, (args.n, args.length), generator=g), 4).permute(0, 2, 1).float()
    edits = args.n * args.length * 3
    rows = []
    dna.saturation_mutagenesis(model, X[:1], device=device)  # warm up
    ours, t_ours = timed(lambda: dna.saturation_mutagenesis(model, X, device=device, batch_size=args.batch), device)
    plain, t_plain = timed(lambda: dna.saturation_mutagenesis(model, X, device=device, batch_size=args.batch,
                                                              fast=False), device)
    spent = [0.0]
    real = _FastISM.predict_edits

    def counted(self, *a, **k):
        t = time.perf_counter()
        r = real(self, *a, **k)
        spent[0] += time.perf_counter() - t
        return r

    _FastISM.predict_edits = counted
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (y0, y_fast), t_tf = timed(lambda: tsm.saturation_mutagenesis(model, X, raw_outputs=True, fast=True,
                                                                      batch_size=args.batch, device=device), device)
    _FastISM.predict_edits = real
    fell_back = [str(w.message) for w in caught if "fast=False" in str(w.message)]
    (y0s, y_slow), t_ts = timed(lambda: tsm.saturation_mutagenesis(model, X, raw_outputs=True, fast=False,
                                                                   batch_size=args.batch, device=device), device)
    ref_fast = (y_fast - y0[:, None, None, :]).to(ours.device)
    ref_slow = (y_slow - y0s[:, None, None, :]).to(ours.device)
    rows.append(("probe fast path", t_ours, edits / t_ours, float((ours - ref_slow).abs().max())))
    rows.append(("probe plain path", t_plain, edits / t_plain, float((plain - ref_slow).abs().max())))
    rows.append(("tangermeme fast=True", t_tf, edits / t_tf, float((ref_fast - ref_slow).abs().max())))
    rows.append(("  its edit predictions only", spent[0], edits / spent[0] if spent[0] else float("nan"), None))
    rows.append(("tangermeme fast=False", t_ts, edits / t_ts, 0.0))
    print(f"\nISM on {args.n} x {args.length} bp, Basset-style CNN, {device}, batch {args.batch}: {edits} edits")
    if fell_back:
        print("  tangermeme fell back to fast=False:", fell_back[0][:160])
    print(f"{'method':32s} {'seconds':>9s} {'edits/s':>10s} {'max |diff|':>11s}")
    for name, t, rate, diff in rows:
        print(f"{name:32s} {t:9.2f} {rate:10.0f} {'' if diff is None else f'{diff:11.2e}'}")
    print(f"ratio vs tangermeme fast=True:  {t_tf / t_ours:.2f}x   (vs its edit predictions only: "
          f"{spent[0] / t_ours:.2f}x)")
    print(f"ratio vs tangermeme fast=False: {t_ts / t_ours:.2f}x")
    return {"ours": t_ours, "tangermeme_fast": t_tf, "tangermeme_fast_edits": spent[0], "tangermeme_slow": t_ts}


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
    p.add_argument("--n", type=int, default=16, help="sequences for ISM")
    p.add_argument("--length", type=int, default=1000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--edit-n", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-edits", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {device}")
    bench_ism(args, device)
    if not args.skip_edits:
        bench_edits(args, device)


if __name__ == "__main__":
    main()
