"""gapcalc tune (gapcalc/tune.py): coordinate-descent CV search, deterministic, CLI."""
import numpy as np
import pytest
from ase.io import write

from gapcalc import load
from gapcalc.cli import main
from gapcalc.tune import format_tune_table, tune

START = {"cutoff": 4.0, "nl": (4, 3), "atom_sigma": 0.5, "radial_scaling": None, "zeta": 4,
         "two_body": None}
SPACE = {"cutoff": [3.5, 4.0], "radial_scaling": [None, (2.5, 4)], "two_body": [None, "distance"]}
INNER = {"sigma_energy": [0.001, 0.003], "sigma_force": [0.02, 0.1], "sigma_virial": [0.05],
         "delta": [1.0], "delta_2b": [0.3]}


def test_tune_search_is_deterministic_and_picks_the_cv_minimum(cu_frames):
    frames = cu_frames[:10]
    kw = dict(k=3, seed=3, n_sparse=30, n_sparse_search=20, start=START, space=SPACE,
              inner=INNER, curve_sizes=(0.5, 1.0), finalists=1, energy_cap=None)
    res = tune(frames, **kw)
    assert len(res["table"]) >= 3
    best = min(res["table"], key=lambda r: r["force_rmse"])
    assert res["best_row"] is best
    assert res["model"].M_ >= 30 and res["model"].terms_[0].descriptor.cutoff == \
        best["config"]["cutoff"]
    # the σ's of the model are chosen again by CV at n_sparse on all frames
    fin = res["final"]
    assert fin["n_sparse"] == 30 and res["model"].sigma_force == fin["sigma_force"]
    assert res["model"].training_summary_["tune"]["final_cv"]["force_rmse"] == fin["force_rmse"]
    assert [r["n_train"] for r in res["curve"]] == [4, 8]
    again = tune(frames, **kw)
    assert [r["label"] for r in again["table"]] == [r["label"] for r in res["table"]]
    assert [r["force_rmse"] for r in again["table"]] == [r["force_rmse"] for r in res["table"]]
    text = format_tune_table(res)
    assert "learning curve" in text and text.count("*") == 2   # table + finalists
    # a candidate budget stops the search early
    assert len(tune(frames, max_candidates=2, **{**kw, "curve_sizes": ()})["table"]) == 2


def test_cli_tune(cu_frames, tmp_path, capsys):
    train = tmp_path / "train.xyz"
    write(train, cu_frames[:6])
    out = tmp_path / "m.npz"
    assert main(["tune", str(train), "-o", str(out), "--max-candidates", "2", "--folds", "3",
                 "--n-sparse", "20", "--n-sparse-search", "10"]) in (0, None)
    text = capsys.readouterr().out
    assert "best:" in text and "learning curve" in text
    model = load(out).model
    assert model.training_summary_["tune"]["candidates"] == 2


def test_tune_score_both(cu_frames):
    res = tune(cu_frames[:8], k=3, n_sparse=20, n_sparse_search=15, start=START,
               space={"cutoff": [3.5]}, inner=INNER, curve_sizes=(), score="both",
               energy_cap=None)
    rows = res["table"]
    ref = res["search_reference"]       # the starting recipe's first grid point: score 2
    assert len(rows) == 2 and rows[0]["score"] <= 2.0 + 1e-12
    for r in rows:
        assert r["score"] == pytest.approx(r["force_rmse"] / ref["force"]
                                           + r["energy_rmse"] / ref["energy"], rel=1e-12)
    assert res["best_row"]["score"] == min(r["score"] for r in rows)


def test_tune_final_cv_is_the_cv_optimum_at_n_sparse(cu_frames):
    """The refit's σ's are the CV optimum of the winner at n_sparse; without final_cv the
    search's σ's are kept; both models predict as a plain fit with their σ's."""
    from gapcalc.tune import make_model
    from gapcalc.tuning import cross_validate
    frames = cu_frames[:9]
    kw = dict(k=3, seed=1, n_sparse=40, n_sparse_search=15, start=START,
              space={"cutoff": [3.5]}, inner=INNER, curve_sizes=(), finalists=1,
              energy_cap=None)
    res = tune(frames, **kw)
    win = res["best"]
    grid = {n: sorted(set(INNER[n]) | {res["best_row"][n]})
            for n in ("sigma_energy", "sigma_force", "sigma_virial", "delta")}
    cv = cross_validate(make_model(res["best_row"]["config"], np.array([29]), 40, seed=1),
                        frames, k=3, seed=1, refit=False, search="grid", **grid)
    assert res["final"]["force_rmse"] == pytest.approx(cv["best"]["force_rmse"], rel=1e-9)
    plain = make_model(win, np.array([29]), 40, seed=1).fit(frames)
    at = frames[0]
    assert np.allclose(res["model"].evaluate(at)["forces"], plain.evaluate(at)["forces"],
                       atol=1e-8)
    kept = tune(frames, final_cv=False, **kw)
    assert "final" not in kept and kept["model"].sigma_force == kept["best_row"]["sigma_force"]


def test_tune_finalists_are_reranked_at_n_sparse(cu_frames):
    """The best search candidates are cross-validated again at n_sparse on all frames; the
    model is the finalist with the lowest final CV score, whatever the search's order; with
    score="both" all finalists are scored relative to the same reference."""
    from gapcalc.tune import make_model
    from gapcalc.tuning import cross_validate
    frames = cu_frames[:9]
    space = {"cutoff": [3.0, 3.5, 4.0]}
    for score in ("force", "both"):
        res = tune(frames, k=3, seed=2, n_sparse=40, n_sparse_search=10, start=START,
                   space=space, inner=INNER, curve_sizes=(), finalists=2, score=score,
                   energy_cap=None)
        ranked = sorted(res["table"], key=lambda r: r["score"])[:2]
        if score == "both":     # the starting recipe first: the common reference
            ranked = [res["table"][0]] + [r for r in ranked if r is not res["table"][0]]
        fin = res["finalists"]
        assert [e["row"] for e in fin] == ranked
        chosen = min(fin, key=lambda e: e["score"])
        assert res["best_row"] is chosen["row"]
        assert res["model"].terms_[0].descriptor.cutoff == chosen["row"]["config"]["cutoff"]
        assert res["model"].sigma_force == chosen["sigma_force"]
        assert [e["label"] for e in res["model"].training_summary_["tune"]["finalists"]] == \
            [e["label"] for e in fin]
        # each finalist's score is that of its own CV at n_sparse (the second one relative
        # to the first's reference with "both")
        ref = None
        for e in fin:
            grid = {n: sorted(set(INNER[n]) | {e["row"][n]})
                    for n in ("sigma_energy", "sigma_force", "sigma_virial", "delta")}
            cv = cross_validate(make_model(e["row"]["config"], np.array([29]), 40, seed=2),
                                frames, k=3, seed=2, score=score, refit=False,
                                search="coordinate", reference=ref, **grid)
            ref = cv["reference"]
            assert e["score"] == pytest.approx(cv["best"]["score"], rel=1e-9)
            if score == "force":
                assert e["score"] == e["force_rmse"]
        text = format_tune_table(res)
        assert "finalists at 40 sparse points" in text and text.count("*") == 2


def test_cross_validate_energy_cap_penalises_points_above_the_cap(cu_frames):
    """With energy_cap=q the model's own σ's and δ are scored first and set the cap
    E_cap = q·E(as given); every point's score is its force RMSE × max(1, E/E_cap)^4,
    and the best point is the lowest score (full grid)."""
    from gapcalc.tune import make_model
    from gapcalc.tuning import CAP_POWER, cross_validate
    frames = cu_frames[:9]
    model = make_model(START, np.array([29]), 30, seed=0)
    grid = dict(sigma_energy=[0.0005, 0.002, 0.02], sigma_force=[0.01, 0.1, 0.5],
                sigma_virial=[0.1], delta=[1.0])
    free = cross_validate(model, frames, k=3, refit=False, **grid)
    assert "as_given" not in free
    for q in (0.9, 1.0):
        cv = cross_validate(model, frames, k=3, refit=False, energy_cap=q, **grid)
        given = cv["as_given"]
        assert (given["sigma_energy"], given["sigma_force"]) == (model.sigma_energy,
                                                                 model.sigma_force)
        cap = cv["reference"]["energy_cap"]
        assert cap == pytest.approx(q * given["energy_rmse"], rel=1e-12)
        for row in cv["results"]:
            pen = max(1.0, row["energy_rmse"] / cap) ** CAP_POWER
            assert row["score"] == pytest.approx(row["force_rmse"] * pen, rel=1e-12)
        assert cv["best"]["score"] == min(r["score"] for r in cv["results"])
        # the same grid points have the same RMSEs with and without the cap
        rmse = {(r["sigma_energy"], r["sigma_force"]): r["energy_rmse"] for r in free["results"]}
        for row in cv["results"]:
            assert row["energy_rmse"] == pytest.approx(
                rmse[(row["sigma_energy"], row["sigma_force"])], rel=1e-9)
    # a cap given as a reference is used as it is (no as-given point)
    cv = cross_validate(model, frames, k=3, refit=False, energy_cap=1.0,
                        reference={"energy_cap": 1e-9}, **grid)
    assert "as_given" not in cv and cv["reference"]["energy_cap"] == 1e-9
    assert all(r["score"] > r["force_rmse"] for r in cv["results"])


def test_tune_energy_cap_baseline_first(cu_frames):
    """With the default energy cap the search's scores are penalised relative to the
    starting recipe at default σ's, the starting recipe is cross-validated first among the
    finalists (its default σ's set the final cap) and the model is the lowest capped score."""
    from gapcalc.tuning import CAP_POWER
    frames = cu_frames[:9]
    res = tune(frames, k=3, seed=2, n_sparse=40, n_sparse_search=10, start=START,
               space={"cutoff": [3.0, 3.5]}, inner=INNER, curve_sizes=(), finalists=1)
    cap = res["search_reference"]["energy_cap"]
    for row in res["table"]:
        pen = max(1.0, row["energy_rmse"] / cap) ** CAP_POWER
        assert row["score"] == pytest.approx(row["force_rmse"] * pen, rel=1e-12)
    fin = res["finalists"]
    assert fin[0]["row"] is res["table"][0]
    base = res["baseline"]
    assert base["energy_cap"] == pytest.approx(base["energy_rmse"], rel=1e-12)
    for e in fin:
        pen = max(1.0, e["energy_rmse"] / base["energy_cap"]) ** CAP_POWER
        assert e["score"] == pytest.approx(e["force_rmse"] * pen, rel=1e-12)
    assert res["final"]["score"] == min(e["score"] for e in fin)
    assert res["final"]["score"] <= base["score"]
    assert res["model"].training_summary_["tune"]["baseline_cv"] == base
    assert "baseline" in format_tune_table(res)


def test_tune_skips_a_candidate_that_cannot_be_cross_validated(cu_frames, monkeypatch):
    """A failing candidate is logged and skipped (the search goes on); only a failing
    starting recipe stops the search."""
    import gapcalc.tuning
    original = gapcalc.tuning.cross_validate

    def failing(model, *args, **kw):
        if model.descriptor.cutoff == 3.5:
            raise np.linalg.LinAlgError("singular")
        return original(model, *args, **kw)
    monkeypatch.setattr(gapcalc.tuning, "cross_validate", failing)
    for cap in (None, 1.0):
        res = tune(cu_frames[:8], k=3, n_sparse=20, n_sparse_search=15, start=START,
                   space={"cutoff": [3.5, 3.0]}, inner=INNER, curve_sizes=(), finalists=1,
                   energy_cap=cap)
        assert [r["config"]["cutoff"] for r in res["table"]] == [4.0, 3.0]
    with pytest.raises(ValueError, match="starting configuration"):
        tune(cu_frames[:8], k=3, n_sparse=20, n_sparse_search=15,
             start=dict(START, cutoff=3.5), space={}, inner=INNER, curve_sizes=())
