"""``probe dna``: train a small CNN on generated promoters (or load the user's model and FASTA) and report
logos, ISM maps, minimal edits and matched motifs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from probe.cli import Command
from probe.errors import ProbeError
from probe.progress import Steps, bar
from probe.tables import write_table

if TYPE_CHECKING:  # numpy and torch load when the command runs, not for ``probe dna --help``
    import torch

    from probe.loading import load_model

__all__ = ["COMMAND", "load_model"]


def __getattr__(name: str) -> object:
    if name == "load_model":  # re-exported from probe.loading, which imports torch
        from probe.loading import load_model

        return load_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, metavar="FILE|SPEC",
                   help="the model (default: train a CNN): a torch.export archive (.pt2); a state_dict "
                        "(.pt/.pth/.bin) with --factory; a whole pickled module such as a bpnet-lite model, "
                        "with --trust-pickle; a TorchScript file; or 'module:factory' / 'file.py:factory' "
                        "returning a torch.nn.Module")
    p.add_argument("--factory", default=None, metavar="MODULE:FUNCTION",
                   help="builds the module a state_dict's weights load into, e.g. mypkg.models:make_bpnet or "
                        "path/to/models.py:make_bpnet")
    p.add_argument("--factory-kwargs", default=None, metavar="JSON",
                   help='keyword arguments for the factory as a JSON object, e.g. \'{"n_filters": 64}\'')
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow unpickling a whole saved module (this runs code named by the file: only for "
                        "files you trust)")
    p.add_argument("--model-output", default=None, metavar="INDEX|KEY",
                   help="for a model returning a tuple or dict, the output to probe (e.g. 1: bpnet-lite's counts)")
    p.add_argument("--fasta", type=Path, default=None, help="sequences to probe (default: generated promoters)")
    p.add_argument("--pad", choices=["right", "left", "both"], default=None, help="pad unequal lengths with N")
    p.add_argument("--iupac", choices=["error", "fractional"], default="error", help="ambiguity letters")
    p.add_argument("--max-edits", type=int, default=8, help="largest edit set searched (default 8)")
    p.add_argument("--n", type=_count, default=None, metavar="N|all",
                   help="sequences to report on, or 'all' (default 12, quick 6)")
    p.add_argument("--motifs", default=None, metavar="SPEC",
                   help="motifs to name the seqlets by: 'demo' (the generated promoters' factors; the default "
                        "without --fasta), a JASPAR CORE taxonomic group such as 'vertebrates' (the default with "
                        "--fasta) or 'plants@JASPAR2024', a MEME file, or JASPAR ids 'MA0139.2,MA0079.5'; all but "
                        "'demo' are compared by TomTom, with p- and q-values")
    p.add_argument("--keep", type=float, default=0.9,
                   help="substitution smoothing: probability a base is kept, for the certified Hamming radii "
                        "(default 0.9)")
    p.add_argument("--seed", type=int, default=0)


def _count(text: str) -> int | None:
    """``--n``: a positive integer, or ``all`` (0: every sequence)."""
    if text.strip().lower() == "all":
        return 0
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {n}")
    return n


def _motif_spec(spec: str) -> object:
    """What ``--motifs`` names, as :func:`domains.dna.motif_db.motif_set` takes it."""
    if not Path(spec).exists() and ("," in spec or spec.upper().startswith("MA")):
        return [s.strip() for s in spec.split(",") if s.strip()]
    return spec


def _check_lengths(seqs: object, pad: str | None) -> None:
    """Unequal lengths without ``--pad``: the error names the records and the flag."""
    import numpy as np

    lengths = seqs.lengths
    if pad is None and len(lengths) and (lengths != lengths[0]).any():
        i = int(np.nonzero(lengths != lengths[0])[0][0])
        raise ProbeError(f"sequences have unequal lengths: {seqs.label(i)} has {lengths[i]} bases where "
                         f"{seqs.label(0)} has {lengths[0]}; pass --pad right, --pad left or --pad both to pad "
                         "with N")


def _user_model(args: argparse.Namespace, example: torch.Tensor) -> torch.nn.Module:
    """The model ``--model`` names (with ``--factory`` and friends), checked to return one tensor."""
    from probe.loading import check_single_output, load_model

    output = args.model_output
    if output is not None and output.lstrip("-").isdigit():
        output = int(output)
    model = load_model(args.model, factory=args.factory, factory_kwargs=args.factory_kwargs,
                       trust_pickle=args.trust_pickle, output=output)
    check_single_output(model, example[:1], source=f"--model {args.model!r}")
    return model


def _run(args: argparse.Namespace) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    import torch

    from probe import Misclassify
    from probe.style import save

    from . import datasets
    from .attribution import gradient_x_input
    from .edits import minimal_edits
    from .io import one_hot, read_fasta
    from .ism import saturation_mutagenesis
    from .models import fit, small_cnn
    from .motifs import match_motifs, seqlets
    from .plots import plot_window
    from .tables import sequence_table

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n_show = (6 if args.quick else 12) if args.n is None else args.n  # 0: all
    summary: dict = {}
    sites = None
    if args.factory and not args.model:
        raise ProbeError(f"--factory {args.factory!r} needs --model, the state_dict file its weights come from")
    step = Steps("dna", 6)
    step("loading the model and sequences" if args.model else "training a CNN on generated promoters")
    if args.fasta is None:
        n, epochs = (900, 6) if args.quick else (3000, 15)
        data = datasets.promoters(n, 60, seed=args.seed, sharpen=3)
        X, y = data.X, data.y
        split = int(0.8 * n)
        model = _user_model(args, X) if args.model else fit(small_cnn(3, channels=16, seed=args.seed),
                                                             X[:split], y[:split], epochs=epochs, seed=args.seed)
        test = data.subset(np.arange(split, n))
        X = test.X
        with torch.no_grad():
            pred = model(X).argmax(1)
        acc = float((pred == test.y).float().mean())
        eligible = np.nonzero(((pred == test.y).numpy()) & (test.labels < 2))[0]
        total = len(eligible)
        keep = eligible[:n_show or None]
        X, labels, names = X[keep], test.y[keep], [test.sequences.names[i] for i in keep]
        sites = test.sites
        site_mask = test.site_mask()[keep]
        reference = (data.X, data.y)
        summary.update(source="generated promoters (JASPAR sites)", test_accuracy=round(acc, 4))
        criterion = Misclassify(labels)
    else:
        if not args.model:
            raise ProbeError("--fasta needs --model (a model file, or module:factory; see --help)")
        seqs = read_fasta(args.fasta)
        _check_lengths(seqs, args.pad)
        total = len(seqs)
        X = one_hot(seqs, pad=args.pad, iupac=args.iupac)[:n_show or None]
        model = _user_model(args, X)
        names = list(seqs.names[:n_show or None])
        keep = np.arange(len(X))
        criterion = Misclassify()
        reference = None
        summary.update(source=str(args.fasta))
    step(f"saturation mutagenesis of {len(X)} sequences")
    ism = saturation_mutagenesis(model, X)
    if ism.dim() == 4:
        pred = model(X).argmax(1) if isinstance(model, torch.nn.Module) else None
        ism = ism.gather(3, pred[:, None, None, None].expand(-1, 4, X.shape[2], 1))[..., 0]
    step(f"gradient x input and minimal edits (up to {args.max_edits})")
    attr = gradient_x_input(model, X)
    edits = minimal_edits(model, X, criterion, max_edits=args.max_edits)
    step(f"seqlets and motifs ({args.motifs or ('demo' if args.fasta is None else 'vertebrates')})")
    found = seqlets(attr, max_seqlets=2)
    spec = args.motifs or ("demo" if args.fasta is None else "vertebrates")
    if spec == "demo":
        matched = match_motifs(X, found)
        motif_cols = ["name", "start", "end", "motif", "matrix_id", "position", "strand", "score"]
    else:
        from .tomtom import annotate_seqlets

        matched = annotate_seqlets(X, found, _motif_spec(spec), top_k=3)
        motif_cols = ["name", "start", "end", "rank", "motif", "matrix_id", "family", "p_value", "q_value", "strand"]
    matched.insert(1, "name", [names[i] for i in matched.sequence])
    step("certified Hamming radii")
    ham = _hamming(model, X, labels if reference is not None else None, reference, edits, args)
    ham["name"] = names
    step("tables and figures")
    write_table(out, "hamming", ham)
    table = edits.to_frame()
    table["name"] = [names[i] for i in table.sequence]  # the record names, as in summary.json
    write_table(out, "edits", table)
    write_table(out, "motifs", matched)
    if ism.dim() == 3:
        write_table(out, "sequences", sequence_table(names, edits, ism, X, ham,
                                                     labels=labels if reference is not None else None))
    reported = f"{len(X)} of {total} sequences" + ("" if len(X) == total else " (--n all reports every one)")
    from tqdm.auto import tqdm

    tqdm.write(f"[probe dna] reporting on {reported}", file=sys.stderr)  # above a progress bar, if one runs
    for k in bar(range(min(len(X), 6)), desc="[probe dna] figures", unit="figure"):
        own = None if sites is None else sites[sites.sequence == keep[k]]
        fig = plot_window(attr.values[k], ism[k], X[k], edits=edits.edits[k], sites=own,
                          title=f"{names[k]}: gradient x input (top), in-silico mutagenesis (bottom)",
                          attribution_label="gradient x input", ism_label="change of predicted logit",
                          unit="logit")
        save(fig, out / f"{names[k]}.png")
    summary.update(
        sequences=len(X), sequences_total=total, reported=reported, motifs_from=spec,
        edits_success_rate=round(float(edits.success.float().mean()), 4),
        median_edits=float(np.median(edits.n_edits[edits.success].cpu().numpy())) if edits.success.any() else None,
        edits={names[i]: [f"{p}{r}>{a}" for p, r, a in edits.edits[i]] for i in range(len(X))},
        motifs=matched[motif_cols].astype(object).where(matched[motif_cols].notna(), None).to_dict(orient="records"),
    )
    summary["hamming"] = _hamming_summary(ham, args.keep)
    if sites is not None:
        in_site = [bool(site_mask[i][p]) for i in range(len(X)) for p, _, _ in edits.edits[i]]
        planted = sites.groupby("sequence").factor.apply(set)
        hits = [m in planted.get(keep[s], set()) for s, m in zip(matched.sequence, matched.motif)]
        summary.update(fraction_edits_in_sites=round(float(np.mean(in_site)), 4) if in_site else None,
                       fraction_motifs_planted=round(float(np.mean(hits)), 4) if hits else None)
    step.finish()
    return summary


def _hamming(model: object, X: torch.Tensor, labels: object, reference: tuple | None, edits: object,
             args: argparse.Namespace) -> object:
    """Certified Hamming radii beside the edits found; smoothing alone for a model bound propagation can't read."""
    import warnings

    from .hamming import hamming_report

    ref, ref_y = reference if reference is not None else (None, None)
    options = dict(labels=labels, reference=ref, reference_labels=ref_y, keep=args.keep,
                   n=2_000 if args.quick else 10_000, edits=edits, seed=args.seed)
    try:
        return hamming_report(model, X, methods=("positional",), **options)
    except ProbeError as err:
        warnings.warn(f"no deterministic Hamming certificate for this model ({err}); smoothing only", stacklevel=2)
        return hamming_report(model, X, methods=(), **options)


def _hamming_summary(ham: object, keep: float) -> dict:
    import numpy as np

    def median(col: str) -> float | None:
        if col not in ham or ham[col].isna().all():
            return None
        return float(np.nanmedian(ham[col].to_numpy(dtype=float)))

    return {"keep": keep, "median_smoothed_radius": median("smoothed_radius"),
            "median_certified_radius": median("certified_positional"),
            "fraction_exact_radius_at_least_1": round(float((ham["exact_radius"] >= 1).mean()), 4),
            "median_edits_found": median("edits_found"), "median_ceiling": median("ceiling"),
            "radii": {str(r["name"]): {"smoothed": int(r["smoothed_radius"]),
                                       "certified": int(r["certified_positional"]) if "certified_positional" in r
                                       else None,
                                       "edits_found": None if np.isnan(r["edits_found"]) else int(r["edits_found"])}
                      for _, r in ham.iterrows()}}


COMMAND = Command(name="dna", help="DNA models: ISM, minimal edits, attributions, JASPAR motifs, logos",
                  add_arguments=_add_arguments, run=_run)
