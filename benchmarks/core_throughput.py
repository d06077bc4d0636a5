"""What 2 processes get from this machine: the ceiling for any 2-worker speed-up.

How to run (repository root, on an otherwise idle machine)::

    python benchmarks/core_throughput.py            # dgemm and a pure-Python loop, 8 s each

Runs a single-threaded kernel alone, then two copies at once (separate processes), and
prints the throughput of each and the ratio (2 copies together) / (1 alone). On two
independent cores the ratio is 2; on two SMT threads of one core, or cores that share
a busy FPU or memory path, it is lower, and no parallel fit on that machine can beat
it. ``fit_scaling.py``'s 2-worker speed-up is judged against this ceiling. Run it with
nothing else on the machine: any other job (even at ``nice 19``) lowers both numbers.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"


def gemm_gflops(seconds: float) -> float:
    """GFlop/s of repeated 1000 × 1000 dgemm in this process."""
    import numpy as np
    a, b = np.random.rand(1000, 1000), np.random.rand(1000, 1000)
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return 2.0 * n / (time.perf_counter() - t0)


def python_loops(seconds: float) -> float:
    """Pure-Python loops of 200 000 float additions per second."""
    t0, n, x = time.perf_counter(), 0, 0.0
    while time.perf_counter() - t0 < seconds:
        for i in range(200_000):
            x += i * 1e-9
        n += 1
    return n / (time.perf_counter() - t0)


KERNELS = {"dgemm GFlop/s": gemm_gflops, "python loops/s": python_loops}


def _copies(kind: str, n: int, seconds: float) -> list[float]:
    cmd = [sys.executable, __file__, "--child", kind, str(seconds)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    return [float(p.communicate()[0]) for p in procs]


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(KERNELS[sys.argv[2]](float(sys.argv[3])))
        return
    seconds = 8.0
    print(f"{'kernel':<16} {'1 alone':>10} {'each of 2':>18} {'2 together / 1 alone':>22}")
    for kind in KERNELS:
        alone = _copies(kind, 1, seconds)[0]
        two = _copies(kind, 2, seconds)
        print(f"{kind:<16} {alone:10.2f} {two[0]:8.2f} / {two[1]:<8.2f} {sum(two) / alone:22.2f}")


if __name__ == "__main__":
    main()
