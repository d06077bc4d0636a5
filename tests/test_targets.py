"""Bad input: every case raises an error naming the problem (and the frame)."""
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from gapcalc import SOAP, SparseGPR
from gapcalc.targets import FrameError, TargetKeys, read_targets

SIG = {"energy": 0.002, "force": 0.1, "virial": 0.1}


def labelled(at, energy=-1.0, forces=None, stress=None):
    at = at.copy()
    f = np.zeros((len(at), 3)) if forces is None else forces
    at.calc = SinglePointCalculator(at, energy=energy, forces=f, stress=stress)
    return at


def good():
    at = bulk("Cu", cubic=True)
    at.rattle(0.05, seed=0)
    return labelled(at, -10.0, stress=np.zeros(6))


def fit(frames):
    return SparseGPR(SOAP(["Cu"], cutoff=3.5, n_max=3, l_max=2), n_sparse=5).fit(frames)


def test_non_finite_position_in_training_frame():
    bad = good()
    bad.positions[2, 1] = np.nan
    with pytest.raises(FrameError, match=r"frame 1: non-finite position for atom 2"):
        fit([good(), bad])


def test_non_finite_cell():
    bad = good()
    bad.cell[0, 0] = np.inf
    with pytest.raises(FrameError, match="frame 0: non-finite cell"):
        fit([bad])


def test_close_atoms():
    bad = good()
    bad.positions[1] = bad.positions[0] + [0.1, 0, 0]
    with pytest.raises(FrameError, match=r"frame 2: atoms 0 and 1 are 0.100 Å apart"):
        fit([good(), good(), bad])


def test_singular_cell_with_pbc():
    bad = Atoms("Cu2", positions=[[0, 0, 0], [1.5, 1.5, 0]], cell=[[3, 0, 0], [3, 0, 0], [0, 0, 3]],
                pbc=True)
    bad = labelled(bad)
    with pytest.raises(FrameError, match="singular"):
        fit([bad])


def test_missing_energy_and_forces():
    at = good()
    no_e = at.copy()
    no_e.calc = None
    no_e.arrays["forces"] = np.zeros((len(no_e), 3))
    with pytest.raises(FrameError, match="frame 1: no energy"):
        fit([good(), no_e])
    no_f = at.copy()              # energy without forces trains (test_energy_only_frames_train)
    no_f.calc = None
    no_f.info["energy"] = -1.0
    fit([good(), no_f])


def test_nan_targets():
    with pytest.raises(FrameError, match="frame 0: energy is nan"):
        fit([labelled(good(), energy=np.nan)])
    f = np.zeros((4, 3))
    f[3, 0] = np.inf
    with pytest.raises(FrameError, match="frame 1: non-finite force on atom 3"):
        fit([good(), labelled(good(), forces=f)])
    with pytest.raises(FrameError, match="non-finite virial"):
        fit([labelled(good(), stress=np.array([np.nan, 0, 0, 0, 0, 0]))])


def test_unknown_species_at_prediction():
    model = fit([good(), good()])
    with pytest.raises(ValueError, match=r"Ag \(Z=47\)"):
        model.evaluate(bulk("Ag", cubic=True))


def test_bad_structure_at_prediction():
    model = fit([good()])
    at = bulk("Cu", cubic=True)
    at.positions[0, 0] = np.inf
    calc = model.calculator()
    at.calc = calc
    with pytest.raises(FrameError, match="non-finite position"):
        at.get_potential_energy()


def test_keys_and_virial_convention():
    at = bulk("Cu", cubic=True)
    stress = np.array([0.1, 0.2, 0.3, 0.01, 0.02, 0.03])
    at = labelled(at, stress=stress)
    t = read_targets(at, 0, TargetKeys(), SIG)
    xx, yy, zz, yz, xz, xy = stress
    s33 = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    np.testing.assert_allclose(t.virial, -s33 * at.get_volume())
    # gap_fit style keys in info/arrays win, and custom names work
    at.info["REF_energy"] = -3.0
    at.arrays["REF_forces"] = np.ones((4, 3))
    at.info["REF_virial"] = np.arange(9.0)
    t = read_targets(at, 0, TargetKeys("REF_energy", "REF_forces", "REF_virial"), SIG)
    assert t.energy == -3.0 and t.forces[0, 0] == 1.0
    np.testing.assert_array_equal(t.virial, np.arange(9.0).reshape(3, 3))


def test_sigma_overrides():
    at = good()
    t = read_targets(at, 0, TargetKeys(), SIG)
    assert t.sigma_energy == pytest.approx(0.002 * 2) and t.sigma_force == 0.1
    at.info["config_type"] = "liquid"
    t = read_targets(at, 0, TargetKeys(), SIG, {"liquid": {"energy": 0.01, "force": 0.3}})
    assert t.sigma_energy == pytest.approx(0.02) and t.sigma_force == 0.3
    at.info["force_sigma"] = 0.7
    t = read_targets(at, 0, TargetKeys(), SIG, {"liquid": {"force": 0.3}})
    assert t.sigma_force == 0.7
    at.arrays["force_mask"] = np.array([True, False, False, False])
    t = read_targets(at, 0, TargetKeys(), SIG)
    np.testing.assert_array_equal(t.force_mask, [False, True, True, True])


def emt_labelled(seed):
    from ase.calculators.emt import EMT
    from gapcalc.datasets import label
    at = bulk("Cu", cubic=True)
    at.rattle(0.1, seed=seed)
    return label(at, EMT())


def test_energy_only_frames_train(caplog):
    """Frames with an energy but no forces (DFT databases) train on their energy."""
    import logging
    frames = [emt_labelled(s) for s in range(3)]
    no_f = emt_labelled(7)
    e = no_f.get_potential_energy()
    no_f.calc = None
    no_f.info["energy"] = e + 0.5          # an energy the others do not explain
    caplog.set_level(logging.WARNING)
    with_e = fit(frames + [no_f])
    without = fit(frames)
    assert any("have no forces" in r.getMessage() for r in caplog.records)
    pred_with = with_e.evaluate(no_f)["energy"]
    pred_without = without.evaluate(no_f)["energy"]
    assert abs(pred_with - (e + 0.5)) < abs(pred_without - (e + 0.5))   # it was learned


def test_implausible_stress_warns(caplog):
    import logging
    from gapcalc.targets import check_targets
    frames = [good() for _ in range(2)]
    kbar = frames[1]
    stress = kbar.get_stress()
    kbar.calc.results["stress"] = stress * 1602.1766 + np.array([50.0, 50, 50, 0, 0, 0])
    caplog.set_level(logging.WARNING)
    from gapcalc import SparseGPR
    targets = SparseGPR().read(frames)
    msgs = check_targets(frames, targets)
    assert any("kbar" in m and "frames 1" in m for m in msgs)
    assert any("kbar" in r.getMessage() for r in caplog.records)


def test_config_type_sigma_unknown_key_is_an_error():
    at = good()
    at.info["config_type"] = "bulk"
    model = SparseGPR(SOAP(["Cu"], cutoff=3.5, n_max=3, l_max=2), n_sparse=5,
                      config_type_sigma={"bulk": {"forces": 0.1}})
    with pytest.raises(FrameError, match="unknown key"):
        model.fit([at])
