"""Fit the shipped ``water`` potential (liquid H2O, 64 molecules) and write its model card.

Data: ``benchmarks/data/water_dpmd`` — the 400 AIMD frames of DeePMD-kit's water example
(192 atoms, cubic 12.44 Å cell, energies and forces, no virials; LGPL-3.0 repository).

Split, as DeePMD's own example: ``source_system`` data_3 (80 frames) is the **test**
set, data_0..data_2 (320 frames) the training set. With ``--compare`` the descriptor
(SOAP cutoff, n_max, l_max, atom_sigma, ζ) and the noise levels are first chosen on a validation
split inside the training set (fit on data_0 + data_1, validate on data_2), so the test
set plays no part in any choice. The final model is then fitted on all 320 training
frames, saved as ``potentials/water.npz`` (``training_state=False``), timed in MD, and
``potentials/water.md`` is written.

Run from the repository root (``--compare``: about 1 h on 2 busy cores; without: ~15 min):

    python3 potentials/train_water.py --compare --log /tmp/train_water.log
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _training as T  # noqa: E402

log = logging.getLogger("train")

# Defaults = the choice made with --compare (see the model card and water_selection.json).
DEFAULTS = dict(cutoff=3.0, n_max=6, l_max=4, atom_sigma=0.3, zeta=2, sigma_energy=0.002,
                sigma_force=0.05)
DESCRIPTOR_KEYS = ("cutoff", "n_max", "l_max", "atom_sigma", "zeta")
CUTOFF_WIDTH = 0.5
GPR_FIXED = dict(delta=1.0, n_sparse=500, sparse_method="cur", sigma_virial=0.1,
                 e0="average", seed=0)
# candidates of the --compare stage: (cutoff Å, n_max, l_max, atom_sigma Å, zeta).
# The first two are the settings suggested in the project brief; the others came out of a
# scan on 20 frames showing that the force error is set by the radial resolution near the
# covalent O-H distance (smaller atom_sigma, smaller cutoff = narrower GTOs).
CANDIDATES = [(5.0, 8, 6, 0.5, 4), (5.0, 8, 4, 0.25, 4), (4.0, 8, 4, 0.3, 4),
              (3.0, 6, 4, 0.3, 4), (3.0, 6, 4, 0.3, 2), (3.0, 6, 4, 0.2, 4)]
NOISE = [(0.001, 0.05), (0.002, 0.1), (0.0005, 0.03), (0.002, 0.05)]
# prefer the cheaper descriptor unless the best one beats it by more than this
TOLERANCE = {"force_rmse": 0.05, "energy_rmse": 0.25}
SELECTION = T.HERE / "water_selection.json"


def build(cutoff, n_max, l_max, atom_sigma, zeta, sigma_energy, sigma_force):
    from gapcalc import SOAP, SparseGPR
    return SparseGPR(SOAP(["H", "O"], cutoff=cutoff, n_max=n_max, l_max=l_max,
                          atom_sigma=atom_sigma, cutoff_width=CUTOFF_WIDTH),
                     zeta=zeta, sigma_energy=sigma_energy, sigma_force=sigma_force, **GPR_FIXED)


def split(frames):
    by = {}
    for at in frames:
        by.setdefault(at.info.get("source_system", "?"), []).append(at)
    return by


def cost(row):
    """~ neighbour pairs × features: the prediction cost of a descriptor."""
    return row["cutoff"] ** 3 * row["n_features"]


def choose(rows):
    """Best noise per descriptor (validation force RMSE), then the cheapest descriptor
    whose errors are within TOLERANCE of the best one."""
    best = {}
    for r in rows:
        d = tuple(r[k] for k in DESCRIPTOR_KEYS)
        if d not in best or r["force_rmse"] < best[d]["force_rmse"]:
            best[d] = r
    top_f = min(r["force_rmse"] for r in best.values())
    top_e = min(r["energy_rmse"] for r in best.values())
    ok = [r for r in best.values() if r["force_rmse"] <= top_f * (1 + TOLERANCE["force_rmse"])
          and r["energy_rmse"] <= top_e * (1 + TOLERANCE["energy_rmse"])]
    if not ok:   # no candidate is within tolerance on both: take the best force RMSE
        ok = [min(best.values(), key=lambda r: r["force_rmse"])]
    r = min(ok, key=cost)
    return {k: r[k] for k in DESCRIPTOR_KEYS + ("sigma_energy", "sigma_force")}


def compare(by, n_valid, every):
    """Fit every candidate on data_0+1 (every n-th frame), validate on data_2."""
    fit_frames = (by["data_0"] + by["data_1"])[::every]
    valid = by["data_2"][:n_valid]
    rows = []
    for cand in CANDIDATES:
        desc = dict(zip(DESCRIPTOR_KEYS, cand))
        t0 = time.perf_counter()
        model = build(**desc, sigma_energy=NOISE[0][0], sigma_force=NOISE[0][1]).fit(fit_frames)
        fit_s = time.perf_counter() - t0
        for se, sf in NOISE:
            m = T.resolve_noise(model, sigma_energy=se, sigma_force=sf)
            tab = T.errors(m, valid)["overall"]
            row = {**desc, "sigma_energy": se, "sigma_force": sf,
                   "n_features": model.terms_[0].descriptor.n_features,
                   "fit_s": round(fit_s, 1), "energy_rmse": tab["energy_rmse"],
                   "force_rmse": tab["force_rmse"]}
            log.info("compare %s", row)
            rows.append(row)
        del model
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--compare", action="store_true",
                   help="choose descriptor and noise on a validation split first")
    p.add_argument("--compare-every", type=int, default=2,
                   help="--compare fits on every n-th frame of data_0+data_1 (default 2: 120)")
    p.add_argument("--n-valid", type=int, default=40,
                   help="data_2 frames used for validation in --compare (default 40)")
    for k, v in DEFAULTS.items():
        p.add_argument("--" + k.replace("_", "-"), type=type(v), default=v)
    p.add_argument("--selection", default=str(SELECTION),
                   help="JSON record of the --compare stage (written with --compare, "
                        "read otherwise for the model card)")
    p.add_argument("--no-selection", action="store_true", help="do not read --selection")
    p.add_argument("--out", default=str(T.HERE / "water.npz"))
    p.add_argument("--card", default=None, help="model card (default: OUT with .md)")
    p.add_argument("--md-steps", type=int, default=30, help="timed MD steps (0: skip timing)")
    p.add_argument("--rdf-steps", type=int, default=4000,
                   help="NVT steps (0.5 fs) of the RDF check written to the card (0: skip)")
    p.add_argument("--from-model", action="store_true",
                   help="no fit: load OUT, re-measure errors, speed and RDF, rewrite the card")
    p.add_argument("--log", default=None)
    a = p.parse_args(argv)
    T.setup_logging(a.log)
    import ase.io
    import gapcalc

    frames = ase.io.read(T.DATA / "water_dpmd" / "water_dpmd.xyz", ":")
    by = split(frames)
    train = by["data_0"] + by["data_1"] + by["data_2"]
    test = by["data_3"]
    log.info("water: %d train frames, %d test frames (data_3)", len(train), len(test))

    comparison = None
    params = {k: getattr(a, k) for k in DEFAULTS}
    if a.compare:
        comparison = compare(by, a.n_valid, a.compare_every)
        record = {"n_fit_frames": len((by["data_0"] + by["data_1"])[::a.compare_every]),
                  "compare_every": a.compare_every, "n_valid": a.n_valid,
                  "rows": comparison, "machine": T.machine()}
        Path(a.selection).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        log.info("wrote %s", a.selection)
        params = choose(comparison)
        log.info("chosen: %s", params)
    elif Path(a.selection).exists() and not a.no_selection:
        comparison = json.loads(Path(a.selection).read_text(encoding="utf-8"))["rows"]
        log.info("comparison rows from %s (chosen there: %s; fitting %s)", a.selection,
                 choose(comparison), params)

    out = Path(a.out)
    if a.from_model:
        model = gapcalc.load_model_file(out)
        d, k = model.terms_[0].descriptor, model.terms_[0].kernel
        params = dict(cutoff=d.cutoff, n_max=d.n_max, l_max=d.l_max, atom_sigma=d.atom_sigma,
                      zeta=k.zeta, sigma_energy=model.sigma_energy, sigma_force=model.sigma_force)
        fit_s = float(model.training_summary_.get("fit_seconds", float("nan")))
        log.info("loaded %s (%s), fit time from its header: %.0f s", out, params, fit_s)
    else:
        t0 = time.perf_counter()
        model = build(**params).fit(train)
        fit_s = time.perf_counter() - t0
        T.save(model, out)
        log.info("wrote %s after a %.0f s fit", out, fit_s)
    size = T.file_size_mb(out)
    sha = hashlib.sha256(out.read_bytes()).hexdigest()

    tab_train = T.errors(model, train)
    tab_test = T.errors(model, test)
    log.info("train\n%s\ntest\n%s", gapcalc.metrics.format_table(tab_train),
             gapcalc.metrics.format_table(tab_test))

    speed = []
    mach = T.machine()
    if a.md_steps > 0:
        start = test[0].copy()
        start.calc = None
        for threads in (None, 1):
            speed.append(("liquid water (data_3 frame 0), 300 K",
                          T.md_speed(out, start, steps=a.md_steps, temperature=300.0,
                                     blas_threads=threads)))
    rdf = None
    if a.rdf_steps > 0:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            traj = str(Path(tmp) / "water_nvt.traj")
            nvt, nvt_out = T.run_example("water_nvt", [
                "--model", str(out), "--steps", str(a.rdf_steps), "--out", traj,
                "--interval", "10", "--log-interval", str(max(a.rdf_steps // 10, 1))])
            skip = a.rdf_steps // 20          # first half = equilibration (frames every 10 steps)
            res, rdf_out = T.run_example("water_rdf", [traj, "--skip", str(skip)])
            rdf = {"steps": a.rdf_steps, "skip_frames": skip, "nvt": nvt_out, "rdf": rdf_out,
                   "features": None if res is None else
                   {f"{k[0]}:{k[1]}": v for k, v in res["features"].items()}}
    card = Path(a.card) if a.card else out.with_suffix(".md")
    write_card(card, out, model, params, fit_s, tab_train, tab_test, comparison, size, sha,
               speed, mach, a, frames, by, rdf)
    return 0


def _rdf_verdict(rdf):
    """One sentence comparing the MD and DFT first-peak heights."""
    f = rdf.get("features") or {}
    parts = []
    for pair, key, name in (("OO", "peak_g", "first O-O peak"),
                            ("OH", "hbond_g", "O···H hydrogen-bond peak")):
        md, dft = f.get(f"MD:{pair}"), f.get(f"DFT:{pair}")
        if md and dft and key in md and key in dft:
            parts.append(f"{name} g = {md[key]:.2f} (MD) vs {dft[key]:.2f} (DFT), "
                         f"{(md[key] / dft[key] - 1) * 100:+.0f} %")
    if not parts:
        return ""
    return ("Peak heights: " + "; ".join(parts) + ". Positions agree to the bin width "
            "(0.05 Å); a higher peak in MD means a more structured liquid than the DFT frames.")


def write_card(card, out, model, params, fit_s, tab_train, tab_test, comparison, size, sha,
               speed, mach, a, frames, by, rdf):
    M = T.model_numbers(model)
    check = T.check_record(out, T.DATA / "water_dpmd" / "water_dpmd.xyz",
                           [i for i, f in enumerate(frames)
                            if f.info.get("source_system") == "data_3"])
    n_train = len(by["data_0"]) + len(by["data_1"]) + len(by["data_2"])
    sel = {}
    if Path(a.selection).exists():
        sel = json.loads(Path(a.selection).read_text(encoding="utf-8"))
    n_fit = sel.get("n_fit_frames", len((by["data_0"] + by["data_1"])[::a.compare_every]))
    sparse = model.training_summary_.get("n_sparse", {}).get("soap", {})
    sparse_text = " + ".join(f"{v} ({k})" for k, v in sparse.items()) or str(model.M_)
    e_std = np.std([at.get_potential_energy() / len(at) for at in frames])
    f_std = np.std(np.concatenate([at.get_forces().ravel() for at in frames]))
    if comparison:
        rows = ["| cutoff (Å) | n_max | l_max | atom_sigma (Å) | ζ | features | σ_E (eV/atom) "
                "| σ_F (eV/Å) | fit (s) | valid E RMSE (meV/atom) | valid F RMSE (eV/Å) |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        chosen = choose(comparison)
        for r in comparison:
            b = "**" if all(r[k] == chosen[k] for k in chosen) else ""
            rows.append(f"| {b}{r['cutoff']}{b} | {r['n_max']} | {r['l_max']} | "
                        f"{r['atom_sigma']} | {r['zeta']} | {r['n_features']} | "
                        f"{r['sigma_energy']} | {r['sigma_force']} | {r['fit_s']:.0f} | "
                        f"{r['energy_rmse'] * 1e3:.3f} | {r['force_rmse']:.4f} |")
        comp_text = (
            "Chosen on a validation split inside the training set (fit on "
            f"{n_fit} frames — every {sel.get('compare_every', 2)}-th frame of data_0 + data_1; "
            f"validate on the first {sel.get('n_valid', a.n_valid)} frames of data_2), so the test set "
            "played no part. The noise levels were scanned by re-solving each fit from its QR "
            "triangles (no new descriptors). Rule: for each descriptor keep the noise with the "
            "lowest validation force RMSE; then take the cheapest descriptor whose force RMSE "
            f"is within {TOLERANCE['force_rmse']:.0%} and energy RMSE within "
            f"{TOLERANCE['energy_rmse']:.0%} of the best one (cost ∝ cutoff³ × features). "
            "The chosen row is in bold; fit times were measured on a machine shared with "
            "other jobs (load 6-10), so compare them only roughly. The first descriptor is the "
            "setting first planned (cutoff 5 Å, n_max 8, l_max 6, atom_sigma 0.5 Å): it cannot "
            "resolve the stiff O-H bond (≈ 47 eV/Å², so 0.1 eV/Å of force is 0.002 Å of bond "
            "length) with GTOs as wide as these, and its errors are 4-5× larger (its energy "
            "error equals the spread of the data: no skill). Narrower Gaussians and "
            "a shorter cutoff (the GTO widths scale with the cutoff) fix this. A 3 Å cutoff "
            "still contains the first O-O shell (2.8 Å) but not the second: the RDF check "
            "below shows whether the liquid structure survives.\n\n"
            + "\n".join(rows) + "\n"
            + f"\nThe table is stored in `potentials/{Path(a.selection).name}`.\n")
    else:
        comp_text = ("(This run used fixed settings; run with `--compare` to redo the "
                     "validation-split comparison of descriptors and noise levels.)\n")
    speed_text = (T.markdown_speed(speed) + "\n\nMachine: " + T.machine_text(mach) + ".\n"
                  if speed else "(not measured)\n")
    if rdf:
        ps = rdf["steps"] * 0.5e-3
        rdf_text = (
            f"Langevin NVT at 300 K, 0.5 fs, {rdf['steps']} steps ({ps:g} ps) from the first "
            f"data_3 frame, the first half discarded; g(r) of the second half against all 400 "
            f"DFT-AIMD frames (`md_examples/water_nvt.py` then `md_examples/water_rdf.py`):\n\n"
            f"```\n{rdf['rdf'].strip()}\n```\n\nMD log:\n\n```\n{rdf['nvt'].strip()}\n```\n"
            "\nA short run from one DFT frame: it checks that the model is stable and keeps "
            "the DFT structure; it is not a converged structural average. " + _rdf_verdict(rdf)
            + "\n")
    else:
        rdf_text = "(not run: `--rdf-steps 0`)\n"
    summary = {
        "name": "water", "file": out.name, "file_size_MB": size, "sha256": sha,
        "fit_seconds": round(fit_s, 1), "params": params,
        "train": T.compact(tab_train), "test": T.compact(tab_test), "check": check,
        "md_speed": [r for _, r in speed], "machine": mach, **M,
        "rdf": None if not rdf else rdf["features"],
    }
    cmd = "python3 potentials/train_water.py" + (" --compare" if comparison else "") + \
        " --log /tmp/train_water.log"
    text = f"""# water — GAP (SOAP) for bulk liquid water at ambient density

`gapcalc.load("water")` · file `potentials/{out.name}` ({size:.2f} MB, sha256 `{sha[:16]}…`) ·
written by `potentials/train_water.py` on {mach['date']}.

## Data

* **Source:** the example training data of DeePMD-kit,
  <https://github.com/deepmodeling/deepmd-kit> `examples/water/data/data_{{0,1,2,3}}`
  (400 frames of NVT ab-initio MD of 64 H2O, 192 atoms, cubic cell a = 12.4447 Å,
  0.993 g/cm³). **Licence: LGPL-3.0** (the repository's licence; no separate data licence
  is stated). Copy and conversion notes: `benchmarks/data/water_dpmd/PROVENANCE.md`.
* **Reference method: not documented** in the source repository (DeePMD's paper describes its
  water data as PBE0+TS; not verified for these 400 frames). No dispersion correction
  according to DeePMD's `examples/water/d3/README.md`. The data were stored in float32
  (energies carry ~2 meV per frame of rounding, ≈ 0.01 meV/atom).
* **Targets:** total energies and forces; **no virials/stress** in the data, so the model's
  stress is an untrained prediction (see limits).
* **Split:** DeePMD's own — `source_system` data_3 (80 frames) is the **test** set; data_0,
  data_1 (two sets), data_2 ({n_train} frames, {model.training_summary_.get('n_atoms', '?')} atoms) train.
* Scale of the targets (all 400 frames): energy std {e_std * 1e3:.2f} meV/atom, force std
  {f_std:.3f} eV/Å per component. The source forces do not sum to zero per frame (net force
  up to 0.35 eV/Å per frame, origin unknown), which sets a floor of ~0.002 eV/Å per atom
  on the force error.

## Model

* Descriptor: SOAP over H and O, cutoff {params['cutoff']} Å, n_max {params['n_max']},
  l_max {params['l_max']}, atom_sigma {params['atom_sigma']} Å, cosine cutoff width
  {CUTOFF_WIDTH} Å, GTO radial basis; {M['n_features']['soap']} features.
* Kernel: dot product, ζ = {params['zeta']}, δ = {GPR_FIXED['delta']} eV;
  {sparse_text} sparse environments (per species, CUR).
* Noise (gap_fit convention, energy per atom × √N): σ_E = {params['sigma_energy']} eV/atom,
  σ_F = {params['sigma_force']} eV/Å.
* e0 = "average" = {model.e0_['O']:.4f} eV for both H and O (mean energy per atom). With a
  fixed H2O composition only the sum matters; the model knows nothing about isolated
  molecules, ions or other compositions.
* Fit time on all {n_train} training frames: {fit_s:.0f} s.
* Saved with `training_state=False`.

### Choice of descriptor and noise

{comp_text}
## Errors

Energies per atom, forces per Cartesian component.

{T.markdown_errors(tab_test, 'Test set: data_3 (held out, 80 frames)')}

{T.markdown_errors(tab_train, f'Training set: data_0..data_2 ({n_train} frames)')}

{T.check_text(check)}

## Validation: liquid structure in MD

{rdf_text}
## Speed

Langevin MD, 1 fs, neighbour-list skin 0.5 Å, 5 warm-up steps then timed in a fresh
process (JIT compilation excluded), once with the BLAS library's default thread count and
once with `OPENBLAS_NUM_THREADS=1`. On a busy machine the default (one BLAS thread per core,
competing with Numba's threads and other jobs) can be much slower: set
`OPENBLAS_NUM_THREADS=1` for MD.

{speed_text}
## Intended use and limits

* Meant for: NVT MD of liquid water at ~300 K and ~1 g/cm³ with 64-molecule (or larger)
  periodic boxes, structure (RDFs, see `md_examples/water_rdf.py`), and as a two-species
  example and benchmark of the package.
* **No stress training data**: NPT simulations, densities, compressibility are not
  validated. Neither are ice, vapour, interfaces, clusters, high temperature, proton
  transfer chemistry, or other H/O compositions.
* **Liquid structure is somewhat too strong in classical MD.** Over 6 ps of 300 K Langevin
  MD (`python3 md_examples/water_nvt.py --steps 12000`, then `water_rdf.py --skip 200`) the
  first O-O peak reaches g ≈ 3.1 (last ps ≈ 3.4) against 2.83 in the DFT frames, the O-O
  coordination to the first minimum 4.5-4.7 against 4.3, and the potential energy settles
  5-10 meV/atom below the DFT frames' mean. The model's own posterior variance along
  that trajectory is no larger than on the test frames, so it is not extrapolating by its
  own measure. Likely causes, not resolved here: the short cutoff ({params['cutoff']} Å; the
  second shell is invisible), and/or reference frames that are not classical 300 K samples
  (temperature and ensemble are undocumented; the per-frame net forces do not vanish, as
  in path-integral bead data, whose structure is softened by nuclear quantum effects).
  Use the model for demonstrations and benchmarks, not for quantitative water structure.
* Short-ranged (cutoff {params['cutoff']} Å): no long-range electrostatics or dispersion
  beyond the cutoff; nuclear quantum effects are absent (classical nuclei).
* {n_train} training frames from a few short AIMD runs: the model interpolates within these;
  check `calc.model.uncertainty(atoms)` when moving away from them.

## Reproduce

```
{cmd}
```

Deterministic up to floating-point summation order (CUR seed 0). Needs only
`benchmarks/data/water_dpmd/water_dpmd.xyz`.
"""
    T.write_card(card, text, summary)


if __name__ == "__main__":
    sys.exit(main())
