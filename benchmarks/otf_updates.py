"""Cost of an on-the-fly model update over 50 oracle calls: flat in the number of frames.

How to run (from the repository root; needs nothing but gapcalc)::

    python benchmarks/otf_updates.py                 # 50 calls, fixed and growing sparse sets
    python benchmarks/otf_updates.py --calls 20 --json out.json

What is measured
    ``gapcalc.active.OnTheFly`` drives Langevin MD (1000 K, 2 fs) of a rattled 3x3x3 fcc
    Cu cell (108 atoms) with EMT as the oracle and a threshold of 0 eV/Å, so the oracle is
    called every ``--interval`` steps until ``--calls`` calls. Every call folds the
    frame's rows (1 energy + 324 forces + 6 virials) into the kept QR triangles; with
    ``n_sparse_add > 0`` it also extends the sparse set. The wall time of each update
    (``history_[k]["update_s"]``, the model update only, not the oracle) is reported per
    call, with the least-squares slope against the call index and the mean of the first
    and last ten calls.

    Two runs: ``fixed`` (first fit on all 108 environments of the first frame, none
    added: the cost of a call must not depend on how many frames came before) and ``growing`` (10 sparse points
    added per call: the cost then follows M², the sparse-set size, not the frame count).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.langevin import Langevin

from gapcalc import SOAP, SparseGPR
from gapcalc.active import OnTheFly


def run(calls: int, interval: int, n_initial: int, n_add: int, seed: int = 0) -> dict:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)
    atoms.rattle(0.05, seed=seed)
    model = SparseGPR(SOAP(["Cu"], cutoff=5.0, n_max=8, l_max=6, atom_sigma=0.5),
                      sigma_energy=0.001, sigma_force=0.03, sigma_virial=0.02)
    otf = OnTheFly(model, EMT(), threshold=0.0, check_interval=interval,
                   min_interval=interval, max_calls=calls, n_sparse_initial=n_initial,
                   n_sparse_add=n_add)
    atoms.calc = otf
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=1000, friction=0.02,
                   rng=np.random.default_rng(seed))
    otf.attach(dyn)
    t0 = time.perf_counter()
    steps = 0
    while otf.n_calls_ < calls and steps < 50 * calls * interval:
        dyn.run(interval)
        steps += interval
    hist = [h for h in otf.history_ if "update_s" in h]
    upd = np.array([h["update_s"] for h in hist])
    sparse = np.array([h["sparse"] for h in hist])
    k = np.arange(1, len(upd) + 1)
    later = upd[1:]                      # call 1 is the initial fit
    slope = float(np.polyfit(k[1:], later, 1)[0]) if len(later) > 2 else float("nan")
    return {"calls": len(upd), "steps": steps, "wall_s": time.perf_counter() - t0,
            "update_s": upd.tolist(), "sparse": sparse.tolist(),
            "first_fit_s": float(upd[0]), "slope_s_per_call": slope,
            "mean_first10_s": float(np.mean(later[:10])),
            "mean_last10_s": float(np.mean(later[-10:]))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("--interval", type=int, default=4, help="MD steps between calls")
    p.add_argument("--json")
    a = p.parse_args(argv)
    out = {"fixed": run(a.calls, a.interval, 200, 0),
           "growing": run(a.calls, a.interval, 30, 10)}
    print("| run | calls | sparse M (first→last) | first fit s | update s, calls 2-11 "
          "| update s, last 10 | slope ms/call |")
    print("|---|---|---|---|---|---|---|")
    for name, r in out.items():
        print(f"| {name} | {r['calls']} | {r['sparse'][0]}→{r['sparse'][-1]} | "
              f"{r['first_fit_s']:.2f} | {r['mean_first10_s']:.3f} | {r['mean_last10_s']:.3f} | "
              f"{1e3 * r['slope_s_per_call']:+.2f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
