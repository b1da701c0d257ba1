"""Model adapters: everything else in ``probe`` calls a model through these.

A model is a ``torch.nn.Module`` or any callable mapping a tensor of shape
(N, ...) to a tensor of shape (N, ...) (or (N,)). Things that are not torch code (a
scikit-learn estimator, a NumPy ``predict`` function) are made into such a callable
by :func:`wrap`, which marks them ``differentiable = False`` so that searches route
to gradient-free methods (Square, HopSkipJump, edit searches, occlusion, surrogates).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import numpy as np
import torch

from .devices import batches
from .errors import ProbeError

__all__ = ["forward", "clean_outputs", "check_output_shape", "has_gradient", "QueryCounter", "BlackBox", "wrap",
           "as_model", "SKLEARN_OUTPUTS"]

#: ``output=`` names accepted for scikit-learn estimators, and the method each one calls.
SKLEARN_OUTPUTS = {
    "predict_proba": "predict_proba", "proba": "predict_proba",
    "predict_log_proba": "predict_log_proba", "log_proba": "predict_log_proba",
    "decision_function": "decision_function", "decision": "decision_function",
    "predict": "predict", "label": "predict",
}
_SKLEARN_METHODS = ("predict_proba", "decision_function", "predict")
# one default wrapper per estimator, so that repeated calls share a query counter and skip re-checking
_DEFAULT_WRAPPERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def has_gradient(model: object) -> bool:
    """Whether gradients of the model's outputs with respect to its inputs can be taken.

    True for ``torch.nn.Module`` and plain callables (assumed to be torch code); a
    wrapper may declare ``differentiable = False`` to route searches to gradient-free
    methods. False for a scikit-learn estimator (which :func:`forward` wraps on the fly).
    """
    if not callable(model) and _is_estimator(model):
        return False
    return bool(getattr(model, "differentiable", True))


def check_output_shape(out: torch.Tensor, *, who: str = "the model") -> None:
    """Raise ``ProbeError`` unless ``out`` has the shape a criterion scores: (N,) or (N, K).

    :func:`forward` flattens an output (N, C, L) into (N, C * L) columns, which saturation
    mutagenesis of a profile model wants; a criterion would read those columns as C * L classes or
    outputs and answer a question nobody asked. Attacks and searches call this on the raw outputs.

    Parameters
    ----------
    out : torch.Tensor
        Raw outputs for a batch of inputs.
    who : str, default "the model"
        How the message names the producer of ``out``.

    Raises
    ------
    ProbeError
        Naming the shape, if ``out`` has more than two dimensions.
    """
    if out.dim() > 2:
        raise ProbeError(f"{who} returned outputs of shape {tuple(out.shape)} for {out.shape[0]} input(s); a criterion "
                         "needs shape (N,) or (N, K), one score per class or output: reduce the other "
                         f"{out.dim() - 2} dimension(s) inside the model (select a track, pool over positions)")


def forward(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, check: bool = True,
            flatten: bool = True) -> torch.Tensor:
    """Call ``model`` on ``x`` and check the output.

    Parameters
    ----------
    model : torch.nn.Module, callable or fitted estimator
    x : torch.Tensor, shape (N, ...)
    check : bool, default True
        Raise on non-finite outputs.
    flatten : bool, default True
        Flatten outputs of more than two dimensions to (N, K); with ``False`` such outputs raise
        ``ProbeError`` (:func:`check_output_shape`), as they must where a criterion reads them.

    Returns
    -------
    torch.Tensor, shape (N, K)
        Outputs; a 1-d output of shape (N,) is returned as (N, 1).

    Raises
    ------
    ProbeError
        If the model does not return a tensor with the input's batch size, or returns NaN, or
        (``flatten=False``) returns more than two dimensions.

    Notes
    -----
    A scikit-learn estimator passed as ``model`` is called through :func:`wrap` (its
    default output), so every ``probe`` function accepts fitted estimators as they are.
    """
    if not callable(model):
        model = as_model(model)
    out = model(x)
    if not isinstance(out, torch.Tensor):
        raise ProbeError(f"the model must return a torch.Tensor, it returned {type(out).__name__}")
    if out.dim() == 0 or out.shape[0] != x.shape[0]:
        raise ProbeError(
            f"the model returned shape {tuple(out.shape)} for {x.shape[0]} inputs; "
            "the first dimension must be the batch dimension"
        )
    if not flatten:
        check_output_shape(out)
    if out.dim() == 1:
        out = out.unsqueeze(1)
    elif out.dim() > 2:
        out = out.flatten(1)
    if check and not torch.isfinite(out).all():
        bad = int((~torch.isfinite(out)).any(1).nonzero()[0, 0])
        raise ProbeError(f"the model returned a non-finite output for input {bad}")
    return out


class QueryCounter:
    """Wrap a model and count, per input row, how many times it was evaluated."""

    def __init__(self, model: Callable[[torch.Tensor], torch.Tensor]):
        self.model = model if callable(model) else as_model(model)
        self.calls = 0
        self.rows = 0

    @property
    def differentiable(self) -> bool:
        return has_gradient(self.model)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.rows += int(x.shape[0])
        return self.model(x)


def _is_estimator(obj: object) -> bool:
    return any(callable(getattr(obj, m, None)) for m in _SKLEARN_METHODS) and not isinstance(obj, torch.nn.Module)


def _estimator_name(obj: object) -> str:
    return type(obj).__name__


class BlackBox:
    """A model seen only through its outputs: a torch callable with ``differentiable = False``.

    Built by :func:`wrap`; call it like a torch model. Each call converts the input tensor
    (N, ...) to the wrapped thing's array type and dtype, evaluates it ``batch_size`` rows at
    a time, and returns a tensor (N, K) (or (N,)) on the input's device, with no gradient, in
    the input's floating dtype or the wrapped thing's if that is more precise. ``queries``
    counts the rows evaluated since construction or :meth:`reset_queries`, ``calls`` the
    calls made to the wrapped thing.

    Attributes
    ----------
    obj : object
        The wrapped estimator or function.
    kind : {"sklearn", "numpy", "torch"}
        How it is called.
    output : str or None
        For an estimator, the method called ("predict_proba", "decision_function", "predict",
        "predict_log_proba").
    differentiable : bool
        False unless a torch callable was wrapped with ``differentiable=True``.
    classes : numpy.ndarray or None
        Class labels of a classifier (the order of the output columns).
    """

    def __init__(self, obj: object, kind: str, call: Callable[[object], object], *, output: str | None,
                 batch_size: int | None, dtype: object, flatten: bool, differentiable: bool,
                 classes: np.ndarray | None = None, one_hot: bool = False):
        self.obj = obj
        self.kind = kind
        self.output = output
        self.batch_size = batch_size
        self.dtype = dtype
        self.flatten = flatten
        self.differentiable = differentiable
        self.classes = classes
        self._call = call
        self._one_hot = one_hot
        self.queries = 0
        self.calls = 0

    def reset_queries(self) -> None:
        """Set ``queries`` and ``calls`` back to zero."""
        self.queries = 0
        self.calls = 0

    def __repr__(self) -> str:
        out = f", output={self.output!r}" if self.output else ""
        return f"BlackBox({_estimator_name(self.obj)}, kind={self.kind!r}{out}, batch_size={self.batch_size})"

    def _evaluate(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "torch":
            arg = x if self.dtype is None else x.to(self.dtype)
            res = self._call(arg.flatten(1) if self.flatten else arg)
            if not isinstance(res, torch.Tensor):
                raise ProbeError(f"{_estimator_name(self.obj)} returned {type(res).__name__}, expected a "
                                 "torch.Tensor (wrap NumPy functions with kind='numpy')")
            return res if self.differentiable else res.detach()
        arr = x.detach().cpu().numpy()
        if self.flatten:
            arr = arr.reshape(arr.shape[0], -1)
        if self.dtype is not None:
            arr = arr.astype(self.dtype, copy=False)
        res = self._call(arr)
        if isinstance(res, torch.Tensor):
            res = res.detach().cpu().numpy()
        try:
            res = np.asarray(res)
        except Exception as err:  # noqa: BLE001 - any conversion failure is the wrapped thing's fault
            raise ProbeError(f"{_estimator_name(self.obj)} returned {type(res).__name__}, which is not an array: "
                             f"{err}") from err
        if self._one_hot:
            lookup = {c: i for i, c in enumerate(self.classes.tolist())}
            try:
                idx = np.fromiter((lookup[v] for v in res.ravel().tolist()), dtype=np.int64, count=res.size)
            except KeyError as err:
                raise ProbeError(f"{_estimator_name(self.obj)}.predict returned {err.args[0]!r}, which is not "
                                 "one of its classes_") from None
            onehot = np.zeros((len(res), len(self.classes)))
            onehot[np.arange(len(res)), idx] = 1.0
            res = onehot
        if res.dtype.kind not in "fiub":
            raise ProbeError(f"{_estimator_name(self.obj)}.{self.output or '__call__'} returned values of dtype "
                             f"{res.dtype}; probe needs numbers (use output='predict_proba' for string labels)")
        out = torch.as_tensor(np.ascontiguousarray(res))
        # keep the wrapped model's precision (float64 predictions of float32 inputs stay float64)
        dtype = torch.promote_types(x.dtype, out.dtype) if out.is_floating_point() else x.dtype
        return out.to(device=x.device, dtype=dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x))
        if not torch.is_floating_point(x):
            x = x.to(torch.get_default_dtype())
        n = int(x.shape[0])
        step = n if self.batch_size is None else max(int(self.batch_size), 1)
        parts = []
        for start in range(0, max(n, 1), max(step, 1)):
            chunk = x[start:start + step]
            try:
                part = self._evaluate(chunk)
            except ProbeError:
                raise
            except Exception as err:  # noqa: BLE001 - report any failure of the wrapped thing as a user error
                raise ProbeError(f"calling {_estimator_name(self.obj)}"
                                 f"{'.' + self.output if self.output else ''} on inputs of shape "
                                 f"{tuple(chunk.shape)} failed: {type(err).__name__}: {err}") from err
            self.calls += 1
            self.queries += int(chunk.shape[0])
            if part.dim() == 0 or part.shape[0] != chunk.shape[0]:
                raise ProbeError(f"{_estimator_name(self.obj)} returned shape {tuple(part.shape)} for "
                                 f"{chunk.shape[0]} inputs; the first dimension must be the batch dimension")
            parts.append(part)
        return torch.cat(parts) if len(parts) > 1 else parts[0]


def _sklearn_call(obj: object, output: str | None) -> tuple[str, Callable, np.ndarray | None, bool]:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    name = _estimator_name(obj)
    available = [m for m in ("predict_proba", "predict_log_proba", "decision_function", "predict")
                 if callable(getattr(obj, m, None))]
    if output is None:
        method = next(m for m in _SKLEARN_METHODS if m in available)
    else:
        if output not in SKLEARN_OUTPUTS:
            raise ProbeError(f"output={output!r} is not one of {sorted(set(SKLEARN_OUTPUTS))}")
        method = SKLEARN_OUTPUTS[output]
        if method not in available:
            raise ProbeError(f"{name} has no {method}(); it offers {', '.join(available) or 'nothing callable'}")
    if hasattr(obj, "fit"):
        try:
            check_is_fitted(obj)
        except NotFittedError:
            raise ProbeError(f"{name} is not fitted; call its fit() before wrapping it") from None
        except TypeError:
            pass
    # some estimators expose predict_proba only when configured for it (SVC(probability=False))
    try:
        call = getattr(obj, method)
    except AttributeError as err:
        raise ProbeError(f"{name}.{method} is not available: {err}") from None
    classes = getattr(obj, "classes_", None)
    classes = None if classes is None else np.asarray(classes)
    one_hot = method == "predict" and classes is not None and classes.ndim == 1
    return method, call, classes, one_hot


def wrap(obj: object, *, output: str | None = None, batch_size: int | None = 4096, kind: str | None = None,
         dtype: object = None, flatten: bool | None = None, differentiable: bool | None = None) -> BlackBox:
    """Make a scikit-learn estimator, a NumPy function or a torch callable into a ``probe`` model.

    The result is a torch callable (tensor (N, ...) -> tensor (N, K)) that every attack,
    sensitivity method and domain entry point accepts. Non-torch things are marked
    ``differentiable = False`` (:func:`has_gradient` is False), so that
    ``minimal_perturbation(method="auto")`` and ``sensitivity`` pick gradient-free methods.

    Parameters
    ----------
    obj : estimator, callable or torch.nn.Module
        A fitted scikit-learn estimator (anything with ``predict_proba``,
        ``decision_function`` or ``predict``), a function mapping a NumPy array (N, ...)
        to an array (N, K) or (N,), or a torch callable.
    output : {"predict_proba", "decision_function", "predict", "predict_log_proba"}, optional
        Estimators only: which method gives the outputs (short names "proba",
        "decision", "label", "log_proba" also work). Default: ``predict_proba`` when the
        estimator has it, else ``decision_function``, else ``predict``. ``predict`` of a
        classifier is returned one-hot over ``classes_`` (a decision-based black box).
    batch_size : int or None, default 4096
        Rows passed to the wrapped thing at a time (None: all at once).
    kind : {"sklearn", "numpy", "torch"}, optional
        How to call ``obj``. Default: "torch" for a ``torch.nn.Module``, "sklearn" for an
        object with one of the estimator methods, else "numpy".
    dtype : numpy or torch dtype, optional
        Dtype handed to the wrapped thing. Default float64 for estimators, the input's
        dtype otherwise. Outputs come back on the input's device, in the input's dtype or the
        wrapped thing's, whichever is more precise.
    flatten : bool, optional
        Reshape inputs (N, ...) to (N, D) before the call. Default True for estimators
        (scikit-learn wants 2-d arrays), False otherwise.
    differentiable : bool, optional
        Default False, except True for a torch callable (which keeps its gradients).

    Returns
    -------
    BlackBox
        With a query counter ``.queries`` (rows evaluated) and ``.reset_queries()``.

    Raises
    ------
    ProbeError
        If ``obj`` is none of these, lacks the requested ``output`` method, or is an
        unfitted estimator.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> model = wrap(LogisticRegression().fit(X, y))           # doctest: +SKIP
    >>> HopSkipJump(max_queries=2000)(model, X[:10])            # doctest: +SKIP
    """
    if isinstance(obj, BlackBox):
        return obj
    if kind is None:
        if isinstance(obj, torch.nn.Module):
            kind = "torch"
        elif _is_estimator(obj):
            kind = "sklearn"
        elif callable(obj):
            kind = "numpy"
        else:
            raise ProbeError(f"cannot use {type(obj).__name__} as a model: it is not a torch.nn.Module, has none of "
                             "predict_proba / decision_function / predict, and is not callable")
    if kind not in ("sklearn", "numpy", "torch"):
        raise ProbeError(f"kind must be 'sklearn', 'numpy' or 'torch', got {kind!r}")
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size <= 0):
        raise ProbeError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if kind == "sklearn":
        if not _is_estimator(obj):
            raise ProbeError(f"{type(obj).__name__} has none of predict_proba / decision_function / predict")
        method, call, classes, one_hot = _sklearn_call(obj, output)
        return BlackBox(obj, "sklearn", call, output=method, batch_size=batch_size,
                        dtype=np.float64 if dtype is None else dtype, flatten=True if flatten is None else flatten,
                        differentiable=False, classes=classes, one_hot=one_hot)
    if output is not None:
        raise ProbeError(f"output={output!r} selects an estimator method; {type(obj).__name__} is a plain callable")
    if not callable(obj):
        raise ProbeError(f"cannot use {type(obj).__name__} as a model: it is not callable")
    if kind == "torch":
        return BlackBox(obj, "torch", obj, output=None, batch_size=batch_size, dtype=dtype,
                        flatten=bool(flatten), differentiable=True if differentiable is None else differentiable)
    if differentiable:
        raise ProbeError("a NumPy function has no gradients; differentiable=True needs kind='torch'")
    return BlackBox(obj, "numpy", obj, output=None, batch_size=batch_size, dtype=dtype, flatten=bool(flatten),
                    differentiable=False)


def as_model(obj: object, **options: object) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model itself when it is torch code, else :func:`wrap` of it.

    Torch modules, :class:`BlackBox` objects and other callables pass through unchanged
    (a plain callable is assumed to be torch code); scikit-learn estimators are wrapped.

    Raises
    ------
    ProbeError
        If ``obj`` is neither callable nor an estimator.
    """
    if isinstance(obj, (torch.nn.Module, BlackBox)):
        return obj
    if _is_estimator(obj):
        if options:
            return wrap(obj, **options)
        try:
            cached = _DEFAULT_WRAPPERS.get(obj)
        except TypeError:   # not weak-referenceable
            return wrap(obj)
        if cached is None:
            cached = _DEFAULT_WRAPPERS[obj] = wrap(obj)
        return cached
    if callable(obj):
        return obj
    raise ProbeError(f"cannot use {type(obj).__name__} as a model: it is not a torch.nn.Module, has none of "
                     "predict_proba / decision_function / predict, and is not callable")


def clean_outputs(model: object, x: torch.Tensor, batch_size: int | None, *, flatten: bool = True) -> torch.Tensor:
    """Checked outputs (N, K) on ``x``, batch by batch; a model that cannot take ``x`` raises ``ProbeError``.

    ``flatten=False``: outputs of more than two dimensions raise ``ProbeError`` instead of being
    flattened (see :func:`forward`); attacks want this, since their criterion reads the columns.
    """
    with torch.no_grad():
        try:
            return torch.cat([forward(model, x[s], flatten=flatten) for s in batches(len(x), batch_size)])
        except ProbeError:
            raise
        except (RuntimeError, TypeError, IndexError) as err:
            raise ProbeError(f"the model could not be called on inputs of shape {tuple(x.shape)}: {err}") from err
