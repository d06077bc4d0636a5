"""Shared pieces of the benchmark scripts: thread control, JSON workers, timed gap_fit runs."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

THREAD_VARS = ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "RAYON_NUM_THREADS",
               "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def thread_env(n: int = 1, extra: dict | None = None) -> dict:
    """os.environ with every thread-count variable set to n (plus ``extra``)."""
    env = dict(os.environ)
    env.update({v: str(n) for v in THREAD_VARS})
    env.update(extra or {})
    return env


def run_json_worker(script, args, env, timeout, log) -> dict | None:
    """Run ``python script *args`` and return the JSON object on its last stdout line.

    A timeout or a failing worker is logged (with the tail of its stderr) and gives None."""
    cmd = [sys.executable, str(Path(script).resolve()), *map(str, args)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        log("timeout")
        return None
    if proc.returncode:
        log(f"worker failed:\n{proc.stderr[-3000:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_gap_fit(cmd, workdir: Path) -> dict:
    """Run a gap_fit command line single-threaded in ``workdir`` (log: gap_fit.log).

    Returns its CPU seconds (user + sys), wall seconds and peak RSS (MB), read with
    ``getrusage(RUSAGE_CHILDREN)``: call it from a worker process that runs nothing else."""
    t0 = time.perf_counter()
    with open(workdir / "gap_fit.log", "w") as logf:
        proc = subprocess.run(cmd, cwd=workdir, stdout=logf, stderr=subprocess.STDOUT,
                              env=thread_env(1))
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"gap_fit failed ({proc.returncode}); see {workdir / 'gap_fit.log'}")
    return {"fit_cpu_s": ru.ru_utime + ru.ru_stime, "fit_wall_s": wall,
            "peak_rss_mb": ru.ru_maxrss / 1024.0}


def alternating_calls(calc, atoms, properties):
    """A call() that moves every atom by ±1e-4 Å (alternately) and recomputes ``properties``,
    so no timed call is served from the calculator's cache."""
    base = atoms.positions.copy()
    k = 0

    def call():
        nonlocal k
        k += 1
        atoms.positions = base + (1e-4 if k % 2 else -1e-4)
        calc.calculate(atoms, properties, ["positions"])
    return call
