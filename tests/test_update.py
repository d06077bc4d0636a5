"""Incremental updates: new rows fold in exactly; new sparse points extend the factors."""
import numpy as np

from gapcalc import SOAP, SparseGPR

from conftest import SOAP_SMALL


def _model():
    return SparseGPR(SOAP(["Cu"], **SOAP_SMALL), n_sparse=40, sigma_energy=0.002,
                     sigma_force=0.05, sigma_virial=0.05)


def test_update_rows_equals_refit(cu_frames):
    a, b = cu_frames[:6], cu_frames[6:9]
    m = _model().fit(a)
    m.update(b)
    ref = _model().fit(a)
    ref.refit(a + b)          # exact, same sparse points
    at = cu_frames[35]
    np.testing.assert_allclose(m.evaluate(at)["forces"], ref.evaluate(at)["forces"], atol=1e-8)
    np.testing.assert_allclose(m.R_.T @ m.R_, ref.R_.T @ ref.R_, rtol=1e-8,
                               atol=1e-8 * np.abs(ref.R_).max() ** 2)
    assert m.training_summary_["n_frames"] == 9


def test_extend_sparse_then_refit_is_exact(cu_frames, tmp_path):
    a, b = cu_frames[:6], cu_frames[6:8]
    m = _model().fit(a)
    M0 = m.M_
    # candidates: environments of a new frame, hottest first
    ev = m.terms_[0].descriptor.compute(b[0])
    unc = m.uncertainty(b[0], forces=False)["energies_std"]
    order = np.argsort(-unc)[:8]
    added = m.update(b, new_sparse=[(0, ev[order], np.zeros(len(order), int))])
    assert 0 < added <= 8 and m.M_ == M0 + added
    # K_MM factor matches a fresh Cholesky of the extended sparse set
    np.testing.assert_allclose(m.U_.T @ m.U_, m.kmm() + m.jitter * np.eye(m.M_), atol=1e-9)
    # predictions stay sensible after the streaming step
    at = cu_frames[35]
    err = np.abs(m.evaluate(at)["forces"] - at.get_forces()).mean()
    assert err < 0.3
    # the exact refit on all data equals a fit from scratch with the same sparse points
    m.refit(a + b)
    ref = SparseGPR.from_params(m.get_params())
    ref.terms_, ref.species_, ref.e0_ = m.terms_, m.species_, m.e0_
    ref.training_summary_ = {}
    ref.refit(a + b)
    np.testing.assert_allclose(m.evaluate(at)["forces"], ref.evaluate(at)["forces"], atol=1e-9)
    # the extended model survives a save/load round trip
    m.save(tmp_path / "m.npz")
    from gapcalc import load_model_file
    again = load_model_file(tmp_path / "m.npz")
    np.testing.assert_array_equal(again.evaluate(at)["forces"], m.evaluate(at)["forces"])


def test_update_cost_independent_of_history(cu_frames):
    """The work of an update does not depend on how many frames came before."""
    m = _model().fit(cu_frames[:2])
    calls = []
    orig = m.design_rows

    def counting(atoms, **kw):
        calls.append(1)
        return orig(atoms, **kw)
    m.design_rows = counting
    for k in range(2, 8):
        before = len(calls)
        m.update([cu_frames[k]])
        assert len(calls) - before == 1     # only the new frame is described
