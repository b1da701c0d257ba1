"""Certificates: sound bounds on what a model can do inside a perturbation set.

Bound propagation (:mod:`~probe.certify.ibp`, :mod:`~probe.certify.crown`) through
:func:`bound_outputs`; certified radii by bisection (:func:`certified_radius`); Lipschitz
upper bounds (:func:`lipschitz_bound`, spectral and LipSDP) and the empirical lower bound
that sandwiches them; randomized smoothing (:class:`Smoothing`, :func:`smoothing_radius`).
"""

from .base import BOUND_METHODS, BoundMethod, InputSet, bound_outputs, get_bound_method, register_bound_method
from .crown import CROWN
from .ibp import IBP
from .lipschitz import LipschitzBound, empirical_lipschitz_lower_bound, lipschitz_bound, lipschitz_margin_radius

__all__ = ["bound_outputs", "BoundMethod", "BOUND_METHODS", "register_bound_method", "get_bound_method",
           "InputSet", "IBP", "CROWN",
           "lipschitz_bound", "LipschitzBound", "empirical_lipschitz_lower_bound", "lipschitz_margin_radius"]
