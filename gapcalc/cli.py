"""The ``gapcalc`` command: fit, eval, info, cv, curve, tune, md, demo (and learn)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import numpy as np

log = logging.getLogger("gapcalc")


class UsageError(ValueError):
    """A command-line value that cannot be used: printed as one line, exit status 2."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show "(default: X)" for every option that has a default other than None."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _setup_logging(verbose: bool, logfile=None):
    handlers = [logging.StreamHandler(sys.stderr)]
    if logfile:
        handlers.append(logging.FileHandler(logfile))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S", handlers=handlers, force=True)


def _read(path):
    from pathlib import Path
    from ase.io import read
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        frames = read(path, ":")
    except Exception as exc:   # ASE's readers raise many kinds
        raise UsageError(f"{path}: cannot read frames ({type(exc).__name__}: {exc})") from None
    if not frames:
        raise SystemExit(f"{path}: no frames")
    return frames


def _read_one(path):
    """One structure (the last frame of the file) with a clear error."""
    return _read(path)[-1]


def _floats(text):
    return [float(x) for x in text.split(",")] if text else None


def _model_args(p):
    g = p.add_argument_group("model hyper-parameters")
    g.add_argument("--cutoff", type=float, default=5.0, help="SOAP cutoff (Å)")
    g.add_argument("--cutoff-width", type=float, default=0.5, help="cosine switch width (Å)")
    g.add_argument("--n-max", type=int, default=8, help="radial basis functions")
    g.add_argument("--l-max", type=int, default=6, help="largest angular momentum")
    g.add_argument("--atom-sigma", type=float, default=0.5, help="Gaussian width (Å)")
    g.add_argument("--zeta", type=float, default=4, help="kernel exponent ζ")
    g.add_argument("--delta", type=float, default=1.0, help="kernel scale δ (eV)")
    g.add_argument("--n-sparse", type=int, default=1000, help="sparse points per species")
    g.add_argument("--sparse-method", default="cur", choices=["cur", "fps", "uniform", "random"],
                   help="sparse point selection")
    g.add_argument("--sigma-energy", type=float, default=0.002, help="eV/atom")
    g.add_argument("--sigma-force", type=float, default=0.1, help="eV/Å")
    g.add_argument("--sigma-virial", type=float, default=0.1, help="eV/atom")
    g.add_argument("--e0", default="average",
                   help="average | lstsq | isolated | a number (eV) | JSON {symbol: eV}")
    g.add_argument("--two-body", action="store_const", const="distance", default=None,
                   help="add a 2-body term (gap_fit's distance_2b pair kernel; see "
                        "--two-body-type)")
    g.add_argument("--two-body-type", choices=["distance", "radial"], default=None,
                   help="kind of 2-body term (implies --two-body): 'distance' (gap_fit's "
                        "distance_2b) or 'radial' (radial spectrum, squared-exponential "
                        "kernel)")
    g.add_argument("--delta-2b", type=float, default=0.5, help="2-body kernel scale (eV)")
    g.add_argument("--theta-2b", type=float, default=None,
                   help="2-body length scale: Å for 'distance' (default 1.0)")
    g.add_argument("--n-sparse-2b", type=int, default=50, help="sparse points of a radial 2-body "
                   "term")
    _key_args(g)
    g.add_argument("--config-type-sigma", default=None,
                   help='JSON, e.g. \'{"liquid": {"energy": 0.003, "force": 0.15}}\' (keys '
                        'energy, force, virial; every config type must occur in the data), '
                        "or gap_fit's 'liquid:0.003:0.15:0.1:0' with --gap")
    g.add_argument("--radial-basis", default=None, choices=["gto", "quip", "quip_gto"],
                   help="SOAP radial basis: gto (gapcalc's, default), quip (QUIP/GAP's "
                        "default EQUISPACED_GAUSS), quip_gto (QUIP's GTO); with --gap the "
                        "default is QUIP's, as gap_fit")
    q = p.add_argument_group("gap_fit recipes (README: 'gap_fit recipes'); with --gap the "
                             "descriptor, kernel and sparsification options above come from it")
    q.add_argument("--gap", default=None,
                   help="gap_fit's gap= value, e.g. \"soap cutoff=5 n_max=8 l_max=6 atom_sigma=0.5 "
                        "zeta=4 delta=1 n_sparse=1000 sparse_method=cur_points : distance_2b "
                        "cutoff=5 delta=1 theta_uniform=1 n_sparse=20\"")
    q.add_argument("--default-sigma", default=None,
                   help="gap_fit's default_sigma: 'energy force virial hessian'")
    q.add_argument("--e0-method", default=None, choices=["isolated", "average"],
                   help="gap_fit's e0_method (with --gap; default isolated, as gap_fit)")
    q.add_argument("--energy-parameter-name", default=None)
    q.add_argument("--force-parameter-name", default=None)
    q.add_argument("--virial-parameter-name", default=None)
    q.add_argument("--sparse-jitter", default=None, help="gap_fit's sparse_jitter")
    q.add_argument("--rnd-seed", default=None, help="gap_fit's rnd_seed")
    q.add_argument("--gap-fit-args", default=None,
                   help="any further gap_fit key=value arguments, as one string")
    _representation_args(g)


# -- representation options (issue 15): multi-scale SOAP, radial scaling, feature selection
_SOAP_KEYS = {"cutoff": float, "cutoff_width": float, "n_max": int, "l_max": int,
              "atom_sigma": float, "r0": float, "m": float, "c": float, "zeta": float,
              "delta": float, "n_sparse": int, "n_features": float}


def _representation_args(g):
    g.add_argument("--soap", action="append", default=None, metavar="'key=value ...'",
                   help="a SOAP term (repeat for a multi-scale model), e.g. "
                        "--soap 'cutoff=3 n_max=6 l_max=4 delta=0.2' --soap 'cutoff=5.5'; keys: "
                        + ", ".join(_SOAP_KEYS) + " (r0, m, c: radial scaling); unset keys "
                        "take the single-term options")
    g.add_argument("--radial-scaling", default=None, metavar="'r0=2 m=4 c=1'",
                   help="scale the neighbour density by u(r) = c/(c + (r/r0)^m)")
    g.add_argument("--n-features", type=float, default=None,
                   help="keep this many power-spectrum components (or a fraction < 1)")
    g.add_argument("--feature-method", default="cur", choices=["cur", "fps"],
                   help="how --n-features chooses the components")


def _keyvals(text, what):
    out = {}
    for item in text.replace(",", " ").split():
        if "=" not in item:
            raise SystemExit(f"{what}: expected key=value, got {item!r}")
        k, v = item.split("=", 1)
        k = k.strip().replace("-", "_")
        if k not in _SOAP_KEYS:
            raise SystemExit(f"{what}: unknown key {k!r} (known: {', '.join(_SOAP_KEYS)})")
        try:
            out[k] = _SOAP_KEYS[k](v)
        except ValueError:
            raise SystemExit(f"{what}: bad value for {k}: {v!r}") from None
    return out


def _scaling(kv):
    if "r0" not in kv and "m" not in kv:
        return None
    return {"type": "inverse_power", "r0": kv.get("r0", 2.0), "m": kv.get("m", 4.0),
            "c": kv.get("c", 1.0)}


def _n_feat(x):
    return None if x is None else (x if 0 < x < 1 else int(x))


def _soap_terms_from_args(a, species):
    """(descriptor(s), zeta, delta, n_sparse, n_features) from the command line."""
    from .descriptors import SOAP
    base = {"cutoff": a.cutoff, "cutoff_width": a.cutoff_width, "n_max": a.n_max,
            "l_max": a.l_max, "atom_sigma": a.atom_sigma,
            "radial_basis": getattr(a, "radial_basis", None) or "gto"}
    scal = _scaling(_keyvals(a.radial_scaling, "--radial-scaling")) if a.radial_scaling else None
    if not a.soap:
        return (SOAP(species, radial_scaling=scal, **base), a.zeta, a.delta, a.n_sparse,
                _n_feat(a.n_features))
    descs, zetas, deltas, sparse, feats = [], [], [], [], []
    for text in a.soap:
        kv = _keyvals(text, "--soap")
        opts = {k: kv.get(k, v) for k, v in base.items()}
        descs.append(SOAP(species, radial_scaling=_scaling(kv) or scal, **opts))
        zetas.append(kv.get("zeta", a.zeta))
        deltas.append(kv.get("delta", a.delta))
        sparse.append(kv.get("n_sparse", a.n_sparse))
        feats.append(_n_feat(kv.get("n_features", a.n_features)))
    return descs, zetas, deltas, sparse, feats



def _key_args(g, defaults=True):
    d = {"energy": "energy", "force": "forces", "virial": "virial", "stress": "stress"}
    for name, default in d.items():
        g.add_argument(f"--{name}-key", default=default if defaults else None,
                       help=f"where the {name} is read (atoms.info / atoms.arrays key)"
                       + ("" if defaults else " (default: the key stored in the model)"))


def _parse_e0(text):
    if text in ("average", "lstsq", "isolated"):
        return text
    try:
        return float(text)
    except ValueError:
        pass
    try:
        e0 = json.loads(text)
    except json.JSONDecodeError:
        raise UsageError(f"--e0 {text!r}: use average, lstsq, isolated, a number (eV) or JSON "
                         '{"Si": -158.5}') from None
    if not isinstance(e0, dict) or not all(isinstance(v, (int, float)) for v in e0.values()):
        raise UsageError(f"--e0 {text!r}: the JSON must map symbols to numbers (eV)")
    return e0


def _parse_config_type_sigma(text, frames):
    from .targets import check_config_type_sigma
    if not text:
        return None
    try:
        cts = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--config-type-sigma is not valid JSON ({exc}): e.g. "
                         '\'{"liquid": {"energy": 0.003, "force": 0.15}}\'') from None
    present = {str(at.info.get("config_type", "default")) for at in frames}
    try:
        check_config_type_sigma(cts, present)
    except ValueError as exc:
        raise UsageError(f"--config-type-sigma: {exc}") from None
    return cts


def _gap_fit_model(a, species):
    """SparseGPR from --gap and the other gap_fit-style options (gapfit_args)."""
    from .gapfit_args import GapFitArgumentError, gap_fit_kwargs, parse_command_line
    from .gpr import SparseGPR
    keys = parse_command_line(a.gap_fit_args) if a.gap_fit_args else {}
    keys["gap"] = a.gap
    for opt in ("default_sigma", "e0_method", "energy_parameter_name", "force_parameter_name",
                "virial_parameter_name", "sparse_jitter", "rnd_seed"):
        if getattr(a, opt) is not None:
            keys[opt] = getattr(a, opt)
    if a.config_type_sigma and not a.config_type_sigma.lstrip().startswith(("{\"", "{'")):
        keys["config_type_sigma"] = a.config_type_sigma
    e0_json = a.e0.lstrip().startswith("{")
    if a.e0 != "average" and not e0_json and "e0_method" not in keys:   # explicit --e0
        keys["e0"] = a.e0
    try:
        kw = gap_fit_kwargs(keys, species=species, radial_basis=a.radial_basis)
    except GapFitArgumentError as exc:
        raise SystemExit(f"gapcalc fit: {exc}") from None
    if a.config_type_sigma and "config_type_sigma" not in keys:
        kw["config_type_sigma"] = json.loads(a.config_type_sigma)
    if e0_json and "e0_method" not in keys:
        kw["e0"] = json.loads(a.e0)
    return SparseGPR(**kw)


def _dask_args(p):
    g = p.add_argument_group("parallel fitting (Dask; pip install 'gapcalc[dask]')")
    g.add_argument("--workers", type=int, default=None,
                   help="run on a local Dask cluster of this many processes (1 thread each)")
    g.add_argument("--scheduler", default=None,
                   help="run on an existing Dask cluster: tcp://host:port or a scheduler file")
    g.add_argument("--chunk-frames", type=int, default=None,
                   help="frames per task (default: from the data, ~max(16 M, 16384) rows)")
    g.add_argument("--candidates", choices=("leverage", "complete"), default=None,
                   help="how the workers find the serial fit's sparse points: 'leverage' "
                        "(default for cur/uniform/random: hashes, CUR keys and only the "
                        "chosen rows travel) or 'complete' (every chunk sends its whole "
                        "candidate pool; the default for fps)")


def _parallel(a) -> bool:
    return bool(getattr(a, "workers", None) or getattr(a, "scheduler", None))


def _client(a):
    """Dask client for --workers / --scheduler (clear error when Dask is missing)."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise UsageError("--workers/--scheduler need Dask: pip install 'gapcalc[dask]'") from None
    from .distributed import connect
    if not a.verbose:
        logging.getLogger("distributed").setLevel(logging.WARNING)
    return connect(workers=a.workers, scheduler=a.scheduler)


def _model_from_args(a, frames=None, species=None):
    from .gpr import SparseGPR
    if species is None:
        species = np.unique(np.concatenate([at.numbers for at in frames]))
    if getattr(a, "gap", None):
        if getattr(a, "soap", None) or getattr(a, "radial_scaling", None):
            raise UsageError("--soap / --radial-scaling cannot be combined with --gap (the "
                             "gap_fit recipe defines the descriptors)")
        model = _gap_fit_model(a, np.asarray(species).tolist())
        model.n_features = _n_feat(getattr(a, "n_features", None))
        model.feature_method = getattr(a, "feature_method", "cur")
        return model
    desc, zeta, delta, n_sparse, n_features = _soap_terms_from_args(a, species)
    e0 = _parse_e0(a.e0)
    if isinstance(e0, dict) and frames is not None:
        known = {s for at in frames for s in at.get_chemical_symbols()}
        missing = sorted(known - set(e0))
        if missing:
            raise UsageError(f"--e0 gives no value for {missing}")
    cts = (_parse_config_type_sigma(a.config_type_sigma, frames) if frames is not None
           else (json.loads(a.config_type_sigma) if a.config_type_sigma else None))
    two_body = a.two_body_type or a.two_body
    return SparseGPR(desc, zeta=zeta, delta=delta, n_sparse=n_sparse,
                     n_features=n_features, feature_method=a.feature_method,
                     sparse_method=a.sparse_method, sigma_energy=a.sigma_energy,
                     sigma_force=a.sigma_force, sigma_virial=a.sigma_virial, e0=e0,
                     two_body=two_body, delta_2b=a.delta_2b, theta_2b=a.theta_2b,
                     n_sparse_2b=a.n_sparse_2b, energy_key=a.energy_key,
                     force_key=a.force_key, virial_key=a.virial_key, stress_key=a.stress_key,
                     config_type_sigma=cts)


UNITS = {"energy_rmse": "eV/atom", "energy_mae": "eV/atom", "force_rmse": "eV/Å",
         "force_mae": "eV/Å", "stress_rmse": "eV/Å³"}
UNITS_NOTE = ("(energy per atom in meV/atom, force components in eV/Å, stress Voigt "
              "components in GPa; --json gives eV/atom, eV/Å, eV/Å³)")


def cmd_fit(a):
    from .metrics import error_table, format_table
    t0 = time.perf_counter()
    frames = None
    if _parallel(a):
        from .distributed import species
        with _client(a) as client:
            model = _model_from_args(a, species=species(a.train, client))
            model.fit(a.train, client=client, chunk_frames=a.chunk_frames,
                      candidates=a.candidates)
    else:
        frames = [at for path in a.train for at in _read(path)]
        model = _model_from_args(a, frames)
        model.fit(frames)
    log.info("fitted %d frames in %.1f s (M = %d)", model.training_summary_["n_frames"],
             time.perf_counter() - t0, model.M_)
    model.save(a.output)
    print(f"model written to {a.output}")
    if frames is not None:      # a distributed fit never holds every frame here
        print("training errors (the fit's own data: a floor, not a test):")
        print(format_table(error_table(model, frames)))
    if a.valid:
        table = error_table(model, _read(a.valid))
        print("validation errors:")
        print(format_table(table))
    print(UNITS_NOTE)


def _load_model(name_or_path):
    from . import load_model_file
    from .potentials import resolve
    return load_model_file(resolve(name_or_path))


def cmd_tune(a):
    """gapcalc tune: hyper-parameters by k-fold CV on the training set (gapcalc/tune.py)."""
    from .metrics import error_table, format_table
    from .tune import format_tune_table, tune
    frames = _read(a.train)
    valid = _read(a.valid) if a.valid else None
    res = tune(frames, k=a.folds, budget=a.budget, max_candidates=a.max_candidates,
               seed=a.seed, n_sparse=a.n_sparse, n_sparse_search=a.n_sparse_search,
               score=a.score, valid=valid, e0=a.e0, search_frames=a.search_frames,
               final_cv=not a.no_final_cv, finalists=a.finalists,
               energy_cap=None if a.energy_cap <= 0 else a.energy_cap)
    print(format_tune_table(res))
    res["model"].save(a.output)
    print(f"best: {res['best_row']['label']}")
    print(f"model written to {a.output}")
    if valid is not None:
        print("validation errors:")
        print(format_table(error_table(res["model"], valid)))


def cmd_eval(a):
    from .metrics import error_table, format_table
    model = _load_model(a.model)
    for k in ("energy", "force", "virial", "stress"):   # override the keys stored at fit time
        v = getattr(a, f"{k}_key")
        if v is not None:
            setattr(model, f"{k}_key", v)
    frames = _read(a.test)
    table = error_table(model, frames, return_predictions=bool(a.plot))
    if a.plot:
        _parity_plot(table.pop("predictions"), a.plot)
    if a.json:
        print(json.dumps({**table["overall"], "per_config_type": table["per_config_type"],
                          "units": UNITS}))
    else:
        print(format_table(table))
        print(UNITS_NOTE)


def _parity_plot(pred, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'gapcalc[plot]'") from None
    fig, axes = plt.subplots(1, len(pred), figsize=(5 * len(pred), 4.5))
    axes = np.atleast_1d(axes)
    for ax, (name, (ref, got)) in zip(axes, pred.items()):
        ax.plot(ref, got, ".", ms=2)
        lo, hi = min(ref.min(), got.min()), max(ref.max(), got.max())
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.5)
        unit = "eV/atom" if name == "energy" else "eV/Å"
        ax.set_xlabel(f"reference {name} ({unit})")
        ax.set_ylabel(f"gapcalc {name} ({unit})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"parity plot written to {path}")


def cmd_info(a):
    from .gap_xml import describe, is_gap_xml, load_gap_xml
    if is_gap_xml(a.model):
        print(f"{a.model}: gap_fit model file (imported as a gapcalc Potential)")
        print(json.dumps(describe(load_gap_xml(a.model)), indent=2, ensure_ascii=False))
        return
    from .io import read_npz
    from .potentials import resolve
    header, arrays = read_npz(resolve(a.model))
    header.pop("checksums", None)
    header["arrays"] = {k: list(v.shape) for k, v in arrays.items()}
    print(json.dumps(header, indent=2, sort_keys=True))


def cmd_convert(a):
    """gap_fit XML → native model file (no XML or sparseX files needed afterwards)."""
    from .gap_xml import load_gap_xml
    pot = load_gap_xml(a.model, label=a.label)
    pot.save(a.output)
    print(f"{a.model} -> {a.output}: {pot!r}, cutoff {pot.cutoff:g} Å")


def cmd_cv(a):
    from .tuning import cross_validate
    grid = dict(k=a.folds, sigma_energy=_floats(a.grid_sigma_energy),
                sigma_force=_floats(a.grid_sigma_force),
                sigma_virial=_floats(a.grid_sigma_virial), delta=_floats(a.grid_delta),
                score=a.score, refit=bool(a.output))
    if _parallel(a):
        from .distributed import species
        with _client(a) as client:
            model = _model_from_args(a, species=species(a.train, client))
            cv = cross_validate(model, a.train, client=client, chunk_frames=a.chunk_frames,
                                candidates=a.candidates, **grid)
    else:
        frames = _read(a.train)
        cv = cross_validate(_model_from_args(a, frames), frames, **grid)
    print(f"{'σ_E':>8}{'σ_F':>8}{'σ_V':>8}{'δ':>8}{'E RMSE':>12}{'F RMSE':>10}{'S RMSE':>10}")
    for r in cv["results"]:
        mark = "  <- best" if r is cv["best"] else ""
        fmt = (lambda x, s=1.0: "-" if x is None else f"{x * s:.4f}")
        print(f"{r['sigma_energy']:>8g}{r['sigma_force']:>8g}{r['sigma_virial']:>8g}"
              f"{r['delta']:>8g}{fmt(r['energy_rmse'], 1e3):>12}{fmt(r['force_rmse']):>10}"
              f"{fmt(r['stress_rmse']):>10}{mark}")
    print("(energy meV/atom, force eV/Å, stress eV/Å³; held-out over "
          f"{cv['k']} folds)")
    if a.output:
        cv["model"].save(a.output)
        print(f"best model written to {a.output}")


def cmd_curve(a):
    from .tuning import learning_curve
    frames = _read(a.train)
    model = _model_from_args(a, frames)
    sizes = [int(x) for x in a.sizes.split(",")]
    if _parallel(a):
        with _client(a) as client:
            curve = learning_curve(model, frames, _read(a.valid), sizes, client=client)
    else:
        curve = learning_curve(model, frames, _read(a.valid), sizes)
    print(f"{'n_train':>8}{'E RMSE meV/at':>15}{'F RMSE eV/Å':>13}")
    for r in curve:
        print(f"{r['n_train']:>8}{r['energy_rmse'] * 1e3:>15.3f}{r['force_rmse']:>13.4f}")
    if a.json:
        print(json.dumps(curve))


def cmd_md(a):
    from .md import run_md
    from . import load
    from .potentials import resolve
    resolve(a.model)                    # a clear error before reading anything else
    atoms = _read_one(a.structure)
    calc = load(a.model)
    atoms.calc = calc

    def monitor():
        fs = calc.model.uncertainty(atoms, nl=calc._neighbors(atoms))["forces_std"]
        per_atom = np.sqrt(np.mean(fs ** 2, axis=1))
        return (f"max σ_F {per_atom.max():.4f} eV/Å (atom {int(per_atom.argmax())}; latent "
                "posterior std)")
    run_md(atoms, steps=a.steps, temperature=a.temperature, timestep=a.timestep,
           ensemble=a.ensemble, trajectory=a.output, log_interval=a.log_interval,
           pressure=a.pressure, seed=a.seed, trajectory_interval=a.trajectory_interval,
           monitor=monitor if a.log_uncertainty else None)


def cmd_demo(a):
    """Main job on a built-in data set: EMT Cu frames → fit → errors → short MD."""
    from .datasets import emt_frames
    from .descriptors import SOAP
    from .gpr import SparseGPR
    from .md import run_md
    from .metrics import error_table, format_table
    t0 = time.perf_counter()
    frames = emt_frames("Cu", n_frames=a.frames + 20, size=(3, 3, 3), temperature=800,
                        interval=10, seed=a.seed)
    train, test = frames[:a.frames], frames[a.frames:]
    log.info("generated %d EMT Cu frames (108 atoms) in %.1f s", len(frames),
             time.perf_counter() - t0)
    desc = SOAP(["Cu"], cutoff=5.0, n_max=8, l_max=6, atom_sigma=0.5, cutoff_width=0.5)
    model = SparseGPR(desc, zeta=4, n_sparse=a.n_sparse, sigma_energy=0.001, sigma_force=0.03,
                      sigma_virial=0.02)
    t1 = time.perf_counter()
    model.fit(train)
    print(f"fitted {len(train)} frames ({len(train) * 108} atoms, M = {model.M_}) in "
          f"{time.perf_counter() - t1:.1f} s")
    print("held-out errors against EMT:")
    print(format_table(error_table(model, test)))
    if a.output:
        model.save(a.output)
        print(f"model written to {a.output}")
    atoms = test[0].copy()
    atoms.calc = model.calculator()
    run_md(atoms, steps=a.steps, temperature=800, timestep=2.0, ensemble="langevin",
           log_interval=max(1, a.steps // 5), seed=a.seed)


LEARN_DEFAULTS = dict(oracle="emt", temperature=800.0, steps=5000, timestep=2.0,
                      threshold=0.055, threshold_sigma=None, check_interval=200, min_interval=20,
                      max_calls=100, converge_checks=10, converge_steps=1000,
                      monitor_interval=500,
                      n_sparse_initial=50, n_sparse_add=25, refit_every=None,
                      on_oracle_error="skip", log_interval=250, seed=0,
                      trajectory_interval=10, output="otf_run", soap=None, sigma_force=None,
                      sigma_energy=None)
# what --resume may change; the rest belongs to the run (state.json)
RESUMABLE = ("steps", "max_calls", "log_interval", "oracle")


_LEARN_MODEL_KEYS = ("cutoff", "cutoff_width", "n_max", "l_max", "atom_sigma", "zeta", "delta")


def _learn_model(a, atoms):
    """The run's empty model: active.default_model with the --soap / --sigma-* changes."""
    import numpy as np
    from . import active
    kv = _keyvals(a.soap, "--soap") if a.soap else {}
    bad = sorted(set(kv) - set(_LEARN_MODEL_KEYS))
    if bad:
        raise UsageError(f"--soap for learn: {', '.join(bad)} not settable here (keys: "
                         + ", ".join(_LEARN_MODEL_KEYS) + ")")
    sigmas = {k: getattr(a, k) for k in ("sigma_force", "sigma_energy")
              if getattr(a, k) is not None}
    return active.default_model(np.unique(atoms.numbers), **kv, **sigmas)


def _learn_settings(a):
    """Fill LEARN_DEFAULTS for options not given; returns the set given explicitly."""
    given = {k for k in LEARN_DEFAULTS if getattr(a, k, None) is not None}
    for k, v in LEARN_DEFAULTS.items():
        if getattr(a, k, None) is None:
            setattr(a, k, v)
    return given


def _default_kernel(key):
    from .active import DEFAULT_KERNEL
    return DEFAULT_KERNEL[key]


def _fmt_default_model():
    from .active import DEFAULT_KERNEL, DEFAULT_MODEL
    keys = {**DEFAULT_MODEL, "zeta": DEFAULT_KERNEL["zeta"], "delta": DEFAULT_KERNEL["delta"]}
    return "'" + " ".join(f"{k}={v:g}" for k, v in keys.items()) + "'"


def _check_resume_flags(a, given):
    from pathlib import Path
    state_path = Path(a.resume) / "state.json"
    if not state_path.exists():
        raise FileNotFoundError(f"{a.resume}: no state.json, nothing to resume")
    state = json.loads(state_path.read_text())
    cfg = state.get("config") or {}
    if a.structure:
        raise UsageError(f"--resume continues the run's own structure: drop {a.structure!r}")
    if a.validate:
        raise UsageError("--validate is not rerun on --resume (it costs oracle calls); "
                         "evaluate the run's model with 'gapcalc eval RUN/model.npz FRAMES'")
    stored = {**{k: state.get(k) for k in LEARN_DEFAULTS}, **cfg}
    for k in sorted(given - set(RESUMABLE)):
        if k == "output":
            raise UsageError("--resume writes into the run folder itself: drop -o/--output")
        if stored.get(k) != getattr(a, k):
            raise UsageError(f"--{k.replace('_', '-')} conflicts with --resume: the run was "
                             f"started with {stored.get(k)!r} and keeps it (only "
                             + ", ".join("--" + r.replace("_", "-") for r in RESUMABLE)
                             + " can change)")
    if "steps" in given and a.steps < int(state.get("step", 0)):
        raise UsageError(f"--steps {a.steps} is the new total and the run is already at step "
                         f"{state.get('step')}")
    return state


def cmd_learn(a):
    from pathlib import Path
    from . import active
    from .metrics import error_table, format_table
    given = _learn_settings(a)
    t0 = time.perf_counter()
    if a.resume:
        _check_resume_flags(a, given)
        run_dir = Path(a.resume)
        otf = active.resume(
            a.resume, oracle=a.oracle if "oracle" in given else None,
            steps=a.steps if "steps" in given else None,
            max_calls=a.max_calls if "max_calls" in given else None,
            log_interval=a.log_interval if "log_interval" in given else None)
        validate = 0
    else:
        from ase.build import bulk
        builtin = not a.structure
        atoms = (bulk("Cu", "fcc", 3.61, cubic=True) * (3, 3, 3) if builtin
                 else _read_one(a.structure))
        oracle = active.make_oracle(a.oracle)
        run_dir = Path(a.output)
        if (run_dir / "state.json").exists():
            raise FileExistsError(f"{run_dir} holds a run already: continue it with "
                                  f"'gapcalc learn --resume {run_dir}' or choose another -o")
        # validation against the oracle is opt-in, except for the built-in EMT demo
        validate = a.validate if a.validate is not None else (
            50 if builtin and a.oracle.lower() == "emt" else 0)
        if validate:
            print(f"validation after the run: {validate} fresh frames from Langevin MD with the "
                  f"oracle = {active.fresh_frames_cost(validate)} extra oracle calls, counted "
                  "apart from the learning calls (--validate 0 to skip)")
        kw = dict(threshold=a.threshold) if a.threshold_sigma is None else dict(
            threshold_sigma=a.threshold_sigma)
        otf = active.learn(atoms, oracle, run_dir, model=_learn_model(a, atoms),
                           oracle_spec=a.oracle,
                           temperature=a.temperature, steps=a.steps, timestep=a.timestep,
                           seed=a.seed, log_interval=a.log_interval,
                           check_interval=a.check_interval, min_interval=a.min_interval,
                           max_calls=a.max_calls or None, converge_checks=a.converge_checks,
                           converge_steps=a.converge_steps,
                           monitor_interval=a.monitor_interval, n_sparse_add=a.n_sparse_add,
                           n_sparse_initial=a.n_sparse_initial, refit_every=a.refit_every,
                           on_oracle_error=a.on_oracle_error,
                           trajectory_interval=a.trajectory_interval, **kw)
    wall = time.perf_counter() - t0
    c = otf.cost_summary()
    ses = getattr(otf, "session_", {})
    print(f"on-the-fly run: {otf.dyn.nsteps} MD steps, {otf.n_calls_} learning oracle calls, "
          f"{c['n_checks']} uncertainty checks, sparse set {otf.model.M_}, wall {wall:.1f} s; "
          f"checkpoint in {run_dir}")
    if ses:
        print(f"  this session: MD {ses['md_s']:.1f} s, {ses['checks']} uncertainty checks "
              f"{ses['check_s']:.1f} s ({100 * ses['check_s'] / max(ses['md_s'], 1e-9):.0f} % "
              f"of MD), oracle {ses['oracle_s']:.1f} s, learning {ses['learn_s']:.1f} s; CPU "
              f"{ses['cpu_s']:.1f} s: MD {ses['md_cpu_s']:.1f} s, checks {ses['check_cpu_s']:.1f} s"
              f" ({100 * ses['uncertainty_fraction_of_md_cpu']:.0f} % of MD)")
    print(f"  why the oracle calls stopped: {otf.stop_reason()}")
    for h in otf.history_:
        print(f"  call {h.get('call', '-')}: step {h['step']}, {h['reason']}, max σ_F "
              f"{h.get('max_force_std')} eV/Å, update {h.get('update_s')} s")
    if validate:
        structure = otf.frames_[0].copy()
        frames = active.fresh_frames(structure, otf.oracle, otf.config["temperature"],
                                     n_frames=validate)
        table = error_table(otf.model, frames)
        print(f"validation: final model on {validate} fresh oracle frames at "
              f"{otf.config['temperature']} K ({active.fresh_frames_cost(validate)} validation "
              "oracle calls, not learning calls):")
        print(format_table(table))
        otf.validation_ = {"frames": validate, "oracle_calls": active.fresh_frames_cost(validate),
                           **{k: table["overall"][k] for k in
                              ("energy_mae", "energy_rmse", "force_mae", "force_rmse")}}
        otf.checkpoint()
    elif otf.validation_:
        v = otf.validation_
        print(f"validation (from the original run, not rerun): force MAE {v['force_mae']:.4f} "
              f"eV/Å on {v['frames']} fresh frames (that model, before this resume)")
    summary = {"steps": otf.dyn.nsteps, "oracle_calls": otf.n_calls_, "wall_s": round(wall, 2),
               "status": otf.status_, "stop_reason": otf.stop_reason(), "session_s": ses,
               "total_s": c, "validation": otf.validation_}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    if a.plot:
        _learn_plot(otf, a.plot)


def _learn_plot(otf, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'gapcalc[plot]'") from None
    checks = np.array(otf.checks_) if otf.checks_ else np.zeros((0, 2))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    dt = otf.config.get("timestep", 1.0) / 1000.0
    ax.plot(checks[:, 0] * dt, checks[:, 1], lw=0.6, label="max per-atom σ_F")
    calls = [h["step"] for h in otf.history_ if "call" in h]
    ax.plot(np.array(calls) * dt, [otf.threshold_ev] * len(calls), "rv", label="oracle call")
    ax.axhline(otf.threshold_ev, color="r", lw=0.5, ls="--")
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("σ_F (eV/Å)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")


def build_parser():
    from . import __version__
    p = argparse.ArgumentParser(prog="gapcalc", description=__doc__,
                                formatter_class=_HelpFormatter)
    p.add_argument("--version", action="version", version=f"gapcalc {__version__}")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="debug logging, and full tracebacks on errors")
    p.add_argument("--log", default=None, help="also log to this file")
    sub = p.add_subparsers(dest="command", required=True)

    def parser(name, **kw):
        return sub.add_parser(name, formatter_class=_HelpFormatter, **kw)

    f = parser("fit", help="fit a model to an extended-XYZ training set")
    f.add_argument("train", nargs="+", help="training frames (extxyz or any ASE format; "
                   "several files allowed)")
    f.add_argument("-o", "--output", required=True, help="model file (.npz)")
    f.add_argument("--valid", help="validation extxyz, errors printed after fitting")
    _model_args(f)
    _dask_args(f)
    f.set_defaults(func=cmd_fit)

    e = parser("eval", help="errors of a model on a test set")
    e.add_argument("model", help="model file or shipped potential name (Si, Cu, water)")
    e.add_argument("test", help="reference frames")
    e.add_argument("--json", action="store_true",
                   help="one JSON line (eV/atom, eV/Å, eV/Å³; units included)")
    e.add_argument("--plot", help="parity plot PNG (needs matplotlib)")
    _key_args(e.add_argument_group("target keys (override those stored in the model)"),
              defaults=False)
    e.set_defaults(func=cmd_eval)

    i = parser("info", help="print a model file's header (or describe a gap_fit XML)")
    i.add_argument("model", help="model file or shipped potential name")
    i.set_defaults(func=cmd_info)

    cv = parser("convert", help="convert a gap_fit XML model to a gapcalc model file")
    cv.add_argument("model", help="gap_fit XML file (its sparseX files beside it)")
    cv.add_argument("-o", "--output", required=True, help="model file (.npz)")
    cv.add_argument("--label", default=None, help="GAP_params label (default: the file's)")
    cv.set_defaults(func=cmd_convert)

    c = parser("cv", help="k-fold cross-validation over σ and δ")
    c.add_argument("train", help="training frames")
    c.add_argument("--folds", type=int, default=5, help="number of folds")
    c.add_argument("--grid-sigma-energy", help="comma-separated values (eV/atom)")
    c.add_argument("--grid-sigma-force", help="comma-separated values (eV/Å)")
    c.add_argument("--grid-sigma-virial", help="comma-separated values (eV/atom)")
    c.add_argument("--grid-delta", help="comma-separated values (eV)")
    c.add_argument("--score", default="force", choices=["force", "energy", "stress"],
                   help="error that picks the best")
    c.add_argument("-o", "--output", help="write the best model here")
    _model_args(c)
    _dask_args(c)
    c.set_defaults(func=cmd_cv)

    lc = parser("curve", help="learning curve: validation error vs training size")
    lc.add_argument("train", help="training frames")
    lc.add_argument("--valid", required=True, help="validation frames")
    lc.add_argument("--sizes", required=True, help="e.g. 10,20,50,100")
    lc.add_argument("--json", action="store_true", help="also print the curve as JSON")
    _model_args(lc)
    _dask_args(lc)
    lc.set_defaults(func=cmd_curve)

    m = parser("md", help="molecular dynamics with a model")
    m.add_argument("model", help="model file or shipped potential name")
    m.add_argument("structure", help="starting structure")
    m.add_argument("--steps", type=int, default=1000, help="MD steps")
    m.add_argument("--temperature", type=float, default=300.0, help="K")
    m.add_argument("--timestep", type=float, default=1.0, help="fs")
    m.add_argument("--ensemble", default="langevin", choices=["nve", "langevin", "npt"],
                   help="integrator")
    m.add_argument("--pressure", type=float, default=0.0, help="GPa (npt)")
    m.add_argument("--log-interval", type=int, default=100, help="steps between progress lines")
    m.add_argument("--seed", type=int, default=0, help="random seed (velocities, Langevin)")
    m.add_argument("-o", "--output", default=None,
                   help="trajectory: .traj = ASE binary; any other suffix = that format "
                        "(.xyz: extended XYZ with energy, forces, stress)")
    m.add_argument("--trajectory-interval", type=int, default=None,
                   help="steps between trajectory frames (default: --log-interval)")
    m.add_argument("--log-uncertainty", action="store_true",
                   help="add the largest per-atom force std σ_F (eV/Å, latent posterior) to "
                        "every progress line (costs one uncertainty evaluation per line)")
    m.set_defaults(func=cmd_md)

    D = LEARN_DEFAULTS
    le = parser("learn", help="on-the-fly learning MD (default: fcc Cu 108, EMT, 800 K)",
                description="On-the-fly learning MD. Without a structure: the built-in demo "
                "(fcc Cu 3x3x3, EMT oracle, 800 K). --resume RUN continues a run; there "
                "--steps is the new TOTAL number of MD steps, and only --steps, --max-calls, "
                "--log-interval and --oracle may be given (other run settings are the run's).")
    le.add_argument("structure", nargs="?", help="starting structure (default fcc Cu 3x3x3)")
    le.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its checkpoint")
    le.add_argument("--oracle", default=None,
                    help="emt | lj:sigma=S,epsilon=E[,rc=R] (Å, eV) | module:factory, where "
                         "module is imported from the working directory first (default: emt; "
                         "on --resume: the run's, or give it if the run was started from Python)")
    le.add_argument("--temperature", type=float, default=None, help=f"K (default: {D['temperature']})")
    le.add_argument("--steps", type=int, default=None,
                    help=f"MD steps; with --resume the new total (default: {D['steps']})")
    le.add_argument("--timestep", type=float, default=None, help=f"fs (default: {D['timestep']})")
    le.add_argument("--threshold", type=float, default=None,
                    help="calibrated largest per-atom latent force std that triggers a call "
                         f"(eV/Å; default: {D['threshold']})")
    le.add_argument("--threshold-sigma", type=float, default=None,
                    help="trigger as a multiple of the model's σ_F instead")
    le.add_argument("--check-interval", type=int, default=None,
                    help="most steps between uncertainty checks; checks are spaced adaptively "
                         f"up to this (default: {D['check_interval']})")
    le.add_argument("--min-interval", type=int, default=None,
                    help=f"steps between calls (default: {D['min_interval']})")
    le.add_argument("--max-calls", type=int, default=None,
                    help=f"cap on learning oracle calls, 0 = none (default: {D['max_calls']})")
    le.add_argument("--converge-checks", type=int, default=None,
                    help="checks in a row without a trigger that declare convergence, 0 = never "
                         f"(default: {D['converge_checks']})")
    le.add_argument("--converge-steps", type=int, default=None,
                    help="...spanning at least this many MD steps "
                         f"(default: {D['converge_steps']})")
    le.add_argument("--monitor-interval", type=int, default=None,
                    help="steps between checks once converged or capped, 0 = none "
                         f"(default: {D['monitor_interval']})")
    le.add_argument("--n-sparse-initial", type=int, default=None,
                    help=f"sparse points at the first fit (default: {D['n_sparse_initial']})")
    le.add_argument("--n-sparse-add", type=int, default=None,
                    help=f"sparse points added per call (default: {D['n_sparse_add']})")
    le.add_argument("--soap", default=None, metavar="'key=value ...'",
                    help="the empty model's SOAP and kernel, changing the default "
                         f"{_fmt_default_model()}; keys: {', '.join(_LEARN_MODEL_KEYS)} "
                         "(e.g. water: 'cutoff=3 n_max=6 l_max=4 atom_sigma=0.3 zeta=2')")
    le.add_argument("--sigma-force", type=float, default=None,
                    help="the empty model's force noise σ_F (eV/Å; default "
                         f"{_default_kernel('sigma_force')})")
    le.add_argument("--sigma-energy", type=float, default=None,
                    help="the empty model's energy noise (eV/atom; default "
                         f"{_default_kernel('sigma_energy')})")
    le.add_argument("--refit-every", type=int, default=None,
                    help="exact refit on the run's oracle frames every N calls, 0 = never "
                         "(default: every call, since a learn run starts empty)")
    le.add_argument("--on-oracle-error", default=None, choices=["skip", "stop"],
                    help=f"(default: {D['on_oracle_error']})")
    le.add_argument("--log-interval", type=int, default=None,
                    help=f"steps between progress lines (default: {D['log_interval']})")
    le.add_argument("--seed", type=int, default=None, help=f"(default: {D['seed']})")
    le.add_argument("--trajectory-interval", type=int, default=None,
                    help="steps between frames of RUN/md.traj, 0 = none "
                         f"(default: {D['trajectory_interval']})")
    le.add_argument("--validate", type=int, default=None,
                    help="after the run, N fresh frames from MD with the oracle itself (about "
                         "(N+5)*20 extra oracle calls, stated before it starts); default: 50 "
                         "for the built-in EMT demo, 0 otherwise; never rerun on --resume")
    le.add_argument("--plot", help="uncertainty/oracle-call plot PNG (needs matplotlib)")
    le.add_argument("-o", "--output", default=None, help=f"run folder (default: {D['output']})")
    le.set_defaults(func=cmd_learn)

    t = parser("tune", help="choose hyper-parameters by k-fold CV, fit and write the model")
    t.add_argument("train", help="training extxyz")
    t.add_argument("-o", "--output", required=True, help="model file (.npz)")
    t.add_argument("--valid", help="validation extxyz: learning curve and final errors")
    t.add_argument("--budget", type=float, default=None, help="search time (s)")
    t.add_argument("--max-candidates", type=int, default=None,
                   help="most representation candidates to score")
    t.add_argument("--folds", type=int, default=4, help="cross-validation folds")
    t.add_argument("--seed", type=int, default=0, help="random seed")
    t.add_argument("--score", default="force", choices=["force", "energy", "both"],
                   help="held-out error to minimise")
    t.add_argument("--n-sparse", type=int, default=1000, help="sparse points of the final fit")
    t.add_argument("--n-sparse-search", type=int, default=300,
                   help="sparse points per species during the search")
    t.add_argument("--search-frames", type=int, default=None,
                   help="search on a seeded subset of this many training frames")
    t.add_argument("--finalists", type=int, default=3,
                   help="the best search candidates cross-validated again at --n-sparse on "
                        "all frames (σ's and δ chosen anew); the best of them is the model")
    t.add_argument("--energy-cap", type=float, default=1.0,
                   help="held-out energy RMSE allowed, relative to the starting recipe with "
                        "default σ's and δ (penalised beyond it); 0: no cap")
    t.add_argument("--no-final-cv", action="store_true",
                   help="refit the search's winner with its σ's and δ instead of the final "
                        "CV of the finalists at --n-sparse on all frames")
    t.add_argument("--e0", default="average",
                   help="average | lstsq | isolated | a number (eV) | JSON {symbol: eV}")
    t.set_defaults(func=cmd_tune)

    d = parser("demo", help="fit EMT Cu frames, print errors, run MD (no input needed)")
    d.add_argument("--frames", type=int, default=40, help="training frames")
    d.add_argument("--n-sparse", type=int, default=300, help="sparse points")
    d.add_argument("--steps", type=int, default=500, help="MD steps")
    d.add_argument("--seed", type=int, default=0, help="random seed")
    d.add_argument("-o", "--output", default=None, help="model file to write")
    d.set_defaults(func=cmd_demo)
    return p


def _legacy_argv(argv):
    """``--two-body radial`` / ``--two-body distance`` (old syntax) → ``--two-body-type X``."""
    out = []
    it = iter(range(len(argv)))
    for k in it:
        tok = argv[k]
        if tok == "--two-body" and k + 1 < len(argv) and argv[k + 1] in ("distance", "radial"):
            out.append(f"--two-body-type={argv[k + 1]}")
            next(it)
        else:
            out.append(tok)
    return out


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(_legacy_argv(argv))
    _setup_logging(args.verbose, args.log)
    from .active import OracleError
    try:
        args.func(args)
    except (ValueError, OSError, ImportError, OracleError, KeyError) as exc:
        # FrameError, ModelFileError, UsageError, OracleSpecError are ValueErrors
        if args.verbose:
            log.exception("error")
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"gapcalc {args.command}: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
