r"""Global sensitivity of a property model over the ranges its descriptors take in the data.

A property model reads standardised features; a chemist thinks in descriptor units (logP, Å² of
polar surface, counts). :func:`descriptor_model` is the model as a function of chosen descriptors
in their own units, the others held at their median; :func:`descriptor_problem` puts a range on
each descriptor (central quantiles of the data, uniform) and, with ``correlated=True``, a
Gaussian copula fitted to the data (the correlation of the normal scores
:math:`\Phi^{-1}(\mathrm{rank}/(n+1))`), since descriptors such as MolWt and HeavyAtomCount move
together; :func:`descriptor_sobol` and :func:`descriptor_shapley` give Sobol' indices
(independent ranges) and Shapley effects (the data's dependence) through :mod:`probe.gsa`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy import stats

from probe import gsa
from probe.devices import module_device
from probe.errors import ProbeError

from .featurize import Features

__all__ = ["descriptor_problem", "descriptor_model", "descriptor_sobol", "descriptor_shapley"]


def _columns(features: Features, names: Sequence[str] | None) -> list[int]:
    sl = features.featurizer.descriptor_slice()
    if sl is None:
        raise ProbeError("these features hold no descriptors; featurize with kind='descriptors'")
    names = list(features.names[sl]) if names is None else list(names)
    unknown = [n for n in names if n not in features.names]
    if unknown:
        raise ProbeError(f"descriptor(s) {unknown} are not among the features")
    return [features.names.index(n) for n in names]


def descriptor_problem(features: Features, names: Sequence[str] | None = None, *,
                       quantiles: tuple[float, float] = (0.05, 0.95), correlated: bool = False) -> dict:
    """A SALib problem over descriptors: each uniform between two quantiles of its values in the data.

    Parameters
    ----------
    features : Features
        From :func:`domains.chem.featurize` with descriptors.
    names : sequence of str, optional
        Descriptors to vary (default: all descriptor columns).
    quantiles : (float, float), default (0.05, 0.95)
    correlated : bool, default False
        Add ``corr``: the Gaussian-copula correlation of the descriptors in the data.

    Returns
    -------
    dict

    Raises
    ------
    ProbeError
        A descriptor that is constant between the quantiles (naming it).
    """
    cols = _columns(features, names)
    lo, hi = np.quantile(features.raw[:, cols], quantiles, axis=0)
    for j, c in enumerate(cols):
        if not hi[j] > lo[j]:
            raise ProbeError(f"descriptor {features.names[c]!r} takes one value ({lo[j]}) between the "
                             f"{quantiles} quantiles of the data; leave it out")
    problem = {"num_vars": len(cols), "names": [features.names[c] for c in cols],
               "bounds": [[float(a), float(b)] for a, b in zip(lo, hi)]}
    if correlated:
        scores = stats.norm.ppf(stats.rankdata(features.raw[:, cols], axis=0) / (len(features) + 1))
        problem["corr"] = np.corrcoef(scores, rowvar=False).tolist()
    return problem


def descriptor_model(model: Callable[[torch.Tensor], torch.Tensor], features: Features,
                     names: Sequence[str] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model`` as a function of descriptors in their own units, the other features at their median.

    Returns
    -------
    callable
        Tensor (B, k) of raw descriptor values -> the model's output, computed on the model's
        device in its dtype; differentiable, so :func:`probe.gsa.dgsm` applies.
    """
    cols = _columns(features, names)
    param = next(iter(model.parameters()), None) if isinstance(model, torch.nn.Module) else None
    dtype = param.dtype if param is not None else features.X.dtype
    dev = module_device(model) or features.X.device
    mean = torch.as_tensor(features.mean, dtype=dtype, device=dev)
    scale = torch.as_tensor(features.scale, dtype=dtype, device=dev)
    base = torch.as_tensor(np.median(features.raw, axis=0), dtype=dtype, device=dev)
    idx = torch.as_tensor(cols, device=dev)

    def fn(x: torch.Tensor) -> torch.Tensor:
        full = base.expand(x.shape[0], -1).clone()
        full[:, idx] = x.to(device=dev, dtype=dtype)
        return model((full - mean) / scale)

    return fn


def descriptor_sobol(model: Callable[[torch.Tensor], torch.Tensor], features: Features,
                     names: Sequence[str] | None = None, *, quantiles: tuple[float, float] = (0.05, 0.95),
                     n: int = 512, seed: int = 0, **options: object) -> gsa.SobolResult:
    """Sobol' indices of a property model over independent descriptor ranges (:func:`probe.gsa.sobol`)."""
    problem = descriptor_problem(features, names, quantiles=quantiles)
    return gsa.sobol(descriptor_model(model, features, problem["names"]), problem, n=n, seed=seed, **options)


def descriptor_shapley(model: Callable[[torch.Tensor], torch.Tensor], features: Features,
                       names: Sequence[str] | None = None, *, quantiles: tuple[float, float] = (0.05, 0.95),
                       seed: int = 0, **options: object) -> gsa.ShapleyResult:
    """Shapley effects of a property model with the descriptors' dependence in the data (:func:`probe.gsa.shapley`)."""
    problem = descriptor_problem(features, names, quantiles=quantiles, correlated=True)
    return gsa.shapley(descriptor_model(model, features, problem["names"]), problem, seed=seed, **options)
