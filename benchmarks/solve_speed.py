"""The regularised solve of sparse GPR: folding triangles (dtpqrt) vs one QR of the stack.

How to run (repository root, nothing else running)::

    python benchmarks/solve_speed.py                 # M = 1000, 2000, 3000

What is measured
    :func:`gapcalc.solver.solve_regularised` solves [s_F T_F; s_E T_E; s_V T_V; U 0] for
    α, where the T's are the QR triangles of the force, energy and virial rows
    ((M+1) × (M+1); the energy and virial ones with 160 and 960 non-zero rows, as on the Si
    split) and U the Cholesky factor of K_MM. This is what every fit, every on-the-fly
    update and every (grid point, fold) of cross-validation does. Before commit
    "solver: fold triangles with dtpqrt" it was a Householder QR (dgeqrf) of the
    (4M+4) × (M+1) stack; now each block is folded into U's triangle with LAPACK dtpqrt,
    which skips the zeros below the diagonals. Both are timed in the same run, single
    thread, best of 3; the weights agree to the printed relative difference.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np                                      # noqa: E402
from scipy.linalg import solve_triangular               # noqa: E402

from gapcalc.solver import solve_regularised, triangularise   # noqa: E402


def stacked_qr_solve(triangles, U, scales):
    """The former solve: one dgeqrf of the whole stack."""
    M = U.shape[0]
    blocks = [T * s for T, s in zip(triangles, scales)] + [np.column_stack([U, np.zeros(M)])]
    R_aug = triangularise(np.asfortranarray(np.vstack(blocks)), M + 1)
    return solve_triangular(R_aug[:M, :M], R_aug[:M, M], lower=False, check_finite=False)


def best_of(fn, repeats=3):
    out = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        out.append(time.process_time() - t)
    return min(out)


def main():
    rng = np.random.default_rng(0)
    print("| M | stack QR (s) | fold (s) | speed-up | max rel. diff of α |\n|---|---|---|---|---|")
    for M in (1000, 2000, 3000):
        n = M + 1

        def tri(rows):
            T = triangularise(np.asfortranarray(rng.standard_normal((rows, n))), n)
            return T
        TF, TE, TV = tri(3 * n), tri(160), tri(960)
        A = rng.standard_normal((M + 50, M))
        U = np.linalg.cholesky(A.T @ A / M).T
        scales = (10.0, 100.0, 5.0)
        a_old = stacked_qr_solve((TF, TE, TV), U, scales)
        a_new = solve_regularised((TF, TE, TV), U, scales)[0]
        diff = np.abs(a_new - a_old).max() / np.abs(a_old).max()
        t_old = best_of(lambda: stacked_qr_solve((TF, TE, TV), U, scales))
        t_new = best_of(lambda: solve_regularised((TF, TE, TV), U, scales))
        print(f"| {M} | {t_old:.2f} | {t_new:.2f} | {t_old / t_new:.1f}× | {diff:.1e} |",
              flush=True)


if __name__ == "__main__":
    main()
