"""SOAP descriptor speed: gapcalc against DScribe, featomic and QUIP (quippy).

How to run (from the repository root)::

    pip install -e .[bench]
    python benchmarks/descriptors.py                  # full run, several minutes
    python benchmarks/descriptors.py --quick          # smoke run (1 repeat, fewer molecules)
    python benchmarks/descriptors.py --json out.json  # also dump every number
    python benchmarks/descriptors.py --codes featomic,quippy --workloads W1,W3

What is measured
    For each workload of ``workloads.py`` (W1 Si, W2 water, W3 ethanol molecules,
    W4 Cu) and each code, the time per atom of

    * ``features``:          the SOAP power spectrum of every atom;
    * ``features + grad``:   the same plus its derivatives w.r.t. all positions.

    Shared hyper-parameters: cutoff 5.0 A (cosine transition 0.5 A where the code
    has one), n_max 8, l_max 6, Gaussian atom width 0.5 A, GTO radial basis, all
    species channels.

    Every (code, workload) point runs in its own subprocess, with
    OMP/NUMBA/RAYON/OPENBLAS/MKL thread counts set before anything is imported,
    so thread settings take effect and caches or memory do not leak between
    codes.  Each point is timed as the best of ``--repeats`` (3) repeats, each
    repeat calling the code often enough to last ``--min-time / --repeats``
    seconds, after a warm-up call.  Tables show wall time with CPU time
    (``time.process_time``) in brackets; CPU ~ wall confirms that a
    single-thread run really used one thread, and CPU time is the more robust
    number when other jobs share the machine (``--clock cpu`` bases the ratios
    on it).

    Extra gapcalc runs: 2 threads (NUMBA_NUM_THREADS=2; only meaningful when
    no other job competes for the cores), and the first-call
    (JIT compile) cost with an empty Numba cache and then a warm one.  The run
    uses its own temporary NUMBA_CACHE_DIR: filled by that compile measurement,
    reused by the timing runs, deleted at the end.

Per-code notes
    * DScribe only has analytical SOAP derivatives for non-periodic systems;
      periodic workloads use its (much slower) numerical derivatives, and its
      derivative output is dense (n_centers, n_atoms, 3, n_features).
    * featomic's ``max_radial`` is the largest radial *index*, so n_max=8 is
      ``max_radial=7``.  Its power spectrum keeps both (n1, n2) and (n2, n1) for
      equal species pairs, so it has more features than the others.  Timings are
      of ``compute()`` only (native TensorMap output, no conversion).
    * quippy needs one ``Descriptor`` per central species (``Z=``); times are
      summed over them.  Its feature vector has one extra constant entry.
    * Ratios are (this row's time) / (gapcalc single-thread time): > 1 means
      gapcalc is faster.  gapcalc, DScribe and featomic get the whole list of
      structures in one call (W3: 100 molecules; gapcalc batches them into one
      neighbour list and one kernel call); quippy loops over the structures.

The machine should otherwise be idle: the script warns when it is not.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Callable

import workloads
from _common import thread_env

HYPERS = dict(cutoff=5.0, cutoff_width=0.5, n_max=8, l_max=6, atom_sigma=0.5)
CODES = ("gapcalc", "dscribe", "featomic", "quippy")
DISTRIBUTIONS = {  # code -> PyPI distribution holding it
    "gapcalc": "gapcalc",
    "dscribe": "dscribe",
    "featomic": "featomic",
    "quippy": "quippy-ase",
}
QUICK_ETHANOL = 10  # molecules in W3 for --quick
COMPILE_WORKLOAD = "W1"


# --- one code on one workload (runs inside a worker subprocess) ----------------


@dataclass
class Setup:
    """How to run one code on one workload.

    Built by ``setup_<code>(structures, zs, periodic)`` from the list of
    structures, their sorted atomic numbers and whether any is periodic.
    """

    features: Callable[[], object]
    gradients: Callable[[], object]
    n_features: int
    notes: list[str] = field(default_factory=list)
    jit: bool = False  # first call compiles: never time it


def setup_gapcalc(structures, zs, periodic) -> Setup:
    """``SOAP(...).compute(structures[, gradients=True])``: one batch call for the list."""
    from gapcalc.descriptors import SOAP

    soap = SOAP(species=zs, **HYPERS)
    system = structures[0] if len(structures) == 1 else list(structures)
    return Setup(
        features=lambda: soap.compute(system),
        # position gradients only, as asked of featomic (gradients=["positions"])
        gradients=lambda: soap.compute(system, gradients=True, strain=False),
        n_features=int(soap.n_features),
        jit=True,
    )


def setup_dscribe(structures, zs, periodic) -> Setup:
    """``SOAP(...).create(system)`` / ``.derivatives(system, method=...)``."""
    from dscribe.descriptors import SOAP

    soap = SOAP(
        species=zs,
        r_cut=HYPERS["cutoff"],
        n_max=HYPERS["n_max"],
        l_max=HYPERS["l_max"],
        sigma=HYPERS["atom_sigma"],
        rbf="gto",
        periodic=periodic,
        sparse=False,
    )
    # Analytical SOAP derivatives exist in DScribe for non-periodic systems only.
    method = "numerical" if periodic else "analytical"
    system = structures[0] if len(structures) == 1 else structures
    return Setup(
        features=lambda: soap.create(system, n_jobs=1),
        gradients=lambda: soap.derivatives(
            system, method=method, return_descriptor=True, n_jobs=1
        ),
        n_features=int(soap.get_number_of_features()),
        notes=[f"{method} grad", "dense grad", "no cutoff smoothing"],
    )


def setup_featomic(structures, zs, periodic) -> Setup:
    """``SoapPowerSpectrum(...).compute(structures[, gradients=["positions"]])``."""
    import featomic

    calculator = featomic.SoapPowerSpectrum(
        cutoff={
            "radius": HYPERS["cutoff"],
            "smoothing": {"type": "ShiftedCosine", "width": HYPERS["cutoff_width"]},
        },
        density={"type": "Gaussian", "width": HYPERS["atom_sigma"]},
        basis={
            "type": "TensorProduct",
            "max_angular": HYPERS["l_max"],
            # max_radial is the largest radial index: n_max functions = max_radial + 1
            "radial": {"type": "Gto", "max_radial": HYPERS["n_max"] - 1},
        },
    )
    descriptor = calculator.compute(structures)  # also warms up the radial splines
    per_center = descriptor.keys_to_properties(["neighbor_1_type", "neighbor_2_type"])
    n_features = max(block.values.shape[1] for block in per_center.blocks())
    return Setup(
        features=lambda: calculator.compute(structures),
        gradients=lambda: calculator.compute(structures, gradients=["positions"]),
        n_features=int(n_features),
        notes=["TensorMap output", "n1,n2 both orders"],
    )


def setup_quippy(structures, zs, periodic) -> Setup:
    """``Descriptor("soap ... Z=z").calc(atoms, grad=...)`` per structure and centre Z."""
    from quippy.descriptors import Descriptor

    species = " ".join(str(z) for z in zs)
    descriptors = [
        Descriptor(
            f"soap cutoff={HYPERS['cutoff']} "
            f"cutoff_transition_width={HYPERS['cutoff_width']} "
            f"n_max={HYPERS['n_max']} l_max={HYPERS['l_max']} "
            f"atom_sigma={HYPERS['atom_sigma']} "
            f"n_species={len(zs)} species_Z={{{species}}} Z={z}"
        )
        for z in zs
    ]

    def run(grad: bool):
        return [d.calc(a, grad=grad) for a in structures for d in descriptors]

    return Setup(
        features=lambda: run(False),
        gradients=lambda: run(True),
        n_features=int(descriptors[0].dimensions()),
        notes=["one Descriptor per Z", "+1 constant feature"],
    )


SETUPS = {
    "gapcalc": setup_gapcalc,
    "dscribe": setup_dscribe,
    "featomic": setup_featomic,
    "quippy": setup_quippy,
}


def load_workload(name: str, quick: bool) -> list:
    """The workload as a list of structures (W3 is trimmed with --quick)."""
    if name == "W3" and quick:
        return workloads.ethanol_molecules(QUICK_ETHANOL)
    return workloads.as_list(workloads.WORKLOADS[name][1]())


def _clock(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    """(wall, cpu) seconds per call, averaged over ``calls`` calls."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    return (
        (time.perf_counter() - wall0) / calls,
        (time.process_time() - cpu0) / calls,
    )


def best_time(
    fn: Callable[[], object], min_time: float, repeats: int, jit: bool = False
) -> dict:
    """Best of ``repeats`` repeats, each lasting about ``min_time / repeats`` s
    (best wall and best CPU time are taken independently).

    A first (warm-up) call is always made.  For codes without JIT compilation
    (``jit=False``) it is kept as one of the repeats when it alone lasts longer
    than a repeat should (and at least 0.5 s), so that very slow points are not
    run needlessly often; the best-of statistic then ignores a slow warm-up.
    """
    per_repeat = min_time / repeats
    first_wall, first_cpu = _clock(fn, 1)
    samples = []
    calls = 1
    if not jit and first_wall >= max(per_repeat, 0.5):
        samples.append((first_wall, first_cpu))
    else:
        calibration, _ = _clock(fn, 1)
        calls = max(1, math.ceil(per_repeat / max(calibration, 1e-9)))
    while len(samples) < repeats:
        samples.append(_clock(fn, calls))
    return {
        "wall_s": min(wall for wall, _ in samples),
        "cpu_s": min(cpu for _, cpu in samples),
        "first_call_s": first_wall,
        "calls_per_repeat": calls,
        "repeats": repeats,
    }


def worker_timing(args) -> dict:
    """Time one code on one workload (features, then features + gradients)."""
    structures = load_workload(args.workload, args.quick)
    zs = workloads.species(structures)
    periodic = any(a.pbc.any() for a in structures)
    t0 = time.perf_counter()
    setup = SETUPS[args.worker](structures, zs, periodic)
    setup_s = time.perf_counter() - t0
    features = best_time(setup.features, args.min_time, args.repeats, setup.jit)
    gradients = best_time(setup.gradients, args.min_time, args.repeats, setup.jit)
    return {
        "n_atoms": workloads.n_atoms(structures),
        "n_structures": len(structures),
        "species": zs,
        "n_features": setup.n_features,
        "setup_s": setup_s,
        "features": features,
        "gradients": gradients,
        "notes": setup.notes,
    }


def worker_compile(args) -> dict:
    """First-call cost of gapcalc in a fresh process (NUMBA_CACHE_DIR set by caller)."""
    import numba  # noqa: F401  -- baseline imports, not part of gapcalc's import time
    import numpy  # noqa: F401

    structures = load_workload(args.workload, args.quick)
    atoms = structures[0]
    t0 = time.perf_counter()
    from gapcalc.descriptors import SOAP

    t1 = time.perf_counter()
    soap = SOAP(species=workloads.species(atoms), **HYPERS)
    t2 = time.perf_counter()
    soap.compute(atoms)
    t3 = time.perf_counter()
    soap.compute(atoms, gradients=True)
    t4 = time.perf_counter()
    steady_features = best_time(lambda: soap.compute(atoms), 0.3, 3)["wall_s"]
    steady_gradients = best_time(
        lambda: soap.compute(atoms, gradients=True), 0.3, 3
    )["wall_s"]
    return {
        "n_atoms": len(atoms),
        "import_s": t1 - t0,
        "construct_s": t2 - t1,
        "first_features_s": t3 - t2,
        "first_gradients_s": t4 - t3,
        "steady_features_s": steady_features,
        "steady_gradients_s": steady_gradients,
        "compile_s": (t3 - t2 - steady_features) + (t4 - t3 - steady_gradients),
    }


def run_worker(args) -> None:
    try:
        if args.mode == "compile":
            result = worker_compile(args)
        else:
            result = worker_timing(args)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except Exception as exc:  # reported in the table, the other codes still run
        result = {"error": f"{type(exc).__name__}: {exc}"}
    with open(args.result, "w") as fh:
        json.dump(result, fh)


# --- driver ---------------------------------------------------------------------


def version(code: str) -> str | None:
    try:
        return metadata.version(DISTRIBUTIONS.get(code, code))
    except metadata.PackageNotFoundError:
        return None


def spawn(
    code: str,
    workload: str,
    threads: int,
    opts,
    mode: str = "timing",
    extra_env: dict | None = None,
) -> dict:
    """Run one measurement in a fresh interpreter and return its result dict."""
    env = thread_env(threads, extra_env)
    with tempfile.TemporaryDirectory() as tmp:
        result_path = os.path.join(tmp, "result.json")
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--worker", code,
            "--mode", mode,
            "--workload", workload,
            "--result", result_path,
            "--min-time", str(opts.min_time),
            "--repeats", str(opts.repeats),
        ] + (["--quick"] if opts.quick else [])
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=opts.timeout
            )
        except subprocess.TimeoutExpired:
            proc = None
        elapsed = time.perf_counter() - t0
        if proc is None:
            result = {"error": f"timed out after {opts.timeout:.0f} s"}
        elif os.path.exists(result_path):
            with open(result_path) as fh:
                result = json.load(fh)
        else:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            result = {"error": f"worker exit {proc.returncode}: " + " | ".join(tail)}
    result.update(code=code, workload=workload, threads=threads, elapsed_s=elapsed)
    return result


def machine_info() -> dict:
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "logical_cpus": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import psutil

        info["physical_cpus"] = psutil.cpu_count(logical=False)
        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["busy_percent_at_start"] = psutil.cpu_percent(interval=1.0)
    except ImportError:
        pass
    return info


def us_per_atom(result: dict, key: str, clock: str = "wall_s") -> float | None:
    if "error" in result or key not in result:
        return None
    return result[key][clock] / result["n_atoms"] * 1e6


def expected_features(n_species: int) -> tuple[int, int]:
    """(unique n1<=n2 count as in DScribe/QUIP, both-orders count as in featomic)."""
    n, l_channels = HYPERS["n_max"], HYPERS["l_max"] + 1
    unique = n_species * n * (n_species * n + 1) // 2 * l_channels
    both = n_species * (n_species + 1) // 2 * n * n * l_channels
    return unique, both


def expected_for(code: str, n_species: int) -> int:
    """Feature count each code should report for these hyper-parameters."""
    unique, both = expected_features(n_species)
    return {"featomic": both, "quippy": unique + 1}.get(code, unique)


def _fmt(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return "–"
    return f"{value / reference:.2f}"


def _cell(row: dict, key: str) -> str:
    """'wall (CPU)' microseconds per atom."""
    wall, cpu = us_per_atom(row, key), us_per_atom(row, key, "cpu_s")
    return f"{_fmt(wall)} ({_fmt(cpu)})"


def workload_table(name: str, rows: list[dict], quick: bool, clock: str) -> str:
    description = workloads.WORKLOADS[name][0]
    structures = load_workload(name, quick)
    species = workloads.species(structures)
    unique, both = expected_features(len(species))
    reference = next(
        (r for r in rows if r["code"] == "gapcalc" and r["threads"] == 1), {}
    )
    clock_key = f"{clock}_s"
    ref_feat = us_per_atom(reference, "features", clock_key)
    ref_grad = us_per_atom(reference, "gradients", clock_key)

    lines = [
        f"### {name}: {description}",
        "",
        f"{workloads.n_atoms(structures)} atoms in {len(structures)} "
        f"structure(s), species {species}; expected n_features {unique} "
        f"(unique n1<=n2 pairs) / {both} (featomic, both orders).",
        "",
        "| code | threads | features µs/atom wall (CPU) "
        "| features+grad µs/atom wall (CPU) "
        f"| ratio vs gapcalc, {clock} (feat / grad) | n_features "
        "| peak RSS MB | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        label = f"{row['code']} {version(row['code']) or ''}".strip()
        if "error" in row:
            lines.append(
                f"| {label} | {row['threads']} | – | – | – | – | – "
                f"| error: {row['error'][:120]} |"
            )
            continue
        notes = list(row.get("notes", []))
        expected = expected_for(row["code"], len(species))
        if row["n_features"] != expected:
            notes.insert(0, f"**n_features differs from expected {expected}**")
        if row["code"] == "gapcalc" and row["threads"] > 1 and ref_grad:
            # Parallel speed-up is a wall-clock quantity whatever --clock says.
            wall_feat = us_per_atom(reference, "features")
            wall_grad = us_per_atom(reference, "gradients")
            notes.append(
                f"wall speed-up x{wall_feat / us_per_atom(row, 'features'):.2f} feat"
                f" / x{wall_grad / us_per_atom(row, 'gradients'):.2f} grad"
            )
        feat = us_per_atom(row, "features", clock_key)
        grad = us_per_atom(row, "gradients", clock_key)
        lines.append(
            f"| {label} | {row['threads']} | {_cell(row, 'features')} "
            f"| {_cell(row, 'gradients')} "
            f"| {_ratio(feat, ref_feat)} / {_ratio(grad, ref_grad)} "
            f"| {row['n_features']} | {row['peak_rss_mb']:.0f} | {', '.join(notes)} |"
        )
    return "\n".join(lines)


def compile_table(rows: list[tuple[str, dict]]) -> str:
    lines = [
        f"### gapcalc first-call (JIT) cost on {COMPILE_WORKLOAD}",
        "",
        "| Numba cache | import s | first features call s | first features+grad "
        "call s | steady features s | steady features+grad s | compile overhead s |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, row in rows:
        if "error" in row:
            lines.append(f"| {label} | error: {row['error'][:120]} |" + " |" * 5)
            continue
        lines.append(
            f"| {label} | {row['import_s']:.2f} | {row['first_features_s']:.2f} "
            f"| {row['first_gradients_s']:.2f} | {row['steady_features_s']:.3f} "
            f"| {row['steady_gradients_s']:.3f} | {row['compile_s']:.2f} |"
        )
    return "\n".join(lines)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_driver(opts) -> None:
    codes = [c.strip() for c in opts.codes.split(",") if c.strip()]
    names = [w.strip() for w in opts.workloads.split(",") if w.strip()]
    unknown = set(codes) - set(CODES) | set(names) - set(workloads.WORKLOADS)
    if unknown:
        sys.exit(f"unknown code(s)/workload(s): {sorted(unknown)}")

    info = machine_info()
    log(f"machine: {info}")
    if info.get("busy_percent_at_start", 0) > 10:
        log(
            f"WARNING: CPU already {info['busy_percent_at_start']:.0f}% busy; "
            "wall times will be inflated (CPU times are more robust)."
        )

    # One Numba cache for the whole run, outside the source tree: the compile
    # measurement fills it (cold, then warm), and the timing runs reuse it.
    with tempfile.TemporaryDirectory(prefix="gapcalc-numba-cache-") as cache:
        numba_env = {"NUMBA_CACHE_DIR": cache}
        compile_rows = []
        if "gapcalc" in codes and opts.compile:
            for label in ("empty (cold)", "warm"):
                log(f"gapcalc first call, {label} Numba cache ...")
                row = spawn("gapcalc", COMPILE_WORKLOAD, 1, opts, "compile", numba_env)
                compile_rows.append((label, row))
                log(f"    {row.get('error') or 'ok'}  [{row['elapsed_s']:.1f} s]")

        results: dict[str, list[dict]] = {}
        for name in names:
            results[name] = []
            plan = [(code, 1) for code in codes]
            if "gapcalc" in codes and opts.threads2:
                plan.insert(codes.index("gapcalc") + 1, ("gapcalc", 2))
            for code, threads in plan:
                if threads > 1 and "error" in results[name][-1]:
                    continue  # gapcalc does not run at all: skip its 2-thread run
                log(f"{name} {code} ({threads} thread{'s' * (threads > 1)}) ...")
                row = spawn(code, name, threads, opts, "timing", numba_env)
                results[name].append(row)
                status = row.get("error") or (
                    f"{_fmt(us_per_atom(row, 'features'), 1)} / "
                    f"{_fmt(us_per_atom(row, 'gradients'), 1)} µs/atom"
                )
                log(f"    {status}  [{row['elapsed_s']:.1f} s]")

    versions = {c: version(c) for c in CODES}
    for dist in ("numpy", "numba", "scipy", "ase"):
        versions[dist] = version(dist)
    header = [
        "## SOAP descriptor benchmark",
        "",
        f"Hyper-parameters: {HYPERS}, GTO radial basis, all species channels.",
        f"Machine: {info.get('cpu', '?')}, {info.get('logical_cpus')} logical CPUs; "
        f"Python {info['python']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
        f"Timing: best of {opts.repeats} repeats of >= {opts.min_time / opts.repeats:.2f} s"
        f"{' (QUICK smoke run, not representative)' if opts.quick else ''}; "
        f"ratios = row {opts.clock} time / gapcalc 1-thread {opts.clock} time.",
    ]
    if info.get("busy_percent_at_start", 0) > 10:
        header.append(
            f"WARNING: the machine was {info['busy_percent_at_start']:.0f}% busy at "
            "the start; wall times may be inflated (compare CPU times)."
        )
    sections = ["\n".join(header)]
    sections += [
        workload_table(name, rows, opts.quick, opts.clock)
        for name, rows in results.items()
    ]
    if compile_rows:
        sections.append(compile_table(compile_rows))
    print("\n\n".join(sections))

    if opts.json:
        payload = {
            "machine": info,
            "versions": versions,
            "hypers": HYPERS,
            "options": {
                k: getattr(opts, k) for k in ("quick", "min_time", "repeats", "clock")
            },
            "results": results,
            "compile": [dict(row, cache=label) for label, row in compile_rows],
        }
        with open(opts.json, "w") as fh:
            json.dump(payload, fh, indent=1)
        log(f"wrote {opts.json}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="SOAP descriptor benchmark: gapcalc vs DScribe, featomic, quippy."
    )
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 repeat, no minimum time, 10 ethanol molecules")
    parser.add_argument("--json", metavar="PATH", help="write all numbers to PATH")
    parser.add_argument("--codes", default=",".join(CODES),
                        help="comma-separated subset of %(default)s")
    parser.add_argument("--workloads", default=",".join(workloads.WORKLOADS),
                        help="comma-separated subset of %(default)s")
    parser.add_argument("--min-time", type=float, default=None,
                        help="seconds of timing per point, split over the repeats "
                        "(default 1.0, 0 with --quick)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="repeats per point, best one kept (default 3, 1 with --quick)")
    parser.add_argument("--no-threads2", dest="threads2", action="store_false",
                        help="skip the 2-thread gapcalc runs")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="skip the gapcalc compile-time runs")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="time used for the ratios (default wall; cpu is more "
                        "robust on a busy machine, single-thread rows only)")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds allowed per subprocess (default %(default)s)")
    # Internal: a single measurement inside a subprocess.
    parser.add_argument("--worker", choices=CODES, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="timing", choices=("timing", "compile"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.min_time is None:
        opts.min_time = 0.0 if opts.quick else 1.0
    if opts.repeats is None:
        opts.repeats = 1 if opts.quick else 3
    return opts


def main(argv=None) -> None:
    opts = parse_args(argv)
    if opts.worker:
        run_worker(opts)
    else:
        run_driver(opts)


if __name__ == "__main__":
    main()
