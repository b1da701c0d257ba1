"""A sequence model fused with a signal track, in the style of BPNet's control track.

BPNet (Avsec et al., Nat. Genet. 53:354, 2021) feeds the control (input / bias) track into its
heads linearly: the profile head adds a 1x1 convolution of the control track to its logits and
the count head a linear function of the control's log counts. :func:`sequence_track_model` is
the classification analogue: a convolutional branch on the one-hot sequence and a branch linear
in the two-strand control track (a 1x1 convolution averaged over positions), their logits summed
(a :class:`probe.LateFusion` with rule ``"sum"``), so :mod:`probe.certify.fusion` certifies the
decision with the track perturbed, or fully adversarial within its range of counts.
:func:`control_track` simulates a track that carries a weak trace of the class.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from probe import LateFusion, ProbeError

from .models import small_cnn

__all__ = ["ControlTrackHead", "control_track", "sequence_track_model"]


class ControlTrackHead(nn.Module):
    """Logits linear in a (N, strands, L) track: a 1x1 convolution averaged over positions."""

    def __init__(self, n_outputs: int, strands: int = 2):
        super().__init__()
        self.linear = nn.Linear(strands, n_outputs)

    def forward(self, track: torch.Tensor) -> torch.Tensor:
        return self.linear(track.mean(2))


def control_track(labels: object, length: int, *, depth: float = 2.0, signal: float = 0.3, strands: int = 2,
                  seed: int = 0) -> torch.Tensor:
    r"""Simulated control-track counts, shape (N, strands, L), float32.

    Each position of each strand draws :math:`\mathrm{Poisson}(\lambda_n)` reads with
    :math:`\lambda_n = \text{depth} \cdot (1 + \text{signal} \cdot [y_n = 1] - \text{signal} \cdot [y_n = 2])`:
    open chromatin at housekeeping promoters raises the background a little, closed
    no-promoter regions lower it, so the track alone classifies weakly.
    """
    y = np.asarray(torch.as_tensor(labels).cpu()).reshape(-1)
    if length < 1 or depth <= 0 or not 0 <= signal < 1:
        raise ProbeError(f"control_track needs length >= 1, depth > 0, 0 <= signal < 1; got {length}, {depth}, "
                         f"{signal}")
    rng = np.random.default_rng(seed)
    rate = depth * (1 + signal * (y == 1) - signal * (y == 2))
    counts = rng.poisson(rate[:, None, None], size=(len(y), strands, length))
    return torch.as_tensor(counts, dtype=torch.float32)


def sequence_track_model(n_outputs: int = 3, *, channels: int = 16, kernel: int = 11, strands: int = 2,
                         seed: int = 0) -> LateFusion:
    """``LateFusion({"sequence": small_cnn(...), "control": ControlTrackHead(...)}, rule="sum")``."""
    seq = small_cnn(n_outputs, channels=channels, kernel=kernel, seed=seed)
    torch.manual_seed(seed + 1)
    return LateFusion({"sequence": seq, "control": ControlTrackHead(n_outputs, strands)}, rule="sum")
