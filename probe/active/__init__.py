"""Active learning: vectorised ensembles, uncertainty, triggers, oracles, a durable label store and the loop."""

from .ensemble import Ensemble
from .loop import ActiveLoop, Candidate, Explorer, Learner, LoopResult
from .oracle import Oracle, OracleError, label_batch
from .store import Label, LabelStore
from .triggers import Accumulated, Budgeted, Decision, Hybrid, Threshold, Trigger, TrustBand
from .uncertainty import max_vector_deviation, member_covariance, member_variance, rate_variance, vector_deviation

__all__ = [
    "Ensemble",
    "ActiveLoop", "Candidate", "Explorer", "Learner", "LoopResult",
    "Oracle", "OracleError", "label_batch",
    "Label", "LabelStore",
    "Trigger", "Decision", "Threshold", "TrustBand", "Accumulated", "Budgeted", "Hybrid",
    "member_variance", "member_covariance", "vector_deviation", "max_vector_deviation", "rate_variance",
]
