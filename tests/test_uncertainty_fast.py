"""The fast uncertainty path equals the straightforward DTC algebra; only what is asked is computed.

``_reference_variances`` is the implementation the fast path replaced (full (N, M),
(1, M) and (3N, M) rows in global column order, two triangular solves with U and R),
kept here as the reference.
"""
import numpy as np
import pytest
from ase.calculators.emt import EMT
from scipy.linalg import solve_triangular

from gapcalc import SOAP, GAPCalculator, SparseGPR
from gapcalc.datasets import label
from gapcalc.gpr import _describe, _force_prior

from conftest import SOAP_SMALL


def _reference_variances(model, atoms):
    nl = model._neighbors(atoms)
    n = len(atoms)
    prior_local, prior_total, prior_forces = np.zeros(n), 0.0, np.zeros((n, 3))
    Kl = np.zeros((n, model.M_))
    Fl = np.zeros((n, 3, model.M_))
    for term in model.terms_:
        ev = _describe(term, atoms, nl)
        g = term.descriptor.gradients(ev.env, ev.c, ev.p, ev.pnorm, strain=False)
        K, F, _ = model._term_rows(term, ev, g, True, False)
        Kl[:, term.columns] = K
        Fl[:, :, term.columns] = F
        spec = ev.env.spec
        prior_local += term.kernel.diag(ev.p)
        for s in np.unique(spec):
            P = ev.p[spec == s]
            prior_total += float(term.kernel(P, P).sum())
        prior_forces += _force_prior(term.kernel, ev.p, spec, g, n)
    Q = np.vstack([Kl, Kl.sum(axis=0)[None], Fl.reshape(3 * n, -1)]).T
    a = solve_triangular(model.U_, Q, trans="T")
    b = solve_triangular(model.R_, Q, trans="T")
    var = np.concatenate([prior_local, [prior_total], prior_forces.ravel()]) \
        + np.einsum("mr,mr->r", b, b) - np.einsum("mr,mr->r", a, a)
    return var[:n], var[n], var[n + 1:].reshape(n, 3)


def _alloy_frames(cu_frames, k):
    out = []
    rng = np.random.default_rng(3)
    for at in cu_frames[:k]:
        b = at.copy()
        b.numbers[rng.choice(len(b), len(b) // 4, replace=False)] = 13
        out.append(label(b, EMT()))
    return out


def _assert_same(model, at):
    ref_local, ref_total, ref_forces = _reference_variances(model, at)
    unc = model.uncertainty(at)
    # variances to 1e-10 of their scale (the DTC variance is a difference of large terms)
    np.testing.assert_allclose(unc["energies_std"] ** 2, ref_local,
                               atol=1e-10 * max(1.0, np.abs(ref_local).max()), rtol=0)
    np.testing.assert_allclose(unc["energy_std"] ** 2, ref_total,
                               atol=1e-10 * max(1.0, abs(ref_total)), rtol=0)
    np.testing.assert_allclose(unc["forces_std"] ** 2, ref_forces,
                               atol=1e-10 * max(1.0, np.abs(ref_forces).max()), rtol=0)
    assert np.all(ref_forces > 1e-8)   # a test that can fail: nothing degenerate


@pytest.mark.parametrize("zeta,two_body", [(4, None), (2, None), (3, "distance"),
                                           (4, "radial")])
def test_fast_uncertainty_equals_reference(cu_frames, zeta, two_body):
    model = SparseGPR(SOAP(["Cu"], **SOAP_SMALL), zeta=zeta, n_sparse=60, two_body=two_body,
                      n_sparse_2b=10, sigma_energy=0.001, sigma_force=0.02).fit(cu_frames[:6])
    _assert_same(model, cu_frames[35])


def test_fast_uncertainty_two_species_and_extended_sparse_set(cu_frames):
    frames = _alloy_frames(cu_frames, 8)
    model = SparseGPR(SOAP(["Al", "Cu"], **SOAP_SMALL), n_sparse=30,
                      sigma_force=0.02).fit(frames[:5])
    _assert_same(model, frames[7])
    # sparse points appended later: the columns of a species are no longer contiguous
    new = frames[5]
    term = model.terms_[0]
    ev = _describe(term, new, None)
    cand = [(0, ev.p[ev.env.spec == s][:4], np.full(4, s)) for s in (0, 1)]
    model.update([new], new_sparse=cand)
    assert np.any(np.diff(model.terms_[0].columns[model.terms_[0].X_species == 0]) > 1)
    _assert_same(model, frames[7])


def test_fallback_factor_without_cholesky(cu_frames, monkeypatch):
    model = SparseGPR(SOAP(["Cu"], **SOAP_SMALL), n_sparse=40).fit(cu_frames[:4])
    import gapcalc.gpr as gpr
    real = gpr.cholesky

    def failing(a, lower=False, **kw):
        if lower:
            raise np.linalg.LinAlgError("forced")
        return real(a, lower=lower, **kw)
    monkeypatch.setattr(gpr, "cholesky", failing)
    assert not model._variance_factor()["triangular"]
    _assert_same(model, cu_frames[30])


def test_energy_std_does_not_compute_force_stds(cu_model, cu_frames, monkeypatch):
    at = cu_frames[33].copy()
    ref = cu_model.uncertainty(at)
    desc = cu_model.terms_[0].descriptor

    def no_gradients(*a, **k):
        raise AssertionError("force-std work done for an energy std")
    monkeypatch.setattr(desc, "gradients", no_gradients)
    unc = cu_model.uncertainty(at, forces=False)
    assert "forces_std" not in unc
    np.testing.assert_allclose(unc["energies_std"], ref["energies_std"], rtol=1e-12)
    calc = GAPCalculator(cu_model)
    at.calc = calc
    assert calc.get_property("energy_std", at) == pytest.approx(ref["energy_std"], rel=1e-12)
    assert "forces_std" not in calc.results
    calc = GAPCalculator(cu_model, uncertainty="energy")
    at.calc = calc
    at.get_forces()
    assert "energies_std" in calc.results and "forces_std" not in calc.results
    monkeypatch.undo()
    # asked later on the same structure: only the force group is added
    np.testing.assert_allclose(calc.get_property("forces_std", at), ref["forces_std"],
                               rtol=1e-12)


def test_latent_and_predictive_stds(cu_model, cu_frames):
    at = cu_frames[34].copy()
    calc = GAPCalculator(cu_model, uncertainty="forces")
    at.calc = calc
    at.get_forces()
    assert "energy_std" not in calc.results
    lat, pred = calc.results["forces_std"], calc.results["forces_std_predictive"]
    np.testing.assert_allclose(pred, np.sqrt(lat ** 2 + cu_model.sigma_force ** 2))
    e = cu_model.uncertainty(at, forces=False)
    assert e["energy_std_predictive"] == pytest.approx(
        np.sqrt(e["energy_std"] ** 2 + cu_model.sigma_energy ** 2 * len(at)))
    for name in ("forces_std_predictive", "energy_std_predictive"):
        assert name in calc.implemented_properties
    res = cu_model.evaluate(at, uncertainty=True)
    np.testing.assert_allclose(res["forces_std"], lat, rtol=1e-12)
    np.testing.assert_allclose(res["forces"], cu_model.evaluate(at)["forces"], atol=1e-12)
    with pytest.raises(ValueError, match="uncertainty must be"):
        GAPCalculator(cu_model, uncertainty="stress")
