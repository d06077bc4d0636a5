"""Error statistics of a model against reference frames, overall and per config_type."""
from __future__ import annotations

import numpy as np

from .targets import TargetKeys, read_targets


def _stats(errors):
    if not len(errors):
        return None, None
    e = np.asarray(errors, dtype=float)
    return float(np.sqrt(np.mean(e ** 2))), float(np.mean(np.abs(e)))


def error_table(model, frames, keys: TargetKeys | None = None, return_predictions=False):
    """Energy RMSE/MAE (eV/atom), force RMSE/MAE (eV/Å), stress RMSE (eV/Å³), n_frames.

    Returns {"overall": {...}, "per_config_type": {type: {...}}}; with
    ``return_predictions`` also the (reference, predicted) pairs for parity plots.
    """
    # a Potential (imported or saved without posterior) has no fitting keys: the defaults
    keys = keys or (model._keys() if hasattr(model, "_keys") else TargetKeys())
    sig = {"energy": 1.0, "force": 1.0, "virial": 1.0}
    groups: dict[str, dict[str, list]] = {}
    pairs = {"energy": ([], []), "forces": ([], [])}
    for k, at in enumerate(frames):
        t = read_targets(at, k, keys, sig, require_forces=False)
        res = model.evaluate(at, stress=t.virial is not None)
        g = groups.setdefault(t.config_type, {"e": [], "f": [], "s": [], "n": 0})
        g["n"] += 1
        n = len(at)
        g["e"].append((res["energy"] - t.energy) / n)
        pairs["energy"][0].append(t.energy / n)
        pairs["energy"][1].append(res["energy"] / n)
        if t.forces is not None:
            g["f"].append((res["forces"] - t.forces).ravel())
            pairs["forces"][0].append(t.forces.ravel())
            pairs["forces"][1].append(res["forces"].ravel())
        if t.virial is not None and "stress" in res:
            s = res["stress"]
            pred = np.array([[s[0], s[5], s[4]], [s[5], s[1], s[3]], [s[4], s[3], s[2]]])
            ref = -t.virial / at.get_volume()
            g["s"].append((pred - ref).ravel())

    def summarise(gs):
        e = np.concatenate([np.atleast_1d(x) for g in gs for x in g["e"]])
        f = [x for g in gs for x in g["f"]]
        s = [x for g in gs for x in g["s"]]
        e_rmse, e_mae = _stats(e)
        f_rmse, f_mae = _stats(np.concatenate(f)) if f else (None, None)
        s_rmse, _ = _stats(np.concatenate(s)) if s else (None, None)
        return {"energy_rmse": e_rmse, "energy_mae": e_mae, "force_rmse": f_rmse,
                "force_mae": f_mae, "stress_rmse": s_rmse, "n_frames": sum(g["n"] for g in gs)}

    table = {"overall": summarise(list(groups.values())),
             "per_config_type": {ct: summarise([g]) for ct, g in sorted(groups.items())}}
    if return_predictions:
        table["predictions"] = {k: (np.concatenate([np.atleast_1d(x) for x in v[0]]),
                                    np.concatenate([np.atleast_1d(x) for x in v[1]]))
                                for k, v in pairs.items() if v[0]}
    return table


def format_table(table) -> str:
    """Plain-text rendering (meV/atom, eV/Å, GPa)."""
    def fmt(x, scale=1.0, nd=4):
        return "-" if x is None else f"{x * scale:.{nd}f}"
    lines = [f"{'config_type':<22}{'n':>5}{'E RMSE':>10}{'E MAE':>10}{'F RMSE':>9}{'F MAE':>9}"
             f"{'S RMSE':>9}",
             f"{'':<22}{'':>5}{'meV/at':>10}{'meV/at':>10}{'eV/Å':>9}{'eV/Å':>9}{'GPa':>9}"]
    rows = list(table["per_config_type"].items()) + [("OVERALL", table["overall"])]
    for name, r in rows:
        lines.append(f"{name[:21]:<22}{r['n_frames']:>5}{fmt(r['energy_rmse'], 1e3, 2):>10}"
                     f"{fmt(r['energy_mae'], 1e3, 2):>10}{fmt(r['force_rmse']):>9}"
                     f"{fmt(r['force_mae']):>9}{fmt(r['stress_rmse'], 160.21766, 3):>9}")
    return "\n".join(lines)
