"""chemprop networks under the microscope: atom maps against two ground truths, counterfactuals against exmol.

1. Crippen logP. Two chemprop MPNNs are trained on RDKit's Crippen logP of the solubility set's
   training split, one with chemprop's standard readout (FFN on the sum of the atom states) and one
   with the atom-wise readout (FFN on every atom, then the sum: ``fit_mpnn(readout="atomwise")``);
   on 50 molecules of its test split the atom weights of each method are compared with the true
   per-atom Crippen contributions (hydrogens folded onto their heavy atom): Spearman per molecule
   (median over the 50) and over all atoms pooled. Then: the atom-wise readout over ``--seeds``
   seeds (each seed's median, their ensemble, and how well the seeds' own splits agree with each
   other), two references computed from Crippen's function itself, and a diagnostic re-booking.
2. Free-Wilson. A chemprop MPNN (chemprop's default mean readout) is trained on the 1017 sulfonamide
   pIC50 values; each substituent's atom weights are summed and averaged over the molecules that
   carry it, and ranked against the Free-Wilson contributions (substituents seen at least 3 times,
   as in ``tests/chem/test_chem_freewilson.py``).
3. Counterfactuals of 20 molecules of 8-15 heavy atoms (test split of the solubility set, with a ring
   and an N or O) for the logP network and the criterion "logP falls by at least ``--delta``": ours (graph
   edits, then the filters, then the model) against exmol's ``sample_space`` + ``rcf_explain``
   (STONED preset "medium") given the same number of model rows. Both sets are judged by the same
   filters (validity, SA score <= 6, QED >= 0.2, no new PAINS/Brenk alert, no new strained ring) and
   by the Morgan-2 Tanimoto similarity of the best counterfactual to its molecule.

Run: ``python benchmarks/chem_mpnn.py [--device cuda] [--epochs 30] [--depth 3] [--seeds 5] [--samples 1000]``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rdkit import Chem, DataStructs, RDLogger  # noqa: E402
from rdkit.Chem import Crippen, rdFingerprintGenerator  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from domains.chem import datasets  # noqa: E402
from domains.chem.atoms import atom_contributions  # noqa: E402
from domains.chem.counterfactuals import counterfactuals  # noqa: E402
from domains.chem.filters import MoleculeFilters  # noqa: E402
from domains.chem.freewilson import free_wilson, substituent_scores  # noqa: E402
from domains.chem.mpnn import MPNN_METHODS, fit_mpnn, mpnn_atom_weights, mpnn_predict  # noqa: E402
from domains.chem.shifts import Drop  # noqa: E402


def logp_network(args, readout="ffn", seed=0):
    sol = datasets.solubility()
    train = list(sol.smiles[sol.split == "train"])
    y = [Crippen.MolLogP(Chem.MolFromSmiles(s)) for s in train]
    t = time.perf_counter()
    net = fit_mpnn(train, y, hidden=args.hidden, ffn_hidden=args.hidden, depth=args.depth, epochs=args.epochs,
                   lr=1e-3, readout=readout, seed=seed, device=args.device)
    return net, time.perf_counter() - t, sol


def _median_spearman(weights, refs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # molecules whose contributions are all equal (e.g. benzene)
        return float(np.nanmedian([spearmanr(w, c)[0] for w, c in zip(weights, refs)]))


def _crippen_terms(mols):
    return [atom_contributions(m)["MolLogP"] for m in mols]


def _moved_crippen(mol, amount):
    """Crippen's split with ``amount`` moved from every heteroatom to each carbon bonded to it: same logP."""
    c = atom_contributions(mol)["MolLogP"].copy()
    for b in mol.GetBonds():
        for x, y in ((b.GetBeginAtom(), b.GetEndAtom()), (b.GetEndAtom(), b.GetBeginAtom())):
            if x.GetSymbol() == "C" and y.GetSymbol() not in ("C", "H"):
                c[x.GetIdx()] += amount
                c[y.GetIdx()] -= amount
    return c


def _bond_classes(mol, classes, grow):
    """Signed incidence (atoms x bond classes) of bonds between unlike atoms; class = both ends' element
    and aromaticity and the bond order."""
    rows = []
    for b in mol.GetBonds():
        ends = sorted((b.GetBeginAtom(), b.GetEndAtom()), key=lambda a: (a.GetSymbol(), a.GetIsAromatic()))
        keys = [(a.GetSymbol(), a.GetIsAromatic()) for a in ends]
        if keys[0] == keys[1]:
            continue  # a move between like ends has no direction a rule could give
        cls = (*keys, str(b.GetBondType()))
        if cls not in classes:
            if not grow:
                continue
            classes[cls] = len(classes)
        rows += [(ends[0].GetIdx(), classes[cls], 1.0), (ends[1].GetIdx(), classes[cls], -1.0)]
    return rows


def _rebooked(train_maps, test_maps):
    """Diagnostic: the network's atom terms after the bond-class moves that bring the training molecules'
    terms closest to Crippen's split (least squares). Moves along bonds leave every molecule's sum as it is,
    so the result is still an exact decomposition of the network; but choosing the moves reads Crippen's
    per-atom values, so it is no attribution method."""
    classes = {}
    inc = [_bond_classes(m, classes, True) for m in train_maps.mols]
    inc_test = [_bond_classes(m, classes, False) for m in test_maps.mols]

    def dense(mol, rows):
        D = np.zeros((mol.GetNumAtoms(), len(classes)))
        for a, k, v in rows:
            D[a, k] += v
        return D

    A = np.concatenate([dense(m, r) for m, r in zip(train_maps.mols, inc)])
    A = np.hstack([np.ones((len(A), 1)), A])
    d = np.concatenate([w - c for w, c in zip(train_maps.weights, _crippen_terms(train_maps.mols))])
    coef = np.linalg.solve(A.T @ A + 1e-3 * np.eye(A.shape[1]), A.T @ d)[1:]
    return [w - dense(m, r) @ coef for w, m, r in zip(test_maps.weights, test_maps.mols, inc_test)], len(classes)


def _oracle_deletion(mol):
    """The true function's own deletion map: logP(mol) - logP(mol without atom a, valences capped by H)."""
    out = []
    for a in range(mol.GetNumAtoms()):
        rw = Chem.RWMol(mol)
        for n in mol.GetAtomWithIdx(a).GetNeighbors():
            rw.GetAtomWithIdx(n.GetIdx()).SetNoImplicit(False)
        rw.RemoveAtom(a)
        m = rw.GetMol()
        try:
            Chem.SanitizeMol(m)
            out.append(Crippen.MolLogP(mol) - Crippen.MolLogP(m))
        except Exception:  # deleting a ring atom of an aromatic ring leaves no Kekule structure
            out.append(np.nan)
    return np.asarray(out)


def _method_rows(label, net, pick, methods):
    for method in methods:
        t = time.perf_counter()
        maps = mpnn_atom_weights(net, pick, method=method, steps=32)
        dt = time.perf_counter() - t
        truth = _crippen_terms(maps.mols)
        pooled = spearmanr(np.concatenate(maps.weights), np.concatenate(truth))[0]
        print(f"| {label} | {method} | {_median_spearman(maps.weights, truth):.3f} | {pooled:.3f} | {maps.queries} | "
              f"{dt:.2f} |")


def bench_crippen(args, net, sol):
    train = list(sol.smiles[sol.split == "train"])
    test = list(sol.smiles[sol.split == "test"])
    rng = np.random.default_rng(0)
    pick = [test[i] for i in sorted(rng.choice(len(test), 50, replace=False))]
    true_y = np.array([Crippen.MolLogP(Chem.MolFromSmiles(s)) for s in pick])
    atomwise, dt, _ = logp_network(args, readout="atomwise")
    print(f"\n## 1. Crippen logP (hidden {args.hidden}, depth {args.depth}, {args.epochs} epochs, seed 0)")
    for label, n in (("standard (FFN after the sum)", net), ("atom-wise (FFN on each atom, then the sum)", atomwise)):
        pred = mpnn_predict(n, pick)[:, 0]
        rmse = np.sqrt(((pred - true_y) ** 2).mean())
        print(f"- {label}: r = {np.corrcoef(pred, true_y)[0, 1]:.3f}, RMSE = {rmse:.2f} on the 50 molecules")
    print("\n| readout | method | median Spearman per molecule | pooled Spearman (all atoms) | graphs through the net "
          "| s |")
    print("|---|---|---|---|---|---|")
    gradient_methods = [m for m in MPNN_METHODS if m != "readout"]
    _method_rows("standard", net, pick, gradient_methods)
    _method_rows("atom-wise", atomwise, pick, MPNN_METHODS)

    # ceiling of a deletion map: the exact Crippen function's own (atoms whose deletion RDKit can sanitise)
    per, allw, allc = [], [], []
    for s in pick:
        m = Chem.MolFromSmiles(s)
        w, c = _oracle_deletion(m), atom_contributions(m)["MolLogP"]
        ok = ~np.isnan(w)
        allw.append(w[ok])
        allc.append(c[ok])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            per.append(spearmanr(w[ok], c[ok])[0] if ok.sum() > 2 else np.nan)
    pooled = spearmanr(np.concatenate(allw), np.concatenate(allc))[0]
    print(f"| reference | RDKit's exact Crippen logP, atom deleted and capped with H | {np.nanmedian(per):.3f} | "
          f"{pooled:.3f} | - | - |")
    mols = [Chem.MolFromSmiles(s) for s in pick]
    for amount in (0.2, 0.4):
        moved = [_moved_crippen(m, amount) for m in mols]
        pooled = spearmanr(np.concatenate(moved), np.concatenate(_crippen_terms(mols)))[0]
        print(f"| reference | Crippen's split, {amount} moved along every C-heteroatom bond (same logP) | "
              f"{_median_spearman(moved, _crippen_terms(mols)):.3f} | {pooled:.3f} | - | - |")

    print(f"\n### Atom-wise readout over {args.seeds} seeds (same data and recipe)")
    print("| seed | network r | readout: median Spearman vs Crippen | after the diagnostic bond re-booking |")
    print("|---|---|---|---|")
    weights = []
    for seed in range(args.seeds):
        n = atomwise if seed == 0 else logp_network(args, readout="atomwise", seed=seed)[0]
        maps = mpnn_atom_weights(n, pick, method="readout")
        moved, n_classes = _rebooked(mpnn_atom_weights(n, train, method="readout"), maps)
        weights.append(maps.weights)
        r = np.corrcoef(maps.prediction, true_y)[0, 1]
        print(f"| {seed} | {r:.3f} | {_median_spearman(maps.weights, _crippen_terms(maps.mols)):.3f} | "
              f"{_median_spearman(moved, _crippen_terms(maps.mols)):.3f} |")
    if args.seeds > 1:
        mean = [np.mean([w[i] for w in weights], 0) for i in range(len(pick))]
        pairs = [_median_spearman(weights[a], weights[b]) for a in range(args.seeds) for b in range(a + 1, args.seeds)]
        print(f"| ensemble of the {args.seeds} (mean terms, still exact) | - | "
              f"{_median_spearman(mean, _crippen_terms(mols)):.3f} | - |")
        print(f"\nseed against seed, median Spearman of their own splits: median {np.median(pairs):.3f}, "
              f"range {min(pairs):.3f}-{max(pairs):.3f} ({len(pairs)} pairs); bond classes re-booked: {n_classes}")


def bench_free_wilson(args):
    df = datasets.sulfonamides()
    smiles, y = list(df.smiles), df.pIC50.to_numpy()
    t = time.perf_counter()
    net = fit_mpnn(smiles, y, hidden=args.hidden, ffn_hidden=args.hidden, depth=3, aggregation="mean",
                   epochs=args.epochs, lr=1e-3, device=args.device)
    dt = time.perf_counter() - t
    fw = free_wilson(smiles, y, datasets.sulfonamide_scaffold())
    matched = [int(i) for i in fw.matched]
    print(f"\n## 2. Free-Wilson sulfonamides: {len(matched)} matched molecules, Free-Wilson r2 = {fw.r2:.3f}, "
          f"network trained in {dt:.0f} s")
    print("| method | substituents | Spearman | Pearson |")
    print("|---|---|---|---|")
    for method in [m for m in MPNN_METHODS if m != "readout"]:
        maps = mpnn_atom_weights(net, [smiles[i] for i in matched], method=method, steps=16)
        table = substituent_scores(fw, dict(zip(matched, maps.weights)))
        sel = table[(table["count"] >= 3) & table["atom_score"].notna() & (table["position"] != "R10")]
        rho = spearmanr(sel.contribution, sel.atom_score)[0]
        r = np.corrcoef(sel.contribution, sel.atom_score)[0, 1]
        print(f"| {method} | {len(sel)} | {rho:.3f} | {r:.3f} |")


def _small_molecules(sol, n=20):
    out = []
    for s in sol.smiles[sol.split == "test"]:
        m = Chem.MolFromSmiles(s)
        if 8 <= m.GetNumHeavyAtoms() <= 15 and m.GetRingInfo().NumRings() and any(
                a.GetSymbol() in ("N", "O") for a in m.GetAtoms()):
            out.append(s)
        if len(out) == n:
            break
    return out


def _exmol_best(smiles, net, budget, delta):
    import exmol

    rows = [0]

    def f(batch):
        rows[0] += len(batch)
        return mpnn_predict(net, list(batch))[:, 0]

    space = exmol.sample_space(smiles, f, batched=True, preset="medium", num_samples=max(budget - 1, 1), quiet=True)
    cfs = exmol.rcf_explain(space, delta=(None, delta), nmols=8)[1:]
    return [e.smiles for e in cfs], rows[0]


def bench_counterfactuals(args, net, sol):
    import importlib.util

    have_exmol = importlib.util.find_spec("exmol") is not None
    mols = _small_molecules(sol)
    filt = MoleculeFilters()
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    ours, theirs = [], []
    t = time.perf_counter()
    for s in mols:
        cf = counterfactuals(net, s, Drop(args.delta), n_samples=args.samples, max_mutations=2, top=8)
        y0 = cf.prediction
        ours.append({"found": len(cf), "best_sim": float(cf.table.similarity.iloc[0]) if len(cf) else np.nan,
                     "pass": len(cf), "shown": len(cf), "calls": cf.queries, "removed": cf.removed,
                     "chem": len(cf), "cross": int((cf.table.prediction <= y0 - args.delta + 1e-6).sum())})
        if have_exmol:
            ex, calls = _exmol_best(s, net, cf.queries, args.delta)
            ex_mols = [Chem.MolFromSmiles(x) for x in ex]
            ex_mols = [m for m in ex_mols if m is not None]
            keep = filt.apply(ex_mols, Chem.MolFromSmiles(s))[0] if ex_mols else np.zeros(0, bool)
            chem = (MoleculeFilters(skip=("similarity",)).apply(ex_mols, Chem.MolFromSmiles(s))[0] if ex_mols
                    else np.zeros(0, bool))
            cross = (mpnn_predict(net, ex_mols)[:, 0] <= y0 - args.delta + 1e-6) if ex_mols else np.zeros(0, bool)
            fp0 = gen.GetFingerprint(Chem.MolFromSmiles(s))
            sims = [DataStructs.TanimotoSimilarity(fp0, gen.GetFingerprint(m)) for m in ex_mols]
            theirs.append({"found": len(ex_mols), "best_sim": max(sims) if sims else np.nan, "pass": int(keep.sum()),
                           "chem": int(chem.sum()), "shown": len(ex_mols), "calls": calls, "cross": int(cross.sum())})
    dt = time.perf_counter() - t

    def summary(rows):
        shown = sum(r["shown"] for r in rows)
        return (sum(r["found"] > 0 for r in rows), np.nanmedian([r["best_sim"] for r in rows]),
                sum(r["pass"] for r in rows) / max(shown, 1), sum(r["chem"] for r in rows) / max(shown, 1),
                sum(r["cross"] for r in rows) / max(shown, 1), sum(r["calls"] for r in rows), shown)

    print(f"\n## 3. Counterfactuals of {len(mols)} molecules (8-15 heavy atoms), criterion: logP falls by >= "
          f"{args.delta:g} ({dt:.0f} s)")
    print("| tool | molecules with a counterfactual | median Tanimoto of the best | shown that pass all filters | "
          "shown that pass all but the similarity floor | shown that cross | model rows | counterfactuals shown |")
    print("|---|---|---|---|---|---|---|---|")
    for name, rows in (("probe (graph edits + filters)", ours), ("exmol (STONED medium, rcf_explain)", theirs)):
        if rows:
            f, sim, p, ch, c, calls, shown = summary(rows)
            print(f"| {name} | {f}/{len(mols)} | {sim:.3f} | {100 * p:.0f}% | {100 * ch:.0f}% | {100 * c:.0f}% | "
                  f"{calls} | {shown} |")
    if not have_exmol:
        print("exmol is not installed: only probe's column is shown")
    removed = {}
    for r in ours:
        for k, v in r["removed"].items():
            removed[k] = removed.get(k, 0) + v
    print("candidates removed by each filter (probe, all molecules):", removed)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default=None, help="e.g. cuda (default: CPU)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--depth", type=int, default=3, help="message-passing steps of the logP networks")
    p.add_argument("--seeds", type=int, default=5, help="seeds of the atom-wise logP network")
    p.add_argument("--samples", type=int, default=1000, help="candidates per counterfactual search")
    p.add_argument("--delta", type=float, default=0.5, help="counterfactual criterion: logP falls by this much")
    p.add_argument("--parts", default="crippen,freewilson,counterfactuals")
    args = p.parse_args()
    RDLogger.DisableLog("rdApp.*")
    torch.set_num_threads(1)
    parts = args.parts.split(",")
    net = sol = None
    if "crippen" in parts or "counterfactuals" in parts:
        net, dt, sol = logp_network(args)
        print(f"logP network: {sum(p.numel() for p in net.parameters())} parameters, trained in {dt:.0f} s")
    if "crippen" in parts:
        bench_crippen(args, net, sol)
    if "freewilson" in parts:
        bench_free_wilson(args)
    if "counterfactuals" in parts:
        bench_counterfactuals(args, net, sol)


if __name__ == "__main__":
    main()
