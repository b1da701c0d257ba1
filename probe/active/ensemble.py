"""A vectorised ensemble: M modules of one architecture evaluated in a single call.

The members' parameters are stacked along a new leading axis with
:func:`torch.func.stack_module_state` and the architecture is run once under
:func:`torch.vmap` through :func:`torch.func.functional_call` (the "model
ensembling" recipe of the ``torch.func`` documentation). Committee models of this
kind give the uncertainty used by i-PI's committee potentials and by DP-GEN's
model deviation (Zhang et al., Phys. Rev. Mater. 3, 023804, 2019).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from ..devices import resolve_device
from ..errors import ProbeError

__all__ = ["Ensemble"]


def _safe(name: str) -> str:
    # ParameterDict keys may not contain dots
    return name.replace(".", "__")


class Ensemble(nn.Module):
    """M members of one architecture, stacked and evaluated in one vectorised call.

    Parameters
    ----------
    members : sequence of torch.nn.Module
        At least two modules with identical parameter names and shapes (e.g. the same
        class built with different seeds). They are copied; the caller's modules are
        not modified.
    device : str or torch.device, optional
        Where the stacked parameters live. ``None``: the device of the first member.

    Notes
    -----
    ``ensemble(*args)`` returns ``out`` with ``out[m] = member_m(*args)``: the stacked
    parameters ``theta`` of shape ``(M, ...)`` enter ``vmap(functional_call)(theta, args)``
    so that one batched kernel replaces M Python-level calls. The stacked parameters are
    ordinary ``nn.Parameter`` objects, so an optimiser trains all members at once.
    """

    def __init__(self, members: Sequence[nn.Module], *, device: str | torch.device | None = None) -> None:
        super().__init__()
        members = list(members)
        if len(members) < 2:
            raise ProbeError(f"an ensemble needs at least 2 members, got {len(members)}")
        names = [sorted(n for n, _ in m.named_parameters()) for m in members]
        for i, n in enumerate(names[1:], start=1):
            if n != names[0]:
                raise ProbeError(f"ensemble member {i} has parameters {n}, member 0 has {names[0]}")
        device = resolve_device(device, members[0])
        members = [copy.deepcopy(m).to(device) for m in members]
        params, buffers = stack_module_state(members)
        self._names = list(params)
        self._buffer_names = list(buffers)
        self.stacked = nn.ParameterDict({_safe(k): nn.Parameter(v.detach().clone()) for k, v in params.items()})
        for k, v in buffers.items():
            self.register_buffer("buf_" + _safe(k), v.detach().clone())
        # a skeleton without storage: functional_call supplies every tensor
        self._skeleton = [copy.deepcopy(members[0]).to("meta")]
        self.n_members = len(members)

    def _state(self) -> dict[str, torch.Tensor]:
        state = {k: self.stacked[_safe(k)] for k in self._names}
        state.update({k: getattr(self, "buf_" + _safe(k)) for k in self._buffer_names})
        return state

    def forward(self, *args: torch.Tensor, in_dims: tuple | None = None) -> torch.Tensor:
        """Outputs of all members, stacked: shape ``(M, *member_output_shape)``.

        Parameters
        ----------
        *args : torch.Tensor
            The inputs every member receives (shared, not split between members).
        in_dims : tuple, optional
            ``vmap`` input dimensions for ``args``; ``None`` (default) shares all inputs.
            Pass ``0`` for an argument that already holds one slice per member.
        """
        skeleton = self._skeleton[0]
        dims = (None,) * len(args) if in_dims is None else tuple(in_dims)

        def one(state: dict, *a: torch.Tensor) -> torch.Tensor:
            return functional_call(skeleton, state, a)

        return torch.vmap(one, in_dims=(0, *dims), randomness="different")(self._state(), *args)

    def member(self, index: int) -> nn.Module:
        """Member ``index`` as a stand-alone module (a copy holding that slice of the parameters)."""
        if not 0 <= index < self.n_members:
            raise ProbeError(f"member index {index} is outside 0..{self.n_members - 1}")
        state = {k: v[index].detach().clone() for k, v in self._state().items()}
        module = copy.deepcopy(self._skeleton[0]).to_empty(device=next(iter(state.values())).device)
        module.load_state_dict(state)
        return module

    def members(self) -> list[nn.Module]:
        """All members as stand-alone modules (copies), in order."""
        return [self.member(i) for i in range(self.n_members)]

    def loop(self, *args: torch.Tensor, fn: Callable[[nn.Module], Callable] | None = None) -> torch.Tensor:
        """The same outputs as ``forward``, by a Python loop over the members (reference path)."""
        outs = []
        for m in self.members():
            outs.append(m(*args) if fn is None else fn(m)(*args))
        return torch.stack(outs)
