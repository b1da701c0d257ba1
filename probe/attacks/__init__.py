"""Attacks: one algorithm per file, sharing the template in ``base.py``."""

from .base import Attack, RunResult
from .cw import CarliniWagner
from .deepfool import DeepFool
from .edit_search import EditSearch
from .fgsm import FGSM
from .fmn import FMN
from .hopskipjump import HopSkipJump
from .margin_search import MarginSearch
from .pgd import PGD
from .square import Square

__all__ = ["Attack", "RunResult", "PGD", "FGSM", "DeepFool", "FMN", "CarliniWagner", "MarginSearch",
           "EditSearch", "HopSkipJump", "Square"]
