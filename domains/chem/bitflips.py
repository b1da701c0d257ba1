"""Certified bit flips: how many Morgan-fingerprint bits can flip before a predicted property crosses a threshold.

The decision is "the prediction stays at or above t", t a threshold per molecule (by default its own
prediction minus ``delta``: a loss of ``delta`` log units of potency). Its certified Hamming radius
over the fingerprint bits (descriptors held fixed) comes from bound propagation with a budget of flips
and from substitution smoothing with an alphabet of two (each bit flipped with probability 1 - keep),
as in :mod:`probe.certify`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from probe import Bits, ProbeError
from probe.certify import SubstitutionSmoothing, certified_radius

__all__ = ["certify_bit_flips", "ThresholdDecision"]


class ThresholdDecision(nn.Module):
    """Two scores ``[t - f(x), f(x) - t]`` from a regressor f, with t read from the input's last column.

    Class 1 means "at or above the threshold". Carrying t as an (immutable) input column lets every
    molecule have its own threshold while the model stays one graph for bound propagation.
    """

    def __init__(self, model: nn.Module, output: int = 0):
        super().__init__()
        self.model = model
        self.output = output

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        f = self.model(z[:, :-1])[:, self.output:self.output + 1]
        t = z[:, -1:]
        return torch.cat([t - f, f - t], 1)


def certify_bit_flips(model: nn.Module, features: object, index: object = None, *, threshold: float | None = None,
                      delta: float = 1.0, keep: float = 0.9, n: int = 10_000, alpha: float = 0.001,
                      method: str = "positional", seed: int = 0) -> pd.DataFrame:
    """Certified number of fingerprint bit flips under which each molecule's prediction stays above a threshold.

    Parameters
    ----------
    model : torch.nn.Module
        A regressor on the features (its first output is the property).
    features : domains.chem.Features
        Features with Morgan bits (``morgan_<bit>`` columns, 0/1) and possibly descriptors (held fixed).
    index : sequence of int, optional
        Molecules to certify (default all).
    threshold : float, optional
        The property threshold t; default each molecule's prediction minus ``delta``.
    delta : float, default 1.0
    keep : float, default 0.9
        Smoothing: each bit is kept with this probability, flipped otherwise.
    n : int, default 10_000
        Smoothing samples per molecule.
    alpha : float, default 0.001
    method : str, default "positional"
        The deterministic bound (see ``probe.certify.certified_radius(norm="hamming")``).
    seed : int, default 0

    Returns
    -------
    pandas.DataFrame
        One row per molecule: ``molecule``, ``name``, ``prediction``, ``threshold``, ``above`` (the
        decision), ``set_bits``, ``certified_flips`` (deterministic), ``smoothed_above`` (-1: abstained),
        ``smoothed_flips``.

    Raises
    ------
    ProbeError
        If the features hold no Morgan bits or the bits are not 0/1 (standardised fingerprints).
    """
    names = list(features.names)
    bits = torch.tensor([nm.startswith("morgan_") for nm in names])
    if not bits.any():
        raise ProbeError("these features hold no Morgan bits (featurize with kind='morgan')")
    idx = np.arange(len(features.X)) if index is None else np.asarray(index, dtype=int)
    X = torch.as_tensor(features.X)[idx]
    dev = next(iter(model.parameters())).device if any(True for _ in model.parameters()) else X.device
    X = X.to(dev)
    with torch.no_grad():
        pred = model(X)[:, 0]
    t = pred - float(delta) if threshold is None else torch.full_like(pred, float(threshold))
    Z = torch.cat([X, t[:, None]], 1)
    mask = torch.cat([~bits, torch.tensor([True])])
    space = Bits(mask=mask)
    decision = ThresholdDecision(model).to(dev).eval()
    above = (pred >= t).long()
    certified = certified_radius(decision, Z, norm="hamming", space=space, method=method, labels=above, batch_size=16)
    cert = SubstitutionSmoothing(decision, keep=keep, space=space, n=n, alpha=alpha, seed=seed).certify(Z)
    smoothed = torch.where(cert.label == above, cert.radius, torch.zeros_like(cert.radius))
    mol_names = getattr(getattr(features, "molecules", None), "names", None)
    return pd.DataFrame({
        "molecule": idx, "name": [mol_names[i] for i in idx] if mol_names is not None else [str(i) for i in idx],
        "prediction": pred.cpu().numpy(), "threshold": t.cpu().numpy(), "above": above.bool().cpu().numpy(),
        "set_bits": X[:, bits.to(dev)].sum(1).cpu().numpy().astype(int),
        "certified_flips": certified.cpu().numpy(), "smoothed_above": cert.label.cpu().numpy(),
        "smoothed_flips": smoothed.cpu().numpy()})
