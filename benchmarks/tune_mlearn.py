"""`gapcalc tune` on an mlearn split: hyper-parameters chosen by CV on the training set alone.

How to run (repository root)::

    nice python benchmarks/tune_mlearn.py                          # Si split, 20 min search
    python benchmarks/tune_mlearn.py --budget 600 --search-frames 80 --json out.json
    python benchmarks/tune_mlearn.py --train my_train.xyz --test my_test.xyz --published-force 0.09

What is measured
    :func:`gapcalc.tune.tune` searches (coordinate descent, k-fold CV on the training frames
    only, optionally a seeded subset of them) cutoff, n_max/l_max, atom_sigma, radial
    scaling, ζ, the 2-body term and, inside every candidate from the CV triangles,
    σ_E, σ_F, σ_V, δ, δ_2b. The ``--finalists`` best candidates are cross-validated again
    with ``--n-sparse`` sparse points on all training frames (σ's and δ chosen anew); the
    best of them is the model, evaluated once on the test split. By default the score is
    the force RMSE with an energy cap (``--energy-cap 1``: a candidate whose CV energy RMSE
    exceeds that of the starting recipe at default σ's and δ is penalised, so that forces
    improve without energies getting worse; the starting recipe is then always a finalist).
    Reported: energy MAE
    (meV/atom), force-component MAE (meV/Å). Beside it, in the same run, gapcalc's default
    recipe (SOAP 5 Å, n_max 8, l_max 6, σ_at 0.5, ζ 4, δ 1, σ 0.002/0.1/0.1, same M) on the
    same split; and, quoted (not re-run), gap_fit's default recipe from benchmarks/RESULTS.md
    §1 and the published GAP force MAE of Zuo et al. (J. Phys. Chem. A 124, 731 (2020)) as
    quoted in issue 15 (Si 70 meV/Å). Speed: µs/atom of energy + forces of each model on a
    rattled 216-atom diamond cell (single thread, CPU time, best of 3 after a warm-up).
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

#: quoted, not re-run (benchmarks/RESULTS.md §1, 2026-11-24; issue 15)
EARLIER = {"gap_fit default (RESULTS.md §1, earlier run)": (2.55, 77.2),
           "gapcalc default (RESULTS.md §1, earlier run)": (2.27, 74.5)}
PUBLISHED_FORCE = {"si": 70.0}


def test_errors(model, frames):
    import numpy as np
    e, f = [], []
    for at in frames:
        r = model.evaluate(at, stress=False)
        e.append(abs(r["energy"] - at.get_potential_energy()) / len(at))
        f.append(np.abs(r["forces"] - at.get_forces()).ravel())
    return 1e3 * float(np.mean(e)), 1e3 * float(np.mean(np.concatenate(f)))


def us_per_atom(model, repeats=3):
    """CPU µs/atom of energy + forces on a rattled 216-atom diamond Si cell (Si models)."""
    from ase.build import bulk
    if model.species_.symbols != ["Si"]:
        return None
    at = bulk("Si", "diamond", 5.43, cubic=True) * (3, 3, 3)
    at.rattle(0.05, seed=0)
    model.evaluate(at)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        model.evaluate(at)
        best = min(best, time.process_time() - t0)
    return 1e6 * best / len(at)


def main(argv=None):
    from ase.io import read
    from gapcalc.tune import START, format_tune_table, make_model, tune
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", default=str(SI / "si_mlearn_train.xyz"))
    ap.add_argument("--test", default=str(SI / "si_mlearn_test.xyz"))
    ap.add_argument("--budget", type=float, default=1200.0, help="search seconds")
    ap.add_argument("--max-candidates", type=int, default=None)
    ap.add_argument("--search-frames", type=int, default=None)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--n-sparse", type=int, default=1000)
    ap.add_argument("--n-sparse-search", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--score", default="force", choices=["force", "energy", "both"],
                    help="CV score: both = F RMSE/F₀ + E RMSE/E₀ (relative to the starting "
                         "recipe)")
    ap.add_argument("--finalists", type=int, default=3,
                    help="search candidates cross-validated again at --n-sparse")
    ap.add_argument("--energy-cap", type=float, default=1.0,
                    help="CV energy RMSE allowed relative to the starting recipe at default "
                         "σ's and δ (penalised beyond); 0: none")
    ap.add_argument("--published-force", type=float, default=None, help="meV/Å")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        datefmt="%H:%M:%S")
    train, test = read(a.train, ":"), read(a.test, ":")
    t0 = time.perf_counter()
    res = tune(train, k=a.folds, budget=a.budget, max_candidates=a.max_candidates,
               seed=a.seed, n_sparse=a.n_sparse, n_sparse_search=a.n_sparse_search,
               search_frames=a.search_frames, curve_sizes=(0.25, 0.5, 1.0), score=a.score,
               finalists=a.finalists, energy_cap=a.energy_cap or None)
    t_tune = time.perf_counter() - t0
    print(format_tune_table(res))
    tuned = res["model"]
    import numpy as np
    species = np.unique(np.concatenate([at.numbers for at in train]))
    default = make_model(START, species, a.n_sparse, seed=a.seed,
                         sigma_energy=0.002, sigma_force=0.1, sigma_virial=0.1, delta=1.0)
    default.fit(train)
    rows = {}
    for name, model in (("gapcalc tuned (this run)", tuned),
                        ("gapcalc default (this run)", default)):
        e, f = test_errors(model, test)
        rows[name] = {"E_mae_meV_atom": e, "F_mae_meV_A": f, "us_per_atom": us_per_atom(model)}
    for name, (e, f) in EARLIER.items():
        rows[name] = {"E_mae_meV_atom": e, "F_mae_meV_A": f}
    pub = a.published_force if a.published_force is not None else (
        PUBLISHED_FORCE["si"] if "si_mlearn" in a.train else None)
    if pub is not None:
        rows["published GAP (Zuo et al. 2020, quoted in issue 15)"] = {"F_mae_meV_A": pub}
    print(f"\ntuning: {len(res['table'])} candidates, {t_tune:.0f} s wall "
          f"(search {a.budget:g} s budget); winner: {res['best_row']['label']} "
          f"σ_E {res['best']['sigma_energy']} σ_F {res['best']['sigma_force']} "
          f"σ_V {res['best']['sigma_virial']} δ {res['best']['delta']}; score {a.score}, "
          f"energy cap {a.energy_cap or 'none'}")
    print("\n| model | E MAE meV/at | F MAE meV/Å | µs/atom E+F |\n|---|---|---|---|")
    for name, r in rows.items():
        e = r.get("E_mae_meV_atom")
        us = r.get("us_per_atom")
        print(f"| {name} | {'-' if e is None else f'{e:.2f}'} | {r['F_mae_meV_A']:.1f} | "
              f"{'-' if us is None else f'{us:.0f}'} |")
    ft = rows["gapcalc tuned (this run)"]["F_mae_meV_A"]
    if pub is not None:
        print(f"\ntuned force MAE / published GAP = {ft / pub:.3f} (target ≤ 0.85)")
    print(f"tuned / default (this run): E {rows['gapcalc tuned (this run)']['E_mae_meV_atom'] / rows['gapcalc default (this run)']['E_mae_meV_atom']:.3f}, "
          f"F {ft / rows['gapcalc default (this run)']['F_mae_meV_A']:.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "table": [
            {k: v for k, v in r.items() if k != "config"} for r in res["table"]],
            "best": {k: (list(v) if isinstance(v, tuple) else v) for k, v in res["best"].items()},
            "finalists": [{k: v for k, v in e.items() if k != "row"}
                          for e in res.get("finalists", [])],
            "baseline": res.get("baseline"), "curve": res.get("curve"),
            "tune_seconds": t_tune}, indent=1, default=str))


if __name__ == "__main__":
    main()
