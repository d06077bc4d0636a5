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


# ------------------------------------------------------------------ issue 16: command line
import pytest  # noqa: E402


def _err_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error:" in line]
    assert errors and "Traceback" not in "\n".join(err), err
    return errors[-1]


def test_clear_one_line_errors(cu_frames, tmp_path, capsys):
    train = tmp_path / "train.xyz"
    write(train, cu_frames[:2])
    model = tmp_path / "m.npz"
    cases = [
        (_small_fit_args(train, model, "--e0", "avg"), "--e0 'avg'"),
        (_small_fit_args(train, model, "--config-type-sigma", "{bad"), "not valid JSON"),
        (_small_fit_args(train, model, "--config-type-sigma", '{"liquid": {"energy": 0.1}}'),
         "no training frame has"),
        (_small_fit_args(train, model, "--config-type-sigma", '{"default": {"forces": 0.1}}'),
         "unknown key"),
        (["learn", "--oracle", "nosuchmodule_xyz:make", "-o", str(tmp_path / "r")],
         "cannot import module"),
        (["learn", "--oracle", "lj", "-o", str(tmp_path / "r")], "lj:sigma"),
    ]
    import numpy as np_
    np_.save(tmp_path / "a.npy", np_.zeros(3))
    cases.append((["info", str(tmp_path / "a.npy")], "not a gapcalc model"))
    cases.append((["eval", str(tmp_path / "a.npy"), str(train)], "not a gapcalc model"))
    from ase.calculators.singlepoint import SinglePointCalculator
    al = cu_frames[0].copy()
    al.numbers[:] = 13
    al.calc = SinglePointCalculator(al, energy=0.0, forces=np_.zeros((len(al), 3)))
    write(tmp_path / "al.xyz", al)
    cases.append((["eval", "Cu", str(tmp_path / "al.xyz")], "Al"))
    for argv, text in cases:
        assert main(argv) == 2, argv
        assert text in _err_line(capsys), argv


def test_shipped_names_units_and_key_override(cu_frames, tmp_path, capsys):
    frames = [f.copy() for f in cu_frames[30:32]]
    from ase.calculators.singlepoint import SinglePointCalculator
    for f, ref in zip(frames, cu_frames[30:32]):     # targets stored under other keys
        f.calc = None
        f.info["dft_energy"] = ref.get_potential_energy()
        f.arrays["dft_forces"] = ref.get_forces()
    test = tmp_path / "test.xyz"
    write(test, frames)
    assert main(["info", "Cu"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "gapcalc-model"
    assert main(["eval", "Cu", str(test), "--json", "--energy-key", "dft_energy",
                 "--force-key", "dft_forces"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["units"] == {"energy_rmse": "eV/atom", "energy_mae": "eV/atom",
                            "force_rmse": "eV/Å", "force_mae": "eV/Å", "stress_rmse": "eV/Å³"}
    assert res["force_mae"] is not None and res["force_mae"] < 0.1
    assert main(["eval", "Cu", str(test), "--energy-key", "dft_energy",
                 "--force-key", "dft_forces"]) == 0
    out = capsys.readouterr().out
    assert "meV/atom" in out and "GPa" in out and "--json gives eV/atom, eV/Å, eV/Å³" in out
    del SinglePointCalculator


def test_two_body_flag_before_positional_help_defaults_version(cu_frames, tmp_path, capsys):
    train = tmp_path / "train.xyz"
    write(train, cu_frames[:3])
    model = tmp_path / "m.npz"
    args = ["fit", "--two-body", str(train), "-o", str(model), "--cutoff", "4.0", "--n-max",
            "4", "--l-max", "3", "--n-sparse", "20"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "training errors" in out                      # printed at the end of a fit
    assert [t.descriptor.name for t in load(model).model.terms_] == ["soap", "distance_2b"]
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    assert "(default: 5.0)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["learn", "--help"])
    assert "(default: 5000)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("gapcalc ")


def test_md_xyz_output_and_uncertainty_log(cu_frames, tmp_path, capsys):
    start = tmp_path / "start.xyz"
    write(start, cu_frames[35])
    out = tmp_path / "md.xyz"
    assert main(["md", "Cu", str(start), "--steps", "4", "--log-interval", "2", "-o", str(out),
                 "--log-uncertainty"]) == 0
    first = out.read_text().splitlines()[0]
    assert first.strip() == str(len(cu_frames[35]))      # text extended XYZ, not binary
    frames = read(out, ":", format="extxyz")
    assert len(frames) == 3 and frames[-1].get_forces().shape == (32, 3)
    assert "max σ_F" in capsys.readouterr().err


def test_representation_options_with_quip_basis_and_gap():
    """--soap terms (radial scaling) take --radial-basis; --gap refuses --soap but keeps
    --n-features (the model is only built, not fitted)."""
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
    with pytest.raises(ValueError, match="--gap"):
        _model_from_args(a, species=[14])
