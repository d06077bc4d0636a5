"""gapcalc tune (gapcalc/tune.py): coordinate-descent CV search, deterministic, CLI."""
import numpy as np
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
              inner=INNER, curve_sizes=(0.5, 1.0))
    res = tune(frames, **kw)
    assert len(res["table"]) >= 3
    best = min(res["table"], key=lambda r: r["force_rmse"])
    assert res["best_row"] is best
    assert res["model"].M_ >= 30 and res["model"].terms_[0].descriptor.cutoff == \
        best["config"]["cutoff"]
    assert res["model"].sigma_force == best["sigma_force"]
    assert [r["n_train"] for r in res["curve"]] == [4, 8]
    again = tune(frames, **kw)
    assert [r["label"] for r in again["table"]] == [r["label"] for r in res["table"]]
    assert [r["force_rmse"] for r in again["table"]] == [r["force_rmse"] for r in res["table"]]
    text = format_tune_table(res)
    assert "learning curve" in text and text.count("*") == 1
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
               space={"cutoff": [3.5]}, inner=INNER, curve_sizes=(), score="both")
    rows = res["table"]
    assert len(rows) == 2 and abs(rows[0]["score"] - 2.0) < 1e-12
    assert res["best_row"]["score"] == min(r["score"] for r in rows)
