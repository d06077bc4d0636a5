"""Imported gap_fit models: agreement with quippy and speed against it, in one run.

How to run (from the repository root)::

    python benchmarks/gap_import.py                          # Cu SOAP+2b model made here
    python benchmarks/gap_import.py --xml some/gap.xml        # any gap_fit file
    python benchmarks/gap_import.py --xml gap.xml --structures test.xyz --min-time 10

What is measured
    The model: by default gap_fit (single thread) on 12 EMT Cu frames of 108 atoms
    (benchmarks/speed_models.py's Cu training set) with ``distance_2b`` (cutoff 5, 20 sparse
    points, ard_se θ 1, δ 0.5) + ``soap`` (QUIP's default EQUISPACED_GAUSS basis, cutoff 5 /
    transition 0.5, n_max 8, l_max 6, atom_sigma 0.5, ζ 4, δ 1, 1000 sparse points, CUR),
    cached under /tmp/gapcalc_gap_import. Or any XML given with ``--xml``.

    Agreement: quippy's ASE calculator (``quippy.potential.Potential(param_filename=xml)``)
    and ``gapcalc.load(xml)`` on the same structures (default: 3 EMT Cu frames of 108 atoms
    at 1200 K plus the timing structure; with ``--xml``: ``--structures`` if given, else a
    rattled random alloy of the model's elements on an fcc lattice). Worst case over the
    structures: |ΔE|/|E|, max |ΔE_i| (eV), max |ΔF|/max |F|, max |ΔW|/max |W| (W = −stress·V).

    Speed: CPU time (``time.process_time``) per call of energy + forces + stress in µs per
    atom, each code in its own subprocess with every thread variable = 1, on fcc Cu 864
    atoms rattled 0.05 Å (``workloads.cu_fcc_864``; with ``--xml`` the same lattice with the
    model's elements). Untimed warm-up call, then calls for at least ``--min-time`` CPU s in
    5 blocks, every atom moved by ±1e-4 Å between calls; mean and best block are reported.
    gapcalc: ``GAPCalculator(potential, skin=0.5)`` (neighbour list kept as in MD);
    quippy: ``Potential(param_filename=xml)``; both ``calc.calculate(atoms, ["energy",
    "forces", "stress"], ["positions"])``. Import time (XML → Potential) is reported too.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from _common import alternating_calls, run_json_worker, thread_env  # noqa: E402

CACHE = Path(os.environ.get("GAPCALC_GAP_IMPORT", "/tmp/gapcalc_gap_import"))
BLOCKS = 5
GAP = ("distance_2b cutoff=5.0 covariance_type=ard_se delta=0.5 theta_uniform=1.0 "
       "n_sparse=20 sparse_method=uniform : soap cutoff=5.0 cutoff_transition_width=0.5 "
       "n_max=8 l_max=6 atom_sigma=0.5 zeta=4 delta=1.0 covariance_type=dot_product "
       "n_sparse=1000 sparse_method=cur_points")


def log(msg):
    print(f"[gap_import {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cu_model() -> Path:
    """gap_fit's Cu SOAP + 2b model (fitted once, single thread)."""
    import speed_models
    wd = CACHE / "cu_soap2b"
    xml = wd / "gap.xml"
    if xml.exists():
        return xml
    wd.mkdir(parents=True, exist_ok=True)
    train = speed_models._train_file("cu")
    gap_fit = shutil.which("gap_fit") or str(Path(sys.executable).parent / "gap_fit")
    cmd = [gap_fit, f"at_file={train}", f"gap={{{GAP}}}", "default_sigma={0.002 0.1 0.1 0.0}",
           "e0_method=average", "energy_parameter_name=energy", "force_parameter_name=forces",
           "virial_parameter_name=virial", "do_copy_at_file=F", "rnd_seed=1",
           "gp_file=gap.xml"]
    log(f"fitting the Cu SOAP+2b model with gap_fit in {wd}")
    with open(wd / "gap_fit.log", "w") as logf:
        subprocess.run(cmd, cwd=wd, stdout=logf, stderr=subprocess.STDOUT, env=thread_env(1),
                       check=True)
    return xml


def model_species(xml):
    from gapcalc.gap_xml import load_gap_xml
    return load_gap_xml(xml).species.numbers.tolist()


def timing_structure(xml, default_model: bool):
    import numpy as np
    import workloads
    at = workloads.cu_fcc_864()
    if not default_model:
        zs = model_species(xml)
        rng = np.random.default_rng(0)
        at.numbers = rng.choice(zs, size=len(at))
    return at


def agreement_structures(xml, default_model: bool, structures):
    import numpy as np
    from ase.io import read
    if structures:
        return read(structures, ":")
    if default_model:
        from gapcalc.datasets import emt_frames
        frames = emt_frames("Cu", n_frames=3, size=(3, 3, 3), temperature=1200.0, interval=20,
                            seed=42)
        for f in frames:
            f.calc = None
        return frames + [timing_structure(xml, True)]
    from ase.build import bulk
    zs = model_species(xml)
    rng = np.random.default_rng(1)
    out = []
    for k in range(3):
        at = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((3, 3, 3))
        at.numbers = rng.choice(zs, size=len(at))
        at.rattle(0.05, seed=k)
        out.append(at)
    return out


# --- workers ------------------------------------------------------------------------------
def worker_agree(xml, default_model, structures) -> dict:
    import numpy as np
    from quippy.potential import Potential as QuipPotential
    import gapcalc
    q = QuipPotential(param_filename=str(xml))
    g = gapcalc.load(str(xml))
    worst = {"energy_rel": 0.0, "energies_abs_ev": 0.0, "forces_rel": 0.0, "virial_rel": 0.0}
    n = []
    for at in agreement_structures(xml, default_model, structures):
        res = {}
        for name, calc in (("q", q), ("g", g)):
            a = at.copy()
            a.calc = calc
            r = {"e": a.get_potential_energy(), "ei": a.get_potential_energies(),
                 "f": a.get_forces()}
            if a.pbc.all():
                r["w"] = -a.get_stress(voigt=False) * a.get_volume()
            res[name] = r
        rq, rg = res["q"], res["g"]
        worst["energy_rel"] = max(worst["energy_rel"], abs(rg["e"] - rq["e"]) / abs(rq["e"]))
        worst["energies_abs_ev"] = max(worst["energies_abs_ev"],
                                       float(np.abs(rg["ei"] - rq["ei"]).max()))
        worst["forces_rel"] = max(worst["forces_rel"], float(np.abs(rg["f"] - rq["f"]).max()
                                                             / np.abs(rq["f"]).max()))
        if "w" in rq:
            worst["virial_rel"] = max(worst["virial_rel"], float(
                np.abs(rg["w"] - rq["w"]).max() / np.abs(rq["w"]).max()))
        n.append(len(at))
    return {**worst, "structures": n}


def worker_time(code, xml, default_model, min_time) -> dict:
    import numpy as np
    atoms = timing_structure(xml, default_model)
    t0 = time.process_time()
    if code == "gapcalc":
        from gapcalc import GAPCalculator
        from gapcalc.gap_xml import load_gap_xml
        pot = load_gap_xml(xml)
        load_s = time.process_time() - t0
        calc = GAPCalculator(pot)
    else:
        from quippy.potential import Potential
        calc = Potential(param_filename=str(xml))
        load_s = time.process_time() - t0
    call = alternating_calls(calc, atoms, ["energy", "forces", "stress"])
    c0 = time.process_time()
    call()
    first = time.process_time() - c0
    n, blocks = 0, []
    for _ in range(BLOCKS):
        nb, b0 = 0, time.process_time()
        while time.process_time() - b0 < min_time / BLOCKS or nb < 2:
            call()
            nb += 1
        blocks.append((time.process_time() - b0) / nb)
        n += nb
    assert np.isfinite(calc.results["energy"])
    return {"code": code, "n_atoms": len(atoms), "calls": n, "load_cpu_s": load_s,
            "first_call_cpu_s": first,
            "cpu_us_atom": 1e6 * sum(b * 1 for b in blocks) / BLOCKS / len(atoms),
            "cpu_us_atom_best_block": 1e6 * min(blocks) / len(atoms),
            "cpu_us_atom_blocks": [1e6 * b / len(atoms) for b in blocks]}


def run_worker(opts):
    xml = Path(opts.xml)
    if opts.worker == "agree":
        res = worker_agree(xml, opts.default_model, opts.structures)
    else:
        res = worker_time(opts.worker, xml, opts.default_model, opts.min_time)
    print(json.dumps(res))


# --- driver -------------------------------------------------------------------------------
def spawn(opts, worker, xml, timeout=3600):
    args = ["--worker", worker, "--xml", str(xml), "--min-time", str(opts.min_time)]
    if opts.structures:
        args += ["--structures", opts.structures]
    if opts.xml is None:
        args += ["--default-model"]
    env = thread_env(1, {"PYTHONPATH": str(HERE.parent)})
    return run_json_worker(__file__, args, env, timeout, log)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--xml", default=None, help="gap_fit model (default: make the Cu model)")
    p.add_argument("--structures", default=None, help="extxyz of agreement structures")
    p.add_argument("--min-time", type=float, default=10.0, help="CPU s of timed calls per code")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--default-model", action="store_true", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.worker:
        run_worker(opts)
        return
    xml = Path(opts.xml) if opts.xml else cu_model()
    log(f"model {xml}")
    out = {"xml": str(xml)}
    log("agreement (quippy and gapcalc in one process)")
    out["agreement"] = spawn(opts, "agree", xml)
    for code in ("gapcalc", "quippy"):
        log(f"timing {code}")
        out[code] = spawn(opts, code, xml)
    a, g, q = out["agreement"], out["gapcalc"], out["quippy"]
    print(f"\nmodel: {xml}")
    if a:
        print(f"agreement over structures of {a['structures']} atoms (worst case):")
        print("| E rel | E_i abs (eV) | F rel | W rel |\n|---|---|---|---|")
        print(f"| {a['energy_rel']:.1e} | {a['energies_abs_ev']:.1e} | {a['forces_rel']:.1e} "
              f"| {a['virial_rel']:.1e} |")
    if g and q:
        print(f"\nspeed, {g['n_atoms']} atoms, one thread, energy + forces + stress per call:")
        print("| code | import / set-up CPU s | first call CPU s | µs/atom/call (mean) "
              "| µs/atom/call (best block) | calls |\n|---|---|---|---|---|---|")
        for r in (g, q):
            print(f"| {r['code']} | {r['load_cpu_s']:.2f} | {r['first_call_cpu_s']:.2f} "
                  f"| {r['cpu_us_atom']:.1f} | {r['cpu_us_atom_best_block']:.1f} "
                  f"| {r['calls']} |")
        print(f"\nquippy / gapcalc: {q['cpu_us_atom'] / g['cpu_us_atom']:.1f}x (mean), "
              f"{q['cpu_us_atom_best_block'] / g['cpu_us_atom_best_block']:.1f}x (best block)")
    if opts.json:
        Path(opts.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
