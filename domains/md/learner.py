"""The on-the-fly loop's learner: retrains the committee on the labels (or leaves a fixed committee alone)."""

from __future__ import annotations

from collections.abc import Sequence

from probe.active import Label
from probe.errors import ProbeError

from .potential import EnsemblePotential

__all__ = ["PotentialLearner", "FixedCommittee"]


class PotentialLearner:
    """Retrains an :class:`EnsemblePotential` on all labels (warm start, deterministic).

    Every fit starts from the present weights. ``"full"`` updates run ``steps`` full-batch Adam
    steps with a fresh optimiser; ``"warm"`` updates keep Adam's moment estimates between fits and
    run ``steps`` minibatch steps of ``batch_size`` labels (the newest and a uniform sample of the
    others), so the cost of an update does not grow with the number of labels.

    Parameters
    ----------
    potential : EnsemblePotential
    first_steps : int, default 300
        Adam steps of the first fit (on the initial labels, full batch).
    steps : int, default 100
        Adam steps of every later fit.
    lr : float, default 3e-3
    update : {"full", "warm"}, default "full"
    batch_size : int, default 8
        Labels per step of a ``"warm"`` update.
    """

    def __init__(self, potential: EnsemblePotential, *, first_steps: int = 300, steps: int = 100,
                 lr: float = 3e-3, update: str = "full", batch_size: int = 8) -> None:
        if update not in ("full", "warm"):
            raise ProbeError(f"update must be 'full' or 'warm', got {update!r}")
        self.potential = potential
        self.first_steps = int(first_steps)
        self.steps = int(steps)
        self.lr = float(lr)
        self.update = update
        self.batch_size = int(batch_size)
        self.fits = 0

    def start(self, seed: int) -> None:
        self.potential.reset(seed)
        self.fits = 0

    def fit(self, labels: Sequence[Label]) -> None:
        confs = [(lab.inputs["numbers"], lab.inputs["positions"], float(lab.targets["energy"]), lab.targets["forces"])
                 for lab in labels]
        if self.fits == 0:
            self.potential.fit(confs, steps=self.first_steps, lr=self.lr, seed=len(labels))
        elif self.update == "full":
            self.potential.fit(confs, steps=self.steps, lr=self.lr, seed=len(labels))
        else:
            self.potential.fit(confs, steps=self.steps, lr=self.lr, seed=len(labels), batch_size=self.batch_size,
                               warm_optimizer=True)
        self.fits += 1


class FixedCommittee:
    """A learner that learns nothing: for a committee trained elsewhere (its labels are still recorded)."""

    def start(self, seed: int) -> None:
        pass

    def fit(self, labels: Sequence[Label]) -> None:
        pass
