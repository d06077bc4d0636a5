"""QUIP/GAP's SOAP (radial_basis="quip" / "quip_gto", QUIP layout and options) against
quippy's vectors and gradients (fixtures made by tests/fixtures/make_quip_soap_fixtures.py),
finite differences (positions and strain), reverse mode and model-file records."""
import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from gapcalc.descriptors import SOAP, TwoBody, descriptor_from_dict
from gapcalc.descriptors.radial import quip_radial_functions, radial_integral, radial_table
from gapcalc.descriptors.soap import assemble_forces

FIX = Path(__file__).resolve().parent / "fixtures"
META = json.loads((FIX / "quip_soap_cases.json").read_text())
CASES = META["cases"]
REF = np.load(FIX / "quip_soap_reference.npz")


def case_atoms(case):
    return Atoms(numbers=case["numbers"], positions=case["positions"], cell=case["cell"],
                 pbc=case["pbc"])


def rel_error_large(p, q, floor=1e-8):
    """Largest |p−q|/|q| over the components of q above floor × max|q|."""
    big = np.abs(q) > floor * np.abs(q).max()
    return float((np.abs(p - q)[big] / np.abs(q[big])).max())


@pytest.mark.parametrize("name", sorted(CASES))
def test_vectors_match_quippy(name):
    case = CASES[name]
    soap = SOAP(**case["gapcalc"])
    p = soap.compute(case_atoms(case))[case["data_rows"]]
    q = REF[f"{name}/data"]
    assert p.shape == q.shape
    assert np.abs(p - q).max() <= 1e-12 * np.abs(q).max()
    assert rel_error_large(p, q) <= 1e-10
    assert np.all(p[q == 0] == 0) or np.abs(p[q == 0]).max() < 1e-15


@pytest.mark.parametrize("name", sorted(n for n in CASES if CASES[n]["grad_pairs"]))
def test_gradients_match_quippy(name):
    case = CASES[name]
    soap = SOAP(**case["gapcalc"])
    atoms = case_atoms(case)
    _, g = soap.compute(atoms, gradients=True)
    ref = REF[f"{name}/grad"]
    for k, (i, j) in enumerate(case["grad_pairs"]):
        row = np.flatnonzero((g.pairs[:, 0] == i) & (g.pairs[:, 1] == j))
        mine = g.values[row[0]] if len(row) else np.zeros(ref[k].shape)
        scale = np.abs(ref[k]).max()
        assert np.abs(mine - ref[k]).max() <= 1e-8 * scale, (i, j)


def _fd_check(soap, atoms, eps=1e-5):
    """Central differences of p (positions of two atoms, and a strain) vs the analytic
    gradients (position pairs summed over images; strain ∂p/∂ε)."""
    p, g = soap.compute(atoms, gradients=True)
    scale = np.abs(g.values).max()
    for j in (0, len(atoms) - 1):
        for a in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[j, a] += eps
            minus.positions[j, a] -= eps
            fd = (soap.compute(plus) - soap.compute(minus)) / (2 * eps)
            an = np.zeros_like(p)
            sel = g.pairs[:, 1] == j
            an[g.pairs[sel, 0]] = g.values[sel, a]
            assert np.abs(fd - an).max() < 1e-7 * scale
    if atoms.pbc.all():
        for a, b in ((0, 0), (0, 1), (2, 1)):
            out = []
            for s in (eps, -eps):
                at = atoms.copy()
                F = np.eye(3)
                F[a, b] += s
                at.set_cell(atoms.cell.array @ F.T, scale_atoms=True)
                out.append(soap.compute(at))
            fd = (out[0] - out[1]) / (2 * eps)
            assert np.abs(fd - g.strain[:, a, b]).max() < 1e-7 * np.abs(g.strain).max()


@pytest.mark.parametrize("name,extra", [("sio2_14_8", {}), ("si_primitive", {}),
                                        ("ethanol", {}),
                                        ("sio2_8_14", dict(radial_basis="quip_gto",
                                                           covariance_sigma0=1.5))])
def test_finite_differences(name, extra):
    case = CASES[name]
    _fd_check(SOAP(**{**case["gapcalc"], **extra}), case_atoms(case))


@pytest.mark.parametrize("sigma0", [0.0, 2.0])
def test_reverse_mode_matches_forward(sigma0):
    """backward() (prediction path) against forward-mode gradients, QUIP layout with and
    without the covariance_sigma0 constant."""
    case = CASES["sio2_14_8"]
    soap = SOAP(**{**case["gapcalc"], "covariance_sigma0": sigma0})
    atoms = case_atoms(case)
    env = soap.environment(atoms)
    c, p, pnorm = soap.describe(env)
    w = np.random.default_rng(0).normal(size=p.shape)
    t = soap.backward(env, c, p, pnorm, w)
    F = np.zeros((len(atoms), 3))
    W = np.zeros((3, 3))
    assemble_forces(env.first, env.index, env.vectors, t, F, W)
    _, g = soap.compute(atoms, gradients=True)
    dE = np.zeros((len(atoms), 3))
    np.add.at(dE, g.pairs[:, 1], np.einsum("kaf,kf->ka", g.values, w[g.pairs[:, 0]]))
    assert np.allclose(-F, dE, atol=1e-10 * np.abs(dE).max())
    assert np.allclose(W, np.einsum("iabf,if->ab", g.strain, w), atol=1e-10 * np.abs(W).max())


def test_table_matches_exact_radial_functions():
    """The cubic-Hermite table reproduces QUIP's c_nl(d) f_c(d) and its derivative."""
    for basis in ("quip", "quip_gto"):
        h, v, dv, centre = radial_table(5.0, 6, 4, 0.5, 0.5, basis)
        d = np.linspace(1.0, 4.9, 37)
        ex, dex = quip_radial_functions(d, 5.0, 6, 4, 0.5, basis)
        fc = np.where(d < 4.5, 1.0, 0.5 * (1 + np.cos(np.pi * (d - 4.5) / 0.5)))
        dfc = np.where(d < 4.5, 0.0, -0.5 * np.pi / 0.5 * np.sin(np.pi * (d - 4.5) / 0.5))
        g, dg = np.empty((6, 5)), np.empty((6, 5))
        for k, x in enumerate(d):
            radial_integral(x, h, v, dv, g, dg)
            assert np.abs(g - ex[k] * fc[k]).max() < 1e-12 * np.abs(v).max()
            assert np.abs(dg - dex[k] * fc[k] - ex[k] * dfc[k]).max() < 1e-9 * np.abs(dv).max()
        # the central atom is a neighbour at d = 0: only n = 0 for EQUISPACED_GAUSS
        assert np.allclose(centre, quip_radial_functions([0.0], 5.0, 6, 4, 0.5, basis)[0][0, :, 0])
        if basis == "quip":
            assert np.all(np.abs(centre[1:]) < 1e-15)


def test_quip_record_round_trip_and_old_records():
    soap = SOAP(["O", "Si"], n_max=4, l_max=3, radial_basis="quip", species_Z=[14, 8],
                central_weight=0.5, covariance_sigma0=1.0, basis_error_exponent=8.0,
                normalise=False, central_reference_all_species=True, Z=[14])
    d = json.loads(json.dumps(soap.to_dict()))
    back = descriptor_from_dict(d)
    assert back.to_dict() == d
    assert back.species_Z == [14, 8] and back.layout == "quip" and not back.normalize
    # a record written before these options existed still loads, as gapcalc's own layout
    old = {"name": "soap", "species": [14], "cutoff": 5.0, "n_max": 4, "l_max": 3,
           "atom_sigma": 0.5, "cutoff_width": 0.5, "radial_basis": "gto", "normalize": True,
           "centre_weight": 1.0}
    s = descriptor_from_dict(old)
    assert s.layout == "gapcalc" and s.n_features == 4 * 5 // 2 * 4
    tb = TwoBody([14], n_max=4)
    assert descriptor_from_dict(tb.to_dict()).to_dict() == tb.to_dict()


def test_bad_options():
    with pytest.raises(ValueError, match="radial_basis"):
        SOAP([14], radial_basis="poly")
    with pytest.raises(ValueError, match="species_Z"):
        SOAP([14], radial_basis="quip", species_Z=[8])
    with pytest.raises(ValueError, match="covariance_sigma0"):
        SOAP([14], covariance_sigma0=1.0)
    with pytest.raises(ValueError, match="layout"):
        SOAP([14], layout="dscribe")
