"""Per-sequence tables ``probe dna`` writes: minimal edits, the ISM summary and the Hamming certificates."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from probe.errors import ProbeError

from .io import ALPHABET

__all__ = ["ism_summary", "sequence_table"]


def ism_summary(ism: torch.Tensor, X: torch.Tensor, names: Sequence[str]) -> pd.DataFrame:
    r"""The largest single-substitution effect of each sequence.

    For the ISM change :math:`\Delta_{b,p} = f(x^{p \to b}) - f(x)` (shape (N, 4, L), zero at the
    reference base), the substitution :math:`(p^*, b^*) = \arg\max_{b,p} |\Delta_{b,p}|`.

    Parameters
    ----------
    ism : torch.Tensor, shape (N, 4, L)
        :func:`domains.dna.saturation_mutagenesis` for one output.
    X : torch.Tensor, shape (N, 4, L)
        The one-hot sequences (an ``N`` column reads as reference ``N``).
    names : sequence of str, length N

    Returns
    -------
    pandas.DataFrame
        One row per sequence: ``sequence`` (index), ``name``, ``length_bp``, ``ism_position``
        (0-based), ``ism_ref``, ``ism_alt``, ``ism_change`` (signed :math:`\Delta` there, in the
        model's output units), ``ism_max_abs_change`` (:math:`|\Delta|` there) and
        ``ism_mean_abs_change`` (mean of :math:`|\Delta|` over the three alternative bases and all
        positions).

    Raises
    ------
    ProbeError
        Shapes that disagree.
    """
    if ism.dim() != 3 or ism.shape[1] != 4 or tuple(ism.shape) != tuple(X.shape):
        raise ProbeError(f"ism_summary needs ism and X of one shape (N, 4, L); got {tuple(ism.shape)} and "
                         f"{tuple(X.shape)}")
    if len(names) != len(X):
        raise ProbeError(f"ism_summary: {len(names)} names for {len(X)} sequences")
    d = ism.detach().double().cpu()
    n, _, length = d.shape
    flat = d.abs().reshape(n, -1).argmax(1)
    base, pos = (flat // length).numpy(), (flat % length).numpy()
    x = X.detach().cpu()
    known = x.sum(1) == 1
    ref_idx = x.argmax(1)
    rows = []
    for i in range(n):
        p = int(pos[i])
        change = float(d[i, base[i], p])
        rows.append({"sequence": i, "name": str(names[i]), "length_bp": int(length), "ism_position": p,
                     "ism_ref": ALPHABET[int(ref_idx[i, p])] if bool(known[i, p]) else "N",
                     "ism_alt": ALPHABET[int(base[i])], "ism_change": change, "ism_max_abs_change": abs(change),
                     "ism_mean_abs_change": float(d[i].abs().sum() / (3 * length))})
    return pd.DataFrame(rows)


def sequence_table(names: Sequence[str], edits: object, ism: torch.Tensor, X: torch.Tensor,
                   hamming: pd.DataFrame | None = None, labels: object = None) -> pd.DataFrame:
    """One row per sequence: the minimal edit set found, the ISM summary, the certified Hamming radii.

    Parameters
    ----------
    names : sequence of str, length N
    edits : EditResult
        :func:`domains.dna.minimal_edits` on the same sequences.
    ism : torch.Tensor, shape (N, 4, L)
        See :func:`ism_summary`.
    X : torch.Tensor, shape (N, 4, L)
    hamming : pandas.DataFrame, optional
        :func:`domains.dna.hamming.hamming_report`'s table: its radii columns are added
        (``smoothed_radius``, ``certified_positional`` where a deterministic certificate ran,
        ``exact_radius``, ``exact_is_lower_bound``; numbers of substituted bases).
    labels : array-like of int, optional
        The class each sequence was probed against.

    Returns
    -------
    pandas.DataFrame
        ``sequence``, ``name``, (``label``), ``edit_found`` (bool), ``n_edits`` (empty where none
        was found within ``max_edits``), ``edits`` (``"41C>T;44G>A"``: 0-based position, reference
        and new base), ``edit_positions`` (``"41;44"``), then the :func:`ism_summary` columns and
        the Hamming radii.
    """
    n = len(names)
    if len(edits.edits) != n:
        raise ProbeError(f"sequence_table: {len(edits.edits)} edit sets for {n} sequences")
    success = edits.success.cpu().numpy().astype(bool)
    table = pd.DataFrame({"sequence": np.arange(n), "name": [str(s) for s in names]})
    if labels is not None:
        table["label"] = np.asarray(torch.as_tensor(labels).cpu()).astype(int)
    table["edit_found"] = success
    table["n_edits"] = pd.array([len(e) if ok else None for e, ok in zip(edits.edits, success)], dtype="Int64")
    table["edits"] = [";".join(f"{p}{r}>{a}" for p, r, a in e) if ok else "" for e, ok in zip(edits.edits, success)]
    table["edit_positions"] = [";".join(str(p) for p, _, _ in e) if ok else ""
                               for e, ok in zip(edits.edits, success)]
    table = table.merge(ism_summary(ism, X, names).drop(columns="name"), on="sequence", validate="one_to_one")
    if hamming is not None:
        if len(hamming) != n:
            raise ProbeError(f"sequence_table: the Hamming table has {len(hamming)} rows for {n} sequences")
        for col in ("smoothed_radius", "certified_positional", "exact_radius", "exact_is_lower_bound"):
            if col in hamming.columns:
                table[col] = hamming[col].to_numpy()
    return table
