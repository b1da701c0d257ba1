r"""TomTom: how surprising is the similarity of a query motif to each motif of a database, with p- and q-values.

TomTom (Gupta, Stamatoyannopoulos, Bailey & Noble, "Quantifying similarity between motifs", Genome
Biol. 8:R24, 2007) scores every alignment of a query matrix :math:`Q` (4, w) with a target :math:`T`,
with overhangs, by the sum over aligned columns of a column similarity (here the negative Euclidean
distance, :math:`-\lVert q_i - t_j \rVert_2`), on both strands of the target. The null distribution of
a column's score is that column against *every* column of the database; the distribution of an
alignment's total score follows by convolution, which gives each (query, target) pair the p-value of
its best alignment. The p-values are memelite's ``tomtom`` (Schreiber, memelite), the "complete score"
variant; this module prepares the matrices and adds, per query over all :math:`m` targets,

.. math:: E = m\,p, \qquad q_{(i)} = \min_{j \ge i} \frac{m\, p_{(j)}}{j}

(Benjamini & Hochberg, J. R. Stat. Soc. B 57:289, 1995, on the sorted p-values :math:`p_{(1)} \le \dots`),
the false-discovery rate at which a match would be called.

Queries are position weight matrices: a seqlet's one-hot letters, the aligned average of several seqlets
(:func:`seqlet_pwm`, a small form of TF-MoDISco's clustering; Shrikumar et al., arXiv:1811.00416), or a
contribution-weight matrix (attributions at the observed bases, as probabilities of their magnitude).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch

from probe import Attribution, ProbeError

from .motif_db import MotifSet, motif_set

__all__ = ["tomtom", "seqlet_pwm", "seqlet_queries", "annotate_seqlets", "benjamini_hochberg"]


def benjamini_hochberg(p: np.ndarray, m: int | None = None) -> np.ndarray:
    r"""Benjamini–Hochberg q-values of the p-values ``p`` (any shape) among ``m`` tests (default ``p.size``).

    :math:`q_{(i)} = \min_{j \ge i} \min(1, m p_{(j)} / j)`. With ``m`` larger than ``p.size`` the missing
    tests are taken to have larger p-values than all of ``p`` (FIMO's hits below a threshold).
    """
    p = np.asarray(p, dtype=np.float64)
    flat = p.ravel()
    m = flat.size if m is None else int(m)
    order = np.argsort(flat, kind="stable")
    ranked = flat[order] * m / np.arange(1, flat.size + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1.0)
    out = np.empty_like(flat)
    out[order] = q
    return out.reshape(p.shape)


def _as_queries(queries: object) -> list[np.ndarray]:
    if isinstance(queries, np.ndarray) and queries.ndim == 2 or torch.is_tensor(queries) and queries.dim() == 2:
        queries = [queries]
    out = []
    for i, q in enumerate(queries):
        a = q.detach().cpu().double().numpy() if torch.is_tensor(q) else np.asarray(q, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] != 4 or a.shape[1] < 1:
            raise ProbeError(f"query {i} must be a (4, w) matrix, got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ProbeError(f"query {i} holds non-finite values")
        out.append(a)
    if not out:
        raise ProbeError("no query motifs to compare")
    return out


def tomtom(queries: object, motifs: object = "vertebrates", *, top_k: int | None = 3,
           query_names: list[str] | None = None, reverse_complement: bool = True, n_score_bins: int = 100,
           n_median_bins: int = 1000, n_target_bins: int | None = 100, n_jobs: int = 1) -> pd.DataFrame:
    """Compare query matrices with a motif database: the best matches of each with p-, E- and q-values.

    Parameters
    ----------
    queries : (4, w) array or list of them (numpy or torch)
        Position weight matrices (columns of base probabilities), e.g. from :func:`seqlet_queries`.
    motifs : MotifSet or what :func:`~domains.dna.motif_db.motif_set` takes, default "vertebrates"
        The database (JASPAR CORE vertebrates of pyjaspar's latest release by default; ``"plants@JASPAR2024"``,
        a MEME file, a list of ids). The p-values use its columns as the background, so it should be a whole
        database, not a handful of matrices (fewer than 25 targets draws a warning).
    top_k : int or None, default 3
        Matches kept per query, best p-value first; None keeps all.
    query_names : list of str, optional
        Default ``0, 1, ...``.
    reverse_complement : bool, default True
        Also align each target's reverse complement.
    n_score_bins, n_median_bins, n_target_bins, n_jobs
        memelite's ``tomtom`` settings (its defaults; ``n_jobs`` numba threads).

    Returns
    -------
    pandas.DataFrame
        One row per (query, match): ``query``, ``rank`` (1 = best), ``matrix_id``, ``motif`` (factor name),
        ``family``, ``p_value``, ``e_value``, ``q_value``, ``score``, ``offset``, ``overlap``, ``strand``.
    """
    from memelite import tomtom as _tomtom

    qs = _as_queries(queries)
    db = motif_set(motifs)
    names = [str(i) for i in range(len(qs))] if query_names is None else [str(n) for n in query_names]
    if len(names) != len(qs):
        raise ProbeError(f"query_names has {len(names)} names for {len(qs)} queries")
    targets = [np.ascontiguousarray(t, dtype=np.float64) for t in db.pwms]
    with warnings.catch_warnings():
        if len(targets) >= 25:
            warnings.simplefilter("ignore", category=UserWarning)
        p, score, offset, overlap, strand = _tomtom(qs, targets, n_nearest=None, n_score_bins=n_score_bins,
                                                    n_median_bins=n_median_bins, n_target_bins=n_target_bins,
                                                    reverse_complement=reverse_complement, n_jobs=n_jobs)
    m = len(targets)
    rows = []
    for i, name in enumerate(names):
        q = benjamini_hochberg(p[i])
        order = np.argsort(p[i], kind="stable")[: (m if top_k is None else int(top_k))]
        for r, j in enumerate(order, 1):
            rows.append((name, r, db.ids[j], db.names[j], db.families[j], float(p[i, j]), float(p[i, j] * m),
                         float(q[j]), float(score[i, j]), int(offset[i, j]), int(overlap[i, j]),
                         "-" if strand[i, j] else "+"))
    return pd.DataFrame(rows, columns=["query", "rank", "matrix_id", "motif", "family", "p_value", "e_value",
                                       "q_value", "score", "offset", "overlap", "strand"])


def _values(X: object, attr: object) -> np.ndarray:
    x = torch.as_tensor(X).detach().cpu().double().numpy()
    if x.ndim != 3 or x.shape[1] != 4:
        raise ProbeError(f"expected one-hot DNA of shape (N, 4, L), got shape {x.shape}")
    if attr is None:
        return x
    v = attr.values if isinstance(attr, Attribution) else attr
    v = torch.as_tensor(v).detach().cpu().double().numpy()
    if v.shape != x.shape:
        raise ProbeError(f"attributions of shape {v.shape} do not match the sequences' {x.shape}")
    return np.abs(v * x)  # contribution at the observed base, by magnitude


def seqlet_queries(X: object, seqlets: pd.DataFrame, attr: object = None) -> list[np.ndarray]:
    """One query matrix per seqlet: its one-hot letters (a PWM of one site), or with ``attr`` its
    contribution-weight matrix, the magnitudes at the observed bases scaled to sum to 1 per column
    (an all-zero column becomes uniform)."""
    v = _values(X, attr)
    out = []
    for r in seqlets.itertuples(index=False):
        a = v[int(r.sequence), :, int(r.start):int(r.end)].copy()
        s = a.sum(0, keepdims=True)
        out.append(np.where(s > 0, a / np.where(s > 0, s, 1), 0.25))
    return out


def seqlet_pwm(X: object, seqlets: pd.DataFrame, attr: object = None, *, min_coverage: float = 0.5) -> np.ndarray:
    """One matrix from several seqlets of the same motif, aligned on both strands.

    The first seqlet (the best, as :func:`~domains.dna.motifs.seqlets` orders them) is the seed; each further
    seqlet is placed at the shift and strand that maximise :math:`\\sum_{b,i} C_{b,i}\\, s_{b,i}` with the
    counts :math:`C` gathered so far, and added. Columns covered by fewer than ``min_coverage`` of the
    seqlets are trimmed; the result is the column-normalised counts (4, w).
    """
    qs = seqlet_queries(X, seqlets, attr)
    if not qs:
        raise ProbeError("no seqlets to build a matrix from")
    widest = max(q.shape[1] for q in qs)
    pad = widest
    counts = np.zeros((4, qs[0].shape[1] + 2 * pad))
    cover = np.zeros(counts.shape[1])
    counts[:, pad:pad + qs[0].shape[1]] += qs[0]
    cover[pad:pad + qs[0].shape[1]] += 1
    for q in qs[1:]:
        w = q.shape[1]
        best = None
        for s in (q, q[::-1, ::-1]):
            for at in range(0, counts.shape[1] - w + 1):
                fit = float((counts[:, at:at + w] * s).sum())
                if best is None or fit > best[0]:
                    best = (fit, at, s)
        _, at, s = best
        counts[:, at:at + w] += s
        cover[at:at + w] += 1
    keep = np.nonzero(cover >= min_coverage * len(qs))[0]
    if len(keep) == 0:
        raise ProbeError("the seqlets do not overlap once aligned; lower min_coverage")
    c = counts[:, keep[0]:keep[-1] + 1]
    return c / np.where(c.sum(0, keepdims=True) > 0, c.sum(0, keepdims=True), 1)


def annotate_seqlets(X: object, seqlets: pd.DataFrame, motifs: object = "vertebrates", *, attr: object = None,
                     top_k: int = 3, **tomtom_options: object) -> pd.DataFrame:
    """Each seqlet with its ``top_k`` TomTom matches (one row per match; ``q_value`` < 0.05 is a call).

    Parameters
    ----------
    X : tensor (N, 4, L)
    seqlets : pandas.DataFrame
        ``sequence``, ``start``, ``end`` (as :func:`~domains.dna.motifs.seqlets` returns).
    motifs : as in :func:`tomtom`, default "vertebrates"
    attr : Attribution or tensor (N, 4, L), optional
        Query each seqlet by its contribution-weight matrix instead of its letters.
    top_k : int, default 3
    **tomtom_options
        Passed to :func:`tomtom`.

    Returns
    -------
    pandas.DataFrame
        The seqlet's columns, then :func:`tomtom`'s (without ``query``).
    """
    db = motif_set(motifs) if not isinstance(motifs, MotifSet) else motifs
    s = seqlets.reset_index(drop=True)
    if len(s) == 0:
        return pd.DataFrame(columns=[*s.columns, "rank", "matrix_id", "motif", "family", "p_value", "e_value",
                                     "q_value", "score", "offset", "overlap", "strand"])
    hits = tomtom(seqlet_queries(X, s, attr), db, top_k=top_k, query_names=list(range(len(s))), **tomtom_options)
    hits["query"] = hits["query"].astype(int)
    return s.merge(hits, left_index=True, right_on="query").drop(columns="query").reset_index(drop=True)
