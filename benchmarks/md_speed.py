"""MD-style evaluation speed: gapcalc's GAPCalculator against QUIP's GAP (quippy), same model size.

How to run (from the repository root)::

    python benchmarks/md_speed.py                 # all systems, both codes, scaling, 2 threads
    python benchmarks/md_speed.py --quick         # shorter timing, no 10k-atom run
    python benchmarks/md_speed.py --json out.json --min-time 10

What is measured
    CPU time (``time.process_time``) per call of energy + forces + stress, in us per atom,
    each (code, system) in its own subprocess with all thread variables = 1 (the 2-thread
    gapcalc rows set them to 2 and also report wall time).  A warm-up call (Numba JIT,
    quippy set-up) is never timed; then calls are repeated for at least ``--min-time`` CPU
    seconds, moving every atom by +-1e-4 A between calls so nothing is served from a cache.
    gapcalc: ``GAPCalculator(model, skin=0.5)`` (its default neighbour-list reuse, as in MD);
    quippy: ``quippy.potential.Potential(param_filename=gap.xml)``; both called as
    ``calc.calculate(atoms, ["energy", "forces", "stress"], ["positions"])``.

    Models (``speed_models.py``; accuracy irrelevant): SOAP cutoff 5.0 / transition 0.5,
    n_max 8, l_max 6, atom_sigma 0.5, zeta 4, M = 1000 sparse points in total (water: 500 O +
    500 H), fitted by each code on the same few frames (Cu: EMT; Si: 24 DFT frames; water:
    Lennard-Jones labels).

    Systems: fcc Cu 108 and 864, diamond Si 216 and 1000, water 192 (``workloads``, all
    rattled 0.05 A), and a 10648-atom diamond Si cell for the large-N per-atom cost and
    memory (peak RSS of the worker subprocess, ``ru_maxrss``).

    MD: ``ase.md.verlet.VelocityVerlet`` at 2 fs (300 K start) with each code's calculator,
    CPU time per step after one untimed step, reported as µs/atom/step and ns/day.

    Floor: a lower bound on the arithmetic, converted to time with the single-thread rate
    of a numpy float64 matrix product measured in the same run:
      density  = 2 (fwd+bwd) x 2 flop x pairs x n_max x (l_max+1)^2
      kernel   = 2 (fwd+bwd) x 2 flop x atoms x M_species x D   (D = power-spectrum length)
    ("pairs" = directed neighbour pairs within the cutoff).  "x floor" = measured / floor.
    The calls run in 5 blocks; besides the mean over all calls the table gives the best
    block, the same statistic as the floor's dgemm rate (best of 5 products), so the
    "best block x floor" column compares like with like on a machine whose speed drifts.
    Ratios in the quippy column are quippy / gapcalc (> 1: gapcalc faster).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import alternating_calls, run_json_worker, thread_env  # noqa: E402
N_MAX, L_MAX, CUTOFF, M_TOTAL = 8, 6, 5.0, 1000
BLOCKS = 5

SYSTEMS = {  # name -> (model system, builder expression)
    "cu108": ("cu", "workloads.cu_fcc_108()"),
    "cu864": ("cu", "workloads.cu_fcc_864()"),
    "si216": ("si", "workloads.si_diamond(3)"),
    "si1000": ("si", "workloads.si_diamond_1000()"),
    "water192": ("water", "workloads.water_box(4)"),
    "si10648": ("si", "workloads.si_diamond(11)"),
}


def log(msg):
    print(f"[md_speed {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build(system: str):
    import workloads  # noqa: F401  (used by eval)
    return eval(SYSTEMS[system][1])


# --- workers ------------------------------------------------------------------------------


def worker_flops(_min_time: float) -> dict:
    import numpy as np
    n = 768
    a, b = np.random.rand(n, n), np.random.rand(n, n)
    a @ b
    best = 1e9
    for _ in range(5):
        t0 = time.process_time()
        a @ b
        best = min(best, time.process_time() - t0)
    return {"gflops": 2 * n ** 3 / best / 1e9}


def worker_time(code: str, system: str, min_time: float) -> dict:
    import numpy as np
    import speed_models
    atoms = build(system)
    model_sys = SYSTEMS[system][0]
    if code == "gapcalc":
        from gapcalc import GAPCalculator
        calc = GAPCalculator(str(speed_models.gapcalc_model_path(model_sys, M_TOTAL)))
    else:
        from quippy.potential import Potential
        calc = Potential(param_filename=str(speed_models.gap_fit_model_path(model_sys,
                                                                            M_TOTAL)))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    call = alternating_calls(calc, atoms, ["energy", "forces", "stress"])

    c0, t0 = time.process_time(), time.perf_counter()
    call()  # warm-up (JIT / set-up)
    first = time.process_time() - c0
    # BLOCKS blocks of calls, each at least min_time/BLOCKS CPU s: the mean over all calls,
    # and the best block, which is the statistic of the floor's dgemm rate (best of 5)
    n, c0, t0 = 0, time.process_time(), time.perf_counter()
    blocks = []
    for _ in range(BLOCKS):
        nb, b0 = 0, time.process_time()
        while time.process_time() - b0 < min_time / BLOCKS or nb < 2:
            call()
            nb += 1
        blocks.append((time.process_time() - b0) / nb)
        n += nb
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    e = float(calc.results["energy"])
    assert np.isfinite(e)
    return {"code": code, "system": system, "n_atoms": len(atoms), "calls": n,
            "cpu_us_atom": 1e6 * cpu / n / len(atoms), "wall_us_atom": 1e6 * wall / n / len(atoms),
            "cpu_us_atom_best_block": 1e6 * min(blocks) / len(atoms),
            "cpu_us_atom_blocks": [1e6 * b / len(atoms) for b in blocks],
            "first_call_cpu_s": first, "rss_before_mb": rss_before,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def worker_md(code: str, system: str, min_time: float) -> dict:
    """VelocityVerlet at 2 fs with the code's calculator: CPU s per step -> ns/day."""
    import numpy as np
    import speed_models
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet
    atoms = build(system)
    model_sys = SYSTEMS[system][0]
    if code == "gapcalc":
        from gapcalc import GAPCalculator
        atoms.calc = GAPCalculator(str(speed_models.gapcalc_model_path(model_sys, M_TOTAL)))
    else:
        from quippy.potential import Potential
        atoms.calc = Potential(param_filename=str(speed_models.gap_fit_model_path(model_sys,
                                                                                  M_TOTAL)))
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, 2.0 * units.fs)
    dyn.run(1)                     # warm-up (JIT / set-up), not timed
    n, c0 = 0, time.process_time()
    while time.process_time() - c0 < min_time or n < 5:
        dyn.run(1)
        n += 1
    cpu = (time.process_time() - c0) / n
    return {"code": code, "system": system, "n_atoms": len(atoms), "steps": n,
            "cpu_s_step": cpu, "us_atom_step": 1e6 * cpu / len(atoms),
            "ns_day": 86400.0 / cpu * 2.0e-6}


def worker_floor(system: str, _min_time: float) -> dict:
    from ase.neighborlist import neighbor_list
    atoms = build(system)
    pairs = len(neighbor_list("i", atoms, CUTOFF))
    zs = sorted(set(atoms.numbers.tolist()))
    S = len(zs)
    D = (S * N_MAX) * (S * N_MAX + 1) // 2 * (L_MAX + 1)
    m_species = M_TOTAL // S  # each atom is compared with the sparse points of its species
    density = 4 * pairs * N_MAX * (L_MAX + 1) ** 2
    kernel = 4 * len(atoms) * m_species * D
    return {"system": system, "pairs": pairs, "density_flop": density, "kernel_flop": kernel,
            "n_atoms": len(atoms), "D": D}


def run_worker(opts) -> dict:
    if opts.worker == "flops":
        return worker_flops(opts.min_time)
    if opts.worker == "floor":
        return worker_floor(opts.system, opts.min_time)
    if opts.worker.startswith("md-"):
        return worker_md(opts.worker[3:], opts.system, opts.min_time)
    return worker_time(opts.worker, opts.system, opts.min_time)


# --- driver -------------------------------------------------------------------------------


def spawn(args, threads=1, timeout=7200) -> dict | None:
    log(" ".join(args) + f" (threads={threads})")
    return run_json_worker(__file__, args, thread_env(threads), timeout, log)


def _f(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"


def run_driver(opts) -> None:
    min_time = opts.min_time or (1.0 if opts.quick else 5.0)
    systems = opts.systems.split(",") if opts.systems else [
        s for s in SYSTEMS if s != "si10648"]
    codes = opts.codes.split(",")
    # fit the models first (cached), so no worker pays for it
    import speed_models
    for ms in sorted({SYSTEMS[s][0] for s in systems}):
        if "gapcalc" in codes:
            speed_models.gapcalc_model_path(ms, M_TOTAL)
        if "quippy" in codes:
            speed_models.gap_fit_model_path(ms, M_TOTAL)
    mt = ["--min-time", str(min_time)]
    flops = spawn(["--worker", "flops", *mt]) or {"gflops": float("nan")}
    res = {"gflops": flops["gflops"], "rows": {}}
    lines = ["### MD-style speed: energy+forces+stress, CPU µs/atom/call, single thread", "",
             f"numpy dgemm single-thread rate measured in this run: {flops['gflops']:.2f} GFLOP/s", "",
             "| system | atoms | pairs/atom | gapcalc µs/atom | quippy µs/atom | quippy/gapcalc "
             "| gapcalc best block | quippy best block | quippy/gapcalc (best) "
             "| floor density µs/atom | floor +kernel µs/atom | gapcalc x floor(+kernel), mean "
             "| gapcalc (best block) x floor "
             "| gapcalc 2-thr wall µs/atom | 2-thr speed-up (wall) | gapcalc peak RSS MB "
             "| quippy peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in systems:
        row = {"floor": spawn(["--worker", "floor", "--system", s, *mt])}
        for code in codes:
            row[code] = spawn(["--worker", code, "--system", s, *mt])
        if not opts.no_md:
            for code in codes:
                row["md_" + code] = spawn(["--worker", "md-" + code, "--system", s, *mt])
        if "gapcalc" in codes and not opts.no_threads:
            row["gapcalc_2t"] = spawn(["--worker", "gapcalc", "--system", s, *mt], threads=2)
        res["rows"][s] = row
        g, q, fl, g2 = row.get("gapcalc"), row.get("quippy"), row["floor"], row.get("gapcalc_2t")
        n = fl["n_atoms"]
        fd = fl["density_flop"] / n / (flops["gflops"] * 1e3)
        fk = (fl["density_flop"] + fl["kernel_flop"]) / n / (flops["gflops"] * 1e3)
        row["floor_density_us_atom"], row["floor_total_us_atom"] = fd, fk
        lines.append(
            f"| {s} | {n} | {fl['pairs'] / n:.0f} | {_f(g and g['cpu_us_atom'])} "
            f"| {_f(q and q['cpu_us_atom'])} "
            f"| {_f(q['cpu_us_atom'] / g['cpu_us_atom'], 2) if g and q else '-'} "
            f"| {_f(g and g['cpu_us_atom_best_block'])} "
            f"| {_f(q and q['cpu_us_atom_best_block'])} "
            f"| {_f(q['cpu_us_atom_best_block'] / g['cpu_us_atom_best_block'], 2) if g and q else '-'} "
            f"| {fd:.2f} | {fk:.1f} | {_f(g['cpu_us_atom'] / fk, 2) if g else '-'} "
            f"| {_f(g['cpu_us_atom_best_block'] / fk, 2) if g else '-'} "
            f"| {_f(g2 and g2['wall_us_atom'])} "
            f"| {_f(g['wall_us_atom'] / g2['wall_us_atom'], 2) if g and g2 else '-'} "
            f"| {_f(g and g['peak_rss_mb'], 0)} | {_f(q and q['peak_rss_mb'], 0)} |")
    print("\n".join(lines) + "\n", flush=True)
    if not opts.no_md:
        md = ["### VelocityVerlet MD, 2 fs, single thread (CPU time per step)", "",
              "| system | atoms | " + " | ".join(f"{c} µs/atom/step | {c} ns/day" for c in codes)
              + (" | gapcalc/quippy speed-up |" if len(codes) == 2 else " |"),
              "|---|---|" + "---|---|" * len(codes) + ("---|" if len(codes) == 2 else "")]
        for s, row in res["rows"].items():
            cells = []
            for c in codes:
                r = row.get("md_" + c)
                cells += [_f(r and r["us_atom_step"]), _f(r and r["ns_day"], 3)]
            g, q = row.get("md_gapcalc"), row.get("md_quippy")
            extra = (f" | {_f(q['cpu_s_step'] / g['cpu_s_step'], 1) if g and q else '-'} |"
                     if len(codes) == 2 else " |")
            md.append(f"| {s} | {row['floor']['n_atoms']} | " + " | ".join(cells) + extra)
        print("\n".join(md) + "\n", flush=True)
    if not opts.quick and not opts.no_scaling and "gapcalc" in codes:
        small = res["rows"].get("si1000", {}).get("gapcalc") or spawn(
            ["--worker", "gapcalc", "--system", "si1000", *mt])
        big = spawn(["--worker", "gapcalc", "--system", "si10648", *mt])
        res["scaling"] = {"si1000": small, "si10648": big}
        if small and big:
            print("### Large-N scaling (gapcalc, single thread)\n\n"
                  "| system | atoms | CPU µs/atom | peak RSS MB | per-atom cost ratio vs 1000 |\n"
                  "|---|---|---|---|---|\n"
                  f"| si1000 | 1000 | {small['cpu_us_atom']:.1f} | {small['peak_rss_mb']:.0f} | 1.00 |\n"
                  f"| si10648 | 10648 | {big['cpu_us_atom']:.1f} | {big['peak_rss_mb']:.0f} "
                  f"| {big['cpu_us_atom'] / small['cpu_us_atom']:.2f} |\n", flush=True)
    if opts.json:
        Path(opts.json).write_text(json.dumps(res, indent=1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json")
    p.add_argument("--min-time", type=float, default=None, help="CPU s per timing point")
    p.add_argument("--systems", default=None, help=f"comma list of {','.join(SYSTEMS)}")
    p.add_argument("--codes", default="gapcalc,quippy")
    p.add_argument("--no-threads", action="store_true", help="skip the 2-thread rows")
    p.add_argument("--no-scaling", action="store_true", help="skip the 10648-atom run")
    p.add_argument("--no-md", action="store_true", help="skip the VelocityVerlet ns/day rows")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--system", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.worker:
        print(json.dumps(run_worker(opts)))
    else:
        run_driver(opts)


if __name__ == "__main__":
    main()
