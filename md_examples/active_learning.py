"""On-the-fly learning with an arbitrary ASE calculator as the oracle.

Shows: :class:`gapcalc.active.OnTheFly` wrapping an empty model and *any* ASE
calculator (here ASE's EMT for an Al-Cu alloy, standing in for a DFT code), attached
to an ordinary ASE dynamics object; the oracle is called only when the predicted force
std exceeds the threshold (eV/Å); everything is checkpointed in ``--run-dir`` (with the
MD trajectory in ``md.traj``) and the run can be continued with ``gapcalc.active.resume``
(``--resume`` below). With ``--validate N`` the learned model is checked against N fresh
oracle frames at the end (opt-in: it costs (N + 5)·10 + 1 more oracle calls).

Run from the repository root:

    python3 md_examples/active_learning.py --steps 1000            # ~1-2 min
    python3 md_examples/active_learning.py --steps 2000 --resume   # continue it to 2000 steps
    python3 md_examples/active_learning.py --steps 30              # smoke test

To use your own reference code, replace ``make_oracle()`` by a function returning
its ASE calculator (e.g. ``Vasp(...)``, ``Espresso(...)``, ``GPAW(...)``).
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
from ase import units
from ase.build import bulk
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

from gapcalc.active import OnTheFly, default_model, fresh_frames, resume
from gapcalc.metrics import error_table, format_table


def make_oracle():
    """The reference calculator: any ASE calculator works here."""
    from ase.calculators.emt import EMT
    return EMT()


def alloy(seed=0):
    """fcc Al with a quarter of the sites Cu, 32 atoms."""
    atoms = bulk("Al", "fcc", 4.05, cubic=True) * (2, 2, 2)
    rng = np.random.default_rng(seed)
    atoms.numbers[rng.choice(len(atoms), len(atoms) // 4, replace=False)] = 29
    return atoms


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--temperature", type=float, default=600.0, help="K")
    p.add_argument("--threshold", type=float, default=0.2, help="eV/Å")
    p.add_argument("--run-dir", default="otf_alloy")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir up to --steps steps in total")
    p.add_argument("--overwrite", action="store_true",
                   help="delete an existing run in --run-dir and start again")
    p.add_argument("--validate", type=int, default=0,
                   help="fresh oracle frames for the final error (costs (N+5)*10+1 oracle calls)")
    p.add_argument("--no-validate", action="store_true", help="(kept for old scripts; default)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if a.resume:     # a run started from Python resumes with its oracle and a new step total
        otf = resume(a.run_dir, oracle=make_oracle(), steps=a.steps)
        print(f"resumed to step {otf.dyn.nsteps}: {otf.n_calls_} oracle calls; "
              f"{otf.stop_reason()}")
        return 0
    if (Path(a.run_dir) / "state.json").exists():
        if not a.overwrite:   # oracle answers are never thrown away silently
            p.error(f"{a.run_dir} holds a run: continue it with --resume, or pass --overwrite "
                    "to delete it and start again")
        shutil.rmtree(a.run_dir)

    atoms = alloy()
    oracle = make_oracle()
    otf = OnTheFly(default_model(np.unique(atoms.numbers)), oracle, threshold=a.threshold,
                   run_dir=a.run_dir, check_interval=2, min_interval=10, max_calls=30,
                   n_sparse_initial=20, n_sparse_add=10)
    atoms.calc = otf
    MaxwellBoltzmannDistribution(atoms, temperature_K=a.temperature,
                                 rng=np.random.default_rng(1))
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=a.temperature, friction=0.01 / units.fs,
                   fixcm=False, rng=np.random.default_rng(0))
    otf.attach(dyn)                     # step counting, trajectory, checkpoints
    dyn.run(a.steps)
    otf.checkpoint()
    otf.close()
    print(f"{a.steps} steps, {otf.n_calls_} oracle calls, {otf.model.M_} sparse points; "
          f"{otf.stop_reason()}")
    for h in otf.history_:
        print(f"  step {h['step']:>5}: {h['reason']:<12} max σ_F {h.get('max_force_std')} eV/Å")
    if a.validate:
        print(f"validation: {a.validate} fresh frames = {(a.validate + 5) * 10 + 1} more oracle "
              "calls (not learning calls)")
        frames = fresh_frames(alloy(), oracle, a.temperature, n_frames=a.validate, interval=10)
        print(format_table(error_table(otf.model, frames)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
