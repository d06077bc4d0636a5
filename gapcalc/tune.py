"""Automatic choice of hyper-parameters by k-fold cross-validation (seed §III; issue 15).

:func:`tune` searches the representation (cutoff, n_max/l_max, atom_sigma, radial scaling),
the kernel exponent ζ and the 2-body term by coordinate descent: starting from the default
recipe, it tries the values of one setting at a time, keeps a change when it lowers the
cross-validated score, and moves on, sweeping the settings until the budget is spent or a
sweep changes nothing. Every candidate is scored by :func:`gapcalc.tuning.cross_validate`
on the training frames only: one descriptor pass per candidate, after which the noise
levels σ_E, σ_F, σ_V and the kernel scales δ (and δ_2b) are chosen from the per-fold QR
triangles at almost no cost (the fast CV, visited by coordinate descent; the representation
and ζ change the design rows and need a new pass). The search runs with ``n_sparse_search`` sparse points per species
(cheap); the winner's noise levels and δ are then chosen again by k-fold CV with
``n_sparse`` points on all training frames (more sparse points favour smaller σ's), and the
model solved from those triangles is the one returned.

A force search alone trades energies for forces (on the Si split: forces 0.86×, energies
1.23× the default recipe's test MAE). So by default (``energy_cap=1``) a candidate's CV
score is its force RMSE, multiplied by (E/E_cap)⁴ when its CV energy RMSE E exceeds E_cap,
the CV energy RMSE of the starting recipe with the default σ's and δ (what an untuned fit
gives), measured at the same fidelity: forces improve, energies do not get worse.

Deterministic for a given ``seed`` and a given set of completed candidates: with a time
``budget`` the search may stop earlier on a slower machine; ``max_candidates`` bounds it
machine-independently.
"""
from __future__ import annotations

import logging
import time

import numpy as np

log = logging.getLogger(__name__)

#: default starting point (gap_fit's usual SOAP recipe, as gapcalc's defaults)
START = {"cutoff": 5.0, "nl": (8, 6), "atom_sigma": 0.5, "radial_scaling": None, "zeta": 4,
         "two_body": None}

#: the values tried for each setting, in the order the settings are visited (the radial
#: scaling first: on the Si split it moved the test force error most, 71 -> 62 meV/Å at
#: M = 1000, RESULTS §15)
SPACE = {
    "radial_scaling": [None, (3.0, 4), (2.5, 4), (3.5, 4), (3.0, 2), (3.0, 6)],
    "cutoff": [4.5, 5.0, 5.5, 6.0],
    "atom_sigma": [0.4, 0.5, 0.6],
    "zeta": [2, 4, 6],
    "two_body": [None, "distance"],
    "nl": [(8, 6), (10, 6), (8, 8), (6, 4)],
}

#: the settings chosen inside every candidate from the CV triangles (δ_2b: with a 2-body term)
REGULARISATION = ("sigma_energy", "sigma_force", "sigma_virial", "delta", "delta_2b")

#: regularisation grid searched inside every candidate (from the triangles)
INNER = {"sigma_energy": [0.0005, 0.001, 0.002, 0.005, 0.01],
         "sigma_force": [0.005, 0.01, 0.02, 0.04, 0.07, 0.1, 0.2],
         "sigma_virial": [0.02, 0.05, 0.1, 0.2], "delta": [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0],
         "delta_2b": [0.1, 0.3, 1.0]}


def _scaling(v):
    if v is None:
        return None
    r0, m = v
    return {"type": "inverse_power", "r0": float(r0), "m": float(m), "c": 1.0}


def _label(cfg):
    rs = "-" if cfg["radial_scaling"] is None else "r0=%g,m=%g" % tuple(cfg["radial_scaling"])
    return (f"rc={cfg['cutoff']:g} n,l={cfg['nl'][0]},{cfg['nl'][1]} "
            f"σ_at={cfg['atom_sigma']:g} u={rs} ζ={cfg['zeta']:g} 2b={cfg['two_body'] or '-'}")


def make_model(cfg, species, n_sparse, seed=0, **extra):
    """A SparseGPR for a search configuration (dict as :data:`START`)."""
    from .descriptors import SOAP
    from .gpr import SparseGPR
    n_max, l_max = cfg["nl"]
    soap = SOAP(species, cutoff=cfg["cutoff"], n_max=n_max, l_max=l_max,
                atom_sigma=cfg["atom_sigma"], cutoff_width=0.5,
                radial_scaling=_scaling(cfg["radial_scaling"]))
    params = dict(zeta=cfg["zeta"], n_sparse=n_sparse, two_body=cfg["two_body"], seed=seed)
    for k in REGULARISATION:
        if k in cfg:
            params[k] = cfg[k]
    params.update(extra)
    return SparseGPR(soap, **params)


def tune(frames, k=4, budget=None, max_candidates=None, seed=0, n_sparse=1000,
         n_sparse_search=300, score="force", space=None, start=None, inner=None,
         valid=None, curve_sizes=(0.125, 0.25, 0.5, 1.0), refit=True, search_frames=None,
         final_cv=True, finalists=3, energy_cap=1.0, **model_kw):
    """Search hyper-parameters by k-fold CV on ``frames`` (the training set only).

    budget : seconds for the search (None: until a sweep improves nothing).
    max_candidates : stop after this many candidates (machine-independent).
    score : "force" (held-out force RMSE), "energy", or "both" (sum of the two RMSEs, each
        relative to the starting recipe's).
    energy_cap : the held-out energy RMSE may exceed that of the starting recipe with its
        default σ's and δ (what an untuned fit gives) by at most this factor: beyond it a
        candidate's score is penalised by (E/E_cap)^CAP_POWER
        (:func:`gapcalc.tuning.cross_validate`), at the search's fidelity and again in the
        final CV, where the starting recipe is then always cross-validated first as the
        baseline. None: no cap (a force search may then trade energy for forces).
    space, start, inner : override :data:`SPACE`, :data:`START`, :data:`INNER`.
    valid : optional validation frames for the learning curve (else a seeded 20 % of the
        training frames is held out for the curve only).
    search_frames : search (and the learning curve) on a seeded random subset of this many
        training frames (cheaper); the final model is fitted on all of them.
    final_cv : cross-validate the ``finalists`` best search candidates again at
        ``n_sparse`` sparse points on all training frames, choosing their σ_E, σ_F, σ_V and
        δ (δ_2b) anew; the one with the lowest score is the model (solved from those
        triangles); False: refit the search's winner with the search's values.
    finalists : how many of the search's best candidates the final CV compares.
    model_kw : further SparseGPR arguments (e.g. e0, energy_key).
    Returns {"table": rows of every candidate, "best": config of the model, "best_row": its
    search row, "model": fitted SparseGPR (with ``refit``), "curve": learning curve of that
    configuration (at the search's fidelity), "search_reference": the search's "both"
    reference RMSEs and absolute "energy_cap" (eV/atom), "finalists": the final CV of each
    finalist (the baseline first, with ``energy_cap``), "baseline": the starting recipe's
    final CV at default σ's and δ with the final "energy_cap", and "final": the chosen
    finalist's CV (with ``final_cv``)}.
    """
    from .tuning import cross_validate, learning_curve
    space = dict(SPACE if space is None else space)
    cfg = dict(START if start is None else start)
    inner = dict(INNER if inner is None else inner)
    species = np.unique(np.concatenate([at.numbers for at in frames]))
    all_frames = list(frames)
    if search_frames is not None and search_frames < len(all_frames):
        pick = np.sort(np.random.default_rng(seed + 1).permutation(len(all_frames))
                       [:int(search_frames)])
        frames = [all_frames[i] for i in pick]
        log.info("tune: searching on %d of %d training frames", len(frames), len(all_frames))
    t0 = time.perf_counter()
    evaluated = {}
    table = []
    # the "both" reference RMSEs and the absolute energy cap, set by the first candidate
    # (the starting recipe) so that every candidate's score is on one scale
    search_ref = {}

    def key(c):
        return tuple((n, c[n] if not isinstance(c[n], list) else tuple(c[n]))
                     for n in sorted(START))

    def evaluate(c):
        kk = key(c)
        if kk in evaluated:
            return evaluated[kk]
        ts = time.perf_counter()
        model = make_model(c, species, n_sparse_search, seed=seed, **model_kw)
        grid = {n: inner[n] for n in ("sigma_energy", "sigma_force", "sigma_virial", "delta")}
        if c["two_body"]:
            grid["delta_2b"] = inner["delta_2b"]
        try:
            cv = cross_validate(model, frames, k=k, seed=seed, score=score, refit=False,
                                search="coordinate", reference=search_ref or None,
                                energy_cap=energy_cap, **grid)
        except (ValueError, np.linalg.LinAlgError) as exc:
            if not evaluated:      # the starting recipe: nothing to compare against
                raise ValueError(f"the starting configuration cannot be cross-validated: "
                                 f"{exc}") from exc
            log.warning("tune: %s failed (%s)", _label(c), exc)
            evaluated[kk] = None
            return None
        if not search_ref:
            search_ref.update(cv["reference"])
        best = cv["best"]
        row = {"config": dict(c), "label": _label(c), **best,
               "seconds": round(time.perf_counter() - ts, 1)}
        table.append(row)
        evaluated[kk] = row
        log.info("tune [%d] %s: CV E %.2f meV/atom, F %.4f eV/Å (σ_E %g σ_F %g σ_V %g δ %g) "
                 "score %.4g, %.0f s", len(table), row["label"], 1e3 * row["energy_rmse"],
                 row["force_rmse"], row["sigma_energy"], row["sigma_force"],
                 row["sigma_virial"], row["delta"], row["score"], row["seconds"])
        return row

    def out_of_time():
        if budget is not None and time.perf_counter() - t0 > budget:
            return True
        return max_candidates is not None and len(table) >= max_candidates

    best = start_row = evaluate(cfg)
    improved = True
    while improved and not out_of_time():
        improved = False
        for name, values in space.items():
            for v in values:
                if out_of_time():
                    break
                cand = dict(best["config"], **{name: v})
                row = evaluate(cand)
                if row is not None and row["score"] < best["score"] - 1e-12:
                    log.info("tune: better: %s", row["label"])
                    best = row
                    improved = True
    log.info("tune: %d candidates in %.0f s; best %s", len(table), time.perf_counter() - t0,
             best["label"])
    win = dict(best["config"])
    win.update({n: best[n] for n in REGULARISATION if n in best})
    out = {"table": table, "best": win, "best_row": best, "search_reference": dict(search_ref)}
    if refit and final_cv:
        # the search's fidelity (n_sparse_search points, maybe a subset of the frames) is
        # not the final one: more sparse points favour smaller σ's and can reorder
        # near-equal candidates (on the Si split the top search candidates were within
        # 1.5 % of each other). So the best ``finalists`` candidates of the search are
        # cross-validated again at n_sparse on all training frames, their σ's and δ chosen
        # anew; the lowest score wins, and the model solved from its summed fold
        # triangles is the refit (no separate fit). With an energy cap or the "both"
        # score the starting recipe goes first: its default σ's and δ set the cap and the
        # "both" reference at this fidelity
        ranked = sorted(table, key=lambda r: r["score"])[:max(1, int(finalists))]
        if energy_cap is not None or score == "both":
            ranked = [start_row] + [r for r in ranked if r is not start_row]
        reference = chosen = None
        out["finalists"] = []
        for row in ranked:
            ts = time.perf_counter()
            c = dict(row["config"])
            choice = {n: row[n] for n in REGULARISATION if n in row}
            # the inner grid plus the search's choice of each setting; the model itself
            # keeps the defaults (the baseline's "as given" point is the untuned recipe)
            grid = {n: sorted(set(inner[n]) | {choice[n]}) for n in REGULARISATION
                    if n != "delta_2b" or c["two_body"]}
            log.info("tune: finalist %d/%d %s at %d sparse points: k-fold CV of σ's and δ "
                     "on all %d frames", len(out["finalists"]) + 1, len(ranked), row["label"],
                     n_sparse, len(all_frames))
            cv = cross_validate(make_model(c, species, n_sparse, seed=seed, **model_kw),
                                all_frames, k=k, seed=seed, score=score, refit=True,
                                search="coordinate", reference=reference,
                                energy_cap=energy_cap, **grid)
            reference = cv["reference"]
            fin = cv["best"]
            entry = {"label": row["label"], "row": row,
                     **{n: fin[n] for n in grid}, "n_sparse": n_sparse,
                     "energy_rmse": fin["energy_rmse"], "force_rmse": fin["force_rmse"],
                     "score": fin["score"], "seconds": round(time.perf_counter() - ts, 1)}
            if "as_given" in cv:
                out["baseline"] = {n: cv["as_given"][n] for n in
                                   ("energy_rmse", "force_rmse", "score")}
                out["baseline"]["energy_cap"] = reference["energy_cap"]
            out["finalists"].append(entry)
            if chosen is None or entry["score"] < chosen["score"]:
                chosen, model = entry, cv["model"]   # only the best model is kept (M² triangles)
            log.info("tune: finalist %s: CV E %.2f meV/atom, F %.4f eV/Å (σ_E %g σ_F %g "
                     "σ_V %g δ %g) score %.4g, %.0f s", row["label"], 1e3 * fin["energy_rmse"],
                     fin["force_rmse"], fin["sigma_energy"], fin["sigma_force"],
                     fin["sigma_virial"], fin["delta"], fin["score"], entry["seconds"])
        best = out["best_row"] = chosen["row"]
        win = dict(best["config"])
        win.update({n: chosen[n] for n in REGULARISATION if n in chosen})
        out["best"] = win
        out["final"] = {n: v for n, v in chosen.items() if n not in ("row", "label")}
        log.info("tune: chosen %s", chosen["label"])
    elif refit:
        model = make_model(win, species, n_sparse, seed=seed, **model_kw).fit(all_frames)
    # learning curve of the chosen configuration (at the search fidelity)
    rng = np.random.default_rng(seed)
    if valid is None:
        order = rng.permutation(len(frames))
        n_hold = max(1, len(frames) // 5)
        curve_train = [frames[i] for i in order[n_hold:]]
        curve_valid = [frames[i] for i in order[:n_hold]]
    else:
        curve_train, curve_valid = list(frames), list(valid)
    sizes = sorted({max(2, int(round(f * len(curve_train)))) for f in curve_sizes})
    if curve_sizes:
        out["curve"] = learning_curve(make_model(win, species, n_sparse_search, seed=seed,
                                                 **model_kw),
                                      curve_train, curve_valid, sizes, seed=seed)
    if refit:
        model.training_summary_["tune"] = {"best": {k: (list(v) if isinstance(v, tuple) else v)
                                                    for k, v in win.items()},
                                           "k": k, "candidates": len(table),
                                           "cv_force_rmse": best["force_rmse"],
                                           "cv_energy_rmse": best["energy_rmse"]}
        if "finalists" in out:
            model.training_summary_["tune"]["finalists"] = [
                {n: v for n, v in e.items() if n != "row"} for e in out["finalists"]]
        if "final" in out:
            model.training_summary_["tune"]["final_cv"] = dict(out["final"])
        if "baseline" in out:
            model.training_summary_["tune"]["baseline_cv"] = dict(out["baseline"])
        out["model"] = model
    return out


def format_tune_table(result) -> str:
    """The candidates as a text table (CV RMSEs: energy meV/atom, forces eV/Å)."""
    lines = [f"{'#':>3} {'configuration':<58}{'σ_E':>7}{'σ_F':>6}{'δ':>5}"
             f"{'E meV/at':>10}{'F eV/Å':>9}{'s':>6}"]
    best = result["best_row"]
    for i, r in enumerate(result["table"], 1):
        mark = "*" if r is best else " "
        lines.append(f"{i:>3}{mark}{r['label']:<58}{r['sigma_energy']:>7g}{r['sigma_force']:>6g}"
                     f"{r['delta']:>5g}{1e3 * r['energy_rmse']:>10.2f}{r['force_rmse']:>9.4f}"
                     f"{r['seconds']:>6.0f}")
    if result.get("finalists"):
        fin = result["finalists"]
        lines.append(f"finalists at {fin[0]['n_sparse']} sparse points, all frames:")
        if result.get("baseline"):
            b = result["baseline"]
            lines.append(f"    {'starting recipe, default σ and δ (baseline)':<58}{'':>18}"
                         f"{1e3 * b['energy_rmse']:>10.2f}{b['force_rmse']:>9.4f}"
                         f"   energy cap {1e3 * b['energy_cap']:.2f} meV/atom")
        for e in fin:
            mark = "*" if e["row"] is best else " "
            lines.append(f"   {mark}{e['label']:<58}{e['sigma_energy']:>7g}{e['sigma_force']:>6g}"
                         f"{e['delta']:>5g}{1e3 * e['energy_rmse']:>10.2f}"
                         f"{e['force_rmse']:>9.4f}{e['seconds']:>6.0f}")
    if result.get("curve"):
        lines.append("")
        lines.append("learning curve of the winner (validation errors):")
        lines.append(f"{'n_train':>8}{'E MAE meV/at':>14}{'F MAE eV/Å':>12}")
        for row in result["curve"]:
            e = row.get("energy_mae")
            f = row.get("force_mae")
            lines.append(f"{row['n_train']:>8}{(1e3 * e if e is not None else float('nan')):>14.2f}"
                         f"{(f if f is not None else float('nan')):>12.4f}")
    return "\n".join(lines)
