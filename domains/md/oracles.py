"""Reference calculators used as oracles: ASE's EMT, GFN2-xTB through tblite, PySCF.

All are ASE calculators. tblite and PySCF compute on one OpenMP/BLAS thread, for the duration
of each calculation only (:func:`oracle_threads`; the process's environment is left as the caller
set it): parallelism comes from running several oracle calls at once through an executor, and
nested OpenMP threads would oversubscribe the cores.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.units import Bohr, Hartree

from probe.errors import ProbeError

__all__ = ["ORACLES", "make_calculator", "CalculatorOracle", "PySCFCalculator", "ThreadLimited", "oracle_threads"]


@contextlib.contextmanager
def oracle_threads(threads: int = 1, controller: Any = None) -> Iterator[None]:
    """Limit OpenMP and BLAS threads (every loaded runtime, through threadpoolctl) for a block.

    Parameters
    ----------
    threads : int, default 1
    controller : threadpoolctl.ThreadpoolController, optional
        The runtimes to limit, found once (finding them costs milliseconds, more than a small
        oracle call); ``None``: look them up now. Without threadpoolctl the block runs as it is.
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    with (controller or ThreadpoolController()).limit(limits=int(threads)):
        yield


class ThreadLimited(Calculator):
    """An ASE calculator whose every calculation runs under :func:`oracle_threads`.

    Parameters
    ----------
    calculator : ase.calculators.calculator.Calculator
        Computes ``energy`` and ``forces``.
    threads : int, default 1
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, calculator: Calculator, threads: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calculator = calculator
        self.threads = int(threads)
        self._controller = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:  # noqa: ANN001
        super().calculate(atoms, properties, system_changes)
        if self._controller is None:  # after the wrapped calculator's libraries are loaded
            self._controller = _controller()
        with oracle_threads(self.threads, self._controller):
            energy = float(self.calculator.get_potential_energy(self.atoms))
            forces = np.array(self.calculator.get_forces(self.atoms))
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_controller": None}

    def __repr__(self) -> str:
        return f"ThreadLimited({self.calculator!r}, threads={self.threads})"


def _controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover
        return None
    return ThreadpoolController()


def _emt(**options: Any) -> Calculator:
    from ase.calculators.emt import EMT

    return EMT(**options)


def _tblite(method: str = "GFN2-xTB", **options: Any) -> Calculator:
    from tblite.ase import TBLite

    options.setdefault("verbosity", 0)
    return ThreadLimited(TBLite(method=method, **options))


class PySCFCalculator(Calculator):
    """Hartree-Fock or Kohn-Sham DFT energies and analytic forces from PySCF for a molecule.

    Parameters
    ----------
    method : str, default "rhf"
        ``"rhf"``/``"uhf"`` (Hartree-Fock) or an exchange-correlation functional name
        (e.g. ``"b3lyp"``, ``"pbe"``) for restricted Kohn-Sham DFT.
    basis : str, default "sto-3g"
    charge, spin : int, default 0
        Total charge and 2S.
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, method: str = "rhf", basis: str = "sto-3g", charge: int = 0, spin: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.method, self.basis, self.charge, self.spin = method.lower(), basis, int(charge), int(spin)
        self._controller = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:  # noqa: ANN001
        super().calculate(atoms, properties, system_changes)
        import pyscf  # noqa: F401  (its libraries loaded before the thread limits are looked up)

        if self._controller is None:
            self._controller = _controller()
        with oracle_threads(1, self._controller):
            self._calculate()

    def _calculate(self) -> None:
        from pyscf import dft, gto, scf

        mol = gto.M(atom=[(s, tuple(p)) for s, p in zip(self.atoms.get_chemical_symbols(),
                                                        self.atoms.get_positions())],
                    unit="Angstrom", basis=self.basis, charge=self.charge, spin=self.spin, verbose=0)
        if self.method in ("rhf", "hf"):
            mf = scf.RHF(mol)
        elif self.method == "uhf":
            mf = scf.UHF(mol)
        else:
            mf = dft.RKS(mol)
            mf.xc = self.method
        energy = mf.kernel()
        if not mf.converged:
            raise ProbeError(f"PySCF {self.method}/{self.basis} SCF did not converge for "
                             f"{self.atoms.get_chemical_formula()}")
        grad = mf.nuc_grad_method().kernel()
        self.results = {"energy": float(energy) * Hartree, "free_energy": float(energy) * Hartree,
                        "forces": -np.asarray(grad) * Hartree / Bohr}


def _pyscf(**options: Any) -> Calculator:
    return PySCFCalculator(**options)


ORACLES = {"emt": _emt, "tblite": _tblite, "xtb": _tblite, "pyscf": _pyscf}


def make_calculator(name: str, **options: Any) -> Calculator:
    """A fresh reference calculator: ``"emt"``, ``"tblite"`` (alias ``"xtb"``, GFN2-xTB) or ``"pyscf"``."""
    key = name.lower()
    if key not in ORACLES:
        raise ProbeError(f"unknown oracle {name!r}; choose one of {sorted(ORACLES)}")
    return ORACLES[key](**options)


class CalculatorOracle:
    """An oracle that labels ``ase.Atoms`` with a reference calculator's energy and forces.

    Picklable (it holds the calculator's name and options and builds the calculator where it
    runs), so it can be sent to a process pool or a Dask cluster.

    Parameters
    ----------
    name : str, default "emt"
        See :func:`make_calculator`.
    **options
        Passed to the calculator.
    """

    def __init__(self, name: str = "emt", **options: Any) -> None:
        if name.lower() not in ORACLES:
            raise ProbeError(f"unknown oracle {name!r}; choose one of {sorted(ORACLES)}")
        self.name = name.lower()
        self.options = dict(options)
        self._calc: Calculator | None = None

    def __getstate__(self) -> dict:
        return {"name": self.name, "options": self.options, "_calc": None}

    def calculator(self) -> Calculator:
        if self._calc is None:
            self._calc = make_calculator(self.name, **self.options)
        return self._calc

    def label(self, batch: Sequence[Atoms]) -> list[dict[str, np.ndarray]]:
        """Energy (eV) and forces (eV/A) of every configuration."""
        out = []
        for atoms in batch:
            a = atoms.copy()
            a.calc = self.calculator()
            out.append({"energy": np.array(a.get_potential_energy()), "forces": np.array(a.get_forces())})
        return out

    def __repr__(self) -> str:
        return f"CalculatorOracle({self.name!r}, {self.options})"
