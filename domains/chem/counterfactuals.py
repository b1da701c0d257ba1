"""Structural counterfactuals: the nearest real molecules whose prediction crosses a criterion.

Candidates come from STONED (Nigam et al., "Beyond generative models: superfast traversal,
optimization, novelty, exploration and discovery (STONED) algorithm for molecules using
SELFIES", Chem. Sci. 12, 7079 (2021)): random SMILES of the input are written as SELFIES
(Krenn et al., Mach. Learn.: Sci. Technol. 1, 045024 (2020)), in which every token string
decodes to a valid molecule, and 1 to ``max_mutations`` tokens are replaced, inserted or
deleted. Candidates are sanitised by RDKit, de-duplicated, scored by the model through the
same featuriser as its training data, and those that satisfy the criterion are ranked by
Tanimoto similarity of Morgan fingerprints to the input (as exmol's counterfactual
explanations do; Wellawatte, Seshadri & White, Chem. Sci. 13, 3697 (2022)).
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import selfies as sf
import torch
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from probe.criteria import Criterion
from probe.errors import ProbeError

from ._model import as_predictor
from .featurize import Featurizer
from .io import as_molecules, quiet_rdkit

__all__ = ["Counterfactuals", "counterfactuals", "stoned"]


_ORGANIC = ("C", "N", "O", "S", "F", "Cl", "Br", "I")


def _alphabet() -> list[str]:
    """SELFIES tokens STONED may insert: the semantically robust alphabet restricted to neutral
    atoms of the organic subset (plus ring and branch tokens), so that edits stay drug-like."""
    out = []
    for tok in sf.get_semantic_robust_alphabet():
        body = tok.strip("[]").lstrip("=#/\\")
        if "+" in body or "-" in body:
            continue
        if body in _ORGANIC or body.startswith(("Ring", "Branch")):
            out.append(tok)
    return sorted(out)


def stoned(smiles: str, n: int = 1000, *, max_mutations: int = 3, alphabet: list[str] | None = None,
           seed: int = 0) -> pd.DataFrame:
    """STONED samples around a molecule: valid, distinct molecules a few SELFIES edits away.

    Parameters
    ----------
    smiles : str
        The starting molecule.
    n : int, default 1000
        Number of mutated strings drawn (the number of distinct valid molecules returned is smaller).
    max_mutations : int, default 3
        Each string gets 1..max_mutations random token edits (replace, insert, delete).
    alphabet : list of str, optional
        SELFIES tokens to insert; default ``selfies.get_semantic_robust_alphabet()``.
    seed : int, default 0

    Returns
    -------
    pandas.DataFrame
        Columns ``smiles`` (canonical, different from the input), ``mutations``.
    """
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ProbeError(f"invalid SMILES {smiles!r}")
    rng = random.Random(seed)
    alphabet = alphabet or _alphabet()
    canon = Chem.MolToSmiles(mol)
    n_random = max(1, min(50, n // 10))
    randoms = list(Chem.MolToRandomSmilesVect(mol, n_random, randomSeed=seed)) or [canon]
    encoded = []
    for s in randoms:
        try:
            encoded.append(list(sf.split_selfies(sf.encoder(s))))
        except sf.EncoderError:
            continue
    if not encoded:
        raise ProbeError(f"SMILES {smiles!r} cannot be written as SELFIES")
    seen: dict[str, int] = {}
    with quiet_rdkit():
        for _ in range(int(n)):
            tokens = list(rng.choice(encoded))
            k = rng.randint(1, max_mutations)
            for _ in range(k):
                op = rng.randrange(3)
                if op == 0 and tokens:  # replace
                    tokens[rng.randrange(len(tokens))] = rng.choice(alphabet)
                elif op == 1:  # insert
                    tokens.insert(rng.randrange(len(tokens) + 1), rng.choice(alphabet))
                elif len(tokens) > 1:  # delete
                    del tokens[rng.randrange(len(tokens))]
            try:
                smi = sf.decoder("".join(tokens))
            except sf.DecoderError:
                continue
            m = Chem.MolFromSmiles(smi) if smi else None
            if m is None or m.GetNumAtoms() == 0:
                continue
            c = Chem.MolToSmiles(m)
            if c != canon and c not in seen:
                seen[c] = k
    return pd.DataFrame({"smiles": list(seen), "mutations": list(seen.values())})


@dataclass(frozen=True, eq=False)
class Counterfactuals:
    """Counterfactual molecules for one input.

    Attributes
    ----------
    smiles : str
        The input (canonical).
    prediction : float
        The model's output on the input.
    table : pandas.DataFrame
        The counterfactuals, most similar first: ``smiles``, ``similarity`` (Tanimoto, Morgan
        radius 2), ``prediction``, ``change`` (prediction minus the input's), ``mutations``.
    candidates : int
        Distinct valid molecules scored.
    queries : int
        Rows sent through the model (input included).
    """

    smiles: str
    prediction: float
    table: pd.DataFrame
    candidates: int
    queries: int

    def __len__(self) -> int:
        return len(self.table)

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def grid(self, top: int = 8, per_row: int = 4, size: int = 220) -> object:
        """PIL image: the input, then the ``top`` counterfactuals with similarity and prediction."""
        from .plots import molecule_grid

        t = self.table.head(top)
        mols = [self.smiles] + list(t["smiles"])
        legends = [f"input  f={self.prediction:.2f}"] + [f"sim {s:.2f}  f={p:.2f}" for s, p in
                                                            zip(t["similarity"], t["prediction"])]
        return molecule_grid(mols, legends, per_row=per_row, size=size)

    def plot(self, ax: object = None, top: int = 8) -> object:
        """Draw :meth:`grid` into a matplotlib axis."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(9, 2.5 * (1 + top // 4)))
        ax.imshow(np.asarray(self.grid(top=top)))
        ax.set_axis_off()
        return ax


def counterfactuals(model: object, molecule: object, criterion: Criterion, *, featurizer: Featurizer,
                    n_samples: int = 2000, max_mutations: int = 3, top: int = 8, seed: int = 0,
                    alphabet: list[str] | None = None, batch_size: int | None = 4096,
                    device: str | torch.device | None = None) -> Counterfactuals:
    """Nearest valid molecules (STONED SELFIES edits) whose prediction satisfies ``criterion``.

    Parameters
    ----------
    model : torch.nn.Module, callable on tensors, scikit-learn estimator or NumPy predict function
        Scores features produced by ``featurizer`` (forward calls only).
    molecule : SMILES or RDKit Mol
        The input.
    criterion : Criterion
        E.g. ``probe.Threshold(6.0)`` (predicted pIC50 below 6) or ``Drop(1.0)``; prepared on
        the input's own prediction.
    featurizer : Featurizer
        The one the model was trained with (``features.featurizer``).
    n_samples : int, default 2000
        Mutated strings drawn; candidates are the distinct valid molecules among them.
    max_mutations : int, default 3
    top : int, default 8
        Counterfactuals kept (most similar first).
    seed : int, default 0

    Returns
    -------
    Counterfactuals
        Every row is a sanitised molecule different from the input that satisfies the criterion
        per the model; empty when none was found.
    """
    if not isinstance(criterion, Criterion):
        raise ProbeError(f"criterion must be a probe Criterion, got {type(criterion).__name__}")
    ms = as_molecules(molecule)
    if len(ms) != 1:
        raise ProbeError(f"counterfactuals explain one molecule at a time, got {len(ms)}")
    smiles = ms.smiles[0]
    cands = stoned(smiles, n_samples, max_mutations=max_mutations, alphabet=alphabet, seed=seed)
    pred_fn = as_predictor(model, device=device, batch_size=batch_size)
    x0 = featurizer(ms).X
    clean = pred_fn(x0)
    reference = criterion.prepare(clean)
    if bool(criterion.satisfied(clean, reference).all()):
        raise ProbeError(f"{criterion!r} already holds for {smiles!r}: nothing to search for")
    empty = pd.DataFrame(columns=["smiles", "similarity", "prediction", "change", "mutations"])
    if not len(cands):
        return Counterfactuals(smiles, float(clean[0, 0]), empty, 0, pred_fn.rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        feats = featurizer(list(cands["smiles"]), on_error="skip", bit_info=False)
    cands = cands.iloc[list(feats.molecules.source)].reset_index(drop=True)
    out = pred_fn(feats.X)
    col = getattr(criterion, "output", 0)
    ok = criterion.satisfied(out, reference.expand(len(out)) if reference.dim() == 1 else
                             reference.expand(len(out), *reference.shape[1:])).cpu().numpy()
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    fp0 = gen.GetFingerprint(ms.mols[0])
    fps = [gen.GetFingerprint(m) for m in feats.molecules.mols]
    sim = np.asarray(DataStructs.BulkTanimotoSimilarity(fp0, fps))
    y = out[:, col].cpu().double().numpy()
    y0 = float(clean[0, col])
    table = pd.DataFrame({"smiles": cands["smiles"], "similarity": sim, "prediction": y, "change": y - y0,
                          "mutations": cands["mutations"]})[ok]
    table = table.sort_values(["similarity", "smiles"], ascending=[False, True]).head(top).reset_index(drop=True)
    return Counterfactuals(smiles, y0, table, len(cands), pred_fn.rows)
