"""Fitting on many cores or machines with Dask (``pip install 'gapcalc[dask]'``).

The fit is a map over chunks of consecutive frames followed by reductions
(:mod:`gapcalc.chunks` holds the work of one chunk):

1. scan — validate every frame, per-frame totals → species, e0, isolated atoms;
2. sparse points — each chunk draws its uniform reservoir sample of environments with
   the serial fit's random keys (the stream advanced to the chunk's first draw), so the
   merge of the chunks' reservoirs is the serial reservoir; then, per (term, species),
   the serial choice is made without moving the reservoir (``candidates="leverage"``,
   the default for cur, uniform and random):

   a. keys — chunks send each candidate's key, draw number and a 64-bit hash of its
      features rounded as the serial dedupe rounds them (24 bytes instead of 8 D);
      merged pairwise (smallest ``max_candidates`` keys kept). The client sorts by key
      and drops repeated hashes: it knows the serial pool's order and size N.
   b. rows held — each chunk makes its descriptors again (~1 % of its design-row cost)
      and its worker keeps the rows of its members of the global pool, nothing else.
   c. basis (CUR) — each chunk's R factor of its member rows (≤ D × D), merged up the
      tree (tall-skinny QR); the client's SVD of the root R has the singular values and
      vectors of the whole pool to rounding (not the Gram matrix, which loses the small
      singular values that set the rank k).
   d. keys with leverage (CUR) — the client draws CUR's uniforms for the N pool rows,
      sends each chunk its members' uniforms and (s, V_k) (k ≤ M rows); chunks return
      their M largest Efraimidis–Spirakis keys log(u)/π with a bound on their rounding
      difference from the serial keys (:func:`~gapcalc.sparsify.cur_keys`), merged
      pairwise to the M largest.
   e. rows — the chunks send the chosen rows (≈ M per term and species), assembled in
      the serial pool order.

   Uniform and random need the pool size only (a, b, e). The choice is the serial one
   by construction: if a singular value lies within the rounding bound of the rank cut,
   or the M-th and (M+1)-th keys within their bounds, that (term, species) falls back
   to fetching its N distinct rows and running CUR as the serial fit (logged; on the Si
   pool the bound exceeds the actual difference ≥ 34× on every row). FPS needs every row:
   ``candidates="complete"`` (its default) makes every chunk send its reservoir rows
   up the tree and selects on the client. ``candidates_per_chunk`` thins each chunk's
   pool by the sparse method first (fewer bytes, different sparse points; superseded
   by "leverage"). ``training_summary_["dask"]["sparse_traffic"]`` has the payload
   bytes sent to the client, from it and between workers.
3. rows — each chunk streams its design rows into QR triangles (at most (M+1)² numbers
   per target type); triangles merged pairwise on the workers.

Both reductions follow a fixed binary tree over the chunks in frame order (chunk 2i
with 2i+1, and so on up), never the order in which tasks finish, and the chunks
depend on the data only: the result is the same bits whatever the scheduling, the
number of workers or a worker lost mid-fit (Dask recomputes its tasks). It equals the
serial fit to rounding: identical sparse points and e0, α to ~1e-12 relative, R up
to row signs. Workers read their own frame ranges from extxyz files (byte offsets from
a count-line index made on the client), so the client holds per-frame totals only.

Use::

    from gapcalc.distributed import connect
    with connect(workers=4) as client:               # LocalCluster, 1 thread per worker
        model.fit("train.xyz", client=client)
    with connect(scheduler="tcp://host:8786") as client:   # an existing cluster
        ...

Dask is imported only here (and only when this module is imported).
"""
from __future__ import annotations

import contextlib
import logging
import os
import time

import numpy as np

from .chunks import (EVAL_TYPES, TYPES, FrameSource, auto_target_rows, candidates_chunk,
                     fingerprints_chunk, full_triangle, member_cur_keys, member_rows,
                     member_triangles, members_chunk, merge_pools, merge_top, merge_triangles,
                     payload_bytes, rows_chunk, scan_chunk, species_chunk)
from .descriptors import PairDistance, SpeciesMap
from .kernels import SquaredExponential
from .solver import StreamingQR, unpacked
from .targets import FrameError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'gapcalc[dask]' (or 'dask[distributed]')"

#: environment of LocalCluster workers: one thread each for Numba, OpenMP and BLAS
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "MKL_NUM_THREADS": "1"}


def _dask():
    try:
        import distributed
    except ImportError:
        raise ImportError(f"this needs dask.distributed: {INSTALL_HINT}") from None
    return distributed


@contextlib.contextmanager
def connect(workers=None, scheduler=None, dashboard=False, **cluster_kwargs):
    """A Dask client: to ``scheduler`` (an address such as ``tcp://host:8786``, or a
    scheduler file path), or to a new LocalCluster of ``workers`` processes with one
    thread each (Numba, BLAS and OpenMP limited to one thread per worker)."""
    dd = _dask()
    if scheduler:
        if os.path.exists(str(scheduler)):
            client = dd.Client(scheduler_file=str(scheduler))
        else:
            client = dd.Client(str(scheduler))
        log.info("connected to %s (%d workers)", scheduler,
                 len(client.scheduler_info()["workers"]))
        try:
            yield client
        finally:
            client.close()
        return
    n = int(workers or os.cpu_count() or 1)
    if n < 1:
        raise ValueError(f"need at least one worker, got {n}")
    kw = dict(n_workers=n, threads_per_worker=1, processes=True,
              dashboard_address=":8787" if dashboard else None, env=dict(WORKER_ENV))
    kw.update(cluster_kwargs)
    cluster = dd.LocalCluster(**kw)
    client = dd.Client(cluster)
    log.info("local Dask cluster: %d worker processes x 1 thread%s", n,
             f", dashboard {client.dashboard_link}" if dashboard else "")
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _n_workers(client) -> int:
    return len(client.scheduler_info().get("workers", {})) or 1


def _identity(x):
    return x


def _put(client, obj):
    """A future holding ``obj``: the object travels once to the cluster and is kept in
    the task graph, so Dask can recompute it if the worker holding it dies."""
    return client.submit(_identity, obj, pure=False)


def _light(model):
    """The model without what tasks never need (solution, training triangles)."""
    import copy
    m = copy.copy(model)
    m.__dict__ = {k: v for k, v in model.__dict__.items()
                  if k not in ("triangles_", "R_", "U_", "alpha_", "training_summary_")}
    return m


class _Progress:
    """Whole-cluster progress of one pass: frames and rows done, elapsed, ETA."""

    def __init__(self, label, frames, rows, every):
        self.label, self.frames, self.rows, self.every = label, frames, rows, every
        self.t0 = self.last = time.perf_counter()
        self.done_frames = self.done_rows = 0

    def add(self, frames, rows, n_left):
        self.done_frames += frames
        self.done_rows += rows
        now = time.perf_counter()
        if now - self.last >= self.every or n_left == 0:
            el = now - self.t0
            frac = self.done_rows / self.rows if self.rows else self.done_frames / self.frames
            eta = el * (1 - frac) / frac if frac > 0 else float("nan")
            rows = f", {self.done_rows}/{self.rows} rows" if self.rows else ""
            log.info("%s: %d/%d frames%s, %.1f s elapsed, ETA %.0f s", self.label,
                     self.done_frames, self.frames, rows, el, eta)
            self.last = now


def _watch(futures, sizes, progress, release=False):
    """Log progress as the chunk tasks finish; raise the first task error. With
    ``release`` the list is emptied, so that each result is dropped as soon as the
    reduction has used it (the caller must hold no other reference)."""
    dd = _dask()
    pending = dict(zip((f.key for f in futures), sizes))
    left = len(futures)
    done = dd.as_completed(futures)
    if release:
        futures.clear()
    for fut in done:
        left -= 1
        if fut.status == "error":
            exc = fut.exception()
            raise exc
        frames, rows = pending.pop(fut.key)
        progress.add(frames, rows, left)
        del fut


def _tree(client, futures, func, sizes=None):
    """Reduce futures pairwise along a fixed binary tree in list order (deterministic);
    merge tasks run before queued map tasks so that partial results do not pile up.
    With a list ``sizes``, a future of :func:`payload_bytes` of every merge input is
    appended to it (what travels between workers, at most)."""
    level = list(futures)
    while len(level) > 1:
        if sizes is not None:
            sizes.extend(client.submit(payload_bytes, x, pure=False, priority=20)
                         for x in level[:len(level) - len(level) % 2])
        nxt = [client.submit(func, level[i], level[i + 1], pure=False, priority=10)
               for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


class _Prepared:
    """What the passes share: chunks, their data, per-frame totals."""

    def __init__(self, model, frames, client, chunk_frames, first_index=0, m_guess=None):
        self.source = FrameSource(frames, first_index)
        self.first_index = first_index
        if chunk_frames is None:
            if m_guess is None:
                m_guess = _m_guess(model)
            target = auto_target_rows(self.source.n_atoms, model.block_rows, m_guess)
            self.chunks = self.source.chunks(target_rows=target)
        else:
            self.chunks = self.source.chunks(chunk_frames=chunk_frames)
        if self.source.frames is None:
            self.data = [None] * len(self.chunks)
        else:
            self.data = [_put(client, self.source.load(c)) for c in self.chunks]
        log.info("%d frames in %d chunks on %d workers", self.source.n_frames, len(self.chunks),
                 _n_workers(client))

    def scan(self, model, client, progress_every):
        light = _put(client, _light(model))
        futs = [client.submit(scan_chunk, c, d, light, self.first_index, pure=False)
                for c, d in zip(self.chunks, self.data)]
        _watch(futs, [(c.count, 0) for c in self.chunks],
               _Progress("scan", self.source.n_frames, 0, progress_every))
        parts = client.gather(futs)
        for part in parts:           # the first bad frame in frame order
            if "error" in part:
                raise FrameError(part["error"])
        for part in parts:           # check_targets' warnings, as the serial read logs them
            for w in part.get("warnings", ()):
                log.warning("%s", w)
        numbers = np.unique(np.concatenate([p["numbers"] for p in parts]))
        counts = np.zeros((self.source.n_frames, len(numbers)), dtype=np.int64)
        for c, p in zip(self.chunks, parts):
            cols = np.searchsorted(numbers, p["numbers"])
            counts[c.start:c.start + c.count, cols] = p["counts"]
        cat = {k: np.concatenate([p[k] for p in parts])
               for k in ("n_atoms", "energy", "isolated", "rows")}
        cat["config_type"] = [t for p in parts for t in p["config_type"]]
        cat["isolated_symbol"] = [s for p in parts for s in p["isolated_symbol"]]
        cat["numbers"], cat["counts"] = numbers, counts
        self.meta = cat
        return cat

    def chunk_rows(self, skip):
        rows = self.meta["rows"].sum(axis=1) * ~skip
        sl = [slice(c.start, c.start + c.count) for c in self.chunks]
        return [(int((~skip[s]).sum()), int(rows[s].sum())) for s in sl]

    def skips(self, skip):
        return [skip[c.start:c.start + c.count] for c in self.chunks]


def _m_guess(model):
    n = model.n_sparse
    parts = n if isinstance(n, (list, tuple)) else [n]     # one per SOAP (multi-scale)
    return int(sum(sum(x.values()) if isinstance(x, dict) else x for x in parts))


class _FramesAt:
    """frames[k] by global frame index, loading (and keeping) one chunk at a time on the
    client: for the few frames that feature selection reads."""

    def __init__(self, prep):
        self.prep = prep
        self._chunk = None
        self._frames = None

    def __getitem__(self, k):
        k = int(k)
        if self._chunk is None or not (self._chunk.start <= k
                                       < self._chunk.start + self._chunk.count):
            self._chunk = next(c for c in self.prep.chunks
                               if c.start <= k < c.start + c.count)
            self._frames = self.prep.source.load(self._chunk)
        return self._frames[k - self._chunk.start]


CANDIDATES = ("leverage", "complete")


def _candidates_mode(model, candidates, candidates_per_chunk) -> str:
    """"leverage", "complete" or "thinned" from the fit's options."""
    if candidates not in (None,) + CANDIDATES:
        raise ValueError(f"candidates must be one of {CANDIDATES} (or None), got {candidates!r}")
    if candidates_per_chunk:
        if candidates == "leverage":
            raise ValueError("candidates_per_chunk thins each chunk's complete pool: it does "
                             "not combine with candidates='leverage'")
        return "thinned"
    if candidates is None:
        if model.sparse_method == "fps":
            log.info("sparse_method 'fps' needs every candidate's features: the chunks send "
                     "their complete pools (candidates='complete')")
            return "complete"
        return "leverage"
    return candidates


def _choose_sparse(model, prep, client, skip, candidates, candidates_per_chunk,
                   progress_every):
    """Distributed sparse-point selection (sets model.terms_, prep.candidates,
    prep.traffic {"to_client", "from_client", "between_workers": payload bytes})."""
    if model.sparse_indices is not None:
        raise ValueError("sparse_indices (given sparse environments) needs the serial fit; "
                         "fit without a Dask client")
    mode = _candidates_mode(model, candidates, candidates_per_chunk)
    draws = prep.meta["n_atoms"] * len(model.terms_) * ~skip
    first = np.concatenate([[0], np.cumsum(draws)])
    rng = np.random.default_rng(model.seed)
    rng.bit_generator.advance(int(first[-1]))
    if mode == "leverage":
        pool = _LeveragePool(model, prep, client, skip, first, progress_every)
        t0 = time.perf_counter()
        try:
            model._select_sparse(pool, rng)
        finally:
            pool.close()
        prep.select_s = time.perf_counter() - t0
        prep.candidates, prep.traffic = mode, dict(pool.traffic)
        log.info("sparse points chosen with %s bytes to the client, %s from it, %s between "
                 "workers", *(f"{pool.traffic[k]:,}" for k in pool.traffic))
        return pool
    light = _put(client, _light(model))
    per_chunk = candidates_per_chunk if mode == "thinned" else None
    futs = [client.submit(candidates_chunk, c, d, light, s, int(first[c.start]),
                          per_chunk, prep.first_index, pure=False)
            for c, d, s in zip(prep.chunks, prep.data, prep.skips(skip))]
    sizes = []
    root = _tree(client, futs, merge_pools, sizes)
    _watch(futs, [(c.count, 0) for c in prep.chunks],
           _Progress("sparse candidates", prep.source.n_frames, 0, progress_every), release=True)
    pool = root.result()
    prep.candidates = mode
    prep.traffic = {"to_client": payload_bytes(pool), "from_client": 0,
                    "between_workers": int(sum(client.gather(sizes)))}
    log.info("sparse candidates: %d in the merged pool (%s bytes); selecting", pool.size,
             f"{prep.traffic['to_client']:,}")
    if not pool.complete:
        log.info("sparse candidates thinned to %d per chunk: the pool is not the complete "
                 "uniform sample, so the sparse points may differ from a serial fit's",
                 candidates_per_chunk)
    t0 = time.perf_counter()
    model._select_sparse(pool, rng)
    prep.select_s = time.perf_counter() - t0
    return pool


class _LeveragePool:
    """The merged candidate pool of a Dask fit, kept on the workers: answers
    :meth:`SparseGPR._select_sparse`'s questions (:class:`~gapcalc.gpr.CandidatePool`'s
    ``unique_count``, ``choose``, ``n_drawn``, ``drawn_rows``) with the serial answers,
    moving hashes, one D × D triangle per chunk, keys and the chosen rows instead of the
    pool (see the module docstring)."""

    def __init__(self, model, prep, client, skip, first, progress_every):
        self.model, self.prep, self.client = model, prep, client
        self.skip, self.first, self.every = skip, first, progress_every
        self.traffic = {"to_client": 0, "from_client": 0, "between_workers": 0}
        self.starts = np.asarray([first[c.start] for c in prep.chunks], dtype=np.int64)
        self.light = _put(client, _light(model))
        sizes = []
        futs = [client.submit(fingerprints_chunk, c, d, self.light, s, int(first[c.start]),
                              prep.first_index, pure=False)
                for c, d, s in zip(prep.chunks, prep.data, prep.skips(skip))]
        root = _tree(client, futs, merge_pools, sizes)
        _watch(futs, [(c.count, 0) for c in prep.chunks],
               _Progress("sparse candidates", prep.source.n_frames, 0, progress_every),
               release=True)
        fp = root.result()
        del root
        self._count(to_client=payload_bytes(fp), between=sum(client.gather(sizes)))
        self.n_features = fp.n_features
        self.drawn, self.uniq = {}, {}
        for ti, row in enumerate(fp.items):
            for s, (keys, draws, hashes) in enumerate(row):
                srt = np.argsort(keys)      # the serial order (CandidatePool.unique)
                self.drawn[ti, s] = draws
                _, first_seen = np.unique(hashes[srt], return_index=True)
                self.uniq[ti, s] = draws[srt][np.sort(first_seen)]
        log.info("sparse candidates: %d in the merged pool, %d distinct (hashes)",
                 sum(len(d) for d in self.drawn.values()),
                 sum(len(u) for u in self.uniq.values()))
        self.held = None

    def _count(self, to_client=0, from_client=0, between=0):
        self.traffic["to_client"] += int(to_client)
        self.traffic["from_client"] += int(from_client)
        self.traffic["between_workers"] += int(between)

    def close(self):
        self.held = None
        self.light = None

    # --- CandidatePool's questions ---

    def unique_count(self, ti, s) -> int:
        return len(self.uniq[ti, s])

    def n_drawn(self, ti) -> int:
        return sum(len(d) for (t, _), d in self.drawn.items() if t == ti)

    def choose(self, wanted, method, seed) -> dict:
        from .sparsify import select, select_count
        idx, cur, full = {}, {}, {}
        for (ti, s), n in wanted.items():
            N = self.unique_count(ti, s)
            if n >= N:
                idx[ti, s] = np.arange(N)
            elif method in ("uniform", "random"):
                idx[ti, s] = select_count(N, n, method, seed + s)
            elif method == "cur":
                cur[ti, s] = n
            else:
                full[ti, s] = n
        if full:
            log.info("sparse_method %r needs every candidate's features: fetching the %d "
                     "distinct candidates of %d (term, species)", method,
                     sum(self.unique_count(*k) for k in full), len(full))
        if cur:
            for key, pos in self._cur(cur, seed).items():
                if pos is None:
                    full[key] = cur[key]
                else:
                    idx[key] = pos
        fetch = {key: self.uniq[key][np.sort(pos)] for key, pos in idx.items()}
        fetch.update({key: self.uniq[key] for key in full})
        rows = self._fetch(fetch)
        out = {key: rows[key] for key in idx}
        for (ti, s), n in full.items():
            P = rows[ti, s]
            out[ti, s] = P[select(P, int(n), method, seed=seed + s)]
        return out

    def drawn_rows(self, picks) -> dict:
        fetch, where = {}, {}
        for ti, idx in picks.items():
            S = len(self.model.species_)
            order = np.concatenate([np.sort(self.drawn[ti, s]) for s in range(S)])
            spec = np.concatenate([np.full(len(self.drawn[ti, s]), s) for s in range(S)])
            for s in np.unique(spec[idx]):
                sel = idx[spec[idx] == s]
                fetch[ti, int(s)] = order[sel]
            where[ti] = spec[idx]
        rows = self._fetch(fetch)
        out = {}
        for ti, idx in picks.items():
            sub = np.zeros((len(idx), self.n_features[ti]))
            for s in np.unique(where[ti]):
                sub[where[ti] == s] = rows[ti, int(s)]
            out[ti] = sub
        return out

    # --- rounds on the cluster ---

    def _chunk_of(self, draws) -> np.ndarray:
        return np.searchsorted(self.starts, draws, side="right") - 1

    def _split(self, per_key: dict) -> dict:
        """{chunk: {key: values}} from {key: (draws, *values)}: each chunk's share, in the
        given order."""
        out = {}
        for key, arrays in per_key.items():
            c = self._chunk_of(arrays[0])
            for ci in np.unique(c):
                m = c == ci
                out.setdefault(int(ci), {})[key] = (tuple(a[m] for a in arrays)
                                                     if len(arrays) > 1 else arrays[0][m])
        return out

    def _hold(self):
        """Chunk tasks that make their candidates again and keep the rows of the global
        reservoir's members: rounds after this use them where they are."""
        if self.held is not None:
            return
        model = self.model
        need = {}
        for (ti, s), draws in self.drawn.items():
            term = model.terms_[ti]
            if isinstance(term.descriptor, PairDistance):
                continue
            every = isinstance(term.kernel, SquaredExponential) and model.theta_2b is None
            need[ti, s] = (np.sort(draws) if every else np.sort(self.uniq[ti, s]),)
        parts = self._split(need)
        self._count(from_client=payload_bytes(parts))
        prep, client = self.prep, self.client
        skips = prep.skips(self.skip)
        self.held = {}
        for ci, members in parts.items():
            c = prep.chunks[ci]
            self.held[ci] = client.submit(members_chunk, c, prep.data[ci], self.light,
                                          skips[ci], int(self.first[c.start]), members,
                                          prep.first_index, pure=False)
        futs = list(self.held.values())
        _watch(futs, [(prep.chunks[ci].count, 0) for ci in self.held],
               _Progress("sparse candidates' rows", int(sum(prep.chunks[ci].count
                                                            for ci in self.held)),
                         0, self.every))

    def _fetch(self, wanted: dict) -> dict:
        """{key: rows} for wanted {key: draws}, rows in the order of the draws."""
        wanted = {k: v for k, v in wanted.items() if len(v)}
        if not wanted:
            return {}
        self._hold()
        parts = self._split({k: (v,) for k, v in wanted.items()})
        futs = {ci: self.client.submit(member_rows, self.held[ci], which, pure=False)
                for ci, which in parts.items()}
        self._count(from_client=payload_bytes(parts))
        got = dict(zip(futs, self.client.gather(list(futs.values()))))
        self._count(to_client=payload_bytes(got))
        out = {}
        for key, draws in wanted.items():
            c = self._chunk_of(draws)
            rows = np.zeros((len(draws), self.n_features[key[0]]))
            for ci in np.unique(c):
                rows[c == ci] = got[int(ci)][key]
            out[key] = rows
        return out

    def _cur(self, wanted: dict, seed) -> dict:
        """{key: positions of the sparse points in the serial pool order, or None when
        rounding could make the serial choice differ} for wanted {key: n} by CUR."""
        from .sparsify import cur_rank, top_certain
        self._hold()
        client = self.client
        members, pos_of = {}, {}
        for (ti, s) in wanted:
            draws = self.uniq[ti, s]
            u = np.random.default_rng(seed + s).random(len(draws))   # cur's stream
            members[ti, s] = (draws, u)
            pos_of[ti, s] = dict(zip(draws.tolist(), range(len(draws))))
        parts = self._split(members)
        which_f = {ci: _put(client, which) for ci, which in parts.items()}
        self._count(from_client=payload_bytes(parts))
        # TSQR: the R of each chunk's rows, merged up the tree
        sizes = []
        tri = [client.submit(member_triangles, self.held[ci], client.submit(
            _first, which_f[ci], pure=False), pure=False) for ci in parts]
        root = _tree(client, tri, merge_triangles, sizes)
        R = root.result()
        del root, tri
        self._count(to_client=payload_bytes(R), between=sum(client.gather(sizes)))
        out, basis = {}, {}
        for key, n in wanted.items():
            _, sv, Vt = np.linalg.svd(unpacked(R[key][0]), full_matrices=False)
            k, certain = cur_rank(sv, n)
            if certain:
                basis[key] = (sv, Vt[:k], k)
            else:
                out[key] = None
                log.info("CUR term %d species %d: a singular value is within rounding of the "
                         "rank cut; fetching its candidates to choose as the serial fit",
                         *key)
        if basis:
            basis_f = _put(client, basis)
            self._count(from_client=payload_bytes(basis),
                        between=payload_bytes(basis) * max(_n_workers(client) - 1, 0))
            n_top = {key: wanted[key] for key in basis}
            sizes = []
            tops = [client.submit(member_cur_keys, self.held[ci], which_f[ci], basis_f, n_top,
                                  pure=False) for ci in parts]
            root = _tree(client, tops, merge_top, sizes)
            top = root.result()
            del root, tops
            self._count(to_client=payload_bytes(top), between=sum(client.gather(sizes)))
            for key in basis:
                draws, keys, err, rest, n = top[key]
                sel, certain = top_certain(keys, err, n, rest)
                if certain:
                    out[key] = np.sort([pos_of[key][d] for d in draws[sel].tolist()])
                else:
                    out[key] = None
                    log.info("CUR term %d species %d: two keys at the cut are within rounding; "
                             "fetching its candidates to choose as the serial fit", *key)
        return out


def _first(which):
    """{key: draws} of {key: (draws, u)}."""
    return {key: v[0] for key, v in which.items()}


def _rows(model, prep, client, skip, progress_every, folds=None, evaluation=False):
    """Distributed design rows → {key: (R, n_rows)} merged in chunk order."""
    light = _put(client, _light(model))
    fold_parts = ([None] * len(prep.chunks) if folds is None
                  else [folds[c.start:c.start + c.count] for c in prep.chunks])
    futs = [client.submit(rows_chunk, c, d, light, s, f, evaluation, prep.first_index,
                          pure=False)
            for c, d, s, f in zip(prep.chunks, prep.data, prep.skips(skip), fold_parts)]
    root = _tree(client, futs, merge_triangles)
    sizes = prep.chunk_rows(skip)
    _watch(futs, sizes, _Progress("design rows", int(np.sum(~skip)),
                                  int(sum(r for _, r in sizes)), progress_every), release=True)
    return root.result()


def _accumulators(res, M, block_rows, kinds=TYPES):
    """StreamingQR accumulators holding merged chunk triangles {type: acc}."""
    out = {}
    for t in kinds:
        acc = StreamingQR(M, block_rows)
        if t in res:
            R, n = res[t]
            acc.R = np.ascontiguousarray(unpacked(R))
            acc.n_rows = int(n)
        out[t] = acc
    return out


def prepare(model, frames, client, chunk_frames=None, candidates_per_chunk=None,
            progress_every=10.0, candidates=None):
    """The Dask counterpart of :meth:`SparseGPR._prepare`: e0, terms, sparse points, U.

    Returns (prep, fit mask) for the rows pass; ``prep.phases`` has the wall seconds of
    each step."""
    t0 = time.perf_counter()
    prep = _Prepared(model, frames, client, chunk_frames)
    t1 = time.perf_counter()
    meta = prep.scan(model, client, progress_every)
    t2 = time.perf_counter()
    species = (SpeciesMap(meta["numbers"]) if model.descriptor is None
               else model._soaps()[0].species)
    iso = meta["isolated"]
    iso_energy = {}
    for k in np.flatnonzero(iso):
        iso_energy[meta["isolated_symbol"][k]] = float(meta["energy"][k])
    comp = None
    if model.e0 == "lstsq":
        cols = [int(np.flatnonzero(meta["numbers"] == z)[0]) if z in meta["numbers"] else -1
                for z in species.numbers]
        comp = np.array([[row[c] if c >= 0 else 0 for c in cols]
                         for row in meta["counts"][~iso]], dtype=float)
    model.e0_ = model._e0_from_summary(meta["energy"][~iso], meta["n_atoms"][~iso], comp,
                                       iso_energy, species)
    if iso.all():
        raise ValueError("no training frames besides isolated atoms")
    model.terms_ = model._make_terms(species)
    model.species_ = model.terms_[0].descriptor.species
    if model.n_features is not None:    # feature selection reads a few frames on the client
        model._select_features(_FramesAt(prep), np.flatnonzero(~iso).tolist())
    _choose_sparse(model, prep, client, iso, candidates, candidates_per_chunk, progress_every)
    model.U_ = model._kmm_factor()
    prep.phases = {"index_s": t1 - t0, "scan_s": t2 - t1, "sparse_s": time.perf_counter() - t2,
                   "select_s": prep.select_s}
    return prep, ~iso


def fit_distributed(model, frames, client, chunk_frames=None, candidates_per_chunk=None,
                    progress_every=10.0, candidates=None):
    """:meth:`SparseGPR.fit` on a Dask cluster (see the module docstring)."""
    t_start = time.perf_counter()
    prep, use = prepare(model, frames, client, chunk_frames, candidates_per_chunk,
                        progress_every, candidates)
    t0 = time.perf_counter()
    res = _rows(model, prep, client, ~use, progress_every)
    t1 = time.perf_counter()
    accs = _accumulators(res, model.M_, model.block_rows)
    triangles = [accs[t].triangle() for t in TYPES]
    meta = prep.meta
    model._finish_fit(triangles, {t: accs[t].n_rows for t in TYPES},
                      n_frames=int(use.sum()), n_isolated=int((~use).sum()),
                      n_atoms=int(meta["n_atoms"][use].sum()),
                      config_types={meta["config_type"][k] for k in np.flatnonzero(use)},
                      t_start=t_start)
    phases = dict(prep.phases, rows_s=t1 - t0, solve_s=time.perf_counter() - t1)
    model.training_summary_["dask"] = {"chunks": len(prep.chunks),
                                       "workers": _n_workers(client),
                                       "phases": {k: round(v, 3) for k, v in phases.items()},
                                       "candidates": prep.candidates,
                                       "sparse_traffic": prep.traffic}
    return model


def update_distributed(model, frames, client, new_sparse=None, chunk_frames=None,
                       progress_every=60.0):
    """:meth:`SparseGPR.update` with the new frames' rows made on a Dask cluster."""
    start = int(model.training_summary_.get("n_frames", 0))
    prep = _Prepared(model, frames, client, chunk_frames, first_index=start, m_guess=model.M_)
    meta = prep.scan(model, client, progress_every)
    added = model.extend_sparse(new_sparse) if new_sparse else 0
    skip = np.zeros(prep.source.n_frames, dtype=bool)
    res = _rows(model, prep, client, skip, progress_every)
    model._finish_update(_accumulators(res, model.M_, model.block_rows),
                         prep.source.n_frames, int(meta["n_atoms"].sum()))
    return added


def fold_triangles(model, frames, client, folds_of, chunk_frames=None, progress_every=10.0,
                   candidates=None):
    """Cross-validation data on a Dask cluster: prepare ``model`` and return
    (tri {fold: {type: (M+1, M+1)}}, nrows {fold: {type: n}}, fit indices), the folds
    from ``folds_of(fit_indices, n_frames)`` (fold id per frame, −1 = unused), in the
    order :meth:`SparseGPR._accumulate` makes them (first appearance in frame order)."""
    prep, use = prepare(model, frames, client, chunk_frames, progress_every=progress_every,
                        candidates=candidates)
    idx = np.flatnonzero(use)
    folds = folds_of(idx, prep.source.n_frames)
    res = _rows(model, prep, client, ~use, progress_every, folds=folds, evaluation=True)
    order = list(dict.fromkeys(int(folds[k]) for k in idx))
    tri, nrows = {}, {}
    M = model.M_
    for f in order:
        tri[f], nrows[f] = {}, {}
        for t in TYPES + EVAL_TYPES:
            R, n = res.get((f, t), (np.zeros((0, M + 1)), 0))
            tri[f][t] = full_triangle(R)
            nrows[f][t] = int(n)
    return tri, nrows, idx


def map_ordered(client, func, items, *args):
    """[func(item, *args) for item in items] on the cluster, results in order; shared
    arguments travel once."""
    shared = [_put(client, a) for a in args]
    futs = [client.submit(func, it, *shared, pure=False) for it in items]
    return client.gather(futs)


def species(frames, client, chunk_frames=64) -> np.ndarray:
    """Atomic numbers present in extxyz file(s) (or frames), read on the cluster."""
    source = FrameSource(frames)
    chunks = source.chunks(chunk_frames=chunk_frames)
    data = ([None] * len(chunks) if source.frames is None
            else [source.load(c) for c in chunks])
    futs = [client.submit(species_chunk, c, d, pure=False) for c, d in zip(chunks, data)]
    return np.unique(np.concatenate(client.gather(futs)))


def worker_peak_rss_mb(client) -> dict:
    """Peak resident memory (MB) of every worker process so far."""
    def peak():
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return client.run(peak)
