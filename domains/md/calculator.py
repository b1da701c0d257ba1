"""An ASE calculator backed by an ensemble potential: energy, forces and their spread."""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from probe.errors import ProbeError

from .committee import Committee, as_committee

__all__ = ["EnsembleCalculator"]


class EnsembleCalculator(Calculator):
    """ASE calculator serving the committee mean and the committee spread.

    Properties (``atoms.calc.results`` / ``get_property``):

    - ``energy``, ``free_energy`` (eV) and ``forces`` (eV/A): committee means;
    - ``energy_std`` (eV): population standard deviation of the members' energies;
    - ``forces_std`` (N,) (eV/A): per-atom force deviation ``sqrt(<|F_i - <F_i>|^2>)``;
    - ``max_force_deviation`` (eV/A): DP-GEN's model deviation, the largest ``forces_std``;
    - ``member_energies`` (M,), ``member_forces`` (M, N, 3): every member's prediction.

    Parameters
    ----------
    potential : Committee
        An :class:`~domains.md.potential.EnsemblePotential` or anything
        :func:`domains.md.committee.as_committee` accepts. Shared, not copied: retraining it changes
        what this calculator returns after ``reset()``.

    Raises
    ------
    ProbeError
        For periodic cells (the potential is for molecules and clusters) and for atoms of an
        element the potential was not trained for (the atom is named).
    """

    implemented_properties = ["energy", "free_energy", "forces", "energy_std", "forces_std",
                              "max_force_deviation", "member_energies", "member_forces"]

    def __init__(self, potential: Committee, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.potential = as_committee(potential)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:  # noqa: ANN001
        super().calculate(atoms, properties, system_changes)
        if self.atoms.pbc.any():
            raise ProbeError(f"periodic boundary conditions {self.atoms.pbc.tolist()} are not supported; "
                             "the potential is for isolated molecules and clusters")
        pred = self.potential.predict(self.atoms.get_positions(), self.atoms.numbers)
        energies = pred.energy[:, 0].double().cpu().numpy()
        forces = pred.forces[:, 0].double().cpu().numpy()
        mean_f = forces.mean(0)
        dev = np.sqrt(((forces - mean_f) ** 2).sum(-1).mean(0))
        self.results = {
            "energy": float(energies.mean()),
            "free_energy": float(energies.mean()),
            "forces": mean_f,
            "energy_std": float(energies.std()),
            "forces_std": dev,
            "max_force_deviation": float(dev.max()),
            "member_energies": energies,
            "member_forces": forces,
        }
