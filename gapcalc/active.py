"""On-the-fly active learning: MD that calls a reference calculator only where the model is uncertain.

:class:`OnTheFly` is an ASE calculator wrapping a :class:`~gapcalc.gpr.SparseGPR` and an
*oracle* (any ASE calculator: EMT for the demo, a DFT code in real use). At every
``check_interval``-th call it computes the posterior force standard deviations
(eV/Å, :meth:`SparseGPR.uncertainty`); when the largest per-atom value

    σ_F(j) = sqrt((σ²_jx + σ²_jy + σ²_jz)/3)        (eV/Å, RMS over components)

times the running calibration factor (measured actual/predicted error at previous
calls, :attr:`OnTheFly.calibration`) exceeds ``threshold`` (eV/Å; or
``threshold_sigma`` × the model's σ_F), it calls the
oracle on the frame, adds its energy, forces and stress to the model, adds the most
uncertain environments of that frame as new sparse points, updates the model
incrementally (:meth:`SparseGPR.update`: cost independent of the data seen so far) and
returns the oracle's results for that step. Guards: ``min_interval`` steps between
calls, ``max_calls``, ``max_sparse_per_species``. A full exact refit runs every
``refit_every`` calls.

Everything is checkpointed atomically in ``run_dir`` after every oracle call and every
``checkpoint_interval`` steps: ``train.xyz`` (all oracle frames, written as soon as the
oracle answers), ``model.npz``, ``md_state.xyz`` (positions, momenta, cell) and
``state.json`` (step, counters, thresholds, dynamics RNG state, history). A run killed
at any point resumes with :func:`resume` with no oracle result lost and no call repeated.
No pickles anywhere.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.io import read, write

from .calculator import GAPCalculator
from .datasets import label
from .gpr import SparseGPR

log = logging.getLogger(__name__)

STATE_VERSION = 1


class OracleError(RuntimeError):
    """The reference calculator failed and the run was told to stop."""


def make_oracle(spec: str):
    """An ASE calculator from a spec: "emt", "lj", or "module:factory" (called with no args)."""
    if spec == "emt":
        from ase.calculators.emt import EMT
        return EMT()
    if spec == "lj":
        from ase.calculators.lj import LennardJones
        return LennardJones()
    if ":" in spec:
        mod, name = spec.split(":", 1)
        return getattr(importlib.import_module(mod), name)()
    raise ValueError(f"unknown oracle {spec!r}: use 'emt', 'lj' or 'module:factory'")


def _atomic_write_text(path: Path, text: str):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_write_xyz(path: Path, frames):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    write(tmp, frames, format="extxyz")
    os.replace(tmp, path)


class OnTheFly(Calculator):
    """ASE calculator that learns on the fly (see module docstring).

    Parameters
    ----------
    model : SparseGPR, fitted or not. An unfitted one (hyper-parameters only) starts
        empty: the first call goes to the oracle and fits ``n_sparse_initial`` points.
    oracle : ASE calculator giving energy, forces (and stress for periodic cells).
    threshold : eV/Å, per-atom force std that triggers a call. Or ``threshold_sigma``:
        a multiple of the model's ``sigma_force``.
    run_dir : checkpoint folder (None: no checkpoints).
    check_interval : compute uncertainties every this many steps.
    min_interval : at least this many steps between oracle calls.
    max_calls : stop calling the oracle after this many calls.
    n_sparse_initial, n_sparse_add : sparse points per species at the first fit / per call.
    max_sparse_per_species : cap on the sparse set.
    refit_every : exact refit on all frames every this many calls (0 = never).
    on_oracle_error : "skip" (log, keep the frame in run_dir/failed, continue with the
        model) or "stop" (checkpoint and raise OracleError).
    """

    def __init__(self, model: SparseGPR, oracle, threshold=None, threshold_sigma=None,
                 run_dir=None, check_interval=1, min_interval=1, max_calls=100,
                 n_sparse_initial=30, n_sparse_add=10, max_sparse_per_species=None,
                 refit_every=0, on_oracle_error="skip", checkpoint_interval=500, skin=0.5,
                 calibrate=True, calibration_window=3, **kwargs):
        super().__init__(**kwargs)
        if (threshold is None) == (threshold_sigma is None):
            raise ValueError("give exactly one of threshold (eV/Å) or threshold_sigma")
        if on_oracle_error not in ("skip", "stop"):
            raise ValueError("on_oracle_error must be 'skip' or 'stop'")
        self.implemented_properties = ["energy", "free_energy", "energies", "forces", "stress",
                                       "energy_std", "energies_std", "forces_std"]
        self.model = model
        self.oracle = oracle
        self.threshold = threshold
        self.threshold_sigma = threshold_sigma
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.check_interval = int(check_interval)
        self.min_interval = int(min_interval)
        self.max_calls = int(max_calls)
        self.n_sparse_initial = int(n_sparse_initial)
        self.n_sparse_add = int(n_sparse_add)
        self.max_sparse_per_species = max_sparse_per_species
        self.refit_every = int(refit_every)
        self.on_oracle_error = on_oracle_error
        self.checkpoint_interval = int(checkpoint_interval)
        self.skin = skin
        self.calibrate = bool(calibrate)
        self.calibration_window = int(calibration_window)
        self.frames_: list = []
        self.step_ = 0
        self.n_calls_ = 0
        self.last_call_step_ = -10 ** 9
        self.history_: list[dict] = []      # one entry per oracle call
        self.checks_: list[list] = []       # [step, max σ_F] per uncertainty check
        self.dyn = None
        self._dirty = False
        self._gap = None
        self._t0 = time.perf_counter()
        self.config: dict = {}
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- policy
    @property
    def threshold_ev(self) -> float:
        """The trigger in eV/Å."""
        if self.threshold is not None:
            return float(self.threshold)
        return float(self.threshold_sigma) * float(self.model.sigma_force)

    @property
    def calibration(self) -> float:
        """Factor applied to the posterior σ_F before comparing with the threshold.

        Every uncertain oracle call measures, before the model learns the frame, the
        ratio of the actual force RMSE to the predicted RMS σ_F on that frame; the factor
        is the geometric mean of the last ``calibration_window`` ratios (1 when
        ``calibrate`` is off or before the second call). This keeps the trigger honest
        when the GP prior (δ) is mis-scaled for the system.
        """
        if not self.calibrate:
            return 1.0
        r = [h["calibration_ratio"] for h in self.history_ if h.get("calibration_ratio")]
        r = r[-self.calibration_window:]
        return float(np.exp(np.mean(np.log(r)))) if r else 1.0

    @property
    def fitted(self) -> bool:
        return hasattr(self.model, "alpha_")

    def attach(self, dyn, checkpoint=True):
        """Follow an ASE dynamics object: step counting and end-of-step checkpoints."""
        self.dyn = dyn
        if checkpoint:
            dyn.attach(self._after_step, interval=1)
        return self

    def _after_step(self):
        if self.run_dir is None:
            return
        step = self.current_step()
        if self._dirty or (self.checkpoint_interval and step % self.checkpoint_interval == 0):
            self.checkpoint()

    def current_step(self) -> int:
        return int(self.dyn.nsteps) if self.dyn is not None else self.step_

    # ---------------------------------------------------------------- calculator
    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.step_ += 1
        step = self.current_step()
        if not self.fitted:
            if self._call_oracle(step, reason="empty model", max_std=np.inf):
                return
            raise OracleError("the oracle failed on the first frame: nothing to learn from")
        if self._gap is None or self._gap.model is not self.model:
            self._gap = GAPCalculator(self.model, skin=self.skin)
        gap = self._gap
        gap.calculate(self.atoms, ["energy", "forces"], all_changes)
        res = dict(gap.results)
        due = (step % self.check_interval == 0) if self.check_interval > 1 else True
        if due:
            unc = self.model.uncertainty(self.atoms, nl=gap._neighbors(self.atoms))
            res.update(unc)
            per_atom = np.sqrt(np.mean(unc["forces_std"] ** 2, axis=1))
            max_std = self.calibration * float(per_atom.max())
            self.checks_.append([step, max_std])
            if (max_std > self.threshold_ev and self.n_calls_ < self.max_calls
                    and step - self.last_call_step_ >= self.min_interval):
                if self._call_oracle(step, reason="uncertain", max_std=max_std, predicted=res,
                                     local_std=unc["energies_std"]):
                    return
        self.results.update(res)

    # ---------------------------------------------------------------- oracle
    def _call_oracle(self, step, reason, max_std, predicted=None, local_std=None) -> bool:
        t0 = time.perf_counter()
        frame = self.atoms.copy()
        frame.calc = None
        try:
            labelled = label(frame, self.oracle)
            e = labelled.get_potential_energy()
            f = labelled.get_forces()
            if not (np.isfinite(e) and np.all(np.isfinite(f))):
                raise ValueError(f"non-finite oracle result (energy {e})")
        except Exception as exc:  # the oracle is user code: any failure is reported
            self._oracle_failed(step, frame, exc)
            return False
        t_oracle = time.perf_counter() - t0
        labelled.info["otf_step"] = int(step)
        self.frames_.append(labelled)
        self.n_calls_ += 1
        self.last_call_step_ = step
        if self.run_dir is not None:   # keep the oracle's answer before anything else
            _atomic_write_xyz(self.run_dir / "train.xyz", self.frames_)
        t1 = time.perf_counter()
        added = self._learn(labelled, local_std)
        t_update = time.perf_counter() - t1
        ref_f = labelled.get_forces()
        entry = {"call": self.n_calls_, "step": int(step), "reason": reason,
                 "max_force_std": None if not np.isfinite(max_std) else round(max_std, 6),
                 "oracle_s": round(t_oracle, 4), "update_s": round(t_update, 4),
                 "sparse": int(self.model.M_), "added_sparse": int(added),
                 "time_s": round(time.perf_counter() - self._t0, 3)}
        if predicted is not None:
            err = predicted["forces"] - ref_f
            entry["force_mae_vs_oracle"] = round(float(np.mean(np.abs(err))), 6)
            entry["force_maxerr_vs_oracle"] = round(float(np.abs(err).max()), 6)
            if "forces_std" in predicted:
                rms_std = float(np.sqrt(np.mean(predicted["forces_std"] ** 2)))
                entry["calibration_ratio"] = round(float(np.sqrt(np.mean(err ** 2)))
                                                   / max(rms_std, 1e-12), 6)
        self.history_.append(entry)
        log.info("oracle call %d at step %d (%s): max σ_F %s eV/Å, |F−F_ref| MAE %s max %s, "
                 "sparse %d (+%d), oracle %.3f s, update %.3f s", self.n_calls_, step, reason,
                 entry["max_force_std"], entry.get("force_mae_vs_oracle", "-"),
                 entry.get("force_maxerr_vs_oracle", "-"), entry["sparse"], added, t_oracle,
                 t_update)
        self.results.update({"energy": labelled.get_potential_energy(),
                             "free_energy": labelled.get_potential_energy(), "forces": ref_f})
        if frame.pbc.all():
            self.results["stress"] = labelled.get_stress()
        self._dirty = True
        if self.dyn is None and self.run_dir is not None:
            self.checkpoint()
        return True

    def _oracle_failed(self, step, frame, exc):
        log.error("oracle failed at step %d: %s", step, exc)
        if self.run_dir is not None:
            failed = self.run_dir / "failed"
            failed.mkdir(exist_ok=True)
            path = failed / f"step_{step:08d}.xyz"
            write(path, frame, format="extxyz")
            log.error("frame kept for inspection: %s", path)
        self.history_.append({"step": int(step), "reason": "oracle failed", "error": str(exc)})
        if self.on_oracle_error == "stop":
            if self.run_dir is not None:
                self.checkpoint()
            raise OracleError(f"oracle failed at step {step}: {exc}") from exc

    def _learn(self, frame, local_std):
        """Fold the frame into the model; return the number of sparse points added."""
        if not self.fitted:
            n0 = self.model.n_sparse
            self.model.n_sparse = self.n_sparse_initial
            try:
                self.model.fit([frame])
            finally:
                self.model.n_sparse = n0
            return self.model.M_
        if self.refit_every and self.n_calls_ % self.refit_every == 0:
            candidates = self._candidates(frame, local_std)
            self.model.extend_sparse(candidates)
            self.model.refit(self.frames_)
            return sum(len(c[1]) for c in candidates)
        return self.model.update([frame], new_sparse=self._candidates(frame, local_std))

    def _candidates(self, frame, local_std):
        """The frame's most uncertain environments per species and term, hottest first."""
        model = self.model
        if local_std is None:
            local_std = model.uncertainty(frame, forces=False)["energies_std"]
        out = []
        for ti, term in enumerate(model.terms_):
            p = term.descriptor.compute(frame)
            spec = term.descriptor.species.indices(frame.numbers)
            for s in np.unique(spec):
                have = int(np.sum(term.X_species == s))
                room = self.n_sparse_add
                if self.max_sparse_per_species is not None:
                    room = min(room, int(self.max_sparse_per_species) - have)
                if room <= 0:
                    continue
                idx = np.flatnonzero(spec == s)
                idx = idx[np.argsort(-local_std[idx], kind="stable")][:room]
                out.append((ti, p[idx], np.full(len(idx), s)))
        return out

    # ---------------------------------------------------------------- checkpoints
    def state(self) -> dict:
        rng = getattr(self.dyn, "rng", None) if self.dyn is not None else None
        rng_state = None
        if rng is not None and hasattr(rng, "bit_generator"):
            rng_state = rng.bit_generator.state
        return {"version": STATE_VERSION, "step": self.current_step(), "calls": self.n_calls_,
                "last_call_step": self.last_call_step_, "n_frames": len(self.frames_),
                "threshold": self.threshold, "threshold_sigma": self.threshold_sigma,
                "threshold_ev": self.threshold_ev, "check_interval": self.check_interval,
                "min_interval": self.min_interval, "max_calls": self.max_calls,
                "n_sparse_initial": self.n_sparse_initial, "n_sparse_add": self.n_sparse_add,
                "max_sparse_per_species": self.max_sparse_per_species,
                "refit_every": self.refit_every, "on_oracle_error": self.on_oracle_error,
                "calibrate": self.calibrate, "calibration_window": self.calibration_window,
                "calibration": self.calibration,
                "checkpoint_interval": self.checkpoint_interval,
                "rng_state": _jsonable(rng_state), "history": self.history_,
                "checks": self.checks_, "config": self.config,
                "model_params": self.model.get_params()}

    def checkpoint(self):
        """Write model, MD state and JSON state atomically (state.json last)."""
        if self.run_dir is None:
            return
        if self.fitted:
            self.model.save(self.run_dir / "model.npz")
        atoms = self.dyn.atoms if self.dyn is not None else self.atoms
        if atoms is not None:
            snap = atoms.copy()
            snap.calc = None
            _atomic_write_xyz(self.run_dir / "md_state.xyz", [snap])
        _atomic_write_text(self.run_dir / "state.json", json.dumps(self.state(), indent=1))
        self._dirty = False


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def fresh_frames(atoms, oracle, temperature, n_frames=50, interval=20, timestep=2.0, seed=123):
    """Independent validation frames: Langevin MD with the oracle itself, every ``interval`` steps."""
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    at = atoms.copy()
    at.calc = oracle
    MaxwellBoltzmannDistribution(at, temperature_K=temperature, rng=np.random.default_rng(seed))
    dyn = _langevin(at, temperature, timestep, 0.02, seed)
    dyn.run(5 * interval)    # decorrelate from the start
    frames = []
    for _ in range(n_frames):
        dyn.run(interval)
        snap = at.copy()
        snap.calc = None
        frames.append(label(snap, oracle))
    return frames


# -------------------------------------------------------------------- driver
DEFAULT_MODEL = dict(cutoff=5.5, n_max=8, l_max=6, atom_sigma=0.5, cutoff_width=1.0)


def default_model(species, sigma_force=0.03):
    """An empty model for on-the-fly learning (SOAP 5.5 Å, n_max 8, l_max 6, ζ 4).

    Choose the cutoff to cover the oracle's interaction range (ASE's EMT for Cu reaches
    5.4 Å: a 4.5 Å descriptor leaves ~0.06 eV/Å of force error that no data can remove).
    """
    from .descriptors import SOAP
    return SparseGPR(SOAP(species, **DEFAULT_MODEL), zeta=4, sigma_energy=0.001,
                     sigma_force=sigma_force, sigma_virial=0.02, e0="average", n_sparse=30)


def _langevin(atoms, temperature, timestep, friction, seed):
    from ase import units
    from ase.md.langevin import Langevin
    return Langevin(atoms, timestep * units.fs, temperature_K=temperature,
                    friction=friction / units.fs, fixcm=False, rng=np.random.default_rng(seed))


def learn(atoms, oracle, run_dir, model=None, oracle_spec=None, temperature=800.0, steps=5000,
          timestep=2.0, friction=0.01, seed=0, log_interval=250, rattle=0.05, **otf_kwargs):
    """Langevin MD with on-the-fly learning; returns the OnTheFly object.

    temperature : K.  timestep : fs.  friction : 1/fs.  rattle : Å, random displacement of
    the starting structure.  ``oracle_spec`` (e.g. "emt")
    is recorded so that :func:`resume` can rebuild the oracle by itself.
    """
    from .md import thermalize
    run_dir = Path(run_dir)
    if (run_dir / "state.json").exists():
        raise FileExistsError(f"{run_dir} holds a run already: resume it or pick another folder")
    model = model if model is not None else default_model(np.unique(atoms.numbers))
    otf = OnTheFly(model, oracle, run_dir=run_dir, **otf_kwargs)
    otf.config = {"oracle": oracle_spec, "temperature": temperature, "steps": steps,
                  "timestep": timestep, "friction": friction, "seed": seed,
                  "log_interval": log_interval}
    if rattle:   # a perfect lattice is a poor first datum (all forces zero)
        atoms.rattle(rattle, seed=seed + 2)
    thermalize(atoms, temperature, np.random.default_rng(seed + 1))
    atoms.calc = otf
    dyn = _langevin(atoms, temperature, timestep, friction, seed)
    otf.attach(dyn)
    return _run(otf, dyn, atoms, steps, log_interval)


def _run(otf, dyn, atoms, steps, log_interval):
    handler = None
    if otf.run_dir is not None:   # the run's own log file, next to its checkpoint
        handler = logging.FileHandler(otf.run_dir / "learn.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logging.getLogger("gapcalc").addHandler(handler)
        if logging.getLogger("gapcalc").getEffectiveLevel() > logging.INFO:
            logging.getLogger("gapcalc").setLevel(logging.INFO)
    try:
        return _run_dynamics(otf, dyn, atoms, steps, log_interval)
    finally:
        if handler is not None:
            logging.getLogger("gapcalc").removeHandler(handler)
            handler.close()


def _run_dynamics(otf, dyn, atoms, steps, log_interval):
    n = len(atoms)
    t0 = time.perf_counter()
    marks = {"t": t0, "step": dyn.nsteps}

    def progress():
        now = time.perf_counter()
        done = dyn.nsteps - marks["step"]
        rate = done / max(now - marks["t"], 1e-9) if done else float("nan")
        marks.update(t=now, step=dyn.nsteps)
        last = otf.checks_[-1][1] if otf.checks_ else float("nan")
        log.info("MD step %d/%d  T %.0f K  Epot %.4f eV/atom  max σ_F %.4f eV/Å  oracle calls %d "
                 " sparse %d  %.1f steps/s (%.0f µs/atom/step)", dyn.nsteps, total,
                 atoms.get_temperature(), atoms.get_potential_energy() / n, last, otf.n_calls_,
                 otf.model.M_ if otf.fitted else 0, rate, 1e6 / rate / n if done else float("nan"))

    total = otf.config.get("steps", steps)
    dyn.attach(progress, interval=max(1, int(otf.config.get("log_interval", 250))))
    remaining = total - dyn.nsteps
    if remaining > 0:
        dyn.run(remaining)
    otf.checkpoint()
    log.info("learning run done: %d steps, %d oracle calls, %.1f s", dyn.nsteps, otf.n_calls_,
             time.perf_counter() - t0)
    return otf


def resume(run_dir, oracle=None, steps=None):
    """Continue a run from its checkpoint (e.g. after kill -9); returns the OnTheFly object."""
    from . import load_model_file
    run_dir = Path(run_dir)
    state_path = run_dir / "state.json"
    if not state_path.exists():
        raise FileNotFoundError(f"{run_dir}: no state.json, nothing to resume")
    state = json.loads(state_path.read_text())
    if state.get("version", 0) > STATE_VERSION:
        raise ValueError(f"{state_path}: state version {state['version']} is newer than this gapcalc")
    cfg = state["config"]
    if oracle is None:
        if not cfg.get("oracle"):
            raise ValueError("this run's oracle was a Python object: pass oracle= to resume")
        oracle = make_oracle(cfg["oracle"])
    frames = read(run_dir / "train.xyz", ":") if (run_dir / "train.xyz").exists() else []
    if (run_dir / "model.npz").exists():
        model = load_model_file(run_dir / "model.npz")
        known = int(model.training_summary_.get("n_frames", 0))
        if len(frames) > known:  # oracle answers written before the model was saved
            log.info("folding %d oracle frame(s) saved after the last model checkpoint",
                     len(frames) - known)
            model.update(frames[known:])
    else:
        model = SparseGPR.from_params(state["model_params"])
        if frames:
            model.fit(frames)
    kwargs = {k: state[k] for k in ("threshold", "threshold_sigma", "check_interval",
                                    "min_interval", "max_calls", "n_sparse_initial",
                                    "n_sparse_add", "max_sparse_per_species", "refit_every",
                                    "on_oracle_error", "checkpoint_interval", "calibrate",
                                    "calibration_window") if k in state}
    otf = OnTheFly(model, oracle, run_dir=run_dir, **kwargs)
    otf.frames_ = frames
    otf.n_calls_ = max(int(state["calls"]), len(frames))
    otf.last_call_step_ = max([int(state["last_call_step"])]
                              + [int(f.info.get("otf_step", -10 ** 9)) for f in frames])
    otf.history_ = state["history"]
    otf.checks_ = state["checks"]
    otf.config = cfg
    if steps is not None:
        otf.config["steps"] = int(steps)
    atoms = read(run_dir / "md_state.xyz")
    atoms.calc = otf
    dyn = _langevin(atoms, cfg["temperature"], cfg["timestep"], cfg["friction"], cfg["seed"])
    if state.get("rng_state"):
        dyn.rng.bit_generator.state = state["rng_state"]
    dyn.nsteps = int(state["step"])
    otf.attach(dyn)
    log.info("resuming %s at step %d with %d oracle frames", run_dir, dyn.nsteps, len(frames))
    return _run(otf, dyn, atoms, otf.config["steps"], cfg.get("log_interval", 250))
