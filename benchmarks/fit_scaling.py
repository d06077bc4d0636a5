"""Parallel fit on Dask (gapcalc.distributed): wall time, worker memory, efficiency, a scaling model.

How to run (from the repository root; on a shared machine run it once, with ``nice``)::

    nice python benchmarks/fit_scaling.py                       # 2000 EMT Cu-108 frames, M = 1000, 1 and 2 workers, + Si
    nice python benchmarks/fit_scaling.py --frames 240 --json fit_scaling.json
    python benchmarks/fit_scaling.py --no-si --workers 1,2,4

What is measured
    Cu: the frames of ``fit_memory.py`` (EMT Cu 3x3x3 fcc, 108 atoms, 800 K, energies,
    forces, stresses; cached extxyz in ``--cache``), the same model (SOAP 5.0/0.5, n_max 8,
    l_max 6, ζ 4, M = 1000 CUR, σ 0.002/0.1/0.1), fitted with ``SparseGPR.fit(path,
    client=...)`` on a fresh LocalCluster of 1 and of 2 worker processes (1 thread each):
    the workers read their own frame ranges from the file. Per run: wall time of ``fit``
    (client side), each worker's CPU seconds during the fit and peak RSS (``ru_maxrss``:
    whole worker process), the client's peak RSS, and the Dask task stream, from which
    the per-frame map cost, the per-merge reduce cost and the transfer times come.
    Speed-up = wall(1 worker) / wall(2 workers); "CPU speed-up" = the same from the
    busiest worker's CPU seconds, i.e. what dedicated cores would give (on a machine
    shared with other jobs the wall-time figure is depressed by whatever else runs).

    Si: the mlearn split (214 train / 25 test, M = 1000): serial fit, and Dask fits on 1
    (if asked) and 2 workers that choose the sparse points in three ways: every chunk
    sends its complete candidate pool (``candidates="complete"``), the low-traffic
    protocol (``candidates="leverage"``, the default: hashes, one D × D triangle per
    chunk, CUR keys, the chosen rows), and chunks that send only ``--pool`` candidates
    each (``candidates_per_chunk``, thinned pool). Per run: the payload bytes of the
    sparse-point selection sent to the client, from it and between workers (merge-tree
    inputs; ``training_summary_["dask"]["sparse_traffic"]``), whether the sparse points
    are the serial ones, and the test-set energy and force errors against the serial
    fit (target: within 2 %).

    Scaling model (printed, and written into RESULTS.md by hand): wall time for N frames
    on P workers = index + N·(t_scan + t_cand + t_rows)/P + merges + selection + solve,
    with map = ⌈(N/c)/P⌉·c·t_frame for chunks of c frames, merges = (N/c)·t_merge/P +
    log2(N/c)·(t_merge + bytes/bandwidth) for triangles of (M+1)² doubles, 1 ms of
    scheduler time per task, and the N-independent selection (CUR on a full pool of
    max_candidates environments) and solve; every t is single-thread CPU time measured
    here (--costs-only measures just these).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")     # the client process too (serial Si reference fit)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from fit_memory import M, SIGMAS, SOAP, frames_file  # noqa: E402

SI_DIR = HERE / "data" / "si_mlearn"
GAP_FIT_SI_CPU_S = 885      # RESULTS.md §1 (2026-11-24): gap_fit, Si split, SOAP, M = 1000
GAPCALC_CU2000_CPU_S = 849  # RESULTS.md §2: serial gapcalc, 2000 Cu-108 frames, M = 1000


def model(n_sparse=M):
    from gapcalc import SOAP as GSOAP, SparseGPR
    return SparseGPR(descriptor=GSOAP(species=[29], **SOAP), zeta=4, delta=1.0,
                     n_sparse=n_sparse, sparse_method="cur", sigma_energy=SIGMAS[0],
                     sigma_force=SIGMAS[1], sigma_virial=SIGMAS[2], e0="average")


def si_model():
    from gapcalc import SOAP as GSOAP, SparseGPR
    return SparseGPR(descriptor=GSOAP(species=[14], **SOAP), zeta=4, delta=1.0, n_sparse=1000,
                     sparse_method="cur", sigma_energy=SIGMAS[0], sigma_force=SIGMAS[1],
                     sigma_virial=SIGMAS[2], e0="average")


def _cpu_now():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _rss_now():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def task_costs(stream):
    """Per-function compute seconds and transfer seconds/bytes from a Dask task stream."""
    from dask.utils import key_split
    out = {}
    for rec in stream:
        name = key_split(rec["key"])
        d = out.setdefault(name, {"n": 0, "compute_s": 0.0, "max_s": 0.0,
                                  "transfer_s": 0.0, "transfer_bytes": 0})
        for ss in rec.get("startstops", ()):
            dt = ss["stop"] - ss["start"]
            if ss["action"] == "compute":
                d["n"] += 1
                d["compute_s"] += dt
                d["max_s"] = max(d["max_s"], dt)
            elif ss["action"] == "transfer":
                d["transfer_s"] += dt
    return out


def _warm():
    """Load every Numba kernel of a fit from the cache (a tiny serial fit)."""
    from gapcalc import SOAP as GSOAP, SparseGPR
    from gapcalc.datasets import emt_frames
    frames = emt_frames("Cu", n_frames=2, size=(2, 2, 2), interval=2)
    SparseGPR(GSOAP([29], **SOAP), n_sparse=5).fit(frames)
    return True


def cpu_costs(make, path, n=10):
    """CPU seconds (single thread, this process) of each kind of task on the first n frames:
    per-frame scan, candidates and rows; one merge of two full (M+1)² triangles; the
    count-line index per frame (from the whole file)."""
    import numpy as np
    from gapcalc.chunks import (FrameSource, candidates_chunk, index_extxyz, merge_triangles,
                                rows_chunk, scan_chunk)
    c0 = time.process_time()
    offsets, natoms = index_extxyz(path)
    index_per_frame = (time.process_time() - c0) / len(natoms)
    n = min(n, len(natoms))
    m = make()
    from ase.io import read
    frames = read(str(path), f":{n}")
    src = FrameSource(frames)
    chunk, = src.chunks(chunk_frames=n)
    skip = np.zeros(n, bool)
    c0 = time.process_time()
    scan_chunk(chunk, frames, m)
    scan = (time.process_time() - c0) / n
    m.terms_ = m._make_terms(m.descriptor.species)
    m.species_ = m.descriptor.species
    m.e0_ = {s: 0.0 for s in m.species_.symbols}
    c0 = time.process_time()
    pool = candidates_chunk(chunk, frames, m, skip, 0)
    cand = (time.process_time() - c0) / n
    rng = np.random.default_rng(0)
    m._select_sparse(pool, rng)
    m.U_ = m._kmm_factor()
    c0 = time.process_time()
    tri = rows_chunk(chunk, frames, m, skip)
    rows = (time.process_time() - c0) / n
    R = np.triu(np.random.default_rng(1).normal(size=(m.M_ + 1, m.M_ + 1)))
    full = {"force": (R, 1), "energy": (R[:n], n), "virial": (R[:6 * n], 6 * n)}
    c0 = time.process_time()
    merge_triangles(full, dict(full))
    merge = time.process_time() - c0
    # N-independent steps at scale: CUR on a full candidate pool (max_candidates rows of
    # D features), K_MM factor and the final solve
    from gapcalc.solver import solve_regularised
    from gapcalc.sparsify import select
    P = np.abs(np.random.default_rng(2).normal(size=(int(m.max_candidates),
                                                     m.terms_[0].descriptor.n_features)))
    c0 = time.process_time()
    select(P, m.M_, "cur", 0)
    cur = time.process_time() - c0
    c0 = time.process_time()
    solve_regularised([R, R[:n], R[:6 * n]], np.triu(R[:-1, :-1]) + 10 * np.eye(m.M_))
    solve = time.process_time() - c0
    return {"frames": n, "M": m.M_, "index_per_frame_s": index_per_frame, "scan_per_frame_s": scan,
            "candidates_per_frame_s": cand, "rows_per_frame_s": rows, "merge_s": merge,
            "select_full_pool_s": cur, "solve_s": solve, "rows_keys": sorted(tri)}


def dask_fit(make, path, workers, **fit_kw):
    """One fit on a fresh LocalCluster: wall, per-worker CPU and peak RSS, task costs."""
    from distributed import get_task_stream
    from gapcalc.distributed import connect
    with connect(workers=workers) as client:
        client.run(_warm)                                       # imports + Numba cache
        base_rss = client.run(_rss_now)
        cpu0 = client.run(_cpu_now)
        m = make()
        t0, c0 = time.perf_counter(), time.process_time()
        with get_task_stream(client) as ts:
            m.fit(str(path), client=client, progress_every=60.0, **fit_kw)
        wall, client_cpu = time.perf_counter() - t0, time.process_time() - c0
        cpu1 = client.run(_cpu_now)
        peak = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
        stream = ts.data
    cpu = {w: cpu1[w] - cpu0[w] for w in cpu1}
    return m, {"workers": workers, "wall_s": wall, "client_cpu_s": client_cpu,
               "worker_cpu_s": sorted(cpu.values()),
               "worker_peak_rss_mb": sorted(peak.values()),
               "worker_base_rss_mb": sorted(base_rss.values()),
               "client_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
               "summary": m.training_summary_, "tasks": task_costs(stream)}


def errors(m, frames):
    from gapcalc.metrics import error_table
    o = error_table(m, frames)["overall"]
    return {k: o[k] for k in ("energy_mae", "energy_rmse", "force_mae", "force_rmse",
                              "stress_rmse")}


def scaling_model(cost, M_, N=10 ** 6, P=256, atoms=108, bandwidth=1.0e9,
                  block_rows=4096, task_overhead=1e-3):
    """Predicted wall seconds for N frames of ``atoms`` atoms on P dedicated workers.

    cost: CPU seconds from :func:`cpu_costs` (per frame, per merge, and the N-independent
    selection on a full candidate pool and solve). Chunks as the fit makes them by default."""
    import numpy as np
    from gapcalc.chunks import auto_target_rows
    t_frame = cost["scan_per_frame_s"] + cost["candidates_per_frame_s"] + cost["rows_per_frame_s"]
    t_merge = cost["merge_s"]
    rows = 1 + 3 * atoms + 6
    target = auto_target_rows(np.full(N, atoms), block_rows, M_)
    c = max(1, -(-target // rows))
    n_chunks = math.ceil(N / c)
    nbytes = 3 * (M_ + 1) ** 2 * 8 / 2       # 3 packed upper triangles per merge
    index_s = cost["index_per_frame_s"] * N
    map_s = math.ceil(n_chunks / P) * c * t_frame    # equal chunks, P at a time
    depth = math.ceil(math.log2(max(n_chunks, 2)))
    # all merges as extra work spread over the workers, plus the tree's depth after the
    # last chunk (an upper bound: most merges overlap the map phase)
    merge_s = n_chunks * t_merge / P + depth * (t_merge + nbytes / bandwidth)
    sched_s = 6 * n_chunks * task_overhead   # 3 passes x (map + merge), not overlapped
    fixed = cost["select_full_pool_s"] + cost["solve_s"]
    total = index_s + map_s + merge_s + sched_s + fixed
    return {"N": N, "P": P, "chunk_frames": c, "n_chunks": n_chunks, "t_frame_s": t_frame,
            "t_merge_s": t_merge, "transfer_MB": nbytes / 1e6, "index_s": index_s,
            "map_s": map_s, "merge_s": merge_s, "scheduler_s": sched_s,
            "select_solve_s": fixed, "total_s": total, "serial_s": N * t_frame,
            "speedup": N * t_frame / total, "efficiency": N * t_frame / total / P}


def run_cu(opts, out):
    n = opts.frames
    path = frames_file(Path(opts.cache), n)
    if not path.stem.endswith(f"_{n}"):           # a larger cached file: take its first n
        from ase.io import read, write
        sub = Path(opts.cache) / f"cu_emt_first_{n}.xyz"
        if not sub.exists():
            write(str(sub), read(str(path), f":{n}"), format="extxyz")
        path = sub
    runs = {}
    if opts.costs_only:
        out["cu"] = {"frames": n, "path": str(path), "runs": runs,
                     "cpu_costs": cpu_costs(model, path)}
        model_cu(out["cu"], out["cu"]["cpu_costs"], n)
        return
    for w in opts.workers:
        print(f"[fit_scaling {time.strftime('%H:%M:%S')}] Cu {n} frames, {w} worker(s)",
              file=sys.stderr, flush=True)
        m, r = dask_fit(model, path, w)
        runs[w] = r
        runs[w]["alpha_norm"] = float((m.alpha_ ** 2).sum() ** 0.5)
        print(json.dumps({k: v for k, v in r.items() if k not in ("summary", "tasks")}),
              file=sys.stderr, flush=True)
    out["cu"] = {"frames": n, "path": str(path), "runs": runs}
    print(f"[fit_scaling {time.strftime('%H:%M:%S')}] CPU costs", file=sys.stderr, flush=True)
    cost = out["cu"]["cpu_costs"] = cpu_costs(model, path)
    model_cu(out["cu"], cost, n)


def model_cu(cu, cost, n):
    cu["model_10^6_on_256"] = scaling_model(cost, M)
    cu["model_2000_on_2"] = scaling_model(cost, M, N=2000, P=2)
    cu["model_%d_on_2" % n] = scaling_model(cost, M, N=n, P=2)


def run_si(opts, out):
    import numpy as np
    from ase.io import read
    train = SI_DIR / "si_mlearn_train.xyz"
    test = read(str(SI_DIR / "si_mlearn_test.xyz"), ":")
    print(f"[fit_scaling {time.strftime('%H:%M:%S')}] Si serial", file=sys.stderr, flush=True)
    c0, t0 = time.process_time(), time.perf_counter()
    ser = si_model().fit(read(str(train), ":"))
    res = {"serial": {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                      "errors": errors(ser, test)}}
    for label, w, kw in [("dask_1_complete", 1, {"candidates": "complete"}),
                         ("dask_1_leverage", 1, {"candidates": "leverage"}),
                         ("dask_2_complete", 2, {"candidates": "complete"}),
                         ("dask_2_leverage", 2, {"candidates": "leverage"}),
                         ("dask_2_thinned", 2, {"candidates_per_chunk": opts.pool})]:
        if w not in opts.workers and label != "dask_2_thinned":
            continue
        print(f"[fit_scaling {time.strftime('%H:%M:%S')}] Si {label}", file=sys.stderr,
              flush=True)
        m, r = dask_fit(si_model, train, w, **kw)
        r["errors"] = errors(m, test)
        r["same_sparse_points"] = bool(np.array_equal(m.terms_[0].X, ser.terms_[0].X))
        r["alpha_rel_diff"] = float(np.linalg.norm(m.alpha_ - ser.alpha_)
                                    / np.linalg.norm(ser.alpha_))
        r["error_ratio_vs_serial"] = {k: r["errors"][k] / res["serial"]["errors"][k]
                                      for k in r["errors"]}
        r["sparse_traffic"] = r["summary"]["dask"]["sparse_traffic"]
        print(json.dumps({k: r[k] for k in ("wall_s", "errors", "same_sparse_points",
                                            "alpha_rel_diff", "sparse_traffic")}),
              file=sys.stderr, flush=True)
        r.pop("tasks")
        res[label] = r
    out["si"] = res


def report(out):
    lines = []
    cu = out.get("cu")
    if cu:
        runs = cu["runs"]
        lines += [f"### Cu-108 EMT, {cu['frames']} frames, M = {M} (Dask LocalCluster, 1 thread/worker)",
                  "", "| workers | chunks | fit wall s | worker CPU s (each) | worker peak RSS MB "
                  "(each) | client peak RSS MB | wall speed-up | CPU speed-up |",
                  "|---|---|---|---|---|---|---|---|"]
        w1 = runs.get(1)
        for w, r in sorted(runs.items()):
            sp = f"{w1['wall_s'] / r['wall_s']:.2f}" if w1 else "-"
            cs = f"{max(w1['worker_cpu_s']) / max(r['worker_cpu_s']):.2f}" if w1 else "-"
            lines.append(f"| {w} | {r['summary']['dask']['chunks']} | {r['wall_s']:.0f} | "
                         f"{' / '.join(f'{x:.0f}' for x in r['worker_cpu_s'])} | "
                         f"{' / '.join(f'{x:.0f}' for x in r['worker_peak_rss_mb'])} | "
                         f"{r['client_peak_rss_mb']:.0f} | {sp} | {cs} |")
        lines += ["", "CPU costs (1 thread, this process): " + json.dumps(cu["cpu_costs"])]
        for key in (f"model_{cu['frames']}_on_2", "model_2000_on_2", "model_10^6_on_256"):
            if key in cu:
                mdl = cu[key]
                lines += ["", f"Scaling model {key}: " + ", ".join(
                    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in mdl.items())]
        for w, r in sorted(runs.items()):
            lines += ["", f"{w} worker(s) tasks: " + "; ".join(
                f"{k}: n {v['n']}, compute {v['compute_s']:.1f} s (max {v['max_s']:.2f}), "
                f"transfer {v['transfer_s']:.2f} s" for k, v in r["tasks"].items()),
                f"{w} worker(s) phases: {r['summary']['dask']['phases']}"]
    si = out.get("si")
    if si:
        lines += ["", "### Si mlearn split (214 train / 25 test, M = 1000)", "",
                  "| run | fit wall s | worker CPU s | worker peak RSS MB | sparse-point bytes "
                  "to client / from client / between workers | same sparse points "
                  "| α rel. diff | E MAE meV/at | F MAE eV/Å | F RMSE eV/Å | F RMSE / serial |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for k, r in si.items():
            e = r["errors"]
            tr = r.get("sparse_traffic")
            tr = (" / ".join(f"{tr[x] / 1e6:.2f} MB" for x in
                             ("to_client", "from_client", "between_workers")) if tr else "-")
            lines.append(
                f"| {k} | {r['wall_s']:.0f} | "
                f"{' / '.join(f'{x:.0f}' for x in r.get('worker_cpu_s', [r.get('cpu_s', 0)]))} | "
                f"{' / '.join(f'{x:.0f}' for x in r.get('worker_peak_rss_mb', [])) or '-'} | "
                f"{tr} | {r.get('same_sparse_points', '-')} | {r.get('alpha_rel_diff', 0):.1e} | "
                f"{e['energy_mae'] * 1e3:.2f} | {e['force_mae']:.4f} | {e['force_rmse']:.4f} | "
                f"{r.get('error_ratio_vs_serial', {}).get('force_rmse', 1.0):.4f} |")
        lines.append(f"\n(gap_fit, same Si model, earlier run, RESULTS.md §1: {GAP_FIT_SI_CPU_S} "
                     "CPU s serial.)")
    print("\n".join(lines), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--pool", type=int, default=150,
                   help="candidates per chunk of the thinned-pool Si fit")
    p.add_argument("--no-si", action="store_true")
    p.add_argument("--no-cu", action="store_true")
    p.add_argument("--cache", default="/tmp/fit_memory")
    p.add_argument("--json")
    p.add_argument("--costs-only", action="store_true",
                   help="Cu: only the single-thread CPU costs and the scaling model")
    opts = p.parse_args(argv)
    opts.workers = [int(x) for x in opts.workers.split(",")]
    out = {"soap": SOAP, "M": M, "gap_fit_si_cpu_s_earlier_run": GAP_FIT_SI_CPU_S,
           "gapcalc_cu2000_serial_cpu_s_earlier_run": GAPCALC_CU2000_CPU_S}
    import logging
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    def save():
        if opts.json:
            Path(opts.json).write_text(json.dumps(out, indent=1, default=str))
    if not opts.no_cu:
        run_cu(opts, out)
        save()
    if not opts.no_si:
        run_si(opts, out)
        save()
    report(out)


if __name__ == "__main__":
    main()
