"""Single test-set probes of fixed Si recipes (exploratory; NOT a selection procedure).

How to run (repository root)::

    python benchmarks/si_probes.py rs3_4_m3000_2b_sf02 [--out probes.jsonl]
    python benchmarks/si_probes.py --list

Each named recipe is fitted on the Si training split and evaluated once on the test split
(energy MAE meV/atom, force-component MAE meV/Å, by config_type, and on every 4th training
frame). Choosing a recipe from these numbers would be choosing on the test set: they only
map which regions of the hyper-parameter space `gapcalc tune` (CV on the training set alone)
should be able to reach (issue 15; RESULTS §16-17).
"""
import json, os, sys, time
for v in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[v] = "1"
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from gap_compare import SI_DIR, read_frames
from gapcalc import SOAP, SparseGPR
from gapcalc.metrics import error_table

def soap(**kw):
    base = dict(cutoff=5.0, n_max=8, l_max=6, atom_sigma=0.5, cutoff_width=0.5)
    base.update(kw)
    return SOAP([14], **base)

C = {
 "base": dict(),
 "sf05": dict(sigma_force=0.05),
 "sf03": dict(sigma_force=0.03),
 "sf02": dict(sigma_force=0.02),
 "se001_sf03": dict(sigma_energy=0.001, sigma_force=0.03),
 "se005_sf03": dict(sigma_energy=0.005, sigma_force=0.03),
 "m2000_sf03": dict(sigma_force=0.03, n_sparse=2000),
 "2b_sf03": dict(sigma_force=0.03, two_body="distance", delta_2b=0.5, theta_2b=1.0),
 "ms_sf03": dict(sigma_force=0.03, descriptor=[soap(), soap(cutoff=3.0, n_max=6, l_max=4, atom_sigma=0.3)], n_sparse=[1000, 500], delta=[1.0, 0.5]),
 "rc55_sf03": dict(sigma_force=0.03, descriptor=soap(cutoff=5.5)),
 "as04_sf03": dict(sigma_force=0.03, descriptor=soap(atom_sigma=0.4)),
 "z2m3000_sf03": dict(sigma_force=0.03, zeta=2, n_sparse=3000),
 "sv03_sf03": dict(sigma_force=0.03, sigma_virial=0.03),
 "d2_sf03": dict(sigma_force=0.03, delta=2.0),
 "combo_ms_2b_m3500": dict(sigma_force=0.03, two_body="distance", delta_2b=0.5, theta_2b=1.0, descriptor=[soap(), soap(cutoff=3.0, n_max=6, l_max=4, atom_sigma=0.3)], n_sparse=[2500, 1000], delta=[1.0, 0.5]),
 "combo_m3000_2b_sf02": dict(sigma_force=0.02, two_body="distance", delta_2b=0.5, theta_2b=1.0, n_sparse=3000),
}
def rs(r0, m, c=1.0):
    return {"type": "inverse_power", "r0": r0, "m": m, "c": c}
C.update({
 "rs3_4": dict(sigma_force=0.03, descriptor=soap(radial_scaling=rs(3.0, 4))),
 "rs25_4": dict(sigma_force=0.03, descriptor=soap(radial_scaling=rs(2.5, 4))),
 "rs35_6": dict(sigma_force=0.03, descriptor=soap(radial_scaling=rs(3.5, 6))),
 "rs4_8": dict(sigma_force=0.03, descriptor=soap(radial_scaling=rs(4.0, 8))),
 "z6_sf03": dict(sigma_force=0.03, zeta=6),
 "z3_sf03": dict(sigma_force=0.03, zeta=3),
 "n10l8_sf03": dict(sigma_force=0.03, descriptor=soap(n_max=10, l_max=8)),
 "cw1_sf03": dict(sigma_force=0.03, descriptor=soap(cutoff_width=1.0)),
 "rc55cw1_sf03": dict(sigma_force=0.03, descriptor=soap(cutoff=5.5, cutoff_width=1.0)),
 "as04rc55_sf03": dict(sigma_force=0.03, descriptor=soap(atom_sigma=0.4, cutoff=5.5)),
})
R34 = soap(radial_scaling=rs(3.0, 4))
TB = dict(two_body="distance", delta_2b=0.5, theta_2b=1.0)
C.update({
 "rs3_4_sf02": dict(sigma_force=0.02, descriptor=R34),
 "rs3_4_2b": dict(sigma_force=0.03, descriptor=R34, **TB),
 "rs3_4_m2000": dict(sigma_force=0.03, descriptor=R34, n_sparse=2000),
 "rs3_4_ms": dict(sigma_force=0.03, descriptor=[R34, soap(cutoff=3.0, n_max=6, l_max=4, atom_sigma=0.3)], n_sparse=[1000, 500], delta=[1.0, 0.5]),
 "rs3_4_m3000_2b_sf02": dict(sigma_force=0.02, descriptor=R34, n_sparse=3000, **TB),
 "rs3_4_d4": dict(sigma_force=0.03, descriptor=R34, delta=4.0),
})
if "--list" in sys.argv:
    print("\n".join(C))
    raise SystemExit
name = sys.argv[1]
out_path = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else None
kw = dict(C[name])
kw.setdefault("descriptor", soap())
train = read_frames(SI_DIR / "si_mlearn_train.xyz")
test = read_frames(SI_DIR / "si_mlearn_test.xyz")
t0 = time.process_time()
m = SparseGPR(**kw).fit(train)
fit = time.process_time() - t0
test_err = error_table(m, test)
train_err = error_table(m, train[::4])["overall"]


def mae(row):
    """(energy MAE meV/atom, force-component MAE meV/Å) of an error_table row."""
    return 1e3 * row["energy_mae"], 1e3 * row["force_mae"]


te, tr = mae(test_err["overall"]), mae(train_err)
bytype = {ct: mae(row) for ct, row in sorted(test_err["per_config_type"].items())}
out = {"name": name, "test_E": te[0], "test_F": te[1], "train_E": tr[0], "train_F": tr[1], "fit_cpu": fit, "by_type": bytype}
print(json.dumps(out))
if out_path:
    with open(out_path, "a") as fh:
        fh.write(json.dumps(out) + "\n")
