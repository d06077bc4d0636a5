"""Energy conservation of NVE MD with fitted gapcalc models: drift per atom per ps.

How to run (from the repository root; needs nothing but gapcalc)::

    python benchmarks/nve_drift.py                  # shipped Cu and Si, 1 and 2 fs, 2 ps each
    python benchmarks/nve_drift.py --ps 0.5 --json out.json

What is measured
    ``ase.md.verlet.VelocityVerlet`` with ``GAPCalculator`` (default neighbour-list skin)
    on the shipped potentials: Cu (EMT-fitted) on a rattled 3x3x3 fcc cell (108 atoms) and
    Si (DFT-PBE mlearn fit) on a 2x2x2 diamond cell (64 atoms), velocities drawn at
    2 T (equipartition leaves ~T), time steps 1 and 2 fs. The total energy per atom is
    sampled every step; the drift is the slope of a least-squares line through it
    (eV/atom/ps, signed), the fluctuation its standard deviation after removing the line.
    Wall and CPU time per step are printed too, as a by-product.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from ase import units
from ase.build import bulk
from ase.md.verlet import VelocityVerlet

import gapcalc
from gapcalc.md import thermalize

SYSTEMS = {
    "Cu": (lambda: bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3), 600.0),
    "Si": (lambda: bulk("Si", "diamond", a=5.47, cubic=True).repeat(2), 600.0),
}


def run(name: str, dt_fs: float, ps: float, seed: int = 0) -> dict:
    make, temperature = SYSTEMS[name]
    atoms = make()
    atoms.rattle(0.02, seed=seed)
    atoms.calc = gapcalc.load(name)
    thermalize(atoms, 2 * temperature, np.random.default_rng(seed))
    n_steps = int(round(ps * 1000 / dt_fs))
    dyn = VelocityVerlet(atoms, dt_fs * units.fs)
    etot, temps = [], []

    def sample():
        etot.append(atoms.get_total_energy() / len(atoms))
        temps.append(atoms.get_temperature())

    dyn.attach(sample, interval=1)
    atoms.get_forces()          # JIT and first neighbour list outside the timing
    c0, w0 = time.process_time(), time.perf_counter()
    dyn.run(n_steps)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    e = np.array(etot)
    t = np.arange(len(e)) * dt_fs / 1000.0
    slope, icept = np.polyfit(t, e, 1)
    return {"system": name, "n_atoms": len(atoms), "dt_fs": dt_fs, "ps": ps,
            "steps": n_steps, "mean_T_K": float(np.mean(temps[len(temps) // 5:])),
            "drift_eV_atom_ps": float(slope),
            "fluct_eV_atom": float(np.std(e - (slope * t + icept))),
            "cpu_ms_step": 1e3 * cpu / n_steps, "wall_ms_step": 1e3 * wall / n_steps}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--systems", default="Cu,Si")
    p.add_argument("--dt", default="1,2", help="time steps in fs (comma list)")
    p.add_argument("--ps", type=float, default=2.0, help="simulated time per run (ps)")
    p.add_argument("--json")
    a = p.parse_args(argv)
    rows = [run(s, float(dt), a.ps) for s in a.systems.split(",") for dt in a.dt.split(",")]
    print("| system | atoms | dt fs | ps | <T> K | drift meV/atom/ps | fluct. meV/atom "
          "| CPU ms/step |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['system']} | {r['n_atoms']} | {r['dt_fs']:g} | {r['ps']:g} | "
              f"{r['mean_T_K']:.0f} | {1e3 * r['drift_eV_atom_ps']:+.4f} | "
              f"{1e3 * r['fluct_eV_atom']:.4f} | {r['cpu_ms_step']:.1f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
