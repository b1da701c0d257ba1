"""The ``probe`` command.

Domain sub-commands plug in through the entry-point group ``probe.commands``: each
entry point names a :class:`Command`. ``probe demo`` runs every registered domain's
default job (and the core demonstration) into one output folder. Every run writes
``summary.json`` and ``report.html`` (:func:`probe.report.write_report`) into its folder, and
``probe demo`` an index ``report.html`` above them.

This module is imported for ``probe --help``: it, and the domain modules that define commands,
import torch, numpy and the domains' libraries inside the functions that run, not at the top.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from .errors import ProbeError

__all__ = ["Command", "main", "discover", "write_summary"]


@dataclass(frozen=True)
class Command:
    """A ``probe`` sub-command.

    Attributes
    ----------
    name : str
        Sub-command name (``probe NAME``).
    help : str
        One line for ``probe --help``.
    add_arguments : callable(argparse.ArgumentParser) -> None
        Declares the sub-command's options (``--out`` and ``--quick`` are added for it).
    run : callable(argparse.Namespace) -> dict
        Does the work, writes into ``args.out`` and returns the summary (also written
        as ``summary.json``).
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], dict]


def write_summary(out: Path, summary: dict) -> Path:
    """Write ``summary.json`` into ``out`` (created if needed)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "summary.json"
    path.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    return path


def discover() -> dict[str, Command]:
    """Commands registered under the ``probe.commands`` entry-point group (plus the core one)."""
    from .demo import CORE_COMMAND

    found = {CORE_COMMAND.name: CORE_COMMAND}
    for ep in entry_points(group="probe.commands"):
        try:
            cmd = ep.load()
        except ImportError as err:  # a domain whose extra is not installed
            warnings.warn(f"probe command {ep.name!r} is unavailable: {err}", stacklevel=2)
            continue
        if not isinstance(cmd, Command):
            warnings.warn(f"entry point {ep.name!r} is not a probe.cli.Command; skipped", stacklevel=2)
            continue
        found[cmd.name] = cmd
    return found


def _parser(commands: dict[str, Command]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="probe", description="Adversarial machine learning as a scientific "
                                "instrument: minimal perturbations, certified bounds and sensitivity maps.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="run every domain's default job on shipped data into one folder")
    demo.add_argument("--out", type=Path, default=Path("probe-out"), help="output folder (default probe-out)")
    demo.add_argument("--quick", action="store_true", help="small settings (seconds, for tests)")
    demo.add_argument("--only", nargs="*", default=None, help="run only these commands")
    for name, cmd in commands.items():
        sp = sub.add_parser(name, help=cmd.help)
        sp.add_argument("--out", type=Path, default=Path("probe-out") / name, help="output folder")
        sp.add_argument("--quick", action="store_true", help="small settings (seconds, for tests)")
        cmd.add_arguments(sp)
    return p


def _run_one(cmd: Command, args: argparse.Namespace, argv: list[str]) -> dict:
    from .report import extra_packages, write_report

    t0 = time.perf_counter()
    summary = dict(cmd.run(args))
    summary.setdefault("seconds", round(time.perf_counter() - t0, 2))
    write_summary(Path(args.out), summary)
    params = {k: v for k, v in vars(args).items() if k != "command"}
    write_report(Path(args.out), title=f"probe {cmd.name}", description=cmd.help, summary=summary, params=params,
                 command=["probe", *argv], packages=extra_packages(cmd.name))
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = discover()
    parser = _parser(commands)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "demo":
            chosen = args.only or list(commands)
            unknown = [c for c in chosen if c not in commands]
            if unknown:
                raise ProbeError(f"unknown command(s) {unknown}; available: {sorted(commands)}")
            from .progress import bar, message

            results = {}
            runs = bar(chosen, desc="[probe demo]", unit="command")
            for k, name in enumerate(runs, 1):
                flags = ["--quick"] if args.quick else []
                sub_argv = [name, "--out", str(args.out / name), *flags]
                sub_args = parser.parse_args(sub_argv)
                if hasattr(runs, "set_postfix_str"):
                    runs.set_postfix_str(name)
                message(f"[probe demo] command {k}/{len(chosen)}: {name}")
                results[name] = _run_one(commands[name], sub_args, sub_argv)
            write_summary(args.out, {"commands": results})
            report = _demo_report(args, argv, chosen)
            print(f"[probe demo] wrote {args.out}/summary.json; report: {report}", file=sys.stderr)
        else:
            _run_one(commands[args.command], args, argv)
            print(f"[probe {args.command}] wrote {args.out}/summary.json; report: {args.out}/report.html",
                  file=sys.stderr)
    except ProbeError as err:
        print(f"probe: error: {err}", file=sys.stderr)
        return 2
    return 0


def _demo_report(args: argparse.Namespace, argv: list[str], chosen: list[str]) -> Path:
    """The index page of ``probe demo``: each command's headline numbers, first figure and report link."""
    from .report import extra_packages, write_report

    packages = [p for name in chosen for p in extra_packages(name)]
    return write_report(args.out, title="probe demo", summary={},
                        description="Every command's default job on shipped data; each section links to the "
                                    "command's own report, with all its figures, tables and provenance.",
                        params={k: v for k, v in vars(args).items() if k != "command"}, command=["probe", *argv],
                        packages=packages, runs={name: name for name in chosen})


if __name__ == "__main__":  # pragma: no cover
    # run as a script this module is ``__main__``: use the importable one so that domain
    # commands (instances of probe.cli.Command) are recognised
    from probe.cli import main as _main

    sys.exit(_main())
