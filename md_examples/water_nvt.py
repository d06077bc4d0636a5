"""NVT (Langevin) molecular dynamics of liquid water with the shipped ``water`` potential.

Shows: loading a shipped potential by name, starting from a DFT frame of the training
data (or from a freshly built box), thermalising with a Langevin thermostat, writing
an ASE trajectory, and the MD speed. Analyse the trajectory with ``water_rdf.py``.

Run from the repository root:

    python3 md_examples/water_nvt.py --steps 2000                    # 1 ps at 0.5 fs
    python3 md_examples/water_nvt.py --steps 20 --out /tmp/w.traj     # smoke test
    python3 md_examples/water_nvt.py --start box --steps 4000         # no data file needed
    python3 md_examples/water_rdf.py water_nvt.traj --skip 400        # then the RDFs

The default start is the first frame of the held-out data_3 set of
``benchmarks/data/water_dpmd/water_dpmd.xyz`` (64 H2O, 12.44 Å cubic cell). Time step
0.5 fs (classical, flexible O-H bonds), 300 K, friction 0.01 fs⁻¹.
"""
from __future__ import annotations

import os

# The model's dense algebra is small (atoms × sparse points); on a shared or busy machine
# several BLAS threads per process fight Numba's threads and slow MD down 2-3×. One BLAS
# thread is never slower here. Must be set before NumPy is imported; export
# OPENBLAS_NUM_THREADS yourself to override.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "benchmarks" / "data" / "water_dpmd" / "water_dpmd.xyz"


def water_box(n_side=4, density=0.993, seed=0):
    """n_side³ H2O molecules on a cubic grid with random orientations at ``density`` g/cm³."""
    from ase import Atoms
    from scipy.spatial.transform import Rotation
    n = n_side ** 3
    mass = n * 18.015 / 6.02214076e23            # g
    L = (mass / density * 1e24) ** (1 / 3)       # Å
    r_oh, angle = 0.9572, np.radians(104.52)
    mol = np.array([[0.0, 0.0, 0.0],
                    [r_oh, 0.0, 0.0],
                    [r_oh * np.cos(angle), r_oh * np.sin(angle), 0.0]])
    rng = np.random.default_rng(seed)
    rots = Rotation.random(n, random_state=seed)
    pos, sym = [], []
    h = L / n_side
    k = 0
    for i in range(n_side):
        for j in range(n_side):
            for m in range(n_side):
                centre = (np.array([i, j, m]) + 0.5) * h + rng.normal(scale=0.05, size=3)
                pos.extend(centre + rots[k].apply(mol))
                sym.extend(["O", "H", "H"])
                k += 1
    atoms = Atoms(sym, positions=pos, cell=[L, L, L], pbc=True)
    atoms.wrap()
    return atoms


def start_structure(start, data=DATA):
    """The first data_3 frame of the water data set, or a built box."""
    import ase.io
    if start == "data":
        if not Path(data).exists():
            logging.warning("%s not found: building a box instead", data)
            return water_box()
        atoms = ase.io.read(data, index=-80)      # data_3 = the last 80 frames of the file
        if atoms.info.get("source_system") != "data_3":
            frames = ase.io.read(data, ":")
            atoms = ([f for f in frames if f.info.get("source_system") == "data_3"]
                     or frames)[0]
        atoms = atoms.copy()
        atoms.calc = None
        return atoms
    if start == "box":
        return water_box()
    return ase.io.read(start)   # any file ASE can read


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=2000, help="MD steps (default 2000)")
    p.add_argument("--timestep", type=float, default=0.5, help="fs (default 0.5)")
    p.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs")
    p.add_argument("--start", default="data",
                   help="'data' (first test frame of the data set), 'box' (built), or a file")
    p.add_argument("--data", default=str(DATA), help="water data set (extxyz)")
    p.add_argument("--model", default="water", help="shipped potential name or model file")
    p.add_argument("--out", default="water_nvt.traj", help="trajectory file (ASE .traj)")
    p.add_argument("--interval", type=int, default=10, help="steps between trajectory frames")
    p.add_argument("--log-interval", type=int, default=100, help="steps between log lines")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    import gapcalc
    from ase.io import Trajectory
    from gapcalc.md import make_dynamics, thermalize

    atoms = start_structure(a.start, a.data)
    atoms.calc = gapcalc.load(a.model)
    thermalize(atoms, a.temperature, np.random.default_rng(a.seed))
    dyn = make_dynamics(atoms, "langevin", temperature=a.temperature, timestep=a.timestep,
                        friction=a.friction, seed=a.seed)
    traj = Trajectory(a.out, "w", atoms)
    dyn.attach(traj.write, interval=a.interval)
    n = len(atoms)
    stats = {"T": [], "epot": []}

    def report():
        T = atoms.get_temperature()
        epot = atoms.get_potential_energy() / n
        stats["T"].append(T)
        stats["epot"].append(epot)
        print(f"step {dyn.nsteps:6d}  t {dyn.nsteps * a.timestep / 1000:7.3f} ps  T {T:6.1f} K  "
              f"Epot {epot:.5f} eV/atom", flush=True)

    dyn.attach(report, interval=a.log_interval)
    t0 = time.perf_counter()
    dyn.run(a.steps)
    wall = time.perf_counter() - t0
    traj.close()
    speed = wall / max(a.steps, 1) / n * 1e6
    print(f"{a.steps} steps of {n} atoms in {wall:.1f} s: {speed:.0f} µs/atom/step "
          f"(incl. the first call and trajectory output), "
          f"{a.steps * a.timestep * 1e-6 / max(wall, 1e-9) * 86400:.3f} ns/day")
    print(f"trajectory: {a.out}  ({a.steps // a.interval + 1} frames, every "
          f"{a.interval * a.timestep:g} fs)")
    print(f"analyse with: python3 md_examples/water_rdf.py {a.out}")
    return {"atoms": atoms, "trajectory": a.out, "T": stats["T"], "epot": stats["epot"],
            "us_per_atom_step": speed}


if __name__ == "__main__":
    main()
    sys.exit(0)
