"""Relations that RDKit descriptors of any molecule obey by their definitions.

A descriptor vector that breaks one describes no molecule: ``NOCount`` above ``NumHeteroatoms``,
``TPSA`` above zero without a nitrogen or oxygen, rings that are neither aromatic nor aliphatic.
Each relation is checked only when all its descriptors are among the features:

- ``NOCount <= NumHeteroatoms <= HeavyAtomCount`` (N and O are heteroatoms, heteroatoms are heavy atoms);
- ``NumHDonors <= NumHeteroatoms`` and ``NumHAcceptors <= NumHeteroatoms`` (donors and acceptors are
  heteroatoms in RDKit's Lipinski patterns);
- ``NHOHCount <= 4 * NOCount`` (at most four hydrogens on one N or O, as in ammonium);
- ``TPSA = 0`` when ``NOCount = 0`` (Ertl's TPSA sums N and O contributions only; the converse fails for
  quaternary ammonium, whose contribution is zero);
- ``RingCount = NumAromaticRings + NumAliphaticRings``;
- ``MolWt >= 10.8 * HeavyAtomCount`` (boron, the lightest heavy atom, weighs 10.81).

:func:`repair` moves the dependent descriptor of each broken relation the least it must (the larger
side of an inequality up to what it must bound, or the bounded count down where the search lowered only
the bound; the ring total to the sum of its parts; TPSA to zero when
the search removed the last N or O, else ``NOCount`` to one), so that descriptors tied by definition move
together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["RELATIONS", "violations", "repair"]

#: ``(name, kind, descriptors)``; kind "le": d0 <= factor * d1 (factor in the last slot); "sum": d0 = d1 + d2;
#: "zero_if": d0 == 0 when d1 == 0.
RELATIONS = (
    ("NOCount <= NumHeteroatoms", "le", ("NOCount", "NumHeteroatoms"), 1.0),
    ("NumHeteroatoms <= HeavyAtomCount", "le", ("NumHeteroatoms", "HeavyAtomCount"), 1.0),
    ("NumHDonors <= NumHeteroatoms", "le", ("NumHDonors", "NumHeteroatoms"), 1.0),
    ("NumHAcceptors <= NumHeteroatoms", "le", ("NumHAcceptors", "NumHeteroatoms"), 1.0),
    ("NHOHCount <= 4 NOCount", "le", ("NHOHCount", "NOCount"), 4.0),
    ("10.8 HeavyAtomCount <= MolWt", "le_scaled", ("HeavyAtomCount", "MolWt"), 10.8),
    ("RingCount = NumAromaticRings + NumAliphaticRings", "sum", ("RingCount", "NumAromaticRings",
                                                                  "NumAliphaticRings"), 1.0),
    ("TPSA = 0 when NOCount = 0", "zero_if", ("TPSA", "NOCount"), 1.0),
)


def _present(names: Sequence[str]) -> list[tuple]:
    pos = {n: i for i, n in enumerate(names)}
    return [(label, kind, tuple(pos[d] for d in ds), f) for label, kind, ds, f in RELATIONS
            if all(d in pos for d in ds)]


def violations(raw: np.ndarray, names: Sequence[str], atol: float = 1e-6) -> list[list[str]]:
    """Per row of ``raw`` (descriptors in their own units), the relations it breaks."""
    raw = np.atleast_2d(np.asarray(raw, dtype=float))
    out: list[list[str]] = [[] for _ in range(len(raw))]
    for label, kind, idx, f in _present(names):
        a = raw[:, idx[0]]
        b = raw[:, idx[1]]
        if kind == "le":
            bad = a > f * b + atol
        elif kind == "le_scaled":
            bad = f * a > b + atol
        elif kind == "sum":
            bad = np.abs(a - b - raw[:, idx[2]]) > atol
        else:
            bad = (np.abs(a) > atol) & (np.abs(b) <= atol)
        for k in np.flatnonzero(bad):
            out[k].append(label)
    return out


def repair(raw: np.ndarray, names: Sequence[str], moved: np.ndarray | None = None, rounds: int = 3) -> np.ndarray:
    """Move the dependent descriptors of broken relations the least they must (see the module docstring).

    Parameters
    ----------
    raw : numpy.ndarray, shape (N, F)
        Descriptors in their own units (not modified).
    names : sequence of str
    moved : numpy.ndarray of bool, shape (N, F), optional
        Which entries the search moved; a relation is repaired by changing an entry the search did *not*
        move where it can (default: none moved).
    rounds : int, default 3
        Passes over the relations (one repair can break another, e.g. NOCount -> NumHeteroatoms -> HeavyAtomCount).

    Returns
    -------
    numpy.ndarray, shape (N, F)
    """
    x = np.array(raw, dtype=float, copy=True)
    moved = np.zeros_like(x, dtype=bool) if moved is None else np.asarray(moved, dtype=bool)
    rel = _present(names)
    for _ in range(rounds):
        for _label, kind, idx, f in rel:
            a, b = idx[0], idx[1]
            if kind in ("le", "le_scaled"):
                lhs = x[:, a] if kind == "le" else f * x[:, a]
                rhs = f * x[:, b] if kind == "le" else x[:, b]
                bad = lhs > rhs
                # where the search lowered the bound and left the bounded count alone, the count follows it down
                down = bad & moved[:, b] & ~moved[:, a]
                up = bad & ~down
                x[down, a] = np.floor(x[down, b] * f) if kind == "le" else np.floor(x[down, b] / f)
                x[up, b] = np.ceil(x[up, a] / f) if kind == "le" else f * x[up, a]
            elif kind == "sum":
                c = idx[2]
                total_only = moved[:, a] & ~moved[:, b] & ~moved[:, c] & (x[:, a] >= x[:, b])
                x[total_only, c] = x[total_only, a] - x[total_only, b]
                x[~total_only, a] = x[~total_only, b] + x[~total_only, c]
            else:
                bad = (x[:, b] == 0) & (x[:, a] != 0)
                x[bad & moved[:, b], a] = 0.0
                x[bad & ~moved[:, b], b] = 1.0
    return x
