r"""FIMO: scan sequences with motifs and keep the sites whose score is unlikely by chance, with p- and q-values.

FIMO (Grant, Bailey & Noble, "FIMO: scanning for occurrences of a given motif", Bioinformatics 27:1017,
2011) scores each window of a sequence with a motif's log-odds matrix against a uniform background,

.. math:: s = \sum_{i} \log_2 \frac{p_{x_i, i} + \epsilon}{1/4},

and gives the score the p-value of the exact null distribution of such sums (by dynamic programming
over the columns, scores binned to ``bin_size``). The scan and the p-values are memelite's ``fimo``;
this module adds the q-values of Benjamini and Hochberg over every window scanned (both strands, every
motif; FIMO's own q-values are Storey's, which are never larger), and drops any site whose log-odds score
is not positive: a "hit" less likely under the motif than under the background is not a site.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from probe import ProbeError

from .motif_db import motif_set
from .tomtom import benjamini_hochberg

__all__ = ["scan_motifs"]


def scan_motifs(X: object, motifs: object = "vertebrates", *, threshold: float = 1e-4,
                reverse_complement: bool = True, names: list[str] | None = None, bin_size: float = 0.1,
                eps: float = 1e-4) -> pd.DataFrame:
    """Motif sites in one-hot sequences, FIMO-style, best p-value first.

    Parameters
    ----------
    X : tensor or array (N, 4, L)
        One-hot sequences (all-zero ``N`` columns match nothing).
    motifs : MotifSet or what :func:`~domains.dna.motif_db.motif_set` takes, default "vertebrates"
    threshold : float, default 1e-4
        Sites with a p-value below this are reported (FIMO's default).
    reverse_complement : bool, default True
        Scan both strands.
    names : list of str, optional
        Sequence names (default ``0, 1, ...``).
    bin_size, eps : float
        memelite's score resolution and the pseudocount added to each probability before the log.

    Returns
    -------
    pandas.DataFrame
        ``sequence`` (index), ``name``, ``matrix_id``, ``motif``, ``start``, ``end`` (exclusive), ``strand``,
        ``score`` (log-odds, bits, always > 0), ``p_value``, ``q_value``.
    """
    from memelite import fimo

    x = torch.as_tensor(X).detach().cpu().numpy() if not isinstance(X, np.ndarray) else X
    if x.ndim != 3 or x.shape[1] != 4:
        raise ProbeError(f"expected one-hot DNA of shape (N, 4, L), got shape {x.shape}")
    if not 0 < threshold <= 1:
        raise ProbeError(f"threshold must be a p-value in (0, 1], got {threshold}")
    db = motif_set(motifs)
    n, _, length = x.shape
    seq_names = [str(i) for i in range(n)] if names is None else [str(s) for s in names]
    if len(seq_names) != n:
        raise ProbeError(f"names has {len(seq_names)} names for {n} sequences")
    keyed = {f"{i}": np.ascontiguousarray(p, dtype=np.float64) for i, p in enumerate(db.pwms)}
    cols = ["sequence", "name", "matrix_id", "motif", "start", "end", "strand", "score", "p_value", "q_value"]
    hits = fimo(keyed, np.ascontiguousarray(x, dtype=np.float32), threshold=threshold, bin_size=bin_size, eps=eps,
                reverse_complement=reverse_complement)
    hits = [h for h in hits if len(h)]
    strands = 2 if reverse_complement else 1
    tests = sum(max(0, length - p.shape[1] + 1) for p in db.pwms) * n * strands
    if not hits:
        return pd.DataFrame(columns=cols)
    h = pd.concat(hits, ignore_index=True)
    k = h.motif_name.str.replace("-rc", "", regex=False).astype(int).to_numpy()
    out = pd.DataFrame({"sequence": h.sequence_name.astype(int).to_numpy(), "matrix_id": np.array(db.ids)[k],
                        "motif": np.array(db.names)[k], "start": h.start.astype(int).to_numpy(),
                        "end": h.end.astype(int).to_numpy(), "strand": h.strand.to_numpy(),
                        "score": h.score.astype(float).to_numpy(), "p_value": h["p-value"].astype(float).to_numpy()})
    out.insert(1, "name", np.array(seq_names, dtype=object)[out.sequence.to_numpy()])
    out["q_value"] = benjamini_hochberg(out.p_value.to_numpy(), m=tests)
    out = out[out.score > 0]
    return out.sort_values(["p_value", "sequence", "start"], kind="stable").reset_index(drop=True)[cols]
