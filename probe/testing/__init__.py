"""Analytic test problems with known answers, and conformance checks for extensions."""

from .problems import AffineClassifier, AffineRegressor, affine_margin, affine_threshold_distance

__all__ = ["AffineClassifier", "AffineRegressor", "affine_margin", "affine_threshold_distance"]
