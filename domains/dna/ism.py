"""In-silico saturation mutagenesis (ISM): every single substitution of every sequence."""

from __future__ import annotations

import torch

from probe import ProbeError
from probe.devices import model_hygiene, resolve_device
from probe.graph import select_output
from probe.models import forward
from probe.progress import enabled

from .io import Sequences, as_sequences, one_hot
from .window_ism import window_table

__all__ = ["saturation_mutagenesis", "prepare_input"]

def prepare_input(X: object, device: torch.device, **one_hot_options: object) -> tuple[torch.Tensor, Sequences | None]:
    """One-hot tensor (N, 4, L) on ``device`` (a copy) and the named sequences it came from, if any."""
    if torch.is_tensor(X) or hasattr(X, "__array__"):
        t = torch.as_tensor(X)
        if t.dim() == 2:
            t = t[None]
        if t.dim() != 3 or t.shape[1] != 4:
            raise ProbeError(f"expected one-hot DNA of shape (N, 4, L), got shape {tuple(t.shape)}")
        if t.shape[0] == 0 or t.shape[2] == 0:
            raise ProbeError(f"no sequence to work on: shape {tuple(t.shape)} (zero sequences or zero length)")
        t = t.detach().to(device=device, dtype=t.dtype if t.is_floating_point() else torch.get_default_dtype())
        bad = ~torch.isfinite(t)
        if bad.any():
            i, b, p = (int(v) for v in bad.nonzero()[0])
            raise ProbeError(f"sequence {i} holds a non-finite value at base {b}, position {p}")
        return t.clone(), None
    seqs = as_sequences(X)
    return one_hot(seqs, **one_hot_options).to(device), seqs


def _label(seqs: Sequences | None, i: int) -> str:
    return seqs.label(i) if seqs is not None else f"sequence {i}"


def _call(model: object, x: torch.Tensor, seqs: Sequences | None, first: int, check: bool = True) -> torch.Tensor:
    try:
        return forward(model, x, check=check)
    except ProbeError as err:
        raise ProbeError(f"on {_label(seqs, first)} and the {len(x) - 1} after it: {err}") from None
    except (RuntimeError, TypeError, IndexError, ValueError) as err:
        msg = str(err).strip().splitlines()[0]
        raise ProbeError(f"the model could not be called on {_label(seqs, first)} (input shape "
                         f"{tuple(x.shape)}): {msg}") from None


def _edit_list(X: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """(E, 3) long tensor of (sequence, base, position): every substitution that changes a column.

    The identity edit (writing the base already there) is left out; an all-zero (N) or fractional
    column has no identity, so all four of its bases are edits.
    """
    todo = X[:, :, start:end] != 1
    idx = todo.nonzero()
    idx[:, 2] += start
    return idx


def _mutants(X: torch.Tensor, seq: torch.Tensor, base: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    xm = X[seq].clone()
    rows = torch.arange(len(seq), device=X.device)
    xm[rows, :, pos] = 0
    xm[rows, base, pos] = 1
    return xm


def saturation_mutagenesis(model: object, X: object, *, target: int | None = None, batch_size: int | None = None,
                           device: str | torch.device | None = None, start: int = 0, end: int | None = None,
                           centered: bool = False, hypothetical: bool = False, fast: bool | None = None,
                           progress: bool | None = False, iupac: str = "error", pad: str | None = None,
                           output: int | str | None = None, reduce: object = None, dtype: torch.dtype | None = None
                           ) -> torch.Tensor:
    r"""Change of the model's output under every single-base substitution.

    For sequence :math:`x` (one-hot, (4, L)) and the mutant :math:`x^{(b,p)}` whose column ``p`` is the
    base ``b``, returns

    .. math:: \Delta_{b,p} = f(x^{(b,p)}) - f(x),

    zero at the reference base. At an ``N`` (all-zero) column — or a fractional IUPAC column — no base
    is the reference: all four entries are the change from writing that base over the unknown column
    (tangermeme's convention: it, too, makes all four edits of a column that is not a clean one-hot).
    With ``centered=True`` the table is centred across bases at each position,
    :math:`\Delta_{b,p} - \frac14 \sum_{b'} \Delta_{b',p}`, and (unless ``hypothetical``) multiplied by
    the one-hot input — tangermeme's ISM attribution (Schreiber, tangermeme, 2024), averaged over the
    outputs when ``target`` is None.

    Parameters
    ----------
    model : torch.nn.Module or callable
        Maps (B, 4, L) to (B, K) (or (B,), or anything ``output`` and ``reduce`` turn into that).
    X : torch.Tensor of shape (N, 4, L), or sequences (str, Sequences, list of str / SeqRecord)
        Never modified.
    target : int, optional
        Output column. Default: the only column of a single-output model; for K > 1 outputs the
        result gets a last axis of size K.
    batch_size : int, optional
        Mutants per step; the result does not depend on it. Default: on the fast path, as many as
        fill half the free GPU memory (``torch.cuda.mem_get_info``) on CUDA, or a cache-sized batch
        on a CPU; 256 full forward passes otherwise.
    device : str or torch.device, optional
        Default: the model's device; for a model without parameters the input's; else the CPU.
    start, end : int, optional
        Mutate only positions ``start <= p < end`` (default all); the others are zero.
    centered, hypothetical : bool, default False
        Return tangermeme's centred attribution instead of the raw change (see above).
    fast : bool or None, default None
        For any ``nn.Module`` that :func:`probe.graph.capture` captures (own ``forward``, residual
        and dilated towers, crops, pooling, several heads), carry each edit through the graph as the
        narrow window of positions it can change, read against the activations of the unedited
        sequence (fastISM, Nair et al. 2022; :mod:`domains.dna.window_ism`); means and sums over the
        sequence axis are updated by the window's difference, and nodes that mix the whole axis
        (flatten + linear, ...) run in full from there. The fast path is checked against full
        forward passes on the first batch of edits (which includes both ends of the sequence) and
        abandoned with a warning if they differ by more than rounding in the compute dtype.
        ``None`` uses it where the model allows and the job is large enough to pay for capturing
        the graph (parameters x length x edits of at least 2e9, about a second of full passes);
        ``True`` uses it wherever the model allows and warns when it does not; ``False`` never
        uses it.
    progress : bool or None, default False
        Progress bar over batches (None: only on a terminal).
    iupac, pad : passed to :func:`one_hot` when ``X`` holds sequences.
    output : int or str, optional
        Which entry of a tuple/list (index) or dict (key) output to probe (a profile or a count head).
    reduce : callable, optional
        Applied to the selected output, e.g. ``lambda y: y[:, 0].sum(-1)`` to probe a profile head
        by its total without materialising (N, 4, L, strands, L_out) (tangermeme's ``func``).
    dtype : torch.dtype, optional
        Compute dtype of the fast path (``torch.bfloat16``, ``torch.float16`` on a GPU); its check
        tolerance is scaled to it. Default: the model's output dtype.

    Returns
    -------
    torch.Tensor, shape (N, 4, L) (or (N, 4, L, K) with ``target=None`` and K > 1 outputs)
        On the device of ``X`` when it is a tensor, else on the compute device.

    Raises
    ------
    ProbeError
        Bad sequences (naming the record), a model that cannot be called on them or whose output
        does not fit (naming the first record of the failing batch), ``target`` out of range.
    """
    from tqdm.auto import tqdm

    dev = resolve_device(device, model, X)
    out_device = X.device if torch.is_tensor(X) else dev
    X, seqs = prepare_input(X, dev, iupac=iupac, pad=pad)
    n, _, length = X.shape
    end = length if end is None else (length + 1 + end if end < 0 else end)
    if not 0 <= start < end <= length:
        raise ProbeError(f"need 0 <= start < end <= length; got start={start}, end={end}, length={length}")
    if batch_size is not None and int(batch_size) < 1:
        raise ProbeError(f"batch_size must be a positive integer, got {batch_size}")
    batch_size = None if batch_size is None else int(batch_size)

    with model_hygiene(model, dev) as m, torch.no_grad():
        plain_model = m if output is None and reduce is None else \
            (lambda x, m=m: select_output(m(x), output, reduce))
        m, windowed = plain_model, m
        step = batch_size or 256
        y0 = torch.cat([_call(m, X[i:i + step], seqs, i) for i in range(0, n, step)])
        k = y0.shape[1]
        if target is not None and not -k <= int(target) < k:
            raise ProbeError(f"target={target} is out of range for a model with {k} outputs")
        edits = _edit_list(X, start, end)
        fast_table = None if fast is False else window_table(
            windowed, X, edits, y0, plain=lambda s, b, p: _call(m, _mutants(X, s, b, p), seqs, 0),
            batch_size=batch_size, output=output, reduce=reduce, dtype=dtype, fast=fast, progress=progress)[0]
        batch_size = 256 if batch_size is None else batch_size
        table = torch.zeros(n, 4, length, k, device=dev, dtype=y0.dtype) if fast_table is None else fast_table
        spans = [] if fast_table is not None else _batch_spans(edits, batch_size)
        chunks = list(zip(range(0, len(edits), batch_size), spans))
        # no host sync inside this loop: which sequences a batch touches was read once above, and the
        # outputs are checked for NaN/inf once, on the whole table, below
        for c, (lo, _) in tqdm(chunks, desc="ISM", disable=not enabled(progress),
                               leave=False):
            seq, base, pos = edits[c:c + batch_size].unbind(1)
            y = _call(m, _mutants(X, seq, base, pos), seqs, lo, check=False)
            if y.shape[1] != k:
                raise ProbeError(f"the model returned {y.shape[1]} outputs on mutants of {_label(seqs, lo)} "
                                 f"and {k} on the sequence itself")
            table[seq, base, pos] = y - y0[seq]
        _check_finite(table, seqs)
    if centered:
        attr = table - table.mean(1, keepdim=True)
        attr = attr[..., int(target)] if target is not None else attr.mean(-1)
        if not hypothetical:
            attr = attr * X
        return attr.to(out_device)
    if target is not None:
        return table[..., int(target)].to(out_device)
    return (table[..., 0] if k == 1 else table).to(out_device)


def _batch_spans(edits: torch.Tensor, batch_size: int) -> list[tuple[int, int]]:
    """First and last sequence of each batch of edits, in one host read (edits are ordered by sequence)."""
    if len(edits) == 0:
        return []
    firsts = torch.arange(0, len(edits), batch_size, device=edits.device)
    lasts = (firsts + batch_size - 1).clamp(max=len(edits) - 1)
    return [tuple(v) for v in torch.stack([edits[firsts, 0], edits[lasts, 0]], 1).tolist()]


def _check_finite(table: torch.Tensor, seqs: Sequences | None) -> None:
    """Raise, naming the record, base and position, if a mutant's output was NaN or infinite."""
    bad = ~torch.isfinite(table)
    if bad.any():
        i, b, p = (int(v) for v in bad.flatten(3).any(3).nonzero()[0])
        raise ProbeError(f"the model returned a non-finite output on {_label(seqs, i)} with base "
                         f"{'ACGT'[b]} at position {p}")
