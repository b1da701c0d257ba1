"""Exact in-silico mutagenesis for convolutional trunks, recomputing only what each edit can change.

A single substitution at position ``p`` changes, in the output of a convolution or
pooling layer with kernel ``K``, stride ``s``, dilation ``d`` and left padding ``P``,
only the outputs ``j`` whose receptive field touches the changed input window
``[a, a + W)``:

    ceil((a + P - (K - 1) d) / s) <= j <= floor((a + W - 1 + P) / s),

at most ``(W - 1 + (K - 1) d) // s + 1`` of them; elementwise layers (activations,
batch norm in eval mode, dropout in eval mode) keep the window as it is. So each
edit is carried through the convolutional trunk as a narrow window, read against
the activations of the unedited sequence, which are computed once per sequence;
the head (flatten + linear, global pooling, ...) then runs in full on the trunk
output with the window written in. This is the idea of fastISM (Nair et al.,
"fastISM: performant in silico saturation mutagenesis for convolutional neural
networks", Bioinformatics 38:2397, 2022), done here on ``nn.Sequential`` models
without graph capture. Results equal full forward passes up to floating-point
summation order.

Nothing here waits for the device: the cached activations are padded, once per group of
sequences, by as many columns as any window can reach beyond either end (worked out from the
layers' geometry for positions 0 and L - 1), so reading a window is one ``index_select`` for
every edit of a batch, with no data-dependent size.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ConvTrunk", "Unsupported"]

_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Identity,
                nn.Dropout, nn.ReLU6, nn.Mish, nn.Hardtanh, nn.PReLU, nn.Softsign, nn.Tanhshrink, nn.CELU,
                nn.SELU, nn.LogSigmoid)


class Unsupported(Exception):
    """The model is not a sequential convolutional trunk this fast path understands."""


class _Cached(NamedTuple):
    """A mixing layer's input ``a`` and output ``y`` for unedited sequences, position-major (S, L, C),
    padded with ``left`` columns before position 0 (``a`` with the layer's pad value, ``y`` with zeros);
    ``length`` is the unpadded input length."""

    a: torch.Tensor
    a_left: int
    y: torch.Tensor
    y_left: int
    length: int


def _flatten(model: nn.Module) -> list[nn.Module]:
    out: list[nn.Module] = []
    for m in model:
        out.extend(_flatten(m) if isinstance(m, nn.Sequential) else [m])
    return out


def _int(v: object) -> int:
    return int(v[0] if isinstance(v, (tuple, list)) else v)


class _Mixing:
    """A position-mixing layer applied with explicit padding (kernel, stride, dilation, left pad, pad value)."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.transpose: torch.Tensor | None = None
        if isinstance(module, nn.Conv1d):
            if module.padding_mode != "zeros":
                raise Unsupported(f"{module} pads with {module.padding_mode!r}")
            self.k, self.s, self.d = module.kernel_size[0], module.stride[0], module.dilation[0]
            if module.padding == "same":
                self.left = self.d * (self.k - 1) // 2
            elif module.padding == "valid":
                self.left = 0
            else:
                self.left = _int(module.padding)
            self.value = 0.0
            if self.s == 1:
                # conv1d weight (C_out, C_in/g, K) as a conv_transpose1d weight (C_in, C_out/g, K), flipped
                g, (c_out, c_in, kk) = module.groups, module.weight.shape
                wt = module.weight.detach().reshape(g, c_out // g, c_in, kk).transpose(1, 2)
                self.transpose = wt.reshape(g * c_in, c_out // g, kk).flip(-1)
        elif isinstance(module, nn.MaxPool1d):
            if module.ceil_mode or module.return_indices:
                raise Unsupported(f"{module} uses ceil_mode or return_indices")
            self.k, self.d = _int(module.kernel_size), _int(module.dilation)
            self.s = _int(module.stride if module.stride is not None else module.kernel_size)
            self.left, self.value = _int(module.padding), float("-inf")
        elif isinstance(module, nn.AvgPool1d):
            if module.ceil_mode or (_int(module.padding) and not module.count_include_pad):
                raise Unsupported(f"{module} uses ceil_mode or count_include_pad=False")
            self.k, self.d = _int(module.kernel_size), 1
            self.s = _int(module.stride if module.stride is not None else module.kernel_size)
            self.left, self.value = _int(module.padding), 0.0
        else:  # pragma: no cover - guarded by the caller
            raise Unsupported(str(module))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        m = self.module
        if isinstance(m, nn.Conv1d):
            return F.conv1d(x, m.weight, m.bias, m.stride, 0, m.dilation, m.groups)
        if isinstance(m, nn.MaxPool1d):
            return F.max_pool1d(x, self.k, self.s, 0, self.d)
        return F.avg_pool1d(x, self.k, self.s, 0)


class ConvTrunk:
    """The convolutional prefix of an ``nn.Sequential`` and the head that follows it.

    Parameters
    ----------
    model : nn.Sequential
        Layers Conv1d / MaxPool1d / AvgPool1d / elementwise (activations, eval-mode BatchNorm1d and
        Dropout) form the trunk up to the first other layer; the rest is the head.

    Raises
    ------
    Unsupported
        If the model is not an ``nn.Sequential`` whose first layers include a Conv1d.
    """

    def __init__(self, model: nn.Module):
        if not isinstance(model, nn.Sequential):
            raise Unsupported(f"{type(model).__name__} is not an nn.Sequential")
        layers = _flatten(model)
        trunk: list[object] = []
        i = 0
        for i, m in enumerate(layers):  # noqa: B007 - i is used after the loop
            if isinstance(m, (nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d)):
                trunk.append(_Mixing(m))
            elif isinstance(m, _ELEMENTWISE) or (isinstance(m, nn.BatchNorm1d) and not m.training):
                trunk.append(m)
            else:
                break
        else:
            i = len(layers)
        if not any(isinstance(t, _Mixing) and isinstance(t.module, nn.Conv1d) for t in trunk):
            raise Unsupported("the model does not start with a Conv1d trunk")
        self.trunk = trunk
        self.head = nn.Sequential(*layers[i:])
        rest = layers[i:]
        # Flatten + Linear: the head is linear in the trunk output, so an edit's output is the
        # reference output plus the head's weights applied to the change of the window alone
        self.linear = (len(rest) == 2 and isinstance(rest[0], nn.Flatten) and rest[0].start_dim == 1
                       and rest[0].end_dim == -1 and isinstance(rest[1], nn.Linear))

    def cache(self, x: torch.Tensor) -> tuple[list[_Cached], torch.Tensor]:
        """Input and output of every mixing layer and the trunk output, for unedited sequences (S, 4, L)."""
        reach = self._reach(x.shape[-1])
        acts = []
        h = x
        k = 0
        for t in self.trunk:
            if isinstance(t, _Mixing):
                y = t.module(h)
                (a_lo, a_hi), (y_lo, y_hi) = reach[k]
                k += 1
                # kept position-major, (S, L, C): a window of consecutive positions is one contiguous block
                a = _pad_positions(h, max(0, -a_lo), max(0, a_hi - h.shape[-1]), t.value)
                yp = _pad_positions(y, max(0, -y_lo), max(0, y_hi - y.shape[-1]), 0.0)
                acts.append(_Cached(a, max(0, -a_lo), yp, max(0, -y_lo), h.shape[-1]))
                h = y
            else:
                h = t(h)
        return acts, h

    def _reach(self, length: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """Per mixing layer, the columns ``[lo, hi)`` of its input and of its output that the windows of
        :meth:`edits` read, over all edit positions ``0 .. length - 1``.

        The same offset arithmetic as :meth:`edits`, on the first and last position: every offset is a
        non-decreasing function of the position, so these two bound all the others.
        """
        lo, hi, w = 0, length - 1, 1
        out = []
        for t in self.trunk:
            if not isinstance(t, _Mixing):
                continue
            ext = (t.k - 1) * t.d
            if t.transpose is not None:
                lo, hi = lo + t.left - ext, hi + t.left - ext
                a_read, w = (lo - t.left + ext, hi - t.left + ext + w), w + ext
                out.append((a_read, (lo, hi + w)))
                continue
            o_lo, o_hi = (-((-(v + t.left - ext)) // t.s) for v in (lo, hi))
            w_out = (w - 1 + ext) // t.s + 1
            w_in = (w_out - 1) * t.s + ext + 1
            first_lo, first_hi = o_lo * t.s - t.left, o_hi * t.s - t.left
            out.append(((first_lo - t.s, first_hi + w_in + w), (0, 0)))
            lo, hi, w = o_lo, o_hi, w_out
        return out

    def edits(self, acts: list[_Cached], out: torch.Tensor, seq: torch.Tensor,
              base: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Model outputs for edits ``(seq, base, pos)``: sequence ``seq`` (index into the cache) with
        position ``pos`` set to the one-hot ``base``."""
        dev = out.device
        win = F.one_hot(base, acts[0].a.shape[2]).to(out.dtype)[:, :, None]  # (E, 4, 1)
        off = pos.clone()
        k = 0
        for t in self.trunk:
            if not isinstance(t, _Mixing):
                win = t(win)
                continue
            cached = acts[k]
            k += 1
            w = win.shape[-1]
            span = off[:, None] + torch.arange(w, device=dev)
            inside = (span >= 0) & (span < cached.length)
            # columns of the window that fall in the padding read the pad value (no host test of which rows)
            win = win.masked_fill(~inside[:, None, :], t.value)
            if t.transpose is not None:
                # stride-1 convolution: linear, so add the convolution of the change to the cached output;
                # the transposed convolution touches only the W changed columns, not the W + ext outputs
                diff = win - _read(cached.a, cached.a_left, seq, off, w)
                o_out = off + t.left - (t.k - 1) * t.d
                delta = F.conv_transpose1d(diff, t.transpose, None, 1, 0, 0, t.module.groups, t.d)
                win = _read(cached.y, cached.y_left, seq, o_out, delta.shape[-1]) + delta
                off = o_out
                continue
            ext = (t.k - 1) * t.d
            o_out = -((-(off + t.left - ext)) // t.s)
            w_out = (w - 1 + ext) // t.s + 1
            w_in = (w_out - 1) * t.s + ext + 1
            first = o_out * t.s - t.left
            # the input of the layer over its window: cached values with the edited window written in.
            # The read starts between ext - s + 1 and ext before the window, so reading s columns more on
            # the left and w more on the right holds the whole window; the extra columns are dropped.
            pl, pr = t.s, w
            merged = _read(cached.a, cached.a_left, seq, first - pl, w_in + pl + pr)
            at = (off - first + pl)[:, None] + torch.arange(w, device=dev)
            merged.scatter_(2, at[:, None, :].expand(-1, win.shape[1], -1), win)
            merged = merged[:, :, pl:pl + w_in]
            win = t.apply(merged)
            off = o_out
        length, w = out.shape[-1], win.shape[-1]
        if self.linear:
            return self._linear_head(out, seq, off, win)
        # write the window into the trunk output; columns outside [0, length) land in padding and are dropped
        full = F.pad(out, (w, w))[seq]
        at = (off + w)[:, None] + torch.arange(w, device=dev)
        full.scatter_(2, at[:, None, :].expand(-1, win.shape[1], -1), win)
        full = full[:, :, w:w + length]
        return self.head(full) if len(self.head) else full

    def _linear_head(self, out: torch.Tensor, seq: torch.Tensor, off: torch.Tensor, win: torch.Tensor
                     ) -> torch.Tensor:
        """``head(out with win written in) = head(out) + W[:, :, window] . (win - out[window])``."""
        linear = self.head[1]
        n, c, length = out.shape
        w = win.shape[-1]
        span = off[:, None] + torch.arange(w, device=out.device)
        inside = (span >= 0) & (span < length)
        ref = F.pad(out, (w, w))
        ref = ref.unfold(2, w, 1)[seq, :, off + w]  # (E, C, w)
        delta = torch.where(inside[:, None, :], win - ref, torch.zeros((), dtype=win.dtype, device=win.device))
        weight = F.pad(linear.weight.reshape(-1, c, length), (w, w)).unfold(2, w, 1)  # (K, C, L + w + 1, w)
        weight = weight.index_select(2, off + w)  # (K, C, E, w)
        y_ref = linear(out.flatten(1))[seq]
        return y_ref + torch.einsum("kcew,ecw->ek", weight, delta)


def _pad_positions(h: torch.Tensor, left: int, right: int, fill: float) -> torch.Tensor:
    """(S, C, L) -> position-major (S, left + L + right, C), the new columns holding ``fill``."""
    if left or right:
        h = F.pad(h, (left, right), value=fill)
    return h.transpose(1, 2).contiguous()


def _read(a: torch.Tensor, left: int, seq: torch.Tensor, start: torch.Tensor, width: int) -> torch.Tensor:
    """Windows ``a[seq[e], start[e]:start[e] + width, :]`` of a position-major cache (S, L, C) padded with
    ``left`` columns before position 0, as (E, C, width); the padding covers every window read."""
    n, length, c = a.shape
    # (E, width, C) blocks copied whole, seen as (E, C, width): channels-last, which convolutions take as is
    windows = a.reshape(n * length, c).unfold(0, width, 1).transpose(1, 2)
    return windows.index_select(0, seq * length + start + left).transpose(1, 2)
