"""On-the-fly molecular dynamics with a committee that asks an oracle when unsure.

The pieces live in modules of one job each; this module gathers their public names:

- :mod:`~domains.md.systems`: the catalogue of starting structures (``SYSTEMS``, ``load_system``);
- :mod:`~domains.md.dynamics`: the integrators shared by the explorer and the reference;
- :mod:`~domains.md.committee`: committees (ours, or any list of ASE calculators / torch potentials);
- :mod:`~domains.md.explorer`: ``MDExplorer``, the walkers and their uncertainties;
- :mod:`~domains.md.learner`: ``PotentialLearner`` (full or warm-started retraining), ``FixedCommittee``;
- :mod:`~domains.md.runner`: ``run_onthefly`` and its result ``OnTheFlyRun``;
- :mod:`~domains.md.reference`: ``reference_trajectory``, MD with the oracle at every step;
- :mod:`~domains.md.metrics`: ``force_errors``, ``energy_drift``, ``interval_drift``, ``calibration_summary``;
- :mod:`~domains.md.comparison`: ``compare_triggers`` and ``TriggerComparison`` (with its plot).

After every step a trigger reads the committee's uncertainty; a triggered configuration is
labelled by the oracle, committed to the label store, the committee is retrained and the dynamics go
on with the new model (the loop of :class:`probe.active.ActiveLoop`).
"""

from __future__ import annotations

from .committee import CalculatorCommittee, Committee, TorchCommittee, as_committee
from .comparison import TriggerComparison, compare_triggers
from .dynamics import Dynamics, initial_velocities
from .explorer import MDExplorer
from .learner import FixedCommittee, PotentialLearner
from .metrics import calibration_summary, energy_drift, force_errors, interval_drift
from .reference import reference_trajectory
from .runner import OnTheFlyRun, run_onthefly
from .systems import SYSTEMS, load_system

__all__ = ["SYSTEMS", "load_system", "MDExplorer", "PotentialLearner", "OnTheFlyRun", "run_onthefly",
           "reference_trajectory", "force_errors", "energy_drift", "interval_drift", "compare_triggers",
           "TriggerComparison", "Committee", "CalculatorCommittee", "TorchCommittee", "as_committee",
           "FixedCommittee", "Dynamics", "initial_velocities", "calibration_summary"]
