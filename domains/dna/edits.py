"""Minimal-edit counterfactuals: the fewest substitutions that change what a DNA model says."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from probe import AttackResult, Attribution, Criterion, OneHot, ProbeError
from probe.attacks.edit_search import EditSearch
from probe.devices import resolve_device

from .io import ALPHABET, Sequences, decode
from .ism import prepare_input

__all__ = ["MinimalEdits", "minimal_edits"]


@dataclass(frozen=True)
class MinimalEdits:
    """Result of :func:`minimal_edits`.

    Attributes
    ----------
    edits : list of list of (int, str, str)
        Per sequence, the substitutions ``(position, ref_base, alt_base)`` (``ref_base`` is ``"N"``
        at an unknown column); empty where the search failed or nothing was needed.
    success : torch.Tensor of bool, shape (N,)
    x_adv : torch.Tensor, shape (N, 4, L)
        The edited sequences (the best found where the search failed).
    x : torch.Tensor, shape (N, 4, L)
        The sequences searched from.
    result : probe.AttackResult
        The underlying search result (distance = number of substitutions, queries).
    names : tuple of str
    """

    edits: list
    success: torch.Tensor
    x_adv: torch.Tensor
    x: torch.Tensor
    result: AttackResult
    names: tuple

    @property
    def n_edits(self) -> torch.Tensor:
        """Substitutions per sequence (``inf`` where the search failed)."""
        return self.result.distance

    def to_frame(self) -> pd.DataFrame:
        """One row per substitution: ``sequence``, ``name``, ``position``, ``ref``, ``alt``, ``n_edits``."""
        rows = [{"sequence": i, "name": self.names[i], "position": p, "ref": r, "alt": a, "n_edits": len(e)}
                for i, e in enumerate(self.edits) if bool(self.success[i]) for p, r, a in e]
        return pd.DataFrame(rows, columns=["sequence", "name", "position", "ref", "alt", "n_edits"])

    def attribution(self) -> Attribution:
        """Attack-based attribution: 1 at the reference base of every edited position (the alternative
        base where the reference is unknown), 0 elsewhere."""
        v = torch.zeros_like(self.x)
        for i, e in enumerate(self.edits):
            if not bool(self.success[i]):
                continue
            for p, r, a in e:
                v[i, ALPHABET.index(r if r in ALPHABET else a), p] = 1.0
        return Attribution(values=v, method="edits")

    def sequences(self) -> Sequences:
        """The edited sequences as letters."""
        return Sequences(tuple(f"{n}|edited" for n in self.names), tuple(decode(self.x_adv)))

    def plot(self, index: int = 0, ism: torch.Tensor | None = None, ax: object = None) -> object:
        """The edits of sequence ``index`` on its ISM heat map (if given), else on its one-hot map."""
        from .plots import plot_ism

        table = ism[index] if ism is not None else self.x[index]
        return plot_ism(table, self.x[index], edits=self.edits[index], ax=ax,
                        title=f"{self.names[index]}: {len(self.edits[index])} edit(s)")


def minimal_edits(model: object, X: object, criterion: Criterion | None = None, *, max_edits: int = 10,
                  mask: object = None, beam_width: int = 1, guide: str = "ism", prune: bool = True,
                  candidates: int = 32, batch_size: int | None = 256, device: str | torch.device | None = None,
                  already_satisfied: str = "keep", progress: bool = False) -> MinimalEdits:
    """The fewest substitutions that make ``model`` meet ``criterion`` on each sequence.

    A greedy (``beam_width=1``) or beam search over substitutions, each step adding the
    substitution that brings the criterion's margin closest to success, stopping at the first
    edit set that satisfies it, then dropping edits that are not needed
    (:class:`probe.attacks.edit_search.EditSearch`). With ``guide="ism"`` every step is a full
    in-silico mutagenesis of the current sequence, so with ``max_edits=1`` the answer is exactly
    what :func:`saturation_mutagenesis` says; ``guide="gradient"`` ranks substitutions by their
    first-order (HotFlip) estimate and evaluates the ``candidates`` best.

    Parameters
    ----------
    model : torch.nn.Module or callable
    X : torch.Tensor (N, 4, L) or sequences
    criterion : probe.Criterion, optional
        Default ``probe.Misclassify()`` (leave the predicted class); ``probe.Threshold(v, direction=...)``
        pushes a score across ``v``; ``probe.TargetClass(c)`` reaches class ``c``.
    max_edits : int, default 10
    mask : bool array of shape (L,) or (N, L), optional
        True at positions that may not change.
    beam_width, guide, prune, candidates : see ``EditSearch``.
    batch_size : int or None, default 256
    device : str or torch.device, optional
    already_satisfied : {"keep", "raise"}, default "keep"
        Sequences that meet the criterion unedited are kept with zero edits (or raise ``ProbeError``).
    progress : bool, default False
        Progress bar over batches (only on a terminal).

    Returns
    -------
    MinimalEdits

    Raises
    ------
    ProbeError
        If the model's outputs are not of shape (N,) or (N, K) (a profile (N, C, L) must be reduced
        to one score per class or output first), or the mask does not fit the sequences.
    """
    from probe import Misclassify

    dev = resolve_device(device, model, X)
    Xt, seqs = prepare_input(X, dev)
    names = seqs.names if seqs is not None else tuple(f"seq{i}" for i in range(len(Xt)))
    criterion = Misclassify() if criterion is None else criterion
    attack = EditSearch(max_edits=max_edits, beam_width=beam_width, guide=guide, prune=prune, candidates=candidates)
    m = None if mask is None else torch.as_tensor(np.asarray(mask), dtype=torch.bool)
    if m is not None and m.shape[-1] != Xt.shape[-1]:
        raise ProbeError(f"mask has {m.shape[-1]} positions, the sequences {Xt.shape[-1]}")
    if m is not None and m.dim() == 2 and m.shape[0] != len(Xt):
        raise ProbeError(f"mask has {m.shape[0]} rows for {len(Xt)} sequences")
    # a per-sequence mask (N, L) travels with its sequences through the attack's batches
    result = attack(model, Xt, criterion, space=OneHot(mask=m), batch_size=batch_size, device=dev,
                    already_satisfied=already_satisfied, progress=progress)
    edits = _edit_lists(Xt, result.x_adv, result.success)
    return MinimalEdits(edits=edits, success=result.success, x_adv=result.x_adv, x=Xt, result=result, names=names)


def _edit_lists(x: torch.Tensor, x_adv: torch.Tensor, success: torch.Tensor) -> list:
    changed = (x != x_adv).any(1)
    ref, alt = decode(x), decode(x_adv)
    out = []
    for i in range(len(x)):
        pos = changed[i].nonzero().flatten().tolist()
        out.append([(p, ref[i][p], alt[i][p]) for p in pos] if bool(success[i]) else [])
    return out
