"""Fit the shipped ``Si`` potential on the mlearn silicon data and write its model card.

Data: ``benchmarks/data/si_mlearn`` (Zuo et al. 2020 benchmark, DFT-PBE, BSD-3-Clause),
the published train (214 frames) / test (25 frames) split. The script fits SOAP-only
and SOAP + 2-body models with the same settings, compares them on the test split,
ships the better one as ``potentials/Si.npz`` (``training_state=False``), times MD and
writes ``potentials/Si.md``.

Run from the repository root (about 10-15 minutes on 2 cores):

    python3 potentials/train_si.py --log /tmp/train_si.log
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _training as T  # noqa: E402

log = logging.getLogger("train")

SOAP_PARAMS = dict(cutoff=5.0, n_max=8, l_max=6, atom_sigma=0.5, cutoff_width=0.5)
GPR_PARAMS = dict(zeta=4, delta=1.0, n_sparse=1000, sparse_method="cur", sigma_energy=0.002,
                  sigma_force=0.1, sigma_virial=0.1, e0="average", seed=0)
TWO_BODY_PARAMS = dict(delta_2b=0.5, n_sparse_2b=50)


def build(two_body: bool):
    from gapcalc import SOAP, SparseGPR
    kw = dict(GPR_PARAMS)
    if two_body:
        kw.update(TWO_BODY_PARAMS, two_body=True)
    return SparseGPR(SOAP(["Si"], **SOAP_PARAMS), **kw)


def score(test, ref):
    """Geometric mean of the test RMSE ratios (energy, force, stress) against ``ref``."""
    keys = ("energy_rmse", "force_rmse", "stress_rmse")
    r = [test["overall"][k] / ref["overall"][k] for k in keys]
    return float(np.exp(np.mean(np.log(r))))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--two-body", choices=["auto", "yes", "no"], default="auto",
                   help="auto: fit both, ship the better on the test split (default)")
    p.add_argument("--out", default=str(T.HERE / "Si.npz"), help="model file to write")
    p.add_argument("--card", default=None, help="model card (default: OUT with .md)")
    p.add_argument("--md-steps", type=int, default=50, help="timed MD steps (0: skip timing)")
    p.add_argument("--log", default=None, help="also log to this file")
    a = p.parse_args(argv)
    T.setup_logging(a.log)
    import ase.io
    import gapcalc

    data = T.DATA / "si_mlearn"
    train = ase.io.read(data / "si_mlearn_train.xyz", ":")
    test = ase.io.read(data / "si_mlearn_test.xyz", ":")
    log.info("Si: %d train frames (%d atoms), %d test frames", len(train),
             sum(len(x) for x in train), len(test))

    variants = {"auto": [False, True], "yes": [True], "no": [False]}[a.two_body]
    fits = {}
    for tb in variants:
        name = "SOAP + 2-body" if tb else "SOAP"
        log.info("fitting %s", name)
        t0 = time.perf_counter()
        model = build(tb).fit(train)
        fit_s = time.perf_counter() - t0
        res = {"model": model, "fit_s": fit_s, "train": T.errors(model, train),
               "test": T.errors(model, test), "name": name}
        log.info("%s: fit %.0f s\ntrain\n%s\ntest\n%s", name, fit_s,
                 gapcalc.metrics.format_table(res["train"]), gapcalc.metrics.format_table(res["test"]))
        fits[tb] = res

    if len(fits) == 2:
        ratio = score(fits[True]["test"], fits[False]["test"])
        chosen = fits[True] if ratio < 1.0 else fits[False]
        log.info("2-body / SOAP-only test score ratio %.3f: shipping %s", ratio, chosen["name"])
    else:
        ratio = None
        chosen = next(iter(fits.values()))
    model = chosen["model"]

    out = Path(a.out)
    T.save(model, out)
    size = T.file_size_mb(out)
    sha = hashlib.sha256(out.read_bytes()).hexdigest()
    log.info("wrote %s (%.2f MB)", out, size)
    chosen["check"] = T.check_record(out, data / "si_mlearn_test.xyz")

    # --- MD speed: 216-atom diamond cell (3x3x3 conventional), 300 K Langevin
    from ase.build import bulk
    speed = []
    mach = T.machine()
    if a.md_steps > 0:
        si216 = bulk("Si", "diamond", a=5.469, cubic=True) * (3, 3, 3)
        for threads in (None, 1):
            speed.append(("diamond Si, 3×3×3 cubic cells, 300 K", T.md_speed(
                out, si216, steps=a.md_steps, temperature=300.0, blas_threads=threads)))

    # --- validation with the example scripts (lattice constant, vacancy, elastic constants)
    validation = {}
    for name in ("relax", "si_elastic"):
        validation[name] = T.run_example(name, ["--model", str(out)])

    card = Path(a.card) if a.card else out.with_suffix(".md")
    write_card(card, out, model, chosen, fits, ratio, size, sha, speed, mach, a, validation)
    return 0


def write_card(card, out, model, chosen, fits, ratio, size, sha, speed, mach, a, validation):
    M = T.model_numbers(model)
    val_text = ""
    for name, (res, printed) in validation.items():
        val_text += (f"`python3 md_examples/{name}.py`:\n\n```\n{printed.strip()}\n```\n\n")
    tb = len(model.terms_) > 1
    comparison = ""
    if len(fits) == 2:
        rows = ["| model | M (SOAP + 2b) | fit time (s) | test E RMSE (meV/atom) | test F RMSE (eV/Å) "
                "| test stress RMSE (GPa) |", "|---|---:|---:|---:|---:|---:|"]
        for r in fits.values():
            o = r["test"]["overall"]
            rows.append(f"| {r['name']} | {r['model'].M_} | {r['fit_s']:.0f} | "
                        f"{o['energy_rmse'] * 1e3:.2f} | {o['force_rmse']:.3f} | "
                        f"{o['stress_rmse'] * T.EV_A3_TO_GPA:.3f} |")
        comparison = ("\n".join(rows) + f"\n\nScore = geometric mean of the three test RMSE ratios "
                      f"(2-body / SOAP-only) = **{ratio:.3f}**; the model with the lower errors "
                      f"(score < 1 means the 2-body variant) is shipped: **{chosen['name']}**.\n")
    two_body_text = ""
    if tb:
        k = model.terms_[1].kernel
        two_body_text = (f"* 2-body term: radial spectrum (ν = 1) with the SOAP radial basis "
                         f"(same cutoff, n_max, atom_sigma), squared-exponential kernel, "
                         f"δ_2b = {k.delta} eV, length θ = {k.theta:.4g} (median distance between "
                         f"candidate environments), {model.terms_[1].M} sparse points (CUR).\n")
    speed_text = (T.markdown_speed(speed) + "\n\nMachine: " + T.machine_text(mach) + ".\n"
                  if speed else "(not measured)\n")
    summary = {
        "name": "Si", "file": out.name, "file_size_MB": size, "sha256": sha,
        "fit_seconds": round(chosen["fit_s"], 1), "two_body": tb,
        "train": T.compact(chosen["train"]), "test": T.compact(chosen["test"]),
        "check": chosen["check"], "md_speed": [r for _, r in speed], "machine": mach, **M,
    }
    res = validation.get("si_elastic", (None,))[0]
    if res:
        summary["elastic_GPa"] = {k: res[k] for k in ("DFT", "model@DFT", "model") if k in res}
    res = validation.get("relax", (None,))[0]
    if res:
        summary["lattice_constant"] = {"model": res["a0"], "dft": res["dft"][0] if res["dft"] else None}
        summary["vacancy_formation_eV"] = {"unrelaxed": res["ef_unrelaxed"], "relaxed": res["ef"]}
    soap = ", ".join(f"{k} {v}" for k, v in SOAP_PARAMS.items())
    text = f"""# Si — GAP (SOAP{' + 2-body' if tb else ''}) for crystalline, defective, surface and hot silicon

`gapcalc.load("Si")` · file `potentials/{out.name}` ({size:.2f} MB, sha256 `{sha[:16]}…`) ·
written by `potentials/train_si.py` on {mach['date']}.

## Data

* **Source:** the mlearn silicon benchmark of Zuo *et al.*, "Performance and Cost Assessment of
  Machine Learning Interatomic Potentials", J. Phys. Chem. A 124, 731 (2020);
  <https://github.com/materialsvirtuallab/mlearn> (`data/Si/training.json`, `test.json`,
  commit `10c427a5`). **Licence: BSD 3-Clause** (© 2019 Materials Virtual Lab). Copy and
  conversion notes: `benchmarks/data/si_mlearn/PROVENANCE.md`.
* **Reference method:** DFT, VASP, PBE, PAW (as described by Zuo *et al.*; not stated in the
  repository itself). Energies are VASP total energies (≈ −5.425 eV/atom for diamond Si).
* **Split:** the published one, unchanged. Train: {len(chosen['train']['per_config_type'])} config types,
  {chosen['train']['overall']['n_frames']} frames ({model.training_summary_.get('n_atoms', '?')} atoms);
  test: {chosen['test']['overall']['n_frames']} frames. Config types: AIMD-NVT (64-atom cell at the
  crystal density, NVT at 300, 843, 1518, 2530 and 3374 K — the hottest runs are molten),
  Vacancy (63-atom cell, AIMD at 300 and 3374 K), Elastic (the 64-atom cell under ±2 … ±10 %
  uniaxial and shear strains, atoms not relaxed, plus the ground state), Surface (14 Materials
  Project slabs of low-index and reconstructed surfaces, 24-96 atoms).
* **Targets:** total energies, forces, and the virial of every frame.

## Model

* Descriptor: SOAP, {soap}, GTO radial basis, centre weight 1; {M['n_features']['soap']} features.
* Kernel: dot product, ζ = {GPR_PARAMS['zeta']}, δ = {GPR_PARAMS['delta']} eV;
  {model.terms_[0].M} sparse environments chosen by CUR.
{two_body_text}* Noise (gap_fit convention, energy and virial per atom × √N): σ_E = {GPR_PARAMS['sigma_energy']} eV/atom,
  σ_F = {GPR_PARAMS['sigma_force']} eV/Å, σ_V = {GPR_PARAMS['sigma_virial']} eV/atom.
* e0 = "average" (mean DFT energy per atom of the training set) = {model.e0_['Si']:.5f} eV.
* Fit time: {chosen['fit_s']:.0f} s (descriptors, CUR, streaming QR) on the machine below.
* Saved with `training_state=False` (no per-target QR triangles: the model cannot be
  extended with `gapcalc learn` without refitting; predictive variance is still available).

### SOAP only vs SOAP + 2-body

{comparison or '(only one variant fitted in this run)'}
## Errors

Energies per atom, forces per Cartesian component, stress per Voigt component.

{T.markdown_errors(chosen['test'], 'Test split (held out)')}

{T.markdown_errors(chosen['train'], 'Training split')}

For comparison, Zuo *et al.* report their gap_fit GAP errors on this same test split (their
Table 2); see the paper for the values — they were not re-measured here.

{T.check_text(chosen['check'])}

## Validation: lattice constant, vacancy, elastic constants

Output of the example scripts run on this model file at the end of the fit (they compare
with the DFT frames of the data set where the data contain the property):

{val_text}## Speed

Langevin MD, 1 fs, neighbour-list skin 0.5 Å, timed after 5 warm-up steps in a fresh process
(JIT compilation excluded, Numba cache on disk).

{speed_text}
## Intended use and limits

* Meant for: bulk diamond Si near its equilibrium density from 0 K to melting, vacancies,
  low-index surfaces, elastic deformation up to ~10 % strain, and (coarsely) the liquid at
  the crystal density — i.e. what the training set covers. Typical use:
  examples and tests in this repository, lattice constant / elastic constants / MD demos.
* Not validated for: high-pressure phases (β-Sn, simple hexagonal), amorphous Si, clusters,
  interstitials, dislocations, liquid at other densities, or anything far from the training
  frames. Check the predictive uncertainty (`calc.model.uncertainty(atoms)`, posterior
  standard deviation of energies and forces) or a DFT single point before trusting it there.
* 214 training frames is a small data set: expect errors several times larger than the test
  table outside these configuration types.
* PBE is the reference, with its known biases: the lattice constant (5.469 Å) is ~0.7 %
  larger than experiment (5.431 Å) and the elastic constants are a few % softer.

## Reproduce

```
python3 potentials/train_si.py{'' if a.two_body == 'auto' else ' --two-body ' + a.two_body} --log /tmp/train_si.log
```

Deterministic up to floating-point summation order (CUR seed 0). Needs only the files in
`benchmarks/data/si_mlearn/`.
"""
    T.write_card(card, text, summary)


if __name__ == "__main__":
    sys.exit(main())
