"""Regularisation help: k-fold cross-validation over σ_E, σ_F, σ_V, δ and learning curves.

Cross-validation costs one pass of descriptors over the data, whatever the grid:
each fold keeps, per target type, the QR triangle of its whitened rows and of its
rows in physical error units (:meth:`SparseGPR._accumulate`). Changing σ_t only
scales triangle t; changing δ_t of a term only scales its block of the regulariser
U (with K ∝ δ², K_NM α' = K⁰_NM β and α'ᵀK_MM α' = βᵀK⁰_MM β δ⁰²/δ²). A held-out
RMSE is ‖R_eval [β; −1]‖/√n. The sparse points are chosen once from all frames
(a mild optimism shared by every grid point, so the ranking is unaffected).
"""
from __future__ import annotations

import itertools
import logging

import numpy as np

from .solver import StreamingQR, combine_triangles, solve_regularised

log = logging.getLogger(__name__)

TYPES = ("energy", "force", "virial")

#: the held-out RMSE each ``score`` ranks by ("both": force and energy, each relative)
SCORES = ("force", "energy", "stress", "both")

#: exponent of the energy-cap penalty: a grid point whose energy RMSE is a factor q > 1
#: above the cap has its score multiplied by q**CAP_POWER (10 % over: ×1.46), a soft
#: constraint that coordinate descent can still walk along
CAP_POWER = 4


def _clone(model):
    return type(model).from_params(model.get_params())


def _scaled_U(model, deltas):
    """U with the block of term t scaled by δ⁰_t/δ_t."""
    U = model.U_.copy()
    for t, d in zip(model.terms_, deltas):
        U[t.columns] *= t.kernel.delta / d     # K_MM is block diagonal over terms
    return U


def cross_validate(model, frames, k=5, sigma_energy=None, sigma_force=None, sigma_virial=None,
                   delta=None, delta_2b=None, score="force", seed=0, refit=True, client=None,
                   chunk_frames=None, search="grid", sweeps=2, candidates=None,
                   reference=None, energy_cap=None):
    """k-fold CV of a SparseGPR's noise and δ hyper-parameters over a grid.

    Each grid argument is a list of values (None: keep the model's). Returns a dict with
    ``results`` (one row per grid point: the parameters and held-out energy RMSE
    (eV/atom), force RMSE (eV/Å), stress RMSE (eV/Å³)), ``best`` (the row with the
    lowest ``score`` ∈ {"force", "energy", "stress", "both"}; "both" is the sum of the force and
    energy RMSEs relative to those of the first grid point) and, with ``refit``, ``model``: a
    fitted copy of ``model`` at the best point (solved from the same triangles).

    ``search="coordinate"`` visits the grid by coordinate descent instead of in full
    (start at the middle value of every list, then, one parameter at a time, move to its
    best value; at most ``sweeps`` sweeps): ~Σ len(list) solves instead of Π len(list).

    With a Dask ``client`` (:mod:`gapcalc.distributed`) the fold triangles are made on
    the cluster (``frames`` may then be extxyz paths) and the (grid point, fold) solves
    run in parallel (the whole grid at once, or one coordinate's values at a time); the
    scores equal the serial ones to rounding. ``candidates`` is passed to the sparse-point
    selection as in :meth:`SparseGPR.fit`.

    ``reference``: {"force": eV/Å, "energy": eV/atom} RMSEs that the "both" score is
    relative to (default: those of the first grid point), and "energy_cap" (eV/atom), so
    that the scores of several cross-validations can be compared; returned as
    ``out["reference"]``.

    ``energy_cap``: a ratio q₀: the score of a grid point whose held-out energy RMSE E
    exceeds the cap E_cap is multiplied by (E/E_cap)^CAP_POWER, with E_cap =
    ``reference["energy_cap"]`` if given, else q₀ times the energy RMSE of the model as
    given (its own σ's and δ, always evaluated first and returned as ``out["as_given"]``).
    So a force search with ``energy_cap=1`` improves forces without making energies worse
    than the model's own settings do. Without held-out energies the cap is not used.

    Every row has ``score``, the value ranked (lower is better; None without held-out data).
    """
    if search not in ("grid", "coordinate"):
        raise ValueError(f"search must be 'grid' or 'coordinate', got {search!r}")
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    m = _clone(model)

    def folds_of(idx, n_frames):
        if len(idx) < k:
            raise ValueError(f"{len(idx)} frames cannot make {k} folds")
        rng = np.random.default_rng(seed)
        folds = np.full(n_frames, -1)
        folds[rng.permutation(idx)] = np.arange(len(idx)) % k
        return folds

    if client is None:
        frames, targets, idx, _ = m._prepare(frames)
        folds = folds_of(idx, len(frames))
        accs = m._accumulate(frames, targets, idx, folds=folds, evaluation=True)
        tri = {f: {t: a.triangle() for t, a in accs[f].items()} for f in accs}
        nrows = {f: {t: a.n_rows for t, a in accs[f].items()} for f in accs}
    else:
        from .distributed import fold_triangles
        tri, nrows, idx = fold_triangles(m, frames, client, folds_of, chunk_frames,
                                         candidates=candidates)
    # the training triangles of every fold do not depend on the grid point (σ_t scales
    # a whole type, δ only the regulariser): reduce them once, keeping only non-zero rows
    rest = {f: [_nonzero_rows(combine_triangles([tri[g][t] for g in tri if g != f], m.M_ + 1))
                for t in TYPES] for f in tri}
    base = {"sigma_energy": m.sigma_energy, "sigma_force": m.sigma_force,
            "sigma_virial": m.sigma_virial}
    grid = {"sigma_energy": sigma_energy or [m.sigma_energy],
            "sigma_force": sigma_force or [m.sigma_force],
            "sigma_virial": sigma_virial or [m.sigma_virial],
            "delta": delta or [m.terms_[0].kernel.delta]}
    n_soap = m.n_soap_terms_
    if len(m.terms_) > n_soap:
        grid["delta_2b"] = delta_2b or [m.terms_[n_soap].kernel.delta]
    base_deltas = [t.kernel.delta for t in m.terms_]

    def term_deltas(p):
        """δ of every term at grid point p: the SOAP terms keep their ratios to the first."""
        out = [p["delta"] * d / base_deltas[0] for d in base_deltas[:n_soap]]
        return out + ([p["delta_2b"]] if "delta_2b" in p else [])
    names = list(grid)
    results = []
    seen = {}
    first = dict(reference) if reference else {}

    def evaluate(batch):
        """Rows of the grid points ``batch`` (tuples of values, in order); the points not
        seen before are solved together (fold solves in parallel with a client)."""
        new = list(dict.fromkeys(v for v in batch if v not in seen))
        points = []
        for values in new:
            p = dict(zip(names, values))
            scales = [base[f"sigma_{t}"] / p[f"sigma_{t}"] for t in TYPES]
            points.append((p, scales, _scaled_U(m, term_deltas(p))))
        jobs = [(scales, U, f) for _, scales, U in points for f in tri]
        if client is None:
            errs = [_fold_errors(job, rest, tri, nrows) for job in jobs]
        else:
            from .distributed import map_ordered
            errs = map_ordered(client, _fold_errors, jobs, rest, tri, nrows)
        for i, (values, (p, _, _)) in enumerate(zip(new, points)):
            sq = {t: 0.0 for t in TYPES}
            cnt = {t: 0 for t in TYPES}
            for fold_sq, fold_cnt in errs[i * len(tri):(i + 1) * len(tri)]:
                for t in TYPES:
                    if fold_cnt[t]:
                        sq[t] += fold_sq[t]
                        cnt[t] += fold_cnt[t]
            row = dict(p)
            for t, name in zip(TYPES, ("energy_rmse", "force_rmse", "stress_rmse")):
                row[name] = float(np.sqrt(sq[t] / cnt[t])) if cnt[t] else None
            row["score"] = _score(row, score, first, energy_cap)
            results.append(row)
            seen[values] = row
            log.info("cv %s", row)
        return [seen[v] for v in batch]

    as_given = None
    if energy_cap is not None and "energy_cap" not in first:
        # the model's own settings, the cap's base
        as_given = dict(base, delta=base_deltas[0])
        if len(base_deltas) > n_soap:
            as_given["delta_2b"] = base_deltas[n_soap]
        as_given = evaluate([tuple(as_given[n] for n in names)])[0]
        if as_given["energy_rmse"]:
            first["energy_cap"] = energy_cap * as_given["energy_rmse"]
            as_given["score"] = _score(as_given, score, first, energy_cap)  # cap now known
        else:
            log.info("cv: no held-out energies, the energy cap is not used")
    if search == "grid":
        evaluate(list(itertools.product(*(grid[n] for n in names))))
    else:
        def val(row):
            return np.inf if row["score"] is None else row["score"]
        current = [grid[n][len(grid[n]) // 2] for n in names]
        best_row = evaluate([tuple(current)])[0]
        for _ in range(int(sweeps)):
            moved = False
            for i, n in enumerate(names):
                # the candidates of one coordinate differ from ``current`` in entry i
                # only, so they can be solved as one batch
                cands = []
                for v in grid[n]:
                    cand = list(current)
                    cand[i] = v
                    cands.append(cand)
                for cand, row in zip(cands, evaluate([tuple(c) for c in cands])):
                    if val(row) < val(best_row):
                        best_row, current, moved = row, cand, True
            if not moved:
                break
    valid = [r for r in results if r["score"] is not None]
    if not valid:
        raise ValueError(f"no held-out {score} data to score on")
    best = min(valid, key=lambda r: r["score"])
    out = {"results": results, "best": best, "k": k, "reference": dict(first)}
    if as_given is not None:
        out["as_given"] = as_given
    if refit:
        for name in ("sigma_energy", "sigma_force", "sigma_virial"):
            setattr(m, name, best[name])
        deltas = term_deltas(best)
        U = _scaled_U(m, deltas)
        triangles = []
        for t in TYPES:
            acc = StreamingQR(m.M_, 10 ** 9)
            for f in tri:
                acc.add_triangle(tri[f][t])
            triangles.append(acc.triangle() * (base[f"sigma_{t}"] / best[f"sigma_{t}"]))
        beta, R = solve_regularised(triangles, U)
        # back to the kernel with the new δ: K' = c K with c = (δ/δ⁰)², α = β/c, and the
        # triangles of the α problem are those of the β problem with columns scaled by c
        c_cols = np.empty(m.M_)
        for t, d in zip(m.terms_, deltas):
            c_cols[t.columns] = (d / t.kernel.delta) ** 2
        for t, d in zip(m.terms_, deltas):
            t.kernel.delta = d
        m.delta = deltas[0] if n_soap == 1 else deltas[:n_soap]
        if "delta_2b" in best:
            m.delta_2b = best["delta_2b"]
        m.U_ = m._kmm_factor()
        m._set_alpha(beta / c_cols)
        m.R_ = R * c_cols[None, :]
        T = np.stack(triangles)
        T[:, :, :m.M_] *= c_cols[None, None, :]
        m.triangles_ = T
        m.training_summary_ = {"n_frames": len(idx), "cross_validation": {"k": k, "best": best}}
        out["model"] = m
    return out


def _score(row, score, first, energy_cap):
    """The value a grid point is ranked by (None if it has no held-out data of that kind).

    ``first`` holds the "both" reference RMSEs (set from this row if empty) and the
    absolute "energy_cap"."""
    f, e = row["force_rmse"], row["energy_rmse"]
    if score == "both":
        if f is None or not e:
            return None
        if "force" not in first:
            first.update(force=f, energy=e)
        value = f / first["force"] + e / first["energy"]
    else:
        value = row[f"{score}_rmse"]
        if value is None:
            return None
    cap = first.get("energy_cap") if energy_cap is not None else None
    if cap and e and e > cap:
        value *= (e / cap) ** CAP_POWER
    return value


def _nonzero_rows(R):
    """The rows of a triangle that are not all zero (a fold's energy triangle has as many
    as it has energies, the rest of its (M+1) rows are padding)."""
    return R[np.any(R != 0.0, axis=1)]


def _fold_errors(job, rest, tri, nrows):
    """Held-out squared errors of one fold at one grid point: ({type: Σ err²}, {type: n}).

    job = (scales, U, f): σ scales per type, regulariser factor, the held-out fold;
    rest[f]: the triangles (per type) of every other fold reduced to one."""
    scales, U, f = job
    beta, _ = solve_regularised(rest[f], U, scales)
    v = np.append(beta, -1.0)
    sq = {t: 0.0 for t in TYPES}
    cnt = {t: 0 for t in TYPES}
    for t in TYPES:
        if nrows[f][f"eval_{t}"]:
            sq[t] = float(np.sum((tri[f][f"eval_{t}"] @ v) ** 2))
            cnt[t] = nrows[f][f"eval_{t}"]
    return sq, cnt


def _curve_point(frames, model, valid_frames):
    from .metrics import error_table
    m = _clone(model).fit(frames)
    return {"n_train": len(frames), **error_table(m, valid_frames)["overall"]}


def learning_curve(model, train_frames, valid_frames, sizes, seed=0, client=None):
    """Validation errors of models fitted on growing random subsets of the training set.

    Returns a list of {"n_train": n, **error_table(...)["overall"]}. With a Dask
    ``client`` the sizes are fitted in parallel, one worker each.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train_frames))
    subsets = [[train_frames[i] for i in order[:int(min(n, len(train_frames)))]]
               for n in sizes]
    if client is None:
        out = []
        for sub in subsets:
            row = _curve_point(sub, model, valid_frames)
            log.info("learning curve %s", row)
            out.append(row)
        return out
    from .distributed import map_ordered
    out = map_ordered(client, _curve_point, subsets, model, list(valid_frames))
    for row in out:
        log.info("learning curve %s", row)
    return out
