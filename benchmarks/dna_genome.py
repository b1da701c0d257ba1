"""Genome-scale streaming: windows per second and peak memory as the number of windows grows.

    python benchmarks/dna_genome.py [--windows 10000,30000,100000] [--width 1000] [--threads 2]
                                    [--device cpu|cuda] [--channels 16] [--batch-size 512] [--chunk-size 8192]

Writes a genome of generated sequence (independent bases, GC 0.41) big enough for the largest run, as
one FASTA with its ``.fai``, tiles it into windows of ``--width`` bases, and runs
``domains.dna.predict_windows`` on the first N windows into a fresh Zarr store, for each N, each in its
own process so that its peak resident memory (``ru_maxrss``) is its own. Prints N, wall seconds,
windows/s, peak RSS, and the peak above the RSS measured just before the job (after imports, the model
and the window table), which is what streaming must keep flat. Then times a resume of the finished
store (reading flags only) and ``variant_effects`` on N // 10 SNVs (two windows each).

On ``--device cuda`` the model and each batch go to the GPU; everything else (reading the genome,
encoding, writing the store) is the same code.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(args: argparse.Namespace) -> dict:
    import numpy as np
    import pandas as pd
    import torch

    from domains.dna.genome import Genome, tile_genome
    from domains.dna.models import small_cnn
    from domains.dna.regions import predict_windows
    from domains.dna.variants import variant_effects

    torch.set_num_threads(args.threads)
    genome = Genome(args.genome)
    windows = tile_genome(genome, args.width).iloc[: args.n].reset_index(drop=True)
    model = small_cnn(3, channels=args.channels, seed=0).to(args.device).eval()
    store = Path(args.workdir) / f"pred_{args.n}.zarr"
    shutil.rmtree(store, ignore_errors=True)
    before = _rss_mb()
    t0 = time.perf_counter()
    res = predict_windows(model, genome, windows, batch_size=args.batch_size, chunk_size=args.chunk_size,
                          store=store, device=args.device, progress=False)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert res.complete
    t1 = time.perf_counter()
    predict_windows(model, genome, windows, batch_size=args.batch_size, chunk_size=args.chunk_size, store=store,
                    device=args.device, progress=False)
    resume = time.perf_counter() - t1
    rng = np.random.default_rng(0)
    n_var = max(1, args.n // 10)
    chrom = windows.chrom.iloc[0]
    pos = np.sort(rng.choice(np.arange(args.width, genome.length(chrom) - args.width), n_var, replace=False))
    ref = [genome.fetch(chrom, int(p), int(p) + 1) for p in pos]
    variants = pd.DataFrame({"CHROM": chrom, "POS": pos + 1, "ID": ".", "REF": ref,
                             "ALT": ["ACGT"[("ACGT".index(r) + 1) % 4] for r in ref]})
    t2 = time.perf_counter()
    variant_effects(model, genome, variants, width=args.width, batch_size=args.batch_size,
                    chunk_size=args.chunk_size, device=args.device, progress=False)
    vwall = time.perf_counter() - t2
    return {"n": args.n, "wall_s": wall, "windows_per_s": args.n / wall, "peak_rss_mb": peak,
            "rss_before_mb": before, "resume_s": resume, "variants": n_var, "variant_s": vwall,
            "variants_per_s": n_var / vwall}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--windows", default="10000,30000,100000")
    p.add_argument("--width", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--chunk-size", type=int, default=8192)
    p.add_argument("--workdir", default=None, help="where the genome and stores go (default: a temporary folder)")
    p.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--genome", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.n is not None:
        print(json.dumps(child(args)))
        return
    import torch

    from domains.dna.datasets import synthetic_genome

    sizes = [int(s) for s in args.windows.split(",")]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="dna_genome_"))
    work.mkdir(parents=True, exist_ok=True)
    fasta = work / "genome.fa"
    total = max(sizes) * args.width
    t0 = time.perf_counter()
    # four chromosomes, each a quarter of what the largest run needs (plus one window of slack)
    synthetic_genome(fasta, {f"chr{i + 1}": total // 4 + args.width for i in range(4)}, seed=0)
    print(f"genome: {total / 1e6:.0f} Mb in {time.perf_counter() - t0:.1f} s ({fasta})", file=sys.stderr)
    print(f"torch {torch.__version__}, device {args.device}, {args.threads} thread(s), small_cnn "
          f"{args.channels} channels, {args.width} bp windows, batch {args.batch_size}, chunk {args.chunk_size}")
    print("| windows | wall s | windows/s | peak RSS MiB | RSS before job MiB | peak - before MiB | resume s "
          "| SNVs | SNVs/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    for n in sizes:
        cmd = [sys.executable, __file__, "--n", str(n), "--genome", str(fasta), "--workdir", str(work),
               "--width", str(args.width), "--threads", str(args.threads), "--device", args.device,
               "--channels", str(args.channels), "--batch-size", str(args.batch_size),
               "--chunk-size", str(args.chunk_size)]
        r = json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)
        print(f"| {r['n']:,} | {r['wall_s']:.1f} | {r['windows_per_s']:.0f} | {r['peak_rss_mb']:.0f} | "
              f"{r['rss_before_mb']:.0f} | {r['peak_rss_mb'] - r['rss_before_mb']:.0f} | {r['resume_s']:.2f} | "
              f"{r['variants']:,} | {r['variants_per_s']:.0f} |", flush=True)
        shutil.rmtree(work / f"pred_{n}.zarr", ignore_errors=True)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
