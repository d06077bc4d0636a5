"""On-the-fly learning against GFN2-xTB (tblite): cost, accuracy, calibration, structure.

How to run (from the repository root; needs ``pip install tblite``)::

    python benchmarks/otf_xtb.py --system water            # all stages, ~1-2 h on one core
    python benchmarks/otf_xtb.py --system ethanol          # ~10 min
    python benchmarks/otf_xtb.py --system water --stage xtb_md --xtb-minutes 30
    python benchmarks/otf_xtb.py --system water --stage report

Stages (each writes into ``--out``/<system>/ and is skipped when its output exists, so
stages can run in separate processes, e.g. ``xtb_md`` beside ``learn``):

* ``learn``   — the job of ``md_examples/otf_water_xtb.py`` (water: 32 H2O, 96 atoms,
  1 g/cm³, 300 K, 0.5 fs, Langevin friction 0.05/fs, empty model) or one ethanol molecule at 500 K;
  oracle calls, their fraction of MD steps, wall time of the learning run.
* ``xtb_md``  — direct GFN2-xTB Langevin MD of the same system from an independent start
  (other seed), as long as ``--xtb-minutes`` allows (or ``--xtb-steps``): measured cost per
  xTB step; every frame keeps its xTB forces.
* ``gap_md``  — Langevin MD with the learned model (no learning), ``--gap-ps`` ps.
* ``report``  — force MAE of the final model on 30 frames of the xTB trajectory (evenly
  spaced over its second half); calibration of σ_F there (std of z and fraction within
  1σ for the latent σ_F and the predictive sqrt(σ_F² + σ_noise²), Spearman per atom);
  speed-up of the learning run over direct xTB MD of the same number of steps
  (extrapolated from the measured cost per xTB step); O–O RDF of the gapcalc MD beside
  the xTB one (water) or the distribution of all interatomic distances (ethanol).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "md_examples"))

log = logging.getLogger("otf_xtb")

SYSTEMS = {
    # learning-run settings per system
    "water": dict(temperature=300.0, timestep=0.5, steps=2000, threshold=0.25,
                  check_interval=1, min_interval=3, max_calls=40, gap_ps=20.0, friction=0.05),
    "ethanol": dict(temperature=500.0, timestep=0.5, steps=3000, threshold=0.15,
                    check_interval=1, min_interval=1, max_calls=100, gap_ps=10.0,
                    friction=0.05),
}


def start_structure(system, seed):
    if system == "water":
        from otf_water_xtb import water_box
        return water_box(seed=seed)
    from ase.build import molecule
    at = molecule("CH3CH2OH")
    at.center(vacuum=5.0)
    at.rattle(0.02, seed=seed)
    return at


def empty_model(system):
    if system == "water":
        from otf_water_xtb import water_model
        return water_model()
    from gapcalc import SOAP, SparseGPR
    # the water recipe's sharp, short SOAP (stiff C-H, O-H bonds; cf. potentials/water.md)
    return SparseGPR(SOAP([1, 6, 8], cutoff=4.0, cutoff_width=0.5, n_max=6, l_max=4,
                          atom_sigma=0.3), zeta=2, delta=1.0, sigma_energy=0.001,
                     sigma_force=0.02, sigma_virial=0.02, e0="average", n_sparse=20)


def oracle():
    from gapcalc.oracles import make_tblite
    return make_tblite("GFN2-xTB")


def langevin(atoms, cfg, seed):
    from ase import units
    from ase.md.langevin import Langevin
    return Langevin(atoms, cfg["timestep"] * units.fs, temperature_K=cfg["temperature"],
                    friction=cfg["friction"] / units.fs, fixcm=False,
                    rng=np.random.default_rng(seed))


# ------------------------------------------------------------------ stages
class _Budget(Exception):
    pass


def summary_from_run(out: Path):
    """learn.json's numbers from a run's checkpoint (state.json) when the learning process
    was stopped before its end (wall-time budget): steps done, calls, times from the log."""
    run = out / "run"
    state = json.loads((run / "state.json").read_text())
    calls = [h for h in state["history"] if "oracle_s" in h]
    stamps = [ln[:23] for ln in (run / "learn.log").read_text().splitlines() if ln[:2] == "20"]
    from datetime import datetime
    t = [datetime.strptime(x, "%Y-%m-%d %H:%M:%S,%f") for x in (stamps[0], stamps[-1])]
    steps = int(state["step"])
    return {"steps": steps, "steps_planned": int(state["config"]["steps"]),
            "stopped_early": steps < int(state["config"]["steps"]),
            "oracle_calls": int(state["calls"]), "call_fraction": state["calls"] / max(steps, 1),
            "wall_s": (t[1] - t[0]).total_seconds() + (calls[0]["oracle_s"] if calls else 0),
            "oracle_s_total": float(sum(h["oracle_s"] for h in calls)),
            "update_s_total": float(sum(h["update_s"] for h in calls)),
            "n_checks": len(state["checks"]), "M": int(calls[-1]["sparse"]) if calls else 0,
            "call_steps": [h["step"] for h in calls]}


def stage_learn(system, cfg, out: Path, minutes=None):
    from gapcalc.active import learn
    run_dir = out / "run"
    atoms = start_structure(system, seed=0)
    t0 = time.perf_counter()
    c0 = time.process_time()
    if minutes:     # stop the dynamics (checkpointed) when the wall budget is spent
        from ase.md.md import MolecularDynamics
        orig = MolecularDynamics.call_observers

        def guarded(self, *a, **k):
            if time.perf_counter() - t0 > 60 * minutes:
                raise _Budget()
            return orig(self, *a, **k)
        MolecularDynamics.call_observers = guarded
    try:
        otf = learn(atoms, oracle(), run_dir, model=empty_model(system),
                oracle_spec="gapcalc.oracles:make_gfn2", temperature=cfg["temperature"],
                steps=cfg["steps"], timestep=cfg["timestep"], friction=cfg["friction"], seed=0,
                log_interval=max(1, cfg["steps"] // 20), rattle=0.0,
                threshold=cfg["threshold"], check_interval=cfg["check_interval"],
                min_interval=cfg["min_interval"], max_calls=cfg["max_calls"],
                n_sparse_initial=30, n_sparse_add=10)
    except _Budget:
        log.warning("learning run stopped by its wall-time budget (%.0f min)", minutes)
        res = summary_from_run(out)
        (out / "learn.json").write_text(json.dumps(res, indent=1))
        return res
    finally:
        if minutes:
            MolecularDynamics.call_observers = orig
    wall = time.perf_counter() - t0
    calls = [h for h in otf.history_ if "oracle_s" in h]
    res = {"steps": cfg["steps"], "oracle_calls": otf.n_calls_,
           "call_fraction": otf.n_calls_ / cfg["steps"], "wall_s": wall,
           "cpu_s": time.process_time() - c0,
           "oracle_s_total": float(sum(h["oracle_s"] for h in calls)),
           "update_s_total": float(sum(h["update_s"] for h in calls)),
           "n_checks": len(otf.checks_), "M": int(otf.model.M_),
           "call_steps": [h["step"] for h in calls]}
    (out / "learn.json").write_text(json.dumps(res, indent=1))
    return res


def stage_xtb_md(system, cfg, out: Path, minutes, max_steps):
    from ase.io import write
    atoms = start_structure(system, seed=1)
    from gapcalc.md import thermalize
    thermalize(atoms, cfg["temperature"], np.random.default_rng(11))
    atoms.calc = oracle()
    dyn = langevin(atoms, cfg, seed=11)
    frames, times = [], []
    traj = out / "xtb_md.xyz"
    t_start = time.perf_counter()

    def keep():
        from ase.calculators.singlepoint import SinglePointCalculator
        snap = atoms.copy()
        snap.calc = SinglePointCalculator(snap, energy=atoms.get_potential_energy(),
                                          forces=atoms.get_forces())
        frames.append(snap)
        times.append(time.perf_counter())
        if len(frames) % 10 == 0:
            write(traj, frames, format="extxyz")
            log.info("xTB MD step %d, %.2f s/step, T %.0f K", len(frames),
                     (times[-1] - t_start) / len(frames), atoms.get_temperature())

    dyn.attach(keep, interval=1)
    keep()    # the first force call, t=0
    while (time.perf_counter() - t_start < 60 * minutes
           and (max_steps is None or len(frames) <= max_steps)):
        dyn.run(1)
    write(traj, frames, format="extxyz")
    dt = np.diff(times)
    res = {"steps": len(frames) - 1, "s_per_step_median": float(np.median(dt)),
           "s_per_step_mean": float(np.mean(dt)), "wall_s": times[-1] - t_start}
    (out / "xtb_md.json").write_text(json.dumps(res, indent=1))
    return res


def stage_gap_md(system, cfg, out: Path, ps):
    from ase.io import read, write
    from gapcalc import GAPCalculator, load_model_file
    model = load_model_file(out / "run" / "model.npz")
    atoms = read(out / "run" / "md_state.xyz")
    atoms.calc = GAPCalculator(model)
    dyn = langevin(atoms, cfg, seed=5)
    steps = int(round(ps * 1000 / cfg["timestep"]))
    every = max(1, int(round(10 / cfg["timestep"])))          # a frame every 10 fs
    frames = []
    maxf = [0.0]

    def keep():
        snap = atoms.copy()
        snap.calc = None
        frames.append(snap)
        maxf[0] = max(maxf[0], float(np.abs(atoms.get_forces()).max()))
        if len(frames) % 200 == 0:
            log.info("gapcalc MD %.1f ps, T %.0f K", len(frames) * every * cfg["timestep"] / 1e3,
                     atoms.get_temperature())

    dyn.attach(keep, interval=every)
    t0 = time.perf_counter()
    failure = None
    try:
        dyn.run(steps)
    except Exception as exc:      # e.g. atoms too close: the model left its data
        failure = f"step {dyn.nsteps}: {exc}"
        log.error("gapcalc MD stopped at %s", failure)
    wall = time.perf_counter() - t0
    done = max(int(dyn.nsteps), 1)
    write(out / "gap_md.xyz", frames, format="extxyz")
    res = {"steps": done, "steps_planned": steps, "ps": done * cfg["timestep"] / 1e3,
           "wall_s": wall, "ms_per_step": 1e3 * wall / done, "failure": failure,
           "max_abs_force": maxf[0], "frames": len(frames)}
    (out / "gap_md.json").write_text(json.dumps(res, indent=1))
    return res


def distances(frames, pair, r_max):
    """All distances < r_max (minimum image) between species pair (Z1, Z2) or all pairs."""
    out = []
    for at in frames:
        d = at.get_all_distances(mic=at.pbc.any())
        z = at.numbers
        if pair is None:
            iu = np.triu_indices(len(at), 1)
            out.append(d[iu])
        else:
            a, b = np.flatnonzero(z == pair[0]), np.flatnonzero(z == pair[1])
            dd = d[np.ix_(a, b)]
            if pair[0] == pair[1]:
                dd = dd[np.triu_indices(len(a), 1)]
            out.append(dd.ravel())
    d = np.concatenate(out) if out else np.zeros(0)
    return d[d < r_max]


def rdf(frames, pair, r_max=4.9, bins=49):
    """g(r) for a periodic box (normalised by the ideal-gas count), else a histogram."""
    d = distances(frames, pair, r_max)
    h, edges = np.histogram(d, bins=bins, range=(0.0, r_max))
    r = 0.5 * (edges[1:] + edges[:-1])
    at = frames[0]
    if at.pbc.all():
        z = at.numbers
        na, nb = np.sum(z == pair[0]), np.sum(z == pair[1])
        n_pairs = na * (na - 1) / 2 if pair[0] == pair[1] else na * nb
        shell = 4 / 3 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
        g = h / (len(frames) * n_pairs * shell / at.get_volume())
    else:
        g = h / max(h.sum(), 1) / (edges[1] - edges[0])
    return r, g


def stage_report(system, cfg, out: Path):
    from ase.io import read
    from scipy.stats import spearmanr
    from gapcalc import load_model_file
    learn_path = out / "learn.json"
    learn_res = (json.loads(learn_path.read_text()) if learn_path.exists()
                 else summary_from_run(out))
    xres = json.loads((out / "xtb_md.json").read_text())
    traj = read(out / "xtb_md.xyz", ":")
    half = traj[len(traj) // 2:]
    test = [half[int(k)] for k in np.linspace(0, len(half) - 1, min(30, len(half)))]
    model = load_model_file(out / "run" / "model.npz")
    err, std = [], []
    for at in test:
        pred = model.evaluate(at, forces=True, stress=False)
        err.append(pred["forces"] - at.get_forces())
        std.append(model.uncertainty(at, forces=True)["forces_std"])
    err, std = np.concatenate(err), np.concatenate(std)
    sig_n = float(model.sigma_force)
    z = err.ravel() / std.ravel()
    zp = err.ravel() / np.sqrt(std.ravel() ** 2 + sig_n ** 2)
    atom_err = np.sqrt((err ** 2).mean(1))
    atom_std = np.sqrt((std ** 2).mean(1))
    s_xtb = xres["s_per_step_median"]
    direct = learn_res["steps"] * s_xtb
    res = {"system": system, "n_atoms": len(test[0]), **{k: cfg[k] for k in
                                                          ("temperature", "timestep")},
           "learn": learn_res, "xtb_md": xres,
           "test_frames": len(test), "test_from_xtb_steps": f"{len(traj) // 2}-{len(traj) - 1}",
           "force_mae": float(np.abs(err).mean()), "force_rmse": float(np.sqrt((err ** 2).mean())),
           "std_z_latent": float(z.std()), "frac_1sigma_latent": float((np.abs(z) < 1).mean()),
           "std_z_predictive": float(zp.std()),
           "frac_1sigma_predictive": float((np.abs(zp) < 1).mean()),
           "spearman_atom": float(spearmanr(atom_std, atom_err).correlation),
           "direct_xtb_s_same_steps": direct,
           "speedup_vs_direct_xtb": direct / learn_res["wall_s"]}
    # the same with the learning run's own seconds per xTB call (same machine conditions as
    # the run itself; the direct MD may have shared the machine with other stages)
    if learn_res.get("oracle_calls"):
        s_call = learn_res["oracle_s_total"] / learn_res["oracle_calls"]
        res["xtb_s_per_call_in_learning_run"] = s_call
        res["speedup_vs_direct_xtb_own_calls"] = learn_res["steps"] * s_call / learn_res["wall_s"]
    gap_path = out / "gap_md.json"
    if gap_path.exists():
        gres = json.loads(gap_path.read_text())
        res["gap_md"] = gres
        gframes = read(out / "gap_md.xyz", ":")
        gframes = gframes[len(gframes) // 10:] or gframes   # drop the first 10 % (equilibration)
        pair = (8, 8) if system == "water" else None
        r_max = 4.9 if system == "water" else 4.0
        r, g_gap = rdf(gframes, pair, r_max)
        _, g_xtb = rdf(traj[len(traj) // 5:], pair, r_max)
        res["rdf"] = {"r": r.tolist(), "gapcalc": g_gap.tolist(), "xtb": g_xtb.tolist(),
                      "gap_frames": len(gframes), "xtb_frames": len(traj) - len(traj) // 5}
        res["rdf_first_peak"] = {"gapcalc_r": float(r[np.argmax(g_gap)]),
                                 "xtb_r": float(r[np.argmax(g_xtb)]),
                                 "gapcalc_g": float(g_gap.max()), "xtb_g": float(g_xtb.max())}
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            fig, ax = plt.subplots(figsize=(5, 3.5))
            ax.plot(r, g_gap, label=f"gapcalc ({gres['ps']:g} ps)")
            ax.plot(r, g_xtb, label=f"GFN2-xTB ({xres['steps'] * cfg['timestep'] / 1e3:.3f} ps)")
            ax.set_xlabel("r / Å")
            ax.set_ylabel("g_OO(r)" if system == "water" else "distance histogram")
            ax.legend()
            fig.tight_layout()
            fig.savefig(out / "rdf.png", dpi=110)
        except ImportError:
            pass
    (out / "report.json").write_text(json.dumps(res, indent=1))
    return res


def format_report(res):
    L = res["learn"]
    lines = [f"{res['system']} ({res['n_atoms']} atoms, {res['temperature']:g} K, "
             f"{res['timestep']} fs):",
             f"  learning run: {L['steps']} MD steps, {L['oracle_calls']} GFN2-xTB calls "
             f"({100 * L['call_fraction']:.2f} % of steps), M = {L['M']}, wall {L['wall_s']:.0f} s "
             f"(oracle {L['oracle_s_total']:.0f} s, updates {L['update_s_total']:.0f} s)",
             f"  direct xTB MD: {res['xtb_md']['s_per_step_median']:.3f} s/step measured over "
             f"{res['xtb_md']['steps']} steps -> {res['direct_xtb_s_same_steps']:.0f} s for "
             f"{L['steps']} steps; learning run {res['speedup_vs_direct_xtb']:.1f}x faster"
             + (f" ({res['speedup_vs_direct_xtb_own_calls']:.1f}x at the run's own "
                f"{res['xtb_s_per_call_in_learning_run']:.2f} s per xTB call)"
                if "speedup_vs_direct_xtb_own_calls" in res else ""),
             f"  force MAE vs GFN2-xTB on {res['test_frames']} frames of an independent xTB "
             f"trajectory: {res['force_mae']:.3f} eV/Å (RMSE {res['force_rmse']:.3f})",
             f"  σ_F calibration: std(z) latent {res['std_z_latent']:.2f} "
             f"(within 1σ {100 * res['frac_1sigma_latent']:.0f} %), predictive "
             f"{res['std_z_predictive']:.2f} ({100 * res['frac_1sigma_predictive']:.0f} %), "
             f"Spearman per atom {res['spearman_atom']:.2f}"]
    if "gap_md" in res:
        g, p = res["gap_md"], res["rdf_first_peak"]
        if g.get("failure"):
            lines.append(f"  gapcalc MD stopped after {g['ps']:g} ps: {g['failure']}")
        lines.append(f"  gapcalc MD {g['ps']:g} ps at {g['ms_per_step']:.1f} ms/step; first "
                     f"peak gapcalc r = {p['gapcalc_r']:.2f} Å g = {p['gapcalc_g']:.2f}, "
                     f"xTB r = {p['xtb_r']:.2f} Å g = {p['xtb_g']:.2f}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", choices=sorted(SYSTEMS), default="water")
    p.add_argument("--stage", choices=["all", "learn", "xtb_md", "gap_md", "report"],
                   default="all")
    p.add_argument("--out", default="/tmp/otf_xtb")
    p.add_argument("--xtb-minutes", type=float, default=30.0,
                   help="wall-time budget of the direct xTB MD")
    p.add_argument("--xtb-steps", type=int, default=None, help="cap on direct xTB MD steps")
    p.add_argument("--gap-ps", type=float, default=None, help="ps of gapcalc MD (default 20)")
    p.add_argument("--steps", type=int, default=None, help="learning-run MD steps")
    p.add_argument("--threshold", type=float, default=None,
                   help="eV/Å, calibrated max σ_F that calls xTB (default: SYSTEMS)")
    p.add_argument("--learn-minutes", type=float, default=None,
                   help="wall-time budget of the learning run (stops it, checkpointed)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        datefmt="%H:%M:%S")
    cfg = dict(SYSTEMS[a.system])
    if a.steps:
        cfg["steps"] = a.steps
    if a.threshold:
        cfg["threshold"] = a.threshold
    out = Path(a.out) / a.system
    out.mkdir(parents=True, exist_ok=True)
    stages = ["learn", "xtb_md", "gap_md", "report"] if a.stage == "all" else [a.stage]
    for st in stages:
        if st == "learn" and not (out / "learn.json").exists():
            stage_learn(a.system, cfg, out, a.learn_minutes)
        elif st == "xtb_md" and not (out / "xtb_md.json").exists():
            stage_xtb_md(a.system, cfg, out, a.xtb_minutes, a.xtb_steps)
        elif st == "gap_md" and not (out / "gap_md.json").exists():
            stage_gap_md(a.system, cfg, out, a.gap_ps or cfg["gap_ps"])
        elif st == "report":
            print(format_report(stage_report(a.system, cfg, out)), flush=True)


if __name__ == "__main__":
    main()
