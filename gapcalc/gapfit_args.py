"""gap_fit's argument language mapped onto :class:`~gapcalc.gpr.SparseGPR`.

A ``gap_fit`` recipe such as ::

    gap_fit at_file=train.xyz gap={soap cutoff=5 n_max=8 l_max=6 atom_sigma=0.5 zeta=4
        delta=1 n_sparse=1000 sparse_method=cur_points : distance_2b cutoff=5 delta=1
        theta_uniform=1 n_sparse=20} default_sigma={0.002 0.1 0.1 0} e0_method=average

becomes ``SparseGPR(**gap_fit_kwargs(...))`` (or :meth:`SparseGPR.from_gap_fit`, or
``gapcalc fit train.xyz --gap "..." --default-sigma "..."``). Every key is either mapped
(table ``README.md`` § "gap_fit recipes"), accepted because it does not change the model
(output and bookkeeping options), or refused: a key gapcalc cannot honour raises a
:class:`GapFitArgumentError` that says so, and an unknown key one that names it.

SOAP in a recipe means QUIP's SOAP: its default radial basis (``radial_basis`` unset or
``EQUISPACED_GAUSS``) maps to gapcalc's ``radial_basis="quip"``, ``GTO`` to ``"quip_gto"``;
``radial_basis=None`` (keyword) overrides this (e.g. ``"gto"`` for gapcalc's own basis).
"""
from __future__ import annotations

__all__ = ["GapFitArgumentError", "split_top_level", "parse_key_values", "parse_gap",
           "parse_command_line", "gap_fit_kwargs"]


class GapFitArgumentError(ValueError):
    """A gap_fit argument that is unknown, malformed, or that gapcalc cannot honour."""


# ----------------------------------------------------------------------------- tokens

def _require_covariance(kv, where, descriptor, kernel):
    """GapFitArgumentError unless covariance_type (default: ``kernel``) is ``kernel``."""
    cov = kv.get("covariance_type", kernel).lower()
    if cov != kernel:
        raise GapFitArgumentError(f"{where}: covariance_type={cov} cannot be honoured: gapcalc's "
                                  f"{descriptor} kernel is {kernel}")

def split_top_level(text: str, sep: str) -> list[str]:
    """Split ``text`` at ``sep`` characters outside braces and quotes (None: whitespace)."""
    parts, cur, depth, quote = [], [], 0, None
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise GapFitArgumentError(f"unbalanced '}}' in {text!r}")
        is_sep = ch.isspace() if sep is None else ch == sep
        if is_sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth or quote:
        raise GapFitArgumentError(f"unbalanced braces or quotes in {text!r}")
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _unwrap(value: str) -> str:
    v = value.strip()
    while len(v) >= 2 and ((v[0] == "{" and v[-1] == "}") or (v[0] == v[-1] and v[0] in "\"'")):
        v = v[1:-1].strip()
    return v


def parse_key_values(tokens, where: str) -> dict:
    """{key: value string} from ``key=value`` tokens (braces/quotes removed); a bare
    ``key`` means ``key=T``. Keys are case-insensitive (gap_fit's are), repeats refused."""
    out = {}
    for tok in tokens:
        key, eq, value = tok.partition("=")
        key = key.strip().lower()
        if not key:
            raise GapFitArgumentError(f"{where}: empty key in {tok!r}")
        if key in out:
            raise GapFitArgumentError(f"{where}: key {key!r} given twice")
        out[key] = _unwrap(value) if eq else "T"
    return out


def _bool(value: str, key: str, where: str) -> bool:
    v = value.strip().lower()
    if v in ("t", "true", "1", "yes"):
        return True
    if v in ("f", "false", "0", "no"):
        return False
    raise GapFitArgumentError(f"{where}: {key}={value!r} is not a logical (T/F)")


def _float(value: str, key: str, where: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise GapFitArgumentError(f"{where}: {key}={value!r} is not a number") from None


def _int(value: str, key: str, where: str) -> int:
    x = _float(value, key, where)
    if x != int(x):
        raise GapFitArgumentError(f"{where}: {key}={value!r} is not an integer")
    return int(x)


def _ints(value: str, key: str, where: str) -> list[int]:
    return [_int(v, key, where) for v in value.replace(",", " ").split()]


# ----------------------------------------------------------------------------- descriptors
_SPARSE_METHODS = {"cur_points": "cur", "cur": "cur", "random": "random", "uniform": "uniform",
                   "fps": "fps", "furthest_point": "fps", "farthest_point": "fps"}
# keys that change nothing gapcalc computes (bookkeeping, output, speed), accepted silently
_SOAP_IGNORED = {"print_sparse_index", "mark_sparse_atoms", "unique_hash_tolerance",
                 "unique_descriptor_tolerance", "sparse_separate_file", "n_species",
                 "add_species", "n_z", "theta_uniform", "theta_fac", "f0"}
_SOAP_UNSUPPORTED = {
    "covariance_type": None,       # only dot_product: checked below
    "average": "a global (averaged) SOAP", "diagonal_radial": "diagonal_radial compression",
    "cutoff_dexp": "the extra radial decay cutoff_dexp", "cutoff_scale": "cutoff_scale",
    "cutoff_rate": "cutoff_rate", "nu_r": "compressed SOAP (nu_R)", "nu_s": "compressed SOAP (nu_S)",
    "z_mix": "species mixing (Z_mix)", "r_mix": "radial mixing (R_mix)", "sym_mix": "sym_mix",
    "k": "mixing channels (K)", "z_map": "Z_map", "coupling": "coupling",
    "config_type_n_sparse": "per-config_type sparse point counts",
    "sparse_index_file": "sparse_index_file",
    "zeta_fac": None, "xml_version": "xml_version (old descriptor rules)",
}
_SOAP_KEYS = {"cutoff", "cutoff_transition_width", "n_max", "l_max", "atom_sigma",
              "atom_gaussian_width", "zeta", "delta", "n_sparse", "sparse_method",
              "central_weight", "central_reference_all_species", "covariance_sigma0",
              "normalise", "normalize", "basis_error_exponent", "species_z", "z",
              "radial_basis", "sparse_file"}
_2B_IGNORED = {"n_sparse", "sparse_method", "print_sparse_index", "mark_sparse_atoms",
               "unique_hash_tolerance", "unique_descriptor_tolerance", "add_species",
               "sparse_separate_file", "n_species"}
_2B_KEYS = {"cutoff", "cutoff_transition_width", "delta", "theta_uniform", "covariance_type",
            "f0"}
_2B_UNSUPPORTED = {"z1": "a pair term restricted to one species pair (Z1, Z2)",
                   "z2": "a pair term restricted to one species pair (Z1, Z2)",
                   "theta_fac": "theta_fac (gapcalc needs an absolute theta_uniform)",
                   "theta_file": "theta_file", "resid_name": "resid_name",
                   "only_intra": "only_intra", "only_inter": "only_inter",
                   "exponents": "distance_2b exponents", "tail_range": "tail_range",
                   "tail_exponent": "tail_exponent", "config_type_n_sparse":
                   "per-config_type sparse point counts", "sparse_file": "sparse_file"}
_RADIAL = {"equispaced_gauss": "quip", "original": "quip", "gto": "quip_gto"}


def parse_gap(gap: str) -> list[tuple[str, dict]]:
    """The descriptors of a ``gap={...}`` value: [(type, {key: value string})]."""
    out = []
    for k, part in enumerate(split_top_level(_unwrap(gap), ":")):
        tokens = split_top_level(part, None)
        kind = tokens[0].lower()
        out.append((kind, parse_key_values(tokens[1:], f"gap descriptor {k + 1} ({kind})")))
    if not out:
        raise GapFitArgumentError("gap= names no descriptor")
    return out


def _soap_kwargs(kv: dict, where: str, radial_basis=None) -> tuple[dict, dict]:
    """(SOAP kwargs, SparseGPR kwargs) of a gap_fit ``soap`` descriptor."""
    for key in kv:
        if key in _SOAP_KEYS or key in _SOAP_IGNORED:
            continue
        if key in _SOAP_UNSUPPORTED:
            if key == "covariance_type":
                continue
            what = _SOAP_UNSUPPORTED[key] or key
            raise GapFitArgumentError(f"{where}: {key}= is a gap_fit option gapcalc cannot "
                                      f"honour ({what} is not supported)")
        raise GapFitArgumentError(f"{where}: unknown key {key!r}")
    _require_covariance(kv, where, "SOAP", "dot_product")
    if "f0" in kv and _float(kv["f0"], "f0", where) != 0:
        raise GapFitArgumentError(f"{where}: f0 != 0 cannot be honoured (gapcalc's GP has "
                                  "zero mean)")
    if not _bool(kv.get("add_species", "T"), "add_species", where):
        raise GapFitArgumentError(f"{where}: add_species=F cannot be honoured: gapcalc keeps "
                                  "one set of sparse points per centre species")
    for key in ("cutoff", "n_max", "l_max"):
        if key not in kv:
            raise GapFitArgumentError(f"{where}: {key}= is required")
    sigma = kv.get("atom_sigma", kv.get("atom_gaussian_width"))
    if sigma is None:
        raise GapFitArgumentError(f"{where}: atom_sigma= is required")
    soap = dict(cutoff=_float(kv["cutoff"], "cutoff", where),
                cutoff_width=_float(kv.get("cutoff_transition_width", "0.5"),
                                    "cutoff_transition_width", where),
                n_max=_int(kv["n_max"], "n_max", where), l_max=_int(kv["l_max"], "l_max", where),
                atom_sigma=_float(sigma, "atom_sigma", where))
    if radial_basis is None:
        rb = kv.get("radial_basis", "equispaced_gauss").lower()
        if rb not in _RADIAL:
            raise GapFitArgumentError(f"{where}: radial_basis={kv['radial_basis']} cannot be "
                                      "honoured (gapcalc has EQUISPACED_GAUSS and GTO)")
        radial_basis = _RADIAL[rb]
    soap["radial_basis"] = radial_basis
    if "central_weight" in kv:
        soap["centre_weight"] = _float(kv["central_weight"], "central_weight", where)
    if "central_reference_all_species" in kv:
        soap["central_reference_all_species"] = _bool(kv["central_reference_all_species"],
                                                      "central_reference_all_species", where)
    if "covariance_sigma0" in kv:
        soap["covariance_sigma0"] = _float(kv["covariance_sigma0"], "covariance_sigma0", where)
    norm = kv.get("normalise", kv.get("normalize"))
    if norm is not None:
        soap["normalize"] = _bool(norm, "normalise", where)
    if "basis_error_exponent" in kv:
        soap["basis_error_exponent"] = _float(kv["basis_error_exponent"],
                                              "basis_error_exponent", where)
    if "species_z" in kv:
        soap["species_Z"] = _ints(kv["species_z"], "species_Z", where)
    if "z" in kv and _ints(kv["z"], "Z", where) not in ([0], []):
        raise GapFitArgumentError(f"{where}: Z= (a SOAP for one centre species) cannot be "
                                  "honoured: gapcalc fits one SOAP term for every centre "
                                  "species, with separate sparse points per species")
    gpr = dict(zeta=_float(kv.get("zeta", "1"), "zeta", where),
               delta=_float(kv.get("delta", "1"), "delta", where))
    if gpr["zeta"] == int(gpr["zeta"]):
        gpr["zeta"] = int(gpr["zeta"])
    if "n_sparse" in kv:
        gpr["n_sparse"] = _int(kv["n_sparse"], "n_sparse", where)
    method = kv.get("sparse_method", "random").lower()
    if method == "index_file" or "sparse_file" in kv:
        if method != "index_file" or "sparse_file" not in kv:
            raise GapFitArgumentError(f"{where}: gapcalc reads sparse_file= only as "
                                      "sparse_method=index_file (gap_fit's print_sparse_index "
                                      "file); sparse points given as vectors are not supported")
        gpr["sparse_indices"] = read_sparse_index_file(kv["sparse_file"], where)
        gpr["n_sparse"] = len(gpr["sparse_indices"])
        return soap, gpr
    if method not in _SPARSE_METHODS:
        raise GapFitArgumentError(f"{where}: sparse_method={method} cannot be honoured "
                                  f"(gapcalc has {', '.join(sorted(_SPARSE_METHODS))})")
    gpr["sparse_method"] = _SPARSE_METHODS[method]
    return soap, gpr


def read_sparse_index_file(path, where="sparse_file") -> list[int]:
    """0-based environment indices from a gap_fit ``print_sparse_index`` file (1-based
    integers separated by white space). Errors name the file and the problem."""
    try:
        words = open(path).read().split()
    except OSError as exc:
        raise GapFitArgumentError(f"{where}: sparse_file {path}: {exc.strerror}") from None
    idx = []
    for w in words:
        try:
            idx.append(int(w))
        except ValueError:
            raise GapFitArgumentError(f"{where}: sparse_file {path}: {w!r} is not an "
                                      "integer index") from None
    if not idx:
        raise GapFitArgumentError(f"{where}: sparse_file {path} holds no indices")
    if min(idx) < 1:
        raise GapFitArgumentError(f"{where}: sparse_file {path}: index {min(idx)} < 1 "
                                  "(gap_fit's indices start at 1)")
    if len(set(idx)) != len(idx):
        raise GapFitArgumentError(f"{where}: sparse_file {path}: repeated indices")
    return [i - 1 for i in idx]


def _distance_2b_kwargs(kv: dict, where: str) -> dict:
    """PairDistance kwargs + SparseGPR delta_2b of a gap_fit ``distance_2b`` descriptor."""
    for key in kv:
        if key in _2B_KEYS or key in _2B_IGNORED:
            continue
        if key in _2B_UNSUPPORTED:
            raise GapFitArgumentError(f"{where}: {key}= is a gap_fit option gapcalc cannot "
                                      f"honour ({_2B_UNSUPPORTED[key]} is not supported)")
        raise GapFitArgumentError(f"{where}: unknown key {key!r}")
    _require_covariance(kv, where, "distance_2b", "ard_se")
    if "f0" in kv and _float(kv["f0"], "f0", where) != 0:
        raise GapFitArgumentError(f"{where}: f0 != 0 cannot be honoured")
    if "cutoff" not in kv:
        raise GapFitArgumentError(f"{where}: cutoff= is required")
    if "theta_uniform" not in kv:
        raise GapFitArgumentError(f"{where}: theta_uniform= is required (gapcalc has no "
                                  "theta_fac)")
    return dict(cutoff=_float(kv["cutoff"], "cutoff", where),
                cutoff_width=_float(kv.get("cutoff_transition_width", "0.5"),
                                    "cutoff_transition_width", where),
                theta=_float(kv["theta_uniform"], "theta_uniform", where),
                delta=_float(kv.get("delta", "1"), "delta", where))


# ----------------------------------------------------------------------------- top level
_TOP_IGNORED = {"at_file", "gp_file", "do_copy_at_file", "sparse_separate_file", "verbosity",
                "openmp_chunk_size", "sparsify_only_no_fit", "print_sparse_index",
                "condition_number_norm", "mpi_blocksize", "mpi_blocksize_rows",
                "mpi_blocksize_cols", "mpi_print_all", "do_ip_timing", "template_file",
                "export_covariance", "hessian_parameter_name", "hessian_delta",
                "mark_sparse_atoms", "save_sparse_indices"}
_TOP_KEYS = {"gap", "default_sigma", "config_type_sigma", "energy_parameter_name",
             "force_parameter_name", "virial_parameter_name", "stress_parameter_name",
             "e0", "e0_method", "sparse_jitter", "rnd_seed", "config_type_parameter_name",
             "sigma_parameter_name", "energy_sigma_parameter_name",
             "force_sigma_parameter_name", "virial_sigma_parameter_name", "default_kernel_regularisation"}
_TOP_DEFAULT_NAMES = {"config_type_parameter_name": "config_type",
                      "energy_sigma_parameter_name": "energy_sigma",
                      "force_sigma_parameter_name": "force_sigma",
                      "virial_sigma_parameter_name": "virial_sigma"}
_TOP_UNSUPPORTED = {
    "core_param_file": "a core (baseline) potential", "core_ip_args": "a core potential",
    "hessian_sigma_parameter_name": "Hessian targets",
    "force_mask_parameter_name": "force masks by name (gapcalc reads 'force_mask')",
    "local_property_parameter_name": "local-property targets",
    "local_property_sigma": "local-property targets",
    "parameter_name_prefix": "parameter_name_prefix", "config_type_kernel_regularisation":
    "per-config_type kernel regularisation", "kernel_regularisation_is_per_atom":
    "kernel_regularisation_is_per_atom", "sigma_per_atom": "sigma_per_atom=F",
    "do_e0_avg": "do_e0_avg", "e0_offset": "e0_offset",
    "force_atom_sigma_parameter_name": "per-atom force sigmas",
}


def parse_command_line(args) -> dict:
    """{key: value} of a gap_fit command line (a string or a list of ``key=value``
    tokens; a leading ``gap_fit`` program name is skipped)."""
    tokens = split_top_level(args, None) if isinstance(args, str) else list(args)
    if tokens and tokens[0].rsplit("/", 1)[-1] == "gap_fit":
        tokens = tokens[1:]
    return parse_key_values(tokens, "gap_fit arguments")


def _config_type_sigma(value: str, where: str) -> dict:
    """gap_fit's ``{type:E:F:V:H:type2:E:F:V:H}`` → {type: {"energy", "force", "virial"}}."""
    parts = [p.strip() for p in _unwrap(value).split(":") if p.strip()]
    if len(parts) % 5:
        raise GapFitArgumentError(f"{where}: config_type_sigma needs groups of 5 "
                                  "(type:energy:force:virial:hessian), got {value!r}")
    out = {}
    for k in range(0, len(parts), 5):
        name = parts[k]
        e, f, v, _h = (_float(x, "config_type_sigma", where) for x in parts[k + 1:k + 5])
        out[name] = {"energy": e, "force": f, "virial": v}
    return out


def _e0(value: str, where: str):
    """gap_fit's e0: one number, or ``Z_or_symbol:value:...`` pairs → {symbol: eV}."""
    v = _unwrap(value)
    if ":" not in v:
        return _float(v, "e0", where)
    from ase.data import chemical_symbols
    parts = [p.strip() for p in v.split(":")]
    if len(parts) % 2:
        raise GapFitArgumentError(f"{where}: e0={value!r} needs species:value pairs")
    out = {}
    for k in range(0, len(parts), 2):
        sp = parts[k]
        sym = chemical_symbols[int(sp)] if sp.isdigit() else sp
        out[sym] = _float(parts[k + 1], "e0", where)
    return out


def gap_fit_kwargs(args=None, *, species=None, radial_basis=None, **keys) -> dict:
    """SparseGPR constructor arguments for a gap_fit recipe.

    ``args``: a gap_fit command line (string or token list) or a dict {key: value}; more
    gap_fit keys may be given as keywords (``gap="soap ..."``, ``default_sigma="0.002 0.1
    0.1 0"``, ...; keywords win). ``species``: elements of the model (atomic numbers or
    symbols; default: the SOAP's ``species_Z``, else required). ``radial_basis``: override
    the SOAP basis (default: QUIP's, as gap_fit). Returns kwargs for
    :class:`~gapcalc.gpr.SparseGPR`; raises :class:`GapFitArgumentError`.
    """
    from .descriptors import SOAP, PairDistance
    kv = {} if args is None else (
        {str(k).lower(): str(v) for k, v in args.items()} if isinstance(args, dict)
        else parse_command_line(args))
    for k, v in keys.items():
        kv[k.lower()] = _unwrap(" ".join(map(str, v)) if isinstance(v, (list, tuple))
                                else str(v))
    where = "gap_fit arguments"
    for key in kv:
        if key in _TOP_KEYS or key in _TOP_IGNORED:
            continue
        if key in _TOP_UNSUPPORTED:
            raise GapFitArgumentError(f"{where}: {key}= is a gap_fit option gapcalc cannot "
                                      f"honour ({_TOP_UNSUPPORTED[key]} is not supported)")
        raise GapFitArgumentError(f"{where}: unknown key {key!r}")
    if "gap" not in kv:
        raise GapFitArgumentError(f"{where}: gap= (the descriptors) is required")
    for key, default in _TOP_DEFAULT_NAMES.items():
        if key in kv and kv[key] != default:
            raise GapFitArgumentError(f"{where}: {key}={kv[key]} cannot be honoured: gapcalc "
                                      f"reads this from the info key {default!r}")
    out: dict = {}
    soap_kw = pair_kw = None
    for k, (kind, dkv) in enumerate(parse_gap(kv["gap"])):
        dwhere = f"gap descriptor {k + 1} ({kind})"
        if kind == "soap":
            if soap_kw is not None:
                raise GapFitArgumentError(f"{dwhere}: a second soap cannot be honoured "
                                          "(gapcalc fits one SOAP term)")
            soap_kw, gpr = _soap_kwargs(dkv, dwhere, radial_basis)
            out.update(gpr)
        elif kind == "distance_2b":
            if pair_kw is not None:
                raise GapFitArgumentError(f"{dwhere}: a second distance_2b cannot be honoured")
            pair_kw = _distance_2b_kwargs(dkv, dwhere)
        else:
            raise GapFitArgumentError(f"{dwhere}: descriptor {kind!r} cannot be honoured "
                                      "(gapcalc fits soap and distance_2b)")
    if soap_kw is None:
        raise GapFitArgumentError(f"{where}: gap= needs a soap descriptor (gapcalc's models "
                                  "are SOAP-based)")
    if species is None:
        species = soap_kw.get("species_Z")
    if species is None:
        raise GapFitArgumentError("species are needed (give species=, or species_Z in soap)")
    out["descriptor"] = SOAP(species, **soap_kw)
    if pair_kw is not None:
        delta = pair_kw.pop("delta")
        out["two_body"] = PairDistance(species, **pair_kw)
        out["delta_2b"] = delta
    if "default_sigma" in kv:
        sig = [_float(x, "default_sigma", where) for x in _unwrap(kv["default_sigma"]).split()]
        if len(sig) != 4:
            raise GapFitArgumentError(f"{where}: default_sigma needs 4 numbers (energy force "
                                      f"virial hessian), got {kv['default_sigma']!r}")
        out.update(sigma_energy=sig[0], sigma_force=sig[1], sigma_virial=sig[2])
    if "config_type_sigma" in kv:
        out["config_type_sigma"] = _config_type_sigma(kv["config_type_sigma"], where)
    for key, name in (("energy_parameter_name", "energy_key"),
                      ("force_parameter_name", "force_key"),
                      ("virial_parameter_name", "virial_key"),
                      ("stress_parameter_name", "stress_key")):
        if key in kv:
            out[name] = kv[key]
    if "e0" in kv:
        out["e0"] = _e0(kv["e0"], where)
    else:
        method = kv.get("e0_method", "isolated").lower()
        if method not in ("isolated", "average"):
            raise GapFitArgumentError(f"{where}: e0_method={method} cannot be honoured "
                                      "(isolated or average)")
        out["e0"] = method
    out["jitter"] = _float(kv.get("sparse_jitter", "1e-10"), "sparse_jitter", where)
    if "rnd_seed" in kv:
        out["seed"] = abs(_int(kv["rnd_seed"], "rnd_seed", where))
    if "default_kernel_regularisation" in kv:
        raise GapFitArgumentError(f"{where}: default_kernel_regularisation cannot be honoured "
                                  "(gapcalc regularises through the noise sigmas)")
    return out


def gap_fit_output(args) -> str | None:
    """The ``gp_file`` of a gap_fit command line, if any (``gapcalc fit`` ignores it)."""
    kv = parse_command_line(args) if not isinstance(args, dict) else args
    return kv.get("gp_file")
