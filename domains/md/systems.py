"""The catalogue of starting structures: small molecules from ASE's g2 set and EMT clusters."""

from __future__ import annotations

from ase import Atoms
from ase.build import molecule
from ase.cluster import Icosahedron

from probe.errors import ProbeError

__all__ = ["SYSTEMS", "load_system"]

SYSTEMS = {
    "ethanol": lambda: molecule("CH3CH2OH"),
    "glyoxal": lambda: molecule("OCHCHO"),  # a malonaldehyde-like dicarbonyl from ASE's g2 set
    "acetaldehyde": lambda: molecule("CH3CHO"),
    "cu13": lambda: Icosahedron("Cu", noshells=2),
    "pt13": lambda: Icosahedron("Pt", noshells=2),
}


def load_system(name: str) -> Atoms:
    """A starting structure: g2 molecules (``ethanol``, ``glyoxal``, ``acetaldehyde``) or EMT clusters.

    Parameters
    ----------
    name : str
        A key of :data:`SYSTEMS`.

    Returns
    -------
    ase.Atoms
        Centred in 6 A of vacuum, not periodic.
    """
    if name not in SYSTEMS:
        raise ProbeError(f"unknown system {name!r}; choose one of {sorted(SYSTEMS)}")
    atoms = SYSTEMS[name]()
    atoms.center(vacuum=6.0)
    atoms.pbc = False
    return atoms
