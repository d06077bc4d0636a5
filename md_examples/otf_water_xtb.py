"""On-the-fly learning of liquid water against a real quantum-chemistry code (GFN2-xTB).

32 water molecules in a periodic cubic box at 1 g/cm³ (96 atoms, 9.86 Å), Langevin MD at
300 K with a 0.5 fs step (friction 0.05/fs), starting from an *empty* model: the oracle is GFN2-xTB through
``tblite`` (``pip install 'gapcalc[xtb]'``; one call costs ~10-20 s on one core for this
box). gapcalc runs the MD, checks its latent force std σ_F every ``--check-interval``
steps and calls xTB only where σ_F (times the loop's running calibration factor) exceeds
``--threshold``; everything is checkpointed in ``--run-dir`` and can be resumed.

Run from the repository root:

    python3 md_examples/otf_water_xtb.py                         # 2000 steps, 17 xTB calls, ~7 min
    python3 md_examples/otf_water_xtb.py --steps 4000 --resume   # continue the same run to 4000 steps
    python3 md_examples/otf_water_xtb.py --steps 20 --max-calls 1  # smoke test (~1 min)

The same job from the command line (the oracle factory ``gapcalc.oracles:make_gfn2``
returns tblite's ASE calculator with GFN2-xTB; ``make_tblite`` is the general factory)::

    python3 md_examples/otf_water_xtb.py --write-start water32.xyz
    gapcalc learn water32.xyz --oracle gapcalc.oracles:make_gfn2 --temperature 300 \\
        --timestep 0.5 --steps 2000 --threshold 0.25 -o otf_water

``benchmarks/otf_xtb.py`` measures this job (oracle calls, speed-up over direct xTB MD,
force error against xTB on an independent xTB trajectory, calibration of σ_F, O–O RDF).
"""
from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import numpy as np
from ase import Atoms

WATER_DENSITY = 1.0    # g/cm³


def water_box(n_molecules=32, density=WATER_DENSITY, seed=0, min_oo=2.5, min_inter=1.6):
    """``n_molecules`` rigid-geometry waters (O–H 0.96 Å, HOH 104.5°) at random positions
    and orientations in a periodic cubic box of ``density`` g/cm³.

    Molecules are added one by one (random sequential addition), each redrawn until every
    O–O distance is ≥ ``min_oo`` Å and every other intermolecular distance ≥ ``min_inter``
    Å (minimum image).
    """
    from ase.units import _amu
    rng = np.random.default_rng(seed)
    mass_g = n_molecules * (15.999 + 2 * 1.008) * _amu * 1e3
    box = (mass_g / density * 1e24) ** (1.0 / 3.0)
    half = np.radians(104.5) / 2
    mono = np.array([[0.0, 0.0, 0.0], [0.96 * np.sin(half), 0.0, 0.96 * np.cos(half)],
                     [-0.96 * np.sin(half), 0.0, 0.96 * np.cos(half)]])
    pos = np.empty((0, 3))
    for _ in range(n_molecules):
        for _attempt in range(100000):
            q = rng.normal(size=4)
            q /= np.linalg.norm(q)
            a, b, c, d = q
            rot = np.array([[a*a+b*b-c*c-d*d, 2*(b*c-a*d), 2*(b*d+a*c)],
                            [2*(b*c+a*d), a*a-b*b+c*c-d*d, 2*(c*d-a*b)],
                            [2*(b*d-a*c), 2*(c*d+a*b), a*a-b*b-c*c+d*d]])
            mol = rng.uniform(0, box, 3) + mono @ rot.T
            if len(pos):
                diff = mol[:, None, :] - pos[None, :, :]
                diff -= box * np.round(diff / box)
                dist = np.sqrt((diff ** 2).sum(-1))
                if dist.min() < min_inter or dist[0, 0::3].min() < min_oo:
                    continue
            pos = np.vstack([pos, mol])
            break
        else:
            raise RuntimeError("could not place the water molecules; lower the density")
    return Atoms("OH2" * n_molecules, positions=pos, cell=[box] * 3, pbc=True)


def water_model():
    """The empty model of this example: the shipped water potential's recipe.

    SOAP 3 Å, n_max 6, l_max 4, atom_sigma 0.3 Å, ζ = 2, σ_E = 2 meV/atom, σ_F = 0.05 eV/Å
    (chosen by validation in ``potentials/train_water.py``, see ``potentials/water.md``).
    The generic 5 Å / atom_sigma 0.5 Å SOAP cannot resolve the stiff O–H bond (≈ 47 eV/Å²:
    0.1 eV/Å of force is 0.002 Å of bond length): with it the exact fit to 26 xTB frames
    still had a force MAE of 0.27-0.36 eV/Å on its own training frames.
    """
    from gapcalc import SOAP, SparseGPR
    return SparseGPR(SOAP([1, 8], cutoff=3.0, cutoff_width=0.5, n_max=6, l_max=4,
                          atom_sigma=0.3), zeta=2, delta=1.0, sigma_energy=0.002,
                     sigma_force=0.05, sigma_virial=0.1, e0="average", n_sparse=30)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--temperature", type=float, default=300.0, help="K")
    p.add_argument("--timestep", type=float, default=0.5, help="fs")
    p.add_argument("--threshold", type=float, default=0.25, help="eV/Å (calibrated σ_F)")
    p.add_argument("--check-interval", type=int, default=1)
    p.add_argument("--min-interval", type=int, default=3)
    p.add_argument("--max-calls", type=int, default=40)
    p.add_argument("--run-dir", default="otf_water_xtb")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir up to --steps steps in total")
    p.add_argument("--overwrite", action="store_true",
                   help="delete an existing run in --run-dir and start again")
    p.add_argument("--write-start", metavar="XYZ",
                   help="only write the starting box to this file (for `gapcalc learn`)")
    a = p.parse_args(argv)
    atoms = water_box(seed=a.seed)
    if a.write_start:
        atoms.write(a.write_start)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from gapcalc.active import learn
    from gapcalc.oracles import make_tblite
    if (Path(a.run_dir) / "state.json").exists():
        if a.resume:   # the run's oracle spec is recorded: resume rebuilds GFN2-xTB itself
            from gapcalc.active import resume
            otf = resume(a.run_dir, steps=a.steps, max_calls=a.max_calls)
            print(f"resumed to step {otf.dyn.nsteps}: {otf.n_calls_} GFN2-xTB calls, "
                  f"M = {otf.model.M_}; {otf.stop_reason()}")
            return
        if not a.overwrite:   # xTB answers cost minutes each: never thrown away silently
            p.error(f"{a.run_dir} holds a run: continue it with --resume, or pass --overwrite "
                    "to delete it and start again")
        shutil.rmtree(a.run_dir)
    otf = learn(atoms, make_tblite("GFN2-xTB"), a.run_dir, model=water_model(),
                oracle_spec="gapcalc.oracles:make_gfn2", temperature=a.temperature,
                steps=a.steps, timestep=a.timestep, friction=0.05, seed=a.seed,
                log_interval=100, rattle=0.0, threshold=a.threshold,
                check_interval=a.check_interval, min_interval=a.min_interval,
                max_calls=a.max_calls, n_sparse_initial=30, n_sparse_add=10)
    print(f"{a.steps} MD steps, {otf.n_calls_} GFN2-xTB calls "
          f"({100 * otf.n_calls_ / a.steps:.1f} % of steps), M = {otf.model.M_}; "
          f"model and frames in {a.run_dir}/")


if __name__ == "__main__":
    main()
