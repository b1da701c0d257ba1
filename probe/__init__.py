"""probe: adversarial machine learning as a scientific instrument."""

from . import attacks
from .criteria import Criterion, Misclassify, Shift, TargetClass, Threshold
from .errors import ProbeError
from .results import AttackResult, Attribution, Certificate, RobustnessCurve
from .spaces import Box, OneHot, Space

__version__ = "0.1.0"

__all__ = [
    "ProbeError",
    "Criterion", "Misclassify", "TargetClass", "Threshold", "Shift",
    "Space", "Box", "OneHot",
    "AttackResult", "Attribution", "RobustnessCurve", "Certificate",
    "attacks",
]
