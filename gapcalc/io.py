"""Model files: one ``.npz`` (never pickled) with a JSON header inside.

Layout: ``header`` holds a JSON document (UTF-8 bytes as uint8) with
``format`` = "gapcalc-model", ``format_version``, the hyper-parameters, every
descriptor and kernel record, species, e0, a training summary and a SHA-256 of
every array; the arrays are the sparse points, weights and the triangles needed
for the posterior. Files are written to a temporary file in the same directory
and renamed into place, so a crash never leaves a half-written model. Loading
refuses a missing, truncated, pickled, foreign, newer-version or corrupted file
with a message saying which.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

FORMAT = "gapcalc-model"
# 2: terms carry a "kind" and may be other than kernel terms; files may hold a
# Potential without posterior. Version-1 files still load.
FORMAT_VERSION = 2


class ModelFileError(ValueError):
    """A model file that cannot be used, with the reason."""


def _digest(arr: np.ndarray) -> str:
    a = np.ascontiguousarray(arr)
    h = hashlib.sha256()
    h.update(str(a.dtype).encode() + str(a.shape).encode())
    h.update(a.tobytes())
    return h.hexdigest()


def write_npz_atomic(path, header: dict, arrays: dict):
    """Write ``arrays`` and a JSON ``header`` (with per-array checksums) atomically."""
    path = Path(path)
    header = dict(header)
    header["checksums"] = {k: _digest(v) for k, v in arrays.items()}
    payload = dict(arrays)
    payload["header"] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0o022)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)     # mkstemp's 0600 → what a normal open() gives
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_npz(path, expect_format: str = FORMAT, max_version: int = FORMAT_VERSION):
    """(header, arrays) from a file written by :func:`write_npz_atomic`, verified."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    try:
        z = np.load(path, allow_pickle=False)
        if not hasattr(z, "files"):
            raise ModelFileError(f"{path}: a bare array file (.npy), not a gapcalc model (.npz)")
        with z:
            names = list(z.files)
            if "header" not in names:
                raise ModelFileError(f"{path}: not a gapcalc model (no header)")
            header = json.loads(bytes(z["header"]).decode())
            arrays = {k: z[k] for k in names if k != "header"}
    except ModelFileError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise ModelFileError(f"{path}: contains pickled objects, which gapcalc never "
                                 "loads") from None
        raise ModelFileError(f"{path}: unreadable model file ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError,
            KeyError) as exc:
        raise ModelFileError(f"{path}: corrupt or truncated model file ({exc})") from None
    if header.get("format") != expect_format:
        raise ModelFileError(f"{path}: format {header.get('format')!r} is not {expect_format!r}")
    version = header.get("format_version")
    if not isinstance(version, int) or version > max_version:
        raise ModelFileError(f"{path}: format version {version} is newer than this gapcalc "
                             f"supports ({max_version}); upgrade gapcalc")
    sums = header.get("checksums", {})
    for k, arr in arrays.items():
        if sums.get(k) != _digest(arr):
            raise ModelFileError(f"{path}: checksum mismatch for array {k!r} (corrupted file)")
    missing = set(sums) - set(arrays)
    if missing:
        raise ModelFileError(f"{path}: arrays {sorted(missing)} are missing (truncated file)")
    return header, arrays


def pack_upper(T: np.ndarray) -> np.ndarray:
    """Upper triangle of a square matrix (or a stack of them) as a flat vector."""
    iu = np.triu_indices(T.shape[-1])
    return np.ascontiguousarray(T[..., iu[0], iu[1]])


def unpack_upper(v: np.ndarray, n: int) -> np.ndarray:
    iu = np.triu_indices(n)
    out = np.zeros(v.shape[:-1] + (n, n))
    out[..., iu[0], iu[1]] = v
    return out


def save_model(model, path, training_state=True):
    """Serialise a fitted :class:`~gapcalc.gpr.SparseGPR` or a :class:`~gapcalc.potential.Potential`.

    A SparseGPR file carries the posterior (R, U) and, with ``training_state``, the
    per-target-type QR triangles (needed only to add data to the model later, roughly
    half the file). A Potential file carries the terms only (no uncertainties).
    """
    from . import __version__
    fitted = hasattr(model, "terms_")
    if fitted:
        model._check_fitted()
        terms_, species, e0 = model.terms_, model.species_, model.e0_
    else:
        terms_, species, e0 = model.terms, model.species, model.e0
    arrays = {}
    if fitted:
        arrays["R"] = pack_upper(model.R_)
        arrays["U"] = pack_upper(model.U_)
        if training_state and getattr(model, "triangles_", None) is not None:
            arrays["triangles"] = pack_upper(model.triangles_)
    terms = []
    for k, t in enumerate(terms_):
        rec, arrs = t.to_record()
        for name, arr in arrs.items():
            arrays[f"{name}_{k}"] = np.asarray(arr)
        terms.append(rec)
    header = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "gapcalc_version": __version__,
        "terms": terms, "species": species.numbers.tolist(), "e0": e0,
    }
    if fitted:
        header["params"] = model.get_params()
        header["training"] = model.training_summary_
    else:
        header["min_distance"] = model.min_distance
        header["info"] = model.info
    write_npz_atomic(path, header, arrays)


def _term_arrays(arrays, k):
    """The arrays of term k (stored as ``<name>_<k>``), keyed by name."""
    suffix = f"_{k}"
    return {name[:-len(suffix)]: arr for name, arr in arrays.items()
            if name.endswith(suffix) and len(name) > len(suffix)}


def load_model(path):
    """Rebuild a model from a file: a :class:`~gapcalc.gpr.SparseGPR` when the file holds
    the posterior, else a :class:`~gapcalc.potential.Potential`."""
    from .gpr import SparseGPR
    from .potential import TERM_KINDS, Potential
    header, arrays = read_npz(path)
    try:
        terms = []
        lo = 0
        for k, rec in enumerate(header["terms"]):
            kind = rec.get("kind", "kernel")
            if kind not in TERM_KINDS:
                raise ModelFileError(f"{path}: term {k} is of kind {kind!r}, which this "
                                     f"gapcalc does not know ({sorted(TERM_KINDS)})")
            term = TERM_KINDS[kind].from_record(rec, _term_arrays(arrays, k), first_column=lo)
            lo += getattr(term, "M", 0)
            terms.append(term)
        e0 = {k: float(v) for k, v in header["e0"].items()}
        if "R" not in arrays:
            return Potential(header["species"], e0, terms,
                             min_distance=header.get("min_distance", 0.5),
                             info=header.get("info"))
        model = SparseGPR.from_params(header["params"])
        model.terms_ = terms
        model.species_ = model.terms_[0].descriptor.species
        model.e0_ = e0
        M = sum(t.M for t in model.terms_)
        model.R_ = unpack_upper(arrays["R"], M)
        model.U_ = unpack_upper(arrays["U"], M)
        model.triangles_ = (unpack_upper(arrays["triangles"], M + 1)
                            if "triangles" in arrays else None)
        model.alpha_ = np.zeros(M)
        for t in model.terms_:
            model.alpha_[t.columns] = t.alpha
        model.training_summary_ = header.get("training", {})
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{path}: inconsistent model file ({exc})") from None
    return model
