"""Lazy package namespaces: public names that import their module on first use.

``import probe`` (and ``import domains.dna``) must be cheap, because the ``probe`` command imports
them before it knows whether the user asked only for ``--help``; torch, scipy and the domains'
libraries cost seconds to import. :func:`attach` gives a package the module-level ``__getattr__``
and ``__dir__`` of PEP 562, over the same names the package used to import eagerly, in the manner
of the Scientific Python ecosystem's SPEC 1 (``lazy_loader.attach``). Type checkers read the
eager imports kept under ``if TYPE_CHECKING:`` in the package itself.

One behaviour of eager packages is kept on purpose: where a public function has the name of the
module it lives in (``probe.sensitivity``, ``domains.epi.cori``), importing that module binds the
function, not the module, to the package attribute, exactly as ``from .cori import cori`` did.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Iterable, Mapping

__all__ = ["attach"]


def attach(package: str, *, submodules: Iterable[str] = (), submod_attrs: Mapping[str, Iterable[str]] | None = None,
           aliases: Mapping[str, tuple[str, str]] | None = None
           ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for a package whose public names load on first use.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    submodules : iterable of str, default ()
        Public submodules (``"certify"`` for ``probe.certify``).
    submod_attrs : mapping of str to iterable of str, optional
        Submodule -> the public names it defines (``{"spaces": ["Box", "OneHot"]}``).
    aliases : mapping of str to (str, str), optional
        Public name -> ``(submodule, name there)``, for a name re-exported under another one.

    Returns
    -------
    getattr_ : callable
        The package's ``__getattr__``: imports the submodule, caches the value in the package and
        returns it; any other submodule of the package is imported on attribute access too, as
        eager imports had made them attributes; else :class:`AttributeError`.
    dir_ : callable
        The package's ``__dir__``: its globals and every public name.

    Notes
    -----
    The package keeps its literal ``__all__`` (linters, editors and documentation tools read it), and
    its eager imports under ``if TYPE_CHECKING:`` for type checkers.

    Examples
    --------
    At the end of a package's ``__init__.py``::

        __getattr__, __dir__ = probe.lazy.attach(
            __name__, submodules=["datasets"], submod_attrs={"cori": ["cori"], "io": ["read_incidence_csv"]})
    """
    submodules = tuple(submodules)
    sources = {name: (src, name) for src, names in (submod_attrs or {}).items() for name in names}
    sources.update({name: tuple(src) for name, src in (aliases or {}).items()})
    module = sys.modules[package]

    def getattr_(name: str) -> object:
        if name in sources:
            src, attr = sources[name]
            value = getattr(importlib.import_module(f"{package}.{src}"), attr)
        elif name in submodules or (not name.startswith("_") and _is_submodule(package, name)):
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module.__dict__[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(set(module.__dict__) | set(sources) | set(submodules))

    # a submodule named like a public name it defines: bind the name, as an eager import did
    shadowed = {name: src for name, src in sources.items() if name not in submodules and _is_submodule(package, name)}
    if shadowed:
        module.__class__ = _shadowing_package(shadowed)
    return getattr_, dir_


def _is_submodule(package: str, name: str) -> bool:
    return f"{package}.{name}" in sys.modules or importlib.util.find_spec(f"{package}.{name}") is not None


def _shadowing_package(shadowed: dict[str, tuple[str, str]]) -> type:
    """A module type whose submodule bindings give way to the public names they shadow."""

    class Package(types.ModuleType):
        def __setattr__(self, name: str, value: object) -> None:
            if name in shadowed and isinstance(value, types.ModuleType):
                src, attr = shadowed[name]
                value = getattr(importlib.import_module(f"{self.__name__}.{src}"), attr)
            super().__setattr__(name, value)

    return Package
