"""Analytic test problems with known answers, and conformance checks for extensions."""

from .checks import check_attack, check_space, onehot_minimal_edits
from .problems import AffineClassifier, AffineRegressor, affine_margin, affine_threshold_distance, probability_box

__all__ = ["AffineClassifier", "AffineRegressor", "affine_margin", "affine_threshold_distance", "probability_box",
           "check_attack", "check_space", "onehot_minimal_edits"]
