"""DNA in and out: FASTA via Biopython, one-hot encoding (N, 4, L), IUPAC letters, reverse complement.

The alphabet is ``ACGT`` in that order (tangermeme's and Basset's convention). ``N``
(and, on request, padding) is an all-zero column. The ambiguity letters of the
IUPAC code (Cornish-Bowden, Nucleic Acids Res. 13:3021, 1985) are either refused
with a ``ProbeError`` naming the record and position, or encoded as fractional
columns (``R`` = 0.5 A + 0.5 G, ``B`` = 1/3 each of C, G, T, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from probe import ProbeError

__all__ = ["ALPHABET", "IUPAC", "Sequences", "as_sequences", "read_fasta", "one_hot", "decode",
           "reverse_complement"]

ALPHABET = "ACGT"
#: Bases each IUPAC letter stands for (U is read as T; N is unknown and encoded as zeros).
IUPAC = {
    "A": "A", "C": "C", "G": "G", "T": "T", "U": "T",
    "R": "AG", "Y": "CT", "S": "CG", "W": "AT", "K": "GT", "M": "AC",
    "B": "CGT", "D": "AGT", "H": "ACT", "V": "ACG", "N": "",
}
_COMPLEMENT = str.maketrans("ACGTURYSWKMBDHVN", "TGCAAYRSWMKVHDBN")
_IUPAC_MODES = ("error", "fractional")
_PAD_MODES = (None, "right", "left", "both")


@dataclass(frozen=True)
class Sequences:
    """Named DNA sequences (upper case, ``U`` read as ``T``), in the order they were given.

    Attributes
    ----------
    names : tuple of str
        Record identifiers (FASTA ids, or ``seq0``, ``seq1``, ... for plain strings).
    sequences : tuple of str
        The letters, checked against the IUPAC code.
    source : str
        Where they came from (a file name, or ``"input"``), used in error messages.
    """

    names: tuple[str, ...]
    sequences: tuple[str, ...]
    source: str = "input"

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i: int) -> str:
        return self.sequences[i]

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.sequences], dtype=np.int64)

    def label(self, i: int) -> str:
        """How record ``i`` is named in messages: ``'name' (record i of source)``."""
        return f"record {self.names[i]!r} (#{i} of {self.source})"

    def one_hot(self, **options: object) -> torch.Tensor:
        """Shortcut for :func:`one_hot` of these sequences."""
        return one_hot(self, **options)

    def to_frame(self):  # noqa: ANN201 - pandas is imported lazily
        import pandas as pd

        return pd.DataFrame({"name": list(self.names), "length": self.lengths, "sequence": list(self.sequences)})


def _clean(seq: object, label: str) -> str:
    s = str(seq).upper().replace("U", "T")
    if not s:
        raise ProbeError(f"{label} is empty (a zero-length sequence)")
    bad = [i for i, c in enumerate(s) if c not in IUPAC]
    if bad:
        i = bad[0]
        raise ProbeError(f"{label} holds {s[i]!r} at position {i}, which is not a nucleotide letter "
                         f"(allowed: {''.join(IUPAC)}); {len(bad)} such letter(s) in all")
    return s


def as_sequences(seqs: object, names: Sequence[str] | None = None) -> Sequences:
    """Turn strings, Biopython ``Seq``/``SeqRecord`` objects, or a :class:`Sequences` into :class:`Sequences`.

    Raises
    ------
    ProbeError
        If there are no sequences, one is empty or holds a letter that is not IUPAC.
    """
    if isinstance(seqs, Sequences):
        return seqs
    if isinstance(seqs, (str, bytes)) or hasattr(seqs, "seq") or type(seqs).__name__ == "Seq":
        seqs = [seqs]
    items = list(seqs) if isinstance(seqs, Iterable) else [seqs]
    if not items:
        raise ProbeError("no sequences were given")
    out_names, out_seqs = [], []
    for i, item in enumerate(items):
        name = names[i] if names is not None else getattr(item, "id", None) or f"seq{i}"
        raw = item.seq if hasattr(item, "seq") else item
        if isinstance(raw, bytes):
            raw = raw.decode("ascii", errors="replace")
        out_seqs.append(_clean(raw, f"record {name!r} (#{i} of input)"))
        out_names.append(str(name))
    if names is not None and len(names) != len(items):
        raise ProbeError(f"{len(names)} names were given for {len(items)} sequences")
    return Sequences(tuple(out_names), tuple(out_seqs))


def read_fasta(path: str | Path, *, format: str = "fasta") -> Sequences:
    """Read a FASTA file with Biopython ``SeqIO``.

    Parameters
    ----------
    path : str or Path
        The file.
    format : str, default "fasta"
        A Biopython ``SeqIO`` format; ``"fasta-blast"`` accepts ``#``/``!``/``;`` comment lines.

    Returns
    -------
    Sequences
        Names are the record ids.

    Raises
    ------
    ProbeError
        If the file is missing, holds no records, cannot be parsed, or a record is empty or holds a
        letter that is not IUPAC (the message names the file and the record).
    """
    from Bio import SeqIO

    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"FASTA file {str(path)!r} does not exist")
    try:
        with path.open() as handle:
            records = list(SeqIO.parse(handle, format))
    except (ValueError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0]
        raise ProbeError(f"FASTA file {str(path)!r} could not be parsed: {first}") from None
    if not records:
        raise ProbeError(f"FASTA file {str(path)!r} holds no records (is it empty, or not FASTA?)")
    names, seqs = [], []
    for i, r in enumerate(records):
        label = f"record {r.id!r} (#{i} of {path.name})"
        seqs.append(_clean(r.seq, label))
        names.append(r.id)
    return Sequences(tuple(names), tuple(seqs), source=path.name)


def one_hot(seqs: object, *, iupac: str = "error", pad: str | None = None, length: int | None = None,
            names: Sequence[str] | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """One-hot encode DNA as a float tensor of shape (N, 4, L), rows in ``ACGT`` order.

    Parameters
    ----------
    seqs : str, Seq, SeqRecord, Sequences or a list of them
    iupac : {"error", "fractional"}, default "error"
        Ambiguity letters other than ``N``: raise ``ProbeError`` naming record and position, or
        encode as the uniform mixture of the bases they stand for. ``N`` is always an all-zero column.
    pad : {None, "right", "left", "both"}, default None
        Unequal lengths: ``None`` refuses them (``ProbeError`` naming the records); otherwise the
        shorter sequences are padded with all-zero (``N``) columns on that side (``"both"`` centres them).
    length : int, optional
        Pad every sequence to this length (needs ``pad``; a longer sequence is an error).
    names : list of str, optional
        Record names for plain strings.
    dtype : torch.dtype, optional
        Default ``torch.get_default_dtype()``.

    Returns
    -------
    torch.Tensor, shape (N, 4, L)
    """
    if iupac not in _IUPAC_MODES:
        raise ProbeError(f"iupac must be one of {_IUPAC_MODES}, got {iupac!r}")
    if pad not in _PAD_MODES:
        raise ProbeError(f"pad must be one of {_PAD_MODES}, got {pad!r}")
    s = as_sequences(seqs, names)
    lengths = s.lengths
    target = int(lengths.max()) if length is None else int(length)
    if pad is None and (lengths != target).any():
        odd = np.nonzero(lengths != lengths[0])[0] if length is None else np.nonzero(lengths != target)[0]
        i = int(odd[0])
        raise ProbeError(f"sequences have unequal lengths: {s.label(i)} has {lengths[i]} bases where "
                         f"{s.label(0)} has {lengths[0]}"
                         f"{'' if length is None else f' (length={target} was asked)'}; "
                         "pass pad='right', 'left' or 'both' to pad with N")
    if (lengths > target).any():
        i = int(np.nonzero(lengths > target)[0][0])
        raise ProbeError(f"{s.label(i)} has {lengths[i]} bases, more than length={target}")
    table = np.zeros((256, 4), dtype=np.float32)
    for letter, bases in IUPAC.items():
        for b in bases:
            table[ord(letter), ALPHABET.index(b)] = 1.0 / len(bases)
    out = np.zeros((len(s), 4, target), dtype=np.float32)
    for i, seq in enumerate(s.sequences):
        codes = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
        if iupac == "error":
            amb = np.nonzero(~np.isin(codes, np.frombuffer(b"ACGTN", dtype=np.uint8)))[0]
            if len(amb):
                p = int(amb[0])
                raise ProbeError(f"{s.label(i)} holds the ambiguity letter {seq[p]!r} at position {p}; "
                                 "pass iupac='fractional' to encode it as a mixture of bases")
        gap = target - len(seq)
        start = {None: 0, "right": 0, "left": gap, "both": gap // 2}[pad]
        out[i, :, start:start + len(seq)] = table[codes].T
    return torch.from_numpy(out).to(dtype or torch.get_default_dtype())


def decode(X: torch.Tensor, *, unknown: str = "N") -> list[str]:
    """Strings from one-hot (N, 4, L) tensors: the argmax base, ``unknown`` where a column is all zero.

    Fractional columns decode to their most likely base.
    """
    X = torch.as_tensor(X).detach().cpu()
    if X.dim() == 2:
        X = X[None]
    if X.dim() != 3 or X.shape[1] != 4:
        raise ProbeError(f"expected one-hot DNA of shape (N, 4, L), got {tuple(X.shape)}")
    idx = X.argmax(1).numpy()
    empty = (X.abs().sum(1) == 0).numpy()
    letters = np.frombuffer(ALPHABET.encode(), dtype=np.uint8)[idx]
    letters[empty] = ord(unknown)
    return [row.tobytes().decode() for row in letters]


def reverse_complement(x: object) -> object:
    """Reverse complement of a string (IUPAC-aware), a :class:`Sequences`, or a one-hot tensor (N, 4, L).

    For tensors in ``ACGT`` order the complement is the flip of the base axis, so
    ``rc(X) = X.flip(1, 2)``; all-zero (``N``) columns stay all-zero.
    """
    if torch.is_tensor(x):
        if x.dim() < 2 or x.shape[-2] != 4:
            raise ProbeError(f"expected one-hot DNA with 4 rows on axis -2, got shape {tuple(x.shape)}")
        return x.flip(-2, -1)
    if isinstance(x, Sequences):
        return Sequences(x.names, tuple(reverse_complement(s) for s in x.sequences), x.source)
    if isinstance(x, str):
        s = _clean(x, "sequence")
        return s.translate(_COMPLEMENT)[::-1]
    raise ProbeError(f"reverse_complement takes a string, Sequences or a tensor, got {type(x).__name__}")
