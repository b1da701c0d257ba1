"""Atom maps and counterfactual search on the sulfonamide series, side by side with the reference tools.

1. Atom maps per molecule: ``domains.chem.atom_weights`` (all atoms of all molecules in batched
   model calls) against RDKit's ``SimilarityMaps.GetAtomicWeightsForModel`` (one fingerprint and
   one model call per atom, N+1 calls per molecule), for a torch MLP and a scikit-learn random
   forest on 2048-bit Morgan fingerprints; the weights must agree.
2. Counterfactual search: ``domains.chem.counterfactuals`` against exmol's ``sample_space``
   (STONED, preset "medium": basic alphabet, up to 2 mutations) with the same number of samples,
   hence the same number of model rows. If exmol cannot be imported, a plain STONED-SELFIES loop
   (one SMILES, ``selfies`` mutations, RDKit validity) stands in and the table says so.

Run: ``python benchmarks/chem.py [--device cuda] [--molecules 40] [--samples 2000]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rdkit import DataStructs  # noqa: E402
from rdkit.Chem.Draw import SimilarityMaps  # noqa: E402

from domains.chem import Drop, atom_weights, counterfactuals, datasets, featurize  # noqa: E402
from domains.chem.io import quiet_rdkit  # noqa: E402
from domains.chem.models import fit_mlp  # noqa: E402


def rdkit_maps(mols, predict_one, n_bits):
    def fp(m, a):
        return SimilarityMaps.GetMorganFingerprint(m, a, radius=2, fpType="bv", nBits=n_bits)

    out = []
    with quiet_rdkit():  # the reference's fingerprint function logs a deprecation notice per call
        for m in mols:
            out.append(np.asarray(SimilarityMaps.GetAtomicWeightsForModel(m, fp, predict_one)))
    return out


def bench_atom_maps(args, feats, mlp, rf, dev):
    idx = list(range(args.molecules))
    mols = [feats.molecules[i] for i in idx]
    n_bits = feats.X.shape[1]
    rows = []

    def mlp_one(v):
        a = np.zeros((n_bits,))
        DataStructs.ConvertToNumpyArray(v, a)
        with torch.no_grad():
            return float(mlp(torch.as_tensor(a[None], dtype=torch.float32, device=dev))[0, 0])

    def rf_one(v):
        a = np.zeros((n_bits,))
        DataStructs.ConvertToNumpyArray(v, a)
        return float(rf.predict(a[None])[0])

    for label, model, one in (("MLP (torch)", mlp, mlp_one), ("random forest (sklearn)", rf, rf_one)):
        atom_weights(model, feats, idx[:2], device=dev if label.startswith("MLP") else None)  # warm-up
        t0 = time.perf_counter()
        ours = atom_weights(model, feats, idx, device=dev if label.startswith("MLP") else None)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = rdkit_maps([m for m in mols], one, n_bits)
        t_ref = time.perf_counter() - t0
        diff = max(float(np.abs(a - b).max()) for a, b in zip(ours.weights, ref))
        rows.append((label, 1e3 * t_ours / len(idx), 1e3 * t_ref / len(idx), t_ref / t_ours, diff))
    return rows


def plain_stoned(smiles, n, seed=0):
    """Reference loop when exmol is unavailable: mutate one SELFIES string, keep valid distinct molecules."""
    import random

    import selfies as sf
    from rdkit import Chem

    rng = random.Random(seed)
    alphabet = sorted(sf.get_semantic_robust_alphabet())
    tokens0 = list(sf.split_selfies(sf.encoder(smiles)))
    out = set()
    for _ in range(n):
        t = list(tokens0)
        for _ in range(rng.randint(1, 2)):
            i = rng.randrange(len(t))
            t[i] = rng.choice(alphabet)
        m = Chem.MolFromSmiles(sf.decoder("".join(t)))
        if m is not None:
            out.add(Chem.MolToSmiles(m))
    return sorted(out)


def bench_counterfactuals(args, feats, mlp, dev):
    y_idx = int(np.argmax(datasets.sulfonamides()["pIC50"].to_numpy()))
    smiles = feats.molecules.smiles[y_idx]
    fz = feats.featurizer
    calls = {"rows": 0}

    def f(smiles_list):
        calls["rows"] += len(smiles_list)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            X = fz(list(smiles_list), on_error="skip", bit_info=False).X.to(dev)
        with torch.no_grad():
            return mlp(X)[:, 0].cpu().numpy().tolist()

    t0 = time.perf_counter()
    # STONED without filters, as exmol's preset samples (benchmarks/chem_mpnn.py compares the filtered search)
    cf = counterfactuals(mlp, smiles, Drop(1.0), featurizer=fz, n_samples=args.samples, max_mutations=2,
                         top=args.samples, device=dev, generator="stoned", filters=None)
    t_ours = time.perf_counter() - t0
    try:
        import exmol

        t0 = time.perf_counter()
        space = exmol.sample_space(smiles, f, batched=True, preset="medium", num_samples=args.samples, quiet=True)
        t_ref = time.perf_counter() - t0
        y0 = space[0].yhat
        found = sum(1 for e in space[1:] if e.yhat <= y0 - 1.0)
        ref_name = f"exmol {exmol.__version__} sample_space (preset medium)"
        ref_cands = len(space) - 1
    except ImportError as err:
        t0 = time.perf_counter()
        cands = plain_stoned(smiles, args.samples)
        y = f(cands)
        t_ref = time.perf_counter() - t0
        y0 = f([smiles])[0]
        found = sum(1 for v in y if v <= y0 - 1.0)
        ref_name = f"plain STONED-SELFIES loop (exmol unavailable: {err})"
        ref_cands = len(cands)
    return dict(ours=t_ours, ref=t_ref, ref_name=ref_name, ours_cands=cf.candidates, ref_cands=ref_cands,
                ours_rows=cf.queries, ref_rows=calls["rows"], ours_found=len(cf), ref_found=found,
                best_sim=float(cf.table.similarity.iloc[0]) if len(cf) else float("nan"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None)
    p.add_argument("--molecules", type=int, default=40)
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device) if args.device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    df = datasets.sulfonamides()
    feats = featurize(df.set_index("name")["smiles"], kind="morgan", n_bits=2048)
    y = df["pIC50"].to_numpy()
    mlp = fit_mlp(feats.X, y, hidden=128, epochs=10).to(dev)
    from sklearn.ensemble import RandomForestRegressor

    rf = RandomForestRegressor(n_estimators=100, random_state=0, n_jobs=1).fit(feats.X.numpy(), y)
    print(f"machine: {os.cpu_count()} CPU cores, device {dev}, torch threads {args.threads}")
    print(f"\nAtom maps per molecule ({args.molecules} sulfonamides, Morgan r=2, 2048 bits)")
    print(f"{'model':26s} {'ours ms':>9s} {'RDKit ms':>9s} {'ratio':>7s} {'max |diff|':>11s}")
    for label, a, b, r, d in bench_atom_maps(args, feats, mlp, rf, dev):
        print(f"{label:26s} {a:9.2f} {b:9.2f} {r:6.1f}x {d:11.2e}")
    c = bench_counterfactuals(args, feats, mlp, dev)
    print(f"\nCounterfactual search, most potent compound, {args.samples} samples, criterion: drop >= 1 pIC50")
    print(f"{'':44s} {'seconds':>8s} {'model rows':>10s} {'candidates':>10s} {'crossing':>8s}")
    print(f"{'domains.chem.counterfactuals':44s} {c['ours']:8.2f} {c['ours_rows']:10d} {c['ours_cands']:10d} "
          f"{c['ours_found']:8d}")
    print(f"{c['ref_name'][:44]:44s} {c['ref']:8.2f} {c['ref_rows']:10d} {c['ref_cands']:10d} {c['ref_found']:8d}")
    print(f"ratio (reference / ours): {c['ref'] / c['ours']:.2f}x; most similar counterfactual Tanimoto "
          f"{c['best_sim']:.2f}")


if __name__ == "__main__":
    main()
