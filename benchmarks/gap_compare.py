"""Accuracy and fit cost: gapcalc against gap_fit (QUIP/GAP) with identical hyper-parameters.

How to run (from the repository root, in a venv with quippy-ase and gap_fit)::

    python benchmarks/gap_compare.py                     # Si split, SOAP+2b and SOAP-only, + EMT Cu
    python benchmarks/gap_compare.py --quick             # EMT Cu only (small, minutes)
    python benchmarks/gap_compare.py --json out.json
    python benchmarks/gap_compare.py --variants soap2b --reuse   # reuse finished runs in --workdir

What is measured
    Data sets:
      * ``si``: the mlearn Si train/test split in ``benchmarks/data/si_mlearn`` (214/25 frames).
        gap_fit reads the original extxyz file directly (energy/forces/virial keys).
      * ``cu``: EMT Cu, 3x3x3 fcc (108 atoms), 30 frames at 800 K + 30 at 1400 K,
        2/3 of each for training, the rest for testing (``gapcalc.datasets.emt_frames``);
        written once to extxyz with ``energy``, ``forces`` and ``virial`` (gap_fit convention)
        and given to both codes.
    Variants: ``soap`` (SOAP only) and ``soap2b`` (SOAP + 2-body).
    Shared hyper-parameters: SOAP cutoff 5.0, transition 0.5, n_max 8, l_max 6,
    atom_sigma 0.5, dot-product kernel zeta 4, delta 1.0, n_sparse 1000 CUR
    (500 for cu); sigmas 0.002 eV/atom, 0.1 eV/A, 0.1 eV/atom (virial); e0 average;
    2-body: cutoff 5.0, squared-exponential pair kernel, delta 0.5, theta 1.0 A, 20 sparse
    points (gap_fit: uniform in distance; gapcalc: its "distance" term, CUR, at most its
    27 Gaussian pair features).

    Every fit runs in its own subprocess with all thread counts set to 1:
      * gap_fit: ``gap_fit`` is run as a child of a small Python worker; CPU time and peak
        RSS come from ``resource.getrusage(RUSAGE_CHILDREN)`` (user+sys, ru_maxrss).
      * gapcalc: ``SparseGPR(...).fit(train)`` in the worker; CPU = ``time.process_time``
        around the fit (includes JIT compilation; the Numba cache is warm after the
        first run), peak RSS = ``ru_maxrss`` of the worker (includes reading data).
    Evaluation is the same for both: the fitted model as an ASE calculator
    (``quippy.potential.Potential(param_filename=...)`` / ``GAPCalculator``) on every test
    frame; energy MAE (meV/atom), force-component MAE (eV/A), stress RMSE over all 9
    components (GPa) against the reference stress (ASE sign).  Evaluation runs in a
    separate subprocess so it does not count towards the fit's peak RSS.
    Ratios are gapcalc / gap_fit (< 1: gapcalc smaller error / cheaper).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import run_gap_fit, thread_env

HERE = Path(__file__).resolve().parent
SI_DIR = HERE / "data" / "si_mlearn"
EV_A3_TO_GPA = 160.21766208

SOAP = dict(cutoff=5.0, cutoff_width=0.5, n_max=8, l_max=6, atom_sigma=0.5)
ZETA, DELTA = 4, 1.0
SIGMAS = (0.002, 0.1, 0.1)
TWO_BODY = dict(cutoff=5.0, delta=0.5, theta=1.0, n_sparse=20)
N_SPARSE = {"si": 1000, "cu": 500}
CU_FRAMES = {800.0: 30, 1400.0: 30}  # temperature -> frames; 2/3 train, 1/3 test


# --- data ---------------------------------------------------------------------------


def dataset_files(name: str, workdir: Path) -> tuple[Path, Path]:
    if name == "si":
        return SI_DIR / "si_mlearn_train.xyz", SI_DIR / "si_mlearn_test.xyz"
    if name == "cu":
        train, test = workdir / "cu_train.xyz", workdir / "cu_test.xyz"
        if not (train.exists() and test.exists()):
            make_cu(train, test)
        return train, test
    raise ValueError(name)


def make_cu(train_path: Path, test_path: Path) -> None:
    """EMT Cu frames -> extxyz with energy (info), forces (arrays), virial (info)."""
    import numpy as np
    from ase.io import write
    from gapcalc.datasets import emt_frames

    train, test = [], []
    for i, (temp, n) in enumerate(CU_FRAMES.items()):
        frames = emt_frames("Cu", n_frames=n, size=(3, 3, 3), temperature=temp, seed=10 + i,
                            config_type=f"T{int(temp)}")
        n_train = (2 * n) // 3
        train += frames[:n_train]
        test += frames[n_train:]
    out = []
    for group in (train, test):
        plain = []
        for at in group:
            e, f, s = at.get_potential_energy(), at.get_forces(), at.get_stress(voigt=False)
            a = at.copy()
            a.calc = None
            a.info["energy"] = float(e)
            a.arrays["forces"] = np.array(f)
            a.info["virial"] = -s * at.get_volume()
            plain.append(a)
        out.append(plain)
    tmp_train, tmp_test = train_path.with_suffix(".tmp.xyz"), test_path.with_suffix(".tmp.xyz")
    write(tmp_train, out[0], format="extxyz")
    write(tmp_test, out[1], format="extxyz")
    os.replace(tmp_train, train_path)
    os.replace(tmp_test, test_path)


def read_frames(path: Path):
    from ase.io import read
    return read(str(path), ":", format="extxyz")


def reference(at):
    """(energy eV, forces eV/A, stress 3x3 eV/A^3 ASE sign or None) of a data frame."""
    import numpy as np
    if "REF_energy" in at.info:
        e = at.info["REF_energy"]
    elif "energy" in at.info:
        e = at.info["energy"]
    else:
        e = at.calc.results["energy"]
    if "REF_forces" in at.arrays:
        f = at.arrays["REF_forces"]
    elif "forces" in at.arrays:
        f = at.arrays["forces"]
    else:
        f = at.calc.results["forces"]
    s = None
    if "virial" in at.info:
        s = -np.asarray(at.info["virial"], dtype=float).reshape(3, 3) / at.get_volume()
    return float(e), np.array(f, dtype=float), s


# --- workers ---------------------------------------------------------------------------


def gap_fit_command(train: Path, variant: str, n_sparse: int, gp_file: str,
                    radial_basis: str | None = None, rnd_seed: int = 1) -> list[str]:
    # QUIP's default SOAP radial basis ("ORIGINAL", equispaced Gaussians) is not the one
    # gapcalc uses; radial_basis="GTO" selects QUIP's Gaussian-type-orbital basis instead
    basis = f"radial_basis={radial_basis} " if radial_basis else ""
    soap = (f"soap {basis}cutoff={SOAP['cutoff']} cutoff_transition_width={SOAP['cutoff_width']} "
            f"n_max={SOAP['n_max']} l_max={SOAP['l_max']} atom_sigma={SOAP['atom_sigma']} "
            f"zeta={ZETA} delta={DELTA} covariance_type=dot_product "
            f"n_sparse={n_sparse} sparse_method=cur_points")
    gap = soap
    if variant == "soap2b":
        gap = (f"distance_2b cutoff={TWO_BODY['cutoff']} covariance_type=ard_se "
               f"delta={TWO_BODY['delta']} theta_uniform={TWO_BODY['theta']} "
               f"n_sparse={TWO_BODY['n_sparse']} sparse_method=uniform : " + soap)
    gap_fit = shutil.which("gap_fit") or str(Path(sys.executable).parent / "gap_fit")
    return [gap_fit, f"at_file={train}", f"gap={{{gap}}}",
            "default_sigma={%g %g %g 0.0}" % SIGMAS, "e0_method=average",
            "energy_parameter_name=energy", "force_parameter_name=forces",
            "virial_parameter_name=virial", "do_copy_at_file=F", "sparse_separate_file=F",
            f"rnd_seed={rnd_seed}", f"gp_file={gp_file}"]


def worker_gap_fit(dataset: str, variant: str, workdir: Path,
                   radial_basis: str | None = None, rnd_seed: int = 1) -> dict:
    train, _ = dataset_files(dataset, workdir.parent)
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = gap_fit_command(train, variant, N_SPARSE[dataset], "gap.xml", radial_basis,
                          rnd_seed)
    (workdir / "command.txt").write_text(" ".join(cmd) + "\n")
    return {"code": "gap_fit", "dataset": dataset, "variant": variant,
            **run_gap_fit(cmd, workdir), "model": str(workdir / "gap.xml"),
            "command": " ".join(cmd)}


def make_gapcalc_model(variant: str, n_sparse: int, species, radial_basis: str = "gto"):
    from gapcalc import SparseGPR
    from gapcalc.descriptors import SOAP as GSOAP
    kw = {}
    if variant == "soap2b":
        # gapcalc's "distance" 2-body term is gap_fit's distance_2b pair kernel
        # δ² f_c f_c' exp(-(r-r')²/2θ²) (a linear model on Gaussian pair features)
        kw = dict(two_body="distance", delta_2b=TWO_BODY["delta"], theta_2b=TWO_BODY["theta"],
                  n_sparse_2b=TWO_BODY["n_sparse"])
    return SparseGPR(descriptor=GSOAP(species=species, radial_basis=radial_basis, **SOAP),
                     zeta=ZETA, delta=DELTA,
                     n_sparse=n_sparse, sparse_method="cur", sigma_energy=SIGMAS[0],
                     sigma_force=SIGMAS[1], sigma_virial=SIGMAS[2], e0="average", **kw)


def worker_gapcalc(dataset: str, variant: str, workdir: Path, radial_basis: str = "gto",
                   recipe: bool = False, seed: int | None = None) -> dict:
    train_path, _ = dataset_files(dataset, workdir.parent)
    workdir.mkdir(parents=True, exist_ok=True)
    frames = read_frames(train_path)
    species = sorted({int(z) for a in frames for z in a.numbers})
    if recipe:
        # the very gap_fit command line gap_fit runs, read by gapcalc's gap_fit argument
        # parser (gapcalc.gapfit_args): same descriptors, kernels, sparsification, sigmas,
        # e0, sparse_jitter and rnd_seed
        from gapcalc import SparseGPR
        cmd = gap_fit_command(train_path, variant, N_SPARSE[dataset], "gap.xml")
        model = SparseGPR.from_gap_fit(cmd[1:], species=species, radial_basis=radial_basis)
        (workdir / "recipe.txt").write_text(" ".join(cmd[1:]) + "\n")
    else:
        model = make_gapcalc_model(variant, N_SPARSE[dataset], species, radial_basis)
    if seed is not None:                 # gapcalc's sparse-point seed (spread of results)
        model.seed = seed
    c0, t0 = time.process_time(), time.perf_counter()
    model.fit(frames)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    path = workdir / "model.npz"
    model.save(str(path))
    if not path.exists():  # save() may add its own suffix
        cands = sorted(workdir.glob("model*"))
        path = cands[0] if cands else path
    return {"code": "gapcalc", "radial_basis": radial_basis, "dataset": dataset,
            "variant": variant, "fit_cpu_s": cpu,
            "fit_wall_s": wall,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "model": str(path), "recipe": recipe, "seed": model.seed,
            "training_summary": getattr(model, "training_summary_", None),
            "M": int(model.M_)}


def worker_evaluate(code: str, model_path: str, dataset: str, workdir: Path) -> dict:
    import numpy as np
    _, test_path = dataset_files(dataset, workdir.parent)
    frames = read_frames(test_path)
    if code == "gap_fit":
        from quippy.potential import Potential
        calc = Potential(param_filename=model_path)
    else:
        from gapcalc.calculator import GAPCalculator
        calc = GAPCalculator(model_path)
    de, df, ds = [], [], []
    c0 = time.process_time()
    n_atoms = 0
    for at in frames:
        e_ref, f_ref, s_ref = reference(at)
        a = at.copy()
        a.calc = calc
        e = a.get_potential_energy()
        f = a.get_forces()
        de.append((e - e_ref) / len(a))
        df.append((f - f_ref).ravel())
        n_atoms += len(a)
        if s_ref is not None and a.pbc.all():
            ds.append((a.get_stress(voigt=False) - s_ref).ravel())
    cpu = time.process_time() - c0
    de, df = np.array(de), np.concatenate(df)
    out = {"energy_mae_mev": 1e3 * float(np.mean(np.abs(de))),
           "energy_rmse_mev": 1e3 * float(np.sqrt(np.mean(de ** 2))),
           "force_mae": float(np.mean(np.abs(df))),
           "force_rmse": float(np.sqrt(np.mean(df ** 2))),
           "eval_cpu_us_per_atom": 1e6 * cpu / n_atoms, "n_test": len(frames)}
    if ds:
        ds = np.concatenate(ds)
        out["stress_rmse_gpa"] = EV_A3_TO_GPA * float(np.sqrt(np.mean(ds ** 2)))
    return out


def run_worker(opts) -> None:
    workdir = Path(opts.workdir)
    if opts.n_sparse:
        N_SPARSE.update({k: opts.n_sparse for k in N_SPARSE})
    if opts.worker == "gap_fit":
        res = worker_gap_fit(opts.dataset, opts.variant, workdir, opts.quip_radial_basis,
                             opts.gap_fit_seed)
    elif opts.worker == "gapcalc":
        res = worker_gapcalc(opts.dataset, opts.variant, workdir, opts.radial_basis,
                             opts.recipe, opts.seed)
    else:  # evaluate
        res = worker_evaluate(opts.code, opts.model, opts.dataset, workdir)
    Path(opts.result).write_text(json.dumps(res, indent=1))


# --- driver --------------------------------------------------------------------------------
def log(msg: str) -> None:
    print(f"[gap_compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def spawn(args: list[str], result: Path, timeout: float) -> dict | None:
    """Run this script as a single-threaded worker subprocess; return its JSON result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *args, "--result", str(result)]
    log(" ".join(args))
    try:
        proc = subprocess.run(cmd, env=thread_env(1), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"timeout after {timeout:.0f} s")
        return None
    if proc.returncode != 0 or not result.exists():
        log(f"worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return None
    return json.loads(result.read_text())


def measure(dataset, variant, code, opts) -> dict | None:
    base = Path(opts.workdir)
    basis = opts.radial_basis if code == "gapcalc" else "gto"
    wd = base / (f"{dataset}_{variant}_{code}" + (f"_{basis}" if basis != "gto" else "")
                 + (f"_M{opts.n_sparse}" if opts.n_sparse else "")
                 + ("_recipe" if opts.recipe and code == "gapcalc" else "")
                 + (f"_s{opts.seed}" if opts.seed is not None and code == "gapcalc" else "")
                 + (f"_rs{opts.gap_fit_seed}" if opts.gap_fit_seed != 1 and code == "gap_fit"
                    else ""))
    wd.mkdir(parents=True, exist_ok=True)
    fit_json, eval_json = wd / "fit.json", wd / "eval.json"
    if opts.reuse and fit_json.exists():
        fit = json.loads(fit_json.read_text())
        log(f"reusing {fit_json}")
    else:
        for f in (fit_json, eval_json):
            f.unlink(missing_ok=True)
        extra = (["--quip-radial-basis", opts.quip_radial_basis]
                 if code == "gap_fit" and opts.quip_radial_basis else [])
        if code == "gap_fit":
            extra += ["--gap-fit-seed", str(opts.gap_fit_seed)]
        if code == "gapcalc":
            extra = ["--radial-basis", opts.radial_basis] + (["--recipe"] if opts.recipe else [])
            if opts.seed is not None:
                extra += ["--seed", str(opts.seed)]
        if opts.n_sparse:
            extra += ["--n-sparse", str(opts.n_sparse)]
        fit = spawn(["--worker", code, "--dataset", dataset, "--variant", variant,
                     "--workdir", str(wd), *extra], fit_json, opts.timeout)
    if fit is None:
        return None
    if opts.reuse and eval_json.exists():
        ev = json.loads(eval_json.read_text())
    else:
        ev = spawn(["--worker", "evaluate", "--code", code, "--model", fit["model"],
                    "--dataset", dataset, "--workdir", str(wd)], eval_json, opts.timeout)
    return {**fit, **(ev or {})}


COLUMNS = [("energy_mae_mev", "E MAE meV/at", 2), ("force_mae", "F MAE eV/Å", 4),
           ("stress_rmse_gpa", "S RMSE GPa", 3), ("fit_cpu_s", "fit CPU s", 0),
           ("fit_wall_s", "fit wall s", 0), ("peak_rss_mb", "peak RSS MB", 0)]


def _fmt(x, nd):
    return "-" if x is None else f"{x:.{nd}f}"


def table(dataset: str, rows: dict) -> str:
    lines = [f"### {dataset}: gapcalc vs gap_fit (single thread, same hyper-parameters)", "",
             "| variant | code | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for variant, by_code in rows.items():
        for code, r in by_code.items():
            label = code
            if code == "gapcalc" and r and r.get("radial_basis", "gto") != "gto":
                label = f"gapcalc ({r['radial_basis']} basis)"
            lines.append(f"| {variant} | {label} | "
                         + " | ".join(_fmt(r.get(k) if r else None, nd) for k, _, nd in COLUMNS)
                         + " |")
        a, b = by_code.get("gapcalc"), by_code.get("gap_fit")
        if a and b:
            cells = []
            for k, _, _ in COLUMNS:
                if a.get(k) is not None and b.get(k):
                    cells.append(f"{a[k] / b[k]:.2f}")
                else:
                    cells.append("-")
            lines.append(f"| {variant} | **ratio gapcalc/gap_fit** | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_driver(opts) -> None:
    datasets = (opts.datasets or ("cu" if opts.quick else "si,cu")).split(",")
    variants = opts.variants.split(",")
    codes = opts.codes.split(",")
    Path(opts.workdir).mkdir(parents=True, exist_ok=True)
    if opts.n_sparse:
        N_SPARSE.update({k: opts.n_sparse for k in N_SPARSE})
    results: dict = {"hypers": {"soap": SOAP, "zeta": ZETA, "delta": DELTA, "sigmas": SIGMAS,
                                "two_body": TWO_BODY, "n_sparse": N_SPARSE,
                                "gapcalc_radial_basis": opts.radial_basis,
                                "recipe": opts.recipe},
                     "python": sys.version.split()[0], "results": {}}
    out = []
    for ds in datasets:
        rows: dict = {}
        for variant in variants:
            rows[variant] = {}
            for code in codes:
                rows[variant][code] = measure(ds, variant, code, opts)
        results["results"][ds] = rows
        out.append(table(ds, rows))
        print(out[-1] + "\n", flush=True)
    if opts.json:
        Path(opts.json).write_text(json.dumps(results, indent=1, default=str))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="EMT Cu comparison only")
    p.add_argument("--json", help="write every number to this JSON file")
    p.add_argument("--datasets", default=None, help="comma list of si,cu (default: si,cu; "
                   "--quick: cu)")
    p.add_argument("--variants", default="soap2b,soap", help="comma list of soap2b,soap")
    p.add_argument("--codes", default="gap_fit,gapcalc")
    p.add_argument("--workdir", default="/tmp/gap_compare", help="models, logs, cached data")
    p.add_argument("--quip-radial-basis", default=None,
                   help="radial_basis= for gap_fit's SOAP (e.g. GTO, POLY; default: QUIP's "
                        "own default, equispaced Gaussians)")
    p.add_argument("--radial-basis", default="gto", choices=["gto", "quip", "quip_gto"],
                   help="gapcalc's SOAP radial basis (default: gto, gapcalc's own)")
    p.add_argument("--quip-basis", dest="radial_basis", action="store_const", const="quip",
                   help="gapcalc with QUIP's default SOAP basis (= --radial-basis quip): the "
                        "same descriptor as gap_fit's default")
    p.add_argument("--recipe", action="store_true",
                   help="build gapcalc's model from gap_fit's own command line through "
                        "gapcalc's gap_fit argument parser (SparseGPR.from_gap_fit)")
    p.add_argument("--n-sparse", type=int, default=None,
                   help="SOAP sparse points per species for both codes (default: 1000 si, "
                        "500 cu): a smaller, same-recipe comparison")
    p.add_argument("--seed", type=int, default=None,
                   help="gapcalc's random seed (sparse points) instead of the recipe's: "
                        "repeat with several seeds to see the spread of the errors")
    p.add_argument("--gap-fit-seed", type=int, default=1,
                   help="gap_fit's rnd_seed (sparse points; default 1, the recipe's): "
                        "repeat to see gap_fit's own spread")
    p.add_argument("--reuse", action="store_true",
                   help="reuse finished fits/evaluations found in --workdir")
    p.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per subprocess")
    # internal: one measurement in a subprocess
    p.add_argument("--worker", choices=["gap_fit", "gapcalc", "evaluate"], help=argparse.SUPPRESS)
    p.add_argument("--dataset", help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--code", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> None:
    opts = parse_args(argv)
    if opts.worker:
        run_worker(opts)
    else:
        run_driver(opts)


if __name__ == "__main__":
    main()
