"""The built-in on-the-fly demo (`gapcalc learn` defaults): cost of the uncertainty, and an audit
of the adaptive check schedule against a per-step check.

Runs the demo (fcc Cu 108, EMT oracle, Langevin 800 K, 2 fs, CLI defaults) and reports:
wall time; the time in uncertainty checks as a fraction of the plain MD time of the
same run (MD = wall − checks − oracle − learning − files); learning oracle calls
(counted by the oracle itself); the final model's force MAE on 50 fresh 800 K frames
(Langevin MD with EMT, as `gapcalc learn --validate 50`).

With ``--audit``, every MD step's positions are kept, with a copy of the model and its
calibration factor after every call. Afterwards the calibrated max σ_F is recomputed at
*every* step with the model in force at that step, and the steps where a per-step check
would have called the oracle are found: for each stretch between two calls of the run
(and after the last), the first step ≥ last call + min_interval with σ_F above the
threshold. The run "catches" that step if its own next call lies in the same stretch;
the report lists each such step with the run's delay, and every stretch where the
per-step check would have called but the run did not (a miss). The audit costs one
σ_F evaluation per step (minutes); use ``--audit-steps`` to limit it.

    NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/otf_schedule.py --audit
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("otf_schedule")


class CountingEMT:
    """EMT that counts how often it is asked (one calculate() per labelled frame)."""

    def __new__(cls):
        from ase.calculators.emt import EMT

        class _Counting(EMT):
            calls = 0

            def calculate(self, *a, **k):
                type(self).calls += 1
                return super().calculate(*a, **k)
        return _Counting()


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(args):
    from ase.build import bulk
    from gapcalc import active
    from gapcalc.cli import LEARN_DEFAULTS as D
    oracle = CountingEMT()
    atoms = bulk("Cu", "fcc", 3.61, cubic=True) * (3, 3, 3)
    run_dir = Path(tempfile.mkdtemp(prefix="otf_schedule_"))
    shutil.rmtree(run_dir)
    kept = {"positions": {}, "models": {}, "cal": {}}

    def audit(step, otf):
        if step not in kept["positions"]:
            kept["positions"][step] = otf.atoms.positions.copy()
            kept["cells"] = otf.atoms.cell.array.copy()
        if otf.n_calls_ not in kept["models"]:
            kept["models"][otf.n_calls_] = copy.deepcopy(otf.model)
            kept["cal"][otf.n_calls_] = otf.calibration

    otf_kw = dict(threshold=args.threshold or D["threshold"],
                  check_interval=args.check_interval or D["check_interval"],
                  min_interval=D["min_interval"], max_calls=D["max_calls"] or None,
                  converge_checks=D["converge_checks"], converge_steps=D["converge_steps"],
                  monitor_interval=D["monitor_interval"],
                  n_sparse_initial=D["n_sparse_initial"], n_sparse_add=D["n_sparse_add"],
                  trajectory_interval=D["trajectory_interval"])
    if args.safety:
        otf_kw["safety"] = args.safety
    t0, c0 = time.perf_counter(), cpu_seconds()
    if args.audit:
        # same run as active.learn, with the audit hook set before the first step
        orig = active.OnTheFly.__init__

        def init(self, *a, **k):
            orig(self, *a, **k)
            self.audit = audit
        active.OnTheFly.__init__ = init
    try:
        otf = active.learn(atoms, oracle, run_dir, oracle_spec="emt", temperature=D["temperature"],
                           steps=args.steps, timestep=D["timestep"], seed=args.seed,
                           log_interval=1000, **otf_kw)
    finally:
        if args.audit:
            active.OnTheFly.__init__ = orig
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    c = otf.cost_summary()
    md_s = wall - c["check_s"] - c["oracle_s"] - c["learn_s"] - c["io_s"]
    res = {"steps": args.steps, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
           "learning_calls": otf.n_calls_, "oracle_counted": type(oracle).calls,
           "checks": c["n_checks"], "check_s": c["check_s"], "md_s": round(md_s, 2),
           "uncertainty_fraction_of_md": round(c["check_s"] / md_s, 3),
           "session": getattr(otf, "session_", None),
           "status": otf.status_, "stop_reason": otf.stop_reason(), "M": otf.model.M_,
           "calls_at": [h["step"] for h in otf.history_ if "call" in h],
           "threshold": otf.threshold_ev, "check_interval": otf.check_interval,
           "safety": otf.safety}
    if args.validate:
        from gapcalc.metrics import error_table
        frames = active.fresh_frames(otf.frames_[0].copy(), oracle, D["temperature"],
                                     n_frames=args.validate)
        o = error_table(otf.model, frames)["overall"]
        res["fresh_force_mae"] = round(o["force_mae"], 5)
        res["fresh_force_rmse"] = round(o["force_rmse"], 5)
    if args.audit:
        res["audit"] = audit_report(otf, kept, args.audit_steps or args.steps)
    shutil.rmtree(run_dir, ignore_errors=True)
    return res


def audit_report(otf, kept, n_steps):
    """Steps where a per-step check would have called, and whether the run did."""
    from ase import Atoms
    thr = otf.threshold_ev
    calls = [h["step"] for h in otf.history_ if "call" in h]
    model_at = []            # number of calls made before step k's decision
    pos = kept["positions"]
    n_steps = min(n_steps, max(pos))
    k_call = 0
    base = Atoms("Cu" * 0)
    del base
    template = otf.frames_[0].copy()
    template.calc = None
    out = []
    t0 = time.perf_counter()
    sigma = np.full(n_steps + 1, np.nan)
    for step in range(n_steps + 1):
        while k_call < len(calls) and calls[k_call] < step:
            k_call += 1
        model_at.append(k_call)
        m = kept["models"].get(k_call)
        if m is None or step not in pos:
            continue
        at = template.copy()
        at.positions = pos[step]
        at.cell = kept["cells"]
        fs = m.uncertainty(at)["forces_std"]
        sigma[step] = kept["cal"][k_call] * float(np.sqrt(np.mean(fs ** 2, axis=1)).max())
        if step % 500 == 0:
            log.info("audit step %d/%d (%.0f s)", step, n_steps, time.perf_counter() - t0)
    # stretches between calls of the run
    bounds = calls + [n_steps + 1]
    for i in range(len(calls)):
        lo, hi = calls[i] + otf.min_interval, min(bounds[i + 1], n_steps + 1)
        if i + 1 < len(calls):
            hi = calls[i + 1] + 1        # the run's own call step counts
        over = [s for s in range(lo, min(hi, n_steps + 1)) if sigma[s] > thr]
        if not over:
            continue
        first = over[0]
        caught = i + 1 < len(calls) and calls[i + 1] <= n_steps
        out.append({"stretch_after_call": i + 1, "per_step_would_call_at": first,
                    "run_called_at": calls[i + 1] if caught else None,
                    "delay_steps": (calls[i + 1] - first) if caught else None,
                    "steps_above_threshold_in_stretch": len(over)})
    missed = [o for o in out if o["run_called_at"] is None]
    return {"steps_audited": n_steps, "threshold": thr, "per_step_triggers": out,
            "missed": missed, "max_sigma_after_last_call":
            float(np.nanmax(sigma[calls[-1] + 1:])) if calls[-1] < n_steps else None,
            "audit_s": round(time.perf_counter() - t0, 1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--check-interval", type=int, default=None)
    p.add_argument("--safety", type=float, default=None)
    p.add_argument("--validate", type=int, default=50)
    p.add_argument("--audit", action="store_true")
    p.add_argument("--audit-steps", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the result here")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("gapcalc.gpr").setLevel(logging.WARNING)
    res = run(a)
    print(json.dumps(res, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    print(f"threads: NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS')}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}; "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    sys.exit(main())
