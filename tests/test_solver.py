"""gapcalc/solver.py: folding rows into a QR triangle (dtpqrt) and the regularised solve."""
import numpy as np
import pytest

from gapcalc.solver import fold_rows, combine_triangles, solve_regularised, triangularise


def _triangle(rng, rows, n):
    return triangularise(np.asfortranarray(rng.standard_normal((rows, n))), n)


@pytest.mark.parametrize("kind", ["triangle", "trapezoid", "dense", "tall", "zeros"])
def test_fold_rows_adds_the_gram_matrix(kind):
    rng = np.random.default_rng(4)
    n = 37
    R0 = _triangle(rng, 50, n)
    B = {"triangle": _triangle(rng, 60, n),
         "trapezoid": _triangle(rng, 11, n)[:11],     # first rows of a triangle
         "dense": rng.standard_normal((9, n)),        # below-diagonal entries: dense path
         "tall": rng.standard_normal((80, n)),
         "zeros": np.zeros((5, n))}[kind]
    R = np.asfortranarray(R0.copy())
    fold_rows(R, B)
    R = np.triu(R)
    expect = R0.T @ R0 + B.T @ B
    assert np.allclose(R.T @ R, expect, rtol=1e-12, atol=1e-12 * np.abs(expect).max())


def test_fold_rows_reads_no_entry_below_the_diagonal_of_a_trapezoid():
    """A trapezoid with trailing zero rows and a zero row inside folds like its dense
    equivalent (the structure test must not mistake it for dense or skip rows)."""
    rng = np.random.default_rng(5)
    n = 20
    T = _triangle(rng, 30, n)
    T[7] = 0.0
    T[15:] = 0.0
    R1 = combine_triangles([T, T[:15]], n)
    R2 = triangularise(np.asfortranarray(np.vstack([T, T[:15]])), n)
    assert np.allclose(R1.T @ R1, R2.T @ R2, atol=1e-12 * np.abs(R2).max() ** 2)


def test_solve_regularised_equals_the_dense_least_squares():
    rng = np.random.default_rng(6)
    M, N = 25, 300
    A = rng.standard_normal((N, M))
    y = rng.standard_normal(N)
    K = A[:40].T @ A[:40] + np.eye(M)
    U = np.linalg.cholesky(K).T
    # three "types" of rows, each as a QR triangle of [A_t y_t], scaled by 1/σ_t
    parts = np.split(np.arange(N), [40, 250])
    tris = [triangularise(np.asfortranarray(np.column_stack([A[p], y[p]])), M + 1)
            for p in parts]
    scales = [2.0, 0.5, 3.0]
    alpha, R = solve_regularised(tris, U, scales)
    W = np.concatenate([np.full(len(p), s) for p, s in zip(parts, scales)])
    big = np.vstack([W[:, None] * A, U])
    rhs = np.concatenate([W * y, np.zeros(M)])
    ref = np.linalg.lstsq(big, rhs, rcond=None)[0]
    assert np.allclose(alpha, ref, rtol=1e-10, atol=1e-12)
    assert np.allclose(R.T @ R, big.T @ big, rtol=1e-10, atol=1e-10)
    # a regulariser factor that is not triangular gives the same answer
    Q, _ = np.linalg.qr(rng.standard_normal((M, M)))
    alpha2, R2 = solve_regularised(tris, Q @ U, scales)
    assert np.allclose(alpha2, ref, rtol=1e-10, atol=1e-12)
    assert np.allclose(R2.T @ R2, big.T @ big, rtol=1e-10, atol=1e-10)


def test_streaming_qr_with_rank_deficient_leading_columns():
    """Fewer rows than columns whose leading columns are (nearly) empty: dtpqrt may leave
    weight below row r, which must be kept (a regression: trimming to r rows lost it and
    made a Dask fit with one frame per chunk differ from the serial one)."""
    from gapcalc.solver import StreamingQR
    rng = np.random.default_rng(7)
    n = 7
    A = rng.standard_normal((7, n))
    A[:6, :4] = 0.0                       # only the last row touches the first 4 columns
    y = rng.standard_normal(7)
    for block_rows in (1, 3, 8, 100):
        acc = StreamingQR(n, block_rows)
        acc.add(A[:3], y[:3])
        acc.add(A[3:], y[3:])
        acc.add_triangle(np.zeros((n + 1, n + 1)))
        other = StreamingQR(n, block_rows)
        other.add(A[:2], y[:2])
        acc.add_triangle(other.triangle())
        R = acc.triangle()
        X = np.column_stack([np.vstack([A, A[:2]]), np.concatenate([y, y[:2]])])
        assert np.allclose(R.T @ R, X.T @ X, atol=1e-12)
