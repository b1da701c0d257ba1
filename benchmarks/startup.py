"""Start-up time of the ``probe`` command: ``probe --help`` and ``probe CMD --help``, best of N.

Each command runs in a fresh interpreter (``python -m probe ...``) with the checkout given by
``--root`` first on the path, so the same script times an older checkout for the "before" column
(``git worktree add /tmp/old <commit>`` and ``--root /tmp/old``). ``import torch`` and a bare
interpreter are timed alongside as the floor and the cost that lazy imports avoid.

    python benchmarks/startup.py [--root DIR] [--repeat 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = [["--help"], ["dna", "--help"], ["chem", "--help"], ["epi", "--help"], ["md", "--help"],
            ["core", "--help"]]


def best_of(argv: list[str], root: Path, repeat: int) -> float:
    """Smallest wall time of ``repeat`` runs of ``argv`` in ``root``, in seconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="checkout to time")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    rows = [(f"probe {' '.join(c)}", best_of([sys.executable, "-m", "probe", *c], args.root, args.repeat))
            for c in COMMANDS]
    rows += [("python -c 'import torch'", best_of([sys.executable, "-c", "import torch"], args.root, args.repeat)),
             ("python -c pass", best_of([sys.executable, "-c", "pass"], args.root, args.repeat))]
    print(f"| command (best of {args.repeat}) | seconds |\n|---|---|")
    for name, t in rows:
        print(f"| `{name}` | {t:.2f} |")


if __name__ == "__main__":
    main()
