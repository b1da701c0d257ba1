"""Global sensitivity analysis: Sobol', Morris, DGSM by autograd and Shapley effects, on SALib's problem dicts.

A problem is SALib's dict (``num_vars``, ``names``, ``bounds``, optional ``dists`` and ``groups``)
with one more optional key, ``corr``, a Gaussian-copula correlation matrix for dependent inputs
(:mod:`probe.gsa.problem`). Samplers (:mod:`~probe.gsa.samplers`) reproduce SALib's designs for
the same seed and the analyses (``analyze_*``) SALib's estimators on the same outputs; the
one-call estimators (:func:`sobol`, :func:`morris`, :func:`dgsm`, :func:`shapley`) evaluate any
torch model or tensor callable in batches on its device. DGSM takes gradients by autograd (one
forward and one backward pass per sample) and reports two bounds beside its estimates: the
Sobol'-Kucherenko bound on the total index and :math:`\\nu_i \\le L_i^2` with per-input Lipschitz
constants from :mod:`probe.certify`.
"""

from . import functions
from .dgsm import analyze_dgsm, bounds_frame, dgsm
from .evaluate import evaluate, evaluate_with_gradients
from .lipschitz import input_lipschitz_bounds
from .morris import analyze_morris, elementary_effects, morris
from .problem import Problem, as_problem
from .results import DGSMResult, MorrisResult, ShapleyResult, SobolResult
from .samplers import base_sample, latin_hypercube, morris_sample, saltelli_sample
from .shapley import shapley
from .sobol import analyze_sobol, sobol

__all__ = ["sobol", "morris", "dgsm", "shapley", "analyze_sobol", "analyze_morris", "analyze_dgsm",
           "elementary_effects", "saltelli_sample", "latin_hypercube", "morris_sample", "base_sample",
           "evaluate", "evaluate_with_gradients", "input_lipschitz_bounds", "Problem", "as_problem",
           "SobolResult", "MorrisResult", "DGSMResult", "ShapleyResult", "functions", "bounds_frame"]
