"""Filters a chemist applies to proposed molecules before looking at them.

Each filter maps a molecule to ``True`` (keep) or ``False`` (remove); :class:`MoleculeFilters`
applies them in a fixed order, cheapest first, and counts what each one removed:

- ``valid``: RDKit sanitises the molecule, which is neutral, has no radicals and only organic-subset
  elements (H, B, C, N, O, F, Si, P, S, Cl, Br, I).
- ``sa_score``: synthetic accessibility at most ``max_sa`` on Ertl & Schuffenhauer's 1 (easy) to
  10 (hard) scale (J. Cheminform. 1, 8 (2009); RDKit ``Contrib/SA_Score``).
- ``qed``: quantitative estimate of drug-likeness at least ``min_qed`` (Bickerton et al., Nat. Chem.
  4, 90 (2012); ``rdkit.Chem.QED``).
- ``alerts``: no PAINS (Baell & Holloway, J. Med. Chem. 53, 2719 (2010)) or Brenk (Brenk et al.,
  ChemMedChem 3, 435 (2008)) substructure alert (RDKit ``FilterCatalog``) that the reference molecule
  does not carry itself (an edit is judged by what it introduces: an alkyl halide's neighbours keep
  their halide).
- ``strain``: no strained or unstable motif, unless the reference has one too: a three- or
  four-membered ring with an endocyclic double bond (azirines, cyclopropenes, cyclobutenes), an atom
  shared by two small rings, a cumulene (``X=C=X`` other than the heterocumulenes ``O=C=N``,
  ``N=C=S``), or a chain of heteroatoms ``N-O-N``, ``O-O``, ``N-N-N``.
- ``similarity``: Tanimoto similarity of Morgan fingerprints (radius 2, 2048 bits) to the reference
  molecule at least ``min_similarity``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from rdkit import Chem, DataStructs
from rdkit.Chem import QED, rdFingerprintGenerator
from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams

from probe.errors import ProbeError

__all__ = ["DEFAULT_FILTERS", "FILTER_NAMES", "MoleculeFilters", "sa_score", "structural_alerts", "strained"]

FILTER_NAMES = ("valid", "similarity", "strain", "sa_score", "qed", "alerts")
_ORGANIC = {1, 5, 6, 7, 8, 9, 14, 15, 16, 17, 35, 53}
_UNSTABLE = tuple(Chem.MolFromSmarts(s) for s in (
    "[*]=[#6]=[*]",  # cumulenes and ketenes (heterocumulenes O=C=N, N=C=S excluded below)
    "[#7]-,:[#8]-,:[#7]", "[#8]-[#8]", "[#7]-[#7]-[#7]",
))
_HETEROCUMULENE = Chem.MolFromSmarts("[#7,#8,#16]=[#6]=[#7,#8,#16]")


@lru_cache(maxsize=1)
def _sascorer():
    from rdkit import RDConfig

    path = os.path.join(RDConfig.RDContribDir, "SA_Score", "sascorer.py")
    if not os.path.exists(path):
        raise ProbeError(f"RDKit's SA_Score contribution is not installed at {path}")
    spec = importlib.util.spec_from_file_location("rdkit_contrib_sascorer", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def sa_score(mol: Chem.Mol) -> float:
    """Synthetic accessibility score, 1 (easy) to 10 (hard) (Ertl & Schuffenhauer 2009, RDKit Contrib)."""
    return float(_sascorer().calculateScore(mol))


@lru_cache(maxsize=1)
def _catalog() -> FilterCatalog:
    params = FilterCatalogParams()
    params.AddCatalog(FilterCatalogParams.FilterCatalogs.PAINS)
    params.AddCatalog(FilterCatalogParams.FilterCatalogs.BRENK)
    return FilterCatalog(params)


def structural_alerts(mol: Chem.Mol) -> list[str]:
    """Descriptions of the PAINS and Brenk alerts that ``mol`` matches (empty when none)."""
    return [e.GetDescription() for e in _catalog().GetMatches(mol)]


def strained(mol: Chem.Mol) -> bool:
    """Whether ``mol`` holds a strained small ring or an unstable motif (see the module docstring)."""
    ri = mol.GetRingInfo()
    small = [set(r) for r in ri.AtomRings() if len(r) <= 4]
    for ring in ri.BondRings():
        if len(ring) <= 4 and any(mol.GetBondWithIdx(b).GetBondType() != Chem.BondType.SINGLE for b in ring):
            return True
    for i in range(len(small)):
        for j in range(i + 1, len(small)):
            if small[i] & small[j]:
                return True
    hetero = {m[1] for m in mol.GetSubstructMatches(_HETEROCUMULENE)}
    for patt in _UNSTABLE:
        for match in mol.GetSubstructMatches(patt):
            if patt is _UNSTABLE[0] and match[1] in hetero:
                continue
            return True
    return False


def _valid(mol: Chem.Mol) -> bool:
    if mol is None or mol.GetNumAtoms() == 0:
        return False
    try:
        Chem.SanitizeMol(Chem.Mol(mol))
    except Exception:
        return False
    return all(a.GetAtomicNum() in _ORGANIC and a.GetFormalCharge() == 0 and a.GetNumRadicalElectrons() == 0
               for a in mol.GetAtoms())


@dataclass(frozen=True)
class MoleculeFilters:
    """Keyword-only thresholds of the filters; call :meth:`apply` on candidates.

    Parameters
    ----------
    max_sa : float, default 6.0
        Largest synthetic-accessibility score kept (above 6 counts as hard to make).
    min_qed : float, default 0.2
    alerts : bool, default True
        Remove molecules with a PAINS or Brenk alert.
    strain : bool, default True
        Remove strained small rings and unstable motifs.
    min_similarity : float, default 0.4
        Tanimoto floor to the reference molecule.
    skip : sequence of str, default ()
        Filter names (from :data:`FILTER_NAMES`) not to apply.
    """

    max_sa: float = 6.0
    min_qed: float = 0.2
    alerts: bool = True
    strain: bool = True
    min_similarity: float = 0.4
    skip: tuple = ()

    def __post_init__(self):
        bad = [s for s in self.skip if s not in FILTER_NAMES]
        if bad:
            raise ProbeError(f"unknown filter {bad[0]!r}; filters are {FILTER_NAMES}")

    def _active(self) -> list[str]:
        off = set(self.skip)
        if not self.alerts:
            off.add("alerts")
        if not self.strain:
            off.add("strain")
        return [n for n in FILTER_NAMES if n not in off]

    def apply(self, mols: Sequence[Chem.Mol], reference: Chem.Mol) -> tuple[np.ndarray, dict, pd.DataFrame]:
        """Which of ``mols`` pass, what each filter removed, and the per-molecule scores.

        Filters run in the order of :data:`FILTER_NAMES`; a molecule is counted against the
        first filter that removes it.

        Returns
        -------
        keep : numpy.ndarray of bool, shape (N,)
        removed : dict
            Filter name -> number of molecules it removed.
        scores : pandas.DataFrame
            ``similarity``, ``sa_score``, ``qed``, ``alerts`` (``;``-joined), ``strained``, ``removed_by``
            (the first filter that removed the molecule, empty when kept); NaN where not computed.
        """
        gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
        fp0 = gen.GetFingerprint(reference)
        ref_alerts = set(structural_alerts(reference))
        ref_strained = strained(reference)
        n = len(mols)
        keep = np.ones(n, dtype=bool)
        removed = {name: 0 for name in self._active()}
        cols = {"similarity": np.full(n, np.nan), "sa_score": np.full(n, np.nan), "qed": np.full(n, np.nan),
                "alerts": [""] * n, "strained": [False] * n, "removed_by": [""] * n}
        for i, m in enumerate(mols):
            why = ""
            for name in removed:
                if name == "valid":
                    ok = _valid(m)
                elif name == "similarity":
                    cols["similarity"][i] = DataStructs.TanimotoSimilarity(fp0, gen.GetFingerprint(m))
                    ok = cols["similarity"][i] >= self.min_similarity
                elif name == "sa_score":
                    cols["sa_score"][i] = sa_score(m)
                    ok = cols["sa_score"][i] <= self.max_sa
                elif name == "qed":
                    cols["qed"][i] = QED.qed(m)
                    ok = cols["qed"][i] >= self.min_qed
                elif name == "alerts":
                    hits = structural_alerts(m)
                    cols["alerts"][i] = ";".join(hits)
                    ok = set(hits) <= ref_alerts
                else:
                    cols["strained"][i] = strained(m)
                    ok = ref_strained or not cols["strained"][i]
                if not ok:
                    why = name
                    break
            if why:
                keep[i] = False
                removed[why] += 1
                cols["removed_by"][i] = why
        return keep, removed, pd.DataFrame(cols)


#: The filters :func:`domains.chem.counterfactuals` applies unless told otherwise.
DEFAULT_FILTERS = MoleculeFilters()
