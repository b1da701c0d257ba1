"""Certificates: sound bounds on what a model can do inside a perturbation set.

Bound propagation (:mod:`~probe.certify.ibp`, :mod:`~probe.certify.crown`) through
:func:`bound_outputs`; certified radii by bisection (:func:`certified_radius`); Lipschitz
upper bounds (:func:`lipschitz_bound`: spectral products and LipSDP) and the empirical lower
bound that sandwiches them; randomized smoothing (:class:`Smoothing`, :func:`smoothing_radius`).
Hamming radii of one-hot sequences and bit vectors: substitution smoothing
(:class:`SubstitutionSmoothing`), randomized ablation (:class:`RandomizedAblation`), bound propagation
over a budget of substitutions (``certified_radius(..., norm="hamming")``) and the code distance
(:func:`code_distance`) that caps them all.
"""

from .ablation import RandomizedAblation, ablation_radius, ablation_threshold
from .base import BOUND_METHODS, BoundMethod, InputSet, bound_outputs, get_bound_method, register_bound_method
from .conformance import check_bound_method
from .crown import CROWN, AlphaCROWN
from .fusion import FusionCertificate, certify_fusion, fusion_radius, softmax_gap_lower
from .hamming import CodeDistance, HammingSet, code_distance, hamming_radius
from .ibp import IBP
from .lipschitz import LipschitzBound, empirical_lipschitz_lower_bound, lipschitz_bound, lipschitz_margin_radius
from .positional import PositionalIBP
from .quadratic import QuadraticNet, quadratic_bounds, quadratic_network_form, trust_region_max
from .radius import certified_radius
from .sdp import SDP, SDPBounds, sdp_bounds
from .smoothing import Smoothing, SmoothingCertificate, smoothing_radius
from .substitution import HammingCertificate, SubstitutionSmoothing, substitution_radius, substitution_threshold

__all__ = ["bound_outputs", "certified_radius", "lipschitz_bound", "smoothing_radius", "Smoothing",
           "SmoothingCertificate", "LipschitzBound", "empirical_lipschitz_lower_bound", "lipschitz_margin_radius",
           "BoundMethod", "BOUND_METHODS", "register_bound_method", "get_bound_method", "InputSet", "IBP", "CROWN",
           "AlphaCROWN", "check_bound_method", "SDP", "SDPBounds", "sdp_bounds",
           "quadratic_bounds", "quadratic_network_form", "QuadraticNet", "trust_region_max",
           "certify_fusion", "fusion_radius", "FusionCertificate", "softmax_gap_lower"]
__all__ += ["substitution_threshold", "substitution_radius", "SubstitutionSmoothing", "HammingCertificate",
            "RandomizedAblation", "ablation_radius", "ablation_threshold", "hamming_radius", "HammingSet",
            "code_distance", "CodeDistance", "PositionalIBP"]
