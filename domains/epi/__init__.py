"""Epidemiology: R_t estimates with hard error bounds under reporting error.

Incidence series in (arrays, pandas, CSV), the Cori et al. (2013) estimator with EpiEstim's
semantics, a renewal-equation simulator with realistic reporting, a neural R_t estimator with a
certified Lipschitz constant, and hard bounds on both estimates given a bound on reporting error.
"""

from typing import TYPE_CHECKING

from probe.lazy import attach

if TYPE_CHECKING:  # these load on first use (probe.lazy), so that ``probe CMD --help`` stays fast
    from . import datasets
    from .bounds import CoriBounds, NeuralBounds, ReportingError, cori_mean_bounds, neural_bounds
    from .cori import cori
    from .gsa import rt_model, rt_problem, rt_sobol
    from .io import check_incidence, read_incidence_csv
    from .neural import NeuralRtEstimator, train_neural_estimator
    from .serial_interval import check_serial_interval, discretize_serial_interval, read_serial_interval_csv
    from .simulate import SimulatedEpidemic, simulate

__all__ = ["cori", "discretize_serial_interval", "check_serial_interval", "read_serial_interval_csv",
           "check_incidence", "read_incidence_csv", "datasets",
           "ReportingError", "cori_mean_bounds", "CoriBounds", "neural_bounds", "NeuralBounds",
           "simulate", "SimulatedEpidemic", "train_neural_estimator", "NeuralRtEstimator",
           "rt_model", "rt_problem", "rt_sobol"]

__getattr__, __dir__ = attach(
    __name__,
    submodules=["datasets"],
    submod_attrs={
        "bounds": ["CoriBounds", "NeuralBounds", "ReportingError", "cori_mean_bounds", "neural_bounds"],
        "cori": ["cori"],
        "gsa": ["rt_model", "rt_problem", "rt_sobol"],
        "io": ["check_incidence", "read_incidence_csv"],
        "neural": ["NeuralRtEstimator", "train_neural_estimator"],
        "serial_interval": ["check_serial_interval", "discretize_serial_interval", "read_serial_interval_csv"],
        "simulate": ["SimulatedEpidemic", "simulate"],
    },
)
