"""probe: adversarial machine learning as a scientific instrument."""

from typing import TYPE_CHECKING

from .lazy import attach

__version__ = "0.1.0"

if TYPE_CHECKING:  # these load on first use (probe.lazy), so that ``probe --help`` imports no torch
    from . import active, attacks, certify, diagnose, gsa, loading, models, surrogate, testing, train
    from .criteria import Criterion, Misclassify, Shift, TargetClass, Threshold
    from .errors import ProbeError
    from .loading import load_model
    from .microscope import minimal_perturbation, robustness_curve
    from .modality_report import ModalityReport, modality_report
    from .models import wrap
    from .multimodal import FixedInputs, LateFusion, fix_inputs
    from .results import AttackResult, Attribution, Certificate, RobustnessCurve
    from .sensitivity import register_method as register_sensitivity_method
    from .sensitivity import sensitivity
    from .spaces import Bits, Box, OneHot, Space
    from .wasserstein import worst_case_risk

__all__ = [
    "ProbeError",
    "Criterion", "Misclassify", "TargetClass", "Threshold", "Shift",
    "Space", "Box", "OneHot", "Bits",
    "AttackResult", "Attribution", "RobustnessCurve", "Certificate",
    "minimal_perturbation", "sensitivity", "register_sensitivity_method", "robustness_curve", "wrap",
    "load_model",
    "worst_case_risk",
    "fix_inputs", "FixedInputs", "LateFusion", "modality_report", "ModalityReport",
    "active", "attacks", "certify", "diagnose", "loading", "models", "surrogate", "testing", "train",
    "gsa",
]

__getattr__, __dir__ = attach(
    __name__,
    submodules=["active", "attacks", "certify", "diagnose", "gsa", "loading", "models", "surrogate", "testing",
                "train"],
    submod_attrs={
        "criteria": ["Criterion", "Misclassify", "Shift", "TargetClass", "Threshold"],
        "errors": ["ProbeError"],
        "loading": ["load_model"],
        "microscope": ["minimal_perturbation", "robustness_curve"],
        "modality_report": ["ModalityReport", "modality_report"],
        "models": ["wrap"],
        "multimodal": ["FixedInputs", "LateFusion", "fix_inputs"],
        "results": ["AttackResult", "Attribution", "Certificate", "RobustnessCurve"],
        "sensitivity": ["sensitivity"],
        "spaces": ["Bits", "Box", "OneHot", "Space"],
        "wasserstein": ["worst_case_risk"],
    },
    aliases={"register_sensitivity_method": ("sensitivity", "register_method")},
)
