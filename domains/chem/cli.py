"""``probe chem``: which features and atoms a predicted affinity rests on.

With no arguments: trains a fingerprint + descriptor model on RDKit's sulfonamide series
(pIC50) and writes atom maps of the most potent compounds (side by side with a random
forest's), the descriptor shifts that cost a tenfold loss of potency, a counterfactual
grid, the Free-Wilson check and ``summary.json``. With ``--model`` and
``--smiles``/``--sdf`` it probes the user's own model: a feature model saved with
:func:`save_model`, or a chemprop network (a ``.ckpt`` checkpoint or a ``.pt`` model file), whose
atom maps are integrated gradients on its graph inputs.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

from probe.cli import Command
from probe.errors import ProbeError
from probe.progress import Steps, bar
from probe.tables import write_table

if TYPE_CHECKING:  # numpy, torch and RDKit load when the command runs, not for ``probe chem --help``
    import numpy as np

__all__ = ["COMMAND", "save_model", "load_model"]


def save_model(path: str | Path, model: object, featurizer: object) -> Path:
    """Store a model with the featuriser it was trained with (``probe chem --model PATH`` reads it)."""
    path = Path(path)
    with open(path, "wb") as fh:
        pickle.dump({"model": model, "featurizer": featurizer}, fh)
    return path


def load_model(path: str | Path) -> tuple[object, object | None]:
    """``(model, featurizer or None)`` from a file written by :func:`save_model`, ``torch.save`` or pickle.

    Only load files you trust: pickles can run code.
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise ProbeError(f"model file {str(path)!r} does not exist")
    try:
        with open(path, "rb") as fh:
            obj = pickle.load(fh)
    except Exception:  # torch.save files with tensors stored out of line
        obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, dict) and "model" in obj:
        return obj["model"], obj.get("featurizer")
    return obj, None


def _is_chemprop_file(path: Path) -> bool:
    """A Lightning checkpoint or a chemprop model file (``chemprop.models.save_model``)."""
    import torch

    if not path.exists():
        return False
    if path.suffix == ".ckpt":
        return True
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:
        return False
    return isinstance(obj, dict) and {"hyper_parameters", "state_dict"} <= set(obj)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, help="model file (from domains.chem.cli.save_model, torch.save or pickle), "
                   "or a chemprop network (.ckpt checkpoint or .pt model file)")
    p.add_argument("--smiles", nargs="*", help="SMILES to probe (or a .smi/.txt file, one per line)")
    p.add_argument("--sdf", type=Path, help="SDF file of molecules to probe")
    p.add_argument("--kind", default="morgan", help="features a bare --model expects: morgan (default), "
                   "descriptors or morgan+descriptors (needs the featuriser saved with the model)")
    p.add_argument("--n-bits", type=int, default=2048, help="Morgan bits of a bare --model (default 2048)")
    p.add_argument("--radius", type=int, default=2, help="Morgan radius of a bare --model (default 2)")
    p.add_argument("--threshold", type=float, default=None,
                   help="criterion: prediction below this value (default: a drop by --delta)")
    p.add_argument("--delta", type=float, default=1.0, help="criterion: prediction falls by this much (default 1)")
    p.add_argument("--top", type=int, default=3, help="molecules to report (default 3)")
    p.add_argument("--samples", type=int, default=2000, help="STONED samples per counterfactual search")


def _criterion(args):
    from probe.criteria import Threshold

    from .shifts import Drop

    return Threshold(args.threshold) if args.threshold is not None else Drop(args.delta)


def _user_molecules(args):
    from .io import as_molecules, read_sdf

    if args.sdf:
        return read_sdf(args.sdf)
    items = list(args.smiles or [])
    if len(items) == 1 and Path(items[0]).suffix in (".smi", ".txt") and Path(items[0]).exists():
        items = [ln.split()[0] for ln in Path(items[0]).read_text().splitlines() if ln.strip()]
    return as_molecules(items)


def _atom_figure(rows: list, out: Path, name: str, unit: str | None = None) -> str:
    """Grid of similarity maps with colour scales: one row per model, one column per molecule."""
    import matplotlib.pyplot as plt

    from probe.style import save, style

    ncol = len(rows[0][1])
    with style():
        fig, axes = plt.subplots(len(rows), ncol, figsize=(3.9 * ncol, 3.6 * len(rows) + 0.4), squeeze=False)
        for r, (label, maps) in enumerate(rows):
            for c in range(ncol):
                maps.plot(c, ax=axes[r][c], unit=unit, label=label)
        fig.suptitle("atom weights: prediction minus the prediction without the atom (red raises it, blue lowers it)")
    return save(fig, out / name).name


def _probe(model, feats, idx, args, out: Path, summary: dict, label: str = "model", unit: str | None = None,
           step: Steps | None = None) -> None:
    """Atom maps, descriptor shifts and counterfactuals of molecules ``idx``."""
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from probe.style import save, style

    from .atoms import atom_weights
    from .shifts import descriptor_shifts
    from .tables import atom_weight_table, shift_table

    own = step is None
    step = step or Steps("chem", 4)
    crit = _criterion(args)
    step(f"atom maps of {len(idx)} molecules")
    maps = atom_weights(model, feats, idx)
    summary["atom_maps"] = _atom_figure([(label, maps)], out, "atom_maps.png", unit)
    write_table(out, "atom_weights", atom_weight_table(maps, unit))
    summary["molecules"] = [{"name": maps.names[k], "smiles": feats.molecules.smiles[i],
                             "prediction": float(maps.prediction[k]),
                             "top_atoms": [int(a) for a in np.argsort(-np.abs(maps.weights[k]))[:3]]}
                            for k, i in enumerate(idx)]
    ds = feats.featurizer.descriptor_slice()
    differentiable = isinstance(model, torch.nn.Module)
    if ds is None:
        summary["descriptor_shifts"] = "skipped: the model reads no descriptors (fingerprint bits only)"
    elif not differentiable:
        summary["descriptor_shifts"] = (f"skipped: descriptor shifts need a differentiable torch model, and a "
                                        f"{type(model).__name__} gives forward calls only")
    else:
        bits = [n for n in feats.names if n.startswith("morgan_")]
        step("descriptor shifts")
        try:
            sh = descriptor_shifts(model, feats, idx, crit, immutable=bits, bounds="data", margin=0.1, pool="edits",
                                   pool_size=30 if args.quick else 300)
        except ProbeError as err:
            summary["descriptor_shifts"] = f"not computed: {err}"
        else:
            write_table(out, "descriptor_shifts", shift_table(sh, maps.names, unit))
            with style():
                fig, axes = plt.subplots(1, len(idx), figsize=(5.5 * len(idx), 4.0), squeeze=False)
                for k in range(len(idx)):
                    sh.plot(k, ax=axes[0][k])
                    axes[0][k].set_title(f"{maps.names[k]}: predicted {sh.prediction[k]:.2f} -> "
                                         f"{sh.new_prediction[k]:.2f}{f' {unit}' if unit else ''}")
                fig.suptitle(f"smallest descriptor shift to {_goal(args, unit)} (fingerprint bits held fixed)")
            save(fig, out / "descriptor_shifts.png")
            summary["descriptor_shifts"] = {
                maps.names[k]: {"success": bool(sh.success[k]), "distance_std": float(sh.distance[k]),
                                "moves": {r.feature: round(float(r.change), 4)
                                          for r in sh.for_molecule(k).head(5).itertuples()} if sh.success[k]
                                else "none: no change within the bounds satisfies the criterion",
                                "inconsistent": sh.violations[k],
                                "nearest_real": _finite(sh.neighbours.iloc[k][[
                                    "neighbour", "neighbour_distance_std", "neighbour_prediction",
                                    "neighbour_success", "crossing", "crossing_prediction"]].to_dict())}
                for k in range(len(idx))}
            write_table(out, "descriptor_shift_neighbours", sh.neighbours)
    if differentiable and any(n.startswith("morgan_") for n in feats.names):
        step("certified fingerprint bit flips")
        summary["bit_flips"] = _bit_flips(model, feats, idx, args, out)
    step("counterfactuals (SELFIES edits)")
    summary["counterfactuals"] = _counterfactuals(model, feats.molecules, idx, maps.names, args, out, crit,
                                                  feats.featurizer, unit)
    if own:
        step.finish()


def _goal(args: argparse.Namespace, unit: str | None) -> str:
    """The criterion in words, e.g. "lower the prediction by 1 pIC50"."""
    u = f" {unit}" if unit else ""
    if args.threshold is not None:
        return f"bring the prediction below {args.threshold:g}{u}"
    return f"lower the prediction by {args.delta:g}{u}"


def _finite(d: dict) -> dict:
    """NaN and inf (nothing found) as null, so that summary.json stays strict JSON."""
    import numpy as np

    return {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in d.items()}


def _counterfactuals(model, mols, idx, names, args, out: Path, crit, featurizer, unit: str | None = None) -> dict:
    from probe.style import save

    from .counterfactuals import counterfactuals

    cfs: dict = {}
    chosen = idx[:1] if args.quick else idx
    for k, i in bar(enumerate(chosen), desc="[probe chem] counterfactuals", total=len(chosen), unit="molecule"):
        try:
            cf = counterfactuals(model, mols.mols[i], crit, featurizer=featurizer, n_samples=args.samples, top=8)
        except ProbeError as err:
            cfs[names[k]] = f"not searched: {err}"
            continue
        write_table(out, f"counterfactuals_{k}", cf.table)
        if len(cf):
            save(cf.figure(top=8, unit=unit, title=f"{names[k]}: nearest molecules that {_goal(args, unit)}"),
                 out / f"counterfactuals_{k}.png")
        cfs[names[k]] = {"candidates": cf.candidates, "removed_by_filters": cf.removed, "found": len(cf),
                         "best": cf.table.iloc[0][["smiles", "similarity", "prediction"]].to_dict() if len(cf)
                         else None}
    return cfs


def _probe_mpnn(net, mols, idx, args, out: Path, summary: dict) -> None:
    """Atom and bond maps and counterfactuals of a chemprop network; descriptor shifts do not apply."""
    import numpy as np

    from .mpnn import mpnn_atom_weights
    from .tables import atom_weight_table

    maps = mpnn_atom_weights(net, [mols.mols[i] for i in idx], method="integrated_gradients")
    maps = type(maps)(maps.weights, maps.prediction, maps.mols, tuple(mols.names[i] for i in idx), maps.method,
                      maps.queries, maps.bond_weights)
    summary["atom_maps"] = _atom_figure([("chemprop", maps)], out, "atom_maps.png")
    write_table(out, "atom_weights", atom_weight_table(maps))
    summary["molecules"] = [{"name": maps.names[k], "smiles": mols.smiles[i], "prediction": float(maps.prediction[k]),
                             "top_atoms": [int(a) for a in np.argsort(-np.abs(maps.weights[k]))[:3]],
                             "top_bonds": [int(b) for b in np.argsort(-np.abs(maps.bond_weights[k]))[:3]]}
                            for k, i in enumerate(idx)]
    summary["descriptor_shifts"] = "skipped: a chemprop network reads molecular graphs, not descriptors"
    summary["counterfactuals"] = _counterfactuals(net, mols, idx, maps.names, args, out, _criterion(args), None)


def _bit_flips(model, feats, idx, args, out: Path) -> dict | str:
    """Certified fingerprint bit flips under which each molecule keeps the criterion's side (descriptors fixed)."""
    from .bitflips import certify_bit_flips

    try:
        flips = certify_bit_flips(model, feats, idx, threshold=args.threshold, delta=args.delta,
                                  n=1_000 if args.quick else 10_000)
    except ProbeError as err:
        return f"not certified: {err}"
    write_table(out, "bit_flips", flips)
    return {r.name: {"certified_flips": int(r.certified_flips), "smoothed_flips": int(r.smoothed_flips),
                     "set_bits": int(r.set_bits)} for r in flips.itertuples()}


def _rdkit_check(rf, fp, i: int, weights: np.ndarray) -> float:
    """Largest difference between our atom weights and RDKit's ``GetAtomicWeightsForModel`` for molecule ``i``."""
    import numpy as np
    from rdkit import DataStructs
    from rdkit.Chem.Draw import SimilarityMaps

    from .io import quiet_rdkit

    n_bits = fp.featurizer.n_bits

    def predict(v):
        a = np.zeros((n_bits,))
        DataStructs.ConvertToNumpyArray(v, a)
        return float(rf.predict(a[None])[0])

    def fingerprint(m, atom):
        return SimilarityMaps.GetMorganFingerprint(m, atom, radius=fp.featurizer.radius, fpType="bv", nBits=n_bits)

    with quiet_rdkit():
        ref = SimilarityMaps.GetAtomicWeightsForModel(fp.molecules[i], fingerprint, predict)
    return float(np.abs(np.asarray(ref) - weights).max())


def _default(args, out: Path) -> dict:
    import numpy as np
    import torch
    from scipy.stats import spearmanr
    from sklearn.ensemble import RandomForestRegressor

    from . import datasets
    from .atoms import atom_weights
    from .featurize import featurize
    from .freewilson import free_wilson, substituent_scores
    from .models import fit_mlp

    step = Steps("chem", 7)
    step("training the fingerprint + descriptor MLP")
    df = datasets.sulfonamides()
    n_bits = 256 if args.quick else 2048
    if args.quick:
        args.samples = min(args.samples, 150)
    feats = featurize(df.set_index("name")["smiles"], kind=("morgan", "descriptors"), n_bits=n_bits)
    y = df["pIC50"].to_numpy()
    rng = np.random.default_rng(0)
    test = rng.random(len(df)) < 0.2
    tr = np.flatnonzero(~test)
    model = fit_mlp(feats.X[tr], y[tr], epochs=15 if args.quick else 150, hidden=32 if args.quick else 128)
    with torch.no_grad():
        pred = model(feats.X)[:, 0].numpy()
    r2 = 1 - ((pred[test] - y[test]) ** 2).sum() / ((y[test] - y[test].mean()) ** 2).sum()
    save_model(out / "model.pkl", model, feats.featurizer)
    summary: dict = {"data": "RDKit Contrib/FreeWilson CHEMBL2321810 sulfonamides", "n_molecules": len(df),
                     "features": len(feats.names), "test_r2": float(r2),
                     "test_spearman": float(spearmanr(pred[test], y[test])[0])}
    idx = [int(i) for i in np.argsort(-y)[: args.top]]
    _probe(model, feats, idx, args, out, summary, label="MLP", unit="pIC50", step=step)

    # a random forest on the fingerprint alone, mapped with forward calls only, next to the network
    step("random forest atom maps and RDKit's similarity-map check")
    fp = featurize(df.set_index("name")["smiles"], kind="morgan", n_bits=n_bits)
    rf = RandomForestRegressor(n_estimators=30 if args.quick else 200, random_state=0, n_jobs=1)
    rf.fit(fp.X[tr].numpy(), y[tr])
    mlp_maps = atom_weights(model, feats, idx)
    rf_maps = atom_weights(rf, fp, idx)
    summary["atom_maps_mlp_vs_rf"] = _atom_figure([("MLP", mlp_maps), ("RF", rf_maps)], out, "atom_maps_mlp_vs_rf.png",
                                                  "pIC50")
    summary["mlp_rf_atom_spearman"] = [float(spearmanr(a, b)[0]) for a, b in zip(mlp_maps.weights, rf_maps.weights)]
    summary["rdkit_similarity_map_max_abs_diff"] = _rdkit_check(rf, fp, idx[0], rf_maps.weights[0])

    # ground truth: Free-Wilson substituent contributions against summed atom weights
    step("Free-Wilson substituent contributions")
    fw = free_wilson(feats.molecules, y, datasets.sulfonamide_scaffold())
    matched = [int(i) for i in fw.matched]
    fw_rows = {}
    for label, m, f in (("MLP", model, feats), ("RF", rf, fp)):
        maps = atom_weights(m, f, matched)
        table = substituent_scores(fw, dict(zip(matched, maps.weights)))
        sel = table[(table["count"] >= 3) & table["atom_score"].notna() & (table["position"] != "R10")]
        fw_rows[label] = {"substituents": len(sel), "spearman": float(spearmanr(sel.contribution, sel.atom_score)[0])}
        write_table(out, f"freewilson_{label.lower()}", table)
    summary["free_wilson"] = {"r2": fw.r2, "matched": len(matched), **fw_rows}
    step.finish()
    return summary


def _run(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.model is None:
        if args.smiles or args.sdf:
            raise ProbeError("--smiles/--sdf probe a model given with --model")
        return _default(args, out)
    import numpy as np

    from .featurize import Featurizer

    mols = _user_molecules(args)
    if args.quick:
        args.samples = min(args.samples, 150)
    if _is_chemprop_file(args.model):
        from .mpnn import load_mpnn

        summary = {"model": str(args.model), "kind": "chemprop MPNN", "n_molecules": len(mols)}
        _probe_mpnn(load_mpnn(args.model), mols, list(range(min(len(mols), args.top))), args, out, summary)
        return summary
    model, featurizer = load_model(args.model)
    if featurizer is None:
        kind = tuple(args.kind.split("+"))
        if "descriptors" in kind:
            raise ProbeError("a model on descriptors needs the featuriser it was trained with; "
                             "save it with domains.chem.cli.save_model(path, model, features.featurizer)")
        featurizer = Featurizer(kind, radius=args.radius, n_bits=args.n_bits,
                                mean=np.zeros(args.n_bits), scale=np.ones(args.n_bits))
    feats = featurizer(mols)
    summary: dict = {"model": str(args.model), "n_molecules": len(mols)}
    _probe(model, feats, list(range(min(len(mols), args.top))), args, out, summary)
    return summary


COMMAND = Command(name="chem", help="which molecular features and atoms a predicted property rests on",
                  add_arguments=_add_arguments, run=_run)
