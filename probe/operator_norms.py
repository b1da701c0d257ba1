r"""Induced operator norms of linear layers: sound upper bounds, one implementation for certify and train.

A Lipschitz certificate is only as good as the per-layer constants it multiplies, so every value
returned by :func:`operator_norm_upper_bound` is a *proven* upper bound on
:math:`\lVert M \rVert_{p \to p}` of the layer's linear part :math:`M`, never an estimate:

- **L2, dense layers** (``nn.Linear``, and any layer whose dense matrix is small): the largest
  singular value from an SVD in float64. The computed singular values are exact for a matrix
  :math:`M + E` with :math:`\lVert E\rVert_2 \le c\,\max(m, n)\,u\,\lVert M\rVert_2` (backward stability of
  the SVD, Golub & Van Loan, *Matrix Computations*, section 8.6; :math:`u = 2^{-53}`), so the value is
  rounded up by that relative amount. Tight: equal to the true norm to about 1e-13.
- **L2, large convolutions** (zero padding, any stride and dilation): the norm of the circular
  convolution on a grid large enough that no output wraps around, which contains the zero-padded
  (and strided) one as a restriction. Its singular values are those of the per-frequency
  :math:`C_\text{out} \times C_\text{in}` matrices of the kernel's DFT (Sedghi, Gupta & Long, "The
  Singular Values of Convolutional Layers", ICLR 2019). Typically within a few percent of the true
  norm, and never below it. Also for any large linear layer: Hölder's
  :math:`\lVert M\rVert_2 \le \sqrt{\lVert M\rVert_1 \lVert M\rVert_\infty}`; the smaller of the two is kept.
- **L-inf and L1**: the largest absolute row sum and column sum of :math:`M`, exact, computed by
  applying :math:`|M|` (the layer with absolute weights and no bias) to a vector of ones and by its
  transpose; summation error is rounded up.

Power iteration approaches :math:`\sigma_{\max}` from below; it is kept, as
:func:`operator_norm_lower_bound`, for estimates and lower bounds only.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ProbeError
from .norms import check_norm

__all__ = ["OperatorNorm", "operator_norm_upper_bound", "operator_norm_lower_bound", "spectral_norm_upper_bound",
           "conv_l2_upper_bound", "abs_linear_apply", "dense_matrix", "batchnorm_affine", "DENSE_LIMIT"]

#: Largest number of matrix entries (inputs x outputs) for which a layer is written out densely
DENSE_LIMIT = 1 << 22
_EPS = torch.finfo(torch.float64).eps
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_SHAPE_ONLY = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


@dataclass(frozen=True)
class OperatorNorm:
    """An upper bound on a layer's induced norm and how it was obtained.

    Attributes
    ----------
    value : float
        :math:`\\ge \\lVert M\\rVert_{p\\to p}`.
    norm : str
    method : str
        "svd" (exact to rounding), "row-sums"/"column-sums" (exact), "circular" (Sedghi et al.),
        "holder", "diagonal" or "identity".
    """

    value: float
    norm: str
    method: str

    def __float__(self) -> float:
        return float(self.value)


def _round_up(value: float, terms: int) -> float:
    """``value`` raised by the relative error of a float64 computation over ``terms`` terms."""
    return float(value) * (1.0 + 8.0 * max(int(terms), 1) * _EPS)


def batchnorm_affine(m: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode batch norm as ``scale * x + shift`` per channel."""
    scale = 1.0 / torch.sqrt(m.running_var + m.eps)
    shift = -m.running_mean * scale
    if m.weight is not None:
        scale = scale * m.weight
        shift = shift * m.weight + m.bias
    return scale, shift


def abs_linear_apply(module: nn.Module | None, r: torch.Tensor, fn: Callable | None = None) -> torch.Tensor:
    """``|M| r`` for the linear part M of an affine layer (``r >= 0``), e.g. the radius of an interval.

    Linear and convolution layers use their absolute weights without bias; batch norm its absolute
    scale. Any other layer (average pools, reshapes, identity, eval-mode dropout) has a non-negative
    linear part and no offset, so it is applied as it is (``fn``, default the module).
    """
    if isinstance(module, nn.Linear):
        return F.linear(r, module.weight.abs())
    if isinstance(module, _CONV):
        return module._conv_forward(r, module.weight.abs(), None)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        scale, _ = batchnorm_affine(module)
        return r * scale.abs().view((1, -1) + (1,) * (r.dim() - 2))
    return (fn or module)(r)


def _as_float64(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module).to(torch.float64)


def dense_matrix(op: Callable[[torch.Tensor], torch.Tensor], in_shape: Sequence[int], *,
                 dtype: torch.dtype = torch.float64, device: torch.device | None = None,
                 chunk: int = 4096) -> torch.Tensor:
    """The matrix (outputs, inputs) of the linear map ``z -> op(z) - op(0)`` on inputs of shape ``in_shape``."""
    d = math.prod(in_shape)
    with torch.no_grad():
        zero = op(torch.zeros((1,) + tuple(in_shape), dtype=dtype, device=device))
        cols = []
        for start in range(0, d, chunk):
            k = min(chunk, d - start)
            eye = torch.zeros(k, d, dtype=dtype, device=device)
            eye[torch.arange(k), torch.arange(start, start + k)] = 1.0
            cols.append((op(eye.view((k,) + tuple(in_shape))) - zero).reshape(k, -1))
    return torch.cat(cols).T


def spectral_norm_upper_bound(matrix: torch.Tensor) -> float:
    """Largest singular value of ``matrix`` (2-D) by float64 SVD, rounded up by the SVD's backward error."""
    m = matrix.detach().to(torch.float64)
    if m.numel() == 0:
        return 0.0
    return _round_up(torch.linalg.matrix_norm(m, ord=2).item(), max(m.shape))


def _pairs(v: object, d: int) -> tuple[int, ...]:
    return tuple(int(t) for t in v) if isinstance(v, (tuple, list)) else (int(v),) * d


def _effective_kernel(conv: nn.Module) -> torch.Tensor:
    """Weight (C_out, C_in, *k_eff) with the dilation spelled out and groups as zero blocks."""
    w = conv.weight.detach()
    d = w.dim() - 2
    dil = _pairs(conv.dilation, d)
    if any(v > 1 for v in dil):
        size = [(k - 1) * v + 1 for k, v in zip(w.shape[2:], dil)]
        full = w.new_zeros(w.shape[:2] + tuple(size))
        full[(slice(None), slice(None)) + tuple(slice(None, None, v) for v in dil)] = w
        w = full
    g = conv.groups
    if g > 1:
        out_g, in_g = w.shape[0] // g, w.shape[1]
        dense = w.new_zeros((w.shape[0], in_g * g) + tuple(w.shape[2:]))
        for i in range(g):
            dense[i * out_g:(i + 1) * out_g, i * in_g:(i + 1) * in_g] = w[i * out_g:(i + 1) * out_g]
        w = dense
    return w


def conv_l2_upper_bound(conv: nn.Module, spatial: Sequence[int]) -> float:
    r"""Upper bound on the L2 operator norm of a zero-padded convolution on inputs of spatial size ``spatial``.

    For input size ``n`` per axis, padding ``p`` and effective kernel ``k`` the zero-padded
    (strided) convolution equals a sub-sampling of the circular convolution on a grid of
    :math:`N \ge n + 2\max(p, k)` points applied to the zero-embedded input; embedding and
    sub-sampling have norm at most 1, so :math:`\max_\omega \lVert \hat K(\omega)\rVert_2` over the
    N-point DFT frequencies (Sedghi et al. 2019) bounds the layer's norm from above. Computed in
    float64 and rounded up.
    """
    if not isinstance(conv, _CONV):
        raise ProbeError(f"conv_l2_upper_bound takes a Conv1d/2d/3d layer, got {type(conv).__name__}")
    if conv.padding_mode != "zeros":
        raise ProbeError(f"layer {conv} uses padding_mode={conv.padding_mode!r}; the circular bound assumes zero "
                         "padding")
    w = _effective_kernel(conv).to(torch.float64)
    d = w.dim() - 2
    if len(spatial) != d:
        raise ProbeError(f"{type(conv).__name__} needs {d} spatial sizes, got {tuple(spatial)}")
    pad = conv.padding
    pads = (0,) * d if pad == "valid" else (tuple(w.shape[2:]) if pad == "same" else _pairs(pad, d))
    grid = [int(n) + 2 * max(int(p), int(k)) for n, p, k in zip(spatial, pads, w.shape[2:])]
    khat = torch.fft.fftn(w, s=grid, dim=tuple(range(2, 2 + d)))
    mats = khat.permute(*range(2, 2 + d), 0, 1).reshape(-1, w.shape[0], w.shape[1])
    sigma = torch.linalg.matrix_norm(mats, ord=2).amax().item()
    # the FFT adds a rounding error of order log(N) u per entry on top of the SVD's
    return _round_up(sigma, max(w.shape[:2]) + math.prod(grid))


def _row_col_sums(module: nn.Module | None, fn: Callable, in_shape: tuple[int, ...], dtype: torch.dtype,
                  device: torch.device | None, abs_fn: Callable | None = None) -> tuple[float, float, int, int]:
    """Largest absolute row sum and column sum of the layer's matrix, and its numbers of rows and columns."""
    z = torch.zeros((1,) + tuple(in_shape), dtype=dtype, device=device, requires_grad=True)
    with torch.enable_grad():
        r = torch.ones_like(z) + z
        y = abs_fn(r) if abs_fn is not None else abs_linear_apply(module, r, fn)
        (col,) = torch.autograd.grad(y, z, grad_outputs=torch.ones_like(y))
    return float(y.detach().max()), float(col.max()), y.numel(), z.numel()


def operator_norm_upper_bound(module: nn.Module | None, in_shape: Sequence[int] | None = None, *,
                              norm: str = "l2", fn: Callable | None = None, abs_fn: Callable | None = None,
                              device: torch.device | None = None, dense_limit: int = DENSE_LIMIT) -> OperatorNorm:
    r"""A proven upper bound on :math:`\lVert M\rVert_{p\to p}` for the linear part M of an affine layer.

    Parameters
    ----------
    module : torch.nn.Module or None
        Linear, Conv1d/2d/3d (zero padding), BatchNorm (eval), average pooling, or a reshape-like
        layer (Flatten, Identity, Dropout: norm 1). ``None`` with ``fn`` for a functional reshape.
    in_shape : tuple of int, optional
        Shape of one input (no batch dimension). Needed for convolutions and pools, whose matrix
        depends on the input size; a Linear layer acts on the last axis and needs none.
    norm : {"l2", "linf", "l1"}, default "l2"
    fn : callable, optional
        The layer as a function, where it is not the module itself (graph nodes).
    abs_fn : callable, optional
        ``r -> |M| r`` where ``fn`` is not a map with non-negative coefficients and no offset
        (a scaling by a negative constant, an added constant, padding with a value).
    dense_limit : int, default 2**22
        Layers whose matrix has at most this many entries are written out and bounded exactly
        (SVD for L2); larger ones get the circular (convolutions) or Hölder bound.

    Returns
    -------
    OperatorNorm
        ``value`` never below the true norm (see the module docstring for how tight each method is).
    """
    norm = check_norm(norm)
    if norm not in ("l2", "linf", "l1"):
        raise ProbeError(f"operator norms are computed in 'l2', 'linf' or 'l1', got {norm!r}")
    if (module is None and fn is None) or isinstance(module, _SHAPE_ONLY):
        return OperatorNorm(1.0, norm, "identity")
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        scale = batchnorm_affine(_as_float64(module))[0].detach()
        return OperatorNorm(_round_up(scale.abs().max().item(), 4), norm, "diagonal")
    if isinstance(module, nn.Linear):
        w = module.weight.detach().to(torch.float64)
        if norm == "l2":
            return OperatorNorm(spectral_norm_upper_bound(w), norm, "svd")
        axis, method = (1, "row-sums") if norm == "linf" else (0, "column-sums")
        return OperatorNorm(_round_up(w.abs().sum(axis).max().item(), w.shape[axis]), norm, method)
    if in_shape is None:
        raise ProbeError(f"the input shape of {type(module).__name__} is needed to bound its operator norm "
                         "(pass input_shape: the shape of one input, without the batch dimension)")
    in_shape = tuple(int(s) for s in in_shape)
    if module is not None and isinstance(module, _CONV) and module.padding_mode != "zeros":
        raise ProbeError(f"layer {module} uses padding_mode={module.padding_mode!r}; operator norms assume zero "
                         "padding")
    mod64 = _as_float64(module) if module is not None else None
    op = fn if mod64 is None else mod64
    param = next(iter(module.parameters()), None) if module is not None else None
    dev = device if device is not None else (param.device if param is not None else None)
    rows, cols, n_out, n_in = _row_col_sums(mod64, op, in_shape, torch.float64, dev,
                                            abs_fn if mod64 is None else None)
    if norm == "linf":
        return OperatorNorm(_round_up(rows, n_in), norm, "row-sums")
    if norm == "l1":
        return OperatorNorm(_round_up(cols, n_out), norm, "column-sums")
    if n_in * n_out <= dense_limit:
        return OperatorNorm(spectral_norm_upper_bound(dense_matrix(op, in_shape, device=dev)), norm, "svd")
    candidates = [(_round_up(math.sqrt(rows * cols), n_in + n_out), "holder")]
    if isinstance(module, _CONV):
        candidates.append((conv_l2_upper_bound(module, in_shape[1:]), "circular"))
    value, method = min(candidates)
    return OperatorNorm(value, norm, method)


def operator_norm_lower_bound(op: Callable[[torch.Tensor], torch.Tensor], shape: Sequence[int], *,
                              iterations: int = 500, tol: float = 1e-7, dtype: torch.dtype = torch.float64,
                              device: torch.device | None = None, seed: int = 0) -> float:
    r"""A *lower* bound on the largest singular value of a linear operator, by power iteration on :math:`M^\top M`.

    Every iterate's :math:`\lVert M v\rVert` with :math:`\lVert v\rVert = 1` is at most
    :math:`\sigma_{\max}`, and the iteration approaches it from below; on clustered spectra it
    stops short (a layer with singular values 1, 1 - 1e-4, ... converges to about 0.9998). Use it
    as an estimate or a lower bound; :func:`operator_norm_upper_bound` gives the upper bound.

    Parameters
    ----------
    op : callable
        The linear map, applied to a batch of shape (1, *shape); its adjoint is taken by autograd.
    shape : tuple of int
        Shape of one input.
    iterations : int, default 500
    tol : float, default 1e-7
        Stop when the estimate changes by less than ``tol`` relatively.
    seed : int, default 0

    Returns
    -------
    float
    """
    g = torch.Generator().manual_seed(seed)
    v = torch.randn((1,) + tuple(shape), generator=g, dtype=dtype).to(device)
    v = v / v.norm()
    sigma = 0.0
    for _ in range(int(iterations)):
        z = v.detach().requires_grad_(True)
        with torch.enable_grad():
            y = op(z)
            (w,) = torch.autograd.grad(y, z, grad_outputs=y.detach())
        new = float(y.detach().norm())
        nw = w.norm()
        if nw == 0:
            return 0.0
        v = (w / nw).detach()
        if abs(new - sigma) <= tol * max(new, 1e-30):
            sigma = new
            break
        sigma = new
    with torch.no_grad():
        return max(sigma, float(op(v).norm()))
