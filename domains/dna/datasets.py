"""Data: a planted-motif promoter-classification set with ground truth, and real E. coli CRP sites.

The generated set imitates the two promoter classes of mammalian genomes (Carninci et al.,
Nat. Genet. 38:626, 2006; Lenhard et al., Nat. Rev. Genet. 13:233, 2012):

- *housekeeping* (label 1): CpG-rich background (CpG observed/expected 0.8 against 0.5) with binding
  sites of ubiquitous factors SP1, NRF1, NFY (CCAAT box, NFYA), ETS (ELK1) and YY1;
- *tissue-specific* (label 0): CpG-poorer background with a TATA
  box (TBP) and a site of a tissue factor: HNF1A, HNF4A (liver), GATA1 (erythroid), MYOD1 (muscle),
  CEBPA (liver, myeloid).

Sites are sampled base by base from the real JASPAR position frequency matrices (pyjaspar ships
the database), on a random strand, at non-overlapping random positions; every planted site is
returned with its factor, matrix id, start, end and strand, so attributions and edits can be
scored against the truth.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from probe import ProbeError

from .io import ALPHABET, Sequences, one_hot, read_fasta

__all__ = ["HOUSEKEEPING", "TISSUE", "TATA", "FACTORS", "PromoterSet", "promoters", "jaspar_motif",
           "crp_sites", "CLASSES", "synthetic_genome", "planted_sites"]

#: Factor name -> JASPAR matrix id of the CORE collection.
HOUSEKEEPING = {"SP1": "MA0079.5", "NRF1": "MA0506.3", "NFYA": "MA0060.4", "ELK1": "MA0028.3", "YY1": "MA0095.4"}
TISSUE = {"HNF1A": "MA0046.3", "HNF4A": "MA0114.5", "GATA1": "MA0035.5", "MYOD1": "MA0499.3", "CEBPA": "MA0102.5"}
TATA = {"TBP": "MA0108.3"}
FACTORS = {**HOUSEKEEPING, **TATA, **TISSUE}
CLASSES = ("tissue-specific", "housekeeping", "no promoter")


@functools.lru_cache(maxsize=1)
def jaspar_db():  # noqa: ANN201 - pyjaspar.jaspardb, imported lazily
    """The JASPAR database that pyjaspar ships (its default release), opened once."""
    from pyjaspar import jaspardb

    return jaspardb()


@functools.cache
def jaspar_motif(matrix_id: str):  # noqa: ANN201 - Bio.motifs.Motif, imported lazily
    """A JASPAR matrix (Biopython ``motifs.Motif`` with ``.counts``) from the database pyjaspar ships."""
    m = jaspar_db().fetch_motif_by_id(matrix_id)
    if m is None:
        raise ProbeError(f"JASPAR matrix {matrix_id!r} is not in the installed pyjaspar database")
    return m


def _frequencies(matrix_id: str, pseudocount: float = 0.5, sharpen: float = 1.0) -> np.ndarray:
    """(4, width) base probabilities of a JASPAR matrix, with a pseudocount per cell, raised to the
    power ``sharpen`` and renormalised (1 samples the matrix as it is; larger is closer to consensus)."""
    counts = jaspar_motif(matrix_id).counts
    c = np.array([counts[b] for b in ALPHABET], dtype=float) + pseudocount
    p = (c / c.sum(0, keepdims=True)) ** float(sharpen)
    return p / p.sum(0, keepdims=True)


def _background(rng: np.random.Generator, n: int, length: int, gc: float, cpg: float) -> np.ndarray:
    """First-order Markov sequences (codes 0..3) with GC fraction ``gc`` and CpG observed/expected ~``cpg``.

    After a C, G is drawn with probability ``cpg * gc / 2`` (renormalised), which sets the CpG
    observed/expected ratio while keeping the other transitions at the base composition.
    """
    p = np.array([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])
    trans = np.tile(p, (4, 1))
    trans[1, 2] *= cpg
    trans /= trans.sum(1, keepdims=True)
    out = np.empty((n, length), dtype=np.int8)
    out[:, 0] = rng.choice(4, size=n, p=p)
    cum = trans.cumsum(1)
    for i in range(1, length):
        u = rng.random(n)
        out[:, i] = (u[:, None] > cum[out[:, i - 1]]).sum(1)
    return out


@dataclass(frozen=True)
class PromoterSet:
    """A generated promoter-classification set.

    Attributes
    ----------
    sequences : Sequences
        Named ``hk0``, ``ts1``, ``bg2``, ... by class.
    labels : np.ndarray of int, shape (N,)
        0 tissue-specific, 1 housekeeping, 2 no promoter (``CLASSES[label]``).
    sites : pandas.DataFrame
        One row per planted site: ``sequence`` (index), ``factor``, ``matrix_id``, ``start``, ``end``
        (exclusive), ``strand`` ("+" or "-"), ``site`` (the planted letters as they read on the + strand).
    """

    sequences: Sequences
    labels: np.ndarray
    sites: pd.DataFrame

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def X(self) -> torch.Tensor:
        """One-hot (N, 4, L)."""
        return one_hot(self.sequences)

    @property
    def y(self) -> torch.Tensor:
        return torch.as_tensor(self.labels, dtype=torch.long)

    def site_mask(self, flank: int = 0) -> np.ndarray:
        """Bool (N, L): True inside a planted site (widened by ``flank`` on each side)."""
        length = len(self.sequences[0])
        mask = np.zeros((len(self), length), dtype=bool)
        for r in self.sites.itertuples():
            mask[r.sequence, max(0, r.start - flank):min(length, r.end + flank)] = True
        return mask

    def subset(self, index: object) -> PromoterSet:
        """The sequences at ``index`` (renumbered sites)."""
        idx = np.arange(len(self))[index]
        remap = {int(old): new for new, old in enumerate(idx)}
        sites = self.sites[self.sites.sequence.isin(remap)].copy()
        sites["sequence"] = sites.sequence.map(remap)
        seqs = Sequences(tuple(self.sequences.names[i] for i in idx), tuple(self.sequences.sequences[i] for i in idx),
                         self.sequences.source)
        return PromoterSet(seqs, self.labels[idx], sites.reset_index(drop=True))


def promoters(n: int = 1000, length: int = 200, *, seed: int = 0, housekeeping_sites: int = 1,
              negatives: float = 1 / 3, background: tuple[tuple[float, float], tuple[float, float]] = ((0.5, 0.5),
                                                                                               (0.5, 0.8)),
              sharpen: float = 1.0) -> PromoterSet:
    """Generate housekeeping vs tissue-specific promoters with planted JASPAR sites.

    Parameters
    ----------
    n : int, default 1000
        Sequences.
    length : int, default 200
        Bases per sequence (at least 60).
    seed : int, default 0
    housekeeping_sites : int, default 1
        Ubiquitous-factor sites per housekeeping promoter (distinct factors).
    negatives : float, default 1/3
        Fraction of sequences with no planted site (label 2, "no promoter"), with either background.
        Without them a classifier can call "housekeeping" whatever lacks a TATA box or tissue
        site, and its evidence for housekeeping would be the absence of the other class's sites;
        with them each class must be recognised by its own sites. 0 gives the two-class set.
    background : ((gc, cpg), (gc, cpg)), default ((0.5, 0.5), (0.5, 0.8))
        GC fraction and CpG observed/expected ratio of the background of tissue-specific and of
        housekeeping promoters.
    sharpen : float, default 1.0
        Sites are drawn from the JASPAR frequencies raised to this power (renormalised): 1 samples
        the matrices as published; 2 or 3 give sites closer to the consensus, which a small model
        learns from fewer sequences.

    Returns
    -------
    PromoterSet
    """
    if n < 2 or length < 60:
        raise ProbeError(f"promoters needs n >= 2 and length >= 60, got n={n}, length={length}")
    rng = np.random.default_rng(seed)
    u = rng.random(n)
    labels = np.where(u < negatives, 2, np.where(u < negatives + (1 - negatives) / 2, 1, 0)).astype(np.int64)
    labels[:2] = [1, 0]
    bg_hk = rng.random(n) < 0.5
    hk = np.nonzero((labels == 1) | ((labels == 2) & bg_hk))[0]
    ts = np.nonzero((labels == 0) | ((labels == 2) & ~bg_hk))[0]
    codes = np.empty((n, length), dtype=np.int8)
    (gc0, cpg0), (gc1, cpg1) = background
    codes[hk] = _background(rng, len(hk), length, gc=gc1, cpg=cpg1)
    codes[ts] = _background(rng, len(ts), length, gc=gc0, cpg=cpg0)
    freqs = {name: _frequencies(mid, sharpen=sharpen) for name, mid in FACTORS.items()}
    rows = []
    hk_names, ts_names = list(HOUSEKEEPING), list(TISSUE)
    for i in range(n):
        if labels[i] == 2:
            continue
        if labels[i] == 1:
            factors = list(rng.choice(hk_names, size=housekeeping_sites, replace=False))
        else:
            factors = ["TBP", str(rng.choice(ts_names))]
        taken = np.zeros(length, dtype=bool)
        for f in factors:
            pfm = freqs[f]
            w = pfm.shape[1]
            site = np.minimum((rng.random(w)[None, :] > pfm.cumsum(0)).sum(0), 3).astype(np.int8)
            strand = "+" if rng.random() < 0.5 else "-"
            if strand == "-":
                site = (3 - site)[::-1]  # complement of ACGT codes is 3 - code
            for _ in range(1000):
                start = int(rng.integers(5, length - w - 5))
                if not taken[max(0, start - 3):start + w + 3].any():
                    break
            else:  # pragma: no cover - only for absurdly short sequences
                raise ProbeError(f"no room for a {w}-base site in a {length}-base sequence")
            taken[start:start + w] = True
            codes[i, start:start + w] = site
            rows.append({"sequence": i, "factor": f, "matrix_id": FACTORS[f], "start": start, "end": start + w,
                         "strand": strand, "site": "".join(ALPHABET[c] for c in site)})
    letters = np.frombuffer(ALPHABET.encode(), dtype=np.uint8)[codes]
    names = tuple(f"{('ts', 'hk', 'bg')[labels[i]]}{i}" for i in range(n))
    seqs = Sequences(names, tuple(r.tobytes().decode() for r in letters), source="promoters")
    return PromoterSet(seqs, labels, pd.DataFrame(rows, columns=["sequence", "factor", "matrix_id", "start", "end",
                                                                 "strand", "site"]))


def crp_sites() -> Sequences:
    """The 358 E. coli CRP binding sites from RegulonDB (Salgado et al., NAR 2013) that logomaker ships.

    Lengths vary (mostly 26 bases); pad with :func:`one_hot` (``pad="both"``) to stack them.
    """
    import logomaker

    path = os.path.join(os.path.dirname(logomaker.__file__), "examples", "datafiles", "crp_sites.fa")
    return read_fasta(path, format="fasta-blast")


def synthetic_genome(path: str | os.PathLike, lengths: dict[str, int], *, seed: int = 0, gc: float = 0.41,
                     line_width: int = 60) -> str:
    """Write a genome of independent random bases (GC fraction ``gc``) as FASTA, with its ``.fai`` index.

    Parameters
    ----------
    path : str or path
        The FASTA file to write.
    lengths : dict {name: int}
        Chromosome names and lengths, in file order.
    seed : int, default 0
    gc : float, default 0.41
        Probability of G or C (0.41 is the human genome's).
    line_width : int, default 60
        Bases per FASTA line.

    Returns
    -------
    str
        ``path``.
    """
    import pyfaidx

    rng = np.random.default_rng(seed)
    p = np.array([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])
    letters = np.frombuffer(ALPHABET.encode(), dtype=np.uint8)
    with open(path, "wb") as fh:
        for name, n in lengths.items():
            fh.write(f">{name}\n".encode())
            block = line_width * (1 << 18)  # ~16 Mb at a time, whole lines: memory stays bounded
            for lo in range(0, int(n), block):
                hi = min(int(n), lo + block)
                seq = letters[rng.choice(4, size=hi - lo, p=p)].tobytes()
                fh.write(b"\n".join(seq[i:i + line_width] for i in range(0, len(seq), line_width)) + b"\n")
    pyfaidx.Faidx(str(path), build_index=True).close()
    return str(path)


def planted_sites(matrix_ids: dict[str, str], n: int, length: int, *, seed: int = 0, sharpen: float = 1.0,
                  gc: float = 0.5) -> PromoterSet:
    """Random sequences with one site of each given JASPAR matrix planted per sequence.

    Parameters
    ----------
    matrix_ids : dict {factor: JASPAR id}
        One site of each, on a random strand, at non-overlapping random positions.
    n, length : int
        Sequences and bases per sequence.
    seed : int, default 0
    sharpen : float, default 1.0
        As in :func:`promoters`: sites drawn from the frequencies raised to this power.
    gc : float, default 0.5

    Returns
    -------
    PromoterSet
        Labels all 0; ``sites`` gives each planted site's factor, matrix id, start, end and strand.
    """
    rng = np.random.default_rng(seed)
    codes = _background(rng, n, length, gc=gc, cpg=1.0)
    freqs = {f: _frequencies(mid, sharpen=sharpen) for f, mid in matrix_ids.items()}
    rows = []
    for i in range(n):
        taken = np.zeros(length, dtype=bool)
        for f, pfm in freqs.items():
            w = pfm.shape[1]
            site = np.minimum((rng.random(w)[None, :] > pfm.cumsum(0)).sum(0), 3).astype(np.int8)
            strand = "+" if rng.random() < 0.5 else "-"
            if strand == "-":
                site = (3 - site)[::-1]
            for _ in range(1000):
                start = int(rng.integers(0, length - w + 1))
                if not taken[max(0, start - 2):start + w + 2].any():
                    break
            else:
                raise ProbeError(f"no room for the sites of {list(matrix_ids)} in {length} bases")
            taken[start:start + w] = True
            codes[i, start:start + w] = site
            rows.append({"sequence": i, "factor": f, "matrix_id": matrix_ids[f], "start": start, "end": start + w,
                         "strand": strand, "site": "".join(ALPHABET[c] for c in site)})
    letters = np.frombuffer(ALPHABET.encode(), dtype=np.uint8)[codes]
    seqs = Sequences(tuple(f"site{i}" for i in range(n)), tuple(r.tobytes().decode() for r in letters),
                     source="planted")
    cols = ["sequence", "factor", "matrix_id", "start", "end", "strand", "site"]
    return PromoterSet(seqs, np.zeros(n, dtype=np.int64), pd.DataFrame(rows, columns=cols))
