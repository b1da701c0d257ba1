r"""Variants of a VCF against the reference genome: their windows and their effect on a model's outputs.

A variant at 1-based ``POS`` with alleles ``REF`` and ``ALT`` is scored in a window of ``width`` bases
whose position ``width // 2`` is the variant's first base ``p = POS - 1``: the reference window is
``genome[p - width // 2, p - width // 2 + width)``; the alternative window is the same left flank, then
``ALT``, then the genome after ``REF``, cut or extended on the right to ``width`` bases. A deletion thus
pulls in the bases downstream and an insertion pushes the right end out, so both windows keep the
variant at the same place (the layout of Enformer's and Kipoi's variant-effect scoring; Avsec et al.,
Nat. Methods 18:1196, 2021). The effect is, per output ``k``,

.. math:: \Delta_k = f_k(x_{alt}) - f_k(x_{ref}),

with the strand average :math:`\tfrac12 (f(x) + f(\mathrm{rc}(x)))` of each window when ``rc=True``.
``REF`` is checked against the genome before anything runs; a multi-allelic site is one row per
alternative allele; symbolic alleles (``<DEL>``, ``*``, breakends, ``.``) have no sequence and are
refused (or skipped with a warning, ``symbolic="skip"``).

VCF files are read with cyvcf2 (Pedersen & Quinlan, Bioinformatics 33:1867, 2017), plain or
bgzip-compressed.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from probe import ProbeError
from probe.devices import model_hygiene

from .genome import Genome, encode
from .regions import ModelRunner, _local_device
from .store import WindowStore, fingerprint, run_chunks

__all__ = ["read_vcf", "check_ref", "variant_windows", "variant_effects", "VARIANT_COLUMNS"]

#: The columns that key a variant.
VARIANT_COLUMNS = ("CHROM", "POS", "ID", "REF", "ALT")
_BASES = set("ACGTN")


def _label(v: object) -> str:
    vid = f" {v.ID}" if getattr(v, "ID", ".") not in (".", "", None) else ""
    return f"variant {v.CHROM}:{v.POS}{vid} {v.REF}>{v.ALT}"


def read_vcf(path: str | Path, *, symbolic: str = "error") -> pd.DataFrame:
    """The variants of a VCF (plain or bgzip), one row per alternative allele.

    Parameters
    ----------
    path : str or Path
    symbolic : {"error", "skip"}, default "error"
        Alleles with no sequence (``<DEL>``, ``<INS>``, ``*``, breakends, a missing ``ALT``): raise
        ``ProbeError`` naming the variant, or leave them out with a warning that counts them.

    Returns
    -------
    pandas.DataFrame
        ``CHROM``, ``POS`` (1-based), ``ID`` (``.`` where missing), ``REF``, ``ALT`` (upper case), ``allele``
        (1 for the first ALT of a site, 2 for the second, ...).
    """
    import cyvcf2

    path = Path(path)
    if symbolic not in ("error", "skip"):
        raise ProbeError(f"symbolic must be 'error' or 'skip', got {symbolic!r}")
    if not path.exists():
        raise ProbeError(f"VCF file {str(path)!r} does not exist")
    try:
        vcf = cyvcf2.VCF(str(path), lazy=True, threads=1)
    except Exception as err:  # cyvcf2 raises bare Exceptions on unreadable headers
        raise ProbeError(f"VCF file {str(path)!r} could not be read: {err}") from None
    rows, skipped = [], []
    for v in vcf:
        ref = v.REF.upper()
        alts = v.ALT or ["."]
        for k, alt in enumerate(alts, 1):
            alt = alt.upper()
            row = (v.CHROM, int(v.POS), v.ID or ".", ref, alt, k)
            if not (set(ref) <= _BASES and set(alt) <= _BASES and alt):
                if symbolic == "error":
                    raise ProbeError(f"{_label(pd.Series(dict(zip(VARIANT_COLUMNS, row))))} in {path.name} has an "
                                     "allele without a sequence (symbolic, '*', a breakend or missing); "
                                     "pass symbolic='skip' to leave such alleles out")
                skipped.append(row)
                continue
            rows.append(row)
    vcf.close()
    if skipped:
        warnings.warn(f"read_vcf left out {len(skipped)} allele(s) of {path.name} without a sequence, the first "
                      f"at {skipped[0][0]}:{skipped[0][1]} ({skipped[0][3]}>{skipped[0][4]})", stacklevel=2)
    return pd.DataFrame(rows, columns=[*VARIANT_COLUMNS, "allele"])


def _check_variants(variants: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(variants, pd.DataFrame):
        raise ProbeError(f"variants must be a DataFrame with {list(VARIANT_COLUMNS)}; got {type(variants).__name__}")
    missing = [c for c in VARIANT_COLUMNS if c not in variants]
    if missing:
        raise ProbeError(f"variants lack the column(s) {missing}; read them with read_vcf")
    v = variants.reset_index(drop=True).copy()
    v["REF"] = v.REF.astype(str).str.upper()
    v["ALT"] = v.ALT.astype(str).str.upper()
    v["POS"] = v.POS.astype(np.int64)
    for r in v.itertuples():
        if not (set(r.REF) <= _BASES and set(r.ALT) <= _BASES and r.REF and r.ALT):
            raise ProbeError(f"{_label(r)} has an allele that is not a DNA sequence")
    return v


def check_ref(genome: Genome, variants: pd.DataFrame) -> None:
    """Raise ``ProbeError`` naming the first variant whose ``REF`` differs from the genome at ``POS``
    (or whose chromosome or position the genome lacks)."""
    for r in variants.itertuples():
        n = genome.length(r.CHROM)
        p = int(r.POS) - 1
        if not (0 <= p and p + len(r.REF) <= n):
            raise ProbeError(f"{_label(r)} lies outside {r.CHROM} ({n} bases) of genome {genome.path.name}")
        seen = genome.fetch(r.CHROM, p, p + len(r.REF))
        if seen != r.REF:
            raise ProbeError(f"{_label(r)}: REF {r.REF!r} does not match genome {genome.path.name}, which has "
                             f"{seen!r} at {r.CHROM}:{r.POS} (another assembly, or 0-based positions?)")


def _window_pair(genome: Genome, r: object, width: int) -> tuple[str, str]:
    p = int(r.POS) - 1
    start = p - width // 2
    ref = genome.fetch(r.CHROM, start, start + width)
    left = ref[: width // 2]
    after = p + len(r.REF)
    need = width - len(left) - len(r.ALT)
    right = genome.fetch(r.CHROM, after, after + max(need, 0))
    return ref, (left + r.ALT + right)[:width]


def variant_windows(genome: Genome | str | Path, variants: pd.DataFrame, width: int, *, check: bool = True,
                    dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot reference and alternative windows (N, 4, width) of the variants, ``REF`` checked first.

    The variant's first base sits at position ``width // 2`` of both windows (see the module notes for
    indels). ``check=False`` skips the ``REF`` check (for callers that made it already).
    """
    genome = genome if isinstance(genome, Genome) else Genome(genome)
    v = _check_variants(variants)
    if int(width) < 1:
        raise ProbeError(f"width must be a positive number of bases, got {width}")
    if check:
        check_ref(genome, v)
    pairs = [_window_pair(genome, r, int(width)) for r in v.itertuples()]
    labels = lambda i: _label(v.iloc[i])  # noqa: E731
    return (encode([a for a, _ in pairs], int(width), iupac=genome.iupac, labels=labels, dtype=dtype),
            encode([b for _, b in pairs], int(width), iupac=genome.iupac, labels=labels, dtype=dtype))


class _VariantTask:
    def __init__(self, runner: ModelRunner, genome: Genome, variants: pd.DataFrame, width: int):
        self.runner, self.genome, self.variants, self.width = runner, genome, variants, width

    def __call__(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        ref, alt, bs = [], [], self.runner.batch_size
        for b in range(lo, hi, bs):  # one batch of windows is encoded at a time, not the whole chunk
            v = self.variants.iloc[b:min(hi, b + bs)]
            xr, xa = variant_windows(self.genome, v, self.width, check=False)
            labels = lambda i, v=v: _label(v.iloc[i])  # noqa: E731
            ref.append(self.runner.predict(xr, labels))
            alt.append(self.runner.predict(xa, labels))
        return {"ref": np.concatenate(ref), "alt": np.concatenate(alt)}


def variant_effects(model: object, genome: Genome | str | Path, variants: pd.DataFrame | str | Path, *, width: int,
                    rc: bool = False, batch_size: int = 256, chunk_size: int = 8192, store: str | Path | None = None,
                    client: object = None, device: str | torch.device | None = None,
                    output: int | str | None = None, reduce: object = None, progress: bool | None = None,
                    overwrite: bool = False, output_names: list[str] | None = None) -> pd.DataFrame:
    r"""Predictions on the reference and alternative windows of each variant, and their difference.

    Parameters
    ----------
    model : torch.nn.Module or callable
        Maps (B, 4, width) to (B, K) (or what ``output``/``reduce`` turn into that).
    genome : Genome or path
        The reference the VCF was called against.
    variants : pandas.DataFrame or path
        ``CHROM``, ``POS``, ``ID``, ``REF``, ``ALT`` (:func:`read_vcf`), or a VCF path.
    width : int
        Bases per window (the model's input length).
    rc : bool, default False
        Average each window's outputs over both strands before the difference.
    batch_size : int, default 256
        Windows per forward pass.
    chunk_size : int, default 8192
        Variants per chunk (memory holds one chunk per worker thread).
    store : str or Path, optional
        Zarr directory for the chunks (arrays ``ref`` and ``alt``, (N, K)); a killed job resumes there.
    client : dask.distributed.Client, optional
        Run the chunks on a Dask cluster; the result equals one process's.
    device : str or torch.device, optional
        Default: the model's device, else the CPU.
    output, reduce : as in :func:`~domains.dna.saturation_mutagenesis`.
    progress : bool or None, default None
        Progress bar with variants per second (None: only on a terminal).
    overwrite : bool, default False
        Replace a store holding another job.
    output_names : list of str, optional
        Names of the K outputs in the column names (default ``0 .. K-1``).

    Returns
    -------
    pandas.DataFrame
        ``CHROM``, ``POS``, ``ID``, ``REF``, ``ALT`` (and the input's other columns), then per output ``k``:
        ``ref_k``, ``alt_k`` and ``delta_k = alt_k - ref_k``.

    Raises
    ------
    ProbeError
        A ``REF`` that differs from the genome, an unknown chromosome or a position outside it (naming the
        variant), symbolic alleles, a model that fails on a batch (naming its first variant).
    """
    genome = genome if isinstance(genome, Genome) else Genome(genome)
    v = read_vcf(variants) if isinstance(variants, (str, Path)) else _check_variants(variants)
    if len(v) == 0:
        raise ProbeError("no variants to score")
    if int(batch_size) < 1:
        raise ProbeError(f"batch_size must be a positive integer, got {batch_size}")
    check_ref(genome, v)  # every REF, before any model call
    runner = ModelRunner(model, device=device, batch_size=batch_size, rc=rc, output=output, reduce=reduce,
                         private=client is not None)
    keys = v[list(VARIANT_COLUMNS)]
    fp = fingerprint(keys, model, job="variant_effects", width=int(width), rc=rc, output=output,
                     reduce=repr(reduce), genome=str(genome.path))
    with model_hygiene(model, _local_device(device, model, client)):
        res = run_chunks(_VariantTask(runner, genome, keys, int(width)), keys, chunk_size=chunk_size, store=store,
                         fingerprint=fp, client=client, progress=progress, desc="variants", overwrite=overwrite)
    if isinstance(res, WindowStore):
        res = {"ref": res["ref"][:], "alt": res["alt"][:]}
    k = res["ref"].shape[1]
    names = [str(i) for i in range(k)] if output_names is None else [str(s) for s in output_names]
    if len(names) != k:
        raise ProbeError(f"output_names has {len(names)} names for a model with {k} outputs")
    out = v.copy()
    for j, name in enumerate(names):
        out[f"ref_{name}"] = res["ref"][:, j]
        out[f"alt_{name}"] = res["alt"][:, j]
        out[f"delta_{name}"] = res["alt"][:, j] - res["ref"][:, j]
    return out
