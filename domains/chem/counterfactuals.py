"""Structural counterfactuals: the nearest real molecules whose prediction crosses a criterion.

Candidates come from single and double graph edits (:func:`domains.chem.edits.graph_edits`:
change an element, add or remove an atom, change a bond order; the MolDQN action space) or from
STONED (Nigam et al., "Beyond generative models: superfast traversal,
optimization, novelty, exploration and discovery (STONED) algorithm for molecules using
SELFIES", Chem. Sci. 12, 7079 (2021)): random SMILES of the input are written as SELFIES
(Krenn et al., Mach. Learn.: Sci. Technol. 1, 045024 (2020)), in which every token string
decodes to a valid molecule, and 1 to ``max_mutations`` tokens are replaced, inserted or
deleted. Candidates are sanitised by RDKit, de-duplicated, passed through the filters a chemist would
apply (:class:`~domains.chem.filters.MoleculeFilters`: validity, similarity floor, SA score, QED,
PAINS and Brenk alerts, strained rings; what each removed is reported), and only the survivors
are scored by the model, through the same featuriser as its training data (or as graphs, for a
chemprop network). Those that satisfy the criterion are ranked by Tanimoto similarity of Morgan
fingerprints to the input (as exmol's counterfactual explanations do; Wellawatte, Seshadri &
White, Chem. Sci. 13, 3697 (2022)).
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field

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
from .filters import DEFAULT_FILTERS, MoleculeFilters
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
        Distinct valid molecules proposed.
    queries : int
        Rows sent through the model (input included): the candidates that passed the filters, plus one.
    removed : dict
        Filter name -> candidates it removed (each counted against the first filter that removed it).
    crossed : int
        Filtered candidates that satisfy the criterion (``table`` keeps the ``top`` most similar).
    """

    smiles: str
    prediction: float
    table: pd.DataFrame
    candidates: int
    queries: int
    removed: dict = field(default_factory=dict)
    crossed: int = 0

    def __len__(self) -> int:
        return len(self.table)

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def _legends(self, top: int, unit: str | None, sep: str) -> list[str]:
        u = f" {unit}" if unit else ""
        t = self.table.head(top)
        return [f"input{sep}predicted {self.prediction:.2f}{u}"] + [
            f"Tanimoto {s:.2f} to input{sep}predicted {p:.2f}{u}" for s, p in zip(t["similarity"], t["prediction"])]

    def grid(self, top: int = 8, per_row: int = 4, size: int = 220, unit: str | None = None) -> object:
        """PIL image: the input, then the ``top`` counterfactuals with similarity and prediction.

        Each legend reads the Tanimoto similarity to the input and the model's prediction, in ``unit``
        (e.g. ``"pIC50"``) where given.
        """
        from .plots import molecule_grid

        mols = [self.smiles] + list(self.table.head(top)["smiles"])
        return molecule_grid(mols, self._legends(top, unit, ", "), per_row=per_row, size=size)

    def figure(self, top: int = 8, per_row: int = 4, size: int = 220, unit: str | None = None,
               title: str | None = None) -> object:
        """The same grid as a matplotlib figure (titled panels), e.g. for :func:`probe.style.save`."""
        from .plots import molecule_figure

        mols = [self.smiles] + list(self.table.head(top)["smiles"])
        return molecule_figure(mols, self._legends(top, unit, "\n"), per_row=per_row, size=size,
                               title=title or f"input and its {min(top, len(self))} nearest counterfactuals")

    def plot(self, ax: object = None, top: int = 8) -> object:
        """Draw :meth:`grid` into a matplotlib axis."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(9, 2.5 * (1 + top // 4)))
        ax.imshow(np.asarray(self.grid(top=top)))
        ax.set_axis_off()
        return ax


def counterfactuals(model: object, molecule: object, criterion: Criterion, *, featurizer: Featurizer | None = None,
                    n_samples: int = 2000, max_mutations: int = 3, top: int = 8, seed: int = 0,
                    alphabet: list[str] | None = None, generator: str = "edits",
                    filters: MoleculeFilters | None = DEFAULT_FILTERS,
                    batch_size: int | None = 4096, device: str | torch.device | None = None) -> Counterfactuals:
    """Nearest molecules (STONED SELFIES edits) that pass the filters and whose prediction satisfies ``criterion``.

    Parameters
    ----------
    model : torch.nn.Module, callable on tensors, scikit-learn estimator, NumPy predict function or chemprop MPNN
        Scores features produced by ``featurizer`` (forward calls only); a chemprop ``MPNN`` scores the
        molecules' graphs and needs no featuriser.
    molecule : SMILES or RDKit Mol
        The input.
    criterion : Criterion
        E.g. ``probe.Threshold(6.0)`` (predicted pIC50 below 6) or ``Drop(1.0)``; prepared on
        the input's own prediction.
    featurizer : Featurizer, optional
        The one the model was trained with (``features.featurizer``); required except for chemprop networks.
    n_samples : int, default 2000
        ``"edits"``: most candidates (all single edits, then random double edits); ``"stoned"``:
        mutated strings drawn (candidates are the distinct valid molecules among them).
    max_mutations : int, default 3
        Most SELFIES mutations (``"stoned"``) or graph edits (``"edits"``, at most 2) per candidate.
    top : int, default 8
        Counterfactuals kept (most similar first).
    seed : int, default 0
    alphabet : list of str, optional
        SELFIES tokens of ``"stoned"``.
    generator : {"edits", "stoned"}, default "edits"
        How candidates are proposed.
    filters : MoleculeFilters or None, default ``DEFAULT_FILTERS`` (``MoleculeFilters()``)
        Applied before scoring (so removed candidates cost no model call); ``None`` keeps every
        sanitisable candidate.

    Returns
    -------
    Counterfactuals
        Every row is a sanitised molecule different from the input that passed the filters and
        satisfies the criterion per the model; empty when none was found.
    """
    from .mpnn import is_mpnn, mpnn_predict

    if not isinstance(criterion, Criterion):
        raise ProbeError(f"criterion must be a probe Criterion, got {type(criterion).__name__}")
    graph_model = is_mpnn(model)
    if featurizer is None and not graph_model:
        raise ProbeError("counterfactuals need the featuriser the model was trained with (featurizer=...)")
    ms = as_molecules(molecule)
    if len(ms) != 1:
        raise ProbeError(f"counterfactuals explain one molecule at a time, got {len(ms)}")
    smiles = ms.smiles[0]
    if generator == "edits":
        from .edits import graph_edits

        cands = graph_edits(smiles, n_samples, max_edits=min(int(max_mutations), 2), seed=seed)
    elif generator == "stoned":
        cands = stoned(smiles, n_samples, max_mutations=max_mutations, alphabet=alphabet, seed=seed)
    else:
        raise ProbeError(f"generator must be 'edits' or 'stoned', got {generator!r}")
    if graph_model:
        rows = [0]

        def score(mols):
            rows[0] += len(mols)
            out = torch.as_tensor(mpnn_predict(model, mols, device=device, batch_size=batch_size or 256))
            return out, np.arange(len(mols))

        def calls():
            return rows[0]
    else:
        pred_fn = as_predictor(model, device=device, batch_size=batch_size)

        def score(mols):
            # candidates whose descriptors cannot be computed are dropped, not scored
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                feats = featurizer(mols, on_error="skip", bit_info=False)
            return pred_fn(feats.X), np.asarray(feats.molecules.source, dtype=int)

        def calls():
            return pred_fn.rows
    clean, _ = score(list(ms.mols))
    reference = criterion.prepare(clean)
    if bool(criterion.satisfied(clean, reference).all()):
        raise ProbeError(f"{criterion!r} already holds for {smiles!r}: nothing to search for")
    col = getattr(criterion, "output", 0)
    y0 = float(clean[0, col])
    empty = pd.DataFrame(columns=["smiles", "similarity", "prediction", "change", "mutations"])
    with quiet_rdkit():
        mols = [Chem.MolFromSmiles(s) for s in cands["smiles"]]
    removed: dict = {}
    if filters is not None and len(cands):
        keep, removed, _ = filters.apply(mols, ms.mols[0])
        cands = cands[keep].reset_index(drop=True)
        mols = [m for m, k in zip(mols, keep) if k]
    if not len(cands):
        return Counterfactuals(smiles, y0, empty, 0 if not removed else sum(removed.values()), calls(), removed, 0)
    n_proposed = len(cands) + sum(removed.values())
    out, scored = score(mols)
    cands = cands.iloc[scored].reset_index(drop=True)
    mols = [mols[i] for i in scored]
    ok = criterion.satisfied(out, reference.expand(len(out)) if reference.dim() == 1 else
                             reference.expand(len(out), *reference.shape[1:])).cpu().numpy()
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    fp0 = gen.GetFingerprint(ms.mols[0])
    sim = np.asarray(DataStructs.BulkTanimotoSimilarity(fp0, [gen.GetFingerprint(m) for m in mols]))
    y = out[:, col].cpu().double().numpy()
    table = pd.DataFrame({"smiles": cands["smiles"], "similarity": sim, "prediction": y, "change": y - y0,
                          "mutations": cands["mutations"]})[ok]
    table = table.sort_values(["similarity", "smiles"], ascending=[False, True]).head(top).reset_index(drop=True)
    return Counterfactuals(smiles, y0, table, n_proposed, calls(), removed, int(ok.sum()))
