"""Small fitted models (gapcalc and gap_fit) for the speed / uncertainty-cost benchmarks.

Only evaluation speed matters for these models, not their accuracy: each is fitted on a
handful of frames with the benchmark hyper-parameters (SOAP cutoff 5.0 / transition 0.5,
n_max 8, l_max 6, atom_sigma 0.5, zeta 4, delta 1) and M sparse points in total.

* ``cu``:    EMT Cu, 3x3x3 fcc, 12 Langevin frames at 800 K (1296 environments).
* ``si``:    the first 24 frames of the mlearn Si training split (DFT labels).
* ``water``: 12 DFT liquid-water frames (192 atoms) from ``benchmarks/data/water_dpmd``
             (every 16th frame; no stresses); M/2 sparse points for O and M/2 for H.
             (Until 2026-11-24 these were Lennard-Jones-labelled boxes, which made a
             model too unstable for the VelocityVerlet rows.)

Models are cached under ``/tmp/gapcalc_speed_models`` (delete to refit).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import workloads  # noqa: E402

CACHE = Path(os.environ.get("GAPCALC_SPEED_MODELS", "/tmp/gapcalc_speed_models"))
SOAP = dict(cutoff=5.0, cutoff_width=0.5, n_max=8, l_max=6, atom_sigma=0.5)
SIGMAS = (0.002, 0.1, 0.1)


def training_frames(system: str):
    """Labelled frames: energy in info, forces in arrays, virial in info (gap_fit style)."""
    if system == "cu":
        from gapcalc.datasets import emt_frames
        frames = emt_frames("Cu", n_frames=12, size=(3, 3, 3), temperature=800.0, seed=3)
    elif system == "si":
        from ase.io import read
        frames = read(str(HERE / "data" / "si_mlearn" / "si_mlearn_train.xyz"), ":24")
    elif system == "water":
        # 12 DFT liquid-water frames (benchmarks/data/water_dpmd; no stresses), so that the
        # timing models are also stable enough for the VelocityVerlet rows
        from ase.io import read
        frames = read(str(HERE / "data" / "water_dpmd" / "water_dpmd.xyz"), "::16")[:12]
    else:
        raise ValueError(system)
    out = []
    for at in frames:
        a = at.copy()
        a.calc = None
        a.info["energy"] = float(at.get_potential_energy())
        a.arrays["forces"] = np.array(at.get_forces())
        try:
            a.info["virial"] = -at.get_stress(voigt=False) * at.get_volume()
        except Exception:   # no stress in the data (water)
            pass
        for k in ("REF_energy", "stress"):
            a.info.pop(k, None)
        a.arrays.pop("REF_forces", None)
        out.append(a)
    return out


def species_of(frames):
    return sorted({int(z) for a in frames for z in a.numbers})


def _train_file(system: str) -> Path:
    from ase.io import write
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{system}_train.xyz"
    if not path.exists():
        frames = training_frames(system)
        tmp = CACHE / f"tmp_{system}_{os.getpid()}.xyz"
        write(str(tmp), frames, format="extxyz")
        os.replace(tmp, path)
    return path


def gapcalc_model_path(system: str, m_total: int = 1000) -> Path:
    """Fit (once) and return the path of a gapcalc model with m_total sparse points."""
    path = CACHE / f"{system}_gapcalc_M{m_total}.npz"
    if path.exists():
        return path
    from ase.io import read
    from gapcalc import SOAP as GSOAP, SparseGPR
    frames = read(str(_train_file(system)), ":")
    zs = species_of(frames)
    model = SparseGPR(descriptor=GSOAP(species=zs, **SOAP), zeta=4, delta=1.0,
                      n_sparse=m_total // len(zs), sparse_method="cur",
                      sigma_energy=SIGMAS[0], sigma_force=SIGMAS[1], sigma_virial=SIGMAS[2],
                      e0="average")
    model.fit(frames, progress_every=600)
    tmp = CACHE / f"tmp_{system}_{os.getpid()}.npz"
    model.save(str(tmp))
    os.replace(tmp, path)
    return path


def gap_fit_model_path(system: str, m_total: int = 1000) -> Path:
    """Fit (once, with gap_fit, single thread) and return a GAP xml with m_total sparse points."""
    wd = CACHE / f"{system}_gap_fit_M{m_total}"
    xml = wd / "gap.xml"
    if xml.exists():
        return xml
    train = _train_file(system)
    from ase.io import read
    zs = species_of(read(str(train), ":1"))
    wd.mkdir(parents=True, exist_ok=True)
    gap_fit = shutil.which("gap_fit") or str(Path(sys.executable).parent / "gap_fit")
    soap = ("soap cutoff=5.0 cutoff_transition_width=0.5 n_max=8 l_max=6 atom_sigma=0.5 "
            f"zeta=4 delta=1.0 covariance_type=dot_product n_sparse={m_total // len(zs)} "
            "sparse_method=cur_points")
    cmd = [gap_fit, f"at_file={train}", f"gap={{{soap}}}",
           "default_sigma={%g %g %g 0.0}" % SIGMAS, "e0_method=average",
           "energy_parameter_name=energy", "force_parameter_name=forces",
           "virial_parameter_name=virial", "do_copy_at_file=F", "sparse_separate_file=F",
           "rnd_seed=1", "gp_file=gap.xml"]
    env = dict(os.environ)
    env.update({v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    with open(wd / "gap_fit.log", "w") as logf:
        subprocess.run(cmd, cwd=wd, stdout=logf, stderr=subprocess.STDOUT, env=env, check=True)
    return xml


if __name__ == "__main__":  # pre-fit everything: python benchmarks/speed_models.py [systems]
    for s in (sys.argv[1:] or ["cu", "si", "water"]):
        print(s, gapcalc_model_path(s), gap_fit_model_path(s), flush=True)
