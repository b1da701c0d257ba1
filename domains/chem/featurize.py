"""Molecular features for models: RDKit 2D descriptors and Morgan fingerprints.

``featurize`` fits a :class:`Featurizer` (which columns, how to standardise) on a set of
molecules and returns :class:`Features`: the standardised matrix ``X`` for a model, the
raw values in each descriptor's own units, the bounds a real molecule can take, integer
flags, and for fingerprints the bit -> atom environment map of every molecule. The same
featuriser applied to new molecules (``features.featurizer(new)``) gives columns in the
same order and scale, which is what a trained model expects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from rdkit import Chem
from rdkit.Chem import Descriptors, rdFingerprintGenerator

from probe.errors import ProbeError
from probe.spaces import Box

from .io import MoleculeSet, as_molecules

__all__ = ["DEFAULT_DESCRIPTORS", "Featurizer", "Features", "featurize", "descriptor_bounds"]

#: Interpretable descriptors used by default: size, lipophilicity, polarity, counts.
DEFAULT_DESCRIPTORS = (
    "MolWt", "MolLogP", "MolMR", "TPSA", "LabuteASA", "HeavyAtomCount", "NumHDonors", "NumHAcceptors",
    "NumRotatableBonds", "RingCount", "NumAromaticRings", "NumAliphaticRings", "NumHeteroatoms",
    "FractionCSP3", "NHOHCount", "NOCount", "NumValenceElectrons",
)

_DESCRIPTOR_FUNCS = dict(Descriptors.descList)

# Range a descriptor of any real molecule lies in (before looking at data).
_UNIT_INTERVAL = {"FractionCSP3", "qed"}
_NON_NEGATIVE = {"MolWt", "HeavyAtomMolWt", "ExactMolWt", "MolMR", "TPSA", "LabuteASA", "BertzCT", "HallKierAlpha_pos"}
_UNBOUNDED = {"MolLogP", "HallKierAlpha", "MaxPartialCharge", "MinPartialCharge", "MaxEStateIndex", "MinEStateIndex",
              "MaxAbsEStateIndex", "MinAbsEStateIndex"}
_EXTRA_INTEGER = {"RingCount", "HeavyAtomCount", "NHOHCount", "NOCount"}


def _is_integer(name: str) -> bool:
    return name.startswith(("Num", "fr_")) or name in _EXTRA_INTEGER


def descriptor_bounds(name: str) -> tuple[float, float]:
    """``(lower, upper)`` that the RDKit descriptor ``name`` can take for a real molecule.

    Counts are non-negative, fractions and QED lie in [0, 1], sizes and surface areas are
    non-negative; descriptors without a physical limit (logP, partial charges) are unbounded.
    """
    if name in _UNIT_INTERVAL:
        return 0.0, 1.0
    if _is_integer(name) or name in _NON_NEGATIVE or name.startswith(("PEOE_VSA", "SMR_VSA", "SlogP_VSA", "EState_VSA",
                                                                      "VSA_EState", "Chi", "Kappa")):
        return 0.0, float("inf")
    return float("-inf"), float("inf")


@dataclass(frozen=True, eq=False)
class Featurizer:
    """Which features, in which order, standardised how. Call it on molecules to get :class:`Features`.

    Build one with :func:`featurize` (which fits the standardisation on its molecules) or
    :meth:`fit`. Attributes are plain values so the featuriser can be stored and reused.
    """

    kinds: tuple
    radius: int = 2
    n_bits: int = 2048
    counts: bool = False
    descriptors: tuple = DEFAULT_DESCRIPTORS
    mean: np.ndarray | None = field(default=None, repr=False)
    scale: np.ndarray | None = field(default=None, repr=False)

    @property
    def names(self) -> tuple:
        out: list[str] = []
        for k in self.kinds:
            if k == "morgan":
                out += [f"morgan_{b}" for b in range(self.n_bits)]
            else:
                out += list(self.descriptors)
        return tuple(out)

    @property
    def n_features(self) -> int:
        return len(self.names)

    def morgan_slice(self) -> slice | None:
        """Columns of the fingerprint bits (None without a fingerprint)."""
        start = 0
        for k in self.kinds:
            width = self.n_bits if k == "morgan" else len(self.descriptors)
            if k == "morgan":
                return slice(start, start + width)
            start += width
        return None

    def descriptor_slice(self) -> slice | None:
        """Columns of the descriptors (None without descriptors)."""
        start = 0
        for k in self.kinds:
            width = self.n_bits if k == "morgan" else len(self.descriptors)
            if k == "descriptors":
                return slice(start, start + width)
            start += width
        return None

    def _generator(self):
        return rdFingerprintGenerator.GetMorganGenerator(radius=self.radius, fpSize=self.n_bits)

    def raw(self, mols: MoleculeSet, bit_info: bool = True) -> tuple[np.ndarray, tuple | None]:
        """Raw feature matrix (N, F) in each feature's own units and the bit maps (or None)."""
        blocks, info = [], None
        for k in self.kinds:
            if k == "morgan":
                fp, info = _morgan(mols, self._generator(), self.counts, self.n_bits, bit_info)
                blocks.append(fp)
            else:
                blocks.append(_descriptors(mols, self.descriptors))
        return np.concatenate(blocks, axis=1), info

    @classmethod
    def fit(cls, molecules: object, *, kind: str | Sequence[str] = "morgan", radius: int = 2, n_bits: int = 2048,
            counts: bool = False, descriptors: Sequence[str] | str | None = None,
            standardize: bool | None = None) -> Featurizer:
        """Choose the columns and fit the standardisation on ``molecules``; see :func:`featurize`."""
        base = _config(kind, radius, n_bits, counts, descriptors)
        mols = as_molecules(molecules)
        raw, bit_info = base.raw(mols)
        mols, raw, _ = _drop_nonfinite(mols, raw, bit_info, base.names, "raise")
        return base._fitted(raw, standardize)

    def _fitted(self, raw: np.ndarray, standardize: bool | None) -> Featurizer:
        mean = np.zeros(raw.shape[1])
        scale = np.ones(raw.shape[1])
        for k in self.kinds:
            on = standardize if standardize is not None else (k == "descriptors")
            sl = self.morgan_slice() if k == "morgan" else self.descriptor_slice()
            if on:
                mean[sl] = raw[:, sl].mean(0)
                sd = raw[:, sl].std(0)
                scale[sl] = np.where(sd > 0, sd, 1.0)
        return Featurizer(self.kinds, self.radius, self.n_bits, self.counts, self.descriptors, mean, scale)

    def __call__(self, molecules: object, *, on_error: str = "raise", device: str | torch.device | None = None,
                 dtype: torch.dtype = torch.float32, bit_info: bool = True) -> Features:
        """Features of ``molecules`` in this featuriser's columns and scale.

        ``bit_info=False`` skips the bit -> atom maps (faster when only ``X`` is needed).
        """
        mols = as_molecules(molecules, on_error=on_error)
        raw, bit_info = self.raw(mols, bit_info)
        mols, raw, bit_info = _drop_nonfinite(mols, raw, bit_info, self.names, on_error)
        return self._features(mols, raw, bit_info, device, dtype)

    def _features(self, mols, raw, bit_info, device, dtype) -> Features:
        names = self.names
        lower = np.empty(len(names))
        upper = np.empty(len(names))
        integer = np.zeros(len(names), dtype=bool)
        for k in self.kinds:
            if k == "morgan":
                sl = self.morgan_slice()
                lower[sl], upper[sl] = 0.0, (float("inf") if self.counts else 1.0)
                integer[sl] = True
            else:
                sl = self.descriptor_slice()
                for j, name in enumerate(self.descriptors):
                    lower[sl.start + j], upper[sl.start + j] = descriptor_bounds(name)
                    integer[sl.start + j] = _is_integer(name)
        X = torch.as_tensor(self.standardize(raw), dtype=dtype, device=device)
        return Features(X=X, raw=raw, names=names, lower=lower, upper=upper, integer=integer, molecules=mols,
                        bit_info=bit_info, featurizer=self)

    def standardize(self, raw: np.ndarray) -> np.ndarray:
        """Raw units -> model units: ``(raw - mean) / scale``."""
        return (np.asarray(raw, dtype=float) - self.mean) / self.scale

    def unstandardize(self, X: object) -> np.ndarray:
        """Model units -> raw units: ``X * scale + mean``."""
        if torch.is_tensor(X):
            X = X.detach().cpu().double().numpy()
        return np.asarray(X, dtype=float) * self.scale + self.mean


@dataclass(frozen=True, eq=False)
class Features:
    """Features of N molecules.

    Attributes
    ----------
    X : torch.Tensor, shape (N, F)
        Standardised features for a model: ``(raw - mean) / scale`` (fingerprint bits are left
        as 0/1 or counts unless standardisation was asked for).
    raw : numpy.ndarray, shape (N, F)
        The same features in their own units (Daltons, Å², counts, bits).
    names : tuple of str, length F
        Descriptor names, and ``morgan_<bit>`` for fingerprint bits.
    lower, upper : numpy.ndarray, shape (F,)
        Range a real molecule's feature can take (raw units): counts and sizes are
        non-negative, fractions lie in [0, 1], bits in {0, 1}.
    integer : numpy.ndarray of bool, shape (F,)
        Integer-valued features (counts, bits).
    molecules : MoleculeSet
        The molecules, their names and canonical SMILES.
    bit_info : tuple of dict or None
        Per molecule, RDKit's Morgan bit map ``{bit: ((center_atom, radius), ...)}``: which atom
        environments set each bit (None without a fingerprint).
    featurizer : Featurizer
        Applies the same columns and standardisation to new molecules.
    """

    X: torch.Tensor
    raw: np.ndarray
    names: tuple
    lower: np.ndarray
    upper: np.ndarray
    integer: np.ndarray
    molecules: MoleculeSet
    bit_info: tuple | None
    featurizer: Featurizer

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def mean(self) -> np.ndarray:
        return self.featurizer.mean

    @property
    def scale(self) -> np.ndarray:
        return self.featurizer.scale

    def to_raw(self, X: object) -> np.ndarray:
        """Model units -> raw units (rows of ``X`` of shape (M, F))."""
        return self.featurizer.unstandardize(X)

    def from_raw(self, raw: object) -> torch.Tensor:
        """Raw units -> model units, as a tensor like ``X``."""
        return torch.as_tensor(self.featurizer.standardize(raw), dtype=self.X.dtype, device=self.X.device)

    def bit_atoms(self, i: int) -> dict[int, frozenset]:
        """Molecule ``i``'s map ``bit -> atoms`` of every environment that sets the bit.

        The atoms of an environment of radius r around atom c are c and every atom reached
        by the bonds within r bonds of c (RDKit's ``FindAtomEnvironmentOfRadiusN``), as in
        RDKit's similarity maps.
        """
        if self.bit_info is None:
            raise ProbeError("these features hold no fingerprint bit maps; featurize with kind='morgan'")
        return environment_atoms(self.molecules[i], self.bit_info[i])

    def bounds(self, kind: str = "data", margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature bounds in raw units.

        ``"physical"``: what any real molecule can take; ``"data"``: the range seen in these
        molecules widened by ``margin`` times its width, clipped to the physical range.
        """
        if kind == "physical":
            return self.lower.copy(), self.upper.copy()
        if kind != "data":
            raise ProbeError(f"bounds must be 'data' or 'physical', got {kind!r}")
        lo, hi = self.raw.min(0), self.raw.max(0)
        width = hi - lo
        return np.maximum(self.lower, lo - margin * width), np.minimum(self.upper, hi + margin * width)

    def box(self, *, bounds: str = "data", margin: float = 0.0, immutable: Sequence[str] = ()) -> Box:
        """A :class:`probe.Box` in model units: per-feature bounds, immutable features, integer flags.

        Parameters
        ----------
        bounds : {"data", "physical"}, default "data"
            See :meth:`bounds`.
        margin : float, default 0.0
            Widening of the data range (fraction of its width).
        immutable : sequence of str
            Feature names that may not change (e.g. ``"HeavyAtomCount"`` when size is fixed).
        """
        lo, hi = self.bounds(bounds, margin)
        unknown = [n for n in immutable if n not in self.names]
        if unknown:
            raise ProbeError(f"immutable feature(s) {unknown} are not among the features")
        mask = np.isin(np.asarray(self.names), list(immutable))
        with np.errstate(invalid="ignore"):
            lo_s = np.where(np.isfinite(lo), (lo - self.mean) / self.scale, -np.inf)
            hi_s = np.where(np.isfinite(hi), (hi - self.mean) / self.scale, np.inf)
        dt = self.X.dtype
        return Box(torch.as_tensor(lo_s, dtype=dt), torch.as_tensor(hi_s, dtype=dt),
                   mask=torch.as_tensor(mask) if mask.any() else None, integer=torch.as_tensor(self.integer))

    def to_frame(self, raw: bool = True) -> pd.DataFrame:
        """One row per molecule (index: names), one column per feature, in raw units by default."""
        values = self.raw if raw else self.X.detach().cpu().numpy()
        return pd.DataFrame(values, columns=list(self.names), index=list(self.molecules.names))


def environment_atoms(mol: Chem.Mol, info: dict) -> dict[int, frozenset]:
    """``bit -> atoms`` from a Morgan bit map ``{bit: ((center, radius), ...)}``."""
    out: dict[int, frozenset] = {}
    for bit, envs in info.items():
        atoms: set[int] = set()
        for center, radius in envs:
            atoms.add(int(center))
            if radius > 0:
                for b in Chem.FindAtomEnvironmentOfRadiusN(mol, int(radius), int(center)):
                    bond = mol.GetBondWithIdx(b)
                    atoms.update((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()))
        out[int(bit)] = frozenset(atoms)
    return out


def _config(kind, radius, n_bits, counts, descriptors) -> Featurizer:
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    if not kinds or any(k not in ("morgan", "descriptors") for k in kinds) or len(set(kinds)) != len(kinds):
        raise ProbeError(f"kind must be 'morgan', 'descriptors' or a tuple of both, got {kind!r}")
    if int(radius) < 0 or int(n_bits) < 1:
        raise ProbeError(f"Morgan fingerprints need radius >= 0 and n_bits >= 1, got {radius}, {n_bits}")
    if descriptors is None:
        descriptors = DEFAULT_DESCRIPTORS
    elif isinstance(descriptors, str):
        if descriptors != "all":
            raise ProbeError(f"descriptors must be a list of RDKit descriptor names or 'all', got {descriptors!r}")
        descriptors = tuple(_DESCRIPTOR_FUNCS)
    descriptors = tuple(descriptors)
    unknown = [d for d in descriptors if d not in _DESCRIPTOR_FUNCS]
    if unknown:
        raise ProbeError(f"unknown RDKit descriptor(s) {unknown}; see rdkit.Chem.Descriptors.descList")
    return Featurizer(kinds, int(radius), int(n_bits), bool(counts), descriptors)


def _morgan(mols: MoleculeSet, gen, counts: bool, n_bits: int, bit_info: bool = True
            ) -> tuple[np.ndarray, tuple | None]:
    fp = np.zeros((len(mols), n_bits))
    infos = []
    for i, mol in enumerate(mols.mols):
        if not bit_info:
            fp[i] = gen.GetCountFingerprintAsNumPy(mol) if counts else gen.GetFingerprintAsNumPy(mol)
            continue
        ao = rdFingerprintGenerator.AdditionalOutput()
        ao.AllocateBitInfoMap()
        if counts:
            fp[i] = gen.GetCountFingerprintAsNumPy(mol, additionalOutput=ao)
        else:
            fp[i] = gen.GetFingerprintAsNumPy(mol, additionalOutput=ao)
        infos.append(ao.GetBitInfoMap())  # {bit: ((center, radius), ...)}
    return fp, (tuple(infos) if bit_info else None)


def _descriptors(mols: MoleculeSet, names: Sequence[str]) -> np.ndarray:
    out = np.empty((len(mols), len(names)))
    for i, mol in enumerate(mols.mols):
        for j, name in enumerate(names):
            try:
                v = float(_DESCRIPTOR_FUNCS[name](mol))
            except Exception as err:  # RDKit descriptor code raises assorted errors on odd chemistry
                raise ProbeError(f"descriptor {name} cannot be computed for molecule {i} ({mols.names[i]}, "
                                 f"{mols.smiles[i]!r}): {err}") from None
            out[i, j] = v
    return out


def _drop_nonfinite(mols: MoleculeSet, raw: np.ndarray, bit_info: tuple | None, names: Sequence[str], on_error: str
                    ) -> tuple[MoleculeSet, np.ndarray, tuple | None]:
    """Raise on (or, with ``on_error="skip"``, drop with a warning) molecules with a NaN/inf feature."""
    bad = ~np.isfinite(raw)
    if not bad.any():
        return mols, raw, bit_info
    rows = np.flatnonzero(bad.any(1))
    msgs = []
    for i in rows[:5]:
        j = int(np.flatnonzero(bad[i])[0])
        msgs.append(f"descriptor {names[j]} is {raw[i, j]} for molecule {mols.source[i]} ({mols.names[i]}, "
                    f"{mols.smiles[i]!r})")
    more = f" (and {len(rows) - 5} more molecules)" if len(rows) > 5 else ""
    if on_error == "raise":
        raise ProbeError("; ".join(msgs) + more + "; drop the molecule or the descriptor, or pass on_error='skip'")
    import warnings

    warnings.warn("; ".join(msgs) + more + "; skipped", stacklevel=3)
    keep = np.flatnonzero(~bad.any(1))
    if not len(keep):
        raise ProbeError("every molecule has a non-finite descriptor")
    info = None if bit_info is None else tuple(bit_info[i] for i in keep)
    return mols.subset(keep), raw[keep], info


def featurize(molecules: object, *, kind: str | Sequence[str] = "morgan", radius: int = 2, n_bits: int = 2048,
              counts: bool = False, descriptors: Sequence[str] | str | None = None, standardize: bool | None = None,
              on_error: str = "raise", device: str | torch.device | None = None,
              dtype: torch.dtype = torch.float32) -> Features:
    """Features of molecules for a model, with the way back to descriptor units and to atoms.

    Parameters
    ----------
    molecules : SMILES, RDKit Mol, SDF path, pandas Series, MoleculeSet or a list of them
        See :func:`domains.chem.io.as_molecules`.
    kind : {"morgan", "descriptors"} or a tuple of both, default "morgan"
        Morgan (ECFP-like) fingerprint bits, RDKit 2D descriptors, or both side by side in the
        order given.
    radius : int, default 2
        Morgan radius (2 is ECFP4).
    n_bits : int, default 2048
        Fingerprint length (bits folded modulo ``n_bits``).
    counts : bool, default False
        Count fingerprint (how often each environment occurs) instead of bits.
    descriptors : sequence of str or "all", optional
        RDKit descriptor names (``rdkit.Chem.Descriptors.descList``); default
        :data:`DEFAULT_DESCRIPTORS`.
    standardize : bool, optional
        Standardise columns to zero mean and unit variance over ``molecules``; default True for
        descriptors, False for fingerprint bits.
    on_error : {"raise", "skip"}, default "raise"
        Unreadable molecules raise ``ProbeError`` naming index and SMILES, or are skipped with a warning.
    device, dtype
        Where and how ``X`` is stored (default CPU, float32).

    Returns
    -------
    Features

    Raises
    ------
    ProbeError
        Invalid or empty input, dummy atoms, or a descriptor that is NaN/inf for a molecule
        (naming the molecule and the descriptor).

    Notes
    -----
    Morgan fingerprints: Rogers & Hahn, "Extended-Connectivity Fingerprints", J. Chem. Inf.
    Model. 50, 742 (2010). The bit map records, for each bit, the (center atom, radius) of the
    environments that set it, the information RDKit's similarity maps use (Riniker & Landrum,
    J. Cheminform. 5, 43 (2013)).
    """
    base = _config(kind, radius, n_bits, counts, descriptors)
    mols = as_molecules(molecules, on_error=on_error)
    raw, bit_info = base.raw(mols)
    mols, raw, bit_info = _drop_nonfinite(mols, raw, bit_info, base.names, on_error)
    fitted = base._fitted(raw, standardize)
    return fitted._features(mols, raw, bit_info, device, dtype)
