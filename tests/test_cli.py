"""The gapcalc command line (gapcalc/cli.py): fit, eval --json, info, md on tiny inputs."""
import json

import numpy as np
from ase.io import read, write

from gapcalc import load
from gapcalc.cli import main


def _small_fit_args(train, out, *extra):
    return ["fit", str(train), "-o", str(out), "--cutoff", "4.0", "--n-max", "4",
            "--l-max", "3", "--n-sparse", "40", *extra]


def test_fit_eval_info_two_body(cu_frames, tmp_path, capsys):
    train, test = tmp_path / "train.xyz", tmp_path / "test.xyz"
    write(train, cu_frames[:8])
    write(test, cu_frames[30:34])
    model = tmp_path / "m.npz"
    assert main(_small_fit_args(train, model, "--two-body", "--sigma-force", "0.05")) in (0, None)
    calc = load(model)
    assert [t.descriptor.name for t in calc.model.terms_] == ["soap", "distance_2b"]
    capsys.readouterr()
    assert main(["eval", str(model), str(test), "--json"]) in (0, None)
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("energy_rmse", "energy_mae", "force_rmse", "force_mae", "stress_rmse"):
        assert np.isfinite(res[key])
    assert res["n_frames"] == 4 and res["force_mae"] < 0.2
    assert main(["info", str(model)]) in (0, None)
    header = json.loads(capsys.readouterr().out)
    assert header["terms"][1]["descriptor"]["name"] == "distance_2b"


def test_fit_radial_two_body_and_md(cu_frames, tmp_path):
    train = tmp_path / "train.xyz"
    write(train, cu_frames[:6])
    model = tmp_path / "m.npz"
    assert main(_small_fit_args(train, model, "--two-body", "radial")) in (0, None)
    assert load(model).model.terms_[1].descriptor.name == "twobody"
    start = tmp_path / "start.xyz"
    write(start, cu_frames[35])
    traj = tmp_path / "md.traj"
    assert main(["md", str(model), str(start), "--steps", "5", "--temperature", "300",
                 "--ensemble", "nve", "-o", str(traj)]) in (0, None)
    assert len(read(traj, ":")) >= 1


def test_representation_options_with_quip_basis_and_gap():
    """--soap terms (radial scaling) take --radial-basis; --gap refuses --soap but keeps
    --n-features (the model is only built, not fitted)."""
    import pytest
    from gapcalc.cli import _model_from_args, build_parser
    p = build_parser()
    a = p.parse_args(["fit", "t.xyz", "-o", "m.npz", "--radial-basis", "quip",
                      "--soap", "cutoff=3 n_max=3 l_max=2 delta=0.3", "--soap",
                      "cutoff=4 r0=2 m=4 n_features=0.5", "--n-sparse", "20"])
    m = _model_from_args(a, species=[14])
    assert [d.radial_basis for d in m.descriptor] == ["quip", "quip"]
    assert m.descriptor[0].radial_scaling is None
    assert m.descriptor[1].radial_scaling["r0"] == 2.0
    assert m.delta[0] == 0.3 and m.n_features == [None, 0.5]
    gap = "soap cutoff=4 n_max=3 l_max=2 atom_sigma=0.5 zeta=2 delta=1 n_sparse=10"
    a = p.parse_args(["fit", "t.xyz", "-o", "m.npz", "--gap", gap, "--n-features", "30"])
    m = _model_from_args(a, species=[14])
    assert m.descriptor.radial_basis == "quip" and m.n_features == 30
    a = p.parse_args(["fit", "t.xyz", "-o", "m.npz", "--gap", gap, "--soap", "cutoff=3"])
    with pytest.raises(SystemExit, match="--gap"):
        _model_from_args(a, species=[14])
