"""Representation options of issue 15: alchemical compression on a 5-element alloy, and a
speed/accuracy Pareto front (feature selection, sparse points) on the Si mlearn split.

How to run (repository root, single thread)::

    nice python benchmarks/representations.py                 # both parts
    python benchmarks/representations.py --part alloy --json alloy.json
    python benchmarks/representations.py --part pareto --json pareto.json

Part ``alloy``: fcc Cu/Ag/Au/Ni/Pd, EMT (ASE), 2x2x2 conventional cells (32 atoms), random
occupations, a random lattice constant between the elements', rattled with the thermal
amplitude of 300 / 900 / 1500 K (σ = 0.0035·√T Å), random strain ≤ 2 %; generated here with a
fixed seed. Learning curves (test E MAE, F MAE on 60 held-out frames) for training sizes
``--sizes`` of: full SOAP (5 species), SOAP compressed to d_J = 2, 3, 4 elemental features
learned by ALS (:func:`gapcalc.descriptors.learn_compression`, on the largest training set),
and compressed (d_J = 4) + full SOAP as two terms of one model (seed Fig. 4's compound
model). SOAP 4.5 Å, n_max 6, l_max 4, ζ 4, M = 100 per species; µs/atom of energy + forces
on a 108-atom alloy cell (single thread, CPU time, best of 3).

Part ``pareto``: Si mlearn split (214 train / 25 test frames): today's default model
(SOAP 5 Å, n_max 8, l_max 6, ζ 4, M = 1000) against feature-selected (CUR, D' = D/2, D/4),
fewer sparse points (M = 500, 250) and combinations; test E/F MAE and µs/atom of energy +
forces on a rattled 216-atom diamond cell. Ratios are against the default of the same run.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
SI = HERE / "data" / "si_mlearn"
ELEMENTS = ["Cu", "Ag", "Au", "Ni", "Pd"]

import numpy as np  # noqa: E402


def alloy_frames(n, seed):
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.data import atomic_numbers, reference_states
    from gapcalc.datasets import label
    rng = np.random.default_rng(seed)
    a_el = {e: reference_states[atomic_numbers[e]]["a"] for e in ELEMENTS}
    frames = []
    for k in range(n):
        T = [300.0, 900.0, 1500.0][k % 3]
        at = bulk("Cu", "fcc", 3.6, cubic=True) * (2, 2, 2)
        syms = rng.choice(ELEMENTS, size=len(at))
        a = np.mean([a_el[s] for s in syms])
        at.set_chemical_symbols(list(syms))
        at.set_cell(at.cell.array * a / 3.6, scale_atoms=True)
        at.positions += rng.normal(scale=0.0035 * np.sqrt(T), size=at.positions.shape)
        eps = rng.uniform(-0.02, 0.02, size=(3, 3))
        at.set_cell(at.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
        at.info["config_type"] = f"T{int(T)}"
        frames.append(label(at, EMT()))
    return frames


def errors(model, frames):
    e, f = [], []
    for at in frames:
        r = model.evaluate(at, stress=False)
        e.append(abs(r["energy"] - at.get_potential_energy()) / len(at))
        f.append(np.abs(r["forces"] - at.get_forces()).ravel())
    return 1e3 * float(np.mean(e)), 1e3 * float(np.mean(np.concatenate(f)))


def speed(model, at, repeats=3):
    model.evaluate(at)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        model.evaluate(at)
        best = min(best, time.process_time() - t0)
    return 1e6 * best / len(at)


def part_alloy(a):
    from gapcalc import SOAP, SparseGPR
    from gapcalc.descriptors import learn_compression
    soap_kw = dict(cutoff=4.5, n_max=6, l_max=4, atom_sigma=0.5, cutoff_width=0.5)
    frames = alloy_frames(max(a.sizes) + 60, seed=a.seed)
    train, test = frames[:max(a.sizes)], frames[max(a.sizes):]
    from ase.build import bulk
    timing = bulk("Cu", "fcc", 3.8, cubic=True) * (3, 3, 3)
    timing.set_chemical_symbols(list(np.random.default_rng(1).choice(ELEMENTS, len(timing))))
    timing.rattle(0.05, seed=2)
    t0 = time.perf_counter()
    energies = [at.get_potential_energy() for at in train]
    mix = {d: learn_compression(train, energies, ELEMENTS, d, cutoff=4.5, n_max=4, l_max=3,
                                n_iter=6, seed=a.seed) for d in (2, 3, 4)}
    t_als = time.perf_counter() - t0
    variants = {"full (5 species)": [SOAP(ELEMENTS, **soap_kw)]}
    for d in (2, 3, 4):
        variants[f"compressed d_J={d}"] = [SOAP(ELEMENTS, compression=mix[d], **soap_kw)]
    variants["compressed d_J=4 + full"] = [SOAP(ELEMENTS, compression=mix[4], **soap_kw),
                                           SOAP(ELEMENTS, **soap_kw)]
    out = {"als_seconds": t_als, "compression": {d: m.tolist() for d, m in mix.items()},
           "rows": []}
    for name, descs in variants.items():
        D = sum(d.n_features for d in descs)
        for n in a.sizes:
            ts = time.process_time()
            model = SparseGPR(descs if len(descs) > 1 else descs[0], zeta=4, delta=1.0,
                              n_sparse=a.n_sparse_alloy, sigma_energy=0.001, sigma_force=0.02,
                              sigma_virial=0.02, e0="lstsq", seed=a.seed).fit(train[:n])
            fit_s = time.process_time() - ts
            e, f = errors(model, test)
            row = {"variant": name, "D": D, "n_train": n, "E_mae_meV_atom": e,
                   "F_mae_meV_A": f, "fit_cpu_s": fit_s}
            if n == max(a.sizes):
                row["us_per_atom"] = speed(model, timing)
            out["rows"].append(row)
            logging.info("alloy %s", row)
    print(f"\nalloy: ALS for d_J = 2, 3, 4 took {t_als:.0f} s")
    print("| variant | D | " + " | ".join(f"n={n} E / F" for n in a.sizes) + " | µs/atom |")
    print("|---|---|" + "---|" * len(a.sizes) + "---|")
    for name in variants:
        rs = [r for r in out["rows"] if r["variant"] == name]
        cells = " | ".join(f"{r['E_mae_meV_atom']:.2f} / {r['F_mae_meV_A']:.1f}" for r in rs)
        print(f"| {name} | {rs[0]['D']} | {cells} | {rs[-1].get('us_per_atom', 0):.0f} |")
    return out


def part_pareto(a):
    from ase.build import bulk
    from ase.io import read
    from gapcalc import SOAP, SparseGPR
    train = read(str(SI / "si_mlearn_train.xyz"), ":")
    test = read(str(SI / "si_mlearn_test.xyz"), ":")
    timing = bulk("Si", "diamond", 5.43, cubic=True) * (3, 3, 3)
    timing.rattle(0.05, seed=0)
    soap = SOAP(["Si"], cutoff=5.0, n_max=8, l_max=6, atom_sigma=0.5, cutoff_width=0.5)
    D = soap.n_features
    variants = [("default (D=%d, M=1000)" % D, None, 1000),
                ("CUR D/2", D // 2, 1000), ("CUR D/4", D // 4, 1000),
                ("M=500", None, 500), ("M=250", None, 250),
                ("CUR D/2, M=500", D // 2, 500), ("CUR D/4, M=500", D // 4, 500)]
    rows = []
    for name, nf, M in variants:
        ts = time.process_time()
        model = SparseGPR(soap, zeta=4, delta=1.0, n_sparse=M, sigma_energy=0.002,
                          sigma_force=0.1, sigma_virial=0.1, n_features=nf,
                          seed=a.seed).fit(train)
        fit_s = time.process_time() - ts
        e, f = errors(model, test)
        row = {"variant": name, "D": model.terms_[0].descriptor.n_features, "M": model.M_,
               "E_mae_meV_atom": e, "F_mae_meV_A": f, "us_per_atom": speed(model, timing),
               "fit_cpu_s": fit_s}
        rows.append(row)
        logging.info("pareto %s", row)
    ref = rows[0]
    print("\n| variant | D | M | E MAE meV/at | F MAE meV/Å | F / default | µs/atom | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['D']} | {r['M']} | {r['E_mae_meV_atom']:.2f} | "
              f"{r['F_mae_meV_A']:.1f} | {r['F_mae_meV_A'] / ref['F_mae_meV_A']:.3f} | "
              f"{r['us_per_atom']:.0f} | {ref['us_per_atom'] / r['us_per_atom']:.2f} |")
    return {"rows": rows}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["alloy", "pareto", "all"], default="all")
    ap.add_argument("--sizes", default="10,20,40,80")
    ap.add_argument("--n-sparse-alloy", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    a.sizes = [int(x) for x in a.sizes.split(",")]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        datefmt="%H:%M:%S")
    out = {}
    if a.part in ("alloy", "all"):
        out["alloy"] = part_alloy(a)
    if a.part in ("pareto", "all"):
        out["pareto"] = part_pareto(a)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
