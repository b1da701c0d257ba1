"""Committees: anything that gives every member's energy and forces for a batch of configurations.

The triggers and the on-the-fly loop read a committee through one call,
``predict(positions (B, N, 3), numbers (N,)) -> Prediction`` with ``energy (M, B)`` and
``forces (M, B, N, 3)``. :class:`~domains.md.potential.EnsemblePotential` is one (trained on the fly);
:class:`CalculatorCommittee` makes one of any list of ASE calculators and :class:`TorchCommittee` of
any list of torch potentials with an energy/forces call, so a committee of independently trained
models (MACE, NequIP, SchNet, a force field with perturbed parameters) drives the same loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from ase import Atoms

from probe.errors import ProbeError

from .potential import EnsemblePotential, Prediction

__all__ = ["Committee", "CalculatorCommittee", "TorchCommittee", "as_committee"]


@runtime_checkable
class Committee(Protocol):
    """``M`` models of one system, evaluated together."""

    n_members: int

    def predict(self, positions: np.ndarray, numbers: Sequence[int]) -> Prediction:
        """Every member's energy (M, B) in eV and forces (M, B, N, 3) in eV/A."""


def _positions(positions: object) -> np.ndarray:
    pos = np.asarray(positions.detach().cpu() if isinstance(positions, torch.Tensor) else positions,
                     dtype=np.float64)
    if pos.ndim == 2:
        pos = pos[None]
    if pos.ndim != 3 or pos.shape[-1] != 3:
        raise ProbeError(f"positions must have shape (B, N, 3) or (N, 3), got {pos.shape}")
    return pos


class CalculatorCommittee:
    """A committee of ASE calculators, one member each (evaluated one after another).

    Parameters
    ----------
    calculators : sequence of ase.calculators.calculator.Calculator
        At least two; e.g. the same force field with different parameters, or independently
        trained machine-learned potentials with an ASE interface.

    Notes
    -----
    Each calculator keeps its own results cache; every call hands it a fresh ``Atoms``.
    """

    def __init__(self, calculators: Sequence[Any]) -> None:
        calculators = list(calculators)
        if len(calculators) < 2:
            raise ProbeError(f"a committee needs at least 2 members, got {len(calculators)}")
        for k, calc in enumerate(calculators):
            if not (hasattr(calc, "get_potential_energy") and hasattr(calc, "get_forces")):
                raise ProbeError(f"committee member {k} ({type(calc).__name__}) is not an ASE calculator")
        self.calculators = calculators
        self.n_members = len(calculators)

    def predict(self, positions: np.ndarray, numbers: Sequence[int]) -> Prediction:
        pos = _positions(positions)
        numbers = np.asarray(numbers).reshape(-1)
        energy = np.empty((self.n_members, pos.shape[0]))
        forces = np.empty((self.n_members, *pos.shape))
        for b, p in enumerate(pos):
            for m, calc in enumerate(self.calculators):
                a = Atoms(numbers=numbers, positions=p)
                a.calc = calc
                energy[m, b] = a.get_potential_energy()
                forces[m, b] = a.get_forces()
        return Prediction(energy=torch.from_numpy(energy), forces=torch.from_numpy(forces))

    def __repr__(self) -> str:
        return f"CalculatorCommittee([{', '.join(type(c).__name__ for c in self.calculators)}])"


class TorchCommittee:
    """A committee of torch potentials, each called as ``model(positions, numbers)``.

    Parameters
    ----------
    models : sequence of callable
        ``model(positions (B, N, 3) tensor, numbers (N,) long tensor)`` returns the energies (B,)
        and forces (B, N, 3), as a tuple or a mapping with keys ``"energy"`` and ``"forces"``.
    device : str or torch.device, optional
        Where the inputs are sent; ``None``: the first model's parameters' device, else the CPU.
    dtype : torch.dtype, default torch.float64
    """

    def __init__(self, models: Sequence[Callable], *, device: str | torch.device | None = None,
                 dtype: torch.dtype = torch.float64) -> None:
        from probe.devices import resolve_device

        models = list(models)
        if len(models) < 2:
            raise ProbeError(f"a committee needs at least 2 members, got {len(models)}")
        self.models = models
        self.n_members = len(models)
        self.device = resolve_device(device, models[0])
        self.dtype = dtype

    def predict(self, positions: np.ndarray, numbers: Sequence[int]) -> Prediction:
        pos = torch.as_tensor(_positions(positions), dtype=self.dtype, device=self.device)
        z = torch.as_tensor(np.asarray(numbers).reshape(-1), dtype=torch.long, device=self.device)
        energies, forces = [], []
        with torch.no_grad():
            for k, model in enumerate(self.models):
                out = model(pos, z)
                e, f = (out["energy"], out["forces"]) if isinstance(out, Mapping) else out
                e, f = torch.as_tensor(e).reshape(-1), torch.as_tensor(f)
                if e.shape != (pos.shape[0],) or f.shape != pos.shape:
                    raise ProbeError(f"committee member {k} returned energy {tuple(e.shape)} and forces "
                                     f"{tuple(f.shape)}; expected {(pos.shape[0],)} and {tuple(pos.shape)}")
                energies.append(e.to(torch.float64))
                forces.append(f.to(torch.float64))
        return Prediction(energy=torch.stack(energies), forces=torch.stack(forces))

    def __repr__(self) -> str:
        return f"TorchCommittee([{', '.join(type(m).__name__ for m in self.models)}])"


def as_committee(committee: Any) -> Committee:
    """An :class:`EnsemblePotential` or a :class:`Committee` as it is; a list of ASE calculators or torch
    potentials wrapped in :class:`CalculatorCommittee` or :class:`TorchCommittee`."""
    if isinstance(committee, EnsemblePotential) or (hasattr(committee, "predict") and hasattr(committee,
                                                                                                "n_members")):
        return committee
    if isinstance(committee, (list, tuple)) and committee:
        if all(hasattr(c, "get_potential_energy") and hasattr(c, "get_forces") for c in committee):
            return CalculatorCommittee(committee)
        if all(callable(c) for c in committee):
            return TorchCommittee(committee)
    raise ProbeError(f"cannot make a committee of {type(committee).__name__}: pass an EnsemblePotential, an object "
                     "with predict(positions, numbers) and n_members, or a list of ASE calculators or torch "
                     "potentials")
