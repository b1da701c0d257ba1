"""The two triggers compared for on-the-fly molecular dynamics.

Both read the observations written by :class:`domains.md.onthefly.MDExplorer`:

- ``energy_rate_trigger``: the predicted energy-error rate
  ``sigma(dE/dt)^2 = sum_i v_i^T Cov(F_i) v_i`` (``Cov(F_i)``: committee covariance of atom
  i's force, ``v_i`` its velocity), so that ``sigma(dE/dt) dt`` is the standard deviation of
  the energy error the committee expects in one step; accumulated since the last label
  and compared with a tolerance in eV.
- ``max_force_deviation_trigger``: DP-GEN's model deviation
  ``max_i sqrt(<|F_i - <F_i>|^2>)`` between ``trust_lo`` and ``trust_hi`` (eV/A)
  (Zhang et al., Comput. Phys. Commun. 253, 107206, 2020).

and two of the energy-rate family built on the first:

- ``energy_budget_trigger``: a budget for the whole run's energy error, each interval's
  tolerance set from what remains of it (:class:`probe.active.Budgeted`);
- ``hybrid_trigger``: the energy rate, with the max force deviation as a floor for the first
  labels, before the calibration has anything to learn from (:class:`probe.active.Hybrid`).
"""

from __future__ import annotations

from probe.active.triggers import Accumulated, Budgeted, Hybrid, TrustBand
from probe.errors import ProbeError

__all__ = ["energy_rate_trigger", "max_force_deviation_trigger", "energy_budget_trigger", "hybrid_trigger"]


def _rate_key(calibration: str | None) -> str:
    if calibration not in (None, "rate", "forces"):
        raise ProbeError(f"calibration must be None, 'rate' or 'forces', got {calibration!r}")
    return "sigma_dE" if calibration is None else f"sigma_dE_cal_{calibration}"


def energy_rate_trigger(tolerance: float = 0.05, *, calibration: str | None = None,
                        covariance: str = "block") -> Accumulated:
    """Label when ``sum_steps sigma(dE/dt) dt`` since the last label exceeds ``tolerance`` (eV).

    The sum bounds the standard deviation of the accumulated energy error
    (``std(sum X) <= sum std(X)``), whatever the correlation of the force errors between steps,
    *if* the committee's spread is the true error's; the raw spread of a small committee is
    not (on Cu13 the realised rate errors at the labels are 1.1-3x the predicted standard
    deviation), which ``calibration="rate"`` corrects on average. The tolerance holds per
    interval between two labels: the drift of a whole run is the sum of the intervals' errors,
    whose standard deviation is ``sqrt(sum_k A_k^2) ~ tolerance * sqrt(K)`` for ``K`` intervals
    with independent errors (the model is retrained between them), and ``K * tolerance`` when
    they share a sign. Choose ``tolerance = budget / sqrt(K)`` for a budget on the whole run.

    Parameters
    ----------
    tolerance : float, default 0.05
        eV, per interval between two labels.
    calibration : {None, "rate", "forces"}, default None
        ``None``: the raw committee spread (observation ``sigma_dE``). Otherwise accumulate
        ``s * sigma(dE/dt) dt`` with the variance scale ``s^2`` fitted on the realised errors at
        the labels so far (:class:`probe.active.uncertainty.VarianceScaling`; Musil et al.,
        J. Chem. Theory Comput. 15, 906, 2019): ``"rate"`` on the rate error itself,
        ``s^2 = sum_k (sum_i dF_i . v_i)^2 / sum_k sigma_k(dE/dt)^2`` (observation
        ``sigma_dE_cal_rate``), ``"forces"`` on the force components,
        ``s^2 = sum |dF_i|^2 / sum tr Cov(F_i)`` (``sigma_dE_cal_forces``); ``dF_i`` is the
        oracle's force minus the committee mean *before* the label was learned.
    covariance : {"block", "full"}, default "block"
        ``"block"``: ``sum_i v_i^T Cov(F_i) v_i`` (per-atom blocks; observation ``sigma_dE``);
        ``"full"``: ``v^T Cov(F) v`` with the cross-atom covariances, the members' variance of
        ``sum_i F_mi . v_i`` (observation ``sigma_dE_full``; only with ``calibration=None``).
    """
    key = _rate_key(calibration)
    if covariance not in ("block", "full"):
        raise ProbeError(f"covariance must be 'block' or 'full', got {covariance!r}")
    if covariance == "full":
        if calibration is not None:
            raise ProbeError("covariance='full' is only available with calibration=None")
        return Accumulated("sigma_dE_full", tolerance)
    return Accumulated(key, tolerance)


def max_force_deviation_trigger(trust_lo: float = 0.1, trust_hi: float = 0.4, *,
                                label_failed: bool = True) -> TrustBand:
    """DP-GEN's trigger on the max force deviation (eV/A); see :class:`probe.active.TrustBand`."""
    return TrustBand("max_force_deviation", trust_lo, trust_hi, label_failed=label_failed)


def energy_budget_trigger(budget: float, steps: int, *, calibration: str | None = "rate") -> Budgeted:
    """Label so that the whole run's predicted energy error stays within ``budget`` (eV).

    Each interval's tolerance is ``min(R^2 / ((steps - n) u), R)`` with ``R^2`` the budget's
    variance not yet spent by the completed intervals (``budget^2 - sum_k A_k^2``), ``n`` the steps
    taken and ``u`` the mean ``sigma(dE/dt) dt`` per step so far (:class:`probe.active.Budgeted`):
    the standard deviation of the run's drift, a sum of independent interval errors, is
    ``sqrt(sum_k A_k^2) <= budget`` if the spread is honest.

    Parameters
    ----------
    budget : float
        eV, for the whole run (per walker).
    steps : int
        The run's MD steps.
    calibration : {"rate", "forces", None}, default "rate"
        Which spread is accumulated (see :func:`energy_rate_trigger`).
    """
    return Budgeted(_rate_key(calibration), budget, steps)


def hybrid_trigger(tolerance: float = 0.05, *, floor: float = 0.1, warmup: int = 5, calibration: str | None = "rate",
                   budget: float | None = None, steps: int | None = None) -> Hybrid:
    """The energy-rate trigger with a max-force-deviation floor for the first ``warmup`` labels.

    Label when the accumulated ``s sigma(dE/dt) dt`` passes ``tolerance`` (or, with ``budget``
    and ``steps``, the tolerance of :func:`energy_budget_trigger`), or, during the first
    ``warmup`` labels after the start, when the max force deviation reaches ``floor`` (eV/A):
    before the calibration has seen labels, the raw spread under-estimates the error and the
    force deviation is the safer signal.

    Parameters
    ----------
    tolerance : float, default 0.05
        eV per interval (ignored with ``budget``).
    floor : float, default 0.1
        eV/A.
    warmup : int, default 5
        Labels during which the floor is active.
    calibration : {"rate", "forces", None}, default "rate"
    budget : float, optional
        eV for the whole run; needs ``steps``.
    steps : int, optional
    """
    if budget is not None:
        if steps is None:
            raise ProbeError("hybrid_trigger with a budget needs steps")
        primary = energy_budget_trigger(budget, steps, calibration=calibration)
    else:
        primary = Accumulated(_rate_key(calibration), tolerance)
    return Hybrid(primary, TrustBand("max_force_deviation", floor, float("inf")), warmup)
