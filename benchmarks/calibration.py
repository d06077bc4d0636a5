"""Held-out calibration of gapcalc's force uncertainties, and their cost.

How to run (from the repository root)::

    python benchmarks/calibration.py                 # Cu (EMT) + Si split + timing
    python benchmarks/calibration.py --quick         # smaller Cu model/test sets, no Si
    python benchmarks/calibration.py --plot calib.png --json out.json
    python benchmarks/calibration.py --si-model /tmp/gap_compare/si_soap2b_gapcalc/model.npz

What is measured
    ``model.uncertainty(atoms)`` gives the posterior standard deviation of every force
    component (latent, noise-free).  On held-out frames, for every force component
    z = (F_pred - F_ref) / sigma; a calibrated model has std(z) ~ 1 (target 0.7-1.5).
    Reported for sigma = latent std, and for sigma_tot = sqrt(latent^2 + sigma_F^2) with the
    model's force noise sigma_F (the predictive std of a *new observation*).  Also the
    fraction of |z| < 1 (0.68 for a Gaussian) and the Spearman rank correlation between
    the per-atom predicted force std (RMS over x, y, z) and the per-atom actual force error
    (RMS over x, y, z); target >= 0.5.

    Systems:
      * Cu: EMT, 3x3x3 fcc (108 atoms); trained on 20 + 20 frames at 300 K and 1400 K
        (Langevin, random +-2 % strains), M = 400 CUR, sigmas 0.001 eV/atom, 0.03 eV/A,
        0.02 eV/atom; tested on held-out trajectories (other seeds) at 300 K and 1400 K.
      * Si: the mlearn split; the gapcalc model of ``gap_compare.py`` (SOAP+2b, M=1000,
        sigmas 0.002/0.1/0.1) if ``--si-model`` exists, else a SOAP-only fit with M=500.

    Committee (Cu): the resampling committee of seed Eq. 21 (``gapcalc.committee``, 8
    members each fitted on half of the training frames, same sparse points), its spread
    scaled by a factor α fitted on 10 separate validation frames; same statistics.

    Cost (single thread, own subprocess): CPU time per call of energy+forces+stress
    (``GAPCalculator``) without uncertainties, with all of them (``uncertainty=True``) and
    with the energy stds only (``uncertainty="energy"``: local and total energy, from the
    same descriptor pass), on a rattled 108-atom Cu cell and the 192-atom water box
    (``workloads``), with the M=1000 models of ``speed_models.py``.  Targets (issue 14):
    all stds <= 10x, energy stds <= 1.5x an energy+forces(+stress) call.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import THREAD_VARS, alternating_calls, run_json_worker, thread_env  # noqa: E402
SOAP = dict(cutoff=5.0, cutoff_width=0.5, n_max=8, l_max=6, atom_sigma=0.5)
DEFAULT_SI_MODEL = "/tmp/gap_compare/si_soap2b_gapcalc/model.npz"


def log(msg):
    print(f"[calibration {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ref_forces(at):
    if "REF_forces" in at.arrays:
        return np.asarray(at.arrays["REF_forces"])
    if "forces" in at.arrays:
        return np.asarray(at.arrays["forces"])
    return np.asarray(at.calc.results["forces"])


def collect(model, frames):
    """Per-component errors and latent stds; per-atom RMS error and RMS std."""
    err, std = [], []
    for at in frames:
        f_ref = ref_forces(at)
        res = model.evaluate(at, forces=True, stress=False)
        unc = model.uncertainty(at)
        err.append(res["forces"] - f_ref)
        std.append(unc["forces_std"])
    return np.concatenate(err), np.concatenate(std)


def collect_committee(com, frames):
    """As :func:`collect` with the committee's mean and (calibrated) spread."""
    err, std = [], []
    for at in frames:
        res = com.predict(at)
        err.append(res["forces"] - ref_forces(at))
        std.append(res["forces_std"])
    return np.concatenate(err), np.concatenate(std)


def stats(err, std, sigma_noise):
    from scipy.stats import spearmanr
    # components whose latent std is ~0 are fixed by symmetry (e.g. perfect-crystal frames:
    # every GP sample gives zero force there); z is undefined for them: leave them out
    keep = std.ravel() > 1e-6
    z = err.ravel()[keep] / std.ravel()[keep]
    z_tot = (err / np.sqrt(std ** 2 + sigma_noise ** 2)).ravel()[keep]
    atom_err = np.sqrt((err ** 2).mean(axis=1))
    atom_std = np.sqrt((std ** 2).mean(axis=1))
    rho = spearmanr(atom_std, atom_err).correlation
    return {"n_atoms": int(len(err)), "force_rmse": float(np.sqrt((err ** 2).mean())),
            "mean_latent_std": float(np.sqrt((std ** 2).mean())),
            "std_z": float(z.std()), "frac_abs_z_lt_1": float((np.abs(z) < 1).mean()),
            "std_z_tot": float(z_tot.std()),
            "frac_abs_z_tot_lt_1": float((np.abs(z_tot) < 1).mean()),
            "spearman_atom": float(rho), "sigma_noise": float(sigma_noise),
            "n_components_std0": int((~keep).sum()),
            "max_abs_err_std0": float(np.abs(err.ravel()[~keep]).max()) if (~keep).any()
            else 0.0}


def cu_sets(quick: bool):
    from gapcalc.datasets import emt_frames
    n_train, n_test = (8, 5) if quick else (20, 15)
    train = (emt_frames("Cu", n_frames=n_train, temperature=300.0, seed=21, config_type="T300")
             + emt_frames("Cu", n_frames=n_train, temperature=1400.0, seed=22,
                          config_type="T1400"))
    tests = {"Cu 300 K": emt_frames("Cu", n_frames=n_test, temperature=300.0, seed=31),
             "Cu 1400 K": emt_frames("Cu", n_frames=n_test, temperature=1400.0, seed=32)}
    return train, tests


def calibrate(opts) -> tuple[dict, dict]:
    from ase.io import read
    from gapcalc import SOAP as GSOAP, SparseGPR, load_model_file
    out, raw = {}, {}
    train, tests = cu_sets(opts.quick)
    model = SparseGPR(descriptor=GSOAP(species=[29], **SOAP), zeta=4, delta=1.0,
                      n_sparse=200 if opts.quick else 400, sigma_energy=0.001,
                      sigma_force=opts.sigma_force, sigma_virial=0.02, e0="average")
    c0 = time.process_time()
    model.fit(train, progress_every=600)
    log(f"Cu model fitted: M={model.M_}, {time.process_time() - c0:.0f} CPU s")
    for name, frames in tests.items():
        err, std = collect(model, frames)
        out[name] = stats(err, std, model.sigma_force)
        out[name]["M"] = int(model.M_)
        raw[name] = (err, std)
    # pooled: the use case of an uncertainty is telling easy from hard environments across
    # conditions; within one temperature the per-atom std varies little, which caps Spearman
    err = np.concatenate([raw[k][0] for k in tests])
    std = np.concatenate([raw[k][1] for k in tests])
    out["Cu 300+1400 K pooled"] = stats(err, std, model.sigma_force)
    out["Cu 300+1400 K pooled"]["M"] = int(model.M_)
    if opts.committee:
        # resampling committee (seed Eq. 21) on the same data and sparse points: 8 members
        # on half of the frames each, spread scaled by α fitted on separate validation frames
        from gapcalc.committee import resampling_committee
        from gapcalc.datasets import emt_frames
        c0 = time.process_time()
        com = resampling_committee(model, train, n_members=8, fraction=0.5, seed=0)
        val = (emt_frames("Cu", n_frames=5, temperature=300.0, seed=41)
               + emt_frames("Cu", n_frames=5, temperature=1400.0, seed=42))
        a = com.calibrate(val)
        log(f"Cu committee: 8 members, α = {a:.2f}, {time.process_time() - c0:.0f} CPU s")
        errs, stds = [], []
        for name, frames in tests.items():
            e, sd = collect_committee(com, frames)
            key = f"{name} (committee, α={a:.2f})"
            out[key] = stats(e, sd, model.sigma_force)
            out[key]["M"] = int(model.M_)
            raw[key] = (e, sd)
            errs.append(e)
            stds.append(sd)
        key = f"Cu 300+1400 K pooled (committee, α={a:.2f})"
        out[key] = stats(np.concatenate(errs), np.concatenate(stds), model.sigma_force)
        out[key]["M"] = int(model.M_)
    if not opts.quick:
        si_dir = HERE / "data" / "si_mlearn"
        test = read(str(si_dir / "si_mlearn_test.xyz"), ":")
        if opts.si_model and Path(opts.si_model).exists():
            model = load_model_file(opts.si_model)
            src = opts.si_model
        else:
            train = read(str(si_dir / "si_mlearn_train.xyz"), ":")
            model = SparseGPR(descriptor=GSOAP(species=[14], **SOAP), zeta=4, delta=1.0,
                              n_sparse=500, sigma_energy=0.002, sigma_force=0.1,
                              sigma_virial=0.1, e0="average")
            model.fit(train, progress_every=600)
            src = "fitted here (SOAP only, M=500)"
        err, std = collect(model, test)
        out["Si test split"] = stats(err, std, model.sigma_force)
        out["Si test split"].update(M=int(model.M_), model=src)
        raw["Si test split"] = (err, std)
    return out, raw


def worker_timing(system: str, min_time: float) -> dict:
    import workloads
    import speed_models
    from gapcalc import GAPCalculator, load_model_file
    atoms = workloads.cu_fcc_108() if system == "cu" else workloads.water_box(4)
    model = load_model_file(speed_models.gapcalc_model_path(system, 1000))
    res = {"system": system, "n_atoms": len(atoms), "M": int(model.M_)}
    props = ["energy", "forces", "stress"]
    groups = {"ef": (False, []), "ef_unc": (True, list(GAPCalculator.UNCERTAINTY)),
              "ef_energy_std": ("energy", list(GAPCalculator.ENERGY_STD))}
    for label, (unc, extra) in groups.items():
        calc = GAPCalculator(model, uncertainty=unc, skin=0.0)
        call = alternating_calls(calc, atoms, props + extra)
        call()  # warm-up / JIT
        n, c0 = 0, time.process_time()
        while time.process_time() - c0 < min_time or n < 3:
            call()
            n += 1
        res[label + "_cpu_ms"] = 1e3 * (time.process_time() - c0) / n
        res[label + "_calls"] = n
    res["ratio"] = res["ef_unc_cpu_ms"] / res["ef_cpu_ms"]
    res["ratio_energy_std"] = res["ef_energy_std_cpu_ms"] / res["ef_cpu_ms"]
    return res


def spawn_timing(system, min_time, timeout=7200):
    log(f"timing {system}")
    return run_json_worker(__file__, ["--worker-timing", system, "--min-time", min_time],
                           thread_env(1), timeout, log)


def plot(raw, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed: no plot")
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, (err, std) in raw.items():
        s, e = std.ravel(), np.abs(err.ravel())
        order = np.argsort(s)
        bins = np.array_split(order, 15)
        axes[0].plot([s[b].mean() for b in bins], [np.sqrt((err.ravel()[b] ** 2).mean())
                                                    for b in bins], "o-", label=name)
        keep = std.ravel() > 1e-6
        z = err.ravel()[keep] / std.ravel()[keep]
        axes[1].hist(np.clip(z, -6, 6), bins=60, density=True, histtype="step", label=name)
    lim = axes[0].get_xlim()
    axes[0].plot(lim, lim, "k--", lw=0.8)
    axes[0].set_xlabel("predicted force std (binned) / eV/Å")
    axes[0].set_ylabel("RMS force error in bin / eV/Å")
    x = np.linspace(-6, 6, 200)
    axes[1].plot(x, np.exp(-x ** 2 / 2) / np.sqrt(2 * np.pi), "k--", lw=0.8, label="N(0,1)")
    axes[1].set_xlabel("z = error / latent std")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    log(f"plot written to {path}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json")
    p.add_argument("--plot", nargs="?", const="calibration.png", default=None,
                   help="write a calibration plot (default file calibration.png)")
    p.add_argument("--si-model", default=DEFAULT_SI_MODEL)
    p.add_argument("--sigma-force", type=float, default=0.03, help="Cu model force noise")
    p.add_argument("--min-time", type=float, default=None, help="CPU s per timing point")
    p.add_argument("--timing-only", action="store_true", help="skip the calibration part")
    p.add_argument("--no-timing", action="store_true", help="skip the cost measurement")
    p.add_argument("--no-committee", dest="committee", action="store_false",
                   help="skip the resampling-committee comparison (Cu)")
    p.add_argument("--worker-timing", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    min_time = opts.min_time or (2.0 if opts.quick else 10.0)
    if opts.worker_timing:
        print(json.dumps(worker_timing(opts.worker_timing, min_time)))
        return
    for v in THREAD_VARS:  # calibration part runs in this process: single thread too
        if os.environ.get(v) != "1":
            log("note: set the thread variables to 1 before starting for single-thread runs")
            break
    cal, raw = ({}, {}) if opts.timing_only else calibrate(opts)
    lines = ["### Force-uncertainty calibration on held-out frames (gapcalc)", "",
             "| test set | M | atoms | force RMSE eV/Å | RMS latent std | std(z) latent "
             "| frac abs(z)<1 | std(z) incl. σ_F | frac abs(z)<1 incl. σ_F | Spearman per-atom |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in cal.items():
        lines.append(f"| {name} | {r['M']} | {r['n_atoms']} | {r['force_rmse']:.4f} "
                     f"| {r['mean_latent_std']:.4f} | {r['std_z']:.2f} "
                     f"| {r['frac_abs_z_lt_1']:.2f} | {r['std_z_tot']:.2f} "
                     f"| {r['frac_abs_z_tot_lt_1']:.2f} | {r['spearman_atom']:.2f} |")
    lines += ["", "Targets: std(z) 0.7-1.5 (Gaussian: frac 0.68); Spearman >= 0.5."]
    for name, r in cal.items():
        if r["n_components_std0"]:
            lines.append(f"{name}: {r['n_components_std0']} force components with latent std "
                         f"< 1e-6 eV/Å left out of z (max |error| there "
                         f"{r['max_abs_err_std0']:.2e} eV/Å).")
    lines.append("")
    timing = [] if opts.no_timing else [
        t for t in (spawn_timing("cu", min_time), spawn_timing("water", min_time)) if t]
    lines += ["### Cost of uncertainties (single thread, CPU ms per call)", "",
              "| system | atoms | M | E+F+S ms | E+F+S+all stds ms | ratio (target ≤ 10) "
              "| E+F+S+energy stds ms | ratio (target ≤ 1.5) |",
              "|---|---|---|---|---|---|---|---|"]
    for t in timing:
        lines.append(f"| {t['system']} | {t['n_atoms']} | {t['M']} | {t['ef_cpu_ms']:.1f} "
                     f"| {t['ef_unc_cpu_ms']:.1f} | {t['ratio']:.2f} "
                     f"| {t['ef_energy_std_cpu_ms']:.1f} | {t['ratio_energy_std']:.2f} |")
    print("\n".join(lines), flush=True)
    if opts.plot:
        plot(raw, opts.plot)
    if opts.json:
        Path(opts.json).write_text(json.dumps({"calibration": cal, "timing": timing}, indent=1))


if __name__ == "__main__":
    main()
