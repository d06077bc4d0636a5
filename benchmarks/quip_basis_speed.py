"""Prediction speed of QUIP's SOAP radial basis against gapcalc's own (same n_max, l_max).

    python benchmarks/quip_basis_speed.py              # Si 512 atoms, n_max 8, l_max 6
    python benchmarks/quip_basis_speed.py --atoms 216 --n-max 12 --l-max 8 --json out.json

Two SparseGPR models that differ only in ``radial_basis`` ("gto" and "quip") are fitted on
the same small Si training set (the first frames of benchmarks/data/si_mlearn, same sparse
points count) and timed in the same run, single-threaded, as ASE calculators on the same
rattled diamond supercell: energy + forces per call (each call moves every atom by ±1e-4 Å,
so nothing is served from a cache), best of ``--repeat`` rounds of ``--calls`` calls, CPU
time of this (single-threaded) process.
Both bases use the same tabulated radial integral (the QUIP table is finer: 0.00025 Å
instead of 0.005 Å, for 1e-10 agreement with quippy), so the ratio quip/gto should be ≈ 1.
Prints µs/atom per call and the ratio; with ``--json`` writes every number.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _common import alternating_calls  # noqa: E402


def fit(basis, frames, n_max, l_max, n_sparse):
    from gapcalc import SOAP, SparseGPR
    desc = SOAP([14], cutoff=5.0, cutoff_width=0.5, n_max=n_max, l_max=l_max, atom_sigma=0.5,
                radial_basis=basis)
    return SparseGPR(desc, zeta=4, delta=1.0, n_sparse=n_sparse, sigma_energy=0.002,
                     sigma_force=0.1, sigma_virial=0.1, seed=1).fit(frames)


def timed(calc, atoms, calls, repeat):
    call = alternating_calls(calc, atoms, ["energy", "forces"])
    call()                                     # compile / warm caches
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()       # CPU time: robust on a shared machine
        for _ in range(calls):
            call()
        best = min(best, (time.process_time() - t0) / calls)
    return 1e6 * best / len(atoms)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--atoms", type=int, default=512, choices=[64, 216, 512, 1000])
    p.add_argument("--n-max", type=int, default=8)
    p.add_argument("--l-max", type=int, default=6)
    p.add_argument("--n-sparse", type=int, default=200)
    p.add_argument("--train-frames", type=int, default=40)
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json")
    a = p.parse_args(argv)
    from ase.build import bulk
    from ase.io import read
    from gapcalc.calculator import GAPCalculator

    frames = read(str(HERE / "data" / "si_mlearn" / "si_mlearn_train.xyz"),
                  f":{a.train_frames}")
    n_rep = round((a.atoms / 8) ** (1 / 3))
    atoms = bulk("Si", "diamond", 5.43, cubic=True).repeat((n_rep,) * 3)
    atoms.rattle(0.05, seed=5)
    calcs = {b: GAPCalculator(fit(b, frames, a.n_max, a.l_max, a.n_sparse))
             for b in ("gto", "quip")}
    res = {b: [] for b in calcs}
    for _ in range(2):                          # interleave to share the machine's noise
        for b, calc in calcs.items():
            res[b].append(timed(calc, atoms.copy(), a.calls, a.repeat))
    us = {b: min(v) for b, v in res.items()}
    out = {"atoms": len(atoms), "n_max": a.n_max, "l_max": a.l_max, "n_sparse": a.n_sparse,
           "us_per_atom": us, "ratio_quip_over_gto": us["quip"] / us["gto"]}
    print(f"Si {len(atoms)} atoms, n_max {a.n_max}, l_max {a.l_max}, M {a.n_sparse}, "
          "1 thread, energy+forces per call")
    print("| radial basis | µs/atom/call |\n|---|---|")
    for b in ("gto", "quip"):
        print(f"| {b} | {us[b]:.1f} |")
    print(f"| **ratio quip/gto** | **{out['ratio_quip_over_gto']:.3f}** |")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
