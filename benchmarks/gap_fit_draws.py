"""Many sparse-point draws: gap_fit's ``cur_points`` against gapcalc's CUR, seed by seed.

Issue 11 §3 compares test errors of one gap_fit fit with one gapcalc fit of the same recipe.
``gap_sparse_points.py`` showed that gapcalc fitted on gap_fit's own sparse points
reproduces gap_fit's test errors exactly, so the whole difference between the two codes is
the random draw of the 1000 SOAP sparse points. One draw per code cannot say which code
draws better; this script takes many.

For each ``rnd_seed`` S:

* gap_fit draws its points with ``sparsify_only_no_fit=T print_sparse_index=FILE`` (the
  descriptors and the CUR step only: ~20 s instead of a ~14 CPU-minute fit); the indices
  (1-based, environments in file order) are cached in ``--workdir``;
* gapcalc fits the recipe (``SparseGPR.from_gap_fit`` of the same command line, QUIP's SOAP
  basis) once on gap_fit's points -- which *is* gap_fit's model for that seed, to the
  4 digits ``gap_sparse_points.py`` checks -- and once with its own CUR draw for seed S;
* both are evaluated on the Si test split.

Printed: per seed E/F MAE of both draws for each variant (SOAP; SOAP + distance_2b, whose
SOAP points gap_fit draws identically for a given seed), the mean, standard deviation and
paired differences, and how the picks of each code are spread over leverage deciles
(inclusion counts over all seeds), which is what separates the two draws.

How to run (from the repository root, venv with quippy-ase's ``gap_fit``)::

    python benchmarks/gap_fit_draws.py --seeds 1-10 --workdir /tmp/gfd --json gfd.json

``--from-logs run1.txt run2.txt`` pools the per-seed lines of earlier runs' output (no
fitting), e.g. the committed ``results_gap_fit_draws*.txt``.

``--check-xml gap.xml --check-seed S`` first verifies that the printed indices are the
points stored in a full gap_fit model of seed S (exits if not).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402

from gap_compare import SI_DIR, gap_fit_command, read_frames  # noqa: E402
from gap_sparse_points import (errors, fit_with_points, leverage, match,  # noqa: E402
                               recipe_model, soap_term, training_environments)


def parse_seeds(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def gap_fit_indices(seed: int, workdir: Path, n_env: int) -> np.ndarray:
    """0-based indices of the environments gap_fit's cur_points draws for ``rnd_seed``."""
    path = workdir / f"sparse_index_rs{seed}.dat"
    if not path.exists():
        cmd = gap_fit_command(SI_DIR / "si_mlearn_train.xyz", "soap", 1000, "unused.xml",
                              radial_basis=None, rnd_seed=seed)
        # print_sparse_index goes inside the SOAP descriptor string
        cmd = [c.replace("sparse_method=cur_points}",
                         f"sparse_method=cur_points print_sparse_index={path.name}}}")
               for c in cmd] + ["sparsify_only_no_fit=T"]
        workdir.mkdir(parents=True, exist_ok=True)
        with open(workdir / f"gap_fit_rs{seed}.log", "w") as log:
            subprocess.run(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, check=True)
    idx = np.array(path.read_text().split(), dtype=np.int64) - 1
    if len(idx) != 1000 or len(set(idx.tolist())) != 1000 or idx.min() < 0 or idx.max() >= n_env:
        raise SystemExit(f"{path}: expected 1000 distinct indices in [1, {n_env}], "
                         f"got {len(idx)} ({len(set(idx.tolist()))} distinct)")
    return idx


def summary(values):
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


#: one per-seed line as main prints it (parsed back by --from-logs)
LINE = re.compile(r"rnd_seed\s+(\d+) (\w+)\s+gap_fit draw ([\d.]+) meV/at ([\d.]+) meV/Å \| "
                  r"gapcalc draw ([\d.]+) meV/at ([\d.]+) meV/Å")


def rows_from_logs(paths) -> list[dict]:
    """The per-seed rows printed by earlier runs (a seed seen twice: the later line)."""
    rows = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            m = LINE.match(line)
            if m:
                e_gf, f_gf, e_gc, f_gc = (float(x) for x in m.groups()[2:])
                rows[int(m[1]), m[2]] = {
                    "seed": int(m[1]), "variant": m[2],
                    "gap_fit_draw": {"energy_mae_mev": e_gf, "force_mae": f_gf / 1e3},
                    "gapcalc_draw": {"energy_mae_mev": e_gc, "force_mae": f_gc / 1e3}}
    return [rows[k] for k in sorted(rows)]


def print_stats(rows, variants, label) -> dict:
    """Mean ± std of each code's test MAE over the draws, and the paired differences
    (gapcalc − gap_fit, same seed) with their standard errors."""
    n_seeds = len({x["seed"] for x in rows})
    print(f"\n### Si split, {n_seeds} draws per code ({label}); test MAE, mean ± std over "
          "draws; paired differences gapcalc − gap_fit, mean ± standard error\n")
    print("| variant | draw | E MAE meV/at | F MAE meV/Å | gapcalc ≤ gap_fit (E) "
          "| paired E diff meV/at | paired F diff meV/Å |")
    print("|---|---|---|---|---|---|---|")
    stats = {}
    for v in variants:
        r = [x for x in rows if x["variant"] == v]
        eg = [x["gap_fit_draw"]["energy_mae_mev"] for x in r]
        ec = [x["gapcalc_draw"]["energy_mae_mev"] for x in r]
        fg = [1e3 * x["gap_fit_draw"]["force_mae"] for x in r]
        fc = [1e3 * x["gapcalc_draw"]["force_mae"] for x in r]
        d = np.array(ec) - np.array(eg)
        df = np.array(fc) - np.array(fg)
        stats[v] = {"gap_fit_E": summary(eg), "gapcalc_E": summary(ec),
                    "gap_fit_F": summary(fg), "gapcalc_F": summary(fc),
                    "paired_E_diff": summary(d), "paired_F_diff": summary(df),
                    "wins": int(np.sum(d <= 0)), "n": len(r)}
        st = stats[v]
        se = np.sqrt(len(r))
        print(f"| {v} | gap_fit cur_points | {st['gap_fit_E'][0]:.3f} ± {st['gap_fit_E'][1]:.3f} "
              f"| {st['gap_fit_F'][0]:.1f} ± {st['gap_fit_F'][1]:.1f} | | | |")
        print(f"| {v} | gapcalc cur | {st['gapcalc_E'][0]:.3f} ± {st['gapcalc_E'][1]:.3f} "
              f"| {st['gapcalc_F'][0]:.1f} ± {st['gapcalc_F'][1]:.1f} | {st['wins']} of {len(r)} "
              f"| {st['paired_E_diff'][0]:+.3f} ± {st['paired_E_diff'][1] / se:.3f} "
              f"| {st['paired_F_diff'][0]:+.2f} ± {st['paired_F_diff'][1] / se:.2f} |")
    return stats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="1-10", help="rnd_seed values, e.g. 1-10 or 1,2,5")
    p.add_argument("--variants", default="soap,soap2b")
    p.add_argument("--workdir", default="/tmp/gap_fit_draws")
    p.add_argument("--check-xml", default=None, help="a full gap_fit model (gap_compare.py)")
    p.add_argument("--check-seed", type=int, default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--from-logs", nargs="+", default=None, metavar="TXT",
                   help="no fitting: pool the per-seed lines printed by earlier runs")
    a = p.parse_args(argv)
    if a.from_logs:
        rows = rows_from_logs(a.from_logs)
        seeds = sorted({x["seed"] for x in rows})
        print_stats(rows, [v for v in a.variants.split(",")
                           if any(x["variant"] == v for x in rows)],
                    f"seeds {seeds[0]}-{seeds[-1]}, pooled from {len(a.from_logs)} logs")
        return
    t0 = time.perf_counter()
    workdir = Path(a.workdir)
    seeds, variants = parse_seeds(a.seeds), a.variants.split(",")
    train = read_frames(SI_DIR / "si_mlearn_train.xyz")
    test = read_frames(SI_DIR / "si_mlearn_test.xyz")
    desc = recipe_model("soap", 1).descriptor
    P, ct, mult = training_environments(desc, train)
    lev = leverage(P)
    if a.check_xml:
        from gapcalc.gap_xml import load_gap_xml
        j, dist = match(soap_term(load_gap_xml(a.check_xml)).X, P)
        idx = gap_fit_indices(a.check_seed, workdir, len(P))
        same = set(j.tolist()) == set(idx.tolist()) or np.allclose(
            np.sort(P[j], axis=0), np.sort(P[idx], axis=0), atol=1e-7)
        print(f"check: {a.check_xml} (rnd_seed {a.check_seed}): its sparse points are the "
              f"printed indices: {same} (match distance ≤ {dist.max():.1e})")
        if not same:
            raise SystemExit(1)
    picks = {"gap_fit": {}, "gapcalc": {}}
    rows = []
    for s in seeds:
        picks["gap_fit"][s] = gap_fit_indices(s, workdir, len(P))
        for v in variants:
            t1 = time.perf_counter()
            gf = fit_with_points(recipe_model(v, s), train, P[picks["gap_fit"][s]])
            e_gf = errors(gf.potential_, test)
            own = recipe_model(v, s).fit(train)
            e_gc = errors(own.potential_, test)
            if s not in picks["gapcalc"]:
                picks["gapcalc"][s], _ = match(soap_term(own.potential_).X, P)
            rows.append({"seed": s, "variant": v, "gap_fit_draw": e_gf, "gapcalc_draw": e_gc})
            print(f"rnd_seed {s:>3} {v:<7} gap_fit draw {e_gf['energy_mae_mev']:.3f} meV/at "
                  f"{1e3 * e_gf['force_mae']:.1f} meV/Å | gapcalc draw "
                  f"{e_gc['energy_mae_mev']:.3f} meV/at {1e3 * e_gc['force_mae']:.1f} meV/Å "
                  f"({time.perf_counter() - t1:.0f} s)", flush=True)

    stats = print_stats(rows, variants, f"seeds {a.seeds}")

    # where the picks go: inclusion counts over all seeds by leverage decile
    edges = np.quantile(lev, np.linspace(0, 1, 11))
    dec = np.clip(np.searchsorted(edges, lev, side="right") - 1, 0, 9)
    print("\nPicks per draw by leverage decile of the training environments "
          "(decile 10 = highest leverage), mean over draws; and mean leverage × N of the picks")
    print("| draw | " + " | ".join(f"d{i + 1}" for i in range(10)) + " | lev·N | with copies |")
    print("|---|" + "---|" * 12)
    spread = {}
    for code in ("gap_fit", "gapcalc"):
        counts = np.zeros(10)
        levn, cop = [], []
        for s, idx in picks[code].items():
            counts += np.bincount(dec[idx], minlength=10)
            levn.append(lev[idx].mean() * len(lev))
            cop.append(int(np.sum(mult[idx] > 1)))
        counts /= max(len(picks[code]), 1)
        spread[code] = {"per_decile": counts.tolist(), "lev_n": summary(levn),
                        "with_copies": summary(cop)}
        print(f"| {code} | " + " | ".join(f"{c:.0f}" for c in counts)
              + f" | {np.mean(levn):.2f} | {np.mean(cop):.1f} |")
    out = {"seeds": seeds, "variants": variants, "rows": rows, "stats": stats,
           "spread": spread, "picks": {c: {str(s): i.tolist() for s, i in d.items()}
                                       for c, d in picks.items()},
           "wall_s": time.perf_counter() - t0}
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
