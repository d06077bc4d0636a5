"""Real-code oracles (gapcalc.oracles): GFN2-xTB through tblite in the learning loop."""
import numpy as np
import pytest

from gapcalc import SOAP, SparseGPR
from gapcalc.oracles import make_tblite


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown xTB method"):
        make_tblite("GFN3-xTB")


def test_tblite_oracle_spec():
    """``--oracle tblite:METHOD`` (the documented short form) builds tblite's calculator."""
    pytest.importorskip("tblite")
    from gapcalc.active import make_oracle
    calc = make_oracle("tblite:GFN1-xTB")
    assert type(calc).__name__ == "TBLite"
    with pytest.raises(ValueError, match="unknown xTB method"):
        make_oracle("tblite:GFN9")


def test_otf_steps_with_gfn2_xtb(tmp_path):
    pytest.importorskip("tblite")
    from ase import units
    from ase.build import molecule
    from ase.md.verlet import VelocityVerlet
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from gapcalc.active import OnTheFly, make_oracle

    oracle = make_oracle("gapcalc.oracles:make_gfn2")       # the documented --oracle form
    assert type(oracle).__name__ == "TBLite"
    atoms = molecule("H2O")
    atoms.center(vacuum=4.0)
    model = SparseGPR(SOAP([1, 8], cutoff=3.0, n_max=3, l_max=2, atom_sigma=0.5),
                      sigma_energy=0.001, sigma_force=0.02, n_sparse=5)
    otf = OnTheFly(model, oracle, threshold=0.05, run_dir=tmp_path / "run", max_calls=3,
                   n_sparse_initial=3, n_sparse_add=1)
    atoms.calc = otf
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, 0.5 * units.fs)
    otf.attach(dyn)
    dyn.run(6)
    assert 1 <= otf.n_calls_ <= 3
    # every learning frame carries GFN2-xTB's own forces (recomputed independently), and
    # the model was fitted on them
    ref = otf.frames_[-1]
    assert otf.model.training_summary_["n_frames"] == otf.n_calls_
    xtb = make_tblite("GFN2-xTB")
    at = ref.copy()
    at.calc = xtb
    np.testing.assert_allclose(at.get_forces(), ref.get_forces(), atol=1e-4)  # SCC tolerance
    assert (tmp_path / "run" / "train.xyz").exists()


def test_otf_water_xtb_example_start(tmp_path):
    """md_examples/otf_water_xtb.py: 32 waters at 1 g/cm³, no close contacts; --write-start."""
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path
    from ase.io import read
    from ase.units import _amu
    path = Path(__file__).resolve().parents[1] / "md_examples" / "otf_water_xtb.py"
    spec = importlib.util.spec_from_file_location("otf_water_xtb", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    box = mod.water_box(seed=3)
    assert len(box) == 96 and box.get_chemical_formula() == "H64O32"
    density = box.get_masses().sum() * _amu * 1e3 / (box.get_volume() * 1e-24)
    assert density == pytest.approx(1.0, rel=1e-3)
    d = box.get_all_distances(mic=True)
    mol = np.arange(96) // 3
    inter = d[mol[:, None] != mol[None, :]]
    assert inter.min() >= 1.6 - 1e-9
    out = tmp_path / "w.xyz"
    res = subprocess.run([sys.executable, str(path), "--write-start", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert len(read(out)) == 96


@pytest.mark.parametrize("script", ["otf_water_xtb.py", "active_learning.py"])
def test_examples_never_delete_a_run(tmp_path, script):
    """An existing run (its oracle answers) survives a second start without --resume."""
    import subprocess
    import sys
    from pathlib import Path
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.json").write_text("{}")
    (run / "train.xyz").write_text("kept")
    path = Path(__file__).resolve().parents[1] / "md_examples" / script
    res = subprocess.run([sys.executable, str(path), "--run-dir", str(run)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "--resume" in res.stderr and "--overwrite" in res.stderr
    assert (run / "train.xyz").read_text() == "kept"
