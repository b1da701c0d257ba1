"""Analytic test problems with known answers, conformance checks for extensions, a host-sync counter and a
figure-quality check."""

from ..features import TsiprasDistribution
from .browser import PageCheck, find_chromium, open_page
from .checks import check_attack, check_space, onehot_minimal_edits
from .figures import figure_problems, visible_texts
from .hamming import all_sequences, exact_hamming_radius, exact_substitution_probabilities
from .problems import (
    AffineClassifier,
    AffineRegressor,
    affine_margin,
    affine_threshold_distance,
    digits_mlp,
    probability_box,
)
from .syncs import PROXY_SYNCS, HostSyncCounter, count_host_syncs

__all__ = ["AffineClassifier", "AffineRegressor", "affine_margin", "affine_threshold_distance", "probability_box",
           "check_attack", "check_space", "onehot_minimal_edits", "count_host_syncs", "HostSyncCounter",
           "PROXY_SYNCS", "digits_mlp",
           "TsiprasDistribution",
           "exact_hamming_radius", "exact_substitution_probabilities", "all_sequences",
           "figure_problems", "visible_texts"]
__all__ += ["open_page", "find_chromium", "PageCheck"]
