r"""Exact Hamming answers for small problems: the reference that certified radii are tested against.

:func:`exact_hamming_radius` enumerates every sequence at distance 1, 2, ... from each input until
one changes the prediction: the exact radius is that distance minus one, so for any sound
certificate and any search, certified radius <= exact radius < number of edits found.
:func:`exact_substitution_probabilities` computes a substitution-smoothed classifier's class
probabilities exactly by enumerating all :math:`K^P` noise outcomes, each with probability
:math:`\alpha^{P - d} \beta^{d}` (d the number of positions it changes, :math:`\beta = (1-\alpha)/(K-1)`).
"""

from __future__ import annotations

import itertools
import math

import torch

from ..certify.hamming import symbol_encoding
from ..devices import as_input, model_hygiene, resolve_device
from ..errors import ProbeError
from ..models import forward
from ..spaces import OneHot, Space

__all__ = ["exact_hamming_radius", "exact_substitution_probabilities", "all_sequences"]


def all_sequences(positions: int, alphabet: int, *, device: str | torch.device | None = None) -> torch.Tensor:
    """Every sequence of ``positions`` symbols over ``alphabet`` as codes, shape (alphabet**positions, positions),
    in lexicographic order (the first position varies slowest)."""
    if alphabet ** positions > 1 << 22:
        raise ProbeError(f"{alphabet}**{positions} sequences are too many to enumerate")
    digits = torch.arange(alphabet ** positions, device=device)
    powers = alphabet ** torch.arange(positions - 1, -1, -1, device=device)
    return (digits[:, None] // powers[None, :]) % alphabet


def exact_hamming_radius(model: object, X: object, *, space: Space | None = None, labels: object = None,
                         max_radius: int | None = None, batch_size: int = 8192, limit: int = 2_000_000,
                         device: str | torch.device | None = None) -> torch.Tensor:
    """Exact largest r such that no sequence within r substitutions changes the model's class.

    Parameters
    ----------
    model : torch.nn.Module or callable
        A classifier (N, ...) -> (N, C).
    X : torch.Tensor, shape (N, K, L) (``OneHot``) or (N, F) (``Bits``)
    space : OneHot or Bits, default OneHot()
        Masked positions never change; an unknown one-hot position may take any symbol.
    labels : array-like of int, optional
        Default the model's predictions; an input predicted otherwise gets -1.
    max_radius : int, optional
        Stop the enumeration here: an input not flipped within it gets ``max_radius`` (a lower bound).
    batch_size : int, default 8192
    limit : int, default 2_000_000
        Largest number of sequences enumerated per input.

    Returns
    -------
    torch.Tensor of int64, shape (N,)
        The exact radius: the fewest substitutions that change the class, minus one (all mutable
        positions where no substitution does).
    """
    dev = resolve_device(device, model, X)
    x = as_input(X, name="X", device=dev)
    space = OneHot() if space is None else space
    enc = symbol_encoding(space, x)
    codes = enc.codes(x)
    mutable = enc.mutable(space, x)
    out = torch.empty(len(x), dtype=torch.long)
    with model_hygiene(model, dev) as m, torch.no_grad():
        pred = forward(m, x).argmax(1)
        y = pred if labels is None else torch.as_tensor(labels, device=dev).long().reshape(-1)
        for i in range(len(x)):
            if pred[i] != y[i]:
                out[i] = -1
                continue
            out[i] = _radius_of(m, enc, codes[i], mutable[i], int(y[i]), max_radius, batch_size, limit, x[i])
    return out.to(dev)


def _radius_of(m: object, enc: object, code: torch.Tensor, mutable: torch.Tensor, label: int,
               max_radius: int | None, batch_size: int, limit: int, x: torch.Tensor) -> int:
    free = mutable.nonzero().flatten().tolist()
    k = enc.alphabet
    alts = {p: [c for c in range(k) if c != int(code[p])] for p in free}
    cap = len(free) if max_radius is None else min(len(free), int(max_radius))
    total = sum(math.comb(len(free), r) * (k - 1) ** r for r in range(1, cap + 1))
    if total > limit:
        raise ProbeError(f"{total} sequences within {cap} substitutions exceed limit={limit}; lower max_radius")
    for r in range(1, cap + 1):
        pending: list[torch.Tensor] = []
        size = 0
        for pos in itertools.combinations(free, r):
            grid = torch.tensor(list(itertools.product(*(alts[p] for p in pos))), device=code.device)
            cand = code.expand(len(grid), -1).clone()
            cand[:, list(pos)] = grid
            pending.append(cand)
            size += len(cand)
            if size >= batch_size and _flips(m, enc, pending, label, x):
                return r - 1
            if size >= batch_size:
                pending, size = [], 0
        if pending and _flips(m, enc, pending, label, x):
            return r - 1
    return cap


def _flips(m: object, enc: object, pending: list, label: int, x: torch.Tensor) -> bool:
    from ..certify.substitution import encode_batch

    codes = torch.cat(pending)
    batch = encode_batch(enc, codes, x.dtype, x.expand((len(codes),) + tuple(x.shape)))
    return bool((forward(m, batch).argmax(1) != label).any())


def exact_substitution_probabilities(model: object, X: object, *, keep: float, space: Space | None = None,
                                     batch_size: int = 8192, device: str | torch.device | None = None
                                     ) -> torch.Tensor:
    r"""Exact class probabilities of the substitution-smoothed classifier, by enumerating every noise outcome.

    :math:`p_c(x) = \sum_z \alpha^{P - d(x,z)} \beta^{d(x,z)} [f(z) = c]` over all :math:`K^P` sequences z
    (float64). For short sequences only (:math:`K^P \le 2^{22}`); no unknown or masked positions.

    Parameters
    ----------
    model : torch.nn.Module or callable
    X : torch.Tensor, shape (N, K, L) or (N, F)
    keep : float
    space : OneHot or Bits, default OneHot()

    Returns
    -------
    torch.Tensor, shape (N, C), float64
    """
    dev = resolve_device(device, model, X)
    x = as_input(X, name="X", device=dev)
    space = OneHot() if space is None else space
    enc = symbol_encoding(space, x)
    codes = enc.codes(x)
    if (codes < 0).any() or getattr(space, "mask", None) is not None:
        raise ProbeError("exact_substitution_probabilities handles fully known sequences without a mask")
    from ..certify.substitution import encode_batch

    k, p = enc.alphabet, enc.positions
    z = all_sequences(p, k, device=dev)
    with model_hygiene(model, dev) as m, torch.no_grad():
        logits = torch.cat([forward(m, encode_batch(enc, z[s:s + batch_size], x.dtype))
                            for s in range(0, len(z), batch_size)])
    onehot = torch.nn.functional.one_hot(logits.argmax(1), max(logits.shape[1], 2)).double()
    beta = (1.0 - keep) / (k - 1)
    out = []
    for s in range(0, len(x), 64):
        d = (codes[s:s + 64, None, :] != z[None, :, :]).sum(2).double()   # (B, K^P)
        w = keep ** (p - d) * beta ** d
        out.append(w @ onehot)
    return torch.cat(out)
