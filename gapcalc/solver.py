"""Streaming least squares: the R factor of a tall matrix built block by block.

The sparse-GPR weights solve (seed Eqs. 17-18, projected process)

    min_α ‖Λ^{-1/2}(y − K_NM α)‖² + αᵀ K_MM α,

i.e. the least-squares problem with matrix A = [Λ^{-1/2} K_NM ; U] (K_MM = UᵀU) and
right-hand side [Λ^{-1/2} y ; 0]. Rather than forming K_MNΛ⁻¹K_NM we keep the QR
factor of the augmented matrix [A | b]: appending a block of rows and
re-triangularising [R ; block] keeps memory at O(M² + block·M) however many
rows stream through, and is as stable as a QR of the full matrix.

The triangle R of A gives the posterior covariance Σ = (K_MM + K_MN Λ⁻¹ K_NM)⁻¹ = R⁻¹R⁻ᵀ
(seed Eq. 19), so it is kept with the model.
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import lapack, solve_triangular


def triangularise(stack: np.ndarray, n: int) -> np.ndarray:
    """Upper-triangular (n, n) R with RᵀR = stackᵀ stack (LAPACK dgeqrf, in place)."""
    rows = stack.shape[0]
    if rows == 0:
        return np.zeros((n, n))
    qr, _, _, info = lapack.dgeqrf(stack, overwrite_a=True)
    if info != 0:
        raise RuntimeError(f"QR factorisation failed (LAPACK info={info})")
    R = np.zeros((n, n))
    k = min(rows, n)
    R[:k] = np.triu(qr[:k, :n])
    return R


class PackedTrapezoid:
    """An upper-trapezoidal (r, n) matrix (r ≤ n) kept as its r·n − r(r−1)/2 entries on
    and above the diagonal, row after row: what a QR triangle costs in transit between
    Dask workers (about half the (n, n) array). ``array()`` gives the (r, n) matrix back."""

    def __init__(self, R: np.ndarray):
        r, n = R.shape
        if r > n:
            raise ValueError(f"a trapezoid has at most as many rows as columns, got {R.shape}")
        self.shape = (int(r), int(n))
        self.values = (np.concatenate([R[i, i:] for i in range(r)]) if r
                       else np.zeros(0))

    def array(self) -> np.ndarray:
        r, n = self.shape
        out = np.zeros((r, n))
        start = 0
        for i in range(r):
            out[i, i:] = self.values[start:start + n - i]
            start += n - i
        return out


def unpacked(R) -> np.ndarray:
    """The matrix of a :class:`PackedTrapezoid`, or ``R`` itself when it is an array."""
    return R.array() if isinstance(R, PackedTrapezoid) else R


class StreamingQR:
    """Accumulate rows of [A | y] (A with ``n_cols`` columns) into an (n+1, n+1) triangle.

    ``add(A, y)`` buffers rows; every ``block_rows`` rows the buffer is folded into
    the triangle. ``triangle()`` returns R_aug with R_augᵀR_aug = [A y]ᵀ[A y]:
    R = R_aug[:n, :n], z = R_aug[:n, n] = Qᵀy, and R_aug[n, n]² = ‖y − A α̂‖² of the
    unregularised problem.
    """

    def __init__(self, n_cols: int, block_rows: int = 4096):
        self.n = int(n_cols)
        self.block_rows = max(int(block_rows), 1)
        self.R = np.zeros((0, self.n + 1))
        self._buf: list[np.ndarray] = []
        self._nbuf = 0
        self.n_rows = 0

    def add(self, A: np.ndarray, y: np.ndarray):
        A = np.asarray(A, dtype=np.float64).reshape(-1, self.n)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if len(A) != len(y):
            raise ValueError(f"{len(A)} rows but {len(y)} targets")
        if len(A) == 0:
            return
        self._buf.append(np.column_stack([A, y]))
        self._nbuf += len(A)
        self.n_rows += len(A)
        if self._nbuf >= self.block_rows:
            self._fold()

    def add_triangle(self, R_aug: np.ndarray):
        """Fold in another accumulator's triangle (same columns; its zeros below the
        diagonal are skipped, :func:`fold_rows`)."""
        self._fold()
        self._fold_block(np.asarray(R_aug, dtype=np.float64))

    def _fold(self):
        if not self._buf:
            return
        stack = np.vstack(self._buf)
        self._buf = []
        self._nbuf = 0
        self._fold_block(stack)

    def _fold_block(self, B):
        """self.R (a trapezoid of ≤ n+1 rows) ← the triangle of [self.R; B]."""
        n1 = self.n + 1
        R = np.zeros((n1, n1), order="F")
        R[:len(self.R)] = self.R
        fold_rows(R, B)
        self.R = trailing_zeros_dropped(np.triu(R))

    def triangle(self) -> np.ndarray:
        """(n+1, n+1) upper-triangular R_aug of everything added so far."""
        self._fold()
        out = np.zeros((self.n + 1, self.n + 1))
        out[:len(self.R)] = self.R
        return out


def fold_rows(R: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Fold rows ``B`` (m, n) into the upper-triangular ``R`` (n, n, Fortran order,
    overwritten): afterwards RᵀR is the old RᵀR + BᵀB (LAPACK dtpqrt). When ``B`` is the
    first m ≤ n rows of an upper-triangular matrix (another QR triangle or trapezoid) its
    zeros below the diagonal are skipped: folding a full triangle costs ~⅔n³ flops, a
    third of a QR of the two triangles stacked. Returns ``R``."""
    n = R.shape[0]
    B = trailing_zeros_dropped(np.asarray(B, dtype=np.float64))   # nothing to fold there
    m = B.shape[0]
    if m == 0:
        return R
    upper = m <= n and not np.any(np.tril(B, -1))
    B = np.array(B, order="F")                # dtpqrt overwrites it (Householder vectors)
    out, _, _, info = lapack.dtpqrt(m if upper else 0, min(64, n), R, B,
                                    overwrite_a=True, overwrite_b=True)
    if info != 0:
        raise RuntimeError(f"QR update failed (LAPACK dtpqrt info={info})")
    if out is not R:                          # not updated in place (layout): copy back
        R[...] = out
    return R


def trailing_zeros_dropped(R: np.ndarray) -> np.ndarray:
    """The rows of ``R`` up to its last non-zero one (of a triangle: a trapezoid). Not simply the
    first min(rows folded, n): folding r < n rows into a triangle with dtpqrt can leave
    its weight in a later row when leading columns are rank deficient."""
    live = np.flatnonzero(np.any(R != 0.0, axis=1))
    return R[:live[-1] + 1] if len(live) else R[:0]


def combine_triangles(blocks, n: int) -> np.ndarray:
    """(n, n) upper-triangular R with RᵀR = Σ_k B_kᵀB_k, the blocks (triangles, trapezoids
    or dense rows with n columns) folded in one by one (:func:`fold_rows`)."""
    R = np.zeros((n, n), order="F")
    for B in blocks:
        fold_rows(R, B)
    return np.triu(R)


def solve_regularised(triangles, U: np.ndarray, scales=None):
    """Weights α and the triangle R of the regularised problem.

    triangles : list of (r, M+1) upper-triangular (r ≤ M+1) or dense R_aug factors of
        whitened data blocks (e.g. one per target type); ``scales[k]`` multiplies block k
        (1/scaling of its σ).
    U : (M, M) with UᵀU = K_MM (+ jitter) — the regulariser rows (upper triangular, as
        the Cholesky factor is; any other U is triangularised first).
    The triangle of the stacked rows [s_k T_k; U 0] is made by folding each block into
    the regulariser's triangle (:func:`fold_rows`), not by a QR of the whole stack.
    Returns (alpha (M,), R (M, M) upper triangular, RᵀR = K_MM + K_MNΛ⁻¹K_NM).
    """
    M = U.shape[0]
    R_aug = np.zeros((M + 1, M + 1), order="F")
    if np.any(np.tril(U, -1)):
        R_aug[:] = triangularise(np.asfortranarray(np.column_stack([U, np.zeros(M)])), M + 1)
    else:
        R_aug[:M, :M] = U
    for k, T in enumerate(triangles):
        s = 1.0 if scales is None else scales[k]
        fold_rows(R_aug, T * s)
    R = np.triu(R_aug[:M, :M])
    z = R_aug[:M, M]
    alpha = solve_triangular(R, z, lower=False, check_finite=False)
    return alpha, R
