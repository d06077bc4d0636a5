"""Choice of sparse (representative) environments among the training environments.

All selectors take a feature matrix P (N, D) and a count M and return M distinct
row indices, deterministic for a given ``seed``.

* ``cur``: CUR leverage-score sampling (Mahoney & Drineas): the top-k right singular
  vectors of P give each row a statistical leverage π_i = Σ_{j<k} U_ij² / k; rows are
  drawn without replacement with probability ∝ π_i. Favours the environments that
  span the feature space, as gap_fit's ``cur_points``.
* ``fps``: farthest-point sampling in Euclidean feature distance, starting from the
  row farthest from the mean: a uniform cover of the occupied feature space.
* ``uniform``: evenly spaced rows (a baseline); ``random``: a random subset (baseline).
"""
from __future__ import annotations

import numpy as np

METHODS = ("cur", "fps", "uniform", "random")


def cur(P: np.ndarray, M: int, seed: int = 0) -> np.ndarray:
    N = len(P)
    if M >= N:
        return np.arange(N)
    _, s, Vt = np.linalg.svd(P, full_matrices=False)
    k = max(1, min(M, int(np.sum(s > s[0] * 1e-10))))
    # U_ij = (P V)_ij / s_j without forming U for all columns
    U = (P @ Vt[:k].T) / s[:k]
    lev = np.einsum("ij,ij->i", U, U) / k
    rng = np.random.default_rng(seed)
    prob = lev / lev.sum()
    # sampling without replacement ∝ leverage (Efraimidis–Spirakis keys)
    keys = np.log(rng.random(N)) / np.maximum(prob, 1e-300)
    return np.sort(np.argsort(-keys)[:M])


def fps(P: np.ndarray, M: int, seed: int = 0) -> np.ndarray:
    N = len(P)
    if M >= N:
        return np.arange(N)
    sq = np.einsum("ij,ij->i", P, P)
    first = int(np.argmax(((P - P.mean(0)) ** 2).sum(1)))
    chosen = np.empty(M, dtype=np.int64)
    chosen[0] = first
    dmin = sq + sq[first] - 2 * P @ P[first]
    dmin[first] = -np.inf
    for k in range(1, M):
        nxt = int(np.argmax(dmin))
        chosen[k] = nxt
        dmin = np.minimum(dmin, sq + sq[nxt] - 2 * P @ P[nxt])
        dmin[chosen[:k + 1]] = -np.inf
    return np.sort(chosen)


def uniform(P: np.ndarray, M: int, seed: int = 0) -> np.ndarray:
    N = len(P)
    if M >= N:
        return np.arange(N)
    return np.unique(np.linspace(0, N - 1, M).round().astype(np.int64))


def random(P: np.ndarray, M: int, seed: int = 0) -> np.ndarray:
    N = len(P)
    if M >= N:
        return np.arange(N)
    return np.sort(np.random.default_rng(seed).choice(N, M, replace=False))


def select(P: np.ndarray, M: int, method: str = "cur", seed: int = 0) -> np.ndarray:
    """Indices of M sparse points among the rows of P by ``method``."""
    funcs = {"cur": cur, "fps": fps, "uniform": uniform, "random": random}
    if method not in funcs:
        raise ValueError(f"unknown sparse_method {method!r}; choose from {METHODS}")
    if M < 1:
        raise ValueError(f"need at least one sparse point, got n_sparse={M}")
    return funcs[method](np.asarray(P, dtype=np.float64), int(M), seed)
