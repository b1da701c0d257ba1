"""Device resolution and model hygiene shared by every tensor path (public: the domains use them).

The device policy, in one place: an explicit ``device`` wins; else the device of the model's
parameters (or buffers); else, for a callable without parameters (a scikit-learn wrapper, a NumPy
function, a closure over tensors), the device of the input tensor; else the CPU. Nothing is sent
to CUDA behind the user's back: a user moves work to a GPU by moving the model or the input, or by
passing ``device="cuda"``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from .errors import ProbeError

__all__ = ["resolve_device", "module_device", "model_hygiene", "single_thread", "blas_threads", "as_input",
           "batches"]


def resolve_device(device: str | torch.device | None = None, model: object | None = None, x: object = None
                   ) -> torch.device:
    """The device to compute on.

    Parameters
    ----------
    device : str or torch.device, optional
        Wins when given.
    model : object, optional
        A ``torch.nn.Module`` with parameters or buffers gives their device.
    x : object, optional
        For a model without parameters, a tensor input gives its device.

    Returns
    -------
    torch.device
        ``device``, else the model's, else the input tensor's, else the CPU (never CUDA by default).
    """
    if device is not None:
        return torch.device(device)
    model_device = module_device(model)
    if model_device is not None:
        return model_device
    if torch.is_tensor(x):
        return x.device
    return torch.device("cpu")


def module_device(model: object) -> torch.device | None:
    """Device of a module's first parameter (else first buffer); None for anything else."""
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
        for b in model.buffers():
            return b.device
    return None


@contextlib.contextmanager
def model_hygiene(model: object, device: torch.device | None = None) -> Iterator[object]:
    """Put a model in eval mode without parameter gradients, on ``device``; restore all on exit.

    Restores the training flag of every sub-module, the ``requires_grad`` flag of every
    parameter and the device the parameters were on, so the caller gets the model back as
    it was (tangermeme's and foolbox's habit).
    """
    if not isinstance(model, torch.nn.Module):
        yield model
        return
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    original = next(iter(model.parameters()), None)
    original_device = original.device if original is not None else None
    try:
        if device is not None and original_device is not None and original_device != device:
            model.to(device)
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield model
    finally:
        for m, mode in modes:
            m.train(mode)
        for p, flag in flags:
            p.requires_grad_(flag)
        if device is not None and original_device is not None and original_device != device:
            model.to(original_device)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, restoring the previous count on exit.

    For tiny models (tens of features or atoms) thread hand-offs cost more than the arithmetic.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def blas_threads(threads: int | None) -> Iterator[None]:
    """Limit BLAS/LAPACK threads (NumPy, SciPy) for the duration of a block; ``None`` leaves them as they are.

    Through threadpoolctl where installed (it comes with scikit-learn). On a shared machine a
    multithreaded dense solve can run many times slower than a single-threaded one.
    """
    if threads is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    with threadpool_limits(limits=int(threads), user_api="blas"):
        yield


def as_input(x: object, *, name: str = "x", device: torch.device | None = None) -> torch.Tensor:
    """Convert ``x`` to a floating tensor (a copy, never the caller's storage) and check it.

    Raises
    ------
    ProbeError
        If ``x`` is empty, has no batch dimension or holds NaN/inf (naming the first bad index).
    """
    t = torch.as_tensor(x)
    if not torch.is_floating_point(t):
        t = t.to(torch.get_default_dtype())
    t = t.detach().to(device=device).clone()
    if t.dim() < 1 or t.shape[0] == 0:
        raise ProbeError(f"{name} must have a leading batch dimension with at least one input, "
                         f"got shape {tuple(t.shape)}")
    bad = ~torch.isfinite(t)
    if bad.any():
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise ProbeError(f"{name} holds a non-finite value {t[idx].item()} at index {idx}")
    return t


def batches(n: int, batch_size: int | None) -> Iterator[slice]:
    """Slices covering ``range(n)`` in order, ``batch_size`` at a time (all at once if None)."""
    if batch_size is not None and batch_size <= 0:
        raise ProbeError(f"batch_size must be a positive integer, got {batch_size}")
    step = n if batch_size is None else batch_size
    for start in range(0, n, max(step, 1)):
        yield slice(start, min(start + step, n))
