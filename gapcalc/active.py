"""On-the-fly active learning: MD that calls a reference calculator only where the model is uncertain.

:class:`OnTheFly` is an ASE calculator wrapping a :class:`~gapcalc.gpr.SparseGPR` and an
*oracle* (any ASE calculator: EMT for the demo, a DFT code in real use). Every oracle call
is one the user asked for: the run calls it only when the model is uncertain, never
more than ``max_calls`` times, and says at the end why it stopped calling.

**The trigger.** At a *check* the calculator computes the posterior force standard
deviations (:meth:`SparseGPR.uncertainty`, key ``forces_std``: the *latent*, noise-free
std of the fitted function, eV/Å; the predictive std that adds the model's σ_F in
quadrature is not used here) and takes the largest per-atom value

    σ_F(j) = sqrt((σ²_jx + σ²_jy + σ²_jz)/3)        (eV/Å, RMS over components)

times the running calibration factor c (:attr:`OnTheFly.calibration`: at every
uncertain call, before the model learns the frame, the measured ratio of the actual
force RMSE to the predicted RMS latent σ_F; c is the geometric mean of the last
``calibration_window`` ratios, 1 before the second call). The latent std underestimates
real errors (typically by 2-4×), and c converts it to the error scale, so ``threshold``
(eV/Å; or ``threshold_sigma`` × the model's σ_F) is compared with c · max_j σ_F(j), a
calibrated estimate of the largest per-atom force error. Above it, the oracle labels the
frame, the frame's energy, forces and stress are added to the model with its most
uncertain environments as new sparse points (:meth:`SparseGPR.update`: cost independent
of the data seen so far), and the oracle's results are returned for that step.

**When to check (adaptive).** A check costs tens of energy+forces calls, so checks are
spaced by how far the last one was from the threshold. Along MD the calibrated max σ_F
(s) fluctuates about a slowly moving level, decorrelating within ~10-20 steps; D is the
largest change of s seen between consecutive checks of the same model (the last 10
pairs). After a check with s < threshold t, the next comes after

    gap = check_interval · min(1, (t − s) / (safety · D))²   steps (at least 1),

so with headroom for ``safety`` (default 3) of the largest fluctuations seen the loop
waits the user's maximum ``check_interval``, and near the threshold it checks every step
(1 step until D is known). ``adaptive=False`` checks every ``check_interval`` steps. No
check runs before ``min_interval`` steps after a call (nothing could act on it).

**Why it stops calling.** ``converge_checks`` (K) consecutive checks without a trigger,
spanning at least ``converge_steps`` MD steps, mark the run *converged*: from then on it
only monitors, every ``monitor_interval``
steps, and returns to learning if a monitor check exceeds the threshold. Reaching
``max_calls`` marks it *capped*, logged as a warning; it then monitors every
``monitor_interval`` steps only to report the fraction of checks above threshold since
the cap (no check is paid for otherwise). :meth:`OnTheFly.stop_reason` says which.

**Files.** Everything is checkpointed atomically in ``run_dir`` after every oracle call
and every ``checkpoint_interval`` steps: ``train.xyz`` (all oracle frames, written as
soon as the oracle answers), ``model.npz``, ``md_state.xyz`` (positions, momenta, cell)
and ``state.json`` (step, counters, schedule, thresholds, dynamics and its RNG state,
history). The MD trajectory goes to ``md.traj`` (ASE trajectory, every
``trajectory_interval`` steps; frames written after the last checkpoint are dropped on
resume, so a resumed run appends exactly where the checkpoint stands). A run killed at
any point resumes with :func:`resume` with no oracle result lost and no call repeated;
runs started from Python (``OnTheFly`` + :meth:`OnTheFly.attach` on an ASE ``Langevin``
or ``VelocityVerlet``) resume too. Files get the normal permissions (umask). No pickles.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from ase import units
from ase.calculators.calculator import Calculator, all_changes
from ase.io import read, write

from .calculator import GAPCalculator
from .datasets import label
from .gpr import SparseGPR

log = logging.getLogger(__name__)

STATE_VERSION = 2
TRAJECTORY = "md.traj"


class OracleError(RuntimeError):
    """The reference calculator failed and the run was told to stop."""


class OracleSpecError(ValueError):
    """An oracle spec that cannot be turned into a calculator, or does not fit the structure."""


# -------------------------------------------------------------------- oracles
LJ_HELP = ("'lj' needs parameters that fit the structure, e.g. --oracle "
           "lj:sigma=3.405,epsilon=0.0104 for argon (σ in Å, ε in eV; rc = 3σ unless given)")


def _lj_params(text):
    params = {}
    for part in filter(None, text.split(",")):
        if "=" not in part:
            raise OracleSpecError(f"bad LJ parameter {part!r}: {LJ_HELP}")
        k, v = part.split("=", 1)
        k = k.strip().lower()
        if k not in ("sigma", "epsilon", "rc"):
            raise OracleSpecError(f"unknown LJ parameter {k!r} (sigma, epsilon, rc)")
        try:
            params[k] = float(v)
        except ValueError:
            raise OracleSpecError(f"LJ parameter {k}={v!r} is not a number") from None
    if "sigma" not in params or "epsilon" not in params:
        raise OracleSpecError(LJ_HELP)
    return params


def make_oracle(spec: str):
    """An ASE calculator from a spec.

    * ``"emt"``: ASE's EMT (Al, Cu, Ag, Au, Ni, Pd, Pt; a toy for demos).
    * ``"lj:sigma=S,epsilon=E[,rc=R]"``: ASE's Lennard-Jones with σ = S Å, ε = E eV,
      cutoff R Å (default 3σ), smoothly cut. Plain ``"lj"`` is refused: ASE's defaults
      (σ = 1 Å, cutoff 3 Å) give zero forces for real solids.
    * ``"tblite:METHOD"``: GFN2-xTB / GFN1-xTB / IPEA1-xTB through tblite (the ``xtb``
      extra), :func:`gapcalc.oracles.make_tblite`.
    * ``"module:factory"``: ``factory()`` from ``module``, imported from the working
      directory first, then ``sys.path`` (so ``mycalc.py`` beside you works).

    Names are case-insensitive for the built-ins. Raises :class:`OracleSpecError`.
    """
    low = spec.strip().lower()
    if low == "emt":
        from ase.calculators.emt import EMT
        return EMT()
    if low == "lj":
        raise OracleSpecError(LJ_HELP)
    if low.startswith("lj:") and "=" in low:
        from ase.calculators.lj import LennardJones
        p = _lj_params(low[3:])
        return LennardJones(sigma=p["sigma"], epsilon=p["epsilon"],
                            rc=p.get("rc", 3.0 * p["sigma"]), smooth=True)
    if low.startswith("tblite:"):
        from .oracles import make_tblite
        return make_tblite(spec.split(":", 1)[1].strip())
    if ":" in spec:
        mod, name = spec.split(":", 1)
        cwd = os.getcwd()
        added = cwd not in sys.path
        if added:
            sys.path.insert(0, cwd)
        try:
            module = importlib.import_module(mod)
        except ImportError as exc:
            raise OracleSpecError(f"oracle {spec!r}: cannot import module {mod!r} from the "
                                  f"working directory {cwd} or sys.path ({exc})") from None
        finally:
            if added:
                sys.path.remove(cwd)
        factory = getattr(module, name, None)
        if not callable(factory):
            raise OracleSpecError(f"oracle {spec!r}: module {mod!r} has no callable {name!r}")
        return factory()
    raise OracleSpecError(f"unknown oracle {spec!r}: use 'emt', 'lj:sigma=..,epsilon=..' or "
                          "'module:factory'")


def check_oracle_fits(oracle, atoms):
    """Refuse a Lennard-Jones oracle whose minimum is far from the structure's bonds.

    The nearest-neighbour distance d must lie within [0.85, 1.25] × 2^(1/6) σ, and the
    cutoff must reach beyond d: otherwise forces are zero or absurd and the run would
    "learn" nothing. Other oracles are checked by their first answer (all-zero forces
    on a rattled structure raise a warning in :class:`OnTheFly`).
    """
    from ase.calculators.lj import LennardJones
    if not isinstance(oracle, LennardJones) or len(atoms) < 2:
        return
    from ase.neighborlist import neighbor_list
    sigma = float(oracle.parameters.sigma)
    rc = float(oracle.parameters.rc)
    d = neighbor_list("d", atoms, max(3 * sigma, 6.0))
    if not len(d):
        raise OracleSpecError(f"Lennard-Jones oracle: no neighbours within {max(3 * sigma, 6):.1f} "
                              "Å: " + LJ_HELP)
    dmin = float(d.min())
    rmin = 2 ** (1 / 6) * sigma
    if not 0.85 <= dmin / rmin <= 1.25 or rc <= dmin:
        raise OracleSpecError(
            f"Lennard-Jones oracle does not fit the structure: nearest neighbours at "
            f"{dmin:.3f} Å, LJ minimum at 2^(1/6)σ = {rmin:.3f} Å, cutoff {rc:.2f} Å. "
            + LJ_HELP)


# -------------------------------------------------------------------- files
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _tempfile(path: Path):
    """A temporary file beside ``path`` with the permissions a normal open() would give."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_umask())
    return fd, tmp


def _atomic_write_text(path: Path, text: str):
    fd, tmp = _tempfile(path)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_write_xyz(path: Path, frames):
    fd, tmp = _tempfile(path)
    os.close(fd)
    write(tmp, frames, format="extxyz")
    os.replace(tmp, path)


def _truncate_trajectory(path: Path, n_frames: int):
    """Keep the first ``n_frames`` frames of an ASE trajectory (atomically)."""
    from ase.io.trajectory import Trajectory
    if not path.exists():
        return
    try:
        with Trajectory(str(path)) as tr:
            n = len(tr)
            if n == n_frames:
                return
            keep = [tr[i] for i in range(min(n, n_frames))]
    except Exception as exc:   # a torn tail: keep what the checkpoint vouches for
        log.warning("%s unreadable (%s): rewriting its first %d frames", path, exc, n_frames)
        keep = []
        try:
            with Trajectory(str(path)) as tr:
                for i in range(n_frames):
                    keep.append(tr[i])
        except Exception:
            pass
    fd, tmp = _tempfile(path)
    os.close(fd)
    with Trajectory(tmp, "w") as out:
        for at in keep:
            out.write(at)
    os.replace(tmp, path)
    log.info("%s: kept %d frames up to the checkpoint (dropped %s written after it)", path,
             len(keep), "some" if len(keep) == n_frames else "unreadable ones")


# -------------------------------------------------------------------- calculator
class OnTheFly(Calculator):
    """ASE calculator that learns on the fly (see the module docstring).

    Parameters
    ----------
    model : SparseGPR, fitted or not. An unfitted one (hyper-parameters only) starts
        empty: the first call goes to the oracle and fits ``n_sparse_initial`` points.
    oracle : ASE calculator giving energy, forces (and stress for periodic cells).
    threshold : eV/Å, calibrated largest per-atom latent force std that triggers a call.
        Or ``threshold_sigma``: a multiple of the model's ``sigma_force``.
    run_dir : checkpoint folder (None: no files).
    check_interval : the most MD steps between two uncertainty checks.
    adaptive : space checks by the headroom below the threshold (True) or check every
        ``check_interval`` steps (False).
    safety : headroom wanted, in units of the largest fluctuation of s seen between checks.
    min_interval : at least this many steps between oracle calls.
    max_calls : the most oracle calls of the run (None or 0: no cap).
    converge_checks : K checks in a row without a trigger declare convergence (0: never)...
    converge_steps : ... if they span at least this many MD steps.
    monitor_interval : steps between checks once converged or capped (0: none).
    n_sparse_initial, n_sparse_add : sparse points per species at the first fit / per call.
    max_sparse_per_species : cap on the sparse set.
    refit_every : exact refit on all the run's oracle frames every this many calls (0 =
        never: incremental updates only). None (default): every call (1) for a run that
        starts from an empty model, 0 for one that starts from a fitted model. Incremental
        updates see sparse points added later only through the earlier ones (projected
        process, :meth:`SparseGPR.extend_sparse`); from an empty model nearly every point
        is "later", and that approximation cost a measured 2.6× in force error on ethanol
        with GFN2-xTB (RESULTS §12). The refit costs O(frames · M²) per call, negligible
        beside a quantum oracle. A refit needs every training frame, so a run that
        starts from a fitted model cannot ask for one.
    on_oracle_error : "skip" (log, keep the frame in run_dir/failed, continue with the
        model) or "stop" (checkpoint and raise OracleError).
    checkpoint_interval : steps between routine checkpoints (besides every call).
    trajectory_interval : steps between frames of ``run_dir/md.traj`` (0: no trajectory).
    started_empty : whether the run began from an empty model (None: the model is not
        fitted yet); :func:`resume` passes it, since a resumed run's model is fitted.
    """

    def __init__(self, model: SparseGPR, oracle, threshold=None, threshold_sigma=None,
                 run_dir=None, check_interval=20, adaptive=True, safety=3.0, min_interval=1,
                 max_calls=100, converge_checks=0, converge_steps=0, monitor_interval=500,
                 n_sparse_initial=30,
                 n_sparse_add=10, max_sparse_per_species=None, refit_every=None,
                 on_oracle_error="skip", checkpoint_interval=500, trajectory_interval=10,
                 skin=0.5, calibrate=True, calibration_window=3, started_empty=None,
                 **kwargs):
        super().__init__(**kwargs)
        if (threshold is None) == (threshold_sigma is None):
            raise ValueError("give exactly one of threshold (eV/Å) or threshold_sigma")
        if on_oracle_error not in ("skip", "stop"):
            raise ValueError("on_oracle_error must be 'skip' or 'stop'")
        if int(check_interval) < 1:
            raise ValueError("check_interval must be >= 1")
        self.implemented_properties = ["energy", "free_energy", "energies", "forces", "stress",
                                       "energy_std", "energies_std", "forces_std"]
        self.model = model
        self.oracle = oracle
        self.threshold = threshold
        self.threshold_sigma = threshold_sigma
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.check_interval = int(check_interval)
        self.adaptive = bool(adaptive)
        self.safety = float(safety)
        self.min_interval = int(min_interval)
        self.max_calls = None if max_calls is None or int(max_calls) <= 0 else int(max_calls)
        self.converge_checks = int(converge_checks)
        self.converge_steps = int(converge_steps)
        self.monitor_interval = int(monitor_interval)
        self.n_sparse_initial = int(n_sparse_initial)
        self.n_sparse_add = int(n_sparse_add)
        self.max_sparse_per_species = max_sparse_per_species
        self.refit_every = None if refit_every is None else int(refit_every)
        # resume() passes started_empty: a resumed run's model is fitted by then
        self.started_empty_ = (not hasattr(model, "alpha_") if started_empty is None
                               else bool(started_empty))
        if self.refit_every and not self.started_empty_:
            raise ValueError("refit_every needs a run that starts from an empty model: an exact "
                             "refit uses the run's oracle frames only, and the fitted model's "
                             "earlier training data are not part of the run (use 0 or None)")
        self.on_oracle_error = on_oracle_error
        self.checkpoint_interval = int(checkpoint_interval)
        self.trajectory_interval = int(trajectory_interval)
        self.skin = skin
        self.calibrate = bool(calibrate)
        self.calibration_window = int(calibration_window)
        self.frames_: list = []
        self.step_ = 0
        self.n_calls_ = 0
        self.last_call_step_ = -10 ** 9
        self.history_: list[dict] = []      # one entry per oracle call
        self.checks_: list[list] = []       # [step, calibrated max σ_F] per uncertainty check
        self.status_ = "learning"           # "learning" | "converged" | "capped"
        self.status_step_ = None            # step at which the status last changed
        self.quiet_checks_ = 0              # checks in a row without a trigger
        self.next_check_ = 0                # step of the next due check
        self.rates_: list[float] = []       # |Δs| between consecutive checks of the same model
        self.since_stop_ = [0, 0]           # [checks, above threshold] since capped/converged
        self.timers_ = {"model_s": 0.0, "check_s": 0.0, "oracle_s": 0.0, "learn_s": 0.0,
                        "io_s": 0.0}
        self.cpu_ = dict.fromkeys(self.timers_, 0.0)   # the same, in CPU seconds
        self.n_evaluations_ = 0
        self.validation_: dict | None = None
        self.trajectory_frames_ = 0
        self.last_traj_step_ = -1
        self.audit = None                   # optional callable(step, calibrated max σ_F)
        self.dyn = None
        self._observed = None
        self._traj = None
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
        """Factor applied to the latent posterior σ_F before comparing with the threshold.

        Every uncertain oracle call measures, before the model learns the frame, the
        ratio of the actual force RMSE to the predicted RMS latent σ_F on that frame; the
        factor is the geometric mean of the last ``calibration_window`` ratios (1 when
        ``calibrate`` is off or before the second call). This keeps the trigger honest
        when the latent std (which leaves out the noise) or the GP prior (δ) is
        mis-scaled for the system.
        """
        if not self.calibrate:
            return 1.0
        r = [h["calibration_ratio"] for h in self.history_ if h.get("calibration_ratio")]
        r = r[-self.calibration_window:]
        return float(np.exp(np.mean(np.log(r)))) if r else 1.0

    @property
    def fitted(self) -> bool:
        return hasattr(self.model, "alpha_")

    @property
    def refit_interval(self) -> int:
        """Oracle calls between exact refits (0: never), ``refit_every`` resolved."""
        if self.refit_every is None:
            return 1 if self.started_empty_ else 0
        return self.refit_every

    @property
    def capped(self) -> bool:
        return self.max_calls is not None and self.n_calls_ >= self.max_calls

    def attach(self, dyn, checkpoint=True):
        """Follow an ASE dynamics object: step counting, trajectory and checkpoints."""
        self.dyn = dyn
        self._observed = int(dyn.nsteps) - 1
        self._checkpointing = bool(checkpoint)
        dyn.attach(self._after_step, interval=1)
        return self

    def _after_step(self):
        """Observer: the positions of step ``dyn.nsteps`` have been evaluated."""
        step = int(self.dyn.nsteps)
        self._observed = step
        if self.run_dir is None or not self._checkpointing:
            return
        t0, c0 = time.perf_counter(), time.process_time()
        if (self.trajectory_interval and step % self.trajectory_interval == 0
                and step > self.last_traj_step_):
            self._write_trajectory(step)
        if self._dirty or (self.checkpoint_interval and step % self.checkpoint_interval == 0):
            self.checkpoint()
        self.timers_["io_s"] += time.perf_counter() - t0
        self.cpu_["io_s"] += time.process_time() - c0

    def _write_trajectory(self, step):
        from ase.io.trajectory import Trajectory
        if self._traj is None:
            path = self.run_dir / TRAJECTORY
            _truncate_trajectory(path, self.trajectory_frames_)
            if not path.exists():   # created through _tempfile: normal permissions
                fd, tmp = _tempfile(path)
                os.close(fd)
                with Trajectory(tmp, "w"):
                    pass
                os.replace(tmp, path)
            self._traj = Trajectory(str(path), "a")
        snap = self.dyn.atoms.copy()
        snap.info["step"] = int(step)
        self._traj.write(snap, energy=self.results.get("energy"),
                         forces=self.results.get("forces"))
        self.trajectory_frames_ += 1
        self.last_traj_step_ = int(step)

    def current_step(self) -> int:
        """MD step of the positions being evaluated (the number of steps taken to reach them)."""
        if self.dyn is None:
            return self.step_
        return int(self._observed) + 1

    def close(self):
        """Close the trajectory file (the run can be resumed later)."""
        if self._traj is not None:
            self._traj.close()
            self._traj = None

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
        t0, c0 = time.perf_counter(), time.process_time()
        gap.calculate(self.atoms, ["energy", "forces"], all_changes)
        res = dict(gap.results)
        t1, c1 = time.perf_counter(), time.process_time()
        self.timers_["model_s"] += t1 - t0
        self.cpu_["model_s"] += c1 - c0
        self.n_evaluations_ += 1
        if self.audit is not None:
            self.audit(step, self)
        if step >= self.next_check_ and self._checking():
            unc = self.model.uncertainty(self.atoms, nl=gap._neighbors(self.atoms))
            self.timers_["check_s"] += time.perf_counter() - t1
            self.cpu_["check_s"] += time.process_time() - c1
            res.update(unc)
            per_atom = np.sqrt(np.mean(unc["forces_std"] ** 2, axis=1))
            max_std = self.calibration * float(per_atom.max())
            if self._decide(step, max_std):
                if self._call_oracle(step, reason="uncertain", max_std=max_std, predicted=res,
                                     local_std=unc["energies_std"]):
                    return
        self.results.update(res)

    def _checking(self) -> bool:
        if self.status_ == "learning":
            return True
        return self.monitor_interval > 0

    def max_std_now(self) -> float:
        """Calibrated max per-atom latent σ_F (eV/Å) of the current atoms (for audits)."""
        nl = self._gap._neighbors(self.atoms) if self._gap is not None else None
        fs = self.model.uncertainty(self.atoms, nl=nl)["forces_std"]
        return self.calibration * float(np.sqrt(np.mean(fs ** 2, axis=1)).max())

    def _decide(self, step, s) -> bool:
        """Record a check of value s (eV/Å), schedule the next one; True = call the oracle."""
        thr = self.threshold_ev
        prev = self.checks_[-1] if self.checks_ else None
        self.checks_.append([int(step), round(float(s), 6)])
        above = s > thr
        if self.status_ != "learning":
            self.since_stop_[0] += 1
            self.since_stop_[1] += int(above)
            if above and self.status_ == "converged" and not self.capped:
                log.warning("step %d: σ_F %.4f eV/Å above the threshold %.4f after convergence: "
                            "learning again", step, s, thr)
                self._set_status("learning", step)
            else:
                self.next_check_ = step + max(1, self.monitor_interval)
                return False
        # learning
        if prev is not None and prev[0] > self.last_call_step_ and step > prev[0]:
            self.rates_.append(round(abs(s - prev[1]), 6))
            self.rates_ = self.rates_[-10:]
        if above and not self.capped and step - self.last_call_step_ >= self.min_interval:
            self.quiet_checks_ = 0
            return True
        if above:
            self.next_check_ = max(step + 1, self.last_call_step_ + self.min_interval)
            return False
        self.quiet_checks_ += 1
        quiet_since = self.checks_[-self.quiet_checks_][0]
        if (self.converge_checks and self.quiet_checks_ >= self.converge_checks
                and step - quiet_since >= self.converge_steps):
            self._set_status("converged", step)
            log.info("converged at step %d: no σ_F above %.4f eV/Å in the last %d checks "
                     "(since step %d); from now on one check every %d steps", step, thr,
                     self.quiet_checks_, quiet_since, self.monitor_interval)
            self.next_check_ = step + max(1, self.monitor_interval)
            return False
        self.next_check_ = step + self._gap_after(s, thr)
        return False

    def _gap_after(self, s, thr) -> int:
        """Steps to the next check after a check of value s < thr (see module docstring)."""
        if not self.adaptive:
            return self.check_interval
        if not self.rates_:
            return 1
        d = max(self.rates_)
        room = 1.0 if d <= 0 else min(1.0, (thr - s) / (self.safety * d))
        return int(max(1, np.floor(self.check_interval * room ** 2)))

    def _set_status(self, status, step):
        self.status_ = status
        self.status_step_ = int(step)
        self.since_stop_ = [0, 0]
        if status == "learning":
            self.quiet_checks_ = 0

    def stop_reason(self) -> str:
        """Why the run stopped calling the oracle (or that it did not)."""
        thr = self.threshold_ev
        n, up = self.since_stop_
        frac = f"{up} of {n} monitor checks since were above it ({100 * up / n:.0f} %)" if n \
            else "no monitor check since"
        if self.status_ == "converged":
            return (f"converged at step {self.status_step_}: no σ_F above the threshold "
                    f"{thr:.4g} eV/Å in {self.converge_checks} checks in a row over at least "
                    f"{self.converge_steps} steps; {frac}")
        if self.status_ == "capped":
            return (f"CALL CAP REACHED at step {self.status_step_} ({self.max_calls} calls): the "
                    f"model is NOT converged; {frac} (threshold {thr:.4g} eV/Å). Resume with a "
                    "larger max_calls to keep learning")
        last = self.last_call_step_ if self.n_calls_ else None
        return (f"still learning when the run ended: {self.n_calls_} calls, last at step "
                f"{last}, {self.quiet_checks_} checks since without a trigger (convergence "
                f"needs {self.converge_checks or '∞'})")

    def cost_summary(self) -> dict:
        """Seconds spent in model evaluations, uncertainty checks, oracle, learning, files."""
        t = {k: round(v, 3) for k, v in self.timers_.items()}
        t["n_checks"] = len(self.checks_)
        t["n_evaluations"] = self.n_evaluations_
        return t

    # ---------------------------------------------------------------- oracle
    def _call_oracle(self, step, reason, max_std, predicted=None, local_std=None) -> bool:
        t0, c0 = time.perf_counter(), time.process_time()
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
        self.timers_["oracle_s"] += t_oracle
        self.cpu_["oracle_s"] += time.process_time() - c0
        if len(frame) > 1 and not np.any(f):
            log.warning("the oracle returned all-zero forces at step %d: its parameters or "
                        "interaction range probably do not fit this structure (nothing to "
                        "learn from forces)", step)
        labelled.info["otf_step"] = int(step)
        self.frames_.append(labelled)
        self.n_calls_ += 1
        self.last_call_step_ = step
        if self.run_dir is not None:   # keep the oracle's answer before anything else
            _atomic_write_xyz(self.run_dir / "train.xyz", self.frames_)
        t1, c1 = time.perf_counter(), time.process_time()
        added = self._learn(labelled, local_std)
        t_update = time.perf_counter() - t1
        self.timers_["learn_s"] += t_update
        self.cpu_["learn_s"] += time.process_time() - c1
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
        # schedule: nothing to check before min_interval
        self.quiet_checks_ = 0
        self.next_check_ = step + max(1, self.min_interval)
        if self.capped:
            self._set_status("capped", step)
            log.warning("CALL CAP REACHED: %d oracle calls (max_calls) at step %d; the model is "
                        "not known to be converged. No more calls; %s", self.n_calls_, step,
                        f"one monitor check every {self.monitor_interval} steps reports how "
                        "often σ_F stays above the threshold" if self.monitor_interval else
                        "no more checks")
            self.next_check_ = step + max(1, self.monitor_interval)
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
        self.next_check_ = step + max(1, self.min_interval)
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
        if self.refit_interval and self.n_calls_ % self.refit_interval == 0:
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
    _SETTINGS = ("threshold", "threshold_sigma", "check_interval", "adaptive", "safety",
                 "min_interval", "max_calls", "converge_checks", "converge_steps",
                 "monitor_interval",
                 "n_sparse_initial", "n_sparse_add", "max_sparse_per_species", "refit_every",
                 "on_oracle_error", "checkpoint_interval", "trajectory_interval", "calibrate",
                 "calibration_window")

    def state(self) -> dict:
        rng = getattr(self.dyn, "rng", None) if self.dyn is not None else None
        rng_state = None
        if rng is not None and hasattr(rng, "bit_generator"):
            rng_state = rng.bit_generator.state
        # the step whose positions md_state.xyz holds: the last one fully taken
        step = int(self.dyn.nsteps) if self.dyn is not None else self.step_
        return {"version": STATE_VERSION, "step": step, "calls": self.n_calls_,
                "last_call_step": self.last_call_step_, "n_frames": len(self.frames_),
                **{k: getattr(self, k) for k in self._SETTINGS},
                "threshold_ev": self.threshold_ev, "calibration": self.calibration,
                "started_empty": self.started_empty_,
                "status": self.status_, "status_step": self.status_step_,
                "quiet_checks": self.quiet_checks_, "next_check": self.next_check_,
                "rates": self.rates_, "since_stop": self.since_stop_,
                "timers": self.timers_, "cpu_timers": self.cpu_, "n_evaluations": self.n_evaluations_,
                "trajectory_frames": self.trajectory_frames_,
                "last_trajectory_step": self.last_traj_step_,
                "validation": self.validation_,
                "dynamics": _dynamics_record(self.dyn),
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


def _dynamics_record(dyn):
    """What :func:`resume` needs to rebuild an ASE Langevin / VelocityVerlet."""
    if dyn is None:
        return None
    rec = {"type": type(dyn).__name__, "timestep_fs": float(dyn.dt / units.fs)}
    if hasattr(dyn, "temp") and hasattr(dyn, "fr"):
        rec.update(temperature_K=float(np.mean(dyn.temp)) / units.kB,
                   friction_per_fs=float(np.mean(dyn.fr)) * units.fs,
                   fixcm=bool(getattr(dyn, "fix_com", False)))
    return rec


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def fresh_frames_cost(n_frames=50, interval=20) -> int:
    """Oracle calls :func:`fresh_frames` makes: one per MD step (5 + n_frames) × interval."""
    return (5 + int(n_frames)) * int(interval) + 1


def fresh_frames(atoms, oracle, temperature, n_frames=50, interval=20, timestep=2.0, seed=123):
    """Independent validation frames: Langevin MD with the oracle itself, every ``interval`` steps.

    Costs :func:`fresh_frames_cost` oracle calls (the MD steps; frames reuse the
    step's own results, plus the stress where the oracle did not give it).
    """
    from ase.calculators.singlepoint import SinglePointCalculator
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
        res = {"energy": at.get_potential_energy(), "forces": at.get_forces()}
        if at.pbc.all():
            res["stress"] = at.get_stress()
        snap.calc = SinglePointCalculator(snap, **res)
        frames.append(snap)
    return frames


# -------------------------------------------------------------------- driver
DEFAULT_MODEL = dict(cutoff=5.5, n_max=8, l_max=6, atom_sigma=0.5, cutoff_width=1.0)
DEFAULT_KERNEL = dict(zeta=4, delta=1.0, sigma_energy=0.001, sigma_force=0.03)


def default_model(species, **changes):
    """An empty model for on-the-fly learning (SOAP 5.5 Å, n_max 8, l_max 6, ζ 4).

    ``changes`` override keys of ``DEFAULT_MODEL`` (the SOAP) and ``DEFAULT_KERNEL``
    (ζ, δ in eV, σ_E in eV/atom, σ_F in eV/Å). Choose the cutoff to cover the oracle's
    interaction range (ASE's EMT for Cu reaches 5.4 Å: a 4.5 Å descriptor leaves ~0.06 eV/Å
    of force error that no data can remove); stiff covalent bonds (O–H, C–H) need a
    short, sharp SOAP instead (e.g. water: cutoff 3, atom_sigma 0.3, ζ 2).
    """
    from .descriptors import SOAP
    unknown = sorted(set(changes) - set(DEFAULT_MODEL) - set(DEFAULT_KERNEL))
    if unknown:
        raise ValueError(f"default_model: unknown setting(s) {', '.join(unknown)}")
    soap = {k: changes.get(k, v) for k, v in DEFAULT_MODEL.items()}
    kernel = {k: changes.get(k, v) for k, v in DEFAULT_KERNEL.items()}
    return SparseGPR(SOAP(species, **soap), **kernel, sigma_virial=0.02, e0="average",
                     n_sparse=30)


def _langevin(atoms, temperature, timestep, friction, seed, fixcm=False):
    from ase.md.langevin import Langevin
    return Langevin(atoms, timestep * units.fs, temperature_K=temperature,
                    friction=friction / units.fs, fixcm=fixcm, rng=np.random.default_rng(seed))


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
        raise FileExistsError(f"{run_dir} holds a run already: resume it (--resume {run_dir}) "
                              "or pick another folder")
    check_oracle_fits(oracle, atoms)
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
        otf.close()
        if handler is not None:
            logging.getLogger("gapcalc").removeHandler(handler)
            handler.close()


def _run_dynamics(otf, dyn, atoms, total, log_interval):
    n = len(atoms)
    t0 = time.perf_counter()
    marks = {"t": t0, "step": dyn.nsteps}
    timers0 = dict(otf.timers_)
    checks0 = len(otf.checks_)
    cpu0 = time.process_time()
    cpus0 = dict(otf.cpu_)

    def progress():
        now = time.perf_counter()
        done = dyn.nsteps - marks["step"]
        rate = done / max(now - marks["t"], 1e-9) if done else float("nan")
        marks.update(t=now, step=dyn.nsteps)
        last = otf.checks_[-1][1] if otf.checks_ else float("nan")
        log.info("MD step %d/%d  T %.0f K  Epot %.4f eV/atom  last max σ_F %.4f eV/Å  oracle "
                 "calls %d  checks %d  %s  sparse %d  %.1f steps/s (%.0f µs/atom/step)",
                 dyn.nsteps, total, atoms.get_temperature(), atoms.get_potential_energy() / n,
                 last, otf.n_calls_, len(otf.checks_), otf.status_,
                 otf.model.M_ if otf.fitted else 0, rate, 1e6 / rate / n if done else float("nan"))

    dyn.attach(progress, interval=max(1, int(log_interval)))
    remaining = total - dyn.nsteps
    if remaining > 0:
        dyn.run(remaining)
    else:
        log.info("nothing to run: the run is at step %d of %d", dyn.nsteps, total)
    otf.checkpoint()
    wall = time.perf_counter() - t0
    c = {k: otf.timers_[k] - timers0.get(k, 0.0) for k in otf.timers_}   # this session
    md_s = max(wall - c["check_s"] - c["oracle_s"] - c["learn_s"] - c["io_s"], 1e-9)
    cpu = time.process_time() - cpu0
    cc = {k: otf.cpu_[k] - cpus0.get(k, 0.0) for k in otf.cpu_}
    md_cpu = max(cpu - cc["check_s"] - cc["oracle_s"] - cc["learn_s"] - cc["io_s"], 1e-9)
    otf.session_ = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                    "md_cpu_s": round(md_cpu, 3), "check_cpu_s": round(cc["check_s"], 3),
                    "uncertainty_fraction_of_md_cpu": round(cc["check_s"] / md_cpu, 3),
                    "md_s": round(md_s, 3),
                    "checks": len(otf.checks_) - checks0,
                    **{k: round(v, 3) for k, v in c.items()}}
    log.info("learning run done: step %d, %d oracle calls; this session: wall %.1f s (MD %.1f s, "
             "%d uncertainty checks %.1f s = %.0f %% of MD, oracle %.1f s, learning %.1f s, "
             "files %.1f s); CPU %.1f s (MD %.1f s, checks %.1f s = %.0f %% of MD)", dyn.nsteps,
             otf.n_calls_, wall, md_s, otf.session_["checks"], c["check_s"],
             100 * c["check_s"] / md_s, c["oracle_s"], c["learn_s"], c["io_s"], cpu, md_cpu,
             cc["check_s"], 100 * cc["check_s"] / md_cpu)
    (log.warning if otf.status_ == "capped" else log.info)("why the oracle calls stopped: %s",
                                                          otf.stop_reason())
    return otf


def _rebuild_dynamics(atoms, state, cfg, make_dynamics):
    if make_dynamics is not None:
        return make_dynamics(atoms)
    if "temperature" in cfg:        # started by learn() / the CLI
        return _langevin(atoms, cfg["temperature"], cfg["timestep"], cfg["friction"], cfg["seed"])
    rec = state.get("dynamics") or {}
    kind = rec.get("type")
    if kind == "Langevin":
        from ase.md.langevin import Langevin
        return Langevin(atoms, rec["timestep_fs"] * units.fs, temperature_K=rec["temperature_K"],
                        friction=rec["friction_per_fs"] / units.fs, fixcm=rec.get("fixcm", False),
                        rng=np.random.default_rng())
    if kind == "VelocityVerlet":
        from ase.md.verlet import VelocityVerlet
        return VelocityVerlet(atoms, rec["timestep_fs"] * units.fs)
    raise ValueError(f"this run's dynamics ({kind or 'unknown'}) cannot be rebuilt by itself: "
                     "pass make_dynamics=callable(atoms) -> ASE dynamics to resume()")


def _started_empty(state) -> bool:
    """Whether a run began from an empty model (states before this key: refits imply it)."""
    return bool(state.get("started_empty", bool(state.get("refit_every"))))



def resume(run_dir, oracle=None, steps=None, max_calls=None, log_interval=None,
           make_dynamics=None):
    """Continue a run from its checkpoint (e.g. after kill -9); returns the OnTheFly object.

    oracle : calculator or spec string; needed when the run's oracle was a Python object
        (spec recorded otherwise). steps : the new *total* number of MD steps (needed for
        runs started from Python; default: the run's own). max_calls : a new cap (None:
        the run's; 0: no cap). log_interval : steps between progress lines. make_dynamics : callable
        (atoms) → ASE dynamics, for dynamics other than Langevin / VelocityVerlet.
    """
    from . import load_model_file
    run_dir = Path(run_dir)
    state_path = run_dir / "state.json"
    if not state_path.exists():
        raise FileNotFoundError(f"{run_dir}: no state.json, nothing to resume")
    state = json.loads(state_path.read_text())
    if state.get("version", 0) > STATE_VERSION:
        raise ValueError(f"{state_path}: state version {state['version']} is newer than this gapcalc")
    cfg = dict(state.get("config") or {})
    if oracle is None:
        if not cfg.get("oracle"):
            raise ValueError(f"{run_dir}: this run's oracle was a Python object: pass it "
                             "(resume(..., oracle=calc) or --oracle module:factory)")
        oracle = cfg["oracle"]
    if isinstance(oracle, str):
        if cfg.get("oracle") and oracle.lower() != str(cfg["oracle"]).lower():
            raise ValueError(f"{run_dir}: the run's oracle is {cfg['oracle']!r}, not {oracle!r}")
        cfg["oracle"] = oracle
        oracle = make_oracle(oracle)
    total = steps if steps is not None else cfg.get("steps")
    if total is None:
        raise ValueError(f"{run_dir}: this run was started from Python and has no step total: "
                         "pass steps= (the new total number of MD steps)")
    frames = read(run_dir / "train.xyz", ":") if (run_dir / "train.xyz").exists() else []
    saved = (run_dir / "model.npz").exists()
    model = (load_model_file(run_dir / "model.npz") if saved
             else SparseGPR.from_params(state["model_params"]))
    kwargs = {k: state[k] for k in OnTheFly._SETTINGS if k in state}
    if max_calls is not None:
        kwargs["max_calls"] = int(max_calls) or None
    otf = OnTheFly(model, oracle, run_dir=run_dir,
                   started_empty=_started_empty(state), **kwargs)
    known = int(model.training_summary_.get("n_frames", 0)) if saved else 0
    if saved and len(frames) > known:  # oracle answers written before the model was saved
        log.info("folding %d oracle frame(s) saved after the last model checkpoint",
                 len(frames) - known)
        if otf.refit_interval:
            model.refit(frames)
        else:
            model.update(frames[known:])
    elif not saved and frames:
        model.fit(frames)
    otf.frames_ = frames
    otf.n_calls_ = max(int(state["calls"]), len(frames))
    otf.last_call_step_ = max([int(state["last_call_step"])]
                              + [int(f.info.get("otf_step", -10 ** 9)) for f in frames])
    otf.history_ = state["history"]
    otf.checks_ = state["checks"]
    otf.status_ = state.get("status", "learning")
    otf.status_step_ = state.get("status_step")
    otf.quiet_checks_ = int(state.get("quiet_checks", 0))
    otf.next_check_ = int(state.get("next_check", 0))
    otf.rates_ = list(state.get("rates", []))
    otf.since_stop_ = list(state.get("since_stop", [0, 0]))
    otf.timers_.update(state.get("timers", {}))
    otf.cpu_.update(state.get("cpu_timers", {}))
    otf.n_evaluations_ = int(state.get("n_evaluations", 0))
    otf.validation_ = state.get("validation")
    otf.trajectory_frames_ = int(state.get("trajectory_frames", 0))
    otf.last_traj_step_ = int(state.get("last_trajectory_step", -1))
    if otf.status_ == "capped" and not otf.capped:
        log.info("max_calls raised to %s: learning again", otf.max_calls)
        otf._set_status("learning", int(state["step"]))
    elif otf.status_ != "capped" and otf.capped:
        otf._set_status("capped", int(state["step"]))
    cfg["steps"] = int(total)
    if log_interval is not None:
        cfg["log_interval"] = int(log_interval)
    otf.config = cfg
    atoms = read(run_dir / "md_state.xyz")
    atoms.calc = otf
    dyn = _rebuild_dynamics(atoms, state, cfg, make_dynamics)
    if state.get("rng_state") and hasattr(getattr(dyn, "rng", None), "bit_generator"):
        dyn.rng.bit_generator.state = state["rng_state"]
    dyn.nsteps = int(state["step"])
    otf.attach(dyn)
    if otf.run_dir is not None and otf.trajectory_interval:
        _truncate_trajectory(run_dir / TRAJECTORY, otf.trajectory_frames_)
    log.info("resuming %s at step %d of %d with %d oracle frames (%s)", run_dir, dyn.nsteps,
             total, len(frames), otf.status_)
    return _run(otf, dyn, atoms, int(total), cfg.get("log_interval", 250))
