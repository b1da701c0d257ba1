"""A reference genome and the windows cut from it: indexed FASTA (pyfaidx), BED regions, genome tiles.

Coordinates are 0-based and half-open, as in BED: a window ``(chrom, start, end, strand)`` holds the
bases ``start <= i < end`` of ``chrom``; on the ``-`` strand it is read as the reverse complement.
Positions outside the chromosome read as ``N`` (an all-zero column), so a window centred near a
chromosome's end keeps its width.

The FASTA is read through its ``.fai`` index (Li et al., "The Sequence Alignment/Map format and
SAMtools", Bioinformatics 25:2078, 2009; pyfaidx, Shirley et al., PeerJ PrePrints 3:e970v1, 2015),
built on first use when it is missing; a bgzip-compressed FASTA (``.fa.gz`` with its ``.gzi``) is
read the same way. Nothing is loaded whole, so a genome of any size costs only the windows asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from probe import ProbeError

from .io import ALPHABET, IUPAC

__all__ = ["Genome", "read_bed", "centred_windows", "tile_genome", "WINDOW_COLUMNS"]

#: The columns every window table has.
WINDOW_COLUMNS = ("chrom", "start", "end", "strand", "name")

_TABLE = np.zeros((256, 4), dtype=np.float32)
for _letter, _bases in IUPAC.items():
    for _b in _bases:
        _TABLE[ord(_letter), ALPHABET.index(_b)] = 1.0 / len(_bases)
        _TABLE[ord(_letter.lower()), ALPHABET.index(_b)] = 1.0 / len(_bases)
_CLEAN = np.zeros(256, dtype=bool)
_CLEAN[np.frombuffer(b"ACGTNacgtn", dtype=np.uint8)] = True
_KNOWN = np.zeros(256, dtype=bool)
_KNOWN[[ord(c) for c in IUPAC] + [ord(c.lower()) for c in IUPAC]] = True


class Genome:
    """An indexed reference genome.

    Parameters
    ----------
    path : str or Path
        A FASTA file (plain, or bgzip-compressed). Its ``.fai`` index (and ``.gzi`` for bgzip) is
        used where present and written next to it where not.
    iupac : {"error", "fractional"}, default "error"
        Ambiguity letters other than ``N`` inside a window: raise ``ProbeError`` naming the window and
        position, or encode as the uniform mixture of the bases they stand for.

    Notes
    -----
    A ``Genome`` pickles as its path (the file handle is reopened where it lands), so it can be sent
    to the workers of a Dask cluster.
    """

    def __init__(self, path: str | Path, *, iupac: str = "error"):
        if iupac not in ("error", "fractional"):
            raise ProbeError(f"iupac must be 'error' or 'fractional', got {iupac!r}")
        self.path = Path(path)
        self.iupac = iupac
        self._fasta = None
        if not self.path.exists():
            raise ProbeError(f"genome FASTA {str(self.path)!r} does not exist")
        self._open()

    def _open(self):  # noqa: ANN202 - pyfaidx.Fasta
        if self._fasta is None:
            import pyfaidx

            try:
                self._fasta = pyfaidx.Fasta(str(self.path), as_raw=True, sequence_always_upper=True,
                                            build_index=True, rebuild=False)
            except pyfaidx.UnsupportedCompressionFormat as err:
                raise ProbeError(f"genome FASTA {str(self.path)!r} is gzip-compressed but not with bgzip: "
                                 f"recompress it with `bgzip` (htslib) so it can be indexed ({err})") from None
            except (pyfaidx.FastaIndexingError, ValueError, OSError) as err:
                raise ProbeError(f"genome FASTA {str(self.path)!r} could not be indexed: {err}") from None
        return self._fasta

    def __getstate__(self) -> dict:
        return {"path": self.path, "iupac": self.iupac}

    def __setstate__(self, state: dict) -> None:
        self.path, self.iupac, self._fasta = state["path"], state["iupac"], None

    def __repr__(self) -> str:
        return f"Genome({str(self.path)!r}, {len(self.chroms)} sequences)"

    @property
    def chroms(self) -> dict[str, int]:
        """``{name: length}`` of the genome's sequences, in file order."""
        fa = self._open()
        return {k: len(fa[k]) for k in fa.keys()}

    def length(self, chrom: str) -> int:
        """Length of ``chrom`` (``ProbeError`` naming it when the genome lacks it)."""
        fa = self._open()
        if chrom not in fa:
            names = list(fa.keys())
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise ProbeError(f"chromosome {chrom!r} is not in genome {self.path.name} (it has {shown})")
        return len(fa[chrom])

    def fetch(self, chrom: str, start: int, end: int, strand: str = "+") -> str:
        """The letters of ``[start, end)`` of ``chrom`` (upper case), ``N`` outside the chromosome,
        reverse-complemented on the ``-`` strand."""
        n = self.length(chrom)
        start, end = int(start), int(end)
        if end < start:
            raise ProbeError(f"window {chrom}:{start}-{end} ends before it starts")
        lo, hi = max(0, start), min(n, end)
        core = self._open()[chrom][lo:hi] if hi > lo else ""
        s = "N" * (min(lo, end) - start) + core + "N" * (end - max(hi, start))
        if strand == "-":
            from .io import reverse_complement

            s = reverse_complement(s)
        elif strand not in ("+", "."):
            raise ProbeError(f"window {chrom}:{start}-{end} has strand {strand!r}; use '+', '-' or '.'")
        return s

    def one_hot(self, windows: pd.DataFrame, *, dtype: torch.dtype | None = None) -> torch.Tensor:
        """One-hot (N, 4, L) of equal-width windows (a table with ``chrom``, ``start``, ``end`` and
        optionally ``strand``, ``name``), rows in ``ACGT`` order; ``N`` is an all-zero column."""
        w = _check_windows(windows)
        widths = (w.end - w.start).to_numpy()
        if len(w) and (widths != widths[0]).any():
            i = int(np.nonzero(widths != widths[0])[0][0])
            raise ProbeError(f"windows have unequal widths: {_window_label(w, i)} is {widths[i]} bases where "
                             f"{_window_label(w, 0)} is {widths[0]}")
        strands = w.strand.to_numpy() if "strand" in w else np.full(len(w), "+")
        seqs = [self.fetch(c, s, e, st) for c, s, e, st in zip(w.chrom, w.start, w.end, strands)]
        return encode(seqs, int(widths[0]) if len(w) else 0, iupac=self.iupac,
                      labels=lambda i: _window_label(w, i), dtype=dtype)


def encode(seqs: list[str], width: int, *, iupac: str = "error", labels: object = None,
           dtype: torch.dtype | None = None) -> torch.Tensor:
    """One-hot (N, 4, width) of equal-length strings in one table look-up (``ACGT`` rows, ``N`` zeros).

    ``labels(i)`` names sequence ``i`` in the error raised for an ambiguity letter under ``iupac="error"``
    or a letter outside the IUPAC code.
    """
    codes = np.frombuffer("".join(seqs).encode("ascii", errors="replace"), dtype=np.uint8).reshape(len(seqs), width)
    for mask, what in ((~_KNOWN[codes], "the letter {!r}, which is not IUPAC DNA,"),
                       (~_CLEAN[codes] if iupac == "error" else None, "the ambiguity letter {!r}")):
        if mask is not None and mask.any():
            i, p = (int(v) for v in np.argwhere(mask)[0])
            name = labels(i) if labels is not None else f"sequence {i}"
            hint = "; pass iupac='fractional' to encode it as a mixture of bases" if "ambiguity" in what else ""
            raise ProbeError(f"{name} holds {what.format(chr(codes[i, p]))} at position {p}{hint}")
    out = _TABLE[codes].transpose(0, 2, 1)
    return torch.from_numpy(np.ascontiguousarray(out)).to(dtype or torch.get_default_dtype())


def _check_windows(windows: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(windows, pd.DataFrame):
        raise ProbeError(f"windows must be a DataFrame with chrom, start, end; got {type(windows).__name__}")
    missing = [c for c in ("chrom", "start", "end") if c not in windows]
    if missing:
        raise ProbeError(f"windows lack the column(s) {missing}; they need chrom, start, end (strand, name)")
    return windows


def _window_label(w: pd.DataFrame, i: int) -> str:
    r = w.iloc[i]
    name = f" ({r['name']})" if "name" in w and isinstance(r["name"], str) and r["name"] else ""
    strand = r["strand"] if "strand" in w else "+"
    return f"window {r['chrom']}:{int(r['start'])}-{int(r['end'])}({strand}){name}"


def read_bed(path: str | Path) -> pd.DataFrame:
    """Regions of a BED file (BED3 to BED6, or narrowPeak with its summit offset in column 10).

    Returns
    -------
    pandas.DataFrame
        ``chrom``, ``start``, ``end`` (0-based, half-open), ``name`` (``chrom:start-end`` where the file
        has none), ``score``, ``strand`` (``+`` where the file has none or ``.``), and ``summit`` (offset
        from ``start``, -1 where unknown). Comment, ``track`` and ``browser`` lines are skipped.

    Raises
    ------
    ProbeError
        Naming the file and line: fewer than 3 fields, coordinates that are not integers, ``end < start``,
        or a strand that is not ``+``, ``-`` or ``.``.
    """
    path = Path(path)
    if not path.exists():
        raise ProbeError(f"BED file {str(path)!r} does not exist")
    rows = []
    with open(path) as fh:
        for k, line in enumerate(fh, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            f = line.rstrip("\n").split("\t") if "\t" in line else line.split()
            where = f"{path.name} line {k}"
            if len(f) < 3:
                raise ProbeError(f"{where} has {len(f)} field(s); BED needs chrom, start, end")
            try:
                start, end = int(f[1]), int(f[2])
                summit = int(f[9]) if len(f) >= 10 else -1
            except ValueError:
                raise ProbeError(f"{where}: start and end must be integers, got {f[1]!r}, {f[2]!r}") from None
            if end < start or start < 0:
                raise ProbeError(f"{where}: region {f[0]}:{start}-{end} has end before start or start < 0")
            strand = f[5] if len(f) >= 6 else "+"
            if strand not in ("+", "-", "."):
                raise ProbeError(f"{where}: strand must be '+', '-' or '.', got {strand!r}")
            name = f[3] if len(f) >= 4 and f[3] not in ("", ".") else f"{f[0]}:{start}-{end}"
            score = float(f[4]) if len(f) >= 5 and f[4] not in ("", ".") else np.nan
            rows.append((f[0], start, end, name, score, "+" if strand == "." else strand, summit))
    if not rows:
        raise ProbeError(f"BED file {str(path)!r} holds no regions")
    return pd.DataFrame(rows, columns=["chrom", "start", "end", "name", "score", "strand", "summit"])


def centred_windows(regions: pd.DataFrame, width: int, *, centre: str = "summit") -> pd.DataFrame:
    """Windows of ``width`` bases centred on each region's summit or midpoint, keeping its strand and name.

    Parameters
    ----------
    regions : pandas.DataFrame
        As :func:`read_bed` returns (``chrom``, ``start``, ``end``; ``strand``, ``name``, ``summit`` optional).
    width : int
        Bases per window.
    centre : {"summit", "middle"}, default "summit"
        ``"summit"`` centres on ``start + summit`` where the summit is known (narrowPeak) and on the
        midpoint ``(start + end) // 2`` elsewhere.

    Returns
    -------
    pandas.DataFrame
        ``chrom``, ``start``, ``end``, ``strand``, ``name``, with ``start = c - width // 2`` for centre ``c``.
    """
    w = _check_windows(regions)
    if int(width) < 1:
        raise ProbeError(f"width must be a positive number of bases, got {width}")
    if centre not in ("summit", "middle"):
        raise ProbeError(f"centre must be 'summit' or 'middle', got {centre!r}")
    start, end = w.start.to_numpy(np.int64), w.end.to_numpy(np.int64)
    c = (start + end) // 2
    if centre == "summit" and "summit" in w:
        summit = w.summit.to_numpy(np.int64)
        c = np.where(summit >= 0, start + summit, c)
    lo = c - int(width) // 2
    names = w.name.to_numpy() if "name" in w else [f"{a}:{b}-{e}" for a, b, e in zip(w.chrom, start, end)]
    return pd.DataFrame({"chrom": w.chrom.to_numpy(), "start": lo, "end": lo + int(width),
                         "strand": w.strand.to_numpy() if "strand" in w else "+", "name": names})


def tile_genome(genome: Genome, width: int, *, stride: int | None = None, chroms: list[str] | None = None
                ) -> pd.DataFrame:
    """Windows of ``width`` bases every ``stride`` bases (default ``width``) along the chromosomes, on ``+``.

    The last window of a chromosome is the last that fits whole; names are ``chrom:start-end``.
    """
    width, stride = int(width), int(stride or width)
    if width < 1 or stride < 1:
        raise ProbeError(f"width and stride must be positive, got width={width}, stride={stride}")
    parts = []
    for chrom in chroms or list(genome.chroms):
        n = genome.length(chrom)
        starts = np.arange(0, max(0, n - width) + 1, stride, dtype=np.int64)
        if n < width:
            continue
        parts.append(pd.DataFrame({"chrom": chrom, "start": starts, "end": starts + width, "strand": "+"}))
    if not parts:
        raise ProbeError(f"no chromosome of {genome.path.name} is {width} bases long")
    out = pd.concat(parts, ignore_index=True)
    out["name"] = out.chrom + ":" + out.start.astype(str) + "-" + out.end.astype(str)
    return out
