"""``probe --help`` and ``probe CMD --help`` import no heavy library; the lazy namespaces give the eager names."""

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ["torch", "numpy", "scipy", "pandas", "matplotlib", "sklearn", "rdkit", "Bio", "ase", "jinja2"]
PACKAGES = ["probe", "domains.dna", "domains.chem", "domains.epi"]


def _fresh(code: str) -> object:
    """Run ``code`` in a fresh interpreter at the repository root; it prints one JSON value."""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


HELP = [["--help"], ["dna", "--help"], ["chem", "--help"], ["epi", "--help"], ["md", "--help"], ["core", "--help"]]


def test_help_imports_nothing_heavy():
    # one fresh interpreter for all: after each command's --help, what it has loaded so far
    code = f"""
import contextlib, io, json, sys
import probe.cli
seen = []
for argv in {HELP!r}:
    with contextlib.redirect_stdout(io.StringIO()) as text:
        try:
            probe.cli.main(argv)
        except SystemExit:
            pass
    seen.append({{"argv": argv, "help": text.getvalue(), "loaded": [m for m in {HEAVY!r} if m in sys.modules]}})
print(json.dumps(seen))
"""
    for got in _fresh(code):
        assert got["loaded"] == [], got["argv"]
        assert "usage: probe" in got["help"], got["argv"]
        if got["argv"][0] != "--help":
            assert "--out" in got["help"] and "--quick" in got["help"], got["argv"]


def test_importing_the_packages_is_cheap():
    got = _fresh(f"import json, sys, probe, domains.dna, domains.chem, domains.epi, domains.md.cli\n"
                 f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    assert got == []


def _typing_imports(package: str) -> dict[str, tuple[str, str]]:
    """Public name -> (module, name there) from the package's ``if TYPE_CHECKING:`` block."""
    path = Path(importlib.util.find_spec(package).origin)
    names = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom), ast.dump(imp)
                for alias in imp.names:
                    if imp.module is None:  # from . import submodule
                        names[alias.asname or alias.name] = (f"{package}.{alias.name}", None)
                    else:
                        names[alias.asname or alias.name] = (f"{package}.{imp.module}", alias.name)
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_lazy_names_are_the_eager_ones(package):
    pkg = importlib.import_module(package)
    typed = _typing_imports(package)
    assert set(typed) == set(pkg.__all__)
    for name, (module, attr) in typed.items():
        source = importlib.import_module(module)
        expected = source if attr is None else getattr(source, attr)
        assert getattr(pkg, name) is expected, name
    assert set(pkg.__all__) <= set(dir(pkg))
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        pkg.not_a_name  # noqa: B018


SHADOWED = [("probe", "sensitivity"), ("probe", "modality_report"), ("domains.epi", "cori"),
            ("domains.chem", "featurize"), ("domains.dna", "tomtom")]


def test_star_import_and_a_function_named_like_its_module():
    # importing the submodule first (as other modules do) must not leave the module in the function's place
    code = f"""
import importlib, json, types
from probe import *
from probe import Box, certify
import probe
got = {{"star": [callable(minimal_perturbation), certify.__name__, Box is probe.spaces.Box]}}
for package, name in {SHADOWED!r}:
    p = importlib.import_module(package)
    importlib.import_module(package + "." + name)
    v = getattr(p, name)
    got[package + "." + name] = [callable(v), isinstance(v, types.ModuleType), v.__module__]
print(json.dumps(got))
"""
    got = _fresh(code)
    assert got.pop("star") == [True, "probe.certify", True]
    assert got == {f"{p}.{n}": [True, False, f"{p}.{n}"] for p, n in SHADOWED}
