"""Free-Wilson analysis: additive substituent contributions of a congeneric series.

Each molecule of a series is split into a common core and substituents at labelled
positions with RDKit's R-group decomposition; the activity is modelled as

.. math:: y_m = \\mu + \\sum_{p} a_{p,\\,s_p(m)} + \\varepsilon_m,

the sum over positions ``p`` of the contribution ``a`` of the substituent ``s_p(m)`` that
molecule ``m`` carries there, fitted by least squares (Free & Wilson, "A Mathematical
Contribution to Structure-Activity Studies", J. Med. Chem. 7, 395 (1964)). Contributions
are identified up to a shift per position; they are reported centred so that their
count-weighted mean at each position is zero. The atoms of each substituent in each
molecule are kept, so that per-atom sensitivities of a model can be summed per substituent
and compared with these contributions (a ground truth for atom maps on real data).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from rdkit import Chem
from rdkit.Chem import rdRGroupDecomposition as rgd

from probe.errors import ProbeError

from .io import as_molecules, quiet_rdkit

__all__ = ["FreeWilson", "free_wilson", "substituent_scores"]


@dataclass(frozen=True, eq=False)
class FreeWilson:
    """A Free-Wilson decomposition.

    Attributes
    ----------
    contributions : pandas.DataFrame
        One row per (position, substituent): ``position`` (``R1``, ...), ``substituent`` (SMILES
        with its attachment point), ``count`` (molecules carrying it), ``contribution`` (activity
        units, centred per position).
    matched : numpy.ndarray of int
        Indices (into the input) of the molecules the core matched.
    assignments : pandas.DataFrame
        One row per matched molecule: ``index`` and, per position, the substituent SMILES.
    atoms : tuple of dict
        Per matched molecule, ``position -> tuple of atom indices`` of its substituent there.
    intercept : float
    r2 : float
        Coefficient of determination of the fit on the matched molecules.
    """

    contributions: pd.DataFrame
    matched: np.ndarray
    assignments: pd.DataFrame
    atoms: tuple
    intercept: float
    r2: float

    def to_frame(self) -> pd.DataFrame:
        return self.contributions.copy()


def _core_and_anchors(core_smiles: str) -> tuple[Chem.Mol, dict]:
    """The core without its attachment dummies and, per R label, the core atom it hangs on."""
    core = Chem.MolFromSmiles(core_smiles, sanitize=False)
    anchors, dummies = {}, []
    for atom in core.GetAtoms():
        if atom.GetAtomicNum() == 0:
            dummies.append(atom.GetIdx())
            anchors[f"R{atom.GetAtomMapNum()}"] = atom.GetNeighbors()[0].GetIdx()
    rw = Chem.RWMol(core)
    for d in sorted(dummies, reverse=True):
        rw.RemoveAtom(d)
    # indices shift down past each removed dummy
    shift = {a: a - sum(d < a for d in dummies) for a in anchors.values()}
    anchors = {k: shift[v] for k, v in anchors.items()}
    q = rw.GetMol()
    q.UpdatePropertyCache(strict=False)
    return q, anchors


def _substituent_atoms(mol: Chem.Mol, core: Chem.Mol, anchors: dict) -> dict | None:
    match = mol.GetSubstructMatch(core)
    if not match:
        return None
    in_core = set(match)
    out = {}
    for label, anchor in anchors.items():
        start = [n.GetIdx() for n in mol.GetAtomWithIdx(match[anchor]).GetNeighbors() if n.GetIdx() not in in_core]
        seen, stack = set(), list(start)
        while stack:
            a = stack.pop()
            if a in seen:
                continue
            seen.add(a)
            stack += [n.GetIdx() for n in mol.GetAtomWithIdx(a).GetNeighbors() if n.GetIdx() not in in_core]
        out[label] = tuple(sorted(seen))
    return out


def free_wilson(molecules: object, activity: object, scaffold: Chem.Mol) -> FreeWilson:
    """Free-Wilson decomposition of a series around ``scaffold``.

    Parameters
    ----------
    molecules : SMILES, Mols, SDF path, Series or MoleculeSet
        The series.
    activity : array-like of shape (N,)
        Activity per molecule (log units, e.g. pIC50).
    scaffold : rdkit Mol
        The core with labelled R-group attachment points (``R#`` atoms with ``M RGP`` labels or
        ``[*:n]``), as RDKit's R-group decomposition expects.

    Returns
    -------
    FreeWilson

    Raises
    ------
    ProbeError
        When the lengths differ, the activity is not finite, or the scaffold matches nothing.
    """
    mols = as_molecules(molecules)
    y = np.asarray(activity, dtype=float).reshape(-1)
    if len(y) != len(mols):
        raise ProbeError(f"{len(y)} activities for {len(mols)} molecules")
    if not np.isfinite(y).all():
        i = int(np.flatnonzero(~np.isfinite(y))[0])
        raise ProbeError(f"activity of molecule {i} ({mols.names[i]}) is {y[i]}")
    params = rgd.RGroupDecompositionParameters()
    params.removeHydrogensPostMatch = True
    params.onlyMatchAtRGroups = False
    dec = rgd.RGroupDecomposition([scaffold], params)
    matched = []
    with quiet_rdkit():
        for i, mol in enumerate(mols.mols):
            if dec.Add(mol) >= 0:
                matched.append(i)
        if not matched:
            raise ProbeError("the scaffold matches none of the molecules")
        dec.Process()
        rows = dec.GetRGroupsAsRows(asSmiles=True)
    labels = sorted({k for r in rows for k in r if k != "Core"}, key=lambda s: int(s[1:]))
    assign = pd.DataFrame([{k: r.get(k, "[H]") for k in labels} for r in rows])
    assign.insert(0, "index", matched)

    atoms = []
    for r, i in zip(rows, matched):
        core, anchors = _core_and_anchors(r["Core"])
        got = _substituent_atoms(mols.mols[i], core, anchors)
        atoms.append(got if got is not None else {})

    # one-hot design: one column per (position, substituent), plus the intercept
    columns = [(p, s) for p in labels for s in sorted(assign[p].unique())]
    col = {c: j for j, c in enumerate(columns)}
    A = np.zeros((len(rows), len(columns) + 1))
    A[:, -1] = 1.0
    for m, (_, r) in enumerate(assign.iterrows()):
        for p in labels:
            A[m, col[(p, r[p])]] = 1.0
    ym = y[matched]
    coef, *_ = np.linalg.lstsq(A, ym, rcond=None)
    pred = A @ coef
    r2 = 1.0 - float(((ym - pred) ** 2).sum() / ((ym - ym.mean()) ** 2).sum())
    counts = A[:, :-1].sum(0)
    contrib = coef[:-1].copy()
    intercept = float(coef[-1])
    for p in labels:
        js = [col[c] for c in columns if c[0] == p]
        shift = float((contrib[js] * counts[js]).sum() / counts[js].sum())
        contrib[js] -= shift
        intercept += shift
    table = pd.DataFrame({"position": [c[0] for c in columns], "substituent": [c[1] for c in columns],
                          "count": counts.astype(int), "contribution": contrib})
    return FreeWilson(table, np.asarray(matched), assign, tuple(atoms), intercept, r2)


def substituent_scores(fw: FreeWilson, atom_weights: dict) -> pd.DataFrame:
    """Sum per-atom weights over each substituent's atoms and average per substituent.

    Parameters
    ----------
    fw : FreeWilson
    atom_weights : dict int -> numpy.ndarray
        Per input molecule index (as in ``fw.matched``), one weight per atom.

    Returns
    -------
    pandas.DataFrame
        ``fw.contributions`` with a column ``atom_score``: the mean over molecules carrying the
        substituent of the summed weights of its atoms, centred per position like the
        contributions (NaN where no weighted molecule carries it).
    """
    sums: dict[tuple, list] = {}
    for k, i in enumerate(fw.matched):
        if int(i) not in atom_weights:
            continue
        w = np.asarray(atom_weights[int(i)])
        row = fw.assignments.iloc[k]
        for p, idx in fw.atoms[k].items():
            sums.setdefault((p, row[p]), []).append(float(w[list(idx)].sum()) if idx else 0.0)
    table = fw.contributions.copy()
    table["atom_score"] = [np.mean(sums[(p, s)]) if (p, s) in sums else np.nan
                           for p, s in zip(table.position, table.substituent)]
    n = [len(sums.get((p, s), ())) for p, s in zip(table.position, table.substituent)]
    table["scored"] = n
    for p in table.position.unique():
        sel = (table.position == p) & table.atom_score.notna()
        wts = table.loc[sel, "scored"]
        if wts.sum():
            table.loc[sel, "atom_score"] -= float((table.loc[sel, "atom_score"] * wts).sum() / wts.sum())
    return table
