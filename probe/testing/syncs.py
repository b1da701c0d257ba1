"""Count host synchronisations: the points where a program on a GPU waits for the device.

A CUDA kernel launch returns at once; the host only waits when it needs a value the device holds
(``t.item()``, ``if t.any():``, ``t.cpu()``) or the size of a result that depends on the data
(``t.nonzero()``, ``t[mask]``, ``t.unique()``). Each such wait drains the launch queue, so a loop
with one per step runs at the speed of the round trip rather than of the arithmetic. Hot loops
in ``probe`` keep their state on the device and are tested to synchronise a bounded number of
times per batch, with :func:`count_host_syncs`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterator

import torch

from ..errors import ProbeError

__all__ = ["count_host_syncs", "HostSyncCounter", "PROXY_SYNCS"]

#: What the CPU proxy counts: the Tensor methods and torch functions that wait for the device on CUDA.
PROXY_SYNCS = (
    "Tensor.item", "Tensor.tolist", "Tensor.numpy", "Tensor.cpu", "Tensor.to (to the CPU, from another device)",
    "Tensor.__bool__", "Tensor.__float__", "Tensor.__int__", "Tensor.__index__",
    "Tensor.nonzero", "torch.nonzero", "Tensor.argwhere", "torch.argwhere", "torch.where (one argument)",
    "Tensor.__getitem__ (bool index)", "Tensor.__setitem__ (bool index, tensor value)",
    "Tensor.masked_select", "torch.masked_select", "Tensor.unique", "torch.unique",
    "Tensor.unique_consecutive", "torch.unique_consecutive",
    "Tensor.repeat_interleave (tensor repeats, no output_size)", "torch.repeat_interleave (same)",
    "Tensor.bincount", "torch.bincount", "Tensor.equal", "torch.equal", "Tensor.allclose", "torch.allclose",
    "torch.tensor / torch.as_tensor (host data, explicit device)",
)


class HostSyncCounter:
    """Host synchronisations seen inside one :func:`count_host_syncs` block.

    Attributes
    ----------
    mode : {"cuda", "cpu-proxy"}
        ``"cuda"``: CUDA's own sync debug mode reported each wait; ``"cpu-proxy"``: calls that would
        wait on CUDA were counted (see :func:`count_host_syncs`).
    events : collections.Counter
        Count per kind of call (``"Tensor.item"``, ...); under CUDA, per source line instead.
    sites : collections.Counter
        Count per ``"file:line kind"``: where the waits come from.
    """

    def __init__(self, mode: str):
        self.mode = mode
        self.events: Counter = Counter()
        self.sites: Counter = Counter()

    @property
    def count(self) -> int:
        """Synchronisations so far."""
        return sum(self.events.values())

    def _record(self, kind: str, site: str) -> None:
        self.events[kind] += 1
        self.sites[site if site == kind else f"{site} {kind}"] += 1

    def __repr__(self) -> str:
        return f"HostSyncCounter(mode={self.mode!r}, count={self.count})"


@contextlib.contextmanager
def count_host_syncs(device: str | torch.device | None = None) -> Iterator[HostSyncCounter]:
    """Count the host synchronisations of the code run inside the block.

    On CUDA (``device`` of type ``"cuda"``, or ``device=None`` with CUDA present), this is
    ``torch.cuda.set_sync_debug_mode("warn")`` for the block: CUDA itself warns at every
    synchronising operation, and the warnings are counted (other warnings are passed on).

    On a CPU nothing ever waits and that mode says nothing, so the block instead counts, as a
    proxy, the calls that *would* wait if the same code ran on CUDA: the Tensor methods and torch
    functions listed in :data:`PROXY_SYNCS`. That is: reading a value on the host (``item``,
    ``tolist``, ``numpy``, ``cpu``, ``bool``/``float``/``int``/``index`` of a tensor, hence every
    ``if t.any():``: the ``bool`` is what waits, not the reduction), and the
    operations whose output size depends on the data (``nonzero``, ``argwhere``, one-argument
    ``where``, boolean-mask indexing ``t[mask]`` and assignment ``t[mask] = values``,
    ``masked_select``, ``unique``, ``repeat_interleave`` with tensor repeats and no
    ``output_size``, ``bincount``), ``equal``/``allclose``, which return a Python bool, and
    ``torch.tensor``/``torch.as_tensor`` of host data (a list, a NumPy array) with an explicit
    ``device``, a blocking copy to the device on CUDA. The
    methods are patched on ``torch.Tensor`` and the functions on the ``torch`` module for the
    duration of the block only; a call made inside another counted call counts once.

    The proxy is an approximation, for tests that run without a GPU: it cannot see a wait inside
    an operator written in C++ (``torch.nn.functional.one_hot`` without ``num_classes``, error
    checks of ``torch.linalg``), nor calls through names imported before the block
    (``from torch import nonzero``), nor a ``.item()`` of a tensor that lives on the host by design
    (the step counter of ``torch.optim.Adam``), which it counts though CUDA would not wait. It counts
    every ``.cpu()`` and ``.numpy()``, which would copy from the device on CUDA, but ``.to(device)``
    only from another device to the CPU, since on a CPU ``.to(dev)`` is how code stays on its
    compute device (so on a CPU-only machine ``.to("cpu")`` is never counted). Counts from one
    mode are compared with counts from the same mode only.

    Parameters
    ----------
    device : str or torch.device, optional
        The device the code under test computes on: CUDA's debug mode for a CUDA device, the
        proxy otherwise. Default: CUDA's mode when CUDA is available, else the proxy.

    Yields
    ------
    HostSyncCounter
        Its ``count`` grows while the block runs.

    Raises
    ------
    ProbeError
        If a CUDA device is asked for and CUDA is not available.

    Notes
    -----
    The patching acts on the whole process: meant for tests and benchmarks, not for code that
    runs other threads at the same time.

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(4.0)
    >>> with count_host_syncs("cpu") as syncs:
    ...     y = (x * 2).sum()          # stays on the device
    ...     z = float(y)               # waits for it
    >>> syncs.count, dict(syncs.events)
    (1, {'Tensor.__float__': 1})
    """
    dev = torch.device(device) if device is not None else (
        torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ProbeError(f"count_host_syncs(device={device!r}): CUDA is not available")
        with _cuda_mode() as counter:
            yield counter
        return
    counter = HostSyncCounter("cpu-proxy")
    with _proxy(counter):
        yield counter


# ---------------------------------------------------------------------------------------------------------------
# CUDA: the device's own debug mode

_CUDA_MESSAGE = "called a synchronizing CUDA operation"


@contextlib.contextmanager
def _cuda_mode() -> Iterator[HostSyncCounter]:
    counter = HostSyncCounter("cuda")
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings():
        # only the sync warnings are always shown: the filters the caller set stay as they are for the rest
        warnings.filterwarnings("always", message=_CUDA_MESSAGE)
        show = warnings.showwarning

        def record(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
            if _CUDA_MESSAGE not in str(message):  # the code's own warnings go where they would have gone
                show(message, category, filename, lineno, file, line)
                return
            counter._record(f"{filename}:{lineno}", f"{filename}:{lineno}")
            if getattr(show, "counts_syncs", False):  # an enclosing block counts them too
                show(message, category, filename, lineno, file, line)

        record.counts_syncs = True
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield counter
        finally:
            torch.cuda.set_sync_debug_mode(previous)


# ---------------------------------------------------------------------------------------------------------------
# CPU: patch the calls that would wait on CUDA

_active: list[HostSyncCounter] = []
_state = threading.local()
_TORCH_DIR = os.path.dirname(torch.__file__)


def _caller() -> str:
    """The first frame outside torch that led to the call (``f"{t:.2f}"`` is blamed on its line)."""
    frame = sys._getframe(2)
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_TORCH_DIR):
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def _counting(kind: str, original: Callable, when: Callable[..., bool] | None = None) -> Callable:
    @functools.wraps(original)
    def wrapper(*args: object, **kwargs: object) -> object:
        depth = getattr(_state, "depth", 0)
        if depth == 0 and (when is None or when(*args, **kwargs)):
            site = _caller()
            for counter in _active:
                counter._record(kind, site)
        _state.depth = depth + 1
        try:
            return original(*args, **kwargs)
        finally:
            _state.depth = depth

    return wrapper


def _is_bool_index(index: object) -> bool:
    items = index if isinstance(index, (tuple, list)) else (index,)
    return any(torch.is_tensor(i) and i.dtype in (torch.bool, torch.uint8) for i in items)


def _getitem_syncs(self: torch.Tensor, index: object) -> bool:
    return _is_bool_index(index)


def _setitem_syncs(self: torch.Tensor, index: object, value: object) -> bool:
    # ``t[mask] = scalar`` becomes a masked fill; ``t[mask] = values`` needs the number of True entries
    return _is_bool_index(index) and torch.is_tensor(value) and value.dim() > 0


def _device_of(target: object) -> torch.device | None:
    if torch.is_tensor(target):
        return target.device
    if isinstance(target, (str, torch.device)):
        try:
            return torch.device(target)
        except RuntimeError:
            return None
    return None


def _to_syncs(self: torch.Tensor, *args: object, **kwargs: object) -> bool:
    # a copy to the host from a device; on a CPU-only machine this never happens (``.cpu()`` is what counts)
    target = _device_of(kwargs.get("device", args[0] if args else None))
    return target is not None and target.type == "cpu" and self.device.type != "cpu"


def _upload_syncs(data: object = None, *args: object, **kwargs: object) -> bool:
    # host data copied to a device: a blocking copy on CUDA (on a CPU the device is the host: counted anyway)
    return kwargs.get("device") is not None and not torch.is_tensor(data)


def _interleave_syncs(*args: object, **kwargs: object) -> bool:
    repeats = kwargs.get("repeats", args[1] if len(args) > 1 else None)
    return torch.is_tensor(repeats) and repeats.numel() > 1 and kwargs.get("output_size") is None


def _where_syncs(*args: object, **kwargs: object) -> bool:
    return len(args) + len(kwargs) == 1


_TENSOR = {
    "item": None, "tolist": None, "numpy": None, "cpu": None, "to": _to_syncs,
    "__bool__": None, "__float__": None, "__int__": None, "__index__": None,
    "nonzero": None, "argwhere": None, "__getitem__": _getitem_syncs, "__setitem__": _setitem_syncs,
    "masked_select": None, "unique": None, "unique_consecutive": None, "repeat_interleave": _interleave_syncs,
    "bincount": None, "equal": None, "allclose": None,
}
_TORCH = {
    "nonzero": None, "argwhere": None, "where": _where_syncs, "masked_select": None, "unique": None,
    "unique_consecutive": None, "repeat_interleave": _interleave_syncs, "bincount": None, "equal": None,
    "allclose": None, "tensor": _upload_syncs, "as_tensor": _upload_syncs,
}
_MISSING = object()


@contextlib.contextmanager
def _proxy(counter: HostSyncCounter) -> Iterator[None]:
    saved: list[tuple[object, str, object]] = []
    if not _active:  # the first block patches; nested blocks share the patches
        for name, when in _TENSOR.items():
            saved.append((torch.Tensor, name, torch.Tensor.__dict__.get(name, _MISSING)))
            setattr(torch.Tensor, name, _counting(f"Tensor.{name}", getattr(torch.Tensor, name), when))
        for name, when in _TORCH.items():
            saved.append((torch, name, getattr(torch, name)))
            setattr(torch, name, _counting(f"torch.{name}", getattr(torch, name), when))
    _active.append(counter)
    try:
        yield
    finally:
        _active.remove(counter)
        for owner, name, original in reversed(saved):
            if original is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
