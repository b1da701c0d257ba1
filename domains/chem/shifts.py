"""Feature-space microscope: the smallest change of a molecule's descriptors that moves the prediction.

Searches the minimal perturbation of the model's input features under a :class:`probe.Box`
built from the data (each descriptor within the range real molecules take, chosen features
immutable), then reports it in the descriptors' own units, with integer-valued descriptors
(counts) rounded, descriptors tied by their definitions moved together
(:mod:`domains.chem.relations`: heteroatom counts bound donor, acceptor and N/O counts, TPSA needs
an N or O, ...) and the criterion re-checked after both. Optionally the shifted descriptors are
matched to the nearest real molecule among a pool (by default the molecule's own one- and two-edit
neighbours), which is scored by the model: a shift that no molecule nearby realises says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from probe.criteria import Criterion
from probe.errors import ProbeError
from probe.microscope import minimal_perturbation
from probe.results import AttackResult
from probe.spaces import Box

from ._model import as_predictor
from .featurize import Features
from .relations import repair, violations

__all__ = ["Drop", "DescriptorShifts", "descriptor_shifts", "descriptor_sensitivity"]


class Drop(Criterion):
    """An output falls by at least ``delta`` below its clean value ("reduce the score by delta").

    ``loss = (y_clean - delta) - y``; satisfied when ``loss >= 0``.

    Parameters
    ----------
    delta : float
        Required decrease (output units, e.g. 1 pIC50 unit = a tenfold loss of potency).
    output : int, default 0
    """

    def __init__(self, delta: float, output: int = 0):
        if not delta > 0:
            raise ProbeError(f"Drop needs delta > 0, got {delta}")
        self.delta = float(delta)
        self.output = int(output)

    def _column(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs if outputs.dim() == 1 else outputs[:, self.output]

    def prepare(self, clean_outputs: torch.Tensor) -> torch.Tensor:
        return self._column(clean_outputs).detach()

    def loss(self, outputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return reference.to(outputs.device) - self.delta - self._column(outputs)

    def satisfied(self, outputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return self.loss(outputs, reference) >= 0


@dataclass(frozen=True, eq=False)
class DescriptorShifts:
    """Minimal feature changes that satisfy a criterion, in the features' own units.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (molecule, moved feature) of the molecules whose search succeeded: ``molecule``,
        ``name``, ``feature``, ``value`` (raw), ``new_value`` (raw, integers rounded), ``change``
        (raw units), ``change_std`` (standard deviations of the data). A failed search lists no moves.
    prediction, new_prediction : numpy.ndarray, shape (N,)
        Output before and after the rounded change (equal where the search failed).
    success : numpy.ndarray of bool, shape (N,)
        Whether the rounded change satisfies the criterion.
    distance : numpy.ndarray, shape (N,)
        Size of the (unrounded) change in model units and ``norm`` (inf where nothing was found).
    attack : AttackResult
        The search's own result (model units, unrounded).
    violations : tuple of list of str
        Per molecule, the definitional relations between descriptors that the reported change still
        breaks (empty: the shifted descriptors are consistent).
    neighbours : pandas.DataFrame or None
        With ``pool``: per molecule, ``neighbour`` (SMILES of the real molecule whose descriptors are
        nearest the shifted ones), ``neighbour_distance_std`` (standardised L2 over the mutable
        features), ``neighbour_prediction``, ``neighbour_success``; and ``crossing`` (the pool molecule
        nearest the *original* descriptors among those that satisfy the criterion, empty if none),
        ``crossing_distance_std``, ``crossing_prediction``, ``pool`` (molecules scored).
    """

    table: pd.DataFrame
    prediction: np.ndarray
    new_prediction: np.ndarray
    success: np.ndarray
    distance: np.ndarray
    attack: AttackResult
    violations: tuple = ()
    neighbours: pd.DataFrame | None = None

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def for_molecule(self, k: int) -> pd.DataFrame:
        """Rows of the k-th probed molecule, largest change (in standard deviations) first."""
        t = self.table[self.table["molecule"] == k]
        return t.reindex(t["change_std"].abs().sort_values(ascending=False).index)

    def plot(self, k: int = 0, ax: object = None, top: int = 12) -> object:
        from .plots import plot_shifts

        ax = plot_shifts(self.for_molecule(k), ax=ax, top=top)
        rows = self.for_molecule(k)
        ax.set_title(f"{rows['name'].iloc[0] if len(rows) else k}: "
                     f"{self.prediction[k]:.2f} -> {self.new_prediction[k]:.2f}", fontsize=9)
        return ax


def descriptor_shifts(model: object, features: Features, index: object = None, criterion: Criterion | None = None, *,
                      norm: str = "l2", bounds: str = "data", margin: float = 0.0, immutable: Sequence[str] = (),
                      method: str = "auto", atol: float = 1e-6, consistent: bool = True, pool: object = None,
                      pool_size: int = 300) -> DescriptorShifts:
    """Which descriptors move, and by how much, in the smallest change that satisfies ``criterion``.

    Parameters
    ----------
    model : torch.nn.Module or differentiable callable
        Maps standardised features (``features.X`` rows) to outputs.
    features : Features
    index : int or sequence of int, optional
        Molecules to probe (default all).
    criterion : Criterion, optional
        ``probe.Threshold(value)`` (cross a value), :class:`Drop` (fall by delta) or
        ``probe.Misclassify()``; default ``Drop(1.0)``.
    norm : {"l2", "linf", "l1"}, default "l2"
        Norm of the change in standardised units (each feature measured in standard deviations).
    bounds : {"data", "physical"}, default "data"
        Per-feature range: seen in the data (widened by ``margin``) or any real molecule's.
    immutable : sequence of str
        Features that may not change.
    method : str, default "auto"
        Search of :func:`probe.minimal_perturbation` (DeepFool and FMN with refinement for
        differentiable models, HopSkipJump for forward-only ones).
    atol : float, default 1e-6
        Changes smaller than this (model units) are reported as no change.
    consistent : bool, default True
        Move the descriptors tied to a moved one by definition (:func:`domains.chem.relations.repair`)
        before the criterion is re-checked.
    pool : {"edits"} or sequence of SMILES, optional
        Real molecules to match the shifted descriptors against: ``"edits"`` draws ``pool_size`` one- and
        two-edit neighbours of each molecule (:func:`domains.chem.edits.graph_edits`); a sequence is used
        for every molecule. Default: no matching.
    pool_size : int, default 300

    Returns
    -------
    DescriptorShifts

    Notes
    -----
    Minimal adversarial perturbation in feature space (DeepFool, Moosavi-Dezfooli et al. 2016;
    FMN, Pintor et al. 2021, through :func:`probe.minimal_perturbation`), constrained to a box of
    chemically possible values; exact for a model linear in the features. Integer
    features (counts) are rounded to the nearest integer in raw units; where that loses the
    criterion, the counts that moved are rounded away from their original value one at a time,
    largest move first, until the criterion holds again (each step checked by a model call).
    """
    criterion = Drop(1.0) if criterion is None else criterion
    if not isinstance(criterion, Criterion):
        raise ProbeError(f"criterion must be a probe Criterion, got {type(criterion).__name__}")
    from .atoms import _select

    idx = _select(features, index)
    space = features.box(bounds=bounds, margin=margin, immutable=immutable)
    x = features.X[idx]
    pred_fn = as_predictor(model)
    # estimators and NumPy predict functions go to the gradient-free search
    target = model if pred_fn.differentiable else pred_fn
    res = minimal_perturbation(target, x, criterion, norm=norm, method=method,
                               space=Box(space.lower, space.upper, mask=space.mask))
    raw0 = features.raw[idx]
    raw1 = features.to_raw(res.x_adv)
    moved = np.abs(res.delta.detach().cpu().double().numpy()) > atol
    raw1 = np.where(moved, raw1, raw0)
    lo, hi = features.bounds(bounds, margin)
    rounded = np.where(features.integer, np.clip(np.round(raw1), np.ceil(lo), np.floor(hi)), raw1)
    names = list(features.names)

    def tie(r):
        return repair(r, names, moved) if consistent else r

    rounded = tie(rounded)
    clean = pred_fn(x)
    ref = criterion.prepare(clean)
    out = pred_fn(features.from_raw(rounded))
    ok = criterion.satisfied(out, ref).cpu().numpy()
    away = np.clip(np.where(raw1 > raw0, np.ceil(raw1), np.floor(raw1)), np.ceil(lo), np.floor(hi))
    for k in np.flatnonzero(~ok):
        # round away from the original value one count at a time, largest move first, until it holds
        cand = np.flatnonzero(features.integer & moved[k] & (away[k] != rounded[k]))
        if not len(cand):
            continue
        order = cand[np.argsort(-np.abs(raw1[k, cand] - raw0[k, cand]), kind="stable")]
        trials = np.repeat(rounded[k][None], len(order), axis=0)
        for t in range(len(order)):
            trials[t:, order[t]] = away[k, order[t]]
        if consistent:
            trials = repair(trials, names, np.repeat(moved[k][None], len(trials), axis=0))
        y_t = pred_fn(features.from_raw(trials))
        hit = criterion.satisfied(y_t, ref[k:k + 1].expand(len(trials), *ref.shape[1:])).cpu().numpy()
        if hit.any():
            t = int(np.argmax(hit))
            rounded[k] = trials[t]
            out[k] = y_t[t].to(out)
            ok[k] = True
    found = res.success.cpu().numpy()
    ok = ok & found
    out[torch.as_tensor(~ok)] = clean[torch.as_tensor(~ok)].to(out)
    rounded[~ok] = raw0[~ok]
    rows = []
    for k, i in enumerate(idx):
        for j in np.flatnonzero(rounded[k] != raw0[k]):
            change = rounded[k, j] - raw0[k, j]
            rows.append((k, features.molecules.names[i], names[j], raw0[k, j], rounded[k, j], change,
                         change / features.scale[j], bool(features.integer[j])))
    table = pd.DataFrame(rows, columns=["molecule", "name", "feature", "value", "new_value", "change", "change_std",
                                        "integer"])
    col = criterion.output if hasattr(criterion, "output") else 0
    viol = tuple(v if ok[k] else [] for k, v in enumerate(violations(rounded, names)))
    neigh = None
    if pool is not None:
        neigh = _neighbours(pred_fn, features, idx, features.from_raw(rounded), x, criterion, ref, space, pool,
                            pool_size)
    return DescriptorShifts(table, clean[:, col].cpu().double().numpy(), out[:, col].cpu().double().numpy(), ok,
                            res.distance.detach().cpu().double().numpy(), res, viol, neigh)


def _neighbours(pred_fn, features: Features, idx: list, x_new: torch.Tensor, x0: torch.Tensor, criterion: Criterion,
                ref: torch.Tensor, space: Box, pool: object, pool_size: int) -> pd.DataFrame:
    """Nearest real molecules of a pool to the shifted and to the original descriptors (see DescriptorShifts)."""
    import warnings

    from .edits import graph_edits

    mutable = np.ones(len(features.names), dtype=bool) if space.mask is None else ~space.mask.cpu().numpy()
    rows = []
    for k, i in enumerate(idx):
        if isinstance(pool, str):
            if pool != "edits":
                raise ProbeError(f"pool must be 'edits' or a sequence of SMILES, got {pool!r}")
            smiles = list(graph_edits(features.molecules.smiles[i], pool_size, seed=k)["smiles"])
        else:
            smiles = list(pool)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pf = features.featurizer(smiles, on_error="skip", bit_info=False) if smiles else None
        if pf is None or not len(pf):
            rows.append((features.molecules.names[i], "", np.inf, np.nan, False, "", np.inf, np.nan, 0))
            continue
        X = pf.X.to(x_new.device, x_new.dtype)[:, torch.as_tensor(mutable)]
        d_new = torch.linalg.vector_norm(X - x_new[k, torch.as_tensor(mutable)], dim=1).cpu().numpy()
        d_old = torch.linalg.vector_norm(X - x0[k, torch.as_tensor(mutable)].to(X), dim=1).cpu().numpy()
        y = pred_fn(pf.X)
        hit = criterion.satisfied(y, ref[k:k + 1].expand(len(y), *ref.shape[1:])).cpu().numpy()
        col = getattr(criterion, "output", 0)
        yv = y[:, col].cpu().double().numpy()
        n = int(np.argmin(d_new))
        if hit.any():
            c = int(np.flatnonzero(hit)[np.argmin(d_old[hit])])
            crossing = (pf.molecules.smiles[c], float(d_old[c]), float(yv[c]))
        else:
            crossing = ("", np.inf, np.nan)
        rows.append((features.molecules.names[i], pf.molecules.smiles[n], float(d_new[n]), float(yv[n]), bool(hit[n]),
                     *crossing, len(pf)))
    return pd.DataFrame(rows, columns=["name", "neighbour", "neighbour_distance_std", "neighbour_prediction",
                                       "neighbour_success", "crossing", "crossing_distance_std",
                                       "crossing_prediction", "pool"])



def descriptor_sensitivity(model: object, features: Features, index: object = None, *, method: str = "gradient",
                           output: int = 0, **options: object) -> pd.DataFrame:
    """Per-feature sensitivity of the prediction, in the features' own units.

    Runs :func:`probe.sensitivity` on the standardised features and converts back: for
    ``method="gradient"`` the column ``per_unit`` is :math:`\\partial f / \\partial d` for a
    descriptor ``d`` in its own units (the model-unit gradient divided by the descriptor's
    standard deviation).

    Parameters
    ----------
    model : torch.nn.Module or callable
    features : Features
    index : int or sequence of int, optional
        Molecules (default all).
    method : str, default "gradient"
        Any method of :func:`probe.sensitivity` ("gradient", "gradient_x_input",
        "integrated_gradients", "occlusion", "attack").
    output : int, default 0
        Output column to explain.
    **options
        Passed to :func:`probe.sensitivity`.

    Returns
    -------
    pandas.DataFrame
        One row per (molecule, feature): ``molecule``, ``name``, ``feature``, ``value`` (raw),
        ``sensitivity`` (model units, as returned by the method), ``per_unit``.
    """
    from probe.sensitivity import sensitivity

    from .atoms import _select

    idx = _select(features, index)
    att = sensitivity(model, features.X[idx], method=method, target=output, **options)
    v = att.values.detach().cpu().double().numpy().reshape(len(idx), -1)
    n_f = len(features.names)
    return pd.DataFrame({
        "molecule": np.repeat(np.arange(len(idx)), n_f),
        "name": np.repeat([features.molecules.names[i] for i in idx], n_f),
        "feature": np.tile(features.names, len(idx)),
        "value": features.raw[idx].ravel(),
        "sensitivity": v.ravel(),
        "per_unit": (v / features.scale).ravel(),
    }).assign(method=method)
