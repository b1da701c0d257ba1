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
"""

from __future__ import annotations

from probe.active.triggers import Accumulated, TrustBand

__all__ = ["energy_rate_trigger", "max_force_deviation_trigger"]


def energy_rate_trigger(tolerance: float = 0.05) -> Accumulated:
    """Label when ``sum_steps sigma(dE/dt) dt`` since the last label exceeds ``tolerance`` (eV).

    The sum bounds the standard deviation of the accumulated energy error
    (``std(sum X) <= sum std(X)``), whatever the correlation of the force errors between steps.
    """
    return Accumulated("sigma_dE", tolerance)


def max_force_deviation_trigger(trust_lo: float = 0.1, trust_hi: float = 0.4, *,
                                label_failed: bool = True) -> TrustBand:
    """DP-GEN's trigger on the max force deviation (eV/A); see :class:`probe.active.TrustBand`."""
    return TrustBand("max_force_deviation", trust_lo, trust_hi, label_failed=label_failed)
