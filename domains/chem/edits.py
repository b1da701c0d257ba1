"""Molecules one or two graph edits away: the close neighbours a medicinal chemist would draw.

The edits are the action space of MolDQN (Zhou, Kearnes, Li, Zare & Riley, "Optimization of
molecules via deep reinforcement learning", Sci. Rep. 9, 10752 (2019)) restricted to single
steps on the heavy-atom graph:

- change one atom's element (within ``elements``; aromatic atoms among C, N, O, S);
- add one atom (``elements``) by a single bond to an atom that carries a hydrogen;
- remove one terminal heavy atom;
- raise or lower the order of one non-aromatic bond by one (single <-> double <-> triple).

Every product is sanitised by RDKit; those that fail are dropped. All single edits are
enumerated; a second edit is drawn at random (uniformly over the edits of a random first product)
until ``n`` products or ``4 n`` draws are spent.
"""

from __future__ import annotations

import random

import pandas as pd
from rdkit import Chem

from probe.errors import ProbeError

from .io import quiet_rdkit

__all__ = ["graph_edits", "single_edits"]

_AROMATIC_OK = {6, 7, 8, 16}
_BONDS = (Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE)


def _sanitized(rw: Chem.RWMol, touched: tuple) -> str | None:
    m = rw.GetMol()
    for i in touched:
        if i < m.GetNumAtoms():
            a = m.GetAtomWithIdx(i)
            a.SetNoImplicit(False)
            a.SetNumExplicitHs(0)
    try:
        Chem.SanitizeMol(m)
    except Exception:
        return None
    smi = Chem.MolToSmiles(m)
    return smi if smi and "." not in smi and Chem.MolFromSmiles(smi) is not None else None


def _kekulized(mol: Chem.Mol) -> Chem.Mol:
    base = Chem.Mol(mol)
    Chem.Kekulize(base, clearAromaticFlags=False)
    return base


def _actions(base: Chem.Mol, nums: list[int]) -> list[tuple]:
    """Every single edit of ``base`` as a small tuple (nothing is built yet)."""
    out: list[tuple] = []
    for atom in base.GetAtoms():
        i = atom.GetIdx()
        out += [("element", i, z) for z in nums
                if z != atom.GetAtomicNum() and not (atom.GetIsAromatic() and z not in _AROMATIC_OK)]
        if atom.GetTotalNumHs() > 0:
            out += [("add", i, z) for z in nums]
        if atom.GetDegree() == 1 and base.GetNumAtoms() > 1:
            out.append(("remove", i, 0))
    for bond in base.GetBonds():
        if bond.GetIsAromatic() or bond.GetBondType() not in _BONDS:
            continue
        k = _BONDS.index(bond.GetBondType())
        out += [("bond", bond.GetIdx(), k + step) for step in (-1, 1) if 0 <= k + step < len(_BONDS)]
    return out


def _apply(base: Chem.Mol, action: tuple) -> str | None:
    kind, i, v = action
    rw = Chem.RWMol(base)
    if kind == "element":
        rw.GetAtomWithIdx(i).SetAtomicNum(v)
        touched = (i,) + tuple(n.GetIdx() for n in base.GetAtomWithIdx(i).GetNeighbors())
    elif kind == "add":
        j = rw.AddAtom(Chem.Atom(v))
        rw.AddBond(i, j, Chem.BondType.SINGLE)
        touched = (i, j)
    elif kind == "remove":
        nbr = base.GetAtomWithIdx(i).GetNeighbors()[0].GetIdx()
        rw.RemoveAtom(i)
        touched = (nbr - (nbr > i),)
    else:
        bond = rw.GetBondWithIdx(i)
        bond.SetBondType(_BONDS[v])
        touched = (bond.GetBeginAtomIdx(), bond.GetEndAtomIdx())
    return _sanitized(rw, touched)


def single_edits(mol: Chem.Mol, elements: tuple = ("C", "N", "O", "S", "F", "Cl")) -> set[str]:
    """Canonical SMILES of every valid molecule one edit from ``mol`` (see the module docstring)."""
    nums = [Chem.GetPeriodicTable().GetAtomicNumber(e) for e in elements]
    base = _kekulized(mol)
    out = {_apply(base, a) for a in _actions(base, nums)}
    out.discard(None)
    out.discard(Chem.MolToSmiles(mol))
    return out


def graph_edits(smiles: str, n: int = 1000, *, max_edits: int = 2, elements: tuple = ("C", "N", "O", "S", "F", "Cl"),
                seed: int = 0) -> pd.DataFrame:
    """Distinct valid molecules one to ``max_edits`` graph edits from ``smiles``.

    Parameters
    ----------
    smiles : str
    n : int, default 1000
        Most molecules returned (all single edits first, then random double edits).
    max_edits : int, default 2
        1 or 2.
    elements : tuple of str, default ("C", "N", "O", "S", "F", "Cl")
        Elements that edits may introduce.
    seed : int, default 0

    Returns
    -------
    pandas.DataFrame
        Columns ``smiles`` (canonical, different from the input), ``mutations`` (edits, 1 or 2), in the
        same form as :func:`domains.chem.counterfactuals.stoned`.
    """
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ProbeError(f"invalid SMILES {smiles!r}")
    if max_edits not in (1, 2):
        raise ProbeError(f"max_edits must be 1 or 2, got {max_edits}")
    canon = Chem.MolToSmiles(mol)
    with quiet_rdkit():
        first = sorted(single_edits(mol, elements))
        rng = random.Random(seed)
        if len(first) > n:
            first = sorted(rng.sample(first, n))
        seen = {s: 1 for s in first}
        if max_edits == 2 and first:
            nums = [Chem.GetPeriodicTable().GetAtomicNumber(e) for e in elements]
            parents: dict[str, tuple] = {}
            for _ in range(4 * n):
                if len(seen) >= n:
                    break
                parent = rng.choice(first)
                if parent not in parents:
                    base = _kekulized(Chem.MolFromSmiles(parent))
                    parents[parent] = (base, _actions(base, nums))
                base, actions = parents[parent]
                if actions:
                    s = _apply(base, rng.choice(actions))
                    if s is not None and s != canon and s not in seen:
                        seen[s] = 2
    return pd.DataFrame({"smiles": list(seen), "mutations": list(seen.values())})
