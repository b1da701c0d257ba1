"""Evaluate a model on a sample matrix, in batches on its device; values and input gradients.

The device policy is :func:`probe.devices.resolve_device`'s: an explicit ``device``, else the
model's parameters, else the CPU. A model with parameters is evaluated in its own floating dtype;
a parameterless callable in float64, so that estimates from the same samples agree with NumPy
references to rounding error.
"""

from __future__ import annotations

import numpy as np
import torch

from ..devices import batches, model_hygiene, resolve_device
from ..errors import ProbeError
from ..progress import enabled

__all__ = ["evaluate", "evaluate_with_gradients"]


def _dtype(fn: object) -> torch.dtype:
    if isinstance(fn, torch.nn.Module):
        p = next(iter(fn.parameters()), None)
        if p is not None and p.is_floating_point():
            return p.dtype
    return torch.float64


def _pick(out: object, n: int, output: int) -> torch.Tensor:
    if not torch.is_tensor(out):
        out = torch.as_tensor(np.asarray(out))
    if out.dim() == 0 or out.shape[0] != n:
        raise ProbeError(f"the model returned shape {tuple(out.shape)} for {n} inputs; the first dimension must be "
                         "the batch dimension")
    out = out.reshape(n, -1)
    if not 0 <= output < out.shape[1]:
        raise ProbeError(f"output={output} is out of range for a model with {out.shape[1]} outputs")
    return out[:, output]


def _bar(n: int, batch_size: int | None, progress: bool | None, desc: str) -> object:
    from tqdm.auto import tqdm

    return tqdm(list(batches(n, batch_size)), desc=desc, leave=False,
                disable=not enabled(progress))


def _check_finite(y: np.ndarray, X: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(y)
    if bad.any():
        i = int(np.argmax(bad))
        raise ProbeError(f"the model returned {y[i]} at sample {i} (inputs {X[i].tolist()})")
    return y


def evaluate(fn: object, X: np.ndarray, *, output: int = 0, batch_size: int | None = 65536,
             device: str | torch.device | None = None, progress: bool | None = None) -> np.ndarray:
    """Model outputs on the rows of ``X``.

    Parameters
    ----------
    fn : torch.nn.Module or callable
        Maps a tensor of shape (B, D) to outputs of shape (B,) or (B, K).
    X : numpy.ndarray, shape (N, D)
    output : int, default 0
        Which output column to analyse.
    batch_size : int or None, default 65536
        Rows per call (all at once if None); the result does not depend on it.
    device : str or torch.device, optional
    progress : bool, optional
        A progress bar over batches; by default only on a terminal.

    Returns
    -------
    numpy.ndarray of float64, shape (N,)
    """
    X = np.asarray(X, dtype=np.float64)
    dev = resolve_device(device, fn)
    dtype = _dtype(fn)
    out = np.empty(X.shape[0])
    with model_hygiene(fn, dev) as m, torch.no_grad():
        for s in _bar(X.shape[0], batch_size, progress, "gsa: model"):
            x = torch.as_tensor(X[s], dtype=dtype, device=dev)
            out[s] = _pick(m(x), x.shape[0], output).detach().to(torch.float64).cpu().numpy()
    return _check_finite(out, X)


def evaluate_with_gradients(fn: object, X: np.ndarray, *, output: int = 0, batch_size: int | None = 65536,
                            device: str | torch.device | None = None, progress: bool | None = None
                            ) -> tuple[np.ndarray, np.ndarray]:
    r"""Outputs and input gradients :math:`\partial f/\partial x_i` by one forward and one backward pass per batch.

    The gradient of the sum of outputs over a batch is the per-sample gradient, because each
    output depends only on its own row (true of any model without batch-coupling layers; a model
    in eval mode has none of batch-norm's coupling).

    Parameters
    ----------
    fn : torch.nn.Module or differentiable callable
    X : numpy.ndarray, shape (N, D)
    output, batch_size, device, progress
        As in :func:`evaluate`.

    Returns
    -------
    Y : numpy.ndarray, shape (N,)
    G : numpy.ndarray, shape (N, D)
    """
    X = np.asarray(X, dtype=np.float64)
    dev = resolve_device(device, fn)
    dtype = _dtype(fn)
    Y = np.empty(X.shape[0])
    G = np.empty_like(X)
    with model_hygiene(fn, dev) as m:
        for s in _bar(X.shape[0], batch_size, progress, "gsa: gradients"):
            x = torch.as_tensor(X[s], dtype=dtype, device=dev).requires_grad_(True)
            with torch.enable_grad():
                y = _pick(m(x), x.shape[0], output)
                if not y.requires_grad:
                    raise ProbeError("the model's output does not depend differentiably on its input; DGSM by "
                                     "autograd needs a torch-differentiable model")
                (g,) = torch.autograd.grad(y.sum(), x)
            Y[s] = y.detach().to(torch.float64).cpu().numpy()
            G[s] = g.detach().to(torch.float64).cpu().numpy()
    _check_finite(G.sum(1), X)
    return _check_finite(Y, X), G
