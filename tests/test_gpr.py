"""Sparse GPR: accuracy on held-out EMT data, solver cross-check, conventions."""
import numpy as np
import pytest

from gapcalc import SOAP, SparseGPR, TwoBody
from gapcalc.solver import StreamingQR
from gapcalc.sparsify import select

from conftest import SOAP_SMALL


def test_heldout_emt_forces(cu_model, cu_frames):
    test = cu_frames[30:]
    pred = cu_model.predict(test)
    ref_f = np.concatenate([at.get_forces() for at in test])
    err = np.concatenate(pred["forces"]) - ref_f
    rmse = np.sqrt(np.mean(err ** 2))
    assert rmse < 0.08 * ref_f.std(), (rmse, ref_f.std())
    e_err = (pred["energy"] - [at.get_potential_energy() for at in test]) / len(test[0])
    assert np.abs(e_err).max() < 0.005   # eV/atom
    s_err = np.array(pred["stress"]) - [at.get_stress() for at in test]
    assert np.sqrt(np.mean(s_err ** 2)) < 0.01  # eV/Å³


def test_streaming_qr_equals_dense_solve(cu_frames):
    frames = cu_frames[:4]
    desc = SOAP(["Cu"], cutoff=4.0, n_max=4, l_max=3, atom_sigma=0.5)
    model = SparseGPR(desc, n_sparse=20, block_rows=7, sigma_energy=0.002, sigma_force=0.05,
                      sigma_virial=0.05, jitter=1e-10).fit(frames)
    # dense normal equations from the same rows: (K_MM + K_MN Λ⁻¹ K_NM) α = K_MN Λ⁻¹ y
    rows, ys, sig = [], [], []
    for at in frames:
        E, F, V = model.design_rows(at)
        n = len(at)
        voigt = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])   # the 6 independent virials
        rows += [E[None], F.reshape(-1, model.M_), V[voigt]]
        e0 = model.e0_["Cu"] * n
        ys += [[at.get_potential_energy() - e0], at.get_forces().ravel(),
               (-at.get_stress(voigt=False) * at.get_volume())[voigt]]
        sig += [[0.002 * np.sqrt(n)], np.full(3 * n, 0.05), np.full(6, 0.05 * np.sqrt(n))]
    K = np.vstack(rows)
    y = np.concatenate(ys)
    w = 1 / np.concatenate(sig) ** 2
    Kmm = model.U_.T @ model.U_
    # dense direct solve of the same regularised least-squares problem
    A = np.vstack([K * np.sqrt(w)[:, None], model.U_])
    b = np.concatenate([y * np.sqrt(w), np.zeros(model.M_)])
    alpha, *_ = np.linalg.lstsq(A, b, rcond=None)
    np.testing.assert_allclose(model.alpha_, alpha, rtol=1e-6, atol=1e-8 * np.abs(alpha).max())
    # the kept triangle is the posterior precision
    np.testing.assert_allclose(model.R_.T @ model.R_, Kmm + K.T @ (K * w[:, None]),
                               rtol=1e-9, atol=1e-9 * np.abs(Kmm).max())


def test_streaming_qr_blocks_agree():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(103, 6))
    y = rng.normal(size=103)
    ref = StreamingQR(6, block_rows=10 ** 6)
    ref.add(A, y)
    acc = StreamingQR(6, block_rows=5)
    for k in range(0, 103, 9):
        acc.add(A[k:k + 9], y[k:k + 9])
    R1, R2 = ref.triangle(), acc.triangle()
    np.testing.assert_allclose(R1.T @ R1, R2.T @ R2, atol=1e-10)
    np.testing.assert_allclose(R1.T @ R1, np.c_[A, y].T @ np.c_[A, y], atol=1e-10)


def test_virial_rows_follow_gap_fit_convention(cu_model, cu_frames):
    """virial = −stress × volume: design rows · α reproduce the calculator's stress."""
    at = cu_frames[35]
    E, F, V = cu_model.design_rows(at)
    res = cu_model.evaluate(at)
    virial = V.reshape(9, -1) @ cu_model.alpha_
    stress = res["stress"]
    s33 = np.array([[stress[0], stress[5], stress[4]], [stress[5], stress[1], stress[3]],
                    [stress[4], stress[3], stress[2]]])
    np.testing.assert_allclose(virial.reshape(3, 3), -s33 * at.get_volume(), atol=1e-9)
    # and the forward (training) path gives the same forces as the reverse path
    np.testing.assert_allclose(F.reshape(-1, cu_model.M_) @ cu_model.alpha_,
                               res["forces"].ravel(), atol=1e-10)
    e0 = cu_model.e0_["Cu"] * len(at)
    assert abs(E @ cu_model.alpha_ + e0 - res["energy"]) < 1e-9


@pytest.mark.parametrize("two_body", ["distance", "radial"])
def test_two_body_term_and_gradients(cu_frames, two_body):
    desc = SOAP(["Cu"], **SOAP_SMALL)
    model = SparseGPR(desc, n_sparse=60, two_body=two_body, n_sparse_2b=15,
                      sigma_force=0.05).fit(cu_frames[:10])
    assert len(model.terms_) == 2
    kernel = model.terms_[1].kernel
    assert kernel.zeta == 1 if two_body == "distance" else kernel.theta > 0
    at = cu_frames[20]
    E, F, V = model.design_rows(at)
    res = model.evaluate(at)
    np.testing.assert_allclose(F.reshape(-1, model.M_) @ model.alpha_, res["forces"].ravel(),
                               atol=1e-10)
    err = np.abs(res["forces"] - at.get_forces())
    assert np.sqrt(np.mean(err ** 2)) < 0.3


@pytest.mark.parametrize("method", ["cur", "fps", "uniform", "random"])
def test_sparse_selection(method):
    rng = np.random.default_rng(0)
    P = rng.normal(size=(200, 5))
    idx = select(P, 30, method, seed=3)
    assert len(np.unique(idx)) == 30 and idx.max() < 200
    np.testing.assert_array_equal(idx, select(P, 30, method, seed=3))
    with pytest.raises(ValueError, match="sparse_method"):
        select(P, 3, "nope")


def test_fps_covers_space():
    rng = np.random.default_rng(1)
    clusters = np.vstack([rng.normal(c, 0.01, size=(50, 2)) for c in ([0, 0], [5, 0], [0, 5])])
    idx = select(clusters, 3, "fps")
    assert sorted(set(i // 50 for i in idx)) == [0, 1, 2]


def test_e0_methods(cu_frames):
    frames = cu_frames[:5]
    desc = SOAP(["Cu"], cutoff=4.0, n_max=3, l_max=2)
    for e0, expect in [("average", np.mean([a.get_potential_energy() / len(a) for a in frames])),
                       (-0.5, -0.5), ({"Cu": 0.1}, 0.1)]:
        m = SparseGPR(desc, n_sparse=10, e0=e0).fit(frames)
        assert abs(m.e0_["Cu"] - expect) < 1e-12
    with pytest.raises(ValueError, match="isolated"):
        SparseGPR(desc, n_sparse=10, e0="isolated").fit(frames)


def test_predict_does_not_mutate(cu_model, cu_frames):
    before = cu_model.alpha_.copy()
    cu_model.predict(cu_frames[30:32])
    np.testing.assert_array_equal(before, cu_model.alpha_)
