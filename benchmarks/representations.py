"""Representation options of issue 15: alchemical compression on a 5-element alloy, and a
speed/accuracy Pareto front (feature selection, sparse points) on the Si mlearn split.

How to run (repository root, single thread)::

    nice python benchmarks/representations.py                 # both parts
    python benchmarks/representations.py --part alloy --json alloy.json
    python benchmarks/representations.py --part pareto --json pareto.json

Part ``alloy``: fcc Cu/Ag/Au/Ni/Pd, EMT (ASE), 2x2x2 conventional cells (32 atoms), random
occupations, a random lattice constant between the elements', rattled with the thermal
amplitude of 300 / 900 / 1500 K (σ = 0.0035·√T Å), random strain ≤ 2 %; generated here with a
fixed seed. Learning curves (test E MAE, F MAE on 60 held-out frames) for training sizes
``--sizes`` of: full SOAP (5 species), SOAP compressed to d_J = 2, 3, 4 elemental features
learned by ALS (:func:`gapcalc.descriptors.learn_compression`, on the largest training set),
and compressed (d_J = 4) + full SOAP as two terms of one model (seed Fig. 4's compound
model). SOAP 4.5 Å, n_max 6, l_max 4, ζ 4, M = 100 per species; µs/atom of energy + forces
on a 108-atom alloy cell (single thread, CPU time, best of 3).

Part ``pareto``: Si mlearn split (214 train / 25 test frames): today's default model
(SOAP 5 Å, n_max 8, l_max 6, σ_at 0.5, ζ 4, M = 1000, CUR) against the variants of
:data:`PARETO_VARIANTS`: feature selection (CUR, D' = D/2, D/4), fewer sparse points, smaller
bases (n_max, l_max), atom_sigma, cutoff 4.5 Å, ζ = 2, and combinations. Test E/F MAE; speed
of energy + forces + stress of a rattled 216-atom diamond cell through ``GAPCalculator``
(skin 0.5 Å), every model and quippy (``--quip``) timed in this one process in interleaved
rounds (:func:`pareto_timing`), plus a per-stage profile of each model. Fits are cached in
``--workdir`` (deterministic for a seed); ratios are against the default of the same run.
The variants were chosen by looking at their *test* errors (this is a speed/accuracy table,
not a tuned model: a model to ship would be chosen by cross-validation on the training set)::

    python benchmarks/representations.py --part pareto --quip --quip-variant "n6 l4 σ0.35"
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
SI = HERE / "data" / "si_mlearn"
ELEMENTS = ["Cu", "Ag", "Au", "Ni", "Pd"]

import numpy as np  # noqa: E402


def alloy_frames(n, seed):
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.data import atomic_numbers, reference_states
    from gapcalc.datasets import label
    rng = np.random.default_rng(seed)
    a_el = {e: reference_states[atomic_numbers[e]]["a"] for e in ELEMENTS}
    frames = []
    for k in range(n):
        T = [300.0, 900.0, 1500.0][k % 3]
        at = bulk("Cu", "fcc", 3.6, cubic=True) * (2, 2, 2)
        syms = rng.choice(ELEMENTS, size=len(at))
        a = np.mean([a_el[s] for s in syms])
        at.set_chemical_symbols(list(syms))
        at.set_cell(at.cell.array * a / 3.6, scale_atoms=True)
        at.positions += rng.normal(scale=0.0035 * np.sqrt(T), size=at.positions.shape)
        eps = rng.uniform(-0.02, 0.02, size=(3, 3))
        at.set_cell(at.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
        at.info["config_type"] = f"T{int(T)}"
        frames.append(label(at, EMT()))
    return frames


def errors(model, frames):
    e, f = [], []
    for at in frames:
        r = model.evaluate(at, stress=False)
        e.append(abs(r["energy"] - at.get_potential_energy()) / len(at))
        f.append(np.abs(r["forces"] - at.get_forces()).ravel())
    return 1e3 * float(np.mean(e)), 1e3 * float(np.mean(np.concatenate(f)))


def speed(model, at, repeats=3):
    model.evaluate(at)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        model.evaluate(at)
        best = min(best, time.process_time() - t0)
    return 1e6 * best / len(at)


def part_alloy(a):
    from gapcalc import SOAP, SparseGPR
    from gapcalc.descriptors import learn_compression
    soap_kw = dict(cutoff=4.5, n_max=6, l_max=4, atom_sigma=0.5, cutoff_width=0.5)
    frames = alloy_frames(max(a.sizes) + 60, seed=a.seed)
    train, test = frames[:max(a.sizes)], frames[max(a.sizes):]
    from ase.build import bulk
    timing = bulk("Cu", "fcc", 3.8, cubic=True) * (3, 3, 3)
    timing.set_chemical_symbols(list(np.random.default_rng(1).choice(ELEMENTS, len(timing))))
    timing.rattle(0.05, seed=2)
    t0 = time.perf_counter()
    energies = [at.get_potential_energy() for at in train]
    mix = {d: learn_compression(train, energies, ELEMENTS, d, cutoff=4.5, n_max=4, l_max=3,
                                n_iter=6, seed=a.seed) for d in (2, 3, 4)}
    t_als = time.perf_counter() - t0
    variants = {"full (5 species)": [SOAP(ELEMENTS, **soap_kw)]}
    for d in (2, 3, 4):
        variants[f"compressed d_J={d}"] = [SOAP(ELEMENTS, compression=mix[d], **soap_kw)]
    variants["compressed d_J=4 + full"] = [SOAP(ELEMENTS, compression=mix[4], **soap_kw),
                                           SOAP(ELEMENTS, **soap_kw)]
    out = {"als_seconds": t_als, "compression": {d: m.tolist() for d, m in mix.items()},
           "rows": []}
    for name, descs in variants.items():
        D = sum(d.n_features for d in descs)
        for n in a.sizes:
            ts = time.process_time()
            model = SparseGPR(descs if len(descs) > 1 else descs[0], zeta=4, delta=1.0,
                              n_sparse=a.n_sparse_alloy, sigma_energy=0.001, sigma_force=0.02,
                              sigma_virial=0.02, e0="lstsq", seed=a.seed).fit(train[:n])
            fit_s = time.process_time() - ts
            e, f = errors(model, test)
            row = {"variant": name, "D": D, "n_train": n, "E_mae_meV_atom": e,
                   "F_mae_meV_A": f, "fit_cpu_s": fit_s}
            if n == max(a.sizes):
                row["us_per_atom"] = speed(model, timing)
            out["rows"].append(row)
            logging.info("alloy %s", row)
    print(f"\nalloy: ALS for d_J = 2, 3, 4 took {t_als:.0f} s")
    print("| variant | D | " + " | ".join(f"n={n} E / F" for n in a.sizes) + " | µs/atom |")
    print("|---|---|" + "---|" * len(a.sizes) + "---|")
    for name in variants:
        rs = [r for r in out["rows"] if r["variant"] == name]
        cells = " | ".join(f"{r['E_mae_meV_atom']:.2f} / {r['F_mae_meV_A']:.1f}" for r in rs)
        print(f"| {name} | {rs[0]['D']} | {cells} | {rs[-1].get('us_per_atom', 0):.0f} |")
    return out


# --- part pareto ------------------------------------------------------------------------
#: today's default SOAP (the shipped Si recipe and section 1's)
PARETO_SOAP = dict(cutoff=5.0, n_max=8, l_max=6, atom_sigma=0.5, cutoff_width=0.5)

#: (name, changes to PARETO_SOAP (and ζ, default 4), n_features (fraction of D, None = all), M);
#: the first row is the reference ("today's default")
PARETO_VARIANTS = [
    ("default", {}, None, 1000),
    ("CUR D/2", {}, 0.5, 1000),
    ("CUR D/4", {}, 0.25, 1000),
    ("M=500", {}, None, 500),
    ("n6 l6", dict(n_max=6, l_max=6), None, 1000),
    ("n8 l4", dict(n_max=8, l_max=4), None, 1000),
    ("n6 l4", dict(n_max=6, l_max=4), None, 1000),
    ("n5 l4", dict(n_max=5, l_max=4), None, 1000),
    ("n4 l4", dict(n_max=4, l_max=4), None, 1000),
    ("n6 l4 σ0.6", dict(n_max=6, l_max=4, atom_sigma=0.6), None, 1000),
    ("n5 l4 σ0.6", dict(n_max=5, l_max=4, atom_sigma=0.6), None, 1000),
    ("n4 l4 σ0.6", dict(n_max=4, l_max=4, atom_sigma=0.6), None, 1000),
    ("rc4.5", dict(cutoff=4.5), None, 1000),
    ("rc4.5 n6 l4", dict(cutoff=4.5, n_max=6, l_max=4), None, 1000),
    ("rc4.5 n5 l4", dict(cutoff=4.5, n_max=5, l_max=4), None, 1000),
    ("n6 l4 σ0.4", dict(n_max=6, l_max=4, atom_sigma=0.4), None, 1000),
    ("n8 l3", dict(n_max=8, l_max=3), None, 1000),
    ("n7 l4", dict(n_max=7, l_max=4), None, 1000),
    ("M=750", {}, None, 750),
    ("n8 l4 D/2", dict(n_max=8, l_max=4), 0.5, 1000),
    ("n8 l4 D/4", dict(n_max=8, l_max=4), 0.25, 1000),
    ("n8 l4 M=750", dict(n_max=8, l_max=4), None, 750),
    ("n8 l4 D/2 M=750", dict(n_max=8, l_max=4), 0.5, 750),
    ("n6 l6 D/2", dict(n_max=6, l_max=6), 0.5, 1000),
    ("n6 l4 D/2", dict(n_max=6, l_max=4), 0.5, 1000),
    ("n6 l4 D/4", dict(n_max=6, l_max=4), 0.25, 1000),
    ("n6 l4 M=750", dict(n_max=6, l_max=4), None, 750),
    ("rc4.5 n8 l4", dict(cutoff=4.5, n_max=8, l_max=4), None, 1000),
    ("rc4.5 n8 l4 D/2", dict(cutoff=4.5, n_max=8, l_max=4), 0.5, 1000),
    ("n5 l4 σ0.4", dict(n_max=5, l_max=4, atom_sigma=0.4), None, 1000),
    ("n4 l4 σ0.4", dict(n_max=4, l_max=4, atom_sigma=0.4), None, 1000),
    ("n6 l3 σ0.4", dict(n_max=6, l_max=3, atom_sigma=0.4), None, 1000),
    ("n6 l4 σ0.35", dict(n_max=6, l_max=4, atom_sigma=0.35), None, 1000),
    ("n6 l4 σ0.4 D/2", dict(n_max=6, l_max=4, atom_sigma=0.4), 0.5, 1000),
    ("n6 l4 σ0.4 D/4", dict(n_max=6, l_max=4, atom_sigma=0.4), 0.25, 1000),
    ("n6 l4 σ0.4 M=750", dict(n_max=6, l_max=4, atom_sigma=0.4), None, 750),
    ("n6 l4 σ0.4 M=500", dict(n_max=6, l_max=4, atom_sigma=0.4), None, 500),
    ("n5 l4 σ0.4 D/2", dict(n_max=5, l_max=4, atom_sigma=0.4), 0.5, 1000),
    ("rc4.5 n6 l4 σ0.4", dict(cutoff=4.5, n_max=6, l_max=4, atom_sigma=0.4), None, 1000),
    ("n5 l4 σ0.35", dict(n_max=5, l_max=4, atom_sigma=0.35), None, 1000),
    ("n4 l4 σ0.3", dict(n_max=4, l_max=4, atom_sigma=0.3), None, 1000),
    ("n6 l4 σ0.35 M=750", dict(n_max=6, l_max=4, atom_sigma=0.35), None, 750),
    ("n5 l4 σ0.35 M=750", dict(n_max=5, l_max=4, atom_sigma=0.35), None, 750),
    # ζ = 2: the kernel is a D × D quadratic form (D² per atom, whatever M)
    ("ζ2", dict(zeta=2), None, 1000),
    ("n8 l4 ζ2", dict(n_max=8, l_max=4, zeta=2), None, 1000),
    ("n6 l4 σ0.35 ζ2", dict(n_max=6, l_max=4, atom_sigma=0.35, zeta=2), None, 1000),
    ("n5 l4 σ0.35 ζ2", dict(n_max=5, l_max=4, atom_sigma=0.35, zeta=2), None, 1000),
    ("n6 l4 σ0.35 ζ2 M=2000", dict(n_max=6, l_max=4, atom_sigma=0.35, zeta=2), None, 2000),
    ("n5 l4 σ0.35 ζ2 M=2000", dict(n_max=5, l_max=4, atom_sigma=0.35, zeta=2), None, 2000),
]


def _slug(name):
    return "".join(ch if ch.isalnum() else "_" for ch in name.replace("σ", "s"))


def pareto_fit(name, changes, n_features, M, train, test, workdir: Path, seed):
    """Fit one variant on the training split (or reuse the cached fit of the same settings):
    its row (test errors, D, M, fit CPU s) and the path of its potential (no posterior)."""
    from gapcalc import SOAP, SparseGPR
    changes = dict(changes)
    zeta = changes.pop("zeta", 4)
    opts = {**PARETO_SOAP, **changes}
    key = {"soap": opts, "n_features": n_features, "M": M, "seed": seed}
    if zeta != 4:
        key["zeta"] = zeta
    stem = workdir / _slug(name)
    row_file, model_file = stem.with_suffix(".json"), stem.with_suffix(".npz")
    if row_file.exists() and model_file.exists():
        row = json.loads(row_file.read_text())
        if row.get("key") == key:
            logging.info("pareto %s: cached fit %s", name, model_file)
            return row
    ts = time.process_time()
    model = SparseGPR(SOAP(["Si"], **opts), zeta=zeta, delta=1.0, n_sparse=M, sigma_energy=0.002,
                      sigma_force=0.1, sigma_virial=0.1, n_features=n_features,
                      seed=seed).fit(train)
    fit_s = time.process_time() - ts
    e, f = errors(model, test)
    model.potential_.save(model_file)
    row = {"variant": name, "key": key, "D": model.terms_[0].descriptor.n_features,
           "M": model.M_, "E_mae_meV_atom": e, "F_mae_meV_A": f, "fit_cpu_s": fit_s,
           "model": str(model_file)}
    row_file.write_text(json.dumps(row, indent=1))
    logging.info("pareto %s", row)
    return row


def quip_model(soap_opts, M, train_file: Path, workdir: Path, every=9) -> Path:
    """gap_fit SOAP model (QUIP's default radial basis, ζ 4, δ 1, CUR, σ 0.002/0.1/0.1) of
    the given size fitted on every ``every``-th training frame (24 frames, 1481 environments
    for 9): for timing quippy only (its cost per call depends on the hyper-parameters and M,
    not on the training data). Fitted once (single thread) and cached in ``workdir``."""
    import shutil
    import subprocess
    from ase.io import read, write
    from _common import thread_env
    tag = "q_rc{cutoff}_n{n_max}_l{l_max}_s{atom_sigma}_M{M}".format(M=M, **soap_opts)
    wd = workdir / tag
    xml = wd / "gap.xml"
    if xml.exists():
        return xml
    wd.mkdir(parents=True, exist_ok=True)
    write(wd / "train.xyz", read(str(train_file), ":")[::every], format="extxyz")
    gap = ("soap cutoff={cutoff} cutoff_transition_width={cutoff_width} n_max={n_max} "
           "l_max={l_max} atom_sigma={atom_sigma} zeta=4 delta=1.0 covariance_type=dot_product "
           "n_sparse={M} sparse_method=cur_points").format(M=M, **soap_opts)
    gap_fit = shutil.which("gap_fit") or str(Path(sys.executable).parent / "gap_fit")
    cmd = [gap_fit, "at_file=train.xyz", f"gap={{{gap}}}", "default_sigma={0.002 0.1 0.1 0.0}",
           "e0_method=average", "energy_parameter_name=energy", "force_parameter_name=forces",
           "virial_parameter_name=virial", "do_copy_at_file=F", "sparse_separate_file=F",
           "rnd_seed=1", "gp_file=gap.xml"]
    logging.info("gap_fit for quippy timing in %s", wd)
    with open(wd / "gap_fit.log", "w") as logf:
        subprocess.run(cmd, cwd=wd, stdout=logf, stderr=subprocess.STDOUT, env=thread_env(1),
                       check=True)
    return xml


def stage_profile(potential, atoms, repeats=5):
    """µs/atom of the stages of one energy + forces call (best of ``repeats``, single
    thread): neighbour list (built from scratch), expansion + power spectrum, kernel
    (ε and w = ∂ε/∂p̂), backward pass (pair terms) and the whole ``evaluate``."""
    term = potential.terms[0]
    d = term.descriptor
    nl = potential.neighbors(atoms)
    env, _ = potential.environment(atoms, nl).within(term.cutoff)
    c, p, pn = d.describe(env)
    form = term._form(0, slice(0, term.M))     # single species: the kept ζ = 2 form, if any
    _, w = term.kernel.energy_and_gradient(p, term.X, term.alpha, **form)

    def best(f):
        f()
        b = float("inf")
        for _ in range(repeats):
            t0 = time.process_time()
            f()
            b = min(b, time.process_time() - t0)
        return 1e6 * b / len(atoms)
    return {"neighbours": best(lambda: potential.neighbors(atoms)),
            "expansion_spectrum": best(lambda: d.describe(env)),
            "kernel": best(lambda: term.kernel.energy_and_gradient(p, term.X, term.alpha,
                                                                   **form)),
            "backward": best(lambda: d.backward(env, c, p, pn, w)),
            "evaluate": best(lambda: potential.evaluate(atoms)),
            "pairs_per_atom": len(env.index) / len(atoms)}


def timing_structure():
    """The 216-atom timing cell: diamond Si, a = 5.43 Å, rattled by 0.05 Å (seed 0)."""
    from ase.build import bulk
    at = bulk("Si", "diamond", 5.43, cubic=True) * (3, 3, 3)
    at.rattle(0.05, seed=0)
    return at


def timing_worker(model, code_root):
    """Child process for :func:`pareto_timing`: ``model`` with the gapcalc package found in
    ``code_root`` (e.g. the parent commit's, unpacked by ``git archive``), on the timing
    cell; prints "ready", then for every number n read from stdin makes n timed calls and
    prints their mean CPU µs/atom."""
    sys.path.insert(0, str(Path(code_root).resolve()))
    import gapcalc
    from _common import alternating_calls
    atoms = timing_structure()
    pot = gapcalc.load_model_file(model)
    call = alternating_calls(gapcalc.GAPCalculator(pot, skin=0.5), atoms,
                             ["energy", "forces", "stress"])
    call()
    print("ready", gapcalc.__file__, flush=True)
    for line in sys.stdin:
        n = int(line)
        t0 = time.process_time()
        for _ in range(n):
            call()
        print(1e6 * (time.process_time() - t0) / n / len(atoms), flush=True)


def _remote(model, code_root):
    """A timed(n) for :func:`pareto_timing` that runs in a :func:`timing_worker` child."""
    import subprocess
    from _common import thread_env
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--timing-worker",
                             str(model), "--code-root", str(code_root)], env=thread_env(1),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready = proc.stdout.readline().split()
    if not ready or ready[0] != "ready":
        raise RuntimeError(f"timing worker for {code_root} failed to start")
    logging.info("timing worker: %s", ready[1])

    def timed(n):
        proc.stdin.write(f"{n}\n")
        proc.stdin.flush()
        return float(proc.stdout.readline())
    return timed, proc


def _local(call, n_atoms):
    def timed(n):
        t0 = time.process_time()
        for _ in range(n):
            call()
        return 1e6 * (time.process_time() - t0) / n / n_atoms
    return timed


def pareto_timing(rows, quip, atoms, rounds, calls, quip_calls, parent=None):
    """µs/atom per energy + forces (+ stress) call of every gapcalc row and quippy model, all
    in this process: ASE calculators on the same structure, every atom moved by ±1e-4 Å
    between calls (no cached result), an untimed warm-up call each, then ``rounds`` rounds
    that visit the codes in turn (``calls`` calls per gapcalc model, ``quip_calls`` per
    quippy model per round; CPU time). Adds median and best-round µs/atom to each row.
    ``parent`` (a dict with "model" and "code_root"): also that model with another copy of
    gapcalc (the parent commit's), in a child process that takes its turn in every round."""
    from _common import alternating_calls
    from gapcalc import GAPCalculator, load_model_file
    entries = []
    for r in rows:
        pot = load_model_file(r["model"])
        r["stages"] = stage_profile(pot, atoms.copy())
        call = alternating_calls(GAPCalculator(pot, skin=0.5), atoms.copy(),
                                 ["energy", "forces", "stress"])
        call()
        entries.append((r, _local(call, len(atoms)), calls))
    procs = []
    if parent:
        timed, proc = _remote(parent["model"], parent["code_root"])
        procs.append(proc)
        entries.append((parent, timed, calls))
    if quip:
        from quippy.potential import Potential as QuipPotential
        for q in quip:
            call = alternating_calls(QuipPotential(param_filename=q["xml"]), atoms.copy(),
                                     ["energy", "forces", "stress"])
            call()
            entries.append((q, _local(call, len(atoms)), quip_calls))
    per = [[] for _ in entries]
    for rnd in range(rounds):
        for k, (_, timed, n) in enumerate(entries):
            per[k].append(timed(n))
        logging.info("timing round %d of %d done", rnd + 1, rounds)
    for proc in procs:
        proc.stdin.close()
        proc.wait()
    for (r, _, n), ts in zip(entries, per):
        r["us_per_atom"] = float(np.median(ts))
        r["us_per_atom_best"] = float(min(ts))
        r["us_per_atom_rounds"] = ts
        r["calls"] = n * rounds


def part_pareto(a):
    from ase.io import read
    train = read(str(SI / "si_mlearn_train.xyz"), ":")
    test = read(str(SI / "si_mlearn_test.xyz"), ":")
    workdir = Path(a.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    wanted = None if a.variants is None else set(a.variants.split(";"))
    variants = [v for v in PARETO_VARIANTS if wanted is None or v[0] in wanted or
                v[0] == "default"]
    rows = [pareto_fit(*v, train, test, workdir, a.seed) for v in variants]
    if a.no_timing:
        _pareto_table(rows, None)
        return {"rows": rows}
    quip = []
    if a.quip:
        for name in ["default", *([a.quip_variant] if a.quip_variant else [])]:
            changes, M = next((v[1], v[3]) for v in PARETO_VARIANTS if v[0] == name)
            if changes.get("zeta", 4) != 4:
                raise ValueError("quippy models are fitted with ζ = 4")
            opts = {**PARETO_SOAP, **changes}
            xml = quip_model(opts, M, SI / "si_mlearn_train.xyz", workdir)
            quip.append({"variant": f"quippy: {name} recipe (gap_fit model)", "xml": str(xml),
                         "M": M, "soap": opts})
    parent = None
    if a.parent_code:
        parent = {"variant": f"default, gapcalc from {a.parent_code}", "model": rows[0]["model"],
                  "code_root": a.parent_code}
    pareto_timing(rows, quip, timing_structure(), a.rounds, a.calls, a.quip_calls, parent)
    _pareto_table(rows, quip, parent)
    return {"rows": rows, "quippy": quip, "parent": parent}


def pareto_front(rows):
    """Names of the rows no other row beats in both force MAE and µs/atom."""
    return {r["variant"] for r in rows
            if not any(o["F_mae_meV_A"] <= r["F_mae_meV_A"] and
                       o["us_per_atom"] <= r["us_per_atom"] and
                       (o["F_mae_meV_A"], o["us_per_atom"]) != (r["F_mae_meV_A"],
                                                               r["us_per_atom"])
                       for o in rows)}


def _pareto_table(rows, quip, parent=None):
    ref = rows[0]
    timed = quip is not None
    front = pareto_front(rows) if timed else set()
    print("\n| variant (* on the front) | D | M | E MAE meV/at | F MAE meV/Å | F / default |"
          " µs/atom | speed-up | stages: expansion + spectrum / kernel / backward / "
          "neighbour list from scratch, µs/atom |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        sp = (f"{r['us_per_atom']:.1f} | {ref['us_per_atom'] / r['us_per_atom']:.2f}"
              if timed else "– | –")
        st = r.get("stages")
        stages = (f"{st['expansion_spectrum']:.1f} / {st['kernel']:.1f} / {st['backward']:.1f}"
                  f" / {st['neighbours']:.1f}" if st else "–")
        mark = " *" if r["variant"] in front else ""
        print(f"| {r['variant']}{mark} | {r['D']} | {r['M']} | {r['E_mae_meV_atom']:.2f} | "
              f"{r['F_mae_meV_A']:.1f} | {r['F_mae_meV_A'] / ref['F_mae_meV_A']:.3f} | {sp} | "
              f"{stages} |")
    for q in quip or []:
        print(f"| {q['variant']} | – | {q['M']} | – | – | – | {q['us_per_atom']:.0f} | "
              f"{ref['us_per_atom'] / q['us_per_atom']:.4f} | – |")
    if parent:
        print(f"| {parent['variant']} | {ref['D']} | {ref['M']} | – | – | – | "
              f"{parent['us_per_atom']:.1f} | {ref['us_per_atom'] / parent['us_per_atom']:.2f} "
              "| – |")
    ok = [r for r in rows[1:] if timed and r["F_mae_meV_A"] <= 1.05 * ref["F_mae_meV_A"]]
    if ok:
        b = min(ok, key=lambda r: r["us_per_atom"])
        print(f"\nfastest within 5 % of the default's force MAE: {b['variant']}, "
              f"{ref['us_per_atom'] / b['us_per_atom']:.2f}× the default's speed" +
              (f" ({parent['us_per_atom'] / b['us_per_atom']:.2f}× {parent['variant']})"
               if parent else "") + "".join(
                  f", {q['us_per_atom'] / b['us_per_atom']:.0f}× {q['variant']}"
                  for q in quip))
    for q in quip or []:
        print(f"\n{q['variant']}: " + ", ".join(
            f"{r['variant']} {q['us_per_atom'] / r['us_per_atom']:.0f}×" for r in rows))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["alloy", "pareto", "all"], default="all")
    ap.add_argument("--sizes", default="10,20,40,80")
    ap.add_argument("--n-sparse-alloy", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--workdir", default="/tmp/gapcalc_pareto",
                    help="pareto: fitted models and gap_fit runs are cached here")
    ap.add_argument("--variants", default=None,
                    help="pareto: ';'-separated variant names (default: all; 'default' always)")
    ap.add_argument("--no-timing", action="store_true", help="pareto: fits and errors only")
    ap.add_argument("--rounds", type=int, default=7, help="pareto: timing rounds")
    ap.add_argument("--calls", type=int, default=10, help="pareto: gapcalc calls per round")
    ap.add_argument("--quip", action="store_true",
                    help="pareto: time quippy (gap_fit models fitted here, see quip_model)")
    ap.add_argument("--quip-variant", default=None,
                    help="pareto: also time quippy with this variant's SOAP and M")
    ap.add_argument("--quip-calls", type=int, default=1, help="pareto: quippy calls per round")
    ap.add_argument("--parent-code", default=None,
                    help="pareto: also time the default model with the gapcalc package in this "
                         "directory (e.g. `git archive HEAD~1 gapcalc | tar -x -C DIR`)")
    ap.add_argument("--timing-worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--code-root", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.timing_worker:
        timing_worker(a.timing_worker, a.code_root)
        return
    a.sizes = [int(x) for x in a.sizes.split(",")]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        datefmt="%H:%M:%S")
    out = {}
    if a.part in ("alloy", "all"):
        out["alloy"] = part_alloy(a)
    if a.part in ("pareto", "all"):
        out["pareto"] = part_pareto(a)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
