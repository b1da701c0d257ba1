"""The on-the-fly run: explore with a committee, label with the oracle when triggered, retrain."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from ase import Atoms

from probe.active import ActiveLoop, LabelStore, Learner, LoopResult, Trigger

from .committee import as_committee
from .explorer import MDExplorer
from .learner import FixedCommittee, PotentialLearner
from .oracles import CalculatorOracle
from .potential import EnsemblePotential

__all__ = ["OnTheFlyRun", "run_onthefly"]


@dataclass(frozen=True)
class OnTheFlyRun:
    """An on-the-fly simulation.

    Attributes
    ----------
    result : probe.active.LoopResult
        History (energy and uncertainties per step), labelling events, oracle calls.
    potential : Committee
        The committee as trained at the end.
    frames : list of (walker, step, positions, velocities)
        The trajectory (every step).
    numbers : numpy.ndarray
        Atomic numbers.
    timestep : float
        Femtoseconds.
    calibration : pandas.DataFrame
        The committee's realised errors at the labels (:meth:`MDExplorer.calibration_table`).
    seconds : float
        Wall time of the loop.
    """

    result: LoopResult
    potential: Any
    frames: list = field(repr=False)
    numbers: np.ndarray = field(repr=False)
    timestep: float = 0.5
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    seconds: float = float("nan")


def run_onthefly(atoms: Atoms, trigger: Trigger, *, oracle: str | Any = "emt", steps: int = 200, seed: int = 0,
                 store: str | Path | None = None, integrator: str = "verlet", timestep: float = 0.5,
                 temperature: float = 300.0, friction: float = 0.01, walkers: int = 1, n_members: int = 4,
                 hidden: int = 32, cutoff: float = 6.0, first_steps: int = 300, fit_steps: int = 100,
                 n_initial: int = 4, update: str = "full", batch_size: int = 8, bootstrap: bool = False,
                 prior_scale: float = 0.0, feature_fraction: float = 1.0, committee: Any = None,
                 learner: Learner | None = None, max_labels: int | None = None, executor: Any = None,
                 retries: int = 2, device: str | torch.device | None = None, dtype: torch.dtype = torch.float64,
                 progress: bool | None = None) -> OnTheFlyRun:
    """Run on-the-fly MD: explore with the committee, label with the oracle when triggered, retrain.

    Resumable: with the same arguments and ``store``, a run that was killed continues from the
    labels in the store (see :class:`probe.active.ActiveLoop`).

    Parameters
    ----------
    atoms : ase.Atoms
        Starting structure.
    trigger : Trigger
        E.g. :func:`domains.md.triggers.energy_rate_trigger`.
    oracle : str or Oracle, default "emt"
        ``"emt"``, ``"tblite"``, ``"pyscf"`` or any object with ``label(batch)``.
    steps : int, default 200
        MD steps per walker.
    seed : int, default 0
    store : path, optional
        The label store (sqlite). ``None``: a fresh temporary file.
    integrator, timestep, temperature, friction, walkers, n_initial
        See :class:`MDExplorer` (all walkers advance in one committee call per step).
    n_members, hidden, cutoff, bootstrap, prior_scale, feature_fraction, dtype
        See :class:`EnsemblePotential` (ignored with ``committee``).
    first_steps, fit_steps, update, batch_size
        See :class:`PotentialLearner`.
    committee : optional
        Bring your own committee instead of training one: anything
        :func:`domains.md.committee.as_committee` accepts (a list of ASE calculators or torch
        potentials, an object with ``predict`` and ``n_members``). Kept fixed unless ``learner``
        trains it.
    learner : probe.active.Learner, optional
        Who retrains ``committee`` on the labels (default: nobody).
    max_labels, executor, retries
        See :class:`probe.active.ActiveLoop`.
    device : str or torch.device, optional
        Where the committee runs (``None``: the CPU).
    """
    import time

    oracle_obj = CalculatorOracle(oracle) if isinstance(oracle, str) else oracle
    if committee is None:
        potential = EnsemblePotential(sorted(set(atoms.numbers.tolist())), n_members=n_members, hidden=hidden,
                                      cutoff=cutoff, seed=seed, device=device, dtype=dtype, bootstrap=bootstrap,
                                      prior_scale=prior_scale, feature_fraction=feature_fraction)
        learner = learner or PotentialLearner(potential, first_steps=first_steps, steps=fit_steps, update=update,
                                              batch_size=batch_size)
        model = {"n_members": n_members, "hidden": hidden, "cutoff": cutoff, "first_steps": first_steps,
                 "fit_steps": fit_steps, "update": update, "batch_size": batch_size, "bootstrap": bootstrap,
                 "prior_scale": prior_scale, "feature_fraction": feature_fraction, "dtype": str(dtype)}
    else:
        potential = as_committee(committee)
        learner = learner or FixedCommittee()
        model = {"committee": repr(potential), "learner": repr(learner)}
    explorer = MDExplorer(atoms, potential, integrator=integrator, timestep=timestep, temperature=temperature,
                          friction=friction, walkers=walkers, n_initial=n_initial)
    config = {"formula": atoms.get_chemical_formula(), "positions": np.round(atoms.positions, 8).tolist(),
              "trigger": repr(trigger), "oracle": repr(oracle_obj), "seed": seed, "integrator": integrator,
              "timestep": timestep, "temperature": temperature, "friction": friction, "walkers": walkers,
              "n_initial": n_initial, "max_labels": max_labels, **model}
    tmp = None
    if store is None:
        tmp = tempfile.NamedTemporaryFile(suffix=".sqlite", delete=False)
        tmp.close()
        store = tmp.name
    t0 = time.perf_counter()
    try:
        with LabelStore(store, config=config) as label_store:
            loop = ActiveLoop(explorer, learner, trigger, oracle_obj, label_store, steps=steps, seed=seed,
                              executor=executor, retries=retries, max_labels=max_labels)
            result = loop.run(progress=progress)
    finally:
        if tmp is not None:
            os.unlink(tmp.name)
    return OnTheFlyRun(result=result, potential=potential, frames=explorer.frames, numbers=atoms.numbers.copy(),
                       timestep=timestep, calibration=explorer.calibration_table(),
                       seconds=time.perf_counter() - t0)
