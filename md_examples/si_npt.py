"""NPT molecular dynamics of crystalline silicon with the shipped ``Si`` potential.

Shows: MD with a barostat (``gapcalc.md.make_dynamics(..., ensemble="npt")``, ASE's
isotropic MTK Nosé-Hoover-chain NPT), which needs the model's stress; the volume and
pressure fluctuating around the model's equilibrium at the chosen temperature and
pressure (thermal expansion at high T, compression under pressure); the pressure computed
from the stress (virial + kinetic part). The perfect crystal starts with velocities at
2T (equipartition halves the kinetic energy within ~100 fs); the MTK barostat is
undamped, so start close to equilibrium (``--a0``) and average over a few ps.

Run from the repository root:

    python3 md_examples/si_npt.py --steps 3000                  # 3 ps, 216 atoms, 300 K, 0 GPa
    python3 md_examples/si_npt.py --steps 20 --size 2           # smoke test (64 atoms)
    python3 md_examples/si_npt.py --temperature 1000 --pressure 2

Reference: the DFT (PBE) lattice constant of the training data is 5.469 Å at 0 K
(``Ground state crystal`` frame of si_mlearn, zero stress); with thermal expansion the
300 K value is a few 0.001 Å larger.
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
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

EV_A3_TO_GPA = 160.21766208
A_DFT = 5.46875   # Å, si_mlearn "Ground state crystal" (2x2x2 cell 10.9375 Å, stress 0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=3000, help="MD steps (default 3000)")
    p.add_argument("--timestep", type=float, default=1.0, help="fs (default 1)")
    p.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    p.add_argument("--pressure", type=float, default=0.0, help="GPa (default 0)")
    p.add_argument("--size", type=int, default=3, help="n×n×n cubic 8-atom cells (default 3)")
    p.add_argument("--a0", type=float, default=5.469, help="starting lattice constant, Å")
    p.add_argument("--model", default="Si", help="shipped potential name or model file")
    p.add_argument("--trajectory", default=None, help="optional ASE .traj output")
    p.add_argument("--log-interval", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    import gapcalc
    from ase.build import bulk
    from gapcalc.md import make_dynamics, thermalize

    atoms = bulk("Si", "diamond", a=a.a0, cubic=True) * (a.size, a.size, a.size)
    atoms.calc = gapcalc.load(a.model)
    n = len(atoms)
    thermalize(atoms, 2 * a.temperature, np.random.default_rng(a.seed))
    dyn = make_dynamics(atoms, "npt", temperature=a.temperature, timestep=a.timestep,
                        pressure=a.pressure, trajectory=a.trajectory, interval=10)
    rows = []

    def report():
        s = atoms.get_stress(include_ideal_gas=True)
        P = -s[:3].mean() * EV_A3_TO_GPA
        V = atoms.get_volume()
        lat = (V / n * 8) ** (1 / 3)
        T = atoms.get_temperature()
        rows.append((dyn.nsteps, T, P, V / n, lat))
        print(f"step {dyn.nsteps:6d}  T {T:7.1f} K  P {P:7.3f} GPa  V {V / n:7.4f} Å³/atom  "
              f"a {lat:.4f} Å  Epot {atoms.get_potential_energy() / n:.5f} eV/atom", flush=True)

    dyn.attach(report, interval=a.log_interval)     # also called at step 0
    t0 = time.perf_counter()
    dyn.run(a.steps)
    wall = time.perf_counter() - t0
    if a.steps % a.log_interval:
        report()
    rows = np.array(rows)
    tail = rows[len(rows) // 2:] if len(rows) > 3 else rows[-1:]
    print(f"\n{a.steps} steps of {n} atoms in {wall:.1f} s "
          f"({wall / max(a.steps, 1) / n * 1e6:.0f} µs/atom/step)")
    print(f"second half averages: T {tail[:, 1].mean():.1f} K, P {tail[:, 2].mean():.3f} GPa "
          f"(target {a.pressure:g}), V {tail[:, 3].mean():.4f} Å³/atom, "
          f"a {tail[:, 4].mean():.4f} ± {tail[:, 4].std():.4f} Å")
    print(f"DFT (PBE) training data: a = {A_DFT:.4f} Å at 0 K, 0 GPa "
          f"(V = {A_DFT ** 3 / 8:.4f} Å³/atom)")
    return {"rows": rows, "lattice_constant": float(tail[:, 4].mean()),
            "pressure_GPa": float(tail[:, 2].mean()), "atoms": atoms}


if __name__ == "__main__":
    main()
    sys.exit(0)
