r"""Models with several inputs (modalities): one modality at a time, or a joint budget over several.

:func:`fix_inputs` packs the inputs of a multi-input model into one flat tensor per example and
returns a single-input model over it with a :class:`~probe.spaces.Box` whose mask freezes the
modalities not chosen. Every row carries its own copy of the frozen modalities, so attacks,
:func:`probe.minimal_perturbation`, :func:`probe.sensitivity` and the certificates, which batch,
stack and slice rows freely, need no change::

    fx = probe.fix_inputs(model, {"seq": X, "track": T}, modality="track")
    res = probe.minimal_perturbation(fx.model, fx.x, norm="l2", space=fx.space())
    fx.part(res.delta)                          # the change to the track, shaped like T
    probe.certify.bound_outputs(fx.model, fx.x, fx.eps(0.1))   # L-inf on the track only

With ``modality=("seq", "track")`` the L2 (or L1) budget of an attack is joint over both
(the frozen features never move, so the norm of the change is that of the chosen
modalities); :meth:`FixedInputs.eps` takes one L-inf radius per modality.

:class:`LateFusion` is the late-fusion model, one branch per modality combined by a sum or mean
of logits, an average of probabilities or a majority vote; its certificates are in
:mod:`probe.certify.fusion`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .errors import ProbeError
from .spaces import Box

__all__ = ["fix_inputs", "FixedInputs", "PackedModel", "LateFusion", "FUSION_RULES"]

FUSION_RULES = ("sum", "mean", "probabilities", "vote")


def _named(inputs: object) -> dict[str, torch.Tensor]:
    if isinstance(inputs, Mapping):
        named = {str(k): v for k, v in inputs.items()}
    elif isinstance(inputs, Sequence) and not torch.is_tensor(inputs):
        named = {str(i): v for i, v in enumerate(inputs)}
    else:
        raise ProbeError(f"inputs must be a dict of name -> tensor or a list of tensors, not {type(inputs).__name__}")
    if not named:
        raise ProbeError("inputs is empty")
    out = {}
    for k, v in named.items():
        t = v if torch.is_tensor(v) else torch.as_tensor(v)
        if t.dim() < 1:
            raise ProbeError(f"input {k!r} needs a batch dimension, got shape {tuple(t.shape)}")
        out[k] = t
    n = {k: int(t.shape[0]) for k, t in out.items()}
    if len(set(n.values())) > 1:
        raise ProbeError(f"inputs have different numbers of rows: {n}")
    return out


class PackedModel(nn.Module):
    """``model(*parts)`` of a flat (N, D) tensor cut into the modalities' shapes (see :func:`fix_inputs`).

    Parameters
    ----------
    model : callable
        Called with the modalities positionally, in the order of ``shapes`` (or as keywords with
        ``keywords=True``).
    shapes : dict of name -> per-example shape
    """

    def __init__(self, model: object, shapes: Mapping[str, tuple[int, ...]], *, keywords: bool = False):
        super().__init__()
        self.model = model
        self.shapes = {k: tuple(v) for k, v in shapes.items()}
        self.keywords = keywords
        sizes = [math.prod(s) for s in self.shapes.values()]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self.slices = {k: (a, a + s) for k, a, s in zip(self.shapes, starts, sizes)}
        self.width = sum(sizes)

    def split(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The modalities of a packed (N, D) tensor, each shaped (N, *shape)."""
        if x.dim() != 2 or x.shape[1] != self.width:
            raise ProbeError(f"packed inputs must have shape (N, {self.width}), got {tuple(x.shape)}")
        return {k: x[:, a:b].reshape((x.shape[0],) + self.shapes[k]) for k, (a, b) in self.slices.items()}

    def pack(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The flat (N, D) tensor of the modalities (in this model's order)."""
        missing = [k for k in self.shapes if k not in inputs]
        if missing:
            raise ProbeError(f"inputs lack the modalities {missing}")
        parts = []
        for k, shape in self.shapes.items():
            t = inputs[k]
            if tuple(t.shape[1:]) != shape:
                raise ProbeError(f"modality {k!r} has shape {tuple(t.shape[1:])} per example, expected {shape}")
            parts.append(t.reshape(t.shape[0], -1))
        return torch.cat(parts, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = self.split(x)
        return self.model(**parts) if self.keywords else self.model(*parts.values())


@dataclass(frozen=True)
class FixedInputs:
    """A multi-input model seen as a model of its chosen modalities (see :func:`fix_inputs`).

    Attributes
    ----------
    model : PackedModel
        Single-input model over the packed (N, D) tensor.
    x : torch.Tensor, shape (N, D)
        The packed inputs.
    modality : tuple of str
        The modalities that may change.
    """

    model: PackedModel
    x: torch.Tensor
    modality: tuple[str, ...]

    def mask(self) -> torch.Tensor:
        """Bool (D,): True where a feature is frozen (not a chosen modality)."""
        m = torch.ones(self.model.width, dtype=torch.bool)
        for k in self.modality:
            a, b = self.model.slices[k]
            m[a:b] = False
        return m

    def space(self, lower: object = float("-inf"), upper: object = float("inf")) -> Box:
        """A :class:`~probe.spaces.Box` freezing the other modalities.

        ``lower``/``upper``: a number, or a dict of modality -> number or tensor shaped like one
        example of it (the modality's valid range, e.g. 0 for counts).
        """
        return Box(self._per_feature(lower, float("-inf")), self._per_feature(upper, float("inf")), mask=self.mask())

    def eps(self, eps: object) -> torch.Tensor:
        """Per-feature L-inf half-widths (N, D) for the certificates: ``eps`` on the chosen modalities, 0 elsewhere.

        ``eps``: a number (every chosen modality) or a dict of modality -> radius (a joint budget
        with one radius per modality).
        """
        if isinstance(eps, Mapping):
            bad = [k for k in eps if k not in self.modality]
            if bad:
                raise ProbeError(f"eps names modalities {bad} that are not chosen ({list(self.modality)})")
        else:
            eps = {k: eps for k in self.modality}
        row = self._per_feature(eps, 0.0).to(self.x)
        if (row < 0).any() or not torch.isfinite(row).all():
            raise ProbeError(f"eps must be finite and non-negative, got {eps}")
        return row.expand_as(self.x).clone()

    def _per_feature(self, value: object, fill: float) -> torch.Tensor:
        row = torch.full((self.model.width,), fill, dtype=torch.float64)
        items = value.items() if isinstance(value, Mapping) else ((k, value) for k in self.modality)
        for k, v in items:
            if k not in self.model.slices:
                raise ProbeError(f"unknown modality {k!r}; the model's are {list(self.model.slices)}")
            a, b = self.model.slices[k]
            row[a:b] = torch.as_tensor(v, dtype=torch.float64).expand(self.model.shapes[k]).reshape(-1)
        return row

    def part(self, t: object, modality: str | None = None) -> torch.Tensor:
        """One modality (default: the only chosen one) of a packed tensor or of a result's ``.values``/``.x_adv``."""
        if not torch.is_tensor(t):
            t = getattr(t, "values", None) if hasattr(t, "values") else getattr(t, "x_adv", None)
        if modality is None:
            if len(self.modality) != 1:
                raise ProbeError(f"name the modality: {list(self.modality)} are chosen")
            modality = self.modality[0]
        return self.model.split(t)[modality]


def fix_inputs(model: object, inputs: object, *, modality: str | int | Sequence[str | int],
               keywords: bool = False) -> FixedInputs:
    """A multi-input model as a model of the chosen modalities, the others fixed at their values in ``inputs``.

    Parameters
    ----------
    model : callable
        ``model(*inputs)`` (or ``model(**inputs)`` with ``keywords=True``) -> outputs.
    inputs : dict of name -> torch.Tensor of shape (N, ...), or a sequence of tensors (named "0", "1", ...)
        Never modified (the packed tensor is a copy).
    modality : str, int or sequence of them
        The modality, or modalities (a joint budget), that may change.
    keywords : bool, default False

    Returns
    -------
    FixedInputs
    """
    named = _named(inputs)
    chosen = [modality] if isinstance(modality, (str, int)) else list(modality)
    chosen = [str(k) for k in chosen]
    unknown = [k for k in chosen if k not in named]
    if unknown or not chosen:
        raise ProbeError(f"modality {unknown or modality!r} is not one of the inputs {list(named)}")
    dtype = functools.reduce(torch.promote_types, [t.dtype for t in named.values()])
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    named = {k: t.to(dtype) for k, t in named.items()}
    devices = {t.device for t in named.values()}
    if len(devices) > 1:
        raise ProbeError(f"inputs live on different devices: {sorted(map(str, devices))}")
    packed = PackedModel(model, {k: tuple(t.shape[1:]) for k, t in named.items()}, keywords=keywords)
    return FixedInputs(packed, packed.pack(named), tuple(dict.fromkeys(chosen)))


class LateFusion(nn.Module):
    r"""Late fusion of per-modality branches, each mapping its modality to K logits.

    ``rule``:

    - ``"sum"``: :math:`z = \sum_m w_m z_m` (``weights`` default 1); ``"mean"``: the same with
      :math:`w_m = 1/M` by default;
    - ``"probabilities"``: :math:`p = \sum_m w_m \operatorname{softmax}(z_m)` (weights default 1/M);
      the output is this averaged probability vector;
    - ``"vote"``: each branch votes for its argmax; the output is the vote count per class,
      ties going to the lowest class index (``argmax`` of the counts).

    Parameters
    ----------
    branches : dict of name -> nn.Module, or a sequence of modules (named "0", "1", ...)
    rule : {"sum", "mean", "probabilities", "vote"}, default "mean"
    weights : sequence of float, optional
        Non-negative, one per branch (not used by "vote").

    The forward takes the modalities positionally, in the order of ``branches``.
    """

    def __init__(self, branches: object, *, rule: str = "mean", weights: Sequence[float] | None = None):
        super().__init__()
        if isinstance(branches, Mapping):
            self.branches = nn.ModuleDict({str(k): v for k, v in branches.items()})
        else:
            self.branches = nn.ModuleDict({str(i): v for i, v in enumerate(branches)})
        if rule not in FUSION_RULES:
            raise ProbeError(f"rule must be one of {FUSION_RULES}, got {rule!r}")
        m = len(self.branches)
        if weights is None:
            weights = [1.0] * m if rule == "sum" else [1.0 / m] * m
        weights = [float(w) for w in weights]
        if len(weights) != m or any(w < 0 or not math.isfinite(w) for w in weights):
            raise ProbeError(f"weights must be {m} finite non-negative numbers, got {weights}")
        self.rule = rule
        self.weights = weights

    @property
    def names(self) -> list[str]:
        return list(self.branches)

    def branch_outputs(self, *xs: torch.Tensor) -> list[torch.Tensor]:
        if len(xs) != len(self.branches):
            raise ProbeError(f"LateFusion has {len(self.branches)} branches ({self.names}), got {len(xs)} inputs")
        return [branch(x) for branch, x in zip(self.branches.values(), xs)]

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        zs = self.branch_outputs(*xs)
        if self.rule in ("sum", "mean"):
            return sum(w * z for w, z in zip(self.weights, zs))
        if self.rule == "probabilities":
            return sum(w * torch.softmax(z, 1) for w, z in zip(self.weights, zs))
        k = zs[0].shape[1]
        return sum(nn.functional.one_hot(z.argmax(1), k).to(z.dtype) for z in zs)
