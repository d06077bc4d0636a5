"""Training frames split into chunks of consecutive frames, and the work done on one chunk.

The Dask fit (:mod:`gapcalc.distributed`) is a map over chunks followed by reductions;
everything a task runs lives here, free of Dask, so it is plain, testable numpy:

* :class:`FrameSource` — the training set as in-memory ``ase.Atoms`` or as extxyz
  file(s). Files are indexed once (byte offset and atom count of every frame, read
  from the count lines without parsing the frames), so a task reads only its own
  frame range (:func:`read_chunk`), wherever it runs.
* :func:`scan_chunk` — validate frames, per-frame totals (energy, atoms, composition,
  design rows): what e0 and the bookkeeping need, a few numbers per frame.
* :func:`candidates_chunk` — the chunk's :class:`~gapcalc.gpr.CandidatePool`, with the
  random keys the serial fit would draw for these frames (the stream is advanced to
  the chunk's first draw), merged by :func:`merge_pools`.
* :func:`fingerprints_chunk`, :func:`members_chunk` and the ``member_*`` functions —
  the chunk's part in the low-traffic sparse-point selection of
  :mod:`gapcalc.distributed` (hashes up, then a QR triangle, CUR keys and the chosen
  rows of the chunk's candidates in the global reservoir).
* :func:`rows_chunk` — the QR triangles (at most (M+1) × (M+1)) of the chunk's design
  rows per target type (and fold), merged by :func:`merge_triangles`.

Frame names in errors: "frame k" (global index) for in-memory frames, "<file>: frame j"
(index within the file) for files.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from .solver import (PackedTrapezoid, StreamingQR, combine_triangles, trailing_zeros_dropped,
                     triangularise, unpacked)
from .targets import FrameError, check_atoms, check_targets, read_targets

TYPES = ("energy", "force", "virial")
EVAL_TYPES = ("eval_energy", "eval_force", "eval_virial")


@dataclass(frozen=True)
class Chunk:
    """Consecutive frames [start, start + count) of a :class:`FrameSource`.

    path : extxyz file (None for in-memory frames); file_start : index of the first frame
    within that file; offset, nbytes : its byte range in the file.
    """
    index: int
    start: int
    count: int
    path: str | None = None
    file_start: int = 0
    offset: int = 0
    nbytes: int = 0

    def where(self, j: int, first_index: int = 0) -> str:
        """Name of the chunk's frame j for error messages."""
        if self.path is None:
            return f"frame {first_index + self.start + j}"
        return f"{self.path}: frame {self.file_start + j}"


def index_extxyz(path) -> tuple[np.ndarray, np.ndarray]:
    """(offsets (n+1,), n_atoms (n,)): byte offset of every frame of an extxyz file and
    its atom count, from the count lines alone; offsets[-1] is the end of the data."""
    offsets, natoms = [], []
    path = str(path)
    with open(path, "rb") as fh:
        while True:
            pos = fh.tell()
            line = fh.readline()
            if not line:
                break
            if not line.strip():
                continue
            try:
                n = int(line.split()[0])
                if n < 0:
                    raise ValueError
            except ValueError:
                raise FrameError(f"{path}: frame {len(natoms)}: expected an atom count, "
                                 f"found {line[:60]!r}") from None
            got = sum(1 for _ in islice(fh, n + 1))
            if got < n + 1:
                raise FrameError(f"{path}: frame {len(natoms)}: truncated ({n} atoms "
                                 f"announced, {max(got - 1, 0)} lines found)")
            offsets.append(pos)
            natoms.append(n)
        offsets.append(fh.tell())
    if not natoms:
        raise FrameError(f"{path}: no frames")
    return np.asarray(offsets, dtype=np.int64), np.asarray(natoms, dtype=np.int64)


def read_chunk(chunk: Chunk):
    """The frames of a file chunk (list of ase.Atoms), read from its byte range."""
    from ase.io import read
    with open(chunk.path, "rb") as fh:
        fh.seek(chunk.offset)
        text = fh.read(chunk.nbytes).decode()
    try:
        frames = read(io.StringIO(text), index=":", format="extxyz")
    except Exception as exc:   # the parser's own errors are of many types
        raise FrameError(f"{chunk.path}: frames {chunk.file_start}-"
                         f"{chunk.file_start + chunk.count - 1}: cannot parse ({exc})") from None
    if len(frames) != chunk.count:
        raise FrameError(f"{chunk.path}: frames {chunk.file_start}-"
                         f"{chunk.file_start + chunk.count - 1}: read {len(frames)} frames, "
                         f"expected {chunk.count}")
    return frames


def _is_paths(frames) -> bool:
    if isinstance(frames, (str, Path)):
        return True
    return (isinstance(frames, (list, tuple)) and len(frames) > 0
            and all(isinstance(f, (str, Path)) for f in frames))


class FrameSource:
    """Training frames: a list of ase.Atoms, or extxyz path(s) indexed by frame.

    first_index : global index of the first frame (for names in errors of in-memory
    frames, e.g. an :meth:`~gapcalc.gpr.SparseGPR.update` after n frames).
    """

    def __init__(self, frames, first_index: int = 0):
        self.first_index = int(first_index)
        if isinstance(frames, FrameSource):
            frames = frames.frames if frames.frames is not None else frames.paths
        if _is_paths(frames):
            paths = [frames] if isinstance(frames, (str, Path)) else list(frames)
            self.paths = [str(p) for p in paths]
            self.frames = None
            self.index = []
            for p in self.paths:
                if not Path(p).exists():
                    raise FileNotFoundError(f"{p}: no such file")
                self.index.append(index_extxyz(p))
            self.n_atoms = np.concatenate([n for _, n in self.index])
        else:
            self.paths = None
            self.frames = list(frames)
            self.n_atoms = np.array([len(a) for a in self.frames], dtype=np.int64)
        if not len(self.n_atoms):
            raise ValueError("no training frames")

    @property
    def n_frames(self) -> int:
        return len(self.n_atoms)

    def chunks(self, chunk_frames=None, target_rows=None) -> list[Chunk]:
        """Consecutive-frame chunks (never across files): ``chunk_frames`` frames each, or
        as many frames as reach ``target_rows`` estimated design rows (1 + 3 n + 6 per
        frame of n atoms). Depends on the data only, so results do not depend on the
        number of workers."""
        est = 1 + 3 * self.n_atoms + 6
        bounds = []            # (file number, first frame in file, count)
        if self.paths is None:
            spans = [(None, 0, self.n_frames)]
        else:
            spans, lo = [], 0
            for f, (_, n) in enumerate(self.index):
                spans.append((f, lo, len(n)))
                lo += len(n)
        for f, lo, n in spans:
            j = 0
            while j < n:
                if chunk_frames:
                    c = min(int(chunk_frames), n - j)
                else:
                    rows = np.cumsum(est[lo + j:lo + n])
                    c = int(np.searchsorted(rows, target_rows)) + 1
                    c = min(max(c, 1), n - j)
                bounds.append((f, lo, j, c))
                j += c
        out = []
        for i, (f, lo, j, c) in enumerate(bounds):
            if f is None:
                out.append(Chunk(i, j, c))
            else:
                offsets = self.index[f][0]
                out.append(Chunk(i, lo + j, c, self.paths[f], j, int(offsets[j]),
                                 int(offsets[j + c] - offsets[j])))
        return out

    def load(self, chunk: Chunk):
        """The chunk's frames (in-memory slice, or read from the file)."""
        if chunk.path is None:
            return self.frames[chunk.start:chunk.start + chunk.count]
        return read_chunk(chunk)


def auto_target_rows(n_atoms: np.ndarray, block_rows: int, m_guess: int) -> int:
    """Design rows per chunk when not set: enough that merging two triangles (~M³) costs
    little next to making the chunk's rows (~rows·M²) — max(4 block_rows, 16 M) — but
    at least 16 chunks for small sets."""
    total = int(np.sum(1 + 3 * np.asarray(n_atoms) + 6))
    return max(1, min(max(4 * int(block_rows), 16 * (int(m_guess) + 1)), total // 16))


# --- the work of one chunk (runs on a worker) ------------------------------------------------


def _frames_of(chunk: Chunk, data):
    return read_chunk(chunk) if data is None else data


def _wrap(chunk: Chunk, exc: FrameError, first_index: int) -> FrameError:
    """FrameError naming the file (read_targets names only the frame index)."""
    if chunk.path is None:
        return exc
    return FrameError(f"{chunk.path}: {exc}")


def _targets(model, at, chunk: Chunk, j: int, first_index: int):
    idx = (first_index + chunk.start + j) if chunk.path is None else chunk.file_start + j
    try:
        return read_targets(at, idx, model._keys(), model._sigmas(), model.config_type_sigma)
    except FrameError as exc:
        raise _wrap(chunk, exc, first_index) from None


def scan_chunk(chunk: Chunk, data, model, first_index: int = 0) -> dict:
    """Validate the chunk's frames as :meth:`SparseGPR.read` does and return per-frame totals.

    Returns {"numbers": (Z,) species present, "counts": (c, Z) atoms per species,
    "n_atoms", "energy", "isolated" (one atom, no periodicity), "rows" (c, 3) design rows
    per type, "config_type" (list), "isolated_symbol" (list)}; or {"error": message} for
    the first bad frame (so the client can report the first bad frame of the whole set)."""
    try:
        frames = _frames_of(chunk, data)
        n = len(frames)
        numbers = np.unique(np.concatenate([at.numbers for at in frames]))
        out = {"numbers": numbers, "counts": np.zeros((n, len(numbers)), dtype=np.int64),
               "n_atoms": np.zeros(n, dtype=np.int64), "energy": np.zeros(n),
               "isolated": np.zeros(n, dtype=bool), "rows": np.zeros((n, 3), dtype=np.int64),
               "config_type": [], "isolated_symbol": []}
        targets = []
        for j, at in enumerate(frames):
            check_atoms(at, model.min_distance, where=chunk.where(j, first_index))
            tg = _targets(model, at, chunk, j, first_index)
            targets.append(tg)
            out["counts"][j] = [np.sum(at.numbers == z) for z in numbers]
            out["n_atoms"][j] = len(at)
            out["energy"][j] = tg.energy
            iso = len(at) == 1 and not at.pbc.any()
            out["isolated"][j] = iso
            out["isolated_symbol"].append(at.get_chemical_symbols()[0] if iso else None)
            n_force = 0
            if tg.forces is not None:
                n_force = 3 * (len(at) if tg.force_mask is None else int(np.sum(tg.force_mask)))
            out["rows"][j] = (1, n_force, 6 if tg.virial is not None else 0)
            out["config_type"].append(tg.config_type)
        where = chunk.path or "frames"
        out["warnings"] = [f"{where}: {w}" for w in check_targets(frames, targets)]
        return out
    except FrameError as exc:
        return {"error": str(exc)}


def species_chunk(chunk: Chunk, data) -> np.ndarray:
    """Atomic numbers present in the chunk."""
    frames = _frames_of(chunk, data)
    return np.unique(np.concatenate([at.numbers for at in frames]))


def candidates_chunk(chunk: Chunk, data, model, skip, first_draw: int,
                     per_chunk=None, first_index: int = 0):
    """The chunk's sparse-point candidate pool (frames with ``skip`` true left out).

    The random stream is the serial fit's, advanced to ``first_draw`` (the number of keys
    drawn for all earlier frames), so the keys — and hence the merged pool — are the
    serial fit's. ``per_chunk`` thins the pool to that many candidates per (term,
    species) by the model's sparse method (fewer bytes back; no longer exact)."""
    rng = np.random.default_rng(model.seed)
    rng.bit_generator.advance(int(first_draw))
    pool = model._empty_candidates(first_draw)
    for j, at in enumerate(_frames_of(chunk, data)):
        if skip[j]:
            continue
        try:
            model._add_candidates(pool, at, rng)
        except FrameError:
            raise
        except ValueError as exc:
            raise FrameError(f"{chunk.where(j, first_index)}: {exc}") from None
    if per_chunk:
        pool.thin(int(per_chunk), model.sparse_method, model.seed)
    return pool


def merge_pools(a, b):
    """Pool of two consecutive parts (a before b); the inputs are left as they were (a
    task may run again, and its inputs may be read by other tasks)."""
    import copy
    out = copy.copy(a)
    out.items = [list(row) for row in a.items]
    return out.merge(b)


# --- the low-traffic sparse-point selection (gapcalc.distributed, candidates="leverage") -----


def fingerprints_chunk(chunk: Chunk, data, model, skip, first_draw: int,
                       first_index: int = 0):
    """The chunk's candidate pool with each feature row replaced by its 64-bit hash
    (:meth:`~gapcalc.gpr.CandidatePool.fingerprints`): keys, draws and hashes, 24 bytes
    per candidate; merged by :func:`merge_pools` into the serial reservoir's."""
    return candidates_chunk(chunk, data, model, skip, first_draw, None,
                            first_index).fingerprints()


def _locate(order: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Positions in ``order`` of the values ``draws`` (all present)."""
    srt = np.argsort(order, kind="stable")
    pos = np.minimum(np.searchsorted(order[srt], draws), max(len(order) - 1, 0))
    if len(draws) and (not len(order) or np.any(order[srt[pos]] != draws)):
        raise RuntimeError("candidate not found in its chunk (the chunk's data changed?)")
    return srt[pos]


def members_chunk(chunk: Chunk, data, model, skip, first_draw: int, members: dict,
                  first_index: int = 0) -> dict:
    """Feature rows of the chunk's candidates named by their draws: {(ti, s): (draws (n,),
    rows (n, D))} for ``members`` {(ti, s): draws}. The pool is made again (descriptors
    only, ~1 % of a chunk's design rows), so that workers hold the global reservoir's
    rows only, never every environment."""
    pool = candidates_chunk(chunk, data, model, skip, first_draw, None, first_index)
    out = {}
    for (ti, s), draws in members.items():
        _, order, P = pool.items[ti][s]
        draws = np.asarray(draws, dtype=np.int64)
        out[ti, s] = (draws, P[_locate(order, draws)])
    return out


def _held_rows(held: dict, key, draws) -> np.ndarray:
    d, rows = held[key]
    return rows[_locate(d, np.asarray(draws, dtype=np.int64))]


def member_triangles(held: dict, which: dict) -> dict:
    """{(ti, s): (R, n)}: R (min(n, D), D) upper trapezoidal with RᵀR = PᵀP for the held
    rows P (n, D) named by ``which`` {(ti, s): draws}; merged by :func:`merge_triangles`
    (a tall-skinny QR: the R of the whole pool has its singular values and vectors)."""
    out = {}
    for key, draws in which.items():
        P = _held_rows(held, key, draws)
        D = P.shape[1]
        R = triangularise(np.asfortranarray(P), D)
        out[key] = (PackedTrapezoid(R[:min(len(P), D)]), len(P))
    return out


def member_cur_keys(held: dict, which: dict, basis: dict, n_top: dict) -> dict:
    """The ``n_top[key]`` largest CUR keys of the held rows named by ``which`` {(ti, s):
    (draws, uniforms)} with the pool's SVD ``basis`` {(ti, s): (s, Vt[:k], k)}
    (:func:`~gapcalc.sparsify.cur_keys`): {(ti, s): (draws, keys, err, rest, n)}, rest =
    the largest key + err among the others (−inf if none). Merged by :func:`merge_top`."""
    from .sparsify import cur_keys
    out = {}
    for key, (draws, u) in which.items():
        draws = np.asarray(draws, dtype=np.int64)
        keys, err = cur_keys(_held_rows(held, key, draws), np.asarray(u), *basis[key])
        out[key] = _top((draws, keys, err, -np.inf, int(n_top[key])))
    return out


def _top(part):
    """Keep the n largest keys (ties: earlier draw first); the rest's largest key + err."""
    draws, keys, err, rest, n = part
    order = np.lexsort((draws, -keys))
    keep, drop = order[:n], order[n:]
    if len(drop):
        rest = max(float(rest), float(np.max(keys[drop] + err[drop])))
    return draws[keep], keys[keep], err[keep], rest, n


def merge_top(a: dict, b: dict) -> dict:
    """Largest keys of two parts (:func:`member_cur_keys`)."""
    out = dict(a)
    for key, pb in b.items():
        if key not in out:
            out[key] = pb
            continue
        pa = out[key]
        out[key] = _top(tuple(np.concatenate([x, y]) for x, y in zip(pa[:3], pb[:3]))
                        + (max(pa[3], pb[3]), pa[4]))
    return out


def member_rows(held: dict, which: dict) -> dict:
    """{(ti, s): rows (n, D)} of the held rows named by ``which`` {(ti, s): draws}, in
    that order."""
    return {key: _held_rows(held, key, draws) for key, draws in which.items()}


def payload_bytes(obj) -> int:
    """Bytes of the numbers in ``obj`` (arrays in dicts, lists, tuples, object attributes;
    8 per Python scalar): what a transfer of it carries, bar pickling overhead."""
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, dict):
        return sum(payload_bytes(k) + payload_bytes(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return sum(payload_bytes(x) for x in obj)
    if isinstance(obj, (int, float, np.generic, bool)):
        return 8
    if hasattr(obj, "__dict__"):
        return payload_bytes(vars(obj))
    return 0


def rows_chunk(chunk: Chunk, data, model, skip, folds=None, evaluation=False,
               first_index: int = 0) -> dict:
    """QR triangles of the chunk's design rows: {key: (R (r, M+1) with r ≤ M+1, n_rows)}.

    key = target type ("energy", "force", "virial", and with ``evaluation`` the
    unwhitened "eval_*" types of :meth:`SparseGPR._accumulate`), or (fold, type) when
    ``folds`` (fold id per frame of the chunk) is given. R is upper trapezoidal with
    RᵀR = AᵀA of the rows [A | y]."""
    M = model.M_
    kinds = TYPES + (EVAL_TYPES if evaluation else ())
    accs = {}
    for j, at in enumerate(_frames_of(chunk, data)):
        if skip[j]:
            continue
        fold = None if folds is None else int(folds[j])
        acc = accs.get(fold)
        if acc is None:
            acc = accs[fold] = {t: StreamingQR(M, model.block_rows) for t in kinds}
        tg = _targets(model, at, chunk, j, first_index)
        try:
            model._add_frame_rows(acc, at, tg, evaluation)
        except FrameError as exc:
            raise _wrap(chunk, exc, first_index) from None
        except ValueError as exc:
            raise FrameError(f"{chunk.where(j, first_index)}: {exc}") from None
    out = {}
    for fold, acc in accs.items():
        for t, a in acc.items():
            a._fold()
            out[t if fold is None else (fold, t)] = (PackedTrapezoid(a.R), a.n_rows)
    return out


def merge_triangles(a: dict, b: dict) -> dict:
    """Triangles of two consecutive parts (a before b): QR of [R_a; R_b] per key.

    The R's are arrays or :class:`~gapcalc.solver.PackedTrapezoid` (what the chunk
    tasks return); the merged ones are packed, so only upper triangles travel."""
    out = dict(a)
    for key, (Rb, nb) in b.items():
        if key not in out:
            out[key] = (Rb, nb)
            continue
        Ra, na = out[key]
        Ra, Rb = unpacked(Ra), unpacked(Rb)
        n = Ra.shape[1]
        R = combine_triangles([Ra, Rb], n)
        out[key] = (PackedTrapezoid(trailing_zeros_dropped(R)), na + nb)
    return out


def full_triangle(R: np.ndarray) -> np.ndarray:
    """(n, n) triangle from a (r ≤ n, n) trapezoid (zero rows appended); ``R`` may be
    a :class:`~gapcalc.solver.PackedTrapezoid`."""
    R = unpacked(R)
    n = R.shape[1]
    out = np.zeros((n, n))
    out[:len(R)] = R
    return out
