"""Making models robust: standard, PGD-adversarial, TRADES, Lipschitz-budget and Wasserstein-DRO training.

Plain PyTorch loops over a ``DataLoader`` with ``device=``, a progress bar and logging
callbacks; every function trains the model in place and returns a :class:`TrainResult`.

>>> result = probe.train.adversarial(model, loader, eps=0.1, norm="linf", epochs=5)  # doctest: +SKIP
>>> result.to_frame()                                                                 # doctest: +SKIP
"""

from .adversarial import adversarial
from .dro import wasserstein_dro
from .hamming import hamming_certified, substitution_noise
from .lipschitz import layer_norms, lipschitz_budget, lipschitz_upper_bound, project_lipschitz
from .loop import EpochLog, TrainResult, standard
from .trades import trades

__all__ = [
    "standard", "adversarial", "trades", "lipschitz_budget",
    "project_lipschitz", "layer_norms", "lipschitz_upper_bound",
    "TrainResult", "EpochLog",
    "wasserstein_dro",
]
__all__ += ["substitution_noise", "hamming_certified"]
