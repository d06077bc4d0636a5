"""Helpers shared by the training scripts ``potentials/train_*.py`` (not part of the API).

They read the data copies in ``benchmarks/data``, tabulate errors per config_type with
:func:`gapcalc.metrics.error_table`, time MD in a fresh process, describe the machine
and write the model card (Markdown, with a machine-readable summary in an HTML comment
that ``tests/test_potentials.py`` reads to derive its error bounds).

Also runnable on its own, to time MD of a model file, or to (re)write the check record
of a shipped model's card (its errors on committed frames, which the tests reproduce):

    python3 potentials/_training.py speed MODEL.npz STRUCTURE.xyz [--steps N] [--temperature K]
    python3 potentials/_training.py check water
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = REPO / "benchmarks" / "data"

log = logging.getLogger("train")

EV_A3_TO_GPA = 160.21766208


def setup_logging(logfile=None, verbose=False):
    from gapcalc.cli import _setup_logging   # the command line's logging format
    _setup_logging(verbose, logfile)


def rel(path) -> str:
    """Path relative to the repository root, for the model card."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------- machine
def machine() -> dict:
    """CPU, cores, library versions and load: the context of every timing."""
    import ase
    import numba
    import scipy
    import gapcalc
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    except (ValueError, OSError, AttributeError):
        mem = float("nan")
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_GiB": round(mem, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
        "numba": numba.__version__, "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "ase": ase.__version__, "gapcalc": gapcalc.__version__,
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "date": datetime.date.today().isoformat(),
    }


def machine_text(m: dict) -> str:
    return (f"{m['cpu']}, {m['cores']} cores ({m['numba_threads']} Numba threads), "
            f"{m['memory_GiB']} GiB RAM, {m['os']}; Python {m['python']}, NumPy {m['numpy']}, "
            f"SciPy {m['scipy']}, Numba {m['numba']}, ASE {m['ase']}, gapcalc {m['gapcalc']}; "
            f"1-min load average {m['load_average_1min']} when the measurement started "
            f"(the machine was shared with other jobs); {m['date']}")


# ----------------------------------------------------------------------------- errors
def errors(model, frames) -> dict:
    """:func:`gapcalc.metrics.error_table` plus how long it took."""
    from gapcalc.metrics import error_table
    t0 = time.perf_counter()
    table = error_table(model, frames)
    table["seconds"] = round(time.perf_counter() - t0, 1)
    return table


def markdown_errors(table, title=None) -> str:
    """Error table (from error_table) as Markdown: meV/atom, eV/Å, GPa."""
    def f(x, scale=1.0, nd=3):
        return "–" if x is None else f"{x * scale:.{nd}f}"
    lines = []
    if title:
        lines += [f"**{title}**", ""]
    lines += ["| config_type | frames | E RMSE (meV/atom) | E MAE (meV/atom) | F RMSE (eV/Å) "
              "| F MAE (eV/Å) | stress RMSE (GPa) |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    rows = list(table["per_config_type"].items()) + [("**all**", table["overall"])]
    for name, r in rows:
        lines.append(f"| {name} | {r['n_frames']} | {f(r['energy_rmse'], 1e3, 2)} | "
                     f"{f(r['energy_mae'], 1e3, 2)} | {f(r['force_rmse'], nd=4)} | "
                     f"{f(r['force_mae'], nd=4)} | {f(r['stress_rmse'], EV_A3_TO_GPA, 3)} |")
    return "\n".join(lines)


def compact(table) -> dict:
    """The overall and per-config_type RMSEs (eV/atom, eV/Å, eV/Å³) for the JSON summary."""
    keep = ("energy_rmse", "force_rmse", "stress_rmse", "n_frames")
    return {"overall": {k: table["overall"][k] for k in keep},
            "per_config_type": {ct: {k: r[k] for k in keep}
                                for ct, r in table["per_config_type"].items()}}


def check_record(model_path, data_path, indices=None) -> dict:
    """Errors of the *saved* model file on committed frames, for the card's summary.

    ``tests/test_potentials.py`` re-evaluates the shipped file on the same frames of the
    same committed file and requires these numbers to relative 1e-6: the card states
    what the file does. ``indices`` None = every frame of ``data_path``.
    """
    import ase.io
    from gapcalc import load_model_file
    from gapcalc.metrics import error_table
    frames = ase.io.read(data_path, ":")
    indices = list(range(len(frames))) if indices is None else [int(i) for i in indices]
    table = error_table(load_model_file(model_path), [frames[i] for i in indices])
    keep = ("energy_rmse", "energy_mae", "force_rmse", "force_mae", "stress_rmse", "n_frames")
    return {"data": rel(data_path), "frames": indices,
            "overall": {k: table["overall"][k] for k in keep}}


def check_text(rec) -> str:
    """One Markdown paragraph saying what the test of the shipped file checks."""
    o = rec["overall"]
    stress = ("" if o.get("stress_rmse") is None
              else f", stress RMSE {o['stress_rmse'] * EV_A3_TO_GPA:.4f} GPa")
    return (f"The shipped file itself, evaluated on {o['n_frames']} committed frames "
            f"(`{rec['data']}`, frames {_ranges(rec['frames'])}): energy RMSE "
            f"{o['energy_rmse'] * 1e3:.4f} meV/atom, force RMSE {o['force_rmse']:.5f} eV/Å"
            f"{stress}. `tests/test_potentials.py` recomputes these numbers from the file "
            "(relative tolerance 1e-6).")


def _ranges(idx) -> str:
    idx = list(idx)
    if idx == list(range(idx[0], idx[0] + len(idx))):
        return f"{idx[0]}–{idx[-1]}"
    return ", ".join(map(str, idx))


def resolve_noise(model, sigma_energy=None, sigma_force=None, sigma_virial=None):
    """Re-solve a fitted model (fit with its training triangles) for other noise levels.

    Changing σ_t only rescales the QR triangle of target type t, so no descriptor is
    recomputed (the same algebra as :func:`gapcalc.tuning.cross_validate`). Returns a
    new SparseGPR sharing sparse points with ``model``; ``model`` is left unchanged.
    """
    import copy
    from gapcalc.solver import solve_regularised
    new = {"energy": sigma_energy or model.sigma_energy, "force": sigma_force or model.sigma_force,
           "virial": sigma_virial or model.sigma_virial}
    old = {"energy": model.sigma_energy, "force": model.sigma_force, "virial": model.sigma_virial}
    scales = [old[t] / new[t] for t in ("energy", "force", "virial")]
    alpha, R = solve_regularised(list(model.triangles_), model.U_, scales)
    m = copy.copy(model)
    m.terms_ = [copy.copy(t) for t in model.terms_]
    m._set_alpha(alpha)
    m.R_ = R
    m.sigma_energy, m.sigma_force, m.sigma_virial = new["energy"], new["force"], new["virial"]
    m.triangles_ = None
    return m


# ----------------------------------------------------------------------------- MD speed
def _speed_worker(model_path, structure, steps, temperature, warmup):
    """In this process: load the model, warm up (compile), then time Langevin MD."""
    import ase.io
    import gapcalc
    from gapcalc.md import run_md
    atoms = ase.io.read(structure)
    atoms.calc = gapcalc.load(model_path)
    run_md(atoms, steps=warmup, temperature=temperature, ensemble="langevin",
           log_interval=max(warmup, 1))
    t0 = time.perf_counter()
    run_md(atoms, steps=steps, temperature=temperature, ensemble="langevin",
           log_interval=max(steps, 1), init_velocities=False)
    wall = time.perf_counter() - t0
    return {"n_atoms": len(atoms), "steps": steps, "wall_s": round(wall, 2),
            "us_per_atom_step": round(wall / steps / len(atoms) * 1e6, 1),
            "temperature_K": temperature}


def md_speed(model_path, atoms, steps=50, temperature=300.0, warmup=5, blas_threads=None) -> dict:
    """µs/atom/step of Langevin MD (1 fs) of ``atoms``, measured in a fresh process.

    A fresh process so that the number includes nothing of the fit (memory, caches) and
    the BLAS thread count can be set (``blas_threads``; None = the library default).
    Compilation is excluded (``warmup`` steps first, Numba cache on disk).
    """
    import ase.io
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        structure = Path(tmp) / "start.xyz"
        ase.io.write(structure, atoms)
        env = dict(os.environ)
        if blas_threads is not None:
            for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = str(blas_threads)
        cmd = [sys.executable, str(Path(__file__).resolve()), "speed", str(model_path),
               str(structure), "--steps", str(steps), "--temperature", str(temperature),
               "--warmup", str(warmup)]
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if out.returncode:
            raise RuntimeError(f"MD timing failed:\n{out.stderr[-3000:]}")
        res = json.loads(out.stdout.strip().splitlines()[-1])
    res["blas_threads"] = "default" if blas_threads is None else blas_threads
    res["load_average_1min"] = None if load is None else round(load, 2)
    log.info("MD speed: %s", res)
    return res


def markdown_speed(rows) -> str:
    lines = ["| structure | atoms | BLAS threads | steps timed | µs/atom/step | ms/step | ns/day (1 fs) "
             "| load avg |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows:
        ms = r["us_per_atom_step"] * r["n_atoms"] / 1e3
        lines.append(f"| {name} | {r['n_atoms']} | {r['blas_threads']} | {r['steps']} | "
                     f"{r['us_per_atom_step']:.1f} | {ms:.1f} | {86400 / ms * 1e-3:.3f} | "
                     f"{r['load_average_1min']} |")
    lines += ["", SPEED_NOTE]
    return "\n".join(lines)


SPEED_NOTE = ("Measured when the model was trained, with the gapcalc of that day; the "
              "evaluation code has become faster since (2026-11-24: ~75-120 µs/atom per "
              "energy+forces+stress call at M = 1000 on one core). Current numbers: "
              "`benchmarks/RESULTS.md` §4 (`python benchmarks/md_speed.py`).")


# ----------------------------------------------------------------------------- examples
def run_example(name, argv):
    """Run ``md_examples/<name>.py``'s main(argv) in this process: (result, printed text).

    Failures are logged and returned as (None, message) so that a fit is never lost to
    a validation step.
    """
    import contextlib
    import importlib.util
    import io
    import traceback
    path = REPO / "md_examples" / f"{name}.py"
    buf = io.StringIO()
    try:
        spec = importlib.util.spec_from_file_location(f"md_example_{name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        with contextlib.redirect_stdout(buf):
            res = mod.main(argv)
        log.info("%s %s:\n%s", name, " ".join(argv), buf.getvalue())
        return res, buf.getvalue()
    except Exception:   # noqa: BLE001 - report, keep the fit
        msg = traceback.format_exc()
        log.error("md_examples/%s.py failed:\n%s", name, msg)
        return None, buf.getvalue() + "\nFAILED:\n" + msg.strip().splitlines()[-1]


# ----------------------------------------------------------------------------- card
SUMMARY_RE = re.compile(r"<!-- gapcalc-card-summary\n(.*?)\n-->", re.S)


def write_card(path, text: str, summary: dict):
    """Write the Markdown card with a machine-readable JSON ``summary`` at the end."""
    body = text.rstrip() + "\n\n<!-- gapcalc-card-summary\n" + json.dumps(
        summary, indent=1, sort_keys=True, default=float) + "\n-->\n"
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, path)
    log.info("wrote model card %s", path)


def read_card_summary(path) -> dict:
    """The JSON summary written by :func:`write_card`."""
    m = SUMMARY_RE.search(Path(path).read_text(encoding="utf-8"))
    if not m:
        raise ValueError(f"{path}: no gapcalc-card-summary block")
    return json.loads(m.group(1))


def model_numbers(model) -> dict:
    """Size facts of a fitted model."""
    return {"M": {t.descriptor.name: t.M for t in model.terms_},
            "n_features": {t.descriptor.name: t.descriptor.n_features for t in model.terms_},
            "e0": model.e0_}


def save(model, path):
    """``model.save(path, training_state=False)``, then make the file world-readable.

    (The library writes through ``tempfile.mkstemp``, which creates files with mode 0600;
    a shipped model must be readable by every user of an installation.)
    """
    model.save(path, training_state=False)
    os.chmod(path, 0o644)


def file_size_mb(path) -> float:
    return round(Path(path).stat().st_size / 1e6, 2)


CHECK_DATA = {   # the committed frames each card's check record uses (as the train_*.py)
    "Si": (DATA / "si_mlearn" / "si_mlearn_test.xyz", None),
    "Cu": (DATA / "cu_emt" / "cu_emt_test_subset.xyz", None),
    "water": (DATA / "water_dpmd" / "water_dpmd.xyz", "data_3"),
}


def refresh_check(name):
    """Recompute the check record of a shipped model and write it into its card.

    For a card written before check records existed (or a file re-saved): the record and
    its paragraph (placed before the card's next section after "## Errors") are
    replaced; nothing else of the card changes."""
    import ase.io
    path, source = CHECK_DATA[name]
    idx = None
    if source:
        idx = [i for i, f in enumerate(ase.io.read(path, ":"))
               if f.info.get("source_system") == source]
    rec = check_record(HERE / f"{name}.npz", path, idx)
    card = HERE / f"{name}.md"
    text = card.read_text(encoding="utf-8")
    summary = read_card_summary(card)
    body = SUMMARY_RE.sub("", text).rstrip()
    body = re.sub(r"\n\nThe shipped file itself, evaluated on .*?\(relative tolerance 1e-6\)\.",
                  "", body, flags=re.S)
    start = body.index("## Errors")
    nxt = body.index("\n## ", start + 3)
    body = body[:nxt].rstrip() + "\n\n" + check_text(rec) + "\n" + body[nxt:]
    summary["check"] = rec
    write_card(card, body, summary)
    return rec


def _main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="recompute a shipped model's check record into its card")
    c.add_argument("name", choices=sorted(CHECK_DATA))
    s = sub.add_parser("speed", help="time Langevin MD of a model on a structure; prints JSON")
    s.add_argument("model")
    s.add_argument("structure")
    s.add_argument("--steps", type=int, default=50)
    s.add_argument("--temperature", type=float, default=300.0)
    s.add_argument("--warmup", type=int, default=5)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if a.cmd == "check":
        print(json.dumps(refresh_check(a.name), indent=1))
        return
    res = _speed_worker(a.model, a.structure, a.steps, a.temperature, a.warmup)
    print(json.dumps(res))


if __name__ == "__main__":
    _main()
