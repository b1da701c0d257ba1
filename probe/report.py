"""One self-contained HTML page per run: summary, figures, tables and provenance.

A run of a ``probe`` command leaves a folder of figures (``*.png``, ``*.svg``), tables (``*.csv``)
and ``summary.json``. :func:`write_report` ties them together in ``report.html``: the figures
embedded as base64 ``data:`` URIs, the first rows of every table with a link to the whole file,
the summary, and the provenance a reader needs to trust or repeat the run (command line,
parameters, probe, Python, platform and the versions of the packages used). The page needs no
network, no JavaScript and no other file to be read; it is rendered by a Jinja2 template shipped
with the package (``probe/templates/report.html.j2``), with autoescaping on, so text from the data
(sequence names, SMILES, file names) cannot inject markup.
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime as dt
import glob
import json
import math
import platform
import re
import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

from .errors import ProbeError

__all__ = ["write_report", "package_versions", "extra_packages", "CORE_PACKAGES"]

#: Packages every report lists (the core dependencies).
CORE_PACKAGES = ("probe", "torch", "numpy", "scipy", "matplotlib", "pandas", "jinja2")

_FIGURES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
_MAX_LIST = 40  # items of a summary list shown before "... and N more"
_MAX_DEPTH = 4  # nesting of summary dicts rendered as tables; deeper levels as JSON text


def write_report(out: str | Path, *, title: str, summary: Mapping | None = None,
                 params: Mapping | argparse.Namespace | None = None, command: Sequence[str] | None = None,
                 packages: Iterable[str] = (), description: str | None = None,
                 runs: Mapping[str, str | Path] | None = None, max_rows: int = 10) -> Path:
    """Write ``out/report.html``: one self-contained page for the run whose files are in ``out``.

    Parameters
    ----------
    out : str or pathlib.Path
        The run's output folder. Every figure in it (``*.png``, ``*.svg``, ``*.jpg``) is embedded,
        every table (``*.csv``) is shown by its first rows with a relative link to the file, and
        the other files are listed with links.
    title : str
        The page's title (``"probe dna"``).
    summary : mapping, optional
        The run's summary (what ``summary.json`` holds); default: read ``out/summary.json`` if
        present. Figures and tables are shown in the order the summary first names them, the rest
        by name.
    params : mapping or argparse.Namespace, optional
        The parameters of the run (an ``argparse.Namespace`` is read with ``vars``).
    command : sequence of str, optional
        The command line (default ``sys.argv``, with the program shown as ``probe``).
    packages : iterable of str, default ()
        Distributions whose versions to list besides :data:`CORE_PACKAGES` (``"rdkit"``); read
        from the installed metadata with :func:`importlib.metadata.version`, never imported.
    description : str, optional
        A paragraph under the title.
    runs : mapping of str to path, optional
        Sub-runs shown as sections of an index page (``probe demo``): name -> folder relative to
        ``out`` (or absolute inside it). Each gets its headline numbers (the scalars of its
        ``summary.json``), a link to its own ``report.html``, its first figure embedded and a
        table of contents of its figures and tables.
    max_rows : int, default 10
        Rows of each table shown on the page.

    Returns
    -------
    pathlib.Path
        ``out/report.html``.

    Raises
    ------
    ProbeError
        If ``out`` is not a folder, or ``summary.json`` there is not valid JSON.
    """
    out = Path(out)
    if not out.is_dir():
        raise ProbeError(f"report folder {str(out)!r} does not exist")
    if summary is None:
        summary = _read_summary(out)
    if isinstance(params, argparse.Namespace):
        params = vars(params)
    mention = json.dumps(summary or {}, default=str)
    figures, tables, others = _files(out, mention, skip={"report.html", "summary.json"})
    context = {
        "title": title,
        "description": description,
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "summary": _node(summary) if summary else None,
        "summary_file": "summary.json" if (out / "summary.json").exists() else None,
        "figures": [_figure(out, p) for p in figures],
        "tables": [_table(out, p, max_rows) for p in tables],
        "others": [{"name": p.name, "href": p.name, "size": _size(p)} for p in others],
        "runs": [_run_entry(out, name, Path(folder)) for name, folder in (runs or {}).items()],
        "provenance": _provenance(params, command, packages),
    }
    path = out / "report.html"
    path.write_text(_template().render(**context), encoding="utf-8")
    return path


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions of distributions, read from their metadata (nothing is imported).

    Parameters
    ----------
    names : iterable of str
        Distribution names (``"torch"``, ``"scikit-learn"``); duplicates are listed once.

    Returns
    -------
    dict of str to str
        Name -> version, or ``"not installed"``.
    """
    found = {}
    for name in dict.fromkeys(names):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def extra_packages(extra: str, distribution: str = "probe") -> list[str]:
    """The distributions an optional-dependency group (``pip install probe[dna]``) declares.

    Parameters
    ----------
    extra : str
        The extra's name (``"dna"``); an extra that pulls other extras of the same distribution
        (``probe[chem]``) contributes theirs.
    distribution : str, default "probe"

    Returns
    -------
    list of str
        Distribution names, in declaration order; empty when the distribution is not installed
        (run from a source tree) or has no such extra.
    """
    try:
        reqs = requires(distribution) or []
    except PackageNotFoundError:
        return []
    names: list[str] = []
    for req in reqs:
        spec, _, marker = req.partition(";")
        if not re.search(rf"""extra\s*==\s*["']{re.escape(extra)}["']""", marker):
            continue
        name = re.match(r"\s*([A-Za-z0-9._-]+)(\[([^\]]*)\])?", spec)
        if name is None:
            continue
        if name.group(1).lower() == distribution.lower():
            for sub in (name.group(3) or "").split(","):
                if sub.strip() and sub.strip() != extra:
                    names += extra_packages(sub.strip(), distribution)
        else:
            names.append(name.group(1))
    return list(dict.fromkeys(names))


# ---------------------------------------------------------------------------------------------------------------------
# the page's parts


@dataclass(frozen=True)
class _Node:
    """A summary value ready for the template: ``kind`` is text, list, mapping, records or json."""

    kind: str
    text: str = ""
    items: tuple = ()
    columns: tuple = ()
    more: int = 0


def _node(value: object, depth: int = 0) -> _Node:
    """A summary value as nested tables: mappings as key-value tables, mappings of alike records and lists of
    records as one table each, lists of scalars as text (or a bulleted list when the items are phrases)."""
    if isinstance(value, Mapping):
        items = list(value.items())
        if len(items) > 1 and all(isinstance(v, Mapping) and v and all(map(_is_scalar, v.values())) for _, v in items):
            columns = tuple(dict.fromkeys(k for _, v in items for k in v))
            if len(columns) <= 2 * max(len(v) for _, v in items):  # alike records: one row each
                rows = tuple((str(k), *(_cell(v.get(c)) for c in columns)) for k, v in items[:_MAX_LIST])
                return _Node("records", items=rows, columns=("", *map(str, columns)),
                             more=max(0, len(items) - _MAX_LIST))
        if depth >= _MAX_DEPTH:
            if all(map(_is_scalar, value.values())):
                return _Node("text", ", ".join(f"{k}: {_cell(v)}" for k, v in items))
            return _Node("json", json.dumps(value, indent=1, default=str))
        shown = tuple((str(k), _node(v, depth + 1)) for k, v in items[:_MAX_LIST])
        return _Node("mapping", items=shown, more=max(0, len(items) - _MAX_LIST))
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, Mapping) for v in value):
            columns = tuple(dict.fromkeys(k for v in value for k in v))
            rows = tuple(tuple(_cell(v.get(c)) for c in columns) for v in value[:_MAX_LIST])
            return _Node("records", items=rows, columns=tuple(map(str, columns)), more=max(0, len(value) - _MAX_LIST))
        if all(map(_is_scalar, value)):
            cells = tuple(_cell(v) for v in value[:_MAX_LIST])
            more = max(0, len(value) - _MAX_LIST)
            if any(len(c) > 30 for c in cells):
                return _Node("list", items=cells, more=more)
            return _Node("text", ", ".join(cells) if cells else "(none)", more=more)
        return _Node("json", json.dumps(value, indent=1, default=str))
    return _Node("text", _cell(value))


def _is_scalar(value: object) -> bool:
    return not isinstance(value, (Mapping, list, tuple))


def _cell(value: object) -> str:
    """A number to 4 significant digits, None as an em dash, anything else as text."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)


def _read_summary(out: Path) -> dict | None:
    path = out / "summary.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ProbeError(f"{path}: not valid JSON ({err})") from None


def _files(out: Path, mention: str, skip: set[str]) -> tuple[list[Path], list[Path], list[Path]]:
    """Figures, tables and other files of ``out``, ordered by first mention in the summary, then by name."""
    def key(p: Path) -> tuple[int, str]:
        at = mention.find(p.name)
        return (at if at >= 0 else len(mention), p.name)

    files = sorted((p for p in out.iterdir() if p.is_file() and p.name not in skip and not p.name.startswith(".")),
                   key=key)
    # one figure saved in several formats is shown once (PNG first: a raster embeds in a fixed size) and a table
    # saved as CSV and Parquet is shown from its CSV; the other formats are linked beside them
    shown_as = {}
    for p in sorted((p for p in files if p.suffix.lower() in _FIGURES), key=lambda p: p.suffix.lower() != ".png"):
        shown_as.setdefault(p.stem, p)
    figures = [p for p in files if shown_as.get(p.stem) == p]
    tables = [p for p in files if p.suffix.lower() == ".csv"]
    linked = {p for p in files if p.suffix.lower() in _FIGURES and p not in figures}
    linked |= {p.with_suffix(".parquet") for p in tables}
    others = [p for p in files if p not in figures and p not in tables and p not in linked]
    return figures, tables, others


def _anchor(kind: str, name: str) -> str:
    return f"{kind}-" + re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")


def _figure(out: Path, path: Path) -> dict:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return {"name": path.name, "href": path.relative_to(out).as_posix(), "id": _anchor("figure", path.name),
            "src": f"data:{_FIGURES[path.suffix.lower()]};base64,{data}", "siblings": _siblings(path)}


def _siblings(path: Path) -> list[str]:
    """The same figure or table in the other formats it was saved in."""
    formats = (*_FIGURES, ".parquet") if path.suffix.lower() in _FIGURES else (".parquet",)
    return [p.name for p in sorted(path.parent.glob(glob.escape(path.stem) + ".*"))
            if p != path and p.suffix.lower() in formats and p.stem == path.stem]


def _table(out: Path, path: Path, max_rows: int) -> dict:
    rows: list[list[str]] = []
    n = 0
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        for row in reader:
            if n < max_rows:
                rows.append([_number(v) for v in row])
            n += 1
    siblings = _siblings(path)
    return {"name": path.name, "href": path.relative_to(out).as_posix(), "id": _anchor("table", path.name),
            "header": header, "rows": rows, "n_rows": n, "siblings": siblings}


def _number(text: str) -> str:
    """A CSV cell: floats to 4 significant digits (integers and text unchanged)."""
    if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][-+]?\d+)", text.strip()):
        return f"{float(text):.4g}"
    return text


def _size(path: Path) -> str:
    n = path.stat().st_size
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _run_entry(out: Path, name: str, folder: Path) -> dict:
    """One sub-run of an index page: headline numbers, link to its report, first figure, contents."""
    root = folder if folder.is_absolute() else out / folder
    summary = _read_summary(root) or {}
    rel = root.relative_to(out).as_posix() if root.is_relative_to(out) else root.as_posix()
    mention = json.dumps(summary, default=str)
    figures, tables, _ = _files(root, mention, skip={"report.html", "summary.json"}) if root.is_dir() else ([], [], [])
    headline = {k: v for k, v in summary.items() if not isinstance(v, (Mapping, list, tuple))}
    report = root / "report.html"
    return {
        "name": name,
        "id": _anchor("run", name),
        "folder": rel,
        "report": f"{rel}/report.html" if report.exists() else None,
        "headline": _node(headline) if headline else None,
        "first_figure": _figure(out, figures[0]) if figures else None,
        "figures": [{"name": p.name, "href": f"{rel}/{p.name}",
                     "anchor": f"{rel}/report.html#{_anchor('figure', p.name)}"} for p in figures],
        "tables": [{"name": p.name, "href": f"{rel}/{p.name}",
                    "anchor": f"{rel}/report.html#{_anchor('table', p.name)}"} for p in tables],
    }


def _provenance(params: Mapping | None, command: Sequence[str] | None, packages: Iterable[str]) -> dict:
    from . import __version__

    argv = list(sys.argv if command is None else command)
    if argv and (argv[0].endswith(("probe", "__main__.py", "cli.py")) or argv[0] == "-m"):
        argv[0] = "probe"
    return {
        "command": shlex.join(argv),
        "params": [(str(k), _cell(v if not isinstance(v, Path) else str(v))) for k, v in (params or {}).items()
                   if not callable(v)],
        "probe": __version__,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "packages": package_versions([*CORE_PACKAGES, *packages]),
    }


def _template() -> object:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("probe", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html.j2")
