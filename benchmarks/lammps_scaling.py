"""gapcalc in LAMMPS on 1 and 2 MPI ranks vs the ASE calculator in one process.

    nice python benchmarks/lammps_scaling.py [--max-atoms 32000] [--json out.json]

Measures, for the shipped Cu and Si potentials, µs per atom per MD step (velocity Verlet,
300 K, skin 1 Å) of

* the ASE calculator (``gapcalc.load(name)``, ``VelocityVerlet``) in one process,
* LAMMPS + ``gapcalc.lammps.attach`` on 1 rank and on 2 ranks (``mpirun -np 2``),

for 1 000 to ``--max-atoms`` atoms; strong-scaling efficiency t1/(2 t2) at the same size and
weak-scaling efficiency t1(n)/t2(2n) at the same atoms per rank; peak memory per rank; per
rank the owned, ghost and remote-ghost atoms, pairs, and the coupling's own timers. Then the
coupling overhead (everything but ``Potential.local_energies``) for a Cu model with
M = 1000 at 1000 atoms per rank, with both ways of returning ghost forces (Alltoallv of the
ghost rows vs an Allreduce of a global force array), and the scaling model of
``benchmarks/RESULTS.md`` (section 8) fitted to these points.

Every configuration runs in a worker process (``--worker``), one size after another in
the same process (so imports and Numba's cache are paid once per worker); 1 Numba thread
per rank. On the shared 2-core machine both ranks compete with other jobs: 2-rank figures
are pessimistic and the printed load average says how busy the machine was.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

SYSTEMS = {
    # name: (model, element, lattice, a (Å), mass, reps giving ~1000, ~4000, ~32000, ~100000)
    "Cu": ("Cu", "Cu", "fcc", 3.615, 63.546,
           [(5, 5, 10), (10, 10, 10), (20, 20, 20), (30, 30, 30)]),
    "Si": ("Si", "Si", "diamond", 5.431, 28.0855,
           [(5, 5, 5), (8, 8, 8), (16, 16, 16), (23, 23, 23)]),
}
ATOMS_PER_CELL = {"fcc": 4, "diamond": 8}
SKIN = 1.0


def n_atoms(lattice, reps):
    return ATOMS_PER_CELL[lattice] * reps[0] * reps[1] * reps[2]


def steps_for(n):
    return max(5, min(30, int(6e4 / n) + 1))


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------- workers
def worker_lammps(args):
    from mpi4py import MPI  # noqa: F401  (before lammps)
    from lammps import lammps

    from gapcalc.lammps import attach
    from gapcalc.lammps.coupling import load_potential
    comm = MPI.COMM_WORLD
    potential = load_potential(args.model)           # once per process
    for reps in args.reps:
        n = n_atoms(args.lattice, reps)
        steps = args.steps or steps_for(n)
        lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"], comm=comm)
        lmp.commands_string(f"""units metal
atom_style atomic
lattice {args.lattice} {args.a}
region box block 0 {reps[0]} 0 {reps[1]} 0 {reps[2]}
create_box 1 box
create_atoms 1 box
mass 1 {args.mass}""")
        cpl = attach(lmp, potential, [args.element], skin=SKIN, reverse=args.reverse)
        cpl.sync_timing = True
        lmp.commands_string(f"""neighbor {SKIN} bin
velocity all create 300 4928 mom yes rot no dist gaussian loop geom
timestep 0.001
fix 1 all nve
thermo 0
run 1""")
        cpl.check()
        cpl.reset_timers()
        comm.Barrier()
        t0 = time.perf_counter()
        c0 = time.process_time()
        lmp.command(f"run {steps} pre no post no")
        cpu = (time.process_time() - c0) / steps
        comm.Barrier()
        wall = (time.perf_counter() - t0) / steps
        cpl.check()
        nlocal = lmp.extract_setting("nlocal")
        nghost = lmp.extract_setting("nghost")
        # per step k: interval between callback starts, and what is not the model in it
        import numpy as np
        smp = np.array(cpl.samples)
        interval = np.diff(smp[:, 0])
        other = interval - smp[:-1, 1] - smp[:-1, 2]
        per_rank = dict(step_median=float(np.median(interval)),
                        model_median=float(np.median(smp[:, 1])),
                        wait_median=float(np.median(smp[:, 2])),
                        other_median=float(np.median(other)),
                        nlocal=nlocal, nghost=nghost, remote=cpl.ghosts.n_remote,
                        pairs=int(cpl.env.first[-1]) if cpl.env is not None else 0,
                        rss_mb=rss_mb(), cpu_s=cpu,
                        **{f"t_{k}": v / steps for k, v in cpl.timers.items()})
        if args.sync:     # the ghost return and the Allreduce alone, repeated: min ≈ idle machine
            F = np.zeros((nlocal + nghost, 3))
            e = np.zeros(8)
            fold, red = [], []
            for _ in range(100):
                comm.Barrier()
                t1 = time.perf_counter()
                cpl.ghosts.fold(F)
                t2 = time.perf_counter()
                comm.Allreduce(np.ones(8), e)
                red.append(time.perf_counter() - t2)
                fold.append(t2 - t1)
            fold.sort()
            red.sort()
            per_rank.update(fold_min=fold[0], fold_median=fold[50], allreduce_min=red[0],
                            allreduce_median=red[50])
        gathered = comm.gather(per_rank, root=0)
        lmp.close()
        if comm.Get_rank() == 0:
            med = sum(x["step_median"] for x in gathered) / len(gathered)
            print(json.dumps(dict(kind="lammps", system=args.system, ranks=comm.Get_size(),
                                  reverse=args.reverse, atoms=n, reps=reps, steps=steps,
                                  step_mean_s=wall, step_s=med, us_atom_step=med / n * 1e6,
                                  per_rank=gathered)), flush=True)


def worker_ase(args):
    import numpy as np
    from ase.build import bulk
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet
    from ase.units import fs

    import gapcalc
    calc = gapcalc.load(args.model, skin=SKIN)
    for reps in args.reps:
        atoms = bulk(args.element, args.lattice, a=args.a, cubic=True) * tuple(reps)
        MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(1))
        atoms.calc = calc
        steps = args.steps or steps_for(len(atoms))
        dyn = VelocityVerlet(atoms, 1.0 * fs)
        dyn.run(1)
        stamps = []
        dyn.attach(lambda: stamps.append(time.perf_counter()), interval=1)
        t0 = time.perf_counter()
        c0 = time.process_time()
        dyn.run(steps)
        cpu = (time.process_time() - c0) / steps
        mean = (time.perf_counter() - t0) / steps
        wall = float(np.median(np.diff(stamps)))
        print(json.dumps(dict(kind="ase", system=args.system, ranks=1, atoms=len(atoms),
                              reps=reps, steps=steps, step_s=wall, step_mean_s=mean,
                              cpu_s=cpu,
                              us_atom_step=wall / len(atoms) * 1e6,
                              cpu_us_atom_step=cpu / len(atoms) * 1e6, rss_mb=rss_mb())),
              flush=True)


# --------------------------------------------------------------------------- driver
def run_worker(kind, system, reps_list, ranks=1, reverse="alltoallv", sync=False,
               model=None, steps=None):
    name, element, lattice, a, mass, _ = SYSTEMS[system]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind,
           "--system", system, "--model", str(model or name), "--element", element,
           "--lattice", lattice, "--a", str(a), "--mass", str(mass), "--reverse", reverse]
    for r in reps_list:
        cmd += ["--reps", *map(str, r)]
    if sync:
        cmd.append("--sync")
    if steps:
        cmd += ["--steps", str(steps)]
    if ranks > 1:
        mpirun = Path(sys.executable).parent / "mpirun"
        cmd = [str(mpirun), "-np", str(ranks)] + cmd
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"worker failed: {' '.join(cmd)}")
    rows = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    print(f"  [{kind} {system} ranks={ranks} {reverse}{' sync' if sync else ''}: "
          f"{time.time() - t0:.0f} s]", file=sys.stderr, flush=True)
    return rows


def mean_rank(row, key):
    return sum(r[key] for r in row["per_rank"]) / len(row["per_rank"])


def max_rank(row, key):
    return max(r[key] for r in row["per_rank"])


def overhead_table(rows):
    """Coupling overhead = 1 − (model time / step time), per rank, averaged."""
    out = []
    for r in rows:
        step = r["step_s"]
        model = mean_rank(r, "model_median")
        wait = mean_rank(r, "wait_median")
        coupling = mean_rank(r, "other_median")
        out.append(dict(ranks=r["ranks"], reverse=r["reverse"], atoms=r["atoms"],
                        step_ms=step * 1e3, model_ms=model * 1e3, wait_ms=wait * 1e3,
                        overhead_ms=coupling * 1e3,
                        overhead_pct=100 * coupling / step,
                        overhead_incl_wait_pct=100 * (step - model) / step,
                        reverse_ms=mean_rank(r, "t_reverse") * 1e3,
                        reduce_ms=mean_rank(r, "t_reduce") * 1e3,
                        breakdown_ms={k: mean_rank(r, f"t_{k}") * 1e3 for k in
                                      ("lammps", "plan", "pairs", "forces", "reverse",
                                       "reduce", "peratom")}))
    return out


# --------------------------------------------------------------------------- scaling model
RHO_CU = 4 / 3.615 ** 3          # atoms/Å³, fcc Cu
CUTOFF_CU = 5.0                  # Å, shipped Cu model


def ghosts_of(n, h, rho=RHO_CU):
    """Ghost atoms of a cubic sub-domain holding n atoms at density rho, shell width h (Å)."""
    side = (n / rho) ** (1 / 3)
    return rho * ((side + 2 * h) ** 3 - side ** 3)


def fit_scaling_model(rows, over):
    """Least-squares fit of the per-step cost outside the model,
    t_other = a·n_owned + b·n_ghost + c  (wall seconds, all Cu LAMMPS points, waits for the
    other rank removed where measured), and the MPI costs from the repeated ghost return
    and Allreduce (min over repetitions: t_fold = α + β·bytes, t_allreduce). Returns a dict."""
    import numpy as np
    pts = []
    for r in rows + over:
        if r["kind"] != "lammps" or r["system"] != "Cu":
            continue
        for x in r["per_rank"]:
            pts.append((x["nlocal"], x["nghost"], 1.0, x["other_median"], r["ranks"]))
    A = np.array([p[:3] for p in pts], dtype=float)
    y = np.array([p[3] for p in pts])
    coef = np.linalg.lstsq(A, y, rcond=None)[0] if len(pts) >= 3 else np.zeros(3)
    folds = [(mean_rank(r, "remote") * 24.0, mean_rank(r, "fold_min"),
              mean_rank(r, "allreduce_min")) for r in over
             if r["ranks"] > 1 and r["reverse"] == "alltoallv" and "fold_min" in r["per_rank"][0]]
    if len(folds) >= 2:
        (b1, f1, _), (b2, f2, _) = sorted(folds)[:1] + sorted(folds)[-1:]
        beta = max((f2 - f1) / (b2 - b1), 0.0) if b2 > b1 else 0.0
        alpha = max(f1 - beta * b1, 0.0)
    else:
        beta, alpha = 0.0, folds[0][1] if folds else 0.0
    t_red = min(f[2] for f in folds) if folds else 0.0
    model_us = [mean_rank(r, "model_median") / mean_rank(r, "nlocal") * 1e6 for r in rows
                if r["kind"] == "lammps" and r["system"] == "Cu" and r["ranks"] == 1]
    # bounds from the 1-rank points alone (no second rank competing for the cores):
    # all non-model time of the smallest cell charged to its ghosts, and of the largest
    # cell to its owned atoms
    one = sorted((p for p in pts if p[4] == 1), key=lambda p: p[0])
    b_bound = one[0][3] / one[0][1] if one else coef[1]
    a_bound = (one[-1][3] - b_bound * one[-1][1]) / one[-1][0] if one else coef[0]
    return dict(a=coef[0], b=coef[1], c=coef[2], alpha=alpha, beta=beta, t_allreduce=t_red,
                a_bound=max(a_bound, 0.0), b_bound=b_bound,
                model_us_per_atom=min(model_us) if model_us else 70.0, points=len(pts))


def predict_efficiency(fit, n_total=1_000_000, ranks=(2, 64, 1024), skin=SKIN,
                       model_us=None, alpha_net=2e-6, beta_net=1e-10, neighbours=26):
    """Parallel efficiency T(1)/(P·T(P)) of an n_total-atom Cu cell from the fitted model;
    'shm' uses the measured (shared-memory) α, β; 'net' an interconnect with α_net latency
    per message and β_net s/byte (2 µs, 10 GB/s) for the 26 neighbour messages of the
    ghost return and of LAMMPS' forward communication (6 swaps)."""
    import math
    h = CUTOFF_CU + skin
    t_model = (model_us or fit["model_us_per_atom"]) * 1e-6
    t1 = n_total * (t_model + fit["a"]) + ghosts_of(n_total, h) * fit["b"] + fit["c"]
    out = []
    for P in ranks:
        n = n_total / P
        g = ghosts_of(n, h)
        base = n * (t_model + fit["a"]) + g * fit["b"] + fit["c"]
        red = fit["t_allreduce"] * max(math.log2(P), 1)
        shm = base + fit["alpha"] + fit["beta"] * 24 * g + red
        net = (base + neighbours * alpha_net + 24 * g * beta_net          # ghost return
               + 6 * alpha_net + 24 * g * beta_net                        # LAMMPS forward comm
               + 2 * alpha_net * max(math.log2(P), 1))                    # Allreduce
        out.append(dict(P=P, n=n, ghosts=g, ghost_ratio=g / n, t_step_shm=shm,
                        t_step_net=net, eff_shm=t1 / (P * shm), eff_net=t1 / (P * net),
                        comm_bytes=24 * g))
    return out


def report_model(rows, over):
    fit = fit_scaling_model(rows, over)
    bound = dict(fit, a=fit["a_bound"], b=fit["b_bound"], c=0.0)
    print("\n## scaling model (Cu, fitted to the points above)\n")
    print(f"t_other = a·n_owned + b·n_ghost + c: a = {fit['a'] * 1e6:.3f} µs, "
          f"b = {fit['b'] * 1e6:.3f} µs, c = {fit['c'] * 1e3:.3f} ms ({fit['points']} rank "
          f"points); ghost return t = α + β·bytes: α = {fit['alpha'] * 1e6:.1f} µs, "
          f"β = {fit['beta'] * 1e9:.3f} ns/B; 8-double Allreduce {fit['t_allreduce'] * 1e6:.1f} µs; "
          f"model {fit['model_us_per_atom']:.1f} µs/atom (1 rank, this run)")
    print("\n| ranks | atoms/rank | ghosts/rank | ghosts/owned | ghost-return bytes/rank/step "
          "| efficiency (measured α, β) | efficiency (network 2 µs, 10 GB/s) |")
    print("|---|---|---|---|---|---|---|")
    for p in predict_efficiency(fit):
        print(f"| {p['P']} | {p['n']:.0f} | {p['ghosts']:.0f} | {p['ghost_ratio']:.2f} | "
              f"{p['comm_bytes'] / 1e3:.0f} kB | {p['eff_shm']:.3f} | {p['eff_net']:.3f} |")
    idle = predict_efficiency(fit, model_us=70.0)
    print("\nwith the idle-machine model cost (70 µs/atom, RESULTS §4): " +
          ", ".join(f"P={p['P']}: {p['eff_shm']:.3f} / {p['eff_net']:.3f}" for p in idle))
    print(f"\n1-rank bounds: b ≤ {fit['b_bound'] * 1e6:.3f} µs per ghost (smallest cell: all "
          f"its non-model time charged to ghosts), then a = {fit['a_bound'] * 1e6:.3f} µs per "
          "owned atom (largest cell); efficiency with these, measured / network α, β, "
          "model 70 µs/atom: " +
          ", ".join(f"P={p['P']}: {p['eff_shm']:.3f} / {p['eff_net']:.3f}"
                    for p in predict_efficiency(bound, model_us=70.0)))
    return fit


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", choices=("lammps", "ase"))
    ap.add_argument("--system", default="Cu")
    ap.add_argument("--model")
    ap.add_argument("--element")
    ap.add_argument("--lattice")
    ap.add_argument("--a", type=float)
    ap.add_argument("--mass", type=float)
    ap.add_argument("--reps", type=int, nargs=3, action="append")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--reverse", default="alltoallv")
    ap.add_argument("--sync", action="store_true")
    ap.add_argument("--max-atoms", type=int, default=33000,
                    help="largest cell (default 33 000; the 100 000-atom cells take "
                         "minutes per configuration on a shared 2-core machine)")
    ap.add_argument("--systems", nargs="+", default=["Cu", "Si"])
    ap.add_argument("--no-overhead", action="store_true")
    ap.add_argument("--json", help="write every measured row here")
    ap.add_argument("--report", help="only print the tables and the model from a --json file")
    args = ap.parse_args(argv)
    if args.report:
        data = json.loads(Path(args.report).read_text())
        report(data["rows"], data["overhead"], data["load"][0])
        report_model(data["rows"], data["overhead"])
        return None
    if args.worker == "lammps":
        return worker_lammps(args)
    if args.worker == "ase":
        return worker_ase(args)

    load0 = os.getloadavg()
    print(f"# lammps_scaling: load average at start {load0[0]:.1f} "
          f"({os.cpu_count()} CPUs), max atoms {args.max_atoms}", flush=True)
    rows = []
    for system in args.systems:
        _, _, lattice, *_rest, reps_all = SYSTEMS[system]
        reps = [r for r in reps_all if n_atoms(lattice, r) <= args.max_atoms]
        weak2 = [(r[0], r[1], 2 * r[2]) for r in reps[:2]]          # 2n atoms on 2 ranks
        rows += run_worker("ase", system, reps)
        rows += run_worker("lammps", system, reps)
        rows += run_worker("lammps", system, reps + weak2, ranks=2)
    over = []
    if not args.no_overhead:
        sys.path.insert(0, str(HERE))
        import speed_models
        m1000 = speed_models.gapcalc_model_path("cu", 1000)
        one = [(5, 5, 10)]            # 1000 Cu atoms
        two = [(5, 10, 10)]           # 2000 Cu atoms = 1000 per rank
        big = [(20, 20, 20)]          # 32 000: the Allreduce's O(N_total) shows
        over += run_worker("lammps", "Cu", one, model=m1000, steps=20)
        over += run_worker("lammps", "Cu", two + big, ranks=2, sync=True, model=m1000,
                           steps=10)
        over += run_worker("lammps", "Cu", two + big, ranks=2, sync=True, model=m1000,
                           steps=10, reverse="allreduce")
    report(rows, over, load0)
    report_model(rows, over)
    if args.json:
        Path(args.json).write_text(json.dumps(dict(rows=rows, overhead=over,
                                                   load=[load0, os.getloadavg()]), indent=1))


def report(rows, over, load0):
    print("\n## µs/atom/step (velocity Verlet, 300 K, skin 1 Å, 1 Numba thread per rank)\n")
    print("median over steps of the wall time per step (robust to the other jobs' time "
          "slices) / atoms;")
    print("in brackets CPU time of the process (1 rank) or summed over both ranks (2 ranks; "
          "includes MPI's busy waiting), mean over steps\n")
    print("| system | atoms | ASE 1 proc | LAMMPS 1 rank | LAMMPS 2 ranks | strong eff. 2 ranks "
          "| ghosts/owned (2 ranks) | remote ghosts/rank | pairs/atom | peak RSS/rank MB (1 / 2 ranks) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    by = {}
    for r in rows:
        by[(r["system"], r["kind"], r["ranks"], r["atoms"])] = r
    for (system, kind, ranks, n), r in sorted(by.items()):
        if kind != "ase":
            continue
        l1 = by.get((system, "lammps", 1, n))
        l2 = by.get((system, "lammps", 2, n))
        if not (l1 and l2):
            continue
        eff = l1["step_s"] / (2 * l2["step_s"])
        c2 = sum(x["cpu_s"] for x in l2["per_rank"]) / n * 1e6
        print(f"| {system} | {n} | {r['us_atom_step']:.1f} ({r['cpu_us_atom_step']:.1f}) | "
              f"{l1['us_atom_step']:.1f} ({l1['per_rank'][0]['cpu_s'] / n * 1e6:.1f}) | "
              f"{l2['us_atom_step']:.1f} ({c2:.1f}) | {eff:.2f} | "
              f"{mean_rank(l2, 'nghost') / mean_rank(l2, 'nlocal'):.2f} | "
              f"{mean_rank(l2, 'remote'):.0f} | "
              f"{sum(x['pairs'] for x in l1['per_rank']) / n:.0f} | "
              f"{max_rank(l1, 'rss_mb'):.0f} / {max_rank(l2, 'rss_mb'):.0f} |")
    print("\n## weak scaling (same atoms per rank)\n")
    print("| system | atoms/rank | 1 rank ms/step | 2 ranks ms/step | weak eff. |")
    print("|---|---|---|---|---|")
    for (system, kind, ranks, n), r in sorted(by.items()):
        if kind == "lammps" and ranks == 1 and (system, "lammps", 2, 2 * n) in by:
            r2 = by[(system, "lammps", 2, 2 * n)]
            print(f"| {system} | {n} | {r['step_s'] * 1e3:.1f} | {r2['step_s'] * 1e3:.1f} | "
                  f"{r['step_s'] / r2['step_s']:.2f} |")
    print("\n(ms/step: median over steps, mean over ranks)")
    if over:
        print("\n## coupling overhead, Cu M = 1000 (everything but Potential.local_energies)\n")
        print("| ranks | ghost return | atoms | ms/step | model ms | wait for other rank ms "
              "| coupling ms | coupling % | % incl. wait | ghost return ms | 8-double Allreduce + set ms |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for o in overhead_table(over):
            print(f"| {o['ranks']} | {o['reverse']} | {o['atoms']} | {o['step_ms']:.1f} | "
                  f"{o['model_ms']:.1f} | {o['wait_ms']:.2f} | {o['overhead_ms']:.2f} | "
                  f"{o['overhead_pct']:.1f} | {o['overhead_incl_wait_pct']:.1f} | "
                  f"{o['reverse_ms']:.3f} | {o['reduce_ms']:.3f} |")
        print("\nghost return and Allreduce alone, 100 repetitions after the run "
              "(ms, min / median over repetitions, mean over ranks):")
        for r in over:
            if "fold_min" in r["per_rank"][0]:
                print(f"  ranks {r['ranks']} {r['reverse']} {r['atoms']} atoms "
                      f"({mean_rank(r, 'remote'):.0f} remote ghosts/rank): ghost return "
                      f"{mean_rank(r, 'fold_min') * 1e3:.3f} / "
                      f"{mean_rank(r, 'fold_median') * 1e3:.3f}, 8-double Allreduce "
                      f"{mean_rank(r, 'allreduce_min') * 1e3:.3f} / "
                      f"{mean_rank(r, 'allreduce_median') * 1e3:.3f}")
        print("\nbreakdown (ms/step, mean over ranks):")
        for o in overhead_table(over):
            print(f"  ranks {o['ranks']} {o['reverse']} {o['atoms']} atoms: " +
                  ", ".join(f"{k} {v:.3f}" for k, v in o["breakdown_ms"].items()))
    print(f"\nload average: start {load0[0]:.1f}, end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
