"""Attacks: one algorithm per file, sharing the template in ``base.py``."""

from .base import Attack, RunResult
from .pgd import PGD

__all__ = ["Attack", "RunResult", "PGD"]
