r"""Per-input Lipschitz upper bounds, :math:`L_i \ge \sup_x |\partial f/\partial x_i|`, from :mod:`probe.certify`.

For a model whose first layer is affine, :math:`f(x) = g(Wx + b)`,
:math:`|\partial f/\partial x_i| = |\nabla g(Wx + b)^\top W_{:,i}| \le \mathrm{Lip}_2(g)\,
\lVert W_{:,i}\rVert_2`, with :math:`\mathrm{Lip}_2(g)` from :func:`probe.certify.lipschitz_bound`
of the layers after the first (one certified bound, so every soundness guarantee of the
certifier carries over). For other models the whole model's L2 bound L serves for every
input, since :math:`|\partial f/\partial x_i| \le \lVert\nabla f\rVert_2 \le L`. Then
:math:`\nu_i = E[(\partial f/\partial x_i)^2] \le L_i^2`.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from ..errors import ProbeError

__all__ = ["input_lipschitz_bounds"]


def input_lipschitz_bounds(model: object, num_vars: int, *, method: str = "spectral",
                           device: str | torch.device | None = None, missing: str = "raise") -> np.ndarray | None:
    r"""Upper bounds :math:`L_i` on :math:`\sup_x |\partial f/\partial x_i|`, one per input.

    Parameters
    ----------
    model : torch.nn.Module
        A model :func:`probe.certify.lipschitz_bound` handles; an ``nn.Sequential`` that starts
        with ``nn.Linear`` gets one bound per input, :math:`\lVert W_{:,i}\rVert_2` times the
        bound of the rest (see the module docstring), any other one the model's L2 bound for every
        input.
    num_vars : int
        Number of inputs D.
    method : str, default "spectral"
        Passed to :func:`probe.certify.lipschitz_bound` ("spectral", "lipsdp-neuron", "lipsdp-layer").
    device : str or torch.device, optional
    missing : {"raise", "none"}, default "raise"
        What to do where no bound can be had (a plain callable, an unsupported layer): raise
        ``ProbeError``, or return None (with a warning for a module that could not be bounded).

    Returns
    -------
    numpy.ndarray of shape (D,), or None
    """
    from ..certify import lipschitz_bound

    if not isinstance(model, nn.Module):
        if missing == "none":
            return None
        raise ProbeError(f"per-input Lipschitz bounds need a torch.nn.Module, got {type(model).__name__}")
    try:
        if isinstance(model, nn.Sequential) and len(model) and isinstance(model[0], nn.Linear):
            if model[0].in_features != num_vars:
                raise ProbeError(f"the model's first Linear layer takes {model[0].in_features} inputs, the problem "
                                 f"has {num_vars}")
            first = model[0]
            rest = 1.0
            if len(model) > 1:
                rest = lipschitz_bound(nn.Sequential(*list(model)[1:]), norm="l2", method=method,
                                       input_shape=(first.out_features,), device=device).value
            columns = torch.linalg.vector_norm(first.weight.detach().to(torch.float64), dim=0).cpu().numpy()
            return columns * float(rest)
        L = lipschitz_bound(model, norm="l2", method=method, input_shape=(num_vars,), device=device).value
        return np.full(num_vars, float(L))
    except ProbeError as err:
        if missing == "none":
            warnings.warn(f"no Lipschitz bound for {type(model).__name__}: {err}", stacklevel=2)
            return None
        raise
