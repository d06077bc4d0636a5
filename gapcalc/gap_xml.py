"""Reading gap_fit model files (GAP/QUIP XML) into a :class:`~gapcalc.potential.Potential`.

A model is ``NAME.xml`` plus, for every coordinate with a ``sparseX_filename``, a
companion file of sparse points beside it (checked against its md5 sum when the file
gives one). Implemented from the project's notes on the format (gap_xml.md), which were
verified against quippy; no code of GAP or QUIP is used.

What is imported (gap_xml.md §5):

* ``soap`` with the ``dot_product`` covariance (any ζ, sparseCutoff, several species with
  one coordinate per centre species, QUIP's EQUISPACED_GAUSS or GTO radial basis,
  central_weight, covariance_sigma0, normalise, old ``gap_version`` rules) → a kernel
  :class:`~gapcalc.potential.Term` with QUIP's SOAP (``SOAP(radial_basis="quip")``);
* ``distance_2b``, ``angle_3b`` and ``distance_Nb`` (one species) with ``ard_se`` or ``pp``
  → :mod:`gapcalc.gap_terms`;
* an ``IP Glue`` core potential (``Sum init_args_pot1={IP Glue} …``);
* per-element e0, the old single ``GAP_data e0=``, and ``E_scale``.

Anything else (soap_turbo, other core potentials, molecular descriptors, …) is refused with
an error naming what the file uses and what is supported. Descriptor keys that only matter
for fitting (or that QUIP ignores) are accepted.

Reading is safe for untrusted files: no DTD, no entity declarations or external entities
(the parser stops at the first one), companion files only from the XML's own directory,
and truncated, corrupted or mismatching files give a :class:`GapXMLError` that names the
file and the problem.
"""
from __future__ import annotations

import hashlib
import logging
import math
import re
import xml.parsers.expat
from pathlib import Path
from xml.etree.ElementTree import TreeBuilder

import numpy as np

from .io import ModelFileError

log = logging.getLogger(__name__)

#: gap_version thresholds (gap_xml.md §1.2)
VERSION_L_FACTOR = 1423143769           # SOAP 1/√(2l+1) from this version on
VERSION_CENTRAL_ALL = 1426512068        # before: central_reference_all_species forced T
VERSION_COMPACT_CLUSTERS = 1596837814   # distance_Nb compact_clusters default T from here

COVARIANCE_TYPES = {1: "ard_se", 2: "dot_product", 3: "bond_real_space", 4: "pp"}
SUPPORTED = ("soap (dot_product covariance), distance_2b, angle_3b (ard_se or pp), "
             "distance_Nb for one species (ard_se or pp), and the IP Glue core potential")


class GapXMLError(ModelFileError):
    """A gap_fit model file that cannot be imported, with the file and the reason."""


# --------------------------------------------------------------------------- parsing
def is_gap_xml(path) -> bool:
    """True if ``path`` looks like an XML model file (suffix .xml, or starts with '<')."""
    p = Path(path)
    if p.suffix.lower() == ".xml":
        return True
    try:
        with open(p, "rb") as fh:
            head = fh.read(64).lstrip()
    except OSError:
        return False
    return head.startswith(b"<")


def parse_xml(path):
    """The element tree of an XML file, parsed with entity handling off.

    A DOCTYPE, an entity declaration or an external entity is refused (GapXMLError) before
    anything is expanded; so is a file that is not well-formed XML (truncated, corrupted)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise GapXMLError(f"{path}: no such model file") from None
    except OSError as exc:
        raise GapXMLError(f"{path}: cannot read ({exc})") from None
    builder = TreeBuilder()
    parser = xml.parsers.expat.ParserCreate()
    skip = [0]          # inside <XYZ_data>: the training set copy is not needed

    def refuse(what):
        def handler(*_):
            raise GapXMLError(f"{path}: the file contains {what}, which gapcalc refuses "
                              "(model files never need them; they can expand to huge "
                              "documents or read other files)")
        return handler

    def start(tag, attrs):
        if tag == "XYZ_data" or skip[0]:
            skip[0] += 1
        builder.start(tag, attrs)

    def end(tag):
        if skip[0]:
            skip[0] -= 1
        builder.end(tag)

    def data_(text):
        if not skip[0]:
            builder.data(text)

    parser.StartDoctypeDeclHandler = refuse("a document type declaration (DOCTYPE)")
    parser.EntityDeclHandler = refuse("an entity declaration")
    parser.UnparsedEntityDeclHandler = refuse("an unparsed entity declaration")
    parser.ExternalEntityRefHandler = refuse("an external entity reference")
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data_
    parser.buffer_text = True
    try:
        parser.Parse(data, True)
        return builder.close()
    except xml.parsers.expat.ExpatError as exc:
        raise GapXMLError(f"{path}: not well-formed XML ({exc}); the file is truncated or "
                          "corrupted") from None


_TOKEN = re.compile(r"""\s*([^\s=]+)\s*=\s*(\{[^}]*\}?|"[^"]*"?|'[^']*'?|[^\s]*)|\s*(\S+)""")


def parse_args(text: str):
    """(leading words, {key (lower case): value}) of a QUIP argument string.

    ``key=value`` pairs; values may be grouped in {…}, "…" or '…'; words without ``=``
    (the descriptor name, a stray '}') are returned separately."""
    words, params = [], {}
    for m in _TOKEN.finditer(text or ""):
        if m.group(1) is not None:
            v = m.group(2)
            if v[:1] in "{\"'":
                v = v[1:]
                if v[-1:] in "}\"'":
                    v = v[:-1]
            params[m.group(1).lower()] = v.strip()
        elif m.group(3):
            words.append(m.group(3))
    return words, params


def _subargs(text):
    """The {...}-grouped values of a Sum's init_args (nested braces allowed)."""
    out, depth, key, buf = {}, 0, None, []
    i = 0
    while i < len(text):
        c = text[i]
        if depth == 0:
            m = re.match(r"\s*([A-Za-z_0-9]+)\s*=\s*\{", text[i:])
            if m:
                key = m.group(1).lower()
                depth = 1
                buf = []
                i += m.end()
                continue
            i += 1
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                out[key] = "".join(buf)
                i += 1
                continue
        buf.append(c)
        i += 1
    return out


def _float(v, what, path):
    try:
        return float(str(v).strip().replace("D", "E").replace("d", "e"))
    except (TypeError, ValueError):
        raise GapXMLError(f"{path}: {what} is not a number ({v!r})") from None


def _floats(text, what, path):
    try:
        return np.array([float(x) for x in
                         str(text).replace("D", "E").replace("d", "e").split()], dtype=np.float64)
    except ValueError:
        raise GapXMLError(f"{path}: {what} holds something that is not a number") from None


def _int(v, what, path):
    try:
        return int(str(v).strip())
    except (TypeError, ValueError):
        raise GapXMLError(f"{path}: {what} is not an integer ({v!r})") from None


def _ints(text, what, path):
    if text is None:
        return []
    try:
        return [int(x) for x in str(text).replace(",", " ").split()]
    except ValueError:
        raise GapXMLError(f"{path}: {what} is not a list of integers ({text!r})") from None


def _bool(v, default=False):
    if v is None or v == "":
        return default
    return str(v).strip().lower() in ("t", "true", "1", ".true.", "yes")


def _attr(el, name, path, what=None):
    v = el.get(name)
    if v is None:
        raise GapXMLError(f"{path}: {what or el.tag} has no '{name}' attribute (truncated or "
                          "not a gap_fit model file?)")
    return v


# --------------------------------------------------------------------------- the model
class _Coordinate:
    """One gpCoordinates element, read and checked (no gapcalc objects yet)."""

    def __init__(self, el, path, xml_dir):
        self.label = el.get("label", "?")
        where = f"coordinate {self.label}"
        self.where = where
        self.d = _int(_attr(el, "dimensions", path, where), f"{where} dimensions", path)
        self.delta = _float(_attr(el, "signal_variance", path, where),
                            f"{where} signal_variance", path)
        self.f0 = _float(el.get("signal_mean", "0"), f"{where} signal_mean", path)
        ctype = _int(_attr(el, "covariance_type", path, where), f"{where} covariance_type", path)
        self.covariance = COVARIANCE_TYPES.get(ctype, f"type {ctype}")
        if not _bool(el.get("sparsified"), True):
            raise GapXMLError(f"{path}: {where} is a full (not sparsified) GP, which gapcalc "
                              "cannot import")
        desc = el.find("descriptor")
        if desc is None or not (desc.text or "").strip():
            raise GapXMLError(f"{path}: {where} has no descriptor string")
        self.descriptor_string = " ".join(desc.text.split())
        words, self.params = parse_args(self.descriptor_string)
        self.name = words[0].lower() if words else "?"
        theta = el.find("theta")
        self.theta = (_floats(theta.text, f"{where} theta", path)
                      if theta is not None and (theta.text or "").strip() else None)
        self.zeta = el.get("zeta")
        perms = sorted(el.findall("permutation"), key=lambda p: _int(p.get("i", "0"),
                                                                     "permutation i", path))
        n_perm = _int(el.get("n_permutations", str(len(perms) or 1)),
                      f"{where} n_permutations", path)
        if len(perms) != n_perm:
            raise GapXMLError(f"{path}: {where} declares {n_perm} permutations but holds "
                              f"{len(perms)} (truncated file?)")
        self.perms = [np.array(_ints(p.text, f"{where} permutation", path)) - 1 for p in perms]
        self.M = _int(_attr(el, "n_sparseX", path, where), f"{where} n_sparseX", path)
        self._read_sparse(el, path, xml_dir)

    def _read_sparse(self, el, path, xml_dir):
        where = self.where
        entries = el.findall("sparseX")
        if len(entries) != self.M:
            raise GapXMLError(f"{path}: {where} declares {self.M} sparse points but holds "
                              f"{len(entries)} (truncated file?)")
        order = [_int(e.get("i", k + 1), f"{where} sparseX i", path) for k, e in
                 enumerate(entries)]
        if sorted(order) != list(range(1, self.M + 1)):
            raise GapXMLError(f"{path}: {where} sparse points are not numbered 1..{self.M}")
        alpha = np.empty(self.M)
        cut = np.empty(self.M)
        for i, e in zip(order, entries):
            alpha[i - 1] = _float(_attr(e, "alpha", path, f"{where} sparseX {i}"),
                                  f"{where} sparseX {i} alpha", path)
            cut[i - 1] = _float(e.get("sparseCutoff", "1"), f"{where} sparseX {i} "
                                "sparseCutoff", path)
        self.alpha, self.sparse_cutoff = alpha, cut
        fname = el.get("sparseX_filename")
        d, M = self.d, self.M
        if fname:
            # stored without a directory, resolved beside the XML (never elsewhere)
            fpath = xml_dir / Path(fname.strip()).name
            if not fpath.is_file():
                raise GapXMLError(f"{path}: the sparse points of {where} are in {fpath.name}, "
                                  f"which is missing (expected beside the XML file: {fpath})")
            data = fpath.read_bytes()
            md5 = (el.get("sparseX_md5sum") or "").strip().lower()
            if md5:
                got = hashlib.md5(data).hexdigest()
                if got != md5:
                    raise GapXMLError(f"{fpath}: md5 sum {got} does not match the "
                                      f"sparseX_md5sum {md5} given in {path.name} (corrupted "
                                      "or wrong companion file)")
            else:
                log.warning("%s: no md5 sum for %s; not checked", path, fpath.name)
            try:
                values = np.array(data.decode("ascii").replace("D", "E").replace("d", "e")
                                  .split(), dtype=np.float64)
            except (UnicodeDecodeError, ValueError):
                raise GapXMLError(f"{fpath}: holds something that is not a number "
                                  "(corrupted sparse-point file)") from None
            if values.size != M * d:
                raise GapXMLError(f"{fpath}: holds {values.size} numbers, expected "
                                  f"{M} sparse points × {d} dimensions = {M * d} (truncated or "
                                  "wrong file)")
            X = values.reshape(M, d)
        else:
            X = np.empty((M, d))
            for i, e in zip(order, entries):
                slices = e.findall("sparseX_slice")
                what = f"{where} sparseX {i}"
                if slices:
                    row = np.full(d, np.nan)
                    for s in slices:
                        lo = _int(_attr(s, "start", path, what), f"{what} slice start", path)
                        hi = _int(_attr(s, "end", path, what), f"{what} slice end", path)
                        v = _floats(s.text or "", what, path)
                        if not 1 <= lo <= hi <= d or len(v) != hi - lo + 1:
                            raise GapXMLError(f"{path}: {what} has a bad slice {lo}..{hi}")
                        row[lo - 1:hi] = v
                    if np.isnan(row).any():
                        raise GapXMLError(f"{path}: {what} slices do not cover all {d} "
                                          "components (truncated file?)")
                else:
                    row = _floats(e.text or "", what, path)
                    if len(row) != d:
                        raise GapXMLError(f"{path}: {what} has {len(row)} components inline, "
                                          f"expected {d} (no sparseX_filename given)")
                X[i - 1] = row
        if not (np.isfinite(X).all() and np.isfinite(alpha).all() and np.isfinite(cut).all()):
            raise GapXMLError(f"{path}: {where} has non-finite sparse points or weights")
        self.X = X

    def species_numbers(self):
        """Elements named by this coordinate's descriptor string (0 = wildcard dropped)."""
        p = self.params
        zs = []
        for key in ("z", "z1", "z2", "z_center", "species_z"):
            if key in p:
                zs += _ints(p[key], key, "?") if p[key].strip() else []
        return {z for z in zs if z > 0}


def _top_potential(root, path):
    """(GAP label or None, E_scale, core init_args or None) from the top-level Potential."""
    pot = root.find("Potential")
    if pot is None and root.tag == "Potential":
        pot = root
    if pot is None:
        return None, 1.0, None
    init = pot.get("init_args", "").strip()
    words, params = parse_args(init)
    head = " ".join(words[:2]).lower()
    if words and words[0].lower() == "sum":
        subs = _subargs(init)
        gap, core = None, None
        for key in sorted(subs):
            w, _ = parse_args(subs[key])
            name = " ".join(w[:2]).lower()
            if name == "ip gap":
                gap = subs[key]
            elif name == "ip glue":
                core = subs[key]
            else:
                raise GapXMLError(f"{path}: the model adds the potential '{subs[key].strip()}' "
                                  f"(init_args \"{init}\"); gapcalc supports {SUPPORTED}")
        if gap is None:
            raise GapXMLError(f"{path}: init_args \"{init}\" has no IP GAP part")
        _, gparams = parse_args(gap)
        return gparams.get("label"), _escale(gparams, path), core
    if head != "ip gap":
        raise GapXMLError(f"{path}: the top-level Potential is '{init}'; gapcalc imports "
                          f"GAP models ({SUPPORTED})")
    return params.get("label"), _escale(params, path), None


def _escale(params, path):
    return _float(params.get("e_scale", "1.0"), "E_scale", path)


def _glue(root, core_args, species_numbers, path):
    """Types and pairs for :class:`~gapcalc.gap_terms.GlueTerm` from <Glue_params>."""
    _, params = parse_args(core_args)
    label = params.get("label")
    cands = list(root.iter("Glue_params"))
    if label:
        cands = [g for g in cands if g.get("label") == label] or cands
    if not cands:
        raise GapXMLError(f"{path}: init_args name an IP Glue core potential but the file has "
                          "no <Glue_params>")
    g = cands[0]
    n_types = _int(g.get("n_types", "0"), "Glue n_types", path)

    def points(el, xname, yname, what):
        pts = el.findall("point")
        n = el.get("num_points")
        if n is not None and _int(n, f"{what} num_points", path) != len(pts):
            raise GapXMLError(f"{path}: {what} declares {n} points but holds {len(pts)}")
        if len(pts) < 2:
            raise GapXMLError(f"{path}: {what} needs at least two points")
        x = [_float(_attr(p, xname, path, what), f"{what} {xname}", path) for p in pts]
        y = [_float(_attr(p, yname, path, what), f"{what} {yname}", path) for p in pts]
        return x, y

    def slope(el, name, default):
        v = el.get(name)
        return default if v is None else _float(v, f"{el.tag} {name}", path)

    types = {}
    for td in g.findall("per_type_data"):
        t = _int(_attr(td, "type", path, "Glue per_type_data"), "Glue type", path)
        z = _int(_attr(td, "atomic_num", path, "Glue per_type_data"), "Glue atomic_num", path)
        what = f"Glue type {t} (Z={z})"
        if td.find("potential_neighbours") is not None:
            raise GapXMLError(f"{path}: {what} uses the potential_neighbours form of Glue, "
                              "which gapcalc does not support (density + potential_density "
                              "only)")
        dens = td.find("density")
        if dens is None:
            raise GapXMLError(f"{path}: {what} has no <density>")
        a, rho = points(dens, "a", "rho", f"{what} density")
        entry = {"Z": z, "density": {"a": a, "rho": rho,
                                     "spline": _bool(dens.get("do_spline"), False),
                                     "y1": slope(dens, "density_y1", None),
                                     "yn": slope(dens, "density_yn", None)},
                 "embedding": None}
        emb = td.find("potential_density")
        if emb is not None:
            r, E = points(emb, "rho", "E", f"{what} potential_density")
            entry["embedding"] = {"rho": r, "E": E, "y1": slope(emb, "y1", None),
                                  "yn": slope(emb, "yn", None)}
        types[t] = entry
    if sorted(types) != list(range(1, len(types) + 1)) or (n_types and len(types) != n_types):
        raise GapXMLError(f"{path}: Glue_params declares {n_types} types, holds types "
                          f"{sorted(types)}")
    pairs = []
    for pd in g.findall("per_pair_data"):
        t1 = _int(_attr(pd, "type1", path, "Glue per_pair_data"), "Glue type1", path)
        t2 = _int(_attr(pd, "type2", path, "Glue per_pair_data"), "Glue type2", path)
        pp = pd.find("potential_pair")
        if pp is None or t1 not in types or t2 not in types:
            raise GapXMLError(f"{path}: Glue pair ({t1}, {t2}) is incomplete")
        r, E = points(pp, "r", "E", f"Glue pair ({t1}, {t2})")
        pairs.append({"types": [t1 - 1, t2 - 1], "r": r, "E": E,
                      "y1": slope(pp, "y1", 0.0), "yn": slope(pp, "yn", 0.0)})
    return [types[t] for t in sorted(types)], pairs


def _symmetrised_theta(c: _Coordinate, path):
    if c.theta is None or len(c.theta) != c.d:
        raise GapXMLError(f"{path}: {c.where} ({c.covariance}) needs {c.d} length scales in "
                          f"<theta>, found {0 if c.theta is None else len(c.theta)}")
    perms = np.array(c.perms) if c.perms else np.arange(c.d)[None]
    if perms.shape[1] != c.d or perms.min() < 0 or perms.max() >= c.d:
        raise GapXMLError(f"{path}: {c.where} permutations do not index its {c.d} dimensions")
    return c.theta[perms].mean(axis=0), perms


def _covariance(c: _Coordinate, e_scale, path):
    from .gap_terms import CovarianceARD
    if c.covariance not in ("ard_se", "pp"):
        raise GapXMLError(f"{path}: {c.where} ({c.name}) uses the {c.covariance} covariance; "
                          f"gapcalc supports {SUPPORTED}")
    theta, perms = _symmetrised_theta(c, path)
    return CovarianceARD(c.covariance, theta, c.delta, c.f0, perms, c.X, e_scale * c.alpha,
                         c.sparse_cutoff)


def _z(params, key, path, where, default=0):
    v = params.get(key)
    if v is None or not v.strip():
        return default
    zs = _ints(v, f"{where} {key}", path)
    if len(zs) != 1:
        raise GapXMLError(f"{path}: {where} {key}={{{v}}} lists several elements; gapcalc "
                          "imports one element per key here")
    return zs[0]


def _cutoff(c, path):
    if "cutoff" not in c.params:
        raise GapXMLError(f"{path}: {c.where} ({c.name}) has no cutoff")
    return (_float(c.params["cutoff"], f"{c.where} cutoff", path),
            _float(c.params.get("cutoff_transition_width", "0.5"),
                   f"{c.where} cutoff_transition_width", path))


def _distance_2b(c, species, e_scale, path):
    from .gap_terms import Distance2bTerm
    p = c.params
    for key in ("resid_name", "only_intra", "only_inter"):
        if key in p and (key == "resid_name" or _bool(p[key])):
            raise GapXMLError(f"{path}: {c.where} distance_2b uses {key}= (molecular residue "
                              "filters), which gapcalc does not support")
    cutoff, width = _cutoff(c, path)
    if "exponents" in p:
        exps = _floats(p["exponents"], f"{c.where} exponents", path)
    else:
        n = _int(p.get("n_exponents", "1"), f"{c.where} n_exponents", path)
        exps = np.array([1.0]) if n == 1 else -np.arange(1.0, n + 1)
    return Distance2bTerm(species, _covariance(c, e_scale, path), cutoff, width,
                          Z1=_z(p, "z1", path, c.where), Z2=_z(p, "z2", path, c.where),
                          exponents=exps,
                          tail_range=_float(p.get("tail_range", "1.0"), "tail_range", path),
                          tail_exponent=_float(p.get("tail_exponent", "0"), "tail_exponent",
                                               path),
                          label=c.label)


def _angle_3b(c, species, e_scale, path):
    from .gap_terms import Angle3bTerm
    p = c.params
    cutoff, width = _cutoff(c, path)
    centre = _z(p, "z", path, c.where) if "z" in p else _z(p, "z_center", path, c.where)
    return Angle3bTerm(species, _covariance(c, e_scale, path), cutoff, width, Z=centre,
                       Z1=_z(p, "z1", path, c.where), Z2=_z(p, "z2", path, c.where),
                       label=c.label)


def _distance_nb(c, species, e_scale, version, path):
    from .gap_terms import DistanceNbTerm
    p = c.params
    cutoff, width = _cutoff(c, path)
    order = _int(p.get("order", "0"), f"{c.where} order", path)
    compact = _bool(p.get("compact_clusters"), version >= VERSION_COMPACT_CLUSTERS)
    if not compact:
        raise GapXMLError(f"{path}: {c.where} distance_Nb uses compact_clusters=F (graph "
                          "clusters); gapcalc supports compact clusters only")
    zs = set(_ints(p.get("z", "0"), f"{c.where} Z", path)) or {0}
    if len(zs) > 1:
        raise GapXMLError(f"{path}: {c.where} distance_Nb on several species "
                          f"(Z={{{p.get('z')}}}); gapcalc supports distance_Nb for one species")
    z = zs.pop()
    if z == 0 and len(species) > 1:
        raise GapXMLError(f"{path}: {c.where} distance_Nb with any species in a model of "
                          f"{len(species)} elements; gapcalc supports one species")
    return DistanceNbTerm(species, _covariance(c, e_scale, path), cutoff, width, order=order,
                          Z=z, label=c.label)


# SOAP keys that change the vector in ways gapcalc does not implement, with their
# harmless (default) values; anything else given for them is refused
_SOAP_UNSUPPORTED = {"cutoff_dexp": ("0",), "average": ("f", "false"),
                     "diagonal_radial": ("f", "false"), "nu_r": ("2",), "nu_s": ("2",),
                     "z_mix": ("f", "false"), "r_mix": ("f", "false"), "k": (),
                     "coupling": ("t", "true"), "z_map": ()}


def _soap_key(c, species_all, version, path):
    """(descriptor keyword arguments, centre elements or None = all) of a soap coordinate."""
    p = c.params
    for key, ok in _SOAP_UNSUPPORTED.items():
        if key in p and p[key].strip().lower() not in ok:
            raise GapXMLError(f"{path}: {c.where} soap uses {key}={p[key]}, which gapcalc's "
                              "SOAP does not implement (it covers the standard power spectrum "
                              "with QUIP's EQUISPACED_GAUSS or GTO radial basis)")
    basis = p.get("radial_basis", "").strip().upper()
    radial = {"": "quip", "EQUISPACED_GAUSS": "quip", "GTO": "quip_gto"}.get(basis)
    if radial is None:
        raise GapXMLError(f"{path}: {c.where} soap uses radial_basis={basis}; gapcalc imports "
                          "EQUISPACED_GAUSS (the default) and GTO")
    for key in ("n_max", "l_max", "cutoff"):
        if key not in p:
            raise GapXMLError(f"{path}: {c.where} soap has no {key}")
    sigma = p.get("atom_sigma", p.get("atom_gaussian_width"))
    if sigma is None:
        raise GapXMLError(f"{path}: {c.where} soap has no atom_sigma")
    species_z = [z for z in _ints(p.get("species_z", "0"), "species_Z", path)] or [0]
    n_species = _int(p.get("n_species", str(len(species_z))), f"{c.where} n_species", path)
    if n_species != len(species_z):
        raise GapXMLError(f"{path}: {c.where} soap has n_species={n_species} but species_Z "
                          f"lists {len(species_z)} elements")
    wildcard = species_z == [0]
    if wildcard:
        if len(species_all) > 1:
            raise GapXMLError(f"{path}: {c.where} soap puts every species in one channel "
                              f"(no species_Z) in a model of elements {sorted(species_all)}; "
                              "gapcalc supports that only for single-element models")
        species_z = sorted(species_all)
    elif 0 in species_z:
        raise GapXMLError(f"{path}: {c.where} soap species_Z mixes 0 with elements")
    centres = [z for z in _ints(p.get("z", "0"), "Z", path) if z != 0] or None
    central_all = p.get("central_reference_all_species")
    central_all = (len(species_z) == 1) if central_all is None else _bool(central_all)
    if version < VERSION_CENTRAL_ALL:
        central_all = True
    kw = {"cutoff": _float(p["cutoff"], "soap cutoff", path),
          "cutoff_width": _float(p.get("cutoff_transition_width", "0.5"),
                                 "soap cutoff_transition_width", path),
          "n_max": _int(p["n_max"], "soap n_max", path),
          "l_max": _int(p["l_max"], "soap l_max", path),
          "atom_sigma": _float(sigma, "soap atom_sigma", path),
          "radial_basis": radial,
          "normalize": _bool(p.get("normalise", p.get("normalize")), True),
          "centre_weight": _float(p.get("central_weight", "1.0"), "central_weight", path),
          "central_reference_all_species": bool(central_all),
          "covariance_sigma0": _float(p.get("covariance_sigma0", "0.0"), "covariance_sigma0",
                                      path),
          "basis_error_exponent": _float(p.get("basis_error_exponent", "10.0"),
                                         "basis_error_exponent", path),
          "species_Z": species_z,
          "l_factor": version >= VERSION_L_FACTOR}
    return kw, centres


def _soap_terms(coords, species, e_scale, version, path):
    """One kernel Term per distinct SOAP descriptor (and ζ): the coordinates of the centre
    species share it, their sparse points tagged with the centre's species."""
    from .kernels import DotProduct
    from .potential import Term
    groups = {}
    for c in coords:
        if c.covariance != "dot_product":
            raise GapXMLError(f"{path}: {c.where} soap uses the {c.covariance} covariance; "
                              f"gapcalc supports {SUPPORTED}")
        if c.zeta is not None:
            zeta = _float(c.zeta, f"{c.where} zeta", path)
        elif c.theta is not None and len(c.theta) == 1:
            zeta = float(c.theta[0])          # old files: ζ is the single <theta> value
        else:
            raise GapXMLError(f"{path}: {c.where} dot_product covariance has no zeta")
        if not zeta >= 1:
            raise GapXMLError(f"{path}: {c.where} has zeta={zeta}; gapcalc supports zeta >= 1")
        kw, centres = _soap_key(c, set(species.numbers.tolist()), version, path)
        key = (repr(sorted(kw.items())), zeta)
        groups.setdefault(key, []).append((c, kw, centres, zeta))
    terms = []
    for (_, zeta), members in groups.items():
        kw = members[0][1]
        desc = _make_soap(species, kw, path, members[0][0])
        delta = members[0][0].delta
        Xs, specs, alphas = [], [], []
        for c, _, centres, _ in members:
            if c.d != desc.n_features:
                raise GapXMLError(f"{path}: {c.where} has {c.d}-dimensional sparse points, but "
                                  f"its soap descriptor has {desc.n_features} features")
            zs = species.numbers.tolist() if centres is None else centres
            zs = [z for z in zs if z in species.numbers]
            a = e_scale * c.alpha * c.sparse_cutoff * (c.delta / delta) ** 2
            for s in species.indices(zs):
                Xs.append(c.X)
                specs.append(np.full(c.M, s))
                alphas.append(a)
        if not Xs:
            continue
        terms.append(Term(desc, DotProduct(zeta=zeta, delta=delta), np.concatenate(Xs),
                          np.concatenate(specs), np.concatenate(alphas)))
    return terms


def _make_soap(species, kw, path, c):
    from .descriptors import SOAP
    kw = dict(kw)
    l_factor = kw.pop("l_factor")
    try:
        desc = SOAP(species.numbers.tolist(), layout="quip", **kw)
    except (TypeError, ValueError) as exc:
        raise GapXMLError(f"{path}: {c.where} soap cannot be built ({exc})") from None
    if not l_factor:
        desc = _without_l_factor(desc, path, c)
    return desc


def _without_l_factor(desc, path, c):
    try:
        from .descriptors.soap import SOAP
        return SOAP.from_dict({**desc.to_dict(), "l_factor": False})
    except (TypeError, ValueError):
        raise GapXMLError(f"{path}: {c.where} comes from a file older than gap_version "
                          f"{VERSION_L_FACTOR} (SOAP without the 1/√(2l+1) factor), which "
                          "this gapcalc's SOAP cannot reproduce") from None


def load_gap_xml(path, label=None):
    """A :class:`~gapcalc.potential.Potential` from a gap_fit XML file (and its sparseX files).

    ``label`` selects the ``GAP_params`` (default: the one the top-level Potential names,
    else the first). Raises :class:`GapXMLError` for anything unsupported or broken."""
    from .descriptors import SpeciesMap
    from .gap_terms import GlueTerm
    from .potential import Potential
    path = Path(path)
    root = parse_xml(path)
    gap_label, e_scale, core = _top_potential(root, path)
    label = label or gap_label
    all_params = list(root.iter("GAP_params"))
    if not all_params:
        raise GapXMLError(f"{path}: no <GAP_params> element: not a gap_fit model file")
    params = [g for g in all_params if label is None or g.get("label") == label]
    if not params:
        raise GapXMLError(f"{path}: no GAP_params with label {label!r} (found "
                          f"{[g.get('label') for g in all_params]})")
    gp = params[0]
    version = _int(gp.get("gap_version", "0"), "gap_version", path)
    # e0
    data = gp.find("GAP_data")
    e0 = {}
    if data is not None:
        if data.get("e0") is not None:
            base = _float(data.get("e0"), "GAP_data e0", path)
            e0 = {z: base for z in range(1, 119)}
        for el in data.findall("e0"):
            e0[_int(_attr(el, "Z", path, "e0"), "e0 Z", path)] = _float(
                _attr(el, "value", path, "e0"), "e0 value", path)
    # coordinates
    sparse = gp.find("gpSparse")
    if sparse is None:
        raise GapXMLError(f"{path}: GAP_params has no <gpSparse> (truncated file?)")
    if not _bool(sparse.get("fitted"), True):
        raise GapXMLError(f"{path}: the GP in this file is not fitted")
    n_coord = _int(sparse.get("n_coordinate", "0"), "n_coordinate", path)
    coords = [_Coordinate(el, path, path.parent) for el in sparse.findall("gpCoordinates")]
    if len(coords) != n_coord:
        raise GapXMLError(f"{path}: gpSparse declares {n_coord} coordinates but holds "
                          f"{len(coords)} (truncated file?)")
    known = {"soap", "distance_2b", "angle_3b", "distance_nb"}
    for c in coords:
        if c.name not in known:
            raise GapXMLError(f"{path}: {c.where} uses the descriptor '{c.name}', which gapcalc "
                              f"cannot import; it supports {SUPPORTED}")
    glue = None
    zs = set()
    for c in coords:
        zs |= c.species_numbers()
    if core is not None:
        glue = _glue(root, core, zs, path)
        zs |= {int(t["Z"]) for t in glue[0]}
    if not zs:
        zs = {z for z, v in e0.items() if v != 0 and 0 < z < 119}
    if not zs:
        raise GapXMLError(f"{path}: the model names no element (all descriptors use wildcards "
                          "and every e0 is zero); gapcalc needs to know the elements")
    species = SpeciesMap(sorted(zs))
    terms = []
    soap = [c for c in coords if c.name == "soap"]
    if soap:
        terms += _soap_terms(soap, species, e_scale, version, path)
    for c in coords:
        if c.name == "distance_2b":
            terms.append(_distance_2b(c, species, e_scale, path))
        elif c.name == "angle_3b":
            terms.append(_angle_3b(c, species, e_scale, path))
        elif c.name == "distance_nb":
            terms.append(_distance_nb(c, species, e_scale, version, path))
    if glue is not None:
        terms.append(GlueTerm(species, *glue, label="core"))
    if not terms:
        raise GapXMLError(f"{path}: no coordinate applies to the model's elements")
    symbols = species.symbols
    e0_sym = {s: e_scale * e0.get(int(z), 0.0) for s, z in zip(symbols, species.numbers)}
    cmd = gp.find("command_line")
    info = {"source": "gap_fit XML", "file": path.name, "label": gp.get("label"),
            "gap_version": version, "E_scale": e_scale, "core": "IP Glue" if glue else None,
            "coordinates": [{"label": c.label, "descriptor": c.descriptor_string,
                             "covariance": c.covariance, "delta": c.delta,
                             "n_sparse": c.M, "dimensions": c.d} for c in coords],
            "command_line": " ".join((cmd.text or "").split()) if cmd is not None else None}
    log.info("imported %s: %d coordinates, elements %s, gap_version %d", path, len(coords),
             symbols, version)
    return Potential(species, e0_sym, terms, info=info)


def describe(potential) -> dict:
    """A JSON-able summary of an imported (or any) potential: elements, e0, cutoff, terms."""
    out = {"species": potential.species.symbols, "e0": potential.e0,
           "cutoff": potential.cutoff, "min_distance": potential.min_distance,
           "terms": [t.describe() if hasattr(t, "describe") else _describe_kernel_term(t)
                     for t in potential.terms],
           "uncertainty": "none (no posterior in a gap_fit file; refit with the training "
                          "data to get one)"}
    out.update({k: v for k, v in potential.info.items() if k != "coordinates"})
    if "coordinates" in potential.info:
        out["coordinates"] = potential.info["coordinates"]
    return out


def _describe_kernel_term(t):
    d = t.descriptor
    kern = t.kernel
    parts = [f"{d.name} cutoff={d.cutoff:g}"]
    for key in ("n_max", "l_max", "atom_sigma", "radial_basis"):
        if hasattr(d, key):
            parts.append(f"{key}={getattr(d, key)}")
    per = {}
    for s, n in zip(*np.unique(t.X_species, return_counts=True)):
        per[d.species.symbols[int(s)]] = int(n)
    zeta = getattr(kern, "zeta", None)
    parts.append(f"{kern.name}" + (f" ζ={zeta:g}" if zeta is not None else "") +
                 f" δ={kern.delta:g}, sparse points per centre species {per}")
    return " ".join(parts)


def _finite_or_raise(x, what, path):
    if not math.isfinite(x):
        raise GapXMLError(f"{path}: {what} is not finite")
    return x
