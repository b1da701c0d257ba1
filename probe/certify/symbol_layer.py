r"""A model's first layer read from symbol codes or bit flips instead of the encoded input.

Smoothing over a discrete space evaluates the base classifier on many noisy copies of a sequence;
the first layer of a sequence or fingerprint model is linear in the encoded input, so it can be
read from the noise's own description of a sample.

Convolution over a one-hot sequence. With :math:`x_{a,p} = [s_p = a]` a Conv1d is a sum of
per-offset lookups,

.. math:: y_{c,t} = b_c + \sum_{j=0}^{K-1} W_{c,\,s_{ts + jd - P},\,j},

(stride s, dilation d, left padding P; a padded or unknown position is a symbol whose column is
zero). Grouping the K offsets into chunks of m consecutive ones, the m symbols of a chunk form one
base-(A + 1) code (a k-mer code, A symbols plus the zero one) and each chunk is a single lookup in
a precomputed table :math:`T_q[\text{code}, c] = \sum_{i<m} W_{c, \text{digit}_i, qm + i}`:

.. math:: y_{c,t} = \sum_{q < \lceil K/m \rceil} T_q[\kappa_{ts + qmd},\, c],

where :math:`\kappa_p` is the k-mer code of the symbols at :math:`p, p + d, \dots, p + (m-1)d` of
the padded sequence. One code array serves every chunk (the kernel is padded with zero offsets to
a multiple of m), and the tables are summed in one ``embedding_bag`` call.

Linear layer on bits. For a bit vector x and a noisy copy that flips the set F,

.. math:: W \tilde x + b = (W x + b) + \sum_{j \in F} (1 - 2 x_j)\, W_{:, j},

the clean output plus a signed sum of the flipped columns, which ``embedding_bag`` with
``per_sample_weights`` computes in one call (about a tenth of the dense product at a flip rate of
10 %).

After the first layer. The lookups come out channels-last, (B, L, C); the max pools (stride equal to
the kernel), ReLUs, convolutions (as a Conv2d on (B, C, 1, L) in the channels-last memory format)
and a global max pool that follow run there, before the one copy to (B, C, L). In the rest of the
chain activations run in place (each intermediate of a sequential chain is read only by the next
module), a ReLU before a max pool runs after it (:math:`\max_i \mathrm{relu}(h_i) =
\mathrm{relu}(\max_i h_i)`: relu is monotone), and a global max is a halving by element-wise maxima;
every other module runs as it is. On a CPU the rewritten model runs in slices of the batch whose
first-layer output stays in cache.

These are rewrites of the same function: the values agree up to float rounding (the first layer's
additions in another order, convolutions by another kernel). A plan is made only where the first
layer is a plain ``nn.Conv1d`` (zero padding, one group) on one-hot input along axis 1, or a plain
``nn.Linear`` on the (flattened) bits, at the head of an ``nn.Sequential`` without hooks, and it is
checked against the model itself on the clean inputs and on noisy ones each time it is made
(:func:`first_layer_plan`).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .hamming import SymbolEncoding

__all__ = ["CodeConv1d", "FlipLinear", "first_layer_plan"]

#: elements of all k-mer tables of one convolution together (they should stay in cache)
_TABLE_ELEMENTS = 1 << 18
#: elements of a first-layer output evaluated at once on a CPU (4 MiB of float32; measured on small_cnn)
_CACHE_ELEMENTS = 1 << 20
_TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


def _no_hooks(*modules: nn.Module) -> bool:
    """No forward hooks on these modules, and none registered for all modules."""
    from torch.nn.modules import module as _module

    if any(getattr(_module, g, None) for g in ("_global_forward_hooks", "_global_forward_pre_hooks")):
        return False
    hooks = ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs")
    return all(not getattr(m, h, None) for m in modules for h in hooks)


def _conv_padding(conv: nn.Conv1d) -> tuple[int, int]:
    k, d = conv.kernel_size[0], conv.dilation[0]
    if conv.padding == "valid":
        return 0, 0
    if conv.padding == "same":
        total = d * (k - 1)
        return total // 2, total - total // 2
    return conv.padding[0], conv.padding[0]


class CodeConv1d:
    r"""The model's leading ``nn.Conv1d`` read from symbol codes by k-mer table lookups.

    Parameters
    ----------
    conv : nn.Conv1d
        The first layer (zero padding, ``groups == 1``), on inputs (B, A, L) one-hot along axis 1.
    rest : callable
        What the model applies to the convolution's output.
    length : int
        Sequence length L.

    Calling it on codes (B, L) of int64 (-1: unknown, a zero column) returns the model's scores.
    """

    def __init__(self, conv: nn.Conv1d, rest: object, length: int):
        w = conv.weight.detach()
        c_out, a, k = w.shape
        # the lookups come out channels-last (B, L, C): the max pools, ReLUs, convolutions and global max
        # that follow run there, before the one transposing copy
        self.rest, self.on_lookups = rest, []
        if isinstance(rest, _Lean):
            steps = list(rest.steps)
            while steps:
                op = _channels_last_op(steps[0])
                if op is None:
                    break
                self.on_lookups.append(op)
                steps.pop(0)
            self.rest = _Lean([], steps=steps)
        self.pool = self.on_lookups[0][1] if self.on_lookups and self.on_lookups[0][0] == "pool" else 1
        self.stride, self.dilation = conv.stride[0], conv.dilation[0]
        self.left, right = _conv_padding(conv)
        self.base = a + 1                                   # symbol a is the zero column (padding, unknown)
        self.out_len = (length + self.left + right - self.dilation * (k - 1) - 1) // self.stride + 1
        m = 1
        while m < k and math.ceil(k / (m + 1)) * self.base ** (m + 1) * c_out <= _TABLE_ELEMENTS:
            m += 1
        self.width, self.chunks = m, math.ceil(k / m)
        # kernel padded with zero offsets to chunks * m, and a zero symbol row
        # the tables are summed in float64 on the host (not every device has float64), then rounded once
        wp = torch.zeros(c_out, self.base, self.chunks * m, dtype=torch.float64)
        wp[:, :a, :k] = w.cpu().double()
        tables = []
        for q in range(self.chunks):
            t = torch.zeros(1, c_out, dtype=torch.float64)
            for i in range(m):                             # first offset is the most significant digit
                t = (t[:, None, :] + wp[:, :, q * m + i].T[None, :, :]).reshape(-1, c_out)
            tables.append(t)
        if conv.bias is not None:
            tables[0] = tables[0] + conv.bias.detach().cpu().double()
        self.table = torch.cat(tables).to(device=w.device, dtype=w.dtype)         # (chunks * base**m, C)
        self.table_offset = torch.arange(self.chunks, dtype=torch.int32, device=w.device) * self.base ** m
        # the padded sequence must hold every read: offsets up to chunks * m - 1
        span = (self.out_len - 1) * self.stride + (self.chunks * m - 1) * self.dilation + 1
        self.right = span - self.left - length
        self.length = length
        # rows per call of the rest of the model on a CPU: a first-layer output that stays in cache
        self.rows_per_call = max(16, _CACHE_ELEMENTS // (self.out_len * c_out))

    def kmer_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Code :math:`\\kappa_p` of the m symbols at p, p + d, ... of the padded sequences, (B, L'), int32."""
        pad = self.base - 1
        c = torch.where(codes < 0, pad, codes).to(torch.int32)
        c = F.pad(c, (self.left, max(self.right, 0)), value=pad)
        d, m = self.dilation, self.width
        n = c.shape[1] - (m - 1) * d
        code = c[:, :n].clone()
        for i in range(1, m):
            code.mul_(self.base).add_(c[:, i * d:i * d + n])
        return code

    def first(self, codes: torch.Tensor) -> torch.Tensor:
        """The convolution's output (B, C, L_out), then the pools and ReLUs that run on the lookups."""
        return self._from_kmers(self.kmer_codes(codes))

    def _from_kmers(self, kappa: torch.Tensor) -> torch.Tensor:
        b, n = kappa.shape
        # chunk q of output t reads kappa[t * s + q * m * d]: a strided view, copied once by the offset add
        reads = kappa.as_strided((b, self.out_len, self.chunks), (n, self.stride, self.width * self.dilation))
        idx = torch.empty(reads.shape, dtype=torch.int32, device=kappa.device)
        torch.add(reads, self.table_offset, out=idx)
        out = F.embedding_bag(idx.view(-1, self.chunks), self.table, mode="sum").view(b, self.out_len, -1)
        for op, k in self.on_lookups:
            if op == "conv":                                # (B, C, 1, L) channels-last: no copy in or out
                y = F.conv2d(out.transpose(1, 2).unsqueeze(2), *k)
                out = y.squeeze(2).transpose(1, 2)
            elif op == "pool":                              # a max of k strided views
                n_out = out.shape[1] // k
                pooled = out[:, 0:n_out * k:k]
                for i in range(1, k):
                    pooled = torch.maximum(pooled, out[:, i:n_out * k:k])
                out = pooled
            elif op == "relu":
                out = torch.relu_(out)
            else:
                out = _max_over_positions(out)
        return out.transpose(1, 2).contiguous()

    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        step = self.rows_per_call
        kappa = self.kmer_codes(codes)
        if len(codes) <= step or codes.device.type != "cpu":      # a GPU wants the whole batch at once
            return self.rest(self._from_kmers(kappa))
        return torch.cat([self.rest(self._from_kmers(kappa[i:i + step])) for i in range(0, len(codes), step)])


class FlipLinear:
    r"""The model's leading ``nn.Linear`` on bits: the clean output plus the signed flipped columns.

    Parameters
    ----------
    linear : nn.Linear
    rest : callable
        What the model applies to the linear layer's output.
    x : torch.Tensor, shape (N, F)
        The clean inputs, flattened.

    Calling it on the flips (a mask (B, F) of bool, or the flipped features (B, M) padded with -1)
    and the input index of each row (B,) returns the model's scores.
    """

    def __init__(self, linear: nn.Linear, rest: object, x: torch.Tensor):
        self.rest = rest
        w = linear.weight.detach()
        self.columns = w.T.contiguous()                    # (F, H): one row per input feature
        self.clean = F.linear(x.to(w.dtype), w, None if linear.bias is None else linear.bias.detach())
        self.sign = (1 - 2 * x.round()).to(w.dtype)        # +1 where a bit turns on, -1 where it turns off

    def first(self, flips: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The linear layer's output (B, H) on the inputs ``rows`` with ``flips`` flipped: a mask (B, F), or
        the flipped features (B, M) padded with -1."""
        if flips.dtype != torch.bool:
            cols = flips.clamp(min=0)
            weights = self.sign[rows[:, None], cols] * (flips >= 0)
            change = F.embedding_bag(cols, self.columns, mode="sum", per_sample_weights=weights)
            return self.clean[rows] + change
        where = flips.nonzero()
        r, j = where[:, 0], where[:, 1]
        per_row = torch.bincount(r, minlength=len(flips))
        offsets = per_row.cumsum(0) - per_row
        weights = self.sign[rows[r], j]
        change = F.embedding_bag(j, self.columns, offsets, mode="sum", per_sample_weights=weights)
        return self.clean[rows] + change

    def __call__(self, flips: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return self.rest(self.first(flips, rows))


def _single(v: object) -> int:
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


def _channels_last_op(step: object) -> tuple[str, object] | None:
    """("pool", k), ("relu", 0), ("max", 0) or ("conv", conv2d arguments) where ``step`` of a :class:`_Lean`
    chain can run on channels-last (B, L, C) values; a Conv1d runs as a Conv2d on (B, C, 1, L) in the
    channels-last memory format, which reads and writes that layout as it is."""
    if type(step) is nn.Conv1d and _no_hooks(step) and step.padding_mode == "zeros":
        w = step.weight.detach()[:, :, None, :].contiguous(memory_format=torch.channels_last)
        pad = step.padding if isinstance(step.padding, str) else (0, step.padding[0])
        bias = None if step.bias is None else step.bias.detach()
        return "conv", (w, bias, (1, step.stride[0]), pad, (1, step.dilation[0]), step.groups)
    if step is torch.relu_:
        return "relu", 0
    if step is _global_max:
        return "max", 0
    if (type(step) is nn.MaxPool1d and _no_hooks(step) and not step.return_indices and not step.ceil_mode
            and _single(step.kernel_size) == _single(step.stride) and _single(step.padding) == 0
            and _single(step.dilation) == 1):
        return "pool", _single(step.kernel_size)
    return None


def _max_over_positions(h: torch.Tensor) -> torch.Tensor:
    """Max over axis 1 of (B, L, C), keeping it: halving by element-wise maxima (exact), which on a CPU is
    several times faster than a reduction over an axis that is not the innermost."""
    carry = None                                             # the odd ones out, maxed aside
    while h.shape[1] > 1:
        n = h.shape[1]
        half = n // 2
        if n % 2:
            carry = h[:, n - 1:] if carry is None else torch.maximum(carry, h[:, n - 1:])
        h = torch.maximum(h[:, :half], h[:, half:2 * half])
    return h if carry is None else torch.maximum(h, carry)


def _global_max(h: torch.Tensor) -> torch.Tensor:
    if h.dim() != 3:
        return h.amax(-1, keepdim=True)
    return _max_over_positions(h.transpose(1, 2)).transpose(1, 2)


class _Lean:
    r"""The modules after the first layer, with exact cheaper equivalents of a few common ones.

    Every intermediate of a sequential chain is read only by the next module, so activations run in
    place; a ReLU before a max pool runs after it, on fewer values
    (:math:`\max_i \mathrm{relu}(h_i) = \mathrm{relu}(\max_i h_i)`, exactly, as relu is monotone); an
    ``AdaptiveMaxPool1d(1)`` is a max over the last axis by halving. Modules with hooks run as they are.
    ``steps`` gives the chain's callables directly.
    """

    def __init__(self, modules: list[nn.Module], *, steps: list | None = None):
        if steps is not None:
            self.steps = steps
            return
        steps = []
        i = 0
        while i < len(modules):
            mod, nxt = modules[i], modules[i + 1] if i + 1 < len(modules) else None
            plain = _no_hooks(mod)
            if type(mod) is nn.ReLU and type(nxt) is nn.MaxPool1d and plain and not nxt.return_indices:
                steps += [nxt, torch.relu_]
                i += 2
                continue
            if type(mod) is nn.ReLU and plain:
                steps.append(torch.relu_)
            elif (type(mod) is nn.AdaptiveMaxPool1d and plain and not mod.return_indices
                  and mod.output_size in (1, (1,))):
                steps.append(_global_max)
            else:
                steps.append(mod)
            i += 1
        self.steps = steps

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            h = step(h)
        return h


def _split(model: object) -> tuple[nn.Module, object, list[nn.Module]] | None:
    """(first layer, rest, leading flatten modules) of a plain ``nn.Sequential`` (or a bare layer), or None."""
    if type(model) in (nn.Conv1d, nn.Linear):
        return (model, _Lean([]), []) if _no_hooks(model) else None
    if type(model) is not nn.Sequential or not len(model):
        return None
    mods = list(model)
    lead = []
    while mods and type(mods[0]) is nn.Flatten:
        lead.append(mods.pop(0))
    if not mods or type(mods[0]) not in (nn.Conv1d, nn.Linear):
        return None
    if not _no_hooks(model, *lead, mods[0]):
        return None
    return mods[0], _Lean(mods[1:]), lead


def first_layer_plan(model: object, enc: SymbolEncoding, x: torch.Tensor, codes: torch.Tensor,
                     mutable: torch.Tensor, noise: object, *, samples: int = 64,
                     seed: int = 12345) -> CodeConv1d | FlipLinear | None:
    """A :class:`CodeConv1d` or :class:`FlipLinear` plan of ``model`` for the inputs ``x``, or None.

    None where the model is not an ``nn.Sequential`` (or a bare layer; without hooks) whose first layer, after any
    ``nn.Flatten``, is a plain ``nn.Conv1d`` on one-hot input along axis 1 (zero padding, one group)
    or an ``nn.Linear`` on bits; where the plan needs a host read per batch on a GPU (bits); and
    where its scores differ from the model's on the clean inputs or on ``samples`` noisy copies
    (then with a warning).

    Parameters
    ----------
    model : object
        The base classifier, already in eval mode on the inputs' device.
    enc : SymbolEncoding
    x : torch.Tensor, shape (N, *shape)
    codes, mutable : torch.Tensor, shape (N, P)
        Symbol codes of ``x`` and the positions that may change.
    noise : callable
        ``noise(codes, mutable, generator) -> codes`` (B, P): the smoothing's noise, used for the check.
    samples : int, default 64
        Noisy copies the plan is checked on.
    seed : int
        Seed of the check's own generator (the smoothing's stream is not touched).
    """
    parts = _split(model)
    if parts is None:
        return None
    layer, rest, lead = parts
    if isinstance(layer, nn.Conv1d):
        ok = (enc.kind == "onehot" and enc.axis == 1 and len(enc.shape) == 2 and not lead
              and layer.in_channels == enc.alphabet and layer.groups == 1 and layer.padding_mode == "zeros")
        if not ok:
            return None
        plan: CodeConv1d | FlipLinear = CodeConv1d(layer, rest, enc.shape[1])
    else:
        flat = len(enc.shape) == 1 or (lead and lead[0].start_dim == 1 and lead[0].end_dim == -1)
        if enc.kind != "bits" or x.device.type != "cpu" or not flat or layer.in_features != enc.positions:
            return None
        plan = FlipLinear(layer, rest, x.reshape(len(x), -1))
    return plan if _agrees(plan, model, enc, x, codes, mutable, noise, samples, seed) else None


def _agrees(plan: CodeConv1d | FlipLinear, model: object, enc: SymbolEncoding, x: torch.Tensor, codes: torch.Tensor,
            mutable: torch.Tensor, noise: object, samples: int, seed: int) -> bool:
    from .substitution import encode_batch

    g = torch.Generator(device=x.device).manual_seed(seed)
    reps = max(1, samples // len(x))
    rows = torch.arange(len(x), device=x.device).repeat_interleave(reps)
    noisy = noise(codes[rows], mutable[rows], g)
    rows = torch.cat([torch.arange(len(x), device=x.device), rows])
    noisy = torch.cat([codes, noisy])
    like = x[rows] if enc.kind == "bits" else None
    with torch.no_grad():
        want = model(encode_batch(enc, noisy, x.dtype, like))
        got = plan(noisy != codes[rows], rows) if isinstance(plan, FlipLinear) else plan(noisy)
    if got.shape != want.shape:
        return False
    tol = _TOLERANCE.get(want.dtype, 1e-4) * (1 + float(want.abs().max()))
    if bool(((got - want).abs() <= tol).all()):
        return True
    warnings.warn(f"the first layer read from symbol codes differs from the model by "
                  f"{float((got - want).abs().max()):.3g}; certifying with the plain forward pass", stacklevel=4)
    return False
