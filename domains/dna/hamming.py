"""Certified Hamming radii of a DNA model beside the minimal edits found: the sandwich, sequence by sequence.

For every sequence: how many substitutions provably leave the decision standing (substitution
smoothing and bound propagation), the exact number where enumeration reaches, how many the edit
search needed to flip it, and the ceiling that the data set's code distance puts on any classifier.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from probe import Misclassify, OneHot, ProbeError
from probe.certify import SubstitutionSmoothing, certified_radius, code_distance
from probe.devices import resolve_device
from probe.testing import exact_hamming_radius

from .edits import minimal_edits
from .ism import prepare_input

__all__ = ["hamming_report"]


def hamming_report(model: torch.nn.Module, X: object, *, labels: object = None, reference: object = None,
                   reference_labels: object = None, keep: float = 0.9, n: int = 10_000, alpha: float = 0.001,
                   methods: tuple = ("positional",), exact_max: int = 1, max_edits: int = 8, edits: object = None,
                   seed: int = 0, device: str | torch.device | None = None) -> pd.DataFrame:
    """Per-sequence certified Hamming radii, exact radius, minimal edits found and code-distance ceiling.

    For a sound certificate and any search, ``certified <= exact < edits found``; and no classifier
    certifies more than ``ceiling`` at a sequence and at its nearest differently labelled neighbour
    together.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier on one-hot (N, 4, L).
    X : torch.Tensor (N, 4, L) or sequences
    labels : array-like of int, optional
        Classes to certify; default the model's predictions.
    reference, reference_labels : optional
        A labelled data set (one-hot and classes) for the code-distance ceiling, e.g. the training
        set; with ``labels`` the sequences themselves join it. Without either the ceiling is NaN.
    keep : float, default 0.9
        Substitution smoothing: probability that a base is kept.
    n : int, default 10_000
        Smoothing samples per sequence (100 more choose the class).
    alpha : float, default 0.001
    methods : tuple of str, default ("positional",)
        Bound-propagation methods for the deterministic radius (``"crown"`` is tighter on some models,
        slower on all).
    exact_max : int, default 1
        Enumerate every sequence within this many substitutions (C(L, r) 3^r of them).
    max_edits : int, default 8
        Largest edit set the search tries.
    edits : MinimalEdits, optional
        A search already run on these sequences (with the same labels), reused instead of searching again.
    seed : int, default 0
    device : str or torch.device, optional

    Returns
    -------
    pandas.DataFrame
        One row per sequence: ``name``, ``label``, ``smoothed_label`` (-1: abstained), ``p_lower``,
        ``smoothed_radius``, ``certified_<method>``, ``exact_radius`` with ``exact_is_lower_bound`` (no
        flip within ``exact_max``), ``edits_found`` (NaN where the search failed), ``nearest_other`` and
        ``ceiling``.
    """
    dev = resolve_device(device, model, X)
    x, seqs = prepare_input(X, dev)
    names = seqs.names if seqs is not None else tuple(f"seq{i}" for i in range(len(x)))
    with torch.no_grad():
        pred = model(x).argmax(1) if labels is None else None
    y = pred if labels is None else torch.as_tensor(np.asarray(labels), device=dev).long().reshape(-1)
    if len(y) != len(x):
        raise ProbeError(f"labels has {len(y)} entries for {len(x)} sequences")
    cert = SubstitutionSmoothing(model, keep=keep, n=n, alpha=alpha, seed=seed, device=dev).certify(x)
    smoothed = torch.where(cert.label == y, cert.radius, torch.zeros_like(cert.radius))
    frame = pd.DataFrame({"name": names, "label": y.cpu().numpy(), "smoothed_label": cert.label.cpu().numpy(),
                          "p_lower": cert.p_lower.cpu().numpy(), "smoothed_radius": smoothed.cpu().numpy()})
    for method in methods:
        frame[f"certified_{method}"] = certified_radius(model, x, norm="hamming", space=OneHot(), method=method,
                                                        labels=y, batch_size=16, device=dev).cpu().numpy()
    exact = exact_hamming_radius(model, x, labels=y, max_radius=exact_max, device=dev).cpu().numpy()
    frame["exact_radius"] = exact
    frame["exact_is_lower_bound"] = exact >= exact_max
    if edits is None:
        edits = minimal_edits(model, x, Misclassify(y), max_edits=max_edits, device=dev)
    found = edits.n_edits.cpu().numpy()
    frame["edits_found"] = np.where(np.isfinite(found), found, np.nan)
    frame["nearest_other"], frame["ceiling"] = _ceiling(x, labels, reference, reference_labels)
    return frame


def _ceiling(x: torch.Tensor, labels: object, reference: object, reference_labels: object
             ) -> tuple[np.ndarray, np.ndarray]:
    """Distance to the nearest differently labelled sequence of the reference set, and half of it, rounded down."""
    nan = np.full(len(x), np.nan)
    if (reference is None) != (reference_labels is None):
        raise ProbeError("give reference and reference_labels together")
    if reference is None and labels is None:
        return nan, nan
    if labels is None:
        ref = torch.as_tensor(reference, dtype=x.dtype, device=x.device)
        return _against(x, ref, torch.as_tensor(np.asarray(reference_labels)).long().reshape(-1))
    parts = [x]
    ys = [torch.as_tensor(np.asarray(labels)).long().reshape(-1)]
    if reference is not None:
        parts.append(torch.as_tensor(reference, dtype=x.dtype, device=x.device))
        ys.append(torch.as_tensor(np.asarray(reference_labels)).long().reshape(-1))
    cd = code_distance(torch.cat(parts), torch.cat(ys).to(x.device))
    d = cd.nearest[: len(x)].cpu().numpy().astype(float)
    d[d < 0] = np.nan
    return d, np.floor((d - 1) / 2)


def _against(x: torch.Tensor, ref: torch.Tensor, ref_y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Without labels for ``x``: distance to the nearest reference sequence of another class than the nearest one."""
    from probe.certify.hamming import symbol_encoding

    enc = symbol_encoding(OneHot(), x)
    a, b = enc.codes(x), enc.codes(ref)
    d = (a[:, None, :] != b[None, :, :]).sum(2)                               # (N, M)
    own = ref_y.to(d.device)[d.argmin(1)]
    other = torch.where(ref_y.to(d.device)[None, :] != own[:, None], d, torch.full_like(d, 1 << 30)).amin(1)
    out = other.cpu().numpy().astype(float)
    out[out >= 1 << 30] = np.nan
    return out, np.floor((out - 1) / 2)
