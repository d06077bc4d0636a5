"""Peak memory and CPU time of a large gapcalc fit (streamed design rows), with a gap_fit peer.

How to run (from the repository root)::

    python benchmarks/fit_memory.py                   # 2000 EMT Cu frames (108 atoms), M = 1000
    python benchmarks/fit_memory.py --quick           # 200 frames, peer on 20 frames
    python benchmarks/fit_memory.py --frames 500 --json out.json
    python benchmarks/fit_memory.py --peer-frames 0   # skip the gap_fit peer

What is measured
    Training data: ``gapcalc.datasets.emt_frames("Cu", size=(3, 3, 3), n_frames=N,
    temperature=800, seed=0)`` (108 atoms/frame, energies, forces, stresses), generated
    once and cached as extxyz in ``--cache`` (default /tmp/fit_memory; generating 2000
    frames takes a few minutes).  Model: SOAP cutoff 5.0 / transition 0.5, n_max 8,
    l_max 6, atom_sigma 0.5, zeta 4, delta 1, M = 1000 CUR sparse points, sigmas
    0.002 eV/atom, 0.1 eV/A, 0.1 eV/atom, e0 average.

    Each fit runs in a fresh single-threaded subprocess: CPU time = ``time.process_time``
    around ``fit`` (includes Numba JIT if the cache is cold), peak RSS = the worker's
    ``ru_maxrss`` (whole process: Python + numpy + numba + the frames in memory), and the
    RSS just before fitting (baseline) to separate the data from the fit itself.
    "dense A" = rows x M x 8 bytes, the design matrix a non-streaming solver would store.

    Peer (same run): gap_fit with the same hyper-parameters on the first ``--peer-frames``
    frames, and gapcalc on the same subset; CPU time and peak RSS from
    ``getrusage(RUSAGE_CHILDREN)`` around gap_fit.  Ratios are gapcalc / gap_fit.
    Target: peak RSS of the full fit < 2 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

from _common import run_gap_fit, run_json_worker, thread_env

SOAP = dict(cutoff=5.0, cutoff_width=0.5, n_max=8, l_max=6, atom_sigma=0.5)
M = 1000
SIGMAS = (0.002, 0.1, 0.1)


def rss_now_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def frames_file(cache: Path, n: int) -> Path:
    """Cached extxyz of n EMT Cu frames (a larger cached file is reused by slicing)."""
    cache.mkdir(parents=True, exist_ok=True)
    have = sorted((int(p.stem.split("_")[-1]), p) for p in cache.glob("cu_emt_*.xyz")
                  if p.stem.split("_")[-1].isdigit())
    for m, p in have:
        if m >= n:
            return p
    from ase.io import write
    from gapcalc.datasets import emt_frames
    t0 = time.perf_counter()
    frames = emt_frames("Cu", n_frames=n, size=(3, 3, 3), temperature=800.0, seed=0)
    path = cache / f"cu_emt_{n}.xyz"
    tmp = path.with_suffix(".tmp")
    write(str(tmp), frames, format="extxyz")
    os.replace(tmp, path)
    print(f"[fit_memory] generated {n} frames in {time.perf_counter() - t0:.0f} s -> {path}",
          file=sys.stderr, flush=True)
    return path


def gap_fit_xyz(src: Path, n: int, dst: Path) -> Path:
    """First n frames with energy/forces/virial written explicitly for gap_fit."""
    import numpy as np
    from ase.io import read, write
    out = []
    for at in read(str(src), f":{n}"):
        a = at.copy()
        a.info["energy"] = float(at.get_potential_energy())
        a.arrays["forces"] = np.array(at.get_forces())
        a.info["virial"] = -at.get_stress(voigt=False) * at.get_volume()
        out.append(a)
    write(str(dst), out, format="extxyz")
    return dst


# --- workers (one per subprocess) -----------------------------------------------------------


def worker_gapcalc(path: Path, n: int) -> dict:
    from ase.io import read
    from gapcalc import SOAP as GSOAP, SparseGPR
    frames = read(str(path), f":{n}")
    baseline = rss_now_mb()
    model = SparseGPR(descriptor=GSOAP(species=[29], **SOAP), zeta=4, delta=1.0, n_sparse=M,
                      sparse_method="cur", sigma_energy=SIGMAS[0], sigma_force=SIGMAS[1],
                      sigma_virial=SIGMAS[2], e0="average")
    c0, t0 = time.process_time(), time.perf_counter()
    model.fit(frames, progress_every=120.0)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    rows = model.training_summary_["rows"]
    return {"code": "gapcalc", "frames": len(frames), "atoms": sum(len(a) for a in frames),
            "rows": rows, "n_rows": int(sum(rows.values())), "M": int(model.M_),
            "fit_cpu_s": cpu, "fit_wall_s": wall, "baseline_rss_mb": baseline,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


def worker_gap_fit(path: Path, n: int, workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    xyz = gap_fit_xyz(path, n, workdir / "train.xyz")
    gap_fit = shutil.which("gap_fit") or str(Path(sys.executable).parent / "gap_fit")
    cmd = [gap_fit, f"at_file={xyz}",
           "gap={soap cutoff=5.0 cutoff_transition_width=0.5 n_max=8 l_max=6 atom_sigma=0.5 "
           f"zeta=4 delta=1.0 covariance_type=dot_product n_sparse={M} sparse_method=cur_points}}",
           "default_sigma={%g %g %g 0.0}" % SIGMAS, "e0_method=average",
           "energy_parameter_name=energy", "force_parameter_name=forces",
           "virial_parameter_name=virial", "do_copy_at_file=F", "sparse_separate_file=F",
           "rnd_seed=1", "gp_file=gap.xml"]
    return {"code": "gap_fit", "frames": n, **run_gap_fit(cmd, workdir),
            "command": " ".join(cmd)}


# --- driver ----------------------------------------------------------------------------------


def spawn(args, timeout) -> dict | None:
    print(f"[fit_memory {time.strftime('%H:%M:%S')}] {' '.join(args)}", file=sys.stderr,
          flush=True)
    return run_json_worker(__file__, args, thread_env(1), timeout,
                           lambda msg: print(f"[fit_memory] {msg}", file=sys.stderr))


def _f(x, nd=0):
    return "-" if x is None else f"{x:.{nd}f}"


def run_driver(opts) -> None:
    n = opts.frames or (200 if opts.quick else 2000)
    peer = opts.peer_frames if opts.peer_frames is not None else (20 if opts.quick else 100)
    cache = Path(opts.cache)
    path = frames_file(cache, max(n, peer))
    out = {"frames_file": str(path), "M": M, "soap": SOAP}
    out["full"] = spawn(["--worker", "gapcalc", "--path", str(path), "--n", str(n)], opts.timeout)
    if peer:
        out["peer_gapcalc"] = spawn(["--worker", "gapcalc", "--path", str(path), "--n",
                                     str(peer)], opts.timeout)
        out["peer_gap_fit"] = spawn(["--worker", "gap_fit", "--path", str(path), "--n",
                                     str(peer), "--workdir", str(cache / f"gap_fit_{peer}")],
                                    opts.timeout)
    lines = ["### gapcalc fit memory (EMT Cu 108-atom frames, M = 1000, single thread)", "",
             "| run | code | frames | atoms | rows (E/F/V) | dense A GB | fit CPU s | fit wall s "
             "| baseline RSS MB | peak RSS MB | peak RSS / dense A |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in ("full", "peer_gapcalc", "peer_gap_fit"):
        r = out.get(key)
        if not r:
            continue
        rows = r.get("rows")
        dense = r["n_rows"] * r["M"] * 8 / 1e9 if rows else None
        rowtxt = "/".join(str(rows[k]) for k in ("energy", "force", "virial")) if rows else "-"
        lines.append(f"| {key} | {r['code']} | {r['frames']} | {r.get('atoms', '-')} | {rowtxt} "
                     f"| {_f(dense, 2)} | {_f(r['fit_cpu_s'])} | {_f(r['fit_wall_s'])} "
                     f"| {_f(r.get('baseline_rss_mb'))} | {_f(r['peak_rss_mb'])} "
                     f"| {_f(r['peak_rss_mb'] / 1e3 / dense, 2) if dense else '-'} |")
    a, b = out.get("peer_gapcalc"), out.get("peer_gap_fit")
    if a and b:
        lines.append(f"| peer ratio | gapcalc/gap_fit | {peer} | | | | "
                     f"{a['fit_cpu_s'] / b['fit_cpu_s']:.2f} | | | "
                     f"{a['peak_rss_mb'] / b['peak_rss_mb']:.2f} | |")
    full = out.get("full")
    if full:
        ok = full["peak_rss_mb"] < 2048
        lines.append("")
        lines.append(f"Full fit peak RSS {full['peak_rss_mb']:.0f} MB: "
                     f"{'PASS' if ok else 'FAIL'} (target < 2048 MB).")
    print("\n".join(lines), flush=True)
    if opts.json:
        Path(opts.json).write_text(json.dumps(out, indent=1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json")
    p.add_argument("--frames", type=int, default=None, help="frames in the big fit (2000)")
    p.add_argument("--peer-frames", type=int, default=None,
                   help="frames for the gap_fit-vs-gapcalc peer fit (100; --quick 20; 0 = skip)")
    p.add_argument("--cache", default="/tmp/fit_memory")
    p.add_argument("--timeout", type=float, default=6 * 3600)
    p.add_argument("--worker", choices=["gapcalc", "gap_fit"], help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.worker == "gapcalc":
        print(json.dumps(worker_gapcalc(Path(opts.path), opts.n)))
    elif opts.worker == "gap_fit":
        print(json.dumps(worker_gap_fit(Path(opts.path), opts.n, Path(opts.workdir))))
    else:
        run_driver(opts)


if __name__ == "__main__":
    main()
