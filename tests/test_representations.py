"""Representation options of SOAP (issue 15): radial scaling (seed Eq. 22), alchemical
compression (Eq. 23), feature selection; exact gradients by finite differences, the
reverse-mode (prediction) path against the forward one, and model-record round trips."""
import numpy as np
import pytest
from ase import Atoms

from gapcalc.descriptors import SOAP, descriptor_from_dict
from gapcalc.descriptors.radial import radial_scaling_values, radial_table, scale_table

from _checks import assert_backward_matches_forward, assert_gradients_match_fd, triclinic_cell

SMALL = dict(cutoff=4.0, n_max=4, l_max=3, atom_sigma=0.5, cutoff_width=1.0)
SCALING = {"type": "inverse_power", "r0": 2.0, "m": 4, "c": 0.7}
MIX = [[1.0, 0.4, -0.3], [0.2, -0.8, 0.9]]          # d_J = 2 over (H, C, O)


def cell3():
    """Periodic triclinic cell with three species, smaller than the cutoff sphere."""
    return triclinic_cell([1, 8, 8, 6, 1, 6])


def variants():
    sp = ["H", "C", "O"]
    full = SOAP(sp, **SMALL)
    sel = np.random.default_rng(1).choice(full.n_features, full.n_features // 3, replace=False)
    comp = SOAP(sp, compression=MIX, **SMALL)
    sel_c = np.random.default_rng(2).choice(comp.n_features, comp.n_features // 2,
                                            replace=False)
    return {
        "scaling": SOAP(sp, radial_scaling=SCALING, **SMALL),
        "compressed": comp,
        "selected": SOAP(sp, features=sel, **SMALL),
        "all": SOAP(sp, radial_scaling=SCALING, compression=MIX, features=sel_c, **SMALL),
    }


@pytest.mark.parametrize("name", ["scaling", "compressed", "selected", "all"])
def test_position_and_strain_gradients(name):
    desc = variants()[name]
    assert_gradients_match_fd(desc, cell3(), h=1e-5, rtol=1e-6)


@pytest.mark.parametrize("name", ["scaling", "compressed", "selected", "all"])
def test_reverse_mode_matches_forward(name):
    """The prediction path (backward pair terms) agrees with the forward gradients."""
    desc = variants()[name]
    at = cell3()
    env = desc.environment(at)
    c, p, pn = desc.describe(env)
    c2 = desc.expand(env)
    np.testing.assert_allclose(c, c2, atol=1e-14)
    np.testing.assert_allclose(p, desc.spectrum(c2)[0], atol=1e-14)
    np.testing.assert_allclose(p, desc.features(env), atol=1e-14)
    assert_backward_matches_forward(desc, env, c, p, pn, len(at))


def test_radial_scaling_multiplies_each_neighbour_density():
    """Dimer: c(neighbour part) with u is exactly u(d) times c without (centre unchanged)."""
    at = Atoms("HH", positions=[[0, 0, 0], [0.3, 1.1, 2.0]])
    d = np.linalg.norm(at.positions[1])
    plain = SOAP(["H"], normalize=False, **SMALL)
    for sc in ({"type": "inverse_power", "r0": 1.5, "m": 3}, SCALING):
        scaled = SOAP(["H"], normalize=False, radial_scaling=sc, **SMALL)
        c0 = plain.expand(plain.environment(at))
        c1 = scaled.expand(scaled.environment(at))
        centre = np.zeros_like(c0)
        centre[:, 0, :, 0] = plain._table[3] * 0.5 / np.sqrt(np.pi)
        u, _ = radial_scaling_values(d, scaled.radial_scaling)
        np.testing.assert_allclose(c1 - centre, u * (c0 - centre), atol=1e-12)
    # the formula and its derivative
    r = np.linspace(0.1, 4, 50)
    u, du = radial_scaling_values(r, SCALING)
    np.testing.assert_allclose(u, 0.7 / (0.7 + (r / 2.0) ** 4))
    hh = 1e-6
    fd = (radial_scaling_values(r + hh, SCALING)[0] - radial_scaling_values(r - hh, SCALING)[0])
    np.testing.assert_allclose(du, fd / (2 * hh), rtol=1e-7, atol=1e-10)
    # applied to any table of the (h, values, derivs, centre) layout; identity for None
    tab = radial_table(4.0, 4, 3, 0.5, 1.0)
    assert scale_table(tab, None) is tab


def test_compression_identity_and_permutation():
    at = cell3()
    sp = ["H", "C", "O"]
    ref = SOAP(sp, **SMALL).compute(at)
    np.testing.assert_allclose(SOAP(sp, compression=np.eye(3), **SMALL).compute(at), ref,
                               atol=1e-14)
    d2 = SOAP(sp, compression=MIX, **SMALL)
    assert d2.n_channels == 2 and d2.n_features == (2 * 4) * (2 * 4 + 1) // 2 * 4
    # a single channel with equal weights: every species looks alike
    one = SOAP(sp, compression=[[1.0, 1.0, 1.0]], **SMALL)
    swapped = at.copy()
    swapped.numbers = np.array([8, 1, 6, 1, 8, 6])
    np.testing.assert_allclose(one.compute(swapped), one.compute(at), atol=1e-13)
    with pytest.raises(ValueError, match="d_J"):
        SOAP(sp, compression=np.ones((2, 2)), **SMALL)


def test_selected_features_are_columns_of_the_full_spectrum():
    at = cell3()
    full = SOAP(["H", "C", "O"], normalize=False, **SMALL)
    idx = [3, 17, 40, 41, 200]
    sub = SOAP(["H", "C", "O"], normalize=False, features=idx, **SMALL)
    np.testing.assert_allclose(sub.compute(at), full.compute(at)[:, idx], atol=1e-14)
    with pytest.raises(ValueError, match="distinct"):
        SOAP(["H"], features=[1, 1], **SMALL)


@pytest.mark.parametrize("method", ["cur", "fps"])
def test_select_features(method):
    at = cell3()
    desc = SOAP(["H", "C", "O"], **SMALL)
    sel = desc.select_features(desc.compute(at), 30, method=method)
    assert sel.n_features == 30 and len(np.unique(sel.selected)) == 30
    # selection of a selection composes indices into the full list
    sel2 = sel.select_features(sel.compute(at), 10, method=method)
    assert set(sel2.selected) <= set(sel.selected)
    assert sel2.select_features(sel2.compute(at), 10, method=method).n_features == 10


def test_records_round_trip_and_old_records_load():
    at = cell3()
    for desc in variants().values():
        again = descriptor_from_dict(desc.to_dict())
        assert again.to_dict() == desc.to_dict()
        np.testing.assert_array_equal(again.compute(at), desc.compute(at))
    old = {"name": "soap", "species": [1, 6, 8], "cutoff": 4.0, "n_max": 4, "l_max": 3,
           "atom_sigma": 0.5, "cutoff_width": 1.0, "radial_basis": "gto", "normalize": True,
           "centre_weight": 1.0}
    d = descriptor_from_dict(old)
    assert d.radial_scaling is None and d.compression is None and d.selected is None
    assert not {"radial_scaling", "compression", "features"} & set(d.to_dict())
    assert {k: d.to_dict()[k] for k in old} == old
    with pytest.raises(ValueError, match="r0"):
        SOAP(["H"], radial_scaling={"type": "inverse_power", "m": 2}, **SMALL)
    with pytest.raises(ValueError, match="unknown radial_scaling"):
        SOAP(["H"], radial_scaling={"type": "bogus", "r0": 1, "m": 2}, **SMALL)


# --------------------------------------------------------------------------- in models
def _alloy_frames():
    """Small two-species EMT frames (Cu/Au, 2x1x1 fcc cells, rattled, strained)."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from gapcalc.datasets import label
    rng = np.random.default_rng(5)
    frames = []
    for k in range(6):
        at = bulk("Cu", "fcc", 3.75, cubic=True) * (2, 1, 1)
        at.numbers = rng.choice([29, 79], size=len(at))
        at.rattle(0.1, seed=k)
        eps = rng.normal(scale=0.02, size=(3, 3))
        at.set_cell(at.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
        frames.append(label(at, EMT()))
    return frames


def test_multiscale_model_with_options_fd_and_round_trip(tmp_path):
    """Two SOAP terms (short + long cutoff; radial scaling, compression, selected features)
    and a 2-body term in one model: forces and stress of the fast path are the exact
    derivatives of its energy; the file round trip predicts the same."""
    from gapcalc import SparseGPR, load
    from gapcalc.tuning import cross_validate
    frames = _alloy_frames()
    short = SOAP(["Cu", "Au"], cutoff=3.0, n_max=3, l_max=2, atom_sigma=0.5, cutoff_width=0.8,
                 compression=[[1.0, 0.6]])
    long = SOAP(["Cu", "Au"], cutoff=4.5, n_max=4, l_max=3, atom_sigma=0.6, cutoff_width=1.0,
                radial_scaling={"type": "inverse_power", "r0": 2.5, "m": 3, "c": 2.0})
    model = SparseGPR([short, long], zeta=[2, 4], delta=[0.3, 1.0], n_sparse=[10, 15],
                      n_features=[None, 40], two_body=True, sigma_force=0.05).fit(frames[:5])
    assert [t.descriptor.name for t in model.terms_] == ["soap", "soap", "distance_2b"]
    assert model.terms_[1].descriptor.n_features == 40
    assert model.terms_[0].descriptor.n_channels == 1
    assert model.terms_[0].M == 20 and model.terms_[1].M == 30
    at = frames[5].copy()
    res = model.evaluate(at)
    h = 1e-5
    for j, a in [(0, 0), (3, 2), (7, 1)]:
        plus, minus = at.copy(), at.copy()
        plus.positions[j, a] += h
        minus.positions[j, a] -= h
        fd = -(model.evaluate(plus)["energy"] - model.evaluate(minus)["energy"]) / (2 * h)
        assert abs(fd - res["forces"][j, a]) < 1e-6 * max(1.0, np.abs(res["forces"]).max())
    eps = np.zeros((3, 3))
    eps[0, 1] = eps[1, 0] = h
    plus, minus = at.copy(), at.copy()
    plus.set_cell(at.cell.array @ (np.eye(3) + eps).T, scale_atoms=True)
    minus.set_cell(at.cell.array @ (np.eye(3) - eps).T, scale_atoms=True)
    fd = (model.evaluate(plus)["energy"] - model.evaluate(minus)["energy"]) / (2 * h)
    assert abs(fd / at.get_volume() / 2 - res["stress"][5]) < 1e-7
    # the energy is the sum of the terms (each term predicts on its own)
    env = model.potential_.environment(at)
    parts = [t.local_energies(env, False)[0].sum() for t in model.terms_]
    e0 = sum(model.e0_[s] for s in at.get_chemical_symbols())
    assert abs(e0 + sum(parts) - res["energy"]) < 1e-9
    # design rows (training path) reproduce the fast path's energy and forces
    E, F, _ = model.design_rows(at, virial=False)
    assert abs(E @ model.alpha_ + e0 - res["energy"]) < 1e-8
    np.testing.assert_allclose(F @ model.alpha_, res["forces"], atol=1e-8)
    path = tmp_path / "m.npz"
    model.save(path)
    again = load(path).model
    r2 = again.evaluate(at)
    assert abs(r2["energy"] - res["energy"]) < 1e-10
    np.testing.assert_allclose(r2["forces"], res["forces"], atol=1e-10)
    assert again.get_params()["descriptor"][1]["radial_scaling"]["c"] == 2.0
    # the fast cross-validation handles several SOAP terms (ratios of δ kept)
    cv = cross_validate(model, frames, k=3, delta=[0.5, 1.0], sigma_force=[0.05])
    assert len(cv["results"]) == 2
    best = cv["model"]
    assert np.isclose(best.delta[0] / best.delta[1], 0.3)


def test_cli_repeated_soap(tmp_path):
    from ase.io import write
    from gapcalc import load
    from gapcalc.cli import main
    frames = _alloy_frames()
    train = tmp_path / "train.xyz"
    write(train, frames)
    out = tmp_path / "m.npz"
    assert main(["fit", str(train), "-o", str(out), "--n-max", "3", "--l-max", "2",
                 "--n-sparse", "10", "--soap", "cutoff=3 delta=0.2 n_features=0.5",
                 "--soap", "cutoff=4.5 r0=2 m=4", "--radial-scaling", "r0=3 m=2"]) in (0, None)
    terms = load(out).model.terms_
    assert [t.descriptor.cutoff for t in terms] == [3.0, 4.5]
    assert terms[0].kernel.delta == 0.2
    assert terms[0].descriptor.n_features == round(0.5 * terms[0].descriptor.n_features_full)
    assert terms[0].descriptor.radial_scaling["r0"] == 3.0
    assert terms[1].descriptor.radial_scaling["r0"] == 2.0


def test_learn_compression_als():
    """ALS compression (Eq. 23): a (d_J, S) matrix with unit rows, deterministic, usable as
    SOAP(compression=...)."""
    import logging
    from gapcalc.descriptors.compression import learn_compression
    from ase.build import bulk
    from ase.calculators.emt import EMT
    rng = np.random.default_rng(0)
    frames, energies = [], []
    for k in range(24):
        at = bulk("Cu", "fcc", 3.7, cubic=True)
        at.numbers = rng.choice([28, 29, 79], size=len(at))
        at.rattle(0.1, seed=k)
        at.calc = EMT()
        energies.append(at.get_potential_energy())
        frames.append(at)
    kw = dict(cutoff=4.0, n_max=3, l_max=2, n_iter=4)
    u = learn_compression(frames, energies, ["Ni", "Cu", "Au"], 2, **kw)
    assert u.shape == (2, 3)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0)
    np.testing.assert_array_equal(u, learn_compression(frames, energies, ["Ni", "Cu", "Au"], 2,
                                                       **kw))
    desc = SOAP(["Ni", "Cu", "Au"], compression=u, **SMALL)
    assert desc.compute(frames[0]).shape == (4, desc.n_features)
