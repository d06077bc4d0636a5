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

CUR in parts (the Dask fit, :mod:`gapcalc.distributed`): :func:`cur_rank` from the
singular values of the whole pool (e.g. of the R factor of a tall-skinny QR),
:func:`cur_keys` for any subset of rows, and :func:`top_certain` to pick the M largest
keys and say whether the choice is provably the one :func:`cur` makes on the whole pool
(the keys agree with ``cur``'s to rounding; the check guards against a rounding
difference reordering the two keys at the cut).
"""
from __future__ import annotations

import numpy as np

METHODS = ("cur", "fps", "uniform", "random")

#: CUR keeps the right singular vectors with s > CUR_RANK_RTOL · s_max
CUR_RANK_RTOL = 1e-10
#: factor on the first-order rounding estimates of :func:`cur_keys` and :func:`cur_rank`
#: (on the Si mlearn pool, 9812 × 252, the largest ratio of the leverage difference
#: between a TSQR basis and ``cur``'s SVD to the estimate was 1.05)
CUR_SAFETY = 32.0
_EPS = np.finfo(np.float64).eps


def cur(P: np.ndarray, M: int, seed: int = 0) -> np.ndarray:
    N = len(P)
    if M >= N:
        return np.arange(N)
    _, s, Vt = np.linalg.svd(P, full_matrices=False)
    k = max(1, min(M, int(np.sum(s > s[0] * CUR_RANK_RTOL))))
    # U_ij = (P V)_ij / s_j without forming U for all columns
    U = (P @ Vt[:k].T) / s[:k]
    lev = np.einsum("ij,ij->i", U, U) / k
    rng = np.random.default_rng(seed)
    prob = lev / lev.sum()
    # sampling without replacement ∝ leverage (Efraimidis–Spirakis keys)
    keys = np.log(rng.random(N)) / np.maximum(prob, 1e-300)
    return np.sort(np.argsort(-keys)[:M])


def cur_rank(s: np.ndarray, M: int) -> tuple[int, bool]:
    """(k, certain): the number of singular directions :func:`cur` keeps for M points, from
    the singular values ``s`` (descending) of the pool, and whether k stays the same for
    every s within the rounding difference (CUR_SAFETY · eps · s_max) of two SVDs."""
    band = CUR_SAFETY * _EPS * s[0]
    cut = s[0] * CUR_RANK_RTOL
    ks = [max(1, min(M, int(np.sum(s > cut + d)))) for d in (-band, 0.0, band)]
    return ks[1], ks[0] == ks[2]


def cur_keys(P: np.ndarray, u: np.ndarray, s: np.ndarray, Vt: np.ndarray,
             k: int) -> tuple[np.ndarray, np.ndarray]:
    """(keys, err) of rows P (n, D) of a pool whose SVD has singular values ``s`` (all) and
    right singular vectors ``Vt`` (rows; the first k at least), with uniforms ``u`` (n,)
    from ``cur``'s stream: the Efraimidis–Spirakis keys log(u)/π that :func:`cur`
    computes for the same rows of the whole pool (π unnormalised: Σπ = 1 up to rounding,
    and a common factor does not change the order), and a bound on the difference
    between the two.

    The bound is CUR_SAFETY times the first-order effect of a backward error eps·s_max of
    the SVD on π_i = ‖u_i‖²/k: 2 eps s_max ‖u_i‖ ‖u_i/s‖ / k within the kept subspace,
    plus the rotation of the kept subspace into the dropped one (gap s_{k-1} − s_k)."""
    PV = P @ Vt[:k].T
    U = PV / s[:k]
    lev = np.einsum("ij,ij->i", U, U) / k
    keys = np.log(u) / np.maximum(lev, 1e-300)
    scale = 2.0 * _EPS * s[0] / k
    dlev = scale * np.linalg.norm(U, axis=1) * np.linalg.norm(U / s[:k], axis=1)
    if k < len(s):      # the part of each row outside the kept subspace (+ its rounding)
        rest = (np.linalg.norm(P - PV @ Vt[:k], axis=1)
                + 4 * P.shape[1] * _EPS * np.linalg.norm(P, axis=1))
        dlev += (scale / max(s[k - 1] - s[k], 1e-300) * rest
                 * np.sum(np.abs(U) / s[:k], axis=1))
    with np.errstate(over="ignore", invalid="ignore"):
        rel = CUR_SAFETY * dlev / np.maximum(lev, 1e-300) + 16 * _EPS
        err = np.abs(keys) * rel
    return keys, np.where(np.isnan(err), np.inf, err)


def top_certain(keys: np.ndarray, err: np.ndarray, M: int,
                rest_upper: float = -np.inf) -> tuple[np.ndarray, bool]:
    """(indices of the M largest keys, certain): ``certain`` when every chosen key minus
    its error exceeds every other key plus its error (and ``rest_upper``, that bound for
    keys not given), i.e. keys that differ by at most ``err`` choose the same set."""
    order = np.lexsort((np.arange(len(keys)), -keys))
    top, others = order[:M], order[M:]
    lower = np.min(keys[top] - err[top]) if len(top) else np.inf
    upper = max(float(np.max(keys[others] + err[others])) if len(others) else -np.inf,
                float(rest_upper))
    return top, bool(lower > upper)


def select_count(N: int, M: int, method: str, seed: int = 0) -> np.ndarray:
    """:func:`select` for the methods that need only the number of rows N
    (``uniform``, ``random``); the same indices."""
    if method not in ("uniform", "random"):
        raise ValueError(f"{method!r} needs the feature rows")
    if M < 1:
        raise ValueError(f"need at least one sparse point, got n_sparse={M}")
    return (uniform if method == "uniform" else random)(np.empty((int(N), 0)), int(M), seed)


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
