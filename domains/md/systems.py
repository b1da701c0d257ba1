"""The catalogue of starting structures: small molecules from ASE's g2 set and EMT clusters."""

from __future__ import annotations

from typing import TYPE_CHECKING

from probe.errors import ProbeError

if TYPE_CHECKING:
    from ase import Atoms

__all__ = ["SYSTEMS", "load_system"]


def _molecule(name: str) -> Atoms:
    from ase.build import molecule

    return molecule(name)


def _icosahedron(symbol: str) -> Atoms:
    from ase.cluster import Icosahedron

    return Icosahedron(symbol, noshells=2)


# ase is imported when a structure is built, not when ``probe md --help`` lists the choices
SYSTEMS = {
    "ethanol": lambda: _molecule("CH3CH2OH"),
    "glyoxal": lambda: _molecule("OCHCHO"),  # a malonaldehyde-like dicarbonyl from ASE's g2 set
    "acetaldehyde": lambda: _molecule("CH3CHO"),
    "cu13": lambda: _icosahedron("Cu"),
    "pt13": lambda: _icosahedron("Pt"),
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
