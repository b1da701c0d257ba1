"""Back to atoms: which atoms a prediction rests on.

Every atom ``a`` of a molecule carries part of its features: the fingerprint bits whose
environments contain it (the bit -> atom map) and its share of the atom-additive
descriptors (Wildman-Crippen logP and MR, TPSA, Labute ASA). Writing ``x`` for the
molecule's features and ``x_{-a}`` for the features with atom ``a``'s part removed,

- ``method="ablation"`` gives :math:`w_a = f(x) - f(x_{-a})`, RDKit's similarity-map
  weights (Riniker & Landrum, "Similarity maps - a visualization strategy for molecular
  fingerprints and machine-learning methods", J. Cheminform. 5, 43 (2013)) extended to
  atom-additive descriptors. It needs forward calls only, so it serves any predict
  function (scikit-learn included); all atoms of all molecules go through the model in
  batches instead of one call per atom.
- ``method="gradient"`` gives the first-order version :math:`w_a = \\nabla f(x) \\cdot (x - x_{-a})`:
  one forward and one backward pass per batch, exact for models linear in the features.

:func:`project_to_atoms` maps any per-feature sensitivity (a gradient, an attack's
perturbation direction) to atoms through the same incidence :math:`D_{a,f} = x_f - x_{-a,f}`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from rdkit import Chem
from rdkit.Chem import rdMolDescriptors

from probe.errors import ProbeError

from ._model import as_predictor
from .featurize import Features

__all__ = ["AtomMaps", "atom_contributions", "atom_incidence", "atom_weights", "project_to_atoms",
           "ADDITIVE_DESCRIPTORS"]

#: Descriptors that are sums of per-atom contributions, and where RDKit computes those.
ADDITIVE_DESCRIPTORS = ("MolLogP", "MolMR", "TPSA", "LabuteASA")


def atom_contributions(mol: Chem.Mol) -> dict[str, np.ndarray]:
    """Per-atom contributions to the atom-additive descriptors (raw units), each summing to the descriptor.

    Wildman & Crippen, J. Chem. Inf. Comput. Sci. 39, 868 (1999) for logP and MR (hydrogen
    contributions added to their heavy atom); Ertl et al.,
    J. Med. Chem. 43, 3714 (2000) for TPSA; Labute, J. Mol. Graph. Model. 18, 464 (2000) for
    the approximate surface area (whose implicit-hydrogen term is shared out over the heavy
    atoms in proportion to their hydrogen counts).
    """
    # Crippen types hydrogens too: type them on the explicit-H graph and fold each H onto its heavy atom
    mh = Chem.AddHs(mol)
    ch = np.asarray(rdMolDescriptors._CalcCrippenContribs(mh), dtype=float)
    n = mol.GetNumAtoms()
    crippen = ch[:n].copy()
    for atom in mh.GetAtoms():
        if atom.GetIdx() >= n:
            crippen[atom.GetNeighbors()[0].GetIdx()] += ch[atom.GetIdx()]
    tpsa = np.asarray(rdMolDescriptors._CalcTPSAContribs(mol), dtype=float)
    asa, h_asa = rdMolDescriptors._CalcLabuteASAContribs(mol)
    asa = np.asarray(asa, dtype=float)
    nh = np.array([a.GetTotalNumHs() for a in mol.GetAtoms()], dtype=float)
    if nh.sum() > 0:
        asa = asa + h_asa * nh / nh.sum()
    return {"MolLogP": crippen[:, 0], "MolMR": crippen[:, 1], "TPSA": tpsa, "LabuteASA": asa}


def _environments(mol: Chem.Mol, info: dict) -> list[tuple[int, frozenset]]:
    """``(bit, atoms of one environment)`` for every environment that sets a bit."""
    out = []
    for bit, envs in info.items():
        for center, radius in envs:
            atoms = {int(center)}
            if radius > 0:
                for b in Chem.FindAtomEnvironmentOfRadiusN(mol, int(radius), int(center)):
                    bond = mol.GetBondWithIdx(b)
                    atoms.update((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()))
            out.append((int(bit), frozenset(atoms)))
    return out


def _bit_atom_pairs(mol: Chem.Mol, info: dict, counts: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(atom, bit)`` pairs: one per environment containing the atom (counts) or one per distinct pair (bits).

    The atoms of the environment of radius r around atom c are those within r bonds of c.
    """
    envs = [(bit, center, radius) for bit, es in info.items() for center, radius in es]
    if not envs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    e = np.asarray(envs, dtype=np.int64)
    dist = Chem.GetDistanceMatrix(mol)
    inside = dist[e[:, 1]] <= e[:, 2:3]
    env_idx, atom = np.nonzero(inside)
    bit = e[env_idx, 0]
    if not counts:
        key = np.unique(atom * (int(bit.max()) + 1) + bit)
        atom, bit = key // (int(bit.max()) + 1), key % (int(bit.max()) + 1)
    return atom, bit


def _incidence(features: Features, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Sparse :func:`atom_incidence`: ``(atom, feature, value)`` triplets and the atom count."""
    fz = features.featurizer
    mol = features.molecules[i]
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    ms = fz.morgan_slice()
    if ms is not None:
        if features.bit_info is None:
            raise ProbeError("these features hold no fingerprint bit maps (featurized with bit_info=False)")
        r, c = _bit_atom_pairs(mol, features.bit_info[i], fz.counts)
        rows += r.tolist()
        cols += (c + ms.start).tolist()
        vals += [1.0] * len(r)
    ds = fz.descriptor_slice()
    if ds is not None and any(n in ADDITIVE_DESCRIPTORS for n in fz.descriptors):
        contrib = atom_contributions(mol)
        for j, name in enumerate(fz.descriptors):
            if name in ADDITIVE_DESCRIPTORS:
                n = mol.GetNumAtoms()
                rows += range(n)
                cols += [ds.start + j] * n
                vals += contrib[name].tolist()
    r, c = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    v = np.asarray(vals, dtype=float) / fz.scale[c]
    return r, c, v, mol.GetNumAtoms()


def atom_incidence(features: Features, i: int) -> np.ndarray:
    """How much of each feature each atom of molecule ``i`` carries, in model units.

    Returns
    -------
    numpy.ndarray, shape (n_atoms, F)
        :math:`D_{a,f} = x_f - x_{-a,f}`: for a fingerprint bit, the drop when every environment
        containing atom ``a`` is removed (RDKit's similarity-map rule: a bit vector loses the bit,
        a count loses one per such environment); for an atom-additive descriptor, atom ``a``'s
        contribution; zero for other descriptors.
    """
    r, c, v, n = _incidence(features, i)
    D = np.zeros((n, len(features.names)))
    np.add.at(D, (r, c), v)
    return D


@dataclass(frozen=True, eq=False)
class AtomMaps:
    """Per-atom weights of N molecules.

    Attributes
    ----------
    weights : tuple of numpy.ndarray
        One array per molecule, one weight per heavy atom (output units: how much the
        prediction rests on the atom; positive = the atom raises the output).
    prediction : numpy.ndarray, shape (N,)
        The model's output on each molecule.
    mols : tuple of rdkit Mol
        The molecules (atom indices of ``weights`` follow their atom order).
    names : tuple of str
    method : str
    queries : int
        Rows sent through the model.
    bond_weights : tuple of numpy.ndarray or None
        One weight per bond (RDKit bond index), for models that read bonds (chemprop networks);
        ``None`` for feature models.
    """

    weights: tuple
    prediction: np.ndarray
    mols: tuple
    names: tuple
    method: str
    queries: int = 0
    bond_weights: tuple | None = None

    @property
    def smiles(self) -> tuple:
        return tuple(Chem.MolToSmiles(m) for m in self.mols)

    def __len__(self) -> int:
        return len(self.weights)

    def to_frame(self) -> pd.DataFrame:
        """Long format: ``molecule``, ``name``, ``atom``, ``element``, ``weight``."""
        rows = []
        for m, (w, mol, name) in enumerate(zip(self.weights, self.mols, self.names)):
            for a, v in enumerate(w):
                rows.append((m, name, a, mol.GetAtomWithIdx(a).GetSymbol(), float(v)))
        return pd.DataFrame(rows, columns=["molecule", "name", "atom", "element", "weight"]).assign(method=self.method)

    def plot(self, index: int = 0, ax: object = None, size: int = 350, unit: str | None = None,
             label: str | None = None) -> object:
        """Draw molecule ``index`` with its weights as a similarity map (red raises, blue lowers the output).

        ``unit`` names the output's unit (e.g. ``"pIC50"``) on the title and the colour bar;
        ``label`` (e.g. the model's name) goes before the molecule's name.
        """
        from .plots import draw_atom_weights

        name = self.names[index] if label is None else f"{label}: {self.names[index]}"
        pred = f"prediction {self.prediction[index]:.2f}" + (f" {unit}" if unit else "")
        return draw_atom_weights(self.mols[index], self.weights[index], ax=ax, size=size, unit=unit,
                                 title=f"{name}\n{pred}")


def _select(features: Features, index: object) -> list[int]:
    if index is None:
        return list(range(len(features)))
    idx = [int(index)] if np.ndim(index) == 0 else [int(i) for i in index]
    bad = [i for i in idx if not -len(features) <= i < len(features)]
    if bad:
        raise ProbeError(f"molecule index {bad[0]} is out of range for {len(features)} molecules")
    return [i % len(features) for i in idx]


def atom_weights(model: object, features: Features, index: object = None, *, method: str = "ablation",
                 output: int = 0, batch_size: int | None = 4096, device: str | torch.device | None = None
                 ) -> AtomMaps:
    """Per-atom weights of a model's prediction, by atom ablation or its first-order form.

    Parameters
    ----------
    model : torch.nn.Module, callable on tensors, scikit-learn estimator or NumPy predict function
        Maps ``features.X`` rows (model units) to outputs (N,) or (N, K).
    features : Features
        From :func:`domains.chem.featurize` (fingerprint bits, descriptors or both).
    index : int or sequence of int, optional
        Molecules to map (default all).
    method : {"ablation", "gradient"}, default "ablation"
        ``"ablation"``: :math:`w_a = f(x) - f(x_{-a})` (forward calls only; equals RDKit's
        ``GetAtomicWeightsForModel`` on a fingerprint model); ``"gradient"``:
        :math:`w_a = \\nabla f(x)\\cdot(x - x_{-a})` (differentiable models).
    output : int, default 0
        Output column to explain.
    batch_size : int or None, default 4096
        Rows per model call.
    device : str or torch.device, optional
        Default: the model's device; for a model without parameters the input's; else the CPU.

    Returns
    -------
    AtomMaps
    """
    if method not in ("ablation", "gradient"):
        raise ProbeError(f"method must be 'ablation' or 'gradient', got {method!r}")
    idx = _select(features, index)
    pred_fn = as_predictor(model, device=device, batch_size=batch_size)
    X = features.X[idx].to(pred_fn.device)
    incid = [_incidence(features, i) for i in idx]
    if method == "ablation":
        sizes = torch.as_tensor([n for *_, n in incid], device=X.device)
        rows = torch.cat([X, X.repeat_interleave(sizes, dim=0)])
        offset = len(idx)
        r_all, c_all, v_all = [], [], []
        for r, c, v, n in incid:
            r_all.append(r + offset)
            c_all.append(c)
            v_all.append(v)
            offset += n
        r_t = torch.as_tensor(np.concatenate(r_all), device=X.device)
        c_t = torch.as_tensor(np.concatenate(c_all), device=X.device)
        v_t = torch.as_tensor(np.concatenate(v_all), dtype=X.dtype, device=X.device)
        rows.index_put_((r_t, c_t), -v_t, accumulate=True)
        out = pred_fn(rows)[:, output].cpu().double().numpy()
        base = out[: len(idx)]
        weights, start = [], len(idx)
        for k, (*_, n) in enumerate(incid):
            weights.append(base[k] - out[start: start + n])
            start += n
        queries = pred_fn.rows
    else:
        grad, base_t = _gradient(model, X, output, batch_size, pred_fn.device)
        g = grad.cpu().double().numpy()
        base = base_t.cpu().double().numpy()
        weights = [np.bincount(r, weights=v * g[k, c], minlength=n) for k, (r, c, v, n) in enumerate(incid)]
        queries = len(idx)
    mols = features.molecules
    return AtomMaps(tuple(weights), np.asarray(base), tuple(mols.mols[i] for i in idx),
                    tuple(mols.names[i] for i in idx), method, int(queries))


def _gradient(model: object, X: torch.Tensor, output: int, batch_size: int | None, device: torch.device
              ) -> tuple[torch.Tensor, torch.Tensor]:
    from probe.devices import batches, model_hygiene
    from probe.models import forward, has_gradient

    if not isinstance(model, torch.nn.Module) and (hasattr(model, "predict") or not has_gradient(model)):
        raise ProbeError("method='gradient' needs a differentiable torch model; use method='ablation' "
                         "(forward calls only) for scikit-learn or NumPy models")
    grads, outs = [], []
    with model_hygiene(model, device if isinstance(model, torch.nn.Module) else None):
        for s in batches(len(X), batch_size):
            xb = X[s].detach().clone().requires_grad_(True)
            with torch.enable_grad():
                y = forward(model, xb)[:, output]
                (g,) = torch.autograd.grad(y.sum(), xb)
            grads.append(g.detach())
            outs.append(y.detach())
    return torch.cat(grads), torch.cat(outs)


def project_to_atoms(features: Features, i: int, sensitivity: object) -> np.ndarray:
    """Map a per-feature sensitivity of molecule ``i`` to its atoms.

    Parameters
    ----------
    features : Features
    i : int
        Molecule index.
    sensitivity : array-like or torch.Tensor, shape (F,)
        Output change per unit of each feature in model units (a gradient, or an attack's
        perturbation scaled by the output change it produced).

    Returns
    -------
    numpy.ndarray, shape (n_atoms,)
        :math:`w_a = \\sum_f D_{a,f}\\, s_f` with the incidence of :func:`atom_incidence`.
    """
    s = sensitivity.detach().cpu().double().numpy() if torch.is_tensor(sensitivity) else np.asarray(sensitivity,
                                                                                                     dtype=float)
    s = s.reshape(-1)
    if s.shape[0] != len(features.names):
        raise ProbeError(f"sensitivity has {s.shape[0]} entries for {len(features.names)} features")
    r, c, v, n = _incidence(features, i)
    return np.bincount(r, weights=v * s[c], minlength=n)
