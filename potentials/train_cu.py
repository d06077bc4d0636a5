"""Fit the shipped ``Cu`` demo potential on EMT copper and write its model card.

The reference is ASE's EMT calculator (no DFT, no download): strained fcc Cu
snapshots from Langevin MD at 300, 800 and 1400 K made by
:func:`gapcalc.datasets.emt_frames` (3×3×3 cubic cells, 108 atoms). The test set is
fresh frames from independent runs (other seeds) at the same temperatures. The model
is saved as ``potentials/Cu.npz`` (``training_state=False``), timed in MD, and
``potentials/Cu.md`` is written.

Run from the repository root (a few minutes on 2 cores):

    python3 potentials/train_cu.py --log /tmp/train_cu.log
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _training as T  # noqa: E402

log = logging.getLogger("train")

TEMPERATURES = (300, 800, 1400)
SOAP_PARAMS = dict(cutoff=5.0, n_max=8, l_max=6, atom_sigma=0.5, cutoff_width=0.5)
GPR_PARAMS = dict(zeta=4, delta=1.0, n_sparse=500, sparse_method="cur", sigma_energy=0.001,
                  sigma_force=0.02, sigma_virial=0.02, e0="average", seed=0)
FRAMES = dict(size=(3, 3, 3), interval=10, strain=0.02, timestep=2.0)


def make_frames(n_per_t, seed0):
    from gapcalc.datasets import emt_frames
    frames = []
    for k, temp in enumerate(TEMPERATURES):
        frames += emt_frames("Cu", n_frames=n_per_t, temperature=float(temp), seed=seed0 + k,
                             config_type=f"fcc_{temp}K", **FRAMES)
    return frames


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n-train", type=int, default=40, help="training frames per temperature")
    p.add_argument("--n-test", type=int, default=10, help="test frames per temperature")
    p.add_argument("--out", default=str(T.HERE / "Cu.npz"))
    p.add_argument("--card", default=None)
    p.add_argument("--md-steps", type=int, default=50)
    p.add_argument("--log", default=None)
    a = p.parse_args(argv)
    T.setup_logging(a.log)
    import gapcalc
    from gapcalc import SOAP, SparseGPR

    t0 = time.perf_counter()
    train = make_frames(a.n_train, seed0=0)
    test = make_frames(a.n_test, seed0=100)
    gen_s = time.perf_counter() - t0
    log.info("EMT frames: %d train, %d test (%.0f s)", len(train), len(test), gen_s)

    t0 = time.perf_counter()
    model = SparseGPR(SOAP(["Cu"], **SOAP_PARAMS), **GPR_PARAMS).fit(train)
    fit_s = time.perf_counter() - t0
    out = Path(a.out)
    T.save(model, out)
    size = T.file_size_mb(out)
    sha = hashlib.sha256(out.read_bytes()).hexdigest()
    tab_train = T.errors(model, train)
    tab_test = T.errors(model, test)
    log.info("fit %.0f s\ntrain\n%s\ntest\n%s", fit_s, gapcalc.metrics.format_table(tab_train),
             gapcalc.metrics.format_table(tab_test))

    # a committed subset of the test frames (2 per temperature) for tests/test_potentials.py
    import ase.io
    check_path = T.DATA / "cu_emt" / "cu_emt_test_subset.xyz"
    check_path.parent.mkdir(exist_ok=True)
    subset = [f for k in range(len(TEMPERATURES)) for f in test[k * a.n_test:k * a.n_test + 2]]
    ase.io.write(check_path, subset, format="extxyz")
    check = T.check_record(out, check_path)

    from ase.build import bulk
    speed = []
    mach = T.machine()
    if a.md_steps > 0:
        cu = bulk("Cu", "fcc", a=3.6, cubic=True) * (3, 3, 3)
        for threads in (None, 1):
            speed.append(("fcc Cu, 3×3×3 cubic cells, 300 K",
                          T.md_speed(out, cu, steps=a.md_steps, temperature=300.0,
                                     blas_threads=threads)))

    M = T.model_numbers(model)
    summary = {"name": "Cu", "file": out.name, "file_size_MB": size, "sha256": sha,
               "fit_seconds": round(fit_s, 1), "train": T.compact(tab_train),
               "test": T.compact(tab_test), "check": check, "md_speed": [r for _, r in speed],
               "machine": mach, **M}
    soap = ", ".join(f"{k} {v}" for k, v in SOAP_PARAMS.items())
    speed_text = (T.markdown_speed(speed) + "\n\nMachine: " + T.machine_text(mach) + ".\n"
                  if speed else "(not measured)\n")
    cmd = "python3 potentials/train_cu.py"
    if (a.n_train, a.n_test) != (40, 10):
        cmd += f" --n-train {a.n_train} --n-test {a.n_test}"
    text = f"""# Cu — demonstration GAP (SOAP) fitted to ASE's EMT copper

`gapcalc.load("Cu")` · file `potentials/{out.name}` ({size:.2f} MB, sha256 `{sha[:16]}…`) ·
written by `potentials/train_cu.py` on {mach['date']}.

**This is a demo/test potential: its reference is EMT, an empirical effective-medium
model built into ASE, not DFT. It reproduces EMT, not real copper.**

## Data

* **Source:** generated on the spot by `gapcalc.datasets.emt_frames` with ASE's
  `EMT()` calculator (ASE is LGPL-2.1; the generated numbers carry no separate licence).
  No download.
* Frames: snapshots of Langevin MD (2 fs, friction 0.02/fs, every {FRAMES['interval']} steps)
  of a {FRAMES['size'][0]}×{FRAMES['size'][1]}×{FRAMES['size'][2]} cubic fcc cell (108 atoms),
  each with a random symmetric cell strain (std {FRAMES['strain']}), at
  {', '.join(f'{t} K' for t in TEMPERATURES)} (config_type `fcc_<T>K`).
* **Train:** {a.n_train} frames per temperature (seeds 0, 1, 2); **test:** {a.n_test} fresh
  frames per temperature from independent runs (seeds 100, 101, 102).
* Targets: energy, forces and stress (virial) of every frame. Generation took {gen_s:.0f} s.

## Model

* Descriptor: SOAP, {soap}, GTO radial basis; {M['n_features']['soap']} features.
* Kernel: dot product, ζ = {GPR_PARAMS['zeta']}, δ = {GPR_PARAMS['delta']} eV;
  {model.terms_[0].M} sparse environments by CUR.
* Noise: σ_E = {GPR_PARAMS['sigma_energy']} eV/atom, σ_F = {GPR_PARAMS['sigma_force']} eV/Å,
  σ_V = {GPR_PARAMS['sigma_virial']} eV/atom (EMT is noise-free; these act as regularisation).
* e0 = "average" = {model.e0_['Cu']:.5f} eV (EMT's energy zero is the fcc crystal, so this is
  close to 0).
* Fit time: {fit_s:.0f} s. Saved with `training_state=False`.

## Errors (against EMT)

Energies per atom, forces per Cartesian component, stress per Voigt component.

{T.markdown_errors(tab_test, 'Test set (fresh frames, independent MD runs)')}

{T.markdown_errors(tab_train, 'Training set')}

{T.check_text(check)} (`{T.rel(check_path)}` holds the first 2 test frames of each
temperature, written by this script.)

## Speed

Langevin MD, 1 fs, neighbour-list skin 0.5 Å, 5 warm-up steps then timed in a fresh
process (JIT compilation excluded).

{speed_text}
## Intended use and limits

* Meant for: examples, tests, tutorials and benchmarks of gapcalc that must run anywhere
  without data files — and as a quick check that a fit reproduces its reference (EMT can
  be called for any new structure, so learning curves and active learning can be
  demonstrated end to end).
* Covers strained (±~4 %) bulk fcc Cu from 300 K to 1400 K in 108-atom cells. Not
  trained on surfaces, vacancies, liquids (1400 K runs are short and stay crystalline in
  these cells), other lattices or clusters.
* Never use it as a model of real copper: EMT's own errors against experiment or DFT
  are much larger than this fit's errors against EMT.

## Reproduce

```
{cmd} --log /tmp/train_cu.log
```

Deterministic (fixed seeds for the EMT MD, the strains and CUR) up to floating-point
summation order.
"""
    T.write_card(out.with_suffix(".md") if a.card is None else Path(a.card), text, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
