"""Seqlets (high-attribution stretches) and their match against JASPAR motifs.

Seqlets are called the way tangermeme and TF-MoDISco call them, simplified: the attribution at
the observed bases is summed over a sliding window, the best window above a threshold becomes a
seqlet (widened by ``flank``), its neighbourhood is excluded, and so on. Each seqlet's letters
are then scanned with the position-specific scoring matrices of JASPAR motifs (log-odds against
a uniform background, with pseudocounts, computed by Biopython ``motifs``) on both strands; the
motif whose best hit has the highest relative score :math:`(s - s_{min}) / (s_{max} - s_{min})`
(ties: the higher log-odds score) among the hits with a positive log-odds score is reported with its
position, strand and score; a region where no motif scores above 0 (no letters more likely under a
motif than under the background) has no match. For p- and q-values use :mod:`domains.dna.tomtom`
(seqlets against a whole database) and :mod:`domains.dna.fimo` (scanning).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import torch

from probe import Attribution, ProbeError

from .datasets import FACTORS, jaspar_db, jaspar_motif
from .io import decode

__all__ = ["seqlets", "match_motifs", "motif_pssm", "jaspar_collection"]


def _per_position(attr: object, X: torch.Tensor | None) -> np.ndarray:
    v = attr.values if isinstance(attr, Attribution) else torch.as_tensor(attr)
    v = v.detach().cpu().double()
    if v.dim() == 3:
        if X is not None:
            v = v * torch.as_tensor(X).detach().cpu().double()
        v = v.sum(1)
    if v.dim() != 2:
        raise ProbeError(f"attributions must be (N, 4, L) or (N, L), got shape {tuple(v.shape)}")
    return v.numpy()


def seqlets(attr: object, X: object = None, *, window: int = 5, flank: int = 3, threshold: float = 0.3,
            max_seqlets: int = 3, sign: str = "positive") -> pd.DataFrame:
    """High-attribution stretches of each sequence.

    Parameters
    ----------
    attr : Attribution or tensor (N, 4, L) or (N, L)
        Attributions; a (N, 4, L) map is projected on the observed bases of ``X`` (if given) and summed.
    X : tensor (N, 4, L), optional
    window : int, default 5
        Width of the sliding sum.
    flank : int, default 3
        Bases added on each side of a called window.
    threshold : float, default 0.3
        A window is called when its sum is at least this fraction of the sequence's best window.
    max_seqlets : int, default 3
        Per sequence.
    sign : {"positive", "negative", "both"}, default "positive"
        Which attributions count: support for the output, against it, or either (by magnitude).

    Returns
    -------
    pandas.DataFrame
        ``sequence``, ``start``, ``end`` (exclusive), ``attribution`` (the window sum), best first per sequence.
    """
    s = _per_position(attr, None if X is None else torch.as_tensor(X))
    if sign == "negative":
        s = -s
    elif sign == "both":
        s = np.abs(s)
    elif sign != "positive":
        raise ProbeError(f"sign must be 'positive', 'negative' or 'both', got {sign!r}")
    n, length = s.shape
    w = min(int(window), length)
    rows = []
    kernel = np.ones(w)
    for i in range(n):
        sums = np.convolve(s[i], kernel, mode="valid")  # sums[j] = s[j:j + w].sum()
        best = sums.max()
        if not best > 0:
            continue
        free = np.ones_like(sums, dtype=bool)
        for _ in range(int(max_seqlets)):
            cand = np.where(free, sums, -np.inf)
            j = int(cand.argmax())
            if not np.isfinite(cand[j]) or cand[j] < threshold * best:
                break
            start, end = max(0, j - flank), min(length, j + w + flank)
            rows.append({"sequence": i, "start": start, "end": end, "attribution": float(sums[j])})
            free[max(0, start - w + 1):end] = False
    return pd.DataFrame(rows, columns=["sequence", "start", "end", "attribution"])


@functools.cache
def motif_pssm(matrix_id: str, pseudocount: float = 0.5):  # noqa: ANN201 - Bio.motifs PSSM
    """Log-odds PSSM of a JASPAR matrix against a uniform background (Biopython, with pseudocounts),
    and its reverse complement."""
    m = jaspar_motif(matrix_id)
    pssm = m.counts.normalize(pseudocounts=pseudocount).log_odds({b: 0.25 for b in "ACGT"})
    return pssm, pssm.reverse_complement()


@functools.lru_cache(maxsize=4)
def _collection(tax_group: str) -> tuple[tuple[str, str], ...]:
    ms = jaspar_db().fetch_motifs(collection="CORE", tax_group=[tax_group], all_versions=False)
    return tuple((m.matrix_id, m.name) for m in ms)


def jaspar_collection(tax_group: str = "vertebrates") -> dict[str, str]:
    """``{name: matrix_id}`` of the latest JASPAR CORE matrices of a taxonomic group."""
    return {name: mid for mid, name in _collection(tax_group)}


def match_motifs(X: object, regions: pd.DataFrame, *, motifs: dict[str, str] | str | None = None,
                 pseudocount: float = 0.5) -> pd.DataFrame:
    """Match each region (seqlet) of ``X`` against JASPAR motifs; the best motif per region.

    Parameters
    ----------
    X : tensor (N, 4, L) or list of str
        The sequences the regions refer to.
    regions : pandas.DataFrame
        With columns ``sequence``, ``start``, ``end`` (as :func:`seqlets` returns).
    motifs : dict {name: JASPAR id}, "vertebrates" (or another JASPAR taxonomic group), optional
        Candidates; default the factors of :mod:`domains.dna.datasets` (the planted ones).
    pseudocount : float, default 0.5
        Added to every count before the log-odds.

    Returns
    -------
    pandas.DataFrame
        The region's columns plus ``motif``, ``matrix_id``, ``position`` (start of the hit in the
        sequence), ``strand``, ``score`` (log-odds, bits, > 0) and ``relative_score`` (0..1); all empty
        where no motif scores above 0 in the region.
    """
    from Bio.Seq import Seq

    seqs = decode(torch.as_tensor(X)) if torch.is_tensor(X) else [str(s) for s in X]
    if motifs is None:
        motifs = FACTORS
    elif isinstance(motifs, str):
        motifs = jaspar_collection(motifs)
    cols = ["motif", "matrix_id", "position", "strand", "score", "relative_score"]
    out = []
    for r in regions.itertuples(index=False):
        seq = seqs[int(r.sequence)]
        best = None
        for name, mid in motifs.items():
            fwd, rev = motif_pssm(mid, pseudocount)
            w = fwd.length
            # widen the region to the motif's width, centred, inside the sequence
            lo, hi = int(r.start), int(r.end)
            if hi - lo < w:
                extra = w - (hi - lo)
                lo = max(0, lo - extra // 2 - extra % 2)
                hi = min(len(seq), lo + max(w, int(r.end) - lo))
                lo = max(0, hi - max(w, hi - lo))
            sub = seq[lo:hi]
            if len(sub) < w or "N" in sub:
                continue
            span = fwd.max - fwd.min
            for strand, pssm in (("+", fwd), ("-", rev)):
                scores = np.atleast_1d(pssm.calculate(Seq(sub)))
                j = int(np.nanargmax(scores))
                if not float(scores[j]) > 0:
                    continue  # less likely under the motif than under the background: not a hit
                rel = (float(scores[j]) - pssm.min) / span if span > 0 else 0.0
                # ties in relative score (several consensus hits) go to the more specific motif (more bits)
                if best is None or (rel, float(scores[j])) > (best[5], best[4]):
                    best = (name, mid, lo + j, strand, float(scores[j]), rel)
        out.append(dict(zip(cols, best)) if best else dict.fromkeys(cols))
    found = pd.DataFrame(out, columns=cols)
    found["position"] = found["position"].astype("Int64")  # stays an integer where some regions have no hit
    return pd.concat([regions.reset_index(drop=True), found], axis=1)
