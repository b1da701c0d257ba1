"""The training loop shared by every method: plain PyTorch over a ``DataLoader``.

A method supplies only its per-batch loss (and, for constrained training, a hook run
after each optimiser step); the loop validates the inputs, moves the model to the
device, shows a progress bar, calls the logging callbacks and gives the model back
in the mode and on the device it came in.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F

from ..devices import resolve_device
from ..errors import ProbeError
from ..spaces import Space, as_space

__all__ = ["EpochLog", "TrainResult", "standard", "fit", "Callback", "check_model", "check_positive"]

BatchLoss = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class EpochLog:
    """What one epoch did; passed to every callback.

    Attributes
    ----------
    epoch : int
        0-based epoch index.
    loss : float
        Mean training objective over the epoch's batches (the method's own loss:
        cross-entropy on adversarial points for ``adversarial``, CE + beta KL for ``trades``).
    accuracy : float
        Fraction of training inputs the model classified correctly *unperturbed*,
        measured on each batch before its update.
    seconds : float
        Wall time of the epoch.
    steps : int
        Optimiser steps taken so far (all epochs).
    extras : dict
        Method-specific numbers (e.g. ``lipschitz_upper_bound`` after the projection).
    """

    epoch: int
    loss: float
    accuracy: float
    seconds: float
    steps: int
    extras: dict = field(default_factory=dict)


Callback = Callable[[EpochLog], object]


@dataclass(frozen=True)
class TrainResult:
    """Outcome of a training run.

    Attributes
    ----------
    model : torch.nn.Module
        The trained model (the same object that was passed in, trained in place).
    history : tuple of EpochLog
        One entry per epoch run.
    method : str
        "standard", "adversarial", "trades", "lipschitz_budget" or "wasserstein_dro".
    settings : dict
        The hyperparameters of the run (eps, norm, beta, budget, ...).
    extras : dict
        Method-specific results, e.g. ``lipschitz_upper_bound`` for ``lipschitz_budget``.
    """

    model: torch.nn.Module
    history: tuple[EpochLog, ...]
    method: str
    settings: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)

    @property
    def final_loss(self) -> float:
        return self.history[-1].loss if self.history else float("nan")

    def to_frame(self) -> pd.DataFrame:
        """One row per epoch: ``epoch``, ``loss``, ``accuracy``, ``seconds``, ``steps`` and the extras."""
        rows = [{"epoch": h.epoch, "loss": h.loss, "accuracy": h.accuracy, "seconds": h.seconds,
                 "steps": h.steps, **h.extras} for h in self.history]
        return pd.DataFrame(rows).assign(method=self.method)

    def plot(self, ax: object = None) -> object:
        """Training loss and clean training accuracy per epoch."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        df = self.to_frame()
        ax.plot(df["epoch"], df["loss"], marker="o", ms=3, label="loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        twin = ax.twinx()
        twin.plot(df["epoch"], df["accuracy"], color="tab:orange", marker="s", ms=3, label="clean accuracy")
        twin.set_ylabel("clean training accuracy")
        twin.set_ylim(0, 1.02)
        ax.legend(handles=[*ax.get_lines(), *twin.get_lines()], frameon=False, loc="center right")
        ax.set_title(self.method)
        return ax


def check_positive(value: object, name: str, *, integer: bool = False, allow_zero: bool = False) -> float:
    """A positive finite number (an int when ``integer``), else ``ProbeError`` naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ProbeError(f"{name} must be a number, got {value!r}") from None
    ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if integer:
        ok = ok and v == int(v)
    if not ok:
        kind = "integer" if integer else "number"
        raise ProbeError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} finite {kind}, "
                         f"got {value!r}")
    return int(v) if integer else v


def check_model(model: object) -> torch.nn.Module:
    """A ``torch.nn.Module`` with at least one trainable parameter."""
    if not isinstance(model, torch.nn.Module):
        raise ProbeError(f"training needs a torch.nn.Module, got {type(model).__name__}")
    params = list(model.parameters())
    if not params:
        raise ProbeError(f"the model {type(model).__name__} has no parameters to train")
    if not any(p.requires_grad for p in params):
        raise ProbeError(f"no parameter of the model {type(model).__name__} requires a gradient: nothing to train")
    return model


def _batches(loader: Iterable, device: torch.device, targets: str = "classes"
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for i, batch in enumerate(loader):
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ProbeError(f"batch {i} of the loader is not an (inputs, labels) pair; got {type(batch).__name__}")
        x, y = torch.as_tensor(batch[0]), torch.as_tensor(batch[1])
        if x.dim() < 1 or x.shape[0] == 0:
            raise ProbeError(f"batch {i} of the loader holds no inputs (shape {tuple(x.shape)})")
        if y.shape[:1] != x.shape[:1]:
            raise ProbeError(f"batch {i} has {x.shape[0]} inputs but labels of shape {tuple(y.shape)}")
        if targets != "real" and (torch.is_floating_point(y) or y.dtype == torch.bool):
            raise ProbeError(f"batch {i} has labels of dtype {y.dtype}; class indices (integers) are needed")
        if targets == "binary" and not ((y == 0) | (y == 1) | (y == -1)).all():
            raise ProbeError(f"batch {i} has the label {int(y[~((y == 0) | (y == 1) | (y == -1))][0])}; binary "
                             "labels are 0/1 or -1/+1")
        if not torch.is_floating_point(x):
            x = x.to(torch.get_default_dtype())
        if not torch.isfinite(x).all():
            raise ProbeError(f"batch {i} of the loader holds a non-finite input")
        yield x.to(device), (y.to(device, x.dtype) if targets == "real" else y.long().to(device))


def _check_labels(logits: object, y: torch.Tensor, batch: int) -> int:
    """Number of classes of the model, after checking its output shape on the first batch."""
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != y.shape[0]:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ProbeError(f"the model returned {shape} for a batch of {y.shape[0]} inputs; "
                         "training needs class scores of shape (N, C)")
    return int(logits.shape[1])


def _check_label_range(y: torch.Tensor, n_classes: int, batch: int) -> None:
    bad = ((y < 0) | (y >= n_classes)).nonzero()
    if len(bad):
        j = int(bad[0])
        raise ProbeError(f"label {int(y[j])} of input {j} in batch {batch} is not a class index of a model with "
                         f"{n_classes} outputs")


def _correct(outputs: torch.Tensor, y: torch.Tensor, targets: str) -> int:
    """Inputs classified correctly: argmax for class scores, the sign of one score for binary labels."""
    if targets == "real":
        return 0
    if targets == "binary":
        return int(((outputs.reshape(-1) > 0) == (y > 0)).sum())
    return int((outputs.argmax(1) == y).sum())


def make_optimizer(model: torch.nn.Module, optimizer: object, lr: float) -> torch.optim.Optimizer:
    """An optimiser instance, a factory ``params -> Optimizer``, or None (Adam with ``lr``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer is None:
        return torch.optim.Adam(params, lr=check_positive(lr, "lr"))
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if callable(optimizer):
        opt = optimizer(params)
        if not isinstance(opt, torch.optim.Optimizer):
            raise ProbeError(f"optimizer factory returned {type(opt).__name__}, not a torch.optim.Optimizer")
        return opt
    raise ProbeError(f"optimizer must be a torch.optim.Optimizer, a factory params -> Optimizer, or None; "
                     f"got {type(optimizer).__name__}")


def check_space(space: Space | None) -> Space:
    space = as_space(space)
    if not space.continuous:
        raise ProbeError(f"adversarial training searches continuous inputs; {space!r} is discrete")
    return space


@contextlib.contextmanager
def _training_hygiene(model: torch.nn.Module, device: torch.device) -> Iterator[torch.nn.Module]:
    """Train on ``device``; give the model back on its own device with every module's mode restored."""
    modes = [(m, m.training) for m in model.modules()]
    original = next(iter(model.parameters())).device
    try:
        if original != device:
            model.to(device)
        yield model
    finally:
        for m, mode in modes:
            m.train(mode)
        if original != device:
            model.to(original)


def fit(model: torch.nn.Module, loader: Iterable, batch_loss: BatchLoss, *, method: str, epochs: int,
        optimizer: object, lr: float, device: str | torch.device | None, callbacks: Sequence[Callback] | Callback,
        progress: bool, seed: int | None, settings: dict,
        after_step: Callable[[torch.nn.Module], None] | None = None,
        finish: Callable[[torch.nn.Module], dict] | None = None,
        epoch_extras: Callable[[torch.nn.Module], dict] | None = None, targets: str = "classes") -> TrainResult:
    """Run ``epochs`` passes over ``loader`` minimising ``batch_loss(model, x, y) -> (loss, clean_logits)``.

    ``targets``: "classes" (class indices, scores (N, C)), "binary" (labels 0/1 or -1/+1, one score
    per input; accuracy counts the sign) or "real" (regression targets; accuracy is NaN).

    ``after_step(model)`` runs after every optimiser step (projections); ``finish(model)``
    once at the end, returning extras for the result. A callback that returns ``True``
    stops training after the current epoch.
    """
    from tqdm.auto import tqdm

    model = check_model(model)
    epochs = check_positive(epochs, "epochs", integer=True)
    if loader is None:
        raise ProbeError("loader must be an iterable of (inputs, labels) batches, got None")
    if hasattr(loader, "__len__") and len(loader) == 0:
        raise ProbeError("the loader is empty: it yields no (inputs, labels) batch")
    callbacks = [callbacks] if callable(callbacks) else list(callbacks or ())
    for cb in callbacks:
        if not callable(cb):
            raise ProbeError(f"callbacks must be callables taking an EpochLog, got {type(cb).__name__}")
    dev = resolve_device(device, model)
    history: list[EpochLog] = []
    steps = 0
    extras: dict = {}
    n_classes: int | None = None
    rng = torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []) if seed is not None \
        else contextlib.nullcontext()
    with rng, _training_hygiene(model, dev) as m:
        if seed is not None:
            torch.manual_seed(int(seed))
        opt = make_optimizer(m, optimizer, lr)
        # disable=None: tqdm turns itself off when not on a terminal
        bar = tqdm(range(epochs), desc=method, disable=None if progress else True, leave=False)
        for epoch in bar:
            start = time.perf_counter()
            total, correct, seen, loss_sum = 0, 0, 0, 0.0
            for b, (x, y) in enumerate(_batches(loader, dev, targets)):
                if n_classes is None and targets == "classes":
                    m.eval()
                    with torch.no_grad():
                        n_classes = _check_labels(m(x), y, b)
                if targets == "classes":
                    _check_label_range(y, n_classes, b)
                m.train()
                loss, clean_logits = batch_loss(m, x, y)
                if not torch.isfinite(loss):
                    raise ProbeError(f"the training loss became {loss.item()} at epoch {epoch}, batch {b}; "
                                     "lower the learning rate")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                steps += 1
                if after_step is not None:
                    after_step(m)
                n = int(y.shape[0])
                loss_sum += float(loss.detach()) * n
                correct += _correct(clean_logits.detach(), y, targets)
                seen += n
                total += 1
            if total == 0:
                raise ProbeError("the loader is empty: it yields no (inputs, labels) batch")
            ep_extras = epoch_extras(m) if epoch_extras is not None else {}
            log = EpochLog(epoch=epoch, loss=loss_sum / seen,
                           accuracy=correct / seen if targets != "real" else float("nan"),
                           seconds=time.perf_counter() - start, steps=steps, extras=ep_extras)
            history.append(log)
            bar.set_postfix(loss=f"{log.loss:.3f}", acc=f"{log.accuracy:.3f}")
            stop = False
            for cb in callbacks:
                stop = bool(cb(log)) or stop
            if stop:
                break
        if finish is not None:
            extras = finish(m)
        opt.zero_grad(set_to_none=True)
    return TrainResult(model=model, history=tuple(history), method=method, settings=settings, extras=extras)


def standard(model: torch.nn.Module, loader: Iterable, *, epochs: int = 10, lr: float = 1e-3,
             optimizer: object = None, device: str | torch.device | None = None,
             callbacks: Sequence[Callback] | Callback = (), progress: bool = False,
             seed: int | None = None) -> TrainResult:
    r"""Standard (empirical risk) training: minimise the cross-entropy on the clean inputs.

    :math:`\min_\theta \mathbb{E}_{(x, y)}\, \mathrm{CE}(f_\theta(x), y)` — the baseline
    against which ``adversarial``, ``trades`` and ``lipschitz_budget`` are compared.

    Parameters
    ----------
    model : torch.nn.Module
        Maps inputs (N, ...) to class scores (N, C); trained in place.
    loader : iterable of (x, y)
        Typically a ``torch.utils.data.DataLoader``; ``y`` holds class indices.
    epochs : int, default 10
    lr : float, default 1e-3
        Learning rate of the default optimiser (Adam).
    optimizer : torch.optim.Optimizer or callable, optional
        An optimiser over the model's parameters, or a factory ``params -> Optimizer``.
    device : str or torch.device, optional
        Default: the model's device. The model is given back on its own device.
    callbacks : callable or sequence of callables, optional
        Each called with an :class:`EpochLog` after every epoch; one returning ``True`` stops training.
    progress : bool, default False
        Progress bar over epochs (only on a terminal).
    seed : int, optional
        Seeds torch's generator for the run (restored afterwards), for reproducible shuffling and starts.

    Returns
    -------
    TrainResult

    Raises
    ------
    ProbeError
        Empty loader, a model without parameters, bad labels or hyperparameters.
    """

    def batch_loss(m: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = m(x)
        return F.cross_entropy(logits, y), logits

    return fit(model, loader, batch_loss, method="standard", epochs=epochs, optimizer=optimizer, lr=lr,
               device=device, callbacks=callbacks, progress=progress, seed=seed, settings={})

