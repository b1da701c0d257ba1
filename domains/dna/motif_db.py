"""Motif databases as position weight matrices: JASPAR (as pyjaspar ships it) or a MEME file.

A matrix is a (4, w) array of base probabilities in ``ACGT`` order; JASPAR counts are turned into
probabilities column by column, as JASPAR's own MEME-format downloads are.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probe import ProbeError

from .io import ALPHABET

__all__ = ["MotifSet", "jaspar_motifs", "read_meme_motifs", "motif_set"]


@dataclass(frozen=True)
class MotifSet:
    """Named position weight matrices.

    Attributes
    ----------
    ids : tuple of str
        Matrix ids (``MA0099.4``) or the MEME file's motif names.
    names : tuple of str
        Factor names (``FOS::JUN``).
    pwms : tuple of numpy.ndarray, each (4, w)
        Base probabilities, columns summing to 1.
    families : tuple of str
        TF families (JASPAR's ``tf_family``, joined by ``"; "``; empty where unknown).
    source : str
        Where the matrices came from (``"JASPAR2026 CORE vertebrates"``, a file name).
    """

    ids: tuple[str, ...]
    names: tuple[str, ...]
    pwms: tuple[np.ndarray, ...]
    families: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return len(self.ids)

    def as_dict(self) -> dict[str, np.ndarray]:
        """``{id: pwm}``."""
        return dict(zip(self.ids, self.pwms))

    def subset(self, ids: list[str]) -> MotifSet:
        """The matrices with the given ids, in that order."""
        where = {k: i for i, k in enumerate(self.ids)}
        missing = [k for k in ids if k not in where]
        if missing:
            raise ProbeError(f"matrices {missing} are not in {self.source}")
        idx = [where[k] for k in ids]
        return MotifSet(tuple(self.ids[i] for i in idx), tuple(self.names[i] for i in idx),
                        tuple(self.pwms[i] for i in idx), tuple(self.families[i] for i in idx), self.source)


def _pwm(counts: object) -> np.ndarray:
    c = np.array([counts[b] for b in ALPHABET], dtype=np.float64)
    return c / c.sum(0, keepdims=True)


@functools.lru_cache(maxsize=8)
def jaspar_motifs(collection: str = "CORE", tax_group: str | None = "vertebrates", *, release: str | None = None,
                  all_versions: bool = False) -> MotifSet:
    """Matrices of the JASPAR database that pyjaspar ships (nothing is downloaded).

    Parameters
    ----------
    collection : str, default "CORE"
        JASPAR collection (``CORE``, ``UNVALIDATED``, ...).
    tax_group : str or None, default "vertebrates"
        Taxonomic group (``vertebrates``, ``plants``, ``insects``, ``nematodes``, ``fungi``, ``urochordates``);
        None: all.
    release : str, optional
        A release pyjaspar holds (``"JASPAR2024"``); default its latest.
    all_versions : bool, default False
        Every version of each matrix instead of the latest.

    Returns
    -------
    MotifSet
    """
    from pyjaspar import jaspardb

    try:
        db = jaspardb(release=release) if release else jaspardb()
    except (ValueError, KeyError, OSError) as err:
        raise ProbeError(f"JASPAR release {release!r} is not shipped with pyjaspar: {err}") from None
    if release and release not in db.get_releases():
        raise ProbeError(f"JASPAR release {release!r} is not shipped with pyjaspar; it has {db.get_releases()}")
    ms = db.fetch_motifs(collection=collection, tax_group=[tax_group] if tax_group else None,
                         all_versions=all_versions)
    if not ms:
        raise ProbeError(f"JASPAR {db.release} has no matrices in collection {collection!r}, tax group "
                         f"{tax_group!r}")
    return MotifSet(tuple(m.matrix_id for m in ms), tuple(m.name for m in ms), tuple(_pwm(m.counts) for m in ms),
                    tuple("; ".join(m.tf_family or []) for m in ms),
                    f"{db.release} {collection}{'' if tax_group is None else ' ' + tax_group}")


def read_meme_motifs(path: str | Path) -> MotifSet:
    """The matrices of a MEME-format motif file (memelite's reader); ids and names from each ``MOTIF`` line."""
    from memelite.io import read_meme

    path = Path(path)
    if not path.exists():
        raise ProbeError(f"MEME file {str(path)!r} does not exist")
    try:
        found = read_meme(str(path))
    except (ValueError, AttributeError, IndexError) as err:
        raise ProbeError(f"MEME file {str(path)!r} could not be read: {err}") from None
    if not found:
        raise ProbeError(f"MEME file {str(path)!r} holds no motifs (no MOTIF lines with a letter-probability matrix)")
    ids, names, pwms = [], [], []
    for key, pwm in found.items():
        fields = key.split()
        ids.append(fields[0])
        names.append(fields[1] if len(fields) > 1 else fields[0])
        p = np.asarray(pwm, dtype=np.float64)
        pwms.append(p / p.sum(0, keepdims=True))
    return MotifSet(tuple(ids), tuple(names), tuple(pwms), ("",) * len(ids), path.name)


def _by_ids(ids: list[str]) -> MotifSet:
    from .datasets import jaspar_db, jaspar_motif

    with warnings.catch_warnings():  # pyjaspar warns of an unknown id before jaspar_motif raises, naming it
        warnings.simplefilter("ignore")
        ms = [jaspar_motif(i) for i in ids]
    return MotifSet(tuple(m.matrix_id for m in ms), tuple(m.name for m in ms), tuple(_pwm(m.counts) for m in ms),
                    tuple("; ".join(m.tf_family or []) for m in ms), f"{jaspar_db().release} (by id)")


def motif_set(motifs: object = "vertebrates") -> MotifSet:
    """A :class:`MotifSet` from what a user names.

    ``motifs`` is a MotifSet; a JASPAR taxonomic group (``"vertebrates"``; ``"all"`` for every group), optionally
    with a release as ``"vertebrates@JASPAR2024"``; a path to a ``.meme``/``.txt`` MEME file; a list of JASPAR
    matrix ids; or a dict ``{name: JASPAR id}`` or ``{name: (4, w) array}``.
    """
    if isinstance(motifs, MotifSet):
        return motifs
    if isinstance(motifs, (str, Path)) and (Path(motifs).suffix in (".meme", ".txt") or Path(motifs).exists()):
        return read_meme_motifs(motifs)
    if isinstance(motifs, str):
        group, _, release = motifs.partition("@")
        return jaspar_motifs("CORE", None if group == "all" else group, release=release or None)
    if isinstance(motifs, dict):
        values = list(motifs.values())
        if values and all(isinstance(v, str) for v in values):
            sub = _by_ids(values)
            return MotifSet(sub.ids, tuple(motifs), sub.pwms, sub.families, sub.source)
        pwms = [np.asarray(v, dtype=np.float64) for v in values]
        for name, p in zip(motifs, pwms):
            if p.ndim != 2 or p.shape[0] != 4 or (p < 0).any():
                raise ProbeError(f"motif {name!r} must be a (4, w) array of non-negative frequencies, got "
                                 f"shape {p.shape}")
        return MotifSet(tuple(motifs), tuple(motifs), tuple(p / p.sum(0, keepdims=True) for p in pwms),
                        ("",) * len(pwms), "input")
    if isinstance(motifs, (list, tuple)):
        return _by_ids([str(m) for m in motifs])
    raise ProbeError(f"motifs must be a JASPAR tax group, a MEME file, ids or a dict; got {type(motifs).__name__}")
