"""On-the-fly molecular dynamics with an ensemble potential that asks an oracle when unsure.

ASE integrates the equations of motion (Velocity Verlet for NVE, Langevin for NVT) with an
:class:`~domains.md.calculator.EnsembleCalculator`; after every step a trigger reads the
committee's uncertainty; a triggered configuration is labelled by the oracle, committed to
the label store, the committee is retrained on all labels and the dynamics go on with the
new model (the loop of :class:`probe.active.ActiveLoop`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from ase import Atoms, units
from ase.build import molecule
from ase.cluster import Icosahedron
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet

from probe.active import ActiveLoop, Candidate, Label, LabelStore, LoopResult, Trigger
from probe.active.uncertainty import VarianceScaling, rate_variance
from probe.errors import ProbeError

from .calculator import EnsembleCalculator
from .oracles import CalculatorOracle
from .potential import EnsemblePotential

__all__ = ["SYSTEMS", "load_system", "MDExplorer", "PotentialLearner", "OnTheFlyRun", "run_onthefly",
           "reference_trajectory", "force_errors", "energy_drift", "interval_drift", "compare_triggers",
           "TriggerComparison"]

SYSTEMS = {
    "ethanol": lambda: molecule("CH3CH2OH"),
    "glyoxal": lambda: molecule("OCHCHO"),  # a malonaldehyde-like dicarbonyl from ASE's g2 set
    "acetaldehyde": lambda: molecule("CH3CHO"),
    "cu13": lambda: Icosahedron("Cu", noshells=2),
    "pt13": lambda: Icosahedron("Pt", noshells=2),
}


def load_system(name: str) -> Atoms:
    """A starting structure: g2 molecules (``ethanol``, ``glyoxal``, ``acetaldehyde``) or EMT clusters."""
    if name not in SYSTEMS:
        raise ProbeError(f"unknown system {name!r}; choose one of {sorted(SYSTEMS)}")
    atoms = SYSTEMS[name]()
    atoms.center(vacuum=6.0)
    atoms.pbc = False
    return atoms


def _snapshot(atoms: Atoms) -> Atoms:
    snap = Atoms(numbers=atoms.numbers.copy(), positions=atoms.get_positions().copy())
    snap.set_velocities(atoms.get_velocities().copy())
    return snap


class MDExplorer:
    """Molecular-dynamics walkers driven by the ensemble potential (the loop's explorer).

    Parameters
    ----------
    atoms : ase.Atoms
        Starting structure (copied).
    potential : EnsemblePotential
        Shared with the learner.
    integrator : {"verlet", "langevin"}, default "verlet"
    timestep : float, default 0.5
        Femtoseconds.
    temperature : float, default 300.0
        Kelvin, for the initial Maxwell-Boltzmann velocities and the Langevin thermostat.
    friction : float, default 0.01
        Langevin friction in 1/fs.
    walkers : int, default 1
        Independent trajectories (their labels are dispatched together).
    n_initial : int, default 4
        Configurations labelled before exploring: the start and ``n_initial - 1`` copies with
        Gaussian displacements of ``rattle`` Angstrom.
    rattle : float, default 0.05

    Notes
    -----
    The committee spread is recalibrated on the run's own labels
    (:class:`probe.active.uncertainty.VarianceScaling`): at every labelled step the oracle's
    forces minus the committee-mean forces *before* retraining are the realised errors
    ``dF_i``. Two scales are fitted over all labelled steps so far (``1`` before the first):
    on the force components, ``s_F^2 = sum |dF_i|^2 / sum_i tr Cov(F_i)``, and on the
    quantity the energy-rate trigger predicts, the rate error
    ``s_rate^2 = sum_k (sum_i dF_i . v_i)^2 / sum_k sum_i v_i^T Cov(F_i) v_i``, both shrunk
    towards 1 by ``CALIBRATION_PRIOR_WEIGHT`` = 2 pseudo-labels (one chance small error must not
    silence the trigger). Each observation carries ``calibration_forces`` and ``calibration_rate`` (the two ``s^2``)
    and ``sigma_dE_cal_forces`` / ``sigma_dE_cal_rate`` (``s * sigma_dE``). The
    scale is a deterministic function of the stored labels, so a resumed run replays it.
    """

    #: pseudo-labels of the prior s^2 = 1 in both calibrations (see VarianceScaling)
    CALIBRATION_PRIOR_WEIGHT = 2.0

    def __init__(self, atoms: Atoms, potential: EnsemblePotential, *, integrator: str = "verlet",
                 timestep: float = 0.5, temperature: float = 300.0, friction: float = 0.01, walkers: int = 1,
                 n_initial: int = 4, rattle: float = 0.05) -> None:
        if integrator not in ("verlet", "langevin"):
            raise ProbeError(f"integrator must be 'verlet' or 'langevin', got {integrator!r}")
        if n_initial < 1 or walkers < 1:
            raise ProbeError(f"n_initial and walkers must be >= 1, got {n_initial} and {walkers}")
        potential.species(atoms.numbers)  # names an atom outside the potential's elements
        self.atoms = atoms.copy()
        self.potential = potential
        self.integrator = integrator
        self.timestep = float(timestep)
        self.temperature = float(temperature)
        self.friction = float(friction)
        self.n_walkers = int(walkers)
        self.n_initial = int(n_initial)
        self.rattle = float(rattle)
        self.frames: list[tuple[int, int, np.ndarray, np.ndarray]] = []
        self.calibration_forces = VarianceScaling(prior_weight=self.CALIBRATION_PRIOR_WEIGHT)
        self.calibration_rate = VarianceScaling(prior_weight=self.CALIBRATION_PRIOR_WEIGHT)
        self._predicted: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, float]] = {}

    def start(self, seed: int) -> list[Atoms]:
        self._walkers = []
        self._step = 0
        self.frames = []
        self.calibration_forces.reset()
        self.calibration_rate.reset()
        self._predicted = {}
        for w in range(self.n_walkers):
            a = self.atoms.copy()
            MaxwellBoltzmannDistribution(a, temperature_K=self.temperature, rng=np.random.default_rng([seed, w]))
            Stationary(a)
            ZeroRotation(a)
            a.calc = EnsembleCalculator(self.potential)
            if self.integrator == "verlet":
                dyn = VelocityVerlet(a, timestep=self.timestep * units.fs)
            else:
                dyn = Langevin(a, timestep=self.timestep * units.fs, temperature_K=self.temperature,
                               friction=self.friction / units.fs, rng=np.random.default_rng([seed, 1000 + w]))
            self._walkers.append((a, dyn))
            self.frames.append((w, 0, a.get_positions().copy(), a.get_velocities().copy()))
        rng = np.random.default_rng([seed, 2000])
        initial = [_snapshot(self._walkers[0][0])]
        for _ in range(self.n_initial - 1):
            a = _snapshot(self._walkers[0][0])
            a.positions = a.positions + rng.normal(scale=self.rattle, size=a.positions.shape)
            initial.append(a)
        return initial

    def observe(self, atoms: Atoms) -> dict[str, float]:
        """The uncertainties the triggers read, for the walker's present state."""
        atoms.get_forces()
        res = atoms.calc.results
        v = torch.as_tensor(atoms.get_velocities())
        rate = float(rate_variance(torch.as_tensor(res["member_forces"]).unsqueeze(1), v.unsqueeze(0))[0])
        rate_full = float(rate_variance(torch.as_tensor(res["member_forces"]).unsqueeze(1), v.unsqueeze(0),
                                        block_diagonal=False)[0])
        sigma_rate = float(np.sqrt(rate))
        ekin = float(atoms.get_kinetic_energy())
        s2_forces, s2_rate = self.calibration_forces.scale2, self.calibration_rate.scale2
        sigma_dE = sigma_rate * self.timestep * units.fs
        return {
            "energy": res["energy"],
            "energy_std": res["energy_std"],
            "max_force_deviation": res["max_force_deviation"],
            "sigma_dEdt": sigma_rate * units.fs,  # eV/fs (ASE time unit = 1 / units.fs fs)
            "sigma_dE": sigma_dE,  # eV per step
            "rate_variance": rate,
            "sigma_dE_full": float(np.sqrt(rate_full)) * self.timestep * units.fs,  # cross-atom covariances kept
            "calibration_forces": s2_forces,
            "calibration_rate": s2_rate,
            "sigma_dE_cal_forces": float(np.sqrt(s2_forces)) * sigma_dE,
            "sigma_dE_cal_rate": float(np.sqrt(s2_rate)) * sigma_dE,
            "kinetic": ekin,
            "total": res["energy"] + ekin,
            "temperature": float(atoms.get_temperature()),
        }

    def step(self) -> list[Candidate]:
        self._step += 1
        out = []
        for w, (a, dyn) in enumerate(self._walkers):
            dyn.step()
            dyn.nsteps += 1
            if not np.isfinite(a.positions).all() or np.abs(a.positions).max() > 1e4:
                raise ProbeError(f"walker {w} blew up at step {self._step} (positions not finite or far away); "
                                 "lower the trigger tolerance or the time step")
            obs = self.observe(a)
            out.append(Candidate(item=_snapshot(a), observation=obs))
            member_forces = np.asarray(a.calc.results["member_forces"])  # (M, N, 3), this committee
            self._predicted[w] = (member_forces.mean(0), member_forces.var(0), a.get_velocities().copy(),
                                  obs["rate_variance"])
            self.frames.append((w, self._step, a.get_positions().copy(), a.get_velocities().copy()))
        return out

    def encode(self, item: Atoms) -> dict[str, np.ndarray]:
        return {"numbers": np.asarray(item.numbers, dtype=np.int64), "positions": item.get_positions()}

    def labelled(self, walker: int, item: Any, targets: Mapping[str, np.ndarray]) -> None:
        # the realised error of the committee that asked for this label (before it was retrained)
        if walker in self._predicted:
            mean, var, velocity, rate = self._predicted[walker]
            error = np.asarray(targets["forces"]) - mean
            self.calibration_forces.update(error, var)
            self.calibration_rate.update([float((error * velocity).sum())], [rate])
        # the committee was retrained: every walker's cached forces are stale
        for a, _ in self._walkers:
            a.calc.reset()


class PotentialLearner:
    """Retrains an :class:`EnsemblePotential` on all labels (warm start, deterministic).

    Parameters
    ----------
    potential : EnsemblePotential
    first_steps : int, default 300
        Adam steps of the first fit (on the initial labels).
    steps : int, default 100
        Adam steps of every later fit.
    lr : float, default 3e-3
    """

    def __init__(self, potential: EnsemblePotential, *, first_steps: int = 300, steps: int = 100,
                 lr: float = 3e-3) -> None:
        self.potential = potential
        self.first_steps = int(first_steps)
        self.steps = int(steps)
        self.lr = float(lr)
        self.fits = 0

    def start(self, seed: int) -> None:
        self.potential.reset(seed)
        self.fits = 0

    def fit(self, labels: Sequence[Label]) -> None:
        confs = [(lab.inputs["numbers"], lab.inputs["positions"], float(lab.targets["energy"]), lab.targets["forces"])
                 for lab in labels]
        steps = self.first_steps if self.fits == 0 else self.steps
        self.potential.fit(confs, steps=steps, lr=self.lr, seed=len(labels))
        self.fits += 1


@dataclass(frozen=True)
class OnTheFlyRun:
    """An on-the-fly simulation.

    Attributes
    ----------
    result : probe.active.LoopResult
        History (energy and uncertainties per step), labelling events, oracle calls.
    potential : EnsemblePotential
        The committee as trained at the end.
    frames : list of (walker, step, positions, velocities)
        The trajectory (every step).
    numbers : numpy.ndarray
        Atomic numbers.
    timestep : float
        Femtoseconds.
    """

    result: LoopResult
    potential: EnsemblePotential
    frames: list = field(repr=False)
    numbers: np.ndarray = field(repr=False)
    timestep: float = 0.5


def run_onthefly(atoms: Atoms, trigger: Trigger, *, oracle: str | Any = "emt", steps: int = 200, seed: int = 0,
                 store: str | Path | None = None, integrator: str = "verlet", timestep: float = 0.5,
                 temperature: float = 300.0, walkers: int = 1, n_members: int = 4, hidden: int = 32,
                 cutoff: float = 6.0, first_steps: int = 300, fit_steps: int = 100, n_initial: int = 4,
                 max_labels: int | None = None, executor: Any = None, retries: int = 2,
                 device: str | torch.device | None = None, progress: bool | None = None) -> OnTheFlyRun:
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
    integrator, timestep, temperature, walkers, n_initial
        See :class:`MDExplorer`.
    n_members, hidden, cutoff
        See :class:`EnsemblePotential`.
    first_steps, fit_steps
        See :class:`PotentialLearner`.
    max_labels, executor, retries
        See :class:`probe.active.ActiveLoop`.
    device : str or torch.device, optional
        Where the committee runs (``None``: CUDA if available).
    """
    oracle_obj = CalculatorOracle(oracle) if isinstance(oracle, str) else oracle
    potential = EnsemblePotential(sorted(set(atoms.numbers.tolist())), n_members=n_members, hidden=hidden,
                                  cutoff=cutoff, seed=seed, device=device)
    explorer = MDExplorer(atoms, potential, integrator=integrator, timestep=timestep, temperature=temperature,
                          walkers=walkers, n_initial=n_initial)
    learner = PotentialLearner(potential, first_steps=first_steps, steps=fit_steps)
    config = {"formula": atoms.get_chemical_formula(), "positions": np.round(atoms.positions, 8).tolist(),
              "trigger": repr(trigger), "oracle": repr(oracle_obj), "seed": seed, "integrator": integrator,
              "timestep": timestep, "temperature": temperature, "walkers": walkers, "n_members": n_members,
              "hidden": hidden, "cutoff": cutoff, "first_steps": first_steps, "fit_steps": fit_steps,
              "n_initial": n_initial, "max_labels": max_labels}
    tmp = None
    if store is None:
        tmp = tempfile.NamedTemporaryFile(suffix=".sqlite", delete=False)
        tmp.close()
        store = tmp.name
    with LabelStore(store, config=config) as label_store:
        loop = ActiveLoop(explorer, learner, trigger, oracle_obj, label_store, steps=steps, seed=seed,
                          executor=executor, retries=retries, max_labels=max_labels)
        result = loop.run(progress=progress)
    if tmp is not None:
        os.unlink(tmp.name)
    return OnTheFlyRun(result=result, potential=potential, frames=explorer.frames, numbers=atoms.numbers.copy(),
                       timestep=timestep)


def reference_trajectory(atoms: Atoms, *, oracle: str = "emt", steps: int = 200, seed: int = 0,
                         integrator: str = "verlet", timestep: float = 0.5, temperature: float = 300.0,
                         every: int = 1) -> list[Atoms]:
    """ASE molecular dynamics with the oracle at every step (the reference and the baseline).

    Returns every ``every``-th frame as ``ase.Atoms`` with ``info["energy"]`` and
    ``arrays["ref_forces"]`` from the oracle.
    """
    a = atoms.copy()
    MaxwellBoltzmannDistribution(a, temperature_K=temperature, rng=np.random.default_rng([seed, 0]))
    Stationary(a)
    ZeroRotation(a)
    a.calc = CalculatorOracle(oracle).calculator()
    if integrator == "verlet":
        dyn = VelocityVerlet(a, timestep=timestep * units.fs)
    else:
        dyn = Langevin(a, timestep=timestep * units.fs, temperature_K=temperature, friction=0.01 / units.fs,
                       rng=np.random.default_rng([seed, 1000]))
    frames = []
    for k in range(steps + 1):
        if k:
            dyn.step()
        if k % every == 0:
            f = _snapshot(a)
            f.info["energy"] = float(a.get_potential_energy())
            f.arrays["ref_forces"] = a.get_forces().copy()
            frames.append(f)
    return frames


def force_errors(potential: EnsemblePotential, frames: Sequence[Atoms]) -> dict[str, float]:
    """Committee-mean force and energy errors against the oracle on reference frames.

    Returns ``force_rmse`` and ``force_mae`` (eV/A, over all components), ``energy_rmse`` (eV)
    and ``energy_mae_per_atom`` (eV/atom, after removing the mean offset: the potential's
    energy zero is learned from few labels).
    """
    if not frames:
        raise ProbeError("force_errors needs at least one frame")
    pos = np.stack([f.get_positions() for f in frames])
    pred = potential.energy_and_forces(pos, frames[0].numbers)
    fp = pred.forces.mean(0).cpu().numpy()
    fr = np.stack([f.arrays["ref_forces"] for f in frames])
    ep = pred.energy.mean(0).cpu().numpy()
    er = np.array([f.info["energy"] for f in frames])
    d = ep - er
    return {"force_rmse": float(np.sqrt(((fp - fr) ** 2).mean())), "force_mae": float(np.abs(fp - fr).mean()),
            "energy_rmse": float(np.sqrt((d ** 2).mean())),
            "energy_mae_per_atom": float(np.abs(d - d.mean()).mean() / len(frames[0]))}


def energy_drift(run: OnTheFlyRun, *, oracle: str = "emt", every: int = 1, walker: int = 0) -> pd.DataFrame:
    """Total energy along the on-the-fly trajectory, re-evaluated with the oracle.

    With exact forces Velocity Verlet conserves ``E_oracle + E_kin`` up to integrator error; the
    drift ``E_tot(t) - E_tot(0)`` therefore measures the energy error the committee's forces
    put into the dynamics (the quantity the energy-rate trigger predicts). These evaluation
    calls are not oracle calls of the run.

    Returns
    -------
    pandas.DataFrame
        Columns ``step``, ``time_fs``, ``e_pot_oracle``, ``e_kin``, ``e_total``, ``drift``.
    """
    calc = CalculatorOracle(oracle).calculator()
    rows = []
    for w, step, pos, vel in run.frames:
        if w != walker or step % every:
            continue
        a = Atoms(numbers=run.numbers, positions=pos)
        a.set_velocities(vel)
        a.calc = calc
        rows.append({"step": step, "time_fs": step * run.timestep, "e_pot_oracle": float(a.get_potential_energy()),
                     "e_kin": float(a.get_kinetic_energy())})
    df = pd.DataFrame(rows)
    df["e_total"] = df["e_pot_oracle"] + df["e_kin"]
    df["drift"] = df["e_total"] - df["e_total"].iloc[0]
    return df


def interval_drift(run: OnTheFlyRun, *, oracle: str = "emt", walker: int = 0) -> pd.DataFrame:
    """Realised energy error of each interval between two labels against the trigger's prediction.

    An interval runs from one label (or the start) to the next label (or the end) of
    ``walker``; its realised error is the change of the oracle total energy along it,
    ``dE = E_tot(end) - E_tot(start)`` (see :func:`energy_drift`), and its predicted standard
    deviations are the accumulated ``sum sigma(dE/dt) dt`` with the raw and with each
    recalibrated spread (the values the energy-rate trigger compares with its tolerance). A
    trigger is honest when ``|dE|`` exceeds its prediction about as often as a Gaussian would
    (``P(|dE| > sigma) = 0.32``) or less.

    Returns
    -------
    pandas.DataFrame
        Columns ``start``, ``end`` (steps), ``realised`` (eV), ``predicted``,
        ``predicted_cal_rate``, ``predicted_cal_forces`` (eV).
    """
    drift = energy_drift(run, oracle=oracle, every=1, walker=walker).set_index("step")["drift"]
    h = run.result.history
    h = h[h["walker"] == walker]
    ev = run.result.events
    labelled = sorted(ev[ev["walker"] == walker]["step"].tolist()) if len(ev) else []
    last = int(h["step"].max()) + 1  # frames: step 0 is the start, step k + 1 follows history step k
    bounds = [0] + [s + 1 for s in labelled if s + 1 < last] + [last]
    rows = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        seg = h[(h["step"] + 1 > a) & (h["step"] + 1 <= b)]
        rows.append({"start": a, "end": b, "realised": float(drift.loc[b] - drift.loc[a]),
                     "predicted": float(seg["sigma_dE"].sum()),
                     "predicted_cal_rate": float(seg["sigma_dE_cal_rate"].sum()),
                     "predicted_cal_forces": float(seg["sigma_dE_cal_forces"].sum())})
    return pd.DataFrame(rows, columns=["start", "end", "realised", "predicted", "predicted_cal_rate",
                                       "predicted_cal_forces"])


@dataclass(frozen=True)
class TriggerComparison:
    """Triggers run on the same system, seed and step budget.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per trigger: ``oracle_calls``, ``labels``, ``force_rmse`` and ``force_mae``
        (eV/A, final committee against the oracle on a held-out oracle trajectory),
        ``energy_rmse_heldout`` (eV), ``max_abs_drift`` and ``final_drift`` (eV, oracle total
        energy along the run's own trajectory), ``steps``.
    runs : dict of str -> OnTheFlyRun
    drifts : dict of str -> pandas.DataFrame
    reference_steps_per_second : float
        ASE MD with the oracle at every step.
    """

    table: pd.DataFrame
    runs: dict = field(repr=False)
    drifts: dict = field(repr=False)
    reference_steps_per_second: float = float("nan")

    def to_frame(self) -> pd.DataFrame:
        return self.table

    def plot(self, axes: Sequence[Any] | None = None) -> Any:
        """Three panels: energy drift over time, uncertainty over time with labelling events, oracle calls."""
        import matplotlib.pyplot as plt

        if axes is None:
            fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        ax_d, ax_u, ax_c = axes
        for k, (name, df) in enumerate(self.drifts.items()):
            color = f"C{k}"
            ax_d.plot(df["time_fs"], df["drift"], color=color, label=name)
            hist = self.runs[name].result.history
            h0 = hist[hist["walker"] == 0]
            ax_u.plot(h0["step"] * self.runs[name].timestep, h0["max_force_deviation"], color=color, lw=0.8,
                      label=name)
            ev = self.runs[name].result.events
            if len(ev):
                ax_u.plot(ev["step"] * self.runs[name].timestep, np.full(len(ev), 0.0), "|", color=color, ms=12)
        ax_d.set_xlabel("time (fs)")
        ax_d.set_ylabel("oracle total-energy drift (eV)")
        ax_d.legend(fontsize=8)
        ax_u.set_xlabel("time (fs)")
        ax_u.set_ylabel("max force deviation (eV/A)")
        ax_u.set_title("ticks: oracle calls", fontsize=9)
        ax_c.bar(range(len(self.table)), self.table["oracle_calls"], color=[f"C{k}" for k in range(len(self.table))])
        ax_c.set_xticks(range(len(self.table)), self.table.index, rotation=15, fontsize=8)
        ax_c.set_ylabel("oracle calls")
        return axes


def compare_triggers(atoms: Atoms, triggers: Mapping[str, Trigger], *, oracle: str = "emt", steps: int = 200,
                     seed: int = 0, heldout_steps: int | None = None, heldout_every: int = 5,
                     drift_every: int = 5, workdir: str | Path | None = None,
                     **options: Any) -> TriggerComparison:
    """Run each trigger on the same system, seed and step budget and score them side by side.

    Scores: oracle calls; force error of the final committee against the oracle on a held-out
    trajectory (ASE MD with the oracle, a different seed); and the drift of the oracle total
    energy along each run's own NVE trajectory.

    Parameters
    ----------
    atoms : ase.Atoms
    triggers : mapping of name -> Trigger
    oracle : str, default "emt"
    steps : int, default 200
    seed : int, default 0
    heldout_steps : int, optional
        Length of the held-out trajectory (default ``steps``).
    heldout_every, drift_every : int, default 5
        Frame spacing of the two evaluations.
    workdir : path, optional
        Where the label stores are written (``None``: temporary files).
    **options
        Passed to :func:`run_onthefly` (``timestep``, ``temperature``, ``n_members``, ...).
    """
    import time

    integrator = options.get("integrator", "verlet")
    timestep = options.get("timestep", 0.5)
    temperature = options.get("temperature", 300.0)
    t0 = time.perf_counter()
    held = reference_trajectory(atoms, oracle=oracle, steps=heldout_steps or steps, seed=seed + 7919,
                                integrator=integrator, timestep=timestep, temperature=temperature, every=1)
    ref_sps = (heldout_steps or steps) / (time.perf_counter() - t0)
    held = held[::heldout_every]
    rows, runs, drifts = [], {}, {}
    for name, trig in triggers.items():
        store = None if workdir is None else Path(workdir) / f"labels-{name}.sqlite"
        t1 = time.perf_counter()
        run = run_onthefly(atoms, trig, oracle=oracle, steps=steps, seed=seed, store=store, **options)
        seconds = time.perf_counter() - t1
        drift = energy_drift(run, oracle=oracle, every=drift_every)
        err = force_errors(run.potential, held)
        runs[name], drifts[name] = run, drift
        rows.append({"trigger": name, "oracle_calls": run.result.oracle_calls + run.result.reused,
                     "labels": run.result.n_labels, "force_rmse": err["force_rmse"], "force_mae": err["force_mae"],
                     "energy_rmse_heldout": err["energy_rmse"], "max_abs_drift": float(drift["drift"].abs().max()),
                     "final_drift": float(drift["drift"].iloc[-1]), "steps": steps,
                     "steps_per_second": steps / seconds})
    return TriggerComparison(table=pd.DataFrame(rows).set_index("trigger"), runs=runs, drifts=drifts,
                             reference_steps_per_second=ref_sps)
