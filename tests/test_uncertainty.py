"""Posterior uncertainties: exact prior terms, DTC algebra, calculator properties."""
import numpy as np
import pytest
from scipy.linalg import solve_triangular

from gapcalc import SOAP, GAPCalculator, SparseGPR, TwoBody
from gapcalc.gpr import _describe

from conftest import SOAP_SMALL


def _prior_energy_cov(model, a, b):
    """Σ_t Σ_{i,i'} k_t(p_i(a), p_i'(b)) over same-species pairs."""
    tot = 0.0
    for term in model.terms_:
        pa = _describe(term, a, None)
        pb = _describe(term, b, None)
        same = pa.env.spec[:, None] == pb.env.spec[None, :]
        tot += float((term.kernel(pa.p, pb.p) * same).sum())
    return tot


@pytest.mark.parametrize("two_body", [False, True])
def test_force_prior_is_mixed_second_derivative(cu_frames, two_body):
    desc = SOAP(["Cu"], cutoff=4.0, n_max=4, l_max=3, atom_sigma=0.5)
    model = SparseGPR(desc, n_sparse=20, two_body=two_body, n_sparse_2b=5,
                      zeta=3).fit(cu_frames[:3])
    at = cu_frames[5]
    # prior force variance = ∂²/∂x∂x' cov(E(x), E(x')) at x = x'
    from gapcalc.gpr import _force_prior
    nl = model._neighbors(at)
    prior = np.zeros((len(at), 3))
    for term in model.terms_:
        ev = _describe(term, at, nl)
        g = term.descriptor.gradients(ev.env, ev.c, ev.p, ev.pnorm)
        prior += _force_prior(term.kernel, ev.p, ev.env.spec, g, len(at))
    h = 1e-3   # C ~ N² δ²: smaller steps drown in round-off
    for j, c in [(0, 0), (3, 2), (7, 1)]:
        def moved(s):
            b = at.copy()
            b.positions[j, c] += s
            return b
        fd = (_prior_energy_cov(model, moved(h), moved(h)) - _prior_energy_cov(model, moved(h), moved(-h))
              - _prior_energy_cov(model, moved(-h), moved(h))
              + _prior_energy_cov(model, moved(-h), moved(-h))) / (4 * h * h)
        assert abs(fd - prior[j, c]) < 1e-4 * abs(prior[j, c]), (fd, prior[j, c])


def test_dtc_variance_algebra(cu_model, cu_frames):
    """σ² = prior − l K_MM⁻¹ lᵀ + l Σ lᵀ with Σ = (K_MM + K_MN Λ⁻¹ K_NM)⁻¹ (dense check)."""
    at = cu_frames[37]
    unc = cu_model.uncertainty(at)
    E, F, _ = cu_model.design_rows(at, virial=False)
    Kmm = cu_model.U_.T @ cu_model.U_
    Sigma = np.linalg.inv(cu_model.R_.T @ cu_model.R_)
    l = F.reshape(-1, cu_model.M_)[5]
    q = l @ np.linalg.solve(Kmm, l)
    var = unc["forces_std"].ravel()[5] ** 2
    # prior part recovered from the identity
    prior = var - l @ Sigma @ l + q
    assert prior > 0
    assert unc["forces_std"].shape == (len(at), 3) and np.all(unc["forces_std"] > 0)
    assert unc["energy_std"] > 0 and unc["energies_std"].shape == (len(at),)
    # total-energy variance ≤ (Σ_i σ_i)² (Cauchy–Schwarz on the posterior)
    assert unc["energy_std"] <= unc["energies_std"].sum() + 1e-12


def test_uncertainty_larger_away_from_data(cu_model, cu_frames):
    near = cu_frames[31]
    far = near.copy()
    far.set_cell(far.cell * 1.12, scale_atoms=True)    # strongly expanded: unseen
    s_near = cu_model.uncertainty(near)["forces_std"].mean()
    s_far = cu_model.uncertainty(far)["forces_std"].mean()
    assert s_far > 2 * s_near


def test_calculator_uncertainty_properties(cu_model, cu_frames):
    at = cu_frames[32].copy()
    calc = GAPCalculator(cu_model)
    at.calc = calc
    at.get_forces()
    assert "forces_std" not in calc.results           # plain MD pays nothing
    fs = calc.get_property("forces_std", at)
    assert fs.shape == (len(at), 3)
    calc2 = GAPCalculator(cu_model, uncertainty=True)
    at.calc = calc2
    at.get_potential_energy()
    np.testing.assert_allclose(calc2.results["forces_std"], fs)
    assert {"energy_std", "energies_std", "forces_std"} <= set(calc2.implemented_properties)


def test_resampling_committee(cu_frames):
    from gapcalc.committee import resampling_committee
    desc = SOAP(["Cu"], cutoff=4.0, n_max=4, l_max=3, atom_sigma=0.5)
    com = resampling_committee(SparseGPR(desc, n_sparse=40), cu_frames[:16], n_members=6,
                               n_chunks=8, seed=1)
    at = cu_frames[33]
    res = com.predict(at)
    assert res["forces_std"].shape == (len(at), 3) and np.all(res["forces_std"] > 0)
    # each member is an exact solve from its chunks' triangles: member 0 by hand
    base = com.model.evaluate(at)["forces"]
    assert np.abs(res["forces"] - base).max() < 0.2
    scale = com.calibrate(cu_frames[30:33])
    assert scale > 0
    z = (com.predict(cu_frames[30])["forces"] - cu_frames[30].get_forces()) / \
        com.predict(cu_frames[30])["forces_std"]
    assert 0.3 < z.std() < 3.0
