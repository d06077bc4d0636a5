"""Geometry optimisation with the shipped ``Si`` potential: cell relaxation and a vacancy.

Shows:

1. Cell relaxation of diamond Si with ``ase.filters.FrechetCellFilter`` + BFGS (uses the
   model's stress): the model's lattice constant and cohesive-energy reference against the
   DFT-PBE ground state of the training data (``Ground state crystal`` frame of
   ``benchmarks/data/si_mlearn``: a = 5.469 Å, zero stress, −5.4253 eV/atom).
2. A vacancy in an n×n×n cubic supercell (default 2 → 63 atoms, the size of the data's
   Vacancy frames) relaxed with BFGS at fixed cell: the unrelaxed and relaxed vacancy
   formation energy E_f = E(N−1) − (N−1)/N · E(N) and the inward relaxation of the four
   neighbours. The data set has no relaxed-vacancy DFT frame, so E_f is compared only
   with the literature: PBE supercell calculations give ≈ 3.6 eV (quoted for orientation,
   not from this data set).

Run from the repository root (seconds):

    python3 md_examples/relax.py
    python3 md_examples/relax.py --steps 3          # CI: at most 3 optimiser steps each
    python3 md_examples/relax.py --size 3           # 215-atom vacancy cell
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "benchmarks" / "data" / "si_mlearn" / "si_mlearn_train.xyz"
LITERATURE_EF_PBE = 3.6   # eV, approximate PBE vacancy formation energy (literature)


def dft_ground_state(path=DATA):
    """(a, E/atom) of the data's 'Ground state crystal' frame, or None."""
    import ase.io
    if not Path(path).exists():
        return None
    for f in ase.io.read(path, ":"):
        if f.info.get("description") == "Ground state crystal":
            n_cells = round((len(f) / 8) ** (1 / 3))
            return float(np.mean(f.cell.lengths())) / n_cells, f.get_potential_energy() / len(f)
    return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="Si", help="shipped potential name or model file")
    p.add_argument("--steps", type=int, default=500, help="max optimiser steps per relaxation")
    p.add_argument("--fmax", type=float, default=0.005, help="force convergence, eV/Å")
    p.add_argument("--size", type=int, default=2, help="vacancy supercell: n×n×n cubic cells")
    p.add_argument("--a-start", type=float, default=5.40, help="starting lattice constant, Å")
    p.add_argument("--data", default=str(DATA), help="si_mlearn training file (DFT reference)")
    p.add_argument("--trajectory", default=None, help="write the vacancy relaxation here")
    a = p.parse_args(argv)
    import gapcalc
    from ase.build import bulk
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    calc = gapcalc.load(a.model)
    ref = dft_ground_state(a.data)

    # 1. cell relaxation -----------------------------------------------------------
    cryst = bulk("Si", "diamond", a=a.a_start, cubic=True)
    cryst.calc = calc
    opt = BFGS(FrechetCellFilter(cryst), logfile=None)
    opt.run(fmax=a.fmax / 10, steps=a.steps)
    a0 = float(np.mean(cryst.cell.lengths()))
    e_atom = cryst.get_potential_energy() / len(cryst)
    p_gpa = -cryst.get_stress()[:3].mean() * 160.21766208
    print(f"1. cell relaxation (8-atom cubic cell, FrechetCellFilter + BFGS, {opt.nsteps} steps):")
    print(f"   model: a = {a0:.4f} Å, E = {e_atom:.5f} eV/atom, residual pressure "
          f"{p_gpa * 1e3:.2f} MPa")
    if ref:
        print(f"   DFT-PBE (data ground state): a = {ref[0]:.4f} Å, E = {ref[1]:.5f} eV/atom")
        print(f"   difference: Δa = {a0 - ref[0]:+.4f} Å ({(a0 / ref[0] - 1) * 100:+.2f} %), "
              f"ΔE = {(e_atom - ref[1]) * 1e3:+.2f} meV/atom")

    # 2. vacancy -------------------------------------------------------------------
    n = a.size
    perfect = bulk("Si", "diamond", a=a0, cubic=True) * (n, n, n)
    perfect.calc = calc
    e_perfect = perfect.get_potential_energy()
    vac = perfect.copy()
    removed = vac.positions[0].copy()
    del vac[0]
    vac.calc = calc
    e_unrelaxed = vac.get_potential_energy()
    N = len(perfect)
    ef_unrelaxed = e_unrelaxed - (N - 1) / N * e_perfect
    opt = BFGS(vac, logfile=None, trajectory=a.trajectory)
    opt.run(fmax=a.fmax, steps=a.steps)
    e_relaxed = vac.get_potential_energy()
    ef = e_relaxed - (N - 1) / N * e_perfect
    # the four nearest neighbours of the vacant site
    from ase.geometry import get_distances
    _, dist0 = get_distances(perfect.positions[1:], [removed], cell=perfect.cell, pbc=True)
    nn = np.argsort(dist0[:, 0])[:4]
    _, dist1 = get_distances(vac.positions[nn], [removed], cell=vac.cell, pbc=True)
    fmax_now = float(np.sqrt((vac.get_forces() ** 2).sum(axis=1)).max())
    print(f"\n2. vacancy in a {n}×{n}×{n} cell ({N - 1} atoms), BFGS at fixed cell, "
          f"{opt.nsteps} steps, max force {fmax_now:.4f} eV/Å:")
    print(f"   E_f unrelaxed {ef_unrelaxed:.3f} eV, relaxed {ef:.3f} eV "
          f"(relaxation {ef_unrelaxed - ef:.3f} eV)")
    print(f"   neighbours of the vacancy: {dist0[nn, 0].mean():.3f} → {dist1[:, 0].mean():.3f} Å "
          f"from the vacant site")
    print(f"   literature PBE E_f ≈ {LITERATURE_EF_PBE} eV (orientation only; not in the data set)")
    return {"a0": a0, "e_atom": e_atom, "dft": ref, "ef_unrelaxed": ef_unrelaxed, "ef": ef,
            "vacancy": vac, "fmax": fmax_now}


if __name__ == "__main__":
    main()
    sys.exit(0)
