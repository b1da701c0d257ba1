"""Triggers: when does the explorer stop trusting the model and ask the oracle?

A trigger looks at one step's observation (a mapping of named uncertainty values)
and decides whether the configuration is labelled. Triggers may keep state between
labels (an accumulated error); the loop calls :meth:`Trigger.reset` after every label.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..errors import ProbeError

__all__ = ["Decision", "Trigger", "Threshold", "TrustBand", "Accumulated", "Budgeted", "Hybrid"]


@dataclass(frozen=True)
class Decision:
    """A trigger's verdict on one configuration.

    Attributes
    ----------
    label : bool
        Whether the oracle is asked for this configuration.
    reason : str
        ``"accurate"`` (trusted), ``"candidate"`` (labelled), ``"failed"`` (beyond the upper
        trust level) or ``"tolerance"`` (an accumulated error reached its tolerance).
    value : float
        The quantity compared with the threshold (the accumulated value for accumulating triggers).
    """

    label: bool
    reason: str
    value: float


@runtime_checkable
class Trigger(Protocol):
    """Decides from an observation whether to label; ``reset()`` is called after each label."""

    def check(self, observation: Mapping[str, float]) -> Decision: ...

    def reset(self) -> None: ...


def _value(observation: Mapping[str, float], key: str) -> float:
    if key not in observation:
        raise ProbeError(f"the observation has no {key!r}; it has {sorted(observation)}")
    value = float(observation[key])
    if math.isnan(value):
        raise ProbeError(f"observation {key!r} is NaN")
    return value


class Threshold:
    """Label when ``observation[key] > threshold``.

    Parameters
    ----------
    key : str
        Name of the observed uncertainty.
    threshold : float
        Positive level above which the model is not trusted.
    """

    def __init__(self, key: str, threshold: float) -> None:
        if not threshold > 0:
            raise ProbeError(f"threshold must be positive, got {threshold}")
        self.key = key
        self.threshold = float(threshold)

    def check(self, observation: Mapping[str, float]) -> Decision:
        v = _value(observation, self.key)
        return Decision(v > self.threshold, "candidate" if v > self.threshold else "accurate", v)

    def reset(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"Threshold(key={self.key!r}, threshold={self.threshold})"


class TrustBand:
    """DP-GEN's selection by model deviation between two trust levels.

    With ``epsilon = observation[key]``: ``epsilon < trust_lo`` is *accurate* (kept, not
    labelled), ``trust_lo <= epsilon < trust_hi`` is a *candidate* (labelled) and
    ``epsilon >= trust_hi`` has *failed* (Zhang et al., "DP-GEN: A concurrent learning
    platform for the generation of reliable deep learning based potential energy models",
    Comput. Phys. Commun. 253, 107206, 2020).

    Parameters
    ----------
    key : str
        Observation holding the model deviation (e.g. the max force deviation, eV/A).
    trust_lo, trust_hi : float
        ``0 < trust_lo < trust_hi``.
    label_failed : bool, default True
        DP-GEN's exploration discards failed frames. A simulation that continues on the fly
        cannot skip its present configuration, so by default failed frames are labelled too;
        ``False`` restores DP-GEN's discard (the frame is neither labelled nor trusted).
    """

    def __init__(self, key: str, trust_lo: float, trust_hi: float, *, label_failed: bool = True) -> None:
        if not 0 < trust_lo < trust_hi:
            raise ProbeError(f"need 0 < trust_lo < trust_hi, got trust_lo={trust_lo}, trust_hi={trust_hi}")
        self.key = key
        self.trust_lo = float(trust_lo)
        self.trust_hi = float(trust_hi)
        self.label_failed = bool(label_failed)

    def check(self, observation: Mapping[str, float]) -> Decision:
        v = _value(observation, self.key)
        if v < self.trust_lo:
            return Decision(False, "accurate", v)
        if v < self.trust_hi:
            return Decision(True, "candidate", v)
        return Decision(self.label_failed, "failed", v)

    def reset(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"TrustBand(key={self.key!r}, trust_lo={self.trust_lo}, trust_hi={self.trust_hi})"


class Accumulated:
    """Label when the sum of ``observation[key]`` since the last label exceeds ``tolerance``.

    ``A_k = sum_{j=l+1}^{k} u_j`` with ``l`` the step of the last label; label at the first
    ``k`` with ``A_k > tolerance``. With ``u_j = sigma_j(dE/dt) * dt`` this bounds the standard
    deviation of the energy error accumulated along a trajectory, because the standard
    deviation of a sum is at most the sum of the standard deviations (Minkowski's inequality):
    ``std(int dE/dt dt) <= int std(dE/dt) dt``.

    Parameters
    ----------
    key : str
        Observation holding the per-step increment (non-negative).
    tolerance : float
        Level of the accumulated value at which the oracle is called (e.g. in eV).
    """

    def __init__(self, key: str, tolerance: float) -> None:
        if not tolerance > 0:
            raise ProbeError(f"tolerance must be positive, got {tolerance}")
        self.key = key
        self.tolerance = float(tolerance)
        self.accumulated = 0.0

    def check(self, observation: Mapping[str, float]) -> Decision:
        v = _value(observation, self.key)
        if v < 0:
            raise ProbeError(f"observation {self.key!r} must be non-negative to accumulate, got {v}")
        self.accumulated += v
        fire = self.accumulated > self.tolerance
        return Decision(fire, "tolerance" if fire else "accurate", self.accumulated)

    def reset(self) -> None:
        self.accumulated = 0.0

    def __repr__(self) -> str:
        return f"Accumulated(key={self.key!r}, tolerance={self.tolerance})"


class Budgeted:
    """:class:`Accumulated` with each interval's tolerance set from what remains of a whole-run budget.

    The errors of successive intervals between labels are taken as independent (the model is
    retrained between them), so their variances add: a run of intervals with accumulated
    predictions ``A_1, A_2, ...`` keeps the standard deviation of its total error within
    ``budget`` while ``sum_k A_k^2 <= budget^2``. After ``n`` of ``steps`` steps, with the
    completed intervals' ``S = sum_k A_k^2`` and the mean increment so far ``u`` (per step), the
    remaining ``R^2 = budget^2 - S`` is spread over the remaining ``steps - n`` steps: intervals of
    tolerance ``tau`` take ``tau / u`` steps each, so ``(steps - n) u / tau`` of them spend
    ``(steps - n) u tau``, and

    ``tau = min(R^2 / ((steps - n) u), R)``,

    recomputed at every step (0, label at once, when the budget is spent). A rising increment
    lowers the tolerance of the rest of the run, a quiet stretch raises it.

    Parameters
    ----------
    key : str
        Observation holding the per-step increment (non-negative, e.g. ``sigma(dE/dt) dt`` in eV).
    budget : float
        Standard deviation allowed for the whole run's accumulated error (same units).
    steps : int
        Steps in the run (per walker).
    """

    def __init__(self, key: str, budget: float, steps: int) -> None:
        if not budget > 0:
            raise ProbeError(f"budget must be positive, got {budget}")
        if steps < 1:
            raise ProbeError(f"steps must be >= 1, got {steps}")
        self.key = key
        self.budget = float(budget)
        self.steps = int(steps)
        self.accumulated = 0.0
        self.spent = 0.0
        self.seen = 0
        self.total = 0.0

    @property
    def tolerance(self) -> float:
        """The present interval's tolerance ``tau``."""
        remaining2 = max(self.budget ** 2 - self.spent, 0.0)
        left = max(self.steps - self.seen, 1)
        rate = self.total / max(self.seen, 1)
        if rate <= 0:
            return math.sqrt(remaining2)
        return min(remaining2 / (left * rate), math.sqrt(remaining2))

    def check(self, observation: Mapping[str, float]) -> Decision:
        v = _value(observation, self.key)
        if v < 0:
            raise ProbeError(f"observation {self.key!r} must be non-negative to accumulate, got {v}")
        self.accumulated += v
        self.total += v
        self.seen += 1
        fire = self.accumulated > self.tolerance
        return Decision(fire, "tolerance" if fire else "accurate", self.accumulated)

    def reset(self) -> None:
        self.spent += self.accumulated ** 2
        self.accumulated = 0.0

    def __repr__(self) -> str:
        return f"Budgeted(key={self.key!r}, budget={self.budget}, steps={self.steps})"


class Hybrid:
    """A primary trigger, with a floor trigger that also labels during the first ``warmup`` labels.

    Label when ``primary`` fires, or, while fewer than ``warmup`` labels were taken since the start,
    when ``floor`` fires. Made for the energy-rate trigger, whose calibration needs labels before
    it means anything, with DP-GEN's force-deviation trigger as the floor of those first labels.

    Parameters
    ----------
    primary : Trigger
    floor : Trigger
    warmup : int
        Labels (resets) during which the floor is active.
    """

    def __init__(self, primary: Trigger, floor: Trigger, warmup: int) -> None:
        if warmup < 0:
            raise ProbeError(f"warmup must be >= 0, got {warmup}")
        self.primary = copy.deepcopy(primary)
        self.floor = copy.deepcopy(floor)
        self.warmup = int(warmup)
        self.labels = 0

    def check(self, observation: Mapping[str, float]) -> Decision:
        main = self.primary.check(observation)
        if main.label or self.labels >= self.warmup:
            return main
        low = self.floor.check(observation)
        if low.label:
            return Decision(True, "floor", low.value)
        return main

    def reset(self) -> None:
        self.labels += 1
        self.primary.reset()
        self.floor.reset()

    def __repr__(self) -> str:
        return f"Hybrid(primary={self.primary!r}, floor={self.floor!r}, warmup={self.warmup})"
