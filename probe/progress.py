"""Progress on a terminal, silence elsewhere.

Two small tools for long runs:

- :func:`steps`, a context that announces the steps of a command, one line each
  (``[probe dna] step 2/5: saturation mutagenesis``) and, at the end, how long they took;
- :func:`bar`, a tqdm progress bar over an iterable (items done, the rate, the time left).

Both show themselves only when standard error is a terminal, so logs, pipes and test captures
receive nothing. The environment variable ``PROBE_PROGRESS`` overrides the check for a whole run
(``1``: always show, ``0``: never), and every function takes ``enable=`` for one call. Messages go
through ``tqdm.write`` so that they print above a bar that is running, not through it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

__all__ = ["enabled", "steps", "Steps", "bar", "message"]

_ON = {"1", "true", "yes", "on"}
_OFF = {"0", "false", "no", "off"}


def enabled(enable: bool | None = None) -> bool:
    """Whether progress is shown.

    Parameters
    ----------
    enable : bool, optional
        ``True``/``False`` decide; ``None`` (default) follows ``PROBE_PROGRESS`` when it is set
        (``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off``), else whether
        ``sys.stderr`` is a terminal.
    """
    if enable is not None:
        return bool(enable)
    env = os.environ.get("PROBE_PROGRESS", "").strip().lower()
    if env in _ON:
        return True
    if env in _OFF:
        return False
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def message(text: str, *, enable: bool | None = None) -> None:
    """Write one line to standard error when progress is shown (above any running bar)."""
    if not enabled(enable):
        return
    from tqdm.auto import tqdm

    tqdm.write(text, file=sys.stderr)


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


class Steps:
    """The step announcer :func:`steps` yields; call it with each step's description."""

    def __init__(self, name: str, total: int, enable: bool | None = None) -> None:
        self.name, self.total, self.done = name, int(total), 0
        self._on = enabled(enable)
        self._t0 = self._t_step = time.perf_counter()

    def __call__(self, description: str) -> None:
        """Announce the next step: ``[probe NAME] step k/total: description``, with the previous one's time."""
        now = time.perf_counter()
        took = f" (step {self.done} took {_seconds(now - self._t_step)})" if self.done else ""
        self.done += 1
        self._t_step = now
        total = max(self.total, self.done)
        message(f"[probe {self.name}] step {self.done}/{total}: {description}{took}", enable=self._on)

    def finish(self) -> None:
        if self.done:
            message(f"[probe {self.name}] {self.done} step{'s' if self.done > 1 else ''} in "
                    f"{_seconds(time.perf_counter() - self._t0)}", enable=self._on)


@contextmanager
def steps(name: str, total: int, *, enable: bool | None = None) -> Iterator[Steps]:
    """Announce the steps of a long job, one line each, on a terminal.

    Parameters
    ----------
    name : str
        What runs (``"dna"``), shown as ``[probe dna]``.
    total : int
        Steps expected (a step past it raises the count shown; fewer is fine).
    enable : bool, optional
        See :func:`enabled`.

    Yields
    ------
    Steps
        Call it with a description at the start of each step.

    Examples
    --------
    >>> with steps("dna", 2) as step:
    ...     step("training the CNN")
    ...     step("saturation mutagenesis")
    """
    s = Steps(name, total, enable)
    yield s
    s.finish()


def bar(iterable: Iterable, *, desc: str, total: int | None = None, unit: str = "it",
        enable: bool | None = None, leave: bool = False) -> Iterable:
    """A tqdm progress bar over ``iterable`` on a terminal; the iterable itself elsewhere.

    Parameters
    ----------
    iterable : iterable
    desc : str
        Shown before the bar, e.g. ``"[probe chem] counterfactuals"``.
    total : int, optional
        Length, when ``iterable`` has none.
    unit : str, default "it"
        What one item is (``"series"``, ``"molecule"``): the rate reads ``unit/s``.
    enable : bool, optional
        See :func:`enabled`.
    leave : bool, default False
        Keep the finished bar on the screen.

    Returns
    -------
    iterable
        A ``tqdm`` object (``set_postfix_str`` names the current item) or, when progress is off,
        ``iterable`` unchanged.
    """
    if not enabled(enable):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, file=sys.stderr, dynamic_ncols=True)
