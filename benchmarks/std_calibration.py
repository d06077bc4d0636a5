"""Latent vs predictive force stds of the shipped potentials on their held-out test sets.

How to run (from the repository root)::

    python benchmarks/std_calibration.py                 # Si, water, Cu
    python benchmarks/std_calibration.py Si --every 1

For every force component of the test frames, z = (F_pred − F_ref) / σ with σ either the
*latent* std (``forces_std``: noise-free spread of the fitted function; what the on-the-fly
threshold uses) or the *predictive* std (``forces_std_predictive`` = sqrt(latent² + σ_F²),
σ_F the model's force noise). A calibrated σ has std(z) ≈ 1 and 68 % of |z| < 1. Also:
RMSE / RMS latent std (the factor by which the latent std underestimates errors) and the
Spearman rank correlation of the per-atom RMS std with the per-atom RMS error.

Test sets: Si — the mlearn test split (``benchmarks/data/si_mlearn``, 25 DFT frames);
water — DeePMD ``data_3`` (the card's test set; every ``--every``-th frame, default 4);
Cu — the card's fresh EMT frames (``potentials/train_cu.py``, seeds 100+).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def test_frames(name, every):
    from ase.io import read
    if name == "Si":
        return read(str(HERE / "data" / "si_mlearn" / "si_mlearn_test.xyz"), ":")
    sys.path.insert(0, str(ROOT / "potentials"))
    if name == "water":
        import train_water
        frames = read(str(HERE / "data" / "water_dpmd" / "water_dpmd.xyz"), ":")
        return train_water.split(frames)["data_3"][::every]
    import train_cu
    return train_cu.make_frames(10, seed0=100)[::max(1, every // 2)]


def ref_forces(at):
    for k in ("REF_forces", "forces"):
        if k in at.arrays:
            return np.asarray(at.arrays[k])
    return np.asarray(at.get_forces())


def measure(name, every):
    from scipy.stats import spearmanr
    import gapcalc
    calc = gapcalc.load(name)
    model = calc.model
    err, lat, pred = [], [], []
    for at in test_frames(name, every):
        res = model.evaluate(at, forces=True, stress=False, uncertainty="forces")
        err.append(res["forces"] - ref_forces(at))
        lat.append(res["forces_std"])
        pred.append(res["forces_std_predictive"])
    err, lat, pred = (np.concatenate(x) for x in (err, lat, pred))
    keep = lat.ravel() > 1e-6
    z = err.ravel()[keep] / lat.ravel()[keep]
    zp = err.ravel() / pred.ravel()
    rho = spearmanr(np.sqrt((lat ** 2).mean(1)), np.sqrt((err ** 2).mean(1))).correlation
    return {"model": name, "atoms": len(err), "sigma_F": float(model.sigma_force),
            "rmse": float(np.sqrt((err ** 2).mean())),
            "rms_latent": float(np.sqrt((lat ** 2).mean())),
            "std_z_latent": float(z.std()), "frac_latent": float((np.abs(z) < 1).mean()),
            "std_z_pred": float(zp.std()), "frac_pred": float((np.abs(zp) < 1).mean()),
            "spearman": float(rho)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", default=["Si", "water", "Cu"])
    p.add_argument("--every", type=int, default=4, help="water: every n-th test frame")
    a = p.parse_args(argv)
    lines = ["| model | test atoms | σ_F (eV/Å) | force RMSE | RMS latent std | RMSE / latent "
             "| std(z) latent | within 1σ latent | std(z) predictive | within 1σ predictive "
             "| Spearman per atom |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in a.models:
        r = measure(name, a.every)
        lines.append(f"| {name} | {r['atoms']} | {r['sigma_F']:g} | {r['rmse']:.4f} "
                     f"| {r['rms_latent']:.4f} | {r['rmse'] / r['rms_latent']:.1f} "
                     f"| {r['std_z_latent']:.2f} | {100 * r['frac_latent']:.0f} % "
                     f"| {r['std_z_pred']:.2f} | {100 * r['frac_pred']:.0f} % "
                     f"| {r['spearman']:.2f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
