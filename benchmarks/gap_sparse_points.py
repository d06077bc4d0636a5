"""gap_fit's sparse points beside gapcalc's, and gapcalc fitted on gap_fit's own points.

Issue 11 §3 asks why, with the same recipe and QUIP's SOAP basis in both codes, gapcalc's
Si test-energy MAE sits a few per cent above gap_fit's while the force MAE is the same.
Two questions separate the regression from the choice of sparse points:

1. Which training environments does gap_fit's ``cur_points`` pick? Its sparse points are
   read from its model file (``load_gap_xml``: the SOAP term's sparse vectors, in
   gapcalc's feature order) and matched to the training environments (gapcalc's
   ``radial_basis="quip"`` SOAP equals quippy's to ~1e-10, so each match is exact).
   Printed: the match residual, the picks by config type, how many picked environments
   have identical copies in the training set, the mean normalised leverage of the picks,
   beside gapcalc's picks for the same recipe at the given seeds.
2. Does gapcalc, given gap_fit's sparse points, reproduce gap_fit's test errors? The
   recipe model (``SparseGPR.from_gap_fit`` of the same command line) is fitted with its
   sparse-point choice replaced by gap_fit's points; test E/F MAE beside those of the
   gap_fit model itself (evaluated by gapcalc's importer, which equals quippy to 1e-8)
   and of gapcalc's own CUR picks.

How to run (from the repository root, after a gap_fit run of ``gap_compare.py``)::

    python benchmarks/gap_compare.py --datasets si --variants soap --codes gap_fit --quip-basis --recipe --gap-fit-seed 2 --workdir /tmp/gc_rs2_soap
    python benchmarks/gap_sparse_points.py /tmp/gc_rs2_soap/si_soap_gap_fit_rs2/gap.xml --variant soap --seeds 1,2
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402

from gap_compare import SI_DIR, gap_fit_command, read_frames, reference  # noqa: E402


def recipe_model(variant: str, seed: int):
    from gapcalc import SparseGPR
    cmd = gap_fit_command(SI_DIR / "si_mlearn_train.xyz", variant, 1000, "gap.xml",
                          rnd_seed=seed)
    return SparseGPR.from_gap_fit(cmd[1:], species=[14], radial_basis="quip")


def soap_term(potential):
    from gapcalc.descriptors import SOAP
    terms = [t for t in potential.terms if isinstance(getattr(t, "descriptor", None), SOAP)]
    if len(terms) != 1:
        raise SystemExit(f"expected one SOAP term in the model, found {len(terms)}")
    return terms[0]


def training_environments(desc, frames):
    """(P (n_env, D), config type per environment, multiplicity of each environment)."""
    from gapcalc.gpr import row_hashes
    P = desc.compute(list(frames))
    ct = np.concatenate([[at.info.get("config_type", "-")] * len(at) for at in frames])
    h = row_hashes(P)
    _, inv, counts = np.unique(h, return_inverse=True, return_counts=True)
    return P, ct, counts[inv]


def leverage(P, full=False):
    """Normalised CUR leverage of every row of P, computed on the distinct rows and mapped
    back to every copy: with k = numerical rank (gapcalc's ``sparsify.cur``), or with
    ``full`` every singular direction (k = D, near-null directions included)."""
    from gapcalc.gpr import row_hashes
    from gapcalc.sparsify import cur_rank
    h = row_hashes(P)
    _, first, inv = np.unique(h, return_index=True, return_inverse=True)
    U, s, _ = np.linalg.svd(P[first], full_matrices=False)
    k = len(s) if full else cur_rank(s, 1000)[0]
    lev = np.einsum("ij,ij->i", U[:, :k], U[:, :k]) / k
    return lev[inv] / lev.sum()


def match(X, P):
    """Index of the training environment nearest to each row of X, and the distance."""
    idx = np.empty(len(X), dtype=np.int64)
    dist = np.empty(len(X))
    Pn = (P ** 2).sum(1)
    for lo in range(0, len(X), 200):
        x = X[lo:lo + 200]
        d2 = (x ** 2).sum(1)[:, None] + Pn[None, :] - 2 * x @ P.T
        j = np.argmin(d2, axis=1)
        idx[lo:lo + 200] = j
        dist[lo:lo + 200] = np.sqrt(np.maximum(d2[np.arange(len(x)), j], 0))
    return idx, dist


def describe_picks(label, idx, ct, mult, lev, lev_full):
    types = sorted(set(ct))
    by = {t: int(np.sum(ct[idx] == t)) for t in types}
    uniq = len(set(idx.tolist()))
    return {"picks": label, "n": len(idx), "distinct_environments": uniq,
            "picks_with_copies_in_training": int(np.sum(mult[idx] > 1)),
            "mean_leverage_x_n_env": float(lev[idx].mean() * len(lev)),
            "mean_full_leverage_x_n_env": float(lev_full[idx].mean() * len(lev)),
            "by_config_type": by}


def errors(calc_or_potential, test):
    from gapcalc.calculator import GAPCalculator
    calc = (calc_or_potential if hasattr(calc_or_potential, "get_property")
            else GAPCalculator(calc_or_potential))
    de, df = [], []
    for at in test:
        e_ref, f_ref, _ = reference(at)
        a = at.copy()
        a.calc = calc
        de.append((a.get_potential_energy() - e_ref) / len(a))
        df.append((a.get_forces() - f_ref).ravel())
    return {"energy_mae_mev": 1e3 * float(np.mean(np.abs(de))),
            "force_mae": float(np.mean(np.abs(np.concatenate(df))))}


def fit_with_points(model, train, X):
    """Fit ``model`` with its SOAP sparse points set to X (every other step as usual)."""
    from gapcalc.gpr import CandidatePool
    original = CandidatePool.choose

    def choose(self, wanted, method, seed):
        out = original(self, {k: n for k, n in wanted.items() if k[0] != 0}, method, seed)
        for key in wanted:
            if key[0] == 0:
                out[key] = X
        return out
    CandidatePool.choose = choose
    try:
        return model.fit(train)
    finally:
        CandidatePool.choose = original


def chosen_points(model):
    return model.terms_[0].X


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("gap_xml", help="a gap_fit model of the Si recipe (gap_compare.py)")
    p.add_argument("--variant", choices=("soap", "soap2b"), required=True)
    p.add_argument("--seeds", default="1", help="gapcalc sparse-point seeds to compare")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    from gapcalc.gap_xml import load_gap_xml
    t0 = time.perf_counter()
    train = read_frames(SI_DIR / "si_mlearn_train.xyz")
    test = read_frames(SI_DIR / "si_mlearn_test.xyz")
    gap = load_gap_xml(a.gap_xml)
    Xg = soap_term(gap).X
    model = recipe_model(a.variant, 1)
    desc = model.descriptor[0] if isinstance(model.descriptor, list) else model.descriptor
    P, ct, mult = training_environments(desc, train)
    lev, lev_full = leverage(P), leverage(P, full=True)
    idx, dist = match(Xg, P)
    out = {"gap_xml": str(a.gap_xml), "variant": a.variant, "n_environments": len(P),
           "distinct_environments": int(len(np.unique(P.round(10), axis=0))),
           "environments_by_config_type": {t: int(np.sum(ct == t)) for t in sorted(set(ct))},
           "gap_fit_match_max_distance": float(dist.max())}
    print(f"training environments: {len(P)} ({out['distinct_environments']} distinct); "
          f"gap_fit's {len(Xg)} sparse points match training environments to "
          f"{dist.max():.1e} (largest distance)")
    rows = [describe_picks("gap_fit", idx, ct, mult, lev, lev_full)]
    res = {"gap_fit model (imported)": errors(gap, test)}
    fitted = fit_with_points(recipe_model(a.variant, 1), train, Xg)
    res["gapcalc on gap_fit's sparse points"] = errors(fitted.potential_, test)
    for s in [int(x) for x in a.seeds.split(",")]:
        m = recipe_model(a.variant, s).fit(train)
        j, _ = match(chosen_points(m), P)
        rows.append(describe_picks(f"gapcalc seed {s}", j, ct, mult, lev, lev_full))
        res[f"gapcalc CUR seed {s}"] = errors(m.potential_, test)
    types = sorted(out["environments_by_config_type"])
    print(f"\n{'picks':<20}{'distinct':>9}{'w/ copies':>10}{'lev·N':>7}{'levD·N':>7}" +
          "".join(f"{t[:10]:>11}" for t in types))
    print(f"{'(training set)':<20}{out['distinct_environments']:>9}{'':>10}{'1.00':>7}"
          f"{'1.00':>7}" +
          "".join(f"{out['environments_by_config_type'][t]:>11}" for t in types))
    for r in rows:
        print(f"{r['picks']:<20}{r['distinct_environments']:>9}"
              f"{r['picks_with_copies_in_training']:>10}{r['mean_leverage_x_n_env']:>7.2f}"
              f"{r['mean_full_leverage_x_n_env']:>7.2f}" +
              "".join(f"{r['by_config_type'].get(t, 0):>11}" for t in types))
    print("(lev·N: mean CUR leverage of the picks × environments, k = rank as gapcalc; "
          "levD·N: the same with every singular direction)")
    print(f"\n{'model':<40}{'E MAE meV/at':>14}{'F MAE eV/Å':>12}")
    for k, v in res.items():
        print(f"{k:<40}{v['energy_mae_mev']:>14.3f}{v['force_mae']:>12.4f}")
    out.update(picks=rows, errors=res, wall_s=time.perf_counter() - t0)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
