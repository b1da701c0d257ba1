"""A property classifier with a fingerprint branch and a descriptor branch, fused late.

Morgan fingerprint bits and standardised RDKit descriptors are two views of a molecule with
different geometry (bits in {0, 1}, descriptors in a data range). :func:`fingerprint_descriptor_model`
puts one small MLP on each and averages their class probabilities (a :class:`probe.LateFusion`
with rule ``"probabilities"``), so :mod:`probe.certify.fusion` can say whether the decision
survives one view being perturbed, or replaced by anything within its range.
:func:`fusion_features` featurises molecules into the two modalities with their valid ranges.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from probe import LateFusion

from .featurize import featurize

__all__ = ["FusionFeatures", "fusion_features", "fingerprint_descriptor_model"]


@dataclass(frozen=True)
class FusionFeatures:
    """The two modalities of :func:`fusion_features`.

    Attributes
    ----------
    inputs : dict
        ``{"fingerprint": (N, n_bits), "descriptors": (N, D)}`` float32 tensors.
    domain : dict
        Valid range of each modality in model units: bits in [0, 1]; descriptors within the
        physical bounds of each descriptor (standardised), clipped to the data range widened by
        ``margin``.
    descriptor_names : tuple of str
    """

    inputs: dict
    domain: dict
    descriptor_names: tuple


def fusion_features(molecules: object, *, n_bits: int = 256, margin: float = 0.5) -> FusionFeatures:
    """Fingerprint and descriptor modalities of ``molecules`` (see :class:`FusionFeatures`)."""
    fp = featurize(molecules, kind="morgan", n_bits=n_bits)
    desc = featurize(molecules, kind="descriptors")
    box = desc.box(bounds="data", margin=margin)
    lo, hi = box.bounds_like(desc.X[:1])
    inputs = {"fingerprint": fp.X, "descriptors": desc.X}
    domain = {"fingerprint": (torch.zeros(n_bits), torch.ones(n_bits)),
              "descriptors": (lo.reshape(-1).float(), hi.reshape(-1).float())}
    return FusionFeatures(inputs, domain, tuple(desc.names))


def fingerprint_descriptor_model(n_bits: int, n_descriptors: int, *, n_classes: int = 2, hidden: int = 16,
                                 weights: tuple[float, float] = (0.5, 0.5), seed: int = 0) -> LateFusion:
    """Two MLPs (Linear - ReLU - Linear) fused by averaged probabilities."""
    torch.manual_seed(seed)
    fp = nn.Sequential(nn.Linear(n_bits, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))
    desc = nn.Sequential(nn.Linear(n_descriptors, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))
    return LateFusion({"fingerprint": fp, "descriptors": desc}, rule="probabilities", weights=list(weights))
