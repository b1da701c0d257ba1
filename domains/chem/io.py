"""Molecules in: SMILES strings, RDKit ``Mol`` objects, SDF files and pandas columns.

Every reader returns a :class:`MoleculeSet` (molecules plus the names and original
records they came from). A record RDKit cannot read raises :class:`probe.ProbeError`
naming its index and text, or, when ``on_error="skip"``, is dropped with a warning
that names it. A ``None`` never reaches a featuriser.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rdkit import Chem, rdBase

from probe.errors import ProbeError

__all__ = ["MoleculeSet", "as_molecules", "read_sdf", "from_frame"]

_DUMMY = Chem.MolFromSmarts("[#0]")


@dataclass(frozen=True)
class MoleculeSet:
    """Parsed molecules.

    Attributes
    ----------
    mols : tuple of rdkit.Chem.Mol
        Sanitised molecules, hydrogens implicit.
    names : tuple of str
        A name per molecule (the ``_Name`` property, the frame index or ``"mol<i>"``).
    smiles : tuple of str
        Canonical SMILES per molecule.
    source : tuple of int
        Index of each molecule in the input (differs from ``range(N)`` when records were skipped).
    """

    mols: tuple
    names: tuple
    smiles: tuple
    source: tuple

    def __len__(self) -> int:
        return len(self.mols)

    def __getitem__(self, i: int) -> Chem.Mol:
        return self.mols[i]

    def subset(self, idx: Sequence[int]) -> MoleculeSet:
        """The molecules at positions ``idx``."""
        idx = [int(i) for i in idx]
        return MoleculeSet(tuple(self.mols[i] for i in idx), tuple(self.names[i] for i in idx),
                           tuple(self.smiles[i] for i in idx), tuple(self.source[i] for i in idx))


@contextlib.contextmanager
def quiet_rdkit() -> Iterator[None]:
    """Silence RDKit's C++ logger (errors are reported as ProbeError instead); the previous state is restored."""
    block = rdBase.BlockLogs()
    try:
        yield
    finally:
        del block


def _fail(msg: str, on_error: str) -> None:
    if on_error == "raise":
        raise ProbeError(msg)
    warnings.warn(msg + "; skipped", stacklevel=3)


def _check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ProbeError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def _check_mol(mol: Chem.Mol, label: str, allow_dummy: bool) -> str | None:
    """Why a parsed molecule cannot be featurised, or None."""
    if mol.GetNumAtoms() == 0:
        return f"{label} has no atoms"
    if not allow_dummy and mol.HasSubstructMatch(_DUMMY):
        dummies = [m[0] for m in mol.GetSubstructMatches(_DUMMY)]
        if dummies:
            return (f"{label} has dummy atom(s) (*, R#) at atom index {dummies}: descriptors and fingerprints of "
                    "an incomplete structure are not those of a real molecule")
    return None


def as_molecules(molecules: object, *, on_error: str = "raise", names: Sequence[str] | None = None,
                 allow_dummy: bool = False) -> MoleculeSet:
    """Parse SMILES strings, RDKit molecules, an SDF path, a pandas Series or an existing ``MoleculeSet``.

    Parameters
    ----------
    molecules : str, rdkit Mol, path, pandas.Series, MoleculeSet or iterable of str / Mol
        A single SMILES or ``Mol`` is one molecule; a path ending in ``.sdf`` (or ``.sdf.gz``) is
        read with :func:`read_sdf`; a Series is read value by value, its index giving the names.
    on_error : {"raise", "skip"}, default "raise"
        What to do with a record RDKit cannot parse or sanitise, or that holds dummy atoms:
        raise ``ProbeError`` naming its index and text, or drop it with a warning.
    names : sequence of str, optional
        Names for the molecules (default: ``_Name`` property, Series index or ``mol<i>``).
    allow_dummy : bool, default False
        Accept molecules with dummy atoms (attachment points); off by default because no
        real molecule has them.

    Returns
    -------
    MoleculeSet

    Raises
    ------
    ProbeError
        On empty input, or (``on_error="raise"``) on the first bad record.
    """
    _check_on_error(on_error)
    if isinstance(molecules, MoleculeSet):
        return molecules
    if isinstance(molecules, (str, os.PathLike)) and str(molecules).lower().endswith((".sdf", ".sdf.gz", ".mol")):
        return read_sdf(molecules, on_error=on_error, allow_dummy=allow_dummy)
    index = None
    try:
        import pandas as pd

        if isinstance(molecules, pd.Series):
            index = [str(i) for i in molecules.index]
            molecules = molecules.tolist()
        elif isinstance(molecules, pd.DataFrame):
            raise ProbeError("pass one column of the frame (df['smiles']) or use from_frame(df, column)")
    except ImportError:  # pragma: no cover
        pass
    if isinstance(molecules, (str, Chem.Mol)):
        molecules = [molecules]
    if not isinstance(molecules, Iterable):
        raise ProbeError(f"molecules must be SMILES, RDKit Mol objects, an SDF path or a pandas Series, "
                         f"got {type(molecules).__name__}")
    records = list(molecules)
    if not records:
        raise ProbeError("no molecules given (empty input)")
    if names is not None and len(names) != len(records):
        raise ProbeError(f"{len(names)} names for {len(records)} molecules")
    mols, out_names, smiles, source = [], [], [], []
    with quiet_rdkit():
        for i, rec in enumerate(records):
            if isinstance(rec, Chem.Mol):
                mol, text = Chem.Mol(rec), Chem.MolToSmiles(rec)
                try:
                    Chem.SanitizeMol(mol)
                except Exception as err:  # RDKit raises several exception types for bad chemistry
                    _fail(f"molecule {i} ({text!r}) cannot be sanitised: {err}", on_error)
                    continue
            elif isinstance(rec, str):
                text = rec.strip()
                mol = Chem.MolFromSmiles(text) if text else None
                if mol is None:
                    _fail(f"invalid SMILES at index {i}: {rec!r}", on_error)
                    continue
            else:
                _fail(f"record {i} is a {type(rec).__name__} ({rec!r}), not a SMILES string or RDKit Mol", on_error)
                continue
            why = _check_mol(mol, f"molecule {i} ({text!r})", allow_dummy)
            if why:
                _fail(why, on_error)
                continue
            mols.append(mol)
            if names is not None:
                out_names.append(str(names[i]))
            elif index is not None:
                out_names.append(index[i])
            elif mol.HasProp("_Name") and mol.GetProp("_Name"):
                out_names.append(mol.GetProp("_Name"))
            else:
                out_names.append(f"mol{i}")
            smiles.append(Chem.MolToSmiles(mol))
            source.append(i)
    if not mols:
        raise ProbeError(f"none of the {len(records)} records could be read as a molecule")
    return MoleculeSet(tuple(mols), tuple(out_names), tuple(smiles), tuple(source))


def read_sdf(path: str | os.PathLike, *, on_error: str = "raise", allow_dummy: bool = False,
             properties: bool = True) -> MoleculeSet:
    """Read every record of an SDF file.

    Parameters
    ----------
    path : str or path-like
        The file (``.sdf`` or gzipped ``.sdf.gz``).
    on_error : {"raise", "skip"}, default "raise"
        A record RDKit cannot parse raises ``ProbeError`` naming the file and record number
        (1-based), or is skipped with a warning.

    Returns
    -------
    MoleculeSet
        Names from the record title lines; SD properties stay on the molecules.
    """
    _check_on_error(on_error)
    p = Path(path)
    if not p.exists():
        raise ProbeError(f"SDF file {str(p)!r} does not exist")
    if p.suffix == ".gz":
        import gzip

        supplier = Chem.ForwardSDMolSupplier(gzip.open(p), removeHs=True)
    else:
        supplier = Chem.ForwardSDMolSupplier(str(p), removeHs=True)
    mols, names, smiles, source = [], [], [], []
    with quiet_rdkit():
        for i, mol in enumerate(supplier):
            label = f"record {i + 1} of {p.name}"
            if mol is None:
                _fail(f"{label} cannot be parsed by RDKit", on_error)
                continue
            why = _check_mol(mol, label, allow_dummy)
            if why:
                _fail(why, on_error)
                continue
            mols.append(mol)
            names.append(mol.GetProp("_Name") if mol.HasProp("_Name") and mol.GetProp("_Name") else f"mol{i}")
            smiles.append(Chem.MolToSmiles(mol))
            source.append(i)
    if not mols:
        raise ProbeError(f"no molecules could be read from {str(p)!r}")
    return MoleculeSet(tuple(mols), tuple(names), tuple(smiles), tuple(source))


def from_frame(frame: object, column: str = "smiles", *, on_error: str = "raise", name_column: str | None = None
               ) -> MoleculeSet:
    """Molecules from a pandas column of SMILES strings or RDKit ``Mol`` objects.

    Raises ``ProbeError`` naming the row label and text of an unreadable entry.
    """
    if column not in frame.columns:
        raise ProbeError(f"column {column!r} is not in the frame (columns: {list(frame.columns)})")
    names = None if name_column is None else [str(v) for v in frame[name_column]]
    series = frame[column]
    if names is not None:
        series = series.set_axis(names)
    return as_molecules(series, on_error=on_error)
