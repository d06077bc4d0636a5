"""Cross-validation from triangles equals explicit refits; learning curves."""
import numpy as np

from gapcalc import SOAP, SparseGPR
from gapcalc.metrics import error_table
from gapcalc.tuning import cross_validate, learning_curve


def test_cv_refit_equals_direct_fit(cu_frames):
    frames = cu_frames[:12]
    desc = SOAP(["Cu"], cutoff=4.0, n_max=4, l_max=3, atom_sigma=0.5)
    base = SparseGPR(desc, n_sparse=40, sigma_energy=0.002, sigma_force=0.1, delta=1.0)
    cv = cross_validate(base, frames, k=3, sigma_force=[0.03, 0.1], delta=[0.5, 2.0])
    assert len(cv["results"]) == 4
    assert all(r["force_rmse"] > 0 and r["energy_rmse"] > 0 for r in cv["results"])
    best = cv["best"]
    direct = SparseGPR(desc, n_sparse=40, sigma_energy=0.002, sigma_force=best["sigma_force"],
                       delta=best["delta"]).fit(frames)
    at = cu_frames[20]
    a, b = cv["model"].evaluate(at), direct.evaluate(at)
    np.testing.assert_allclose(a["forces"], b["forces"], atol=1e-6)
    assert abs(a["energy"] - b["energy"]) < 1e-6
    np.testing.assert_allclose(cv["model"].R_.T @ cv["model"].R_, direct.R_.T @ direct.R_,
                               rtol=1e-6, atol=1e-6 * np.abs(direct.R_.T @ direct.R_).max())


def test_cv_heldout_rmse_matches_explicit_fold(cu_frames):
    """The triangle-based held-out RMSE equals predicting the held-out fold explicitly."""
    frames = cu_frames[:6]
    desc = SOAP(["Cu"], cutoff=4.0, n_max=4, l_max=3, atom_sigma=0.5)
    base = SparseGPR(desc, n_sparse=30, sparse_method="uniform")
    cv = cross_validate(base, frames, k=2, seed=5, refit=False)
    rng = np.random.default_rng(5)
    perm = rng.permutation(6)
    folds = np.empty(6, int)
    folds[perm] = np.arange(6) % 2
    sq, n = 0.0, 0
    for f in (0, 1):
        train = [frames[i] for i in range(6) if folds[i] != f]
        test = [frames[i] for i in range(6) if folds[i] == f]
        m = SparseGPR(desc, n_sparse=30, sparse_method="uniform")
        m.fit(frames)   # same sparse points and e0 as CV (chosen from all frames) ...
        acc = m._accumulate(train, m.read(train), range(len(train)))
        from gapcalc.solver import solve_regularised
        alpha, _ = solve_regularised([acc[t].triangle() for t in ("energy", "force", "virial")],
                                     m.U_)
        m._set_alpha(alpha)  # ... refitted on the training fold only
        err = np.concatenate([(m.evaluate(at)["forces"] - at.get_forces()).ravel() for at in test])
        sq += np.sum(err ** 2)
        n += err.size
    assert abs(np.sqrt(sq / n) - cv["results"][0]["force_rmse"]) < 1e-8


def test_learning_curve(cu_frames):
    desc = SOAP(["Cu"], cutoff=4.0, n_max=4, l_max=3, atom_sigma=0.5)
    curve = learning_curve(SparseGPR(desc, n_sparse=40), cu_frames[:16], cu_frames[30:34],
                           [2, 16])
    assert [r["n_train"] for r in curve] == [2, 16]
    assert curve[1]["force_rmse"] < curve[0]["force_rmse"]
    table = error_table(SparseGPR(desc, n_sparse=10).fit(cu_frames[:3]), cu_frames[30:32])
    assert table["overall"]["n_frames"] == 2


def test_coordinate_search_reaches_the_grid_minimum_on_a_separable_grid(cu_frames):
    """Coordinate descent over the CV grid visits fewer points; on this small grid it finds
    the same minimum as the full grid."""
    from gapcalc import SOAP, SparseGPR
    from gapcalc.tuning import cross_validate
    model = SparseGPR(SOAP(["Cu"], cutoff=4.0, n_max=4, l_max=3), n_sparse=20)
    grid = dict(sigma_force=[0.01, 0.05, 0.2], sigma_energy=[0.001, 0.01], delta=[0.5, 2.0])
    full = cross_validate(model, cu_frames[:8], k=4, refit=False, **grid)
    coord = cross_validate(model, cu_frames[:8], k=4, refit=False, search="coordinate", **grid)
    assert len(coord["results"]) < len(full["results"])
    assert coord["best"]["force_rmse"] <= min(r["force_rmse"] for r in full["results"]) * 1.02
