"""Fit time of one checkout of gapcalc on the Si split (A/B of two commits in one session).

How to run (repository root, nothing else running)::

    git worktree add /tmp/wt_old 49dda96
    python benchmarks/fit_ab.py /tmp/wt_old 3000
    python benchmarks/fit_ab.py . 3000

Fits SOAP (5 Å, n_max 8, l_max 6, σ_at 0.5), M sparse points, on the 214 Si training frames
after a 4-frame warm-up (Numba compile); prints CPU and wall seconds (single thread) and
the first weights (the two checkouts agree to rounding of an ill-conditioned α).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"


def main(checkout: str, M: int):
    sys.path.insert(0, str(Path(checkout).resolve()))
    from ase.io import read

    from gapcalc import SOAP, SparseGPR
    train = read(Path(__file__).resolve().parent / "data" / "si_mlearn" / "si_mlearn_train.xyz",
                 ":")

    def model():
        return SparseGPR(SOAP([14], cutoff=5.0, n_max=8, l_max=6, atom_sigma=0.5),
                         n_sparse=M, seed=0)
    model().fit(train[:4])                  # warm-up: Numba compile / cache load
    t, w = time.process_time(), time.perf_counter()
    m = model().fit(train)
    print(f"{checkout}: M {M}, fit CPU {time.process_time() - t:.1f} s, "
          f"wall {time.perf_counter() - w:.1f} s, alpha[:2] {m.alpha_[:2]}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
