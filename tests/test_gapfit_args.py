"""gap_fit's argument language (gapcalc/gapfit_args.py): mapping, errors, the command line
(`gapcalc fit --gap ...`) and a QUIP-basis model fitted, saved and reloaded."""
import numpy as np
import pytest
from ase.io import write

from gapcalc import SparseGPR, load
from gapcalc.cli import main
from gapcalc.descriptors import PairDistance
from gapcalc.gapfit_args import (GapFitArgumentError, gap_fit_kwargs, parse_command_line,
                                 parse_gap, split_top_level)

RECIPE = ("gap_fit at_file=train.xyz gap={soap cutoff=5 n_max=8 l_max=6 atom_sigma=0.5 "
          "zeta=4 delta=1 n_sparse=1000 sparse_method=cur_points : distance_2b cutoff=4.5 "
          "delta=0.5 theta_uniform=1 n_sparse=20} default_sigma={0.002 0.1 0.1 0} "
          "e0_method=average energy_parameter_name=dft_energy force_parameter_name=dft_forces "
          "virial_parameter_name=dft_virial config_type_sigma={liq:0.003:0.15:0.2:0:"
          "bulk:0.001:0.05:0.05:0} sparse_jitter=1e-9 rnd_seed=3 gp_file=gap.xml")
SOAP_ONLY = "soap cutoff=4 n_max=4 l_max=3 atom_sigma=0.5 zeta=2 n_sparse=30"


def test_tokeniser_respects_braces_and_quotes():
    assert split_top_level("a={x y} b='p q' c", None) == ["a={x y}", "b='p q'", "c"]
    assert split_top_level("soap a=1 : distance_2b b={1:2}", ":") == ["soap a=1",
                                                                     "distance_2b b={1:2}"]
    assert parse_gap("{soap cutoff=5 : distance_2b cutoff=4}")[1] == ("distance_2b",
                                                                      {"cutoff": "4"})
    with pytest.raises(GapFitArgumentError, match="unbalanced"):
        split_top_level("gap={soap", None)


def test_full_recipe_mapping():
    kw = gap_fit_kwargs(RECIPE, species=["Si"])
    soap = kw["descriptor"]
    assert (soap.cutoff, soap.n_max, soap.l_max, soap.atom_sigma, soap.cutoff_width) == \
        (5.0, 8, 6, 0.5, 0.5)
    assert soap.radial_basis == "quip" and soap.layout == "quip"
    assert (kw["zeta"], kw["delta"], kw["n_sparse"], kw["sparse_method"]) == (4, 1.0, 1000, "cur")
    pair = kw["two_body"]
    assert isinstance(pair, PairDistance) and (pair.cutoff, pair.theta) == (4.5, 1.0)
    assert kw["delta_2b"] == 0.5
    assert (kw["sigma_energy"], kw["sigma_force"], kw["sigma_virial"]) == (0.002, 0.1, 0.1)
    assert kw["e0"] == "average" and kw["jitter"] == 1e-9 and kw["seed"] == 3
    assert (kw["energy_key"], kw["force_key"], kw["virial_key"]) == \
        ("dft_energy", "dft_forces", "dft_virial")
    assert kw["config_type_sigma"] == {"liq": {"energy": 0.003, "force": 0.15, "virial": 0.2},
                                       "bulk": {"energy": 0.001, "force": 0.05, "virial": 0.05}}
    model = SparseGPR(**kw)
    again = SparseGPR.from_params(model.get_params())       # model records round-trip
    assert again.get_params() == model.get_params()


def test_keywords_options_and_defaults():
    m = SparseGPR.from_gap_fit(gap="soap cutoff=5 n_max=6 l_max=4 atom_gaussian_width=0.4 "
                               "radial_basis=GTO central_weight=0.5 covariance_sigma0=1 "
                               "normalise=F basis_error_exponent=8 species_Z={14 8}",
                               e0="Si:-158.5:8:-432.1")
    d = m.descriptor
    assert d.radial_basis == "quip_gto" and d.species_Z == [14, 8]
    assert (d.centre_weight, d.covariance_sigma0, d.normalize, d.basis_error_exponent) == \
        (0.5, 1.0, False, 8.0)
    assert m.e0 == {"Si": -158.5, "O": -432.1}
    # gap_fit defaults: zeta 1, random sparse points, e0 from isolated atoms, jitter 1e-10
    m = SparseGPR.from_gap_fit(gap="soap cutoff=5 n_max=6 l_max=4 atom_sigma=0.4",
                               species=[14], radial_basis="gto")
    assert (m.zeta, m.sparse_method, m.e0, m.jitter) == (1, "random", "isolated", 1e-10)
    assert m.descriptor.radial_basis == "gto" and m.descriptor.layout == "gapcalc"
    assert parse_command_line("gap_fit a=1 B={x}") == {"a": "1", "b": "x"}


@pytest.mark.parametrize("args,match", [
    ("gap={soap cutoff=5 n_max=8 l_max=6 atom_sigma=0.5 nonsense_key=1}",
     "unknown key 'nonsense_key'"),
    ("gap={soap cutoff=5 n_max=8 l_max=6 atom_sigma=0.5} bogus=2", "unknown key 'bogus'"),
    ("gap={soap cutoff=5 n_max=8 l_max=6 atom_sigma=0.5 average=T}", "cannot honour"),
    ("gap={soap cutoff=5 n_max=8 l_max=6 atom_sigma=0.5 covariance_type=ard_se}",
     "cannot be honoured"),
    ("gap={soap cutoff=5 n_max=8 l_max=6 atom_sigma=0.5 radial_basis=POLY}",
     "cannot be honoured"),
    ("gap={soap cutoff=5 n_max=8 l_max=6 atom_sigma=0.5 Z=14}", "Z= .*cannot be honoured"),
    ("gap={soap cutoff=5 n_max=8 l_max=6 atom_sigma=0.5 : angle_3b cutoff=3}",
     "'angle_3b' cannot be honoured"),
    ("gap={distance_2b cutoff=5 theta_uniform=1}", "needs a soap"),
    ("gap={soap cutoff=5 n_max=8 l_max=6 atom_sigma=0.5 : distance_2b cutoff=5 Z1=14 "
     "theta_uniform=1}", "cannot honour"),
    ("gap={soap cutoff=5 n_max=8 l_max=6 atom_sigma=0.5} core_param_file=glue.xml",
     "core .*not supported"),
    ("gap={soap cutoff=5 n_max=8 l_max=6 atom_sigma=0.5} default_sigma={0.01 0.1}",
     "default_sigma needs 4"),
    ("gap={soap cutoff=5 n_max=8 l_max=6 atom_sigma=0.5} e0_method=lstsq", "e0_method"),
    ("gap={soap cutoff=5 n_max=8 l_max=6 atom_sigma=0.5} config_type_sigma={a:1:2}",
     "groups of 5"),
    ("gap={soap cutoff=5 n_max=8 l_max=6} ", "atom_sigma= is required"),
    ("gap={soap cutoff=five n_max=8 l_max=6 atom_sigma=0.5}", "not a number"),
    ("gap={soap cutoff=5 n_max=8 l_max=6 atom_sigma=0.5} config_type_parameter_name=ct",
     "cannot be honoured"),
])
def test_errors_name_the_key(args, match):
    with pytest.raises(GapFitArgumentError, match=match):
        gap_fit_kwargs(args, species=[14])


def test_species_needed():
    with pytest.raises(GapFitArgumentError, match="species"):
        gap_fit_kwargs(gap=SOAP_ONLY)


def test_cli_gap_recipe_fits_quip_model(cu_frames, tmp_path, capsys):
    train = tmp_path / "train.xyz"
    write(train, cu_frames[:6])
    out = tmp_path / "m.npz"
    rc = main(["fit", str(train), "-o", str(out), "--gap",
               SOAP_ONLY + " sparse_method=cur_points : distance_2b cutoff=4 delta=0.3 "
               "theta_uniform=1", "--default-sigma", "0.002 0.05 0.05 0",
               "--e0-method", "average", "--rnd-seed", "2"])
    assert rc in (0, None)
    calc = load(out)
    terms = calc.model.terms_
    assert [t.descriptor.name for t in terms] == ["soap", "distance_2b"]
    assert terms[0].descriptor.radial_basis == "quip" and terms[0].descriptor.n_max == 4
    at = cu_frames[10].copy()
    at.calc = calc
    ref = cu_frames[10].get_potential_energy()
    assert abs(at.get_potential_energy() - ref) / len(at) < 0.02
    with pytest.raises(SystemExit, match="unknown key 'wrong'"):
        main(["fit", str(train), "-o", str(out), "--gap", SOAP_ONLY + " wrong=1"])


def test_cli_radial_basis_option(cu_frames, tmp_path):
    train = tmp_path / "train.xyz"
    write(train, cu_frames[:4])
    out = tmp_path / "m.npz"
    assert main(["fit", str(train), "-o", str(out), "--cutoff", "4.0", "--n-max", "4",
                 "--l-max", "3", "--n-sparse", "20", "--radial-basis", "quip"]) in (0, None)
    d = load(out).model.terms_[0].descriptor
    assert d.radial_basis == "quip" and d.layout == "quip"
    assert np.isfinite(load(out).model.alpha_).all()


def _fixture_module():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parent / "fixtures" / "make_gap_xml_fixtures.py"
    spec = importlib.util.spec_from_file_location("make_gap_xml_fixtures", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_index_file_refits_gap_fits_own_model():
    """``sparse_method=index_file sparse_file=F`` with gap_fit's ``print_sparse_index`` file
    (fixture "index", made by tests/fixtures/make_gap_xml_fixtures.py on the same EMT
    frames) gives gap_fit's sparse points, and the refit predicts what quippy predicts with
    gap_fit's model (measured: energies 6e-8 eV, forces 1.3e-7 relative)."""
    from test_gap_xml import FIX, reference

    from gapcalc.gap_xml import load_gap_xml
    mk = _fixture_module()
    index = FIX / "index" / "sparse_index.dat"
    model = SparseGPR.from_gap_fit(
        gap=f"soap {mk.SOAP} zeta=4 n_sparse=12 sparse_method=index_file sparse_file={index}",
        default_sigma="0.002 0.1 0.1 0", e0_method="average", species=[29])
    assert model.n_sparse == 12 and model.sparse_indices == [
        int(w) - 1 for w in index.read_text().split()]
    model.fit(mk.emt_set("cu", 10, 2))
    X_gap_fit = next(t.X for t in load_gap_xml(FIX / "index" / "gap.xml").terms
                     if hasattr(t, "X"))
    X = model.terms_[0].X
    assert X.shape == X_gap_fit.shape
    assert np.abs(np.sort(X, axis=0) - np.sort(X_gap_fit, axis=0)).max() < 1e-7
    for name, at, ref in reference("index", "gap.xml"):
        res = model.potential_.evaluate(at)
        assert abs(res["energy"] - ref["energy"]) < 1e-6, name
        np.testing.assert_allclose(res["energies"], ref["energies"], rtol=0, atol=1e-6)
        assert np.abs(res["forces"] - ref["forces"]).max() < 1e-5 * np.abs(ref["forces"]).max()
    # the indices are a constructor parameter: a clone chooses the same points
    clone = SparseGPR.from_params(model.get_params()).fit(mk.emt_set("cu", 10, 2))
    assert np.array_equal(clone.terms_[0].X, X)


def test_index_file_errors_name_the_problem(tmp_path, cu_frames):
    soap = "soap cutoff=4 n_max=4 l_max=3 atom_sigma=0.5 zeta=2"
    good = tmp_path / "idx.dat"
    good.write_text("1 5 9\n12\n")
    for text, match in (("3 x 4", "'x' is not an integer"), ("0 1", "start at 1"),
                        ("2 2", "repeated"), ("", "no indices")):
        bad = tmp_path / "bad.dat"
        bad.write_text(text)
        with pytest.raises(GapFitArgumentError, match=match):
            gap_fit_kwargs(gap=f"{soap} sparse_method=index_file sparse_file={bad}",
                           species=[29])
    with pytest.raises(GapFitArgumentError, match="No such file"):
        gap_fit_kwargs(gap=f"{soap} sparse_method=index_file sparse_file={tmp_path}/none",
                       species=[29])
    for gap in (f"{soap} sparse_file={good}", f"{soap} sparse_method=index_file"):
        with pytest.raises(GapFitArgumentError, match="index_file"):
            gap_fit_kwargs(gap=gap, species=[29])
    kw = gap_fit_kwargs(gap=f"{soap} sparse_method=index_file sparse_file={good}", species=[29])
    assert kw["sparse_indices"] == [0, 4, 8, 11] and kw["n_sparse"] == 4
    frames = cu_frames[:2]                       # 2 × 32 atoms
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        SparseGPR(**dict(kw, sparse_indices=[0, 64], e0="average")).fit(frames)
    from gapcalc.descriptors import SOAP
    two = []
    for at in frames:
        b = at.copy()
        b.numbers[:3] = 28
        b.info["energy"] = at.get_potential_energy()
        b.arrays["forces"] = at.get_forces()
        two.append(b)
    with pytest.raises(ValueError, match="one species"):
        SparseGPR(SOAP([28, 29], cutoff=4, n_max=4, l_max=3), sparse_indices=[0, 1]).fit(two)


def test_sparse_indices_count_every_atom_of_every_frame(cu_frames):
    """Indices run over all atoms of all frames in order, an isolated-atom frame (left out
    of the fit itself) included; the rows are the SOAP rows of those environments."""
    from ase import Atoms

    from gapcalc.descriptors import SOAP
    lone = Atoms("Cu", positions=[[0, 0, 0]])
    lone.info["energy"] = -0.1
    lone.arrays["forces"] = np.zeros((1, 3))
    frames = [cu_frames[0], lone, cu_frames[1]]             # atoms 0-31, 32, 33-64
    desc = SOAP(["Cu"], cutoff=4, n_max=4, l_max=3)
    idx = [40, 32, 3, 64]
    model = SparseGPR(desc, sparse_indices=idx, e0="isolated").fit(frames)
    assert model.training_summary_["n_isolated_atoms"] == 1
    np.testing.assert_allclose(model.terms_[0].X, desc.compute(frames)[idx], atol=1e-12)
