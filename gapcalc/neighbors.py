"""Periodic neighbour lists with cell lists (linked bins), O(N).

The public entry point is :func:`neighbor_list`, which returns a
:class:`NeighborList` in compressed-sparse-row (CSR) layout: the neighbours of
atom ``i`` are the entries ``first[i]:first[i + 1]`` of ``index``, ``vectors``,
``shifts`` and ``distances``.

Conventions (all lengths in Å)
------------------------------
* ``positions``: float (n_atoms, 3), Cartesian, need not lie inside the cell.
* ``cell``: float (3, 3), lattice vectors as *rows* (ASE convention).
* ``shifts[p]``: integer lattice image of atom ``index[p]`` relative to the
  positions *as passed in*, so that, for the pair ``p`` of centre ``i``::

      vectors[p] == positions[index[p]] + shifts[p] @ cell - positions[i]

  (the same convention as ``ase.neighborlist.neighbor_list('ijSD', ...)``).
* Every ordered pair ``(i, j, shift)`` with ``|r_ij| < cutoff`` is listed, both
  directions, including several periodic images of the same ``j`` and images of
  ``i`` itself when the cell is small compared with the cutoff.  Only
  ``j == i`` with a zero shift is excluded.

Algorithm
---------
Positions are converted to fractional coordinates of an *effective* cell in
which degenerate non-periodic lattice vectors (e.g. the zero cell of a
molecule) are replaced by unit vectors orthogonal to the periodic ones.  Along
a periodic axis the fractional coordinate is wrapped into [0, 1) (the integer
wrap is remembered so that shifts refer to the unwrapped input), and the cell
is cut into ``nb = max(1, floor(d / cutoff))`` slabs, ``d`` being the spacing of
the lattice planes.  A search of ``k = ceil(cutoff * nb / d)`` slabs on either
side is then exhaustive; a slab index ``b + o`` maps to the wrapped slab
``(b + o) mod nb`` and the lattice image ``(b + o) div nb``, so cells smaller
than the cutoff sphere automatically produce several images.  Along a
non-periodic axis the bins span the occupied fractional range.  Atoms are
counting-sorted into bins; two parallel passes over the atoms (count, then
fill the pre-allocated CSR arrays) make the result deterministic and
race-free.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba as nb
import numpy as np

__all__ = ["NeighborList", "neighbor_list", "update_vectors"]

# Relative tolerance used to decide whether a set of lattice vectors is
# (numerically) linearly dependent: smallest singular value of the matrix of
# *normalised* lattice vectors below this value means "degenerate".
_DEGENERATE_TOL = 1e-8
# Safety margin (in units of bins) added to the search half-width so that
# round-off in the fractional coordinates can never drop a pair.
_BIN_EPS = 1e-9
# Fractional coordinates larger than this cannot be wrapped reliably.
_MAX_WRAP = 2.0**40
# Refuse cutoff/cell combinations needing more neighbour-bin offsets per atom
# (i.e. absurdly many periodic images).
_MAX_OFFSETS = 10**7


class NeighborList(NamedTuple):
    """Neighbour list in CSR layout (lengths in Å).

    Attributes
    ----------
    first : int64 ndarray, shape (n_atoms + 1,)
        CSR offsets; the neighbours of atom ``i`` are ``first[i]:first[i+1]``.
    index : int64 ndarray, shape (n_pairs,)
        Neighbour atom ``j`` of each pair.
    vectors : float64 ndarray, shape (n_pairs, 3)
        ``r_ij = positions[j] + shifts @ cell - positions[i]`` in Å.
    shifts : int64 ndarray, shape (n_pairs, 3)
        Integer lattice image of ``j`` relative to the input positions.
    distances : float64 ndarray, shape (n_pairs,)
        ``|r_ij|`` in Å, all strictly below the cutoff used to build the list.
    """

    first: np.ndarray
    index: np.ndarray
    vectors: np.ndarray
    shifts: np.ndarray
    distances: np.ndarray

    @property
    def n_atoms(self) -> int:
        """Number of centre atoms."""
        return len(self.first) - 1

    @property
    def n_pairs(self) -> int:
        """Total number of (ordered) pairs."""
        return len(self.index)

    @property
    def centers(self) -> np.ndarray:
        """int64 (n_pairs,): centre atom ``i`` of each pair."""
        return np.repeat(np.arange(self.n_atoms, dtype=np.int64), np.diff(self.first))


# --------------------------------------------------------------------------
# Numba kernels
# --------------------------------------------------------------------------
@nb.njit(cache=True)
def _scan_atom(i, pos, cell, nwrap, abin, nbins, kmax, wtab, mtab,
               bin_start, spos, sidx, maxocc, screen2, cut2,
               fill, out, index, shifts, vectors, distances):
    """Visit all candidate neighbours of atom ``i``; return how many are
    within the cutoff.  If ``fill`` is true, also write them from ``out`` on.

    Candidates of each bin are screened branch-free with the wrapped,
    bin-sorted positions ``spos`` (plus the lattice translation of the bin
    offset) against a slightly enlarged radius ``screen2`` (squared) and
    compacted into a small buffer (``maxocc`` = largest bin occupancy);
    survivors are then evaluated exactly from the input positions with their
    integer shift and kept if ``d2 <= cut2``, where ``cut2`` is chosen such
    that this is equivalent to ``sqrt(d2) < cutoff``."""
    nb1 = nbins[1]
    nb2 = nbins[2]
    k0 = kmax[0]
    k1 = kmax[1]
    k2 = kmax[2]
    px = pos[i, 0]
    py = pos[i, 1]
    pz = pos[i, 2]
    # wrapped position of i, with the same rounding as the entries of spos
    wi0 = float(nwrap[i, 0])
    wi1 = float(nwrap[i, 1])
    wi2 = float(nwrap[i, 2])
    wx = px - (wi0 * cell[0, 0] + wi1 * cell[1, 0] + wi2 * cell[2, 0])
    wy = py - (wi0 * cell[0, 1] + wi1 * cell[1, 1] + wi2 * cell[2, 1])
    wz = pz - (wi0 * cell[0, 2] + wi1 * cell[1, 2] + wi2 * cell[2, 2])
    ni0 = nwrap[i, 0]
    ni1 = nwrap[i, 1]
    ni2 = nwrap[i, 2]
    cnt = 0
    buf = np.empty(maxocc, dtype=np.int64)
    # bin b + o along axis a -> wrapped bin wtab[a, b + o + k_a] (-1: outside
    # a non-periodic range) and lattice image mtab[a, b + o + k_a]
    for u0 in range(abin[i, 0], abin[i, 0] + 2 * k0 + 1):
        w0 = wtab[0, u0]
        if w0 < 0:
            continue
        m0 = mtab[0, u0]
        for u1 in range(abin[i, 1], abin[i, 1] + 2 * k1 + 1):
            w1 = wtab[1, u1]
            if w1 < 0:
                continue
            m1 = mtab[1, u1]
            for u2 in range(abin[i, 2], abin[i, 2] + 2 * k2 + 1):
                w2 = wtab[2, u2]
                if w2 < 0:
                    continue
                m2 = mtab[2, u2]
                b = (w0 * nb1 + w1) * nb2 + w2
                g0 = float(m0)
                g1 = float(m1)
                g2 = float(m2)
                # image translation minus wrapped position of i
                cx = g0 * cell[0, 0] + g1 * cell[1, 0] + g2 * cell[2, 0] - wx
                cy = g0 * cell[0, 1] + g1 * cell[1, 1] + g2 * cell[2, 1] - wy
                cz = g0 * cell[0, 2] + g1 * cell[1, 2] + g2 * cell[2, 2] - wz
                nc = 0
                for q in range(bin_start[b], bin_start[b + 1]):
                    ex = spos[q, 0] + cx
                    ey = spos[q, 1] + cy
                    ez = spos[q, 2] + cz
                    buf[nc] = q
                    nc += ex * ex + ey * ey + ez * ez <= screen2
                for t in range(nc):
                    j = sidx[buf[t]]
                    a0 = m0 + ni0 - nwrap[j, 0]
                    a1 = m1 + ni1 - nwrap[j, 1]
                    a2 = m2 + ni2 - nwrap[j, 2]
                    if j == i and a0 == 0 and a1 == 0 and a2 == 0:
                        continue
                    f0 = float(a0)
                    f1 = float(a1)
                    f2 = float(a2)
                    dx = pos[j, 0] + (f0 * cell[0, 0] + f1 * cell[1, 0] + f2 * cell[2, 0]) - px
                    dy = pos[j, 1] + (f0 * cell[0, 1] + f1 * cell[1, 1] + f2 * cell[2, 1]) - py
                    dz = pos[j, 2] + (f0 * cell[0, 2] + f1 * cell[1, 2] + f2 * cell[2, 2]) - pz
                    d2 = dx * dx + dy * dy + dz * dz
                    if d2 > cut2:
                        continue
                    if fill:
                        p = out + cnt
                        index[p] = j
                        shifts[p, 0] = a0
                        shifts[p, 1] = a1
                        shifts[p, 2] = a2
                        vectors[p, 0] = dx
                        vectors[p, 1] = dy
                        vectors[p, 2] = dz
                        distances[p] = math.sqrt(d2)
                    cnt += 1
    return cnt


@nb.njit(cache=True)
def _bin_sort(pos, cell, periodic, nwrap, abin, nbins, kmax):
    """Counting-sort atoms into bins and build the bin-offset lookup tables.

    pos (n,3) float64 input positions (Å); cell (3,3) float64 original cell;
    periodic (3,) bool; nwrap (n,3) int64 lattice wrap of each atom (0 on
    non-periodic axes); abin (n,3) int64 bin of each atom; nbins, kmax (3,)
    int64 bins per axis and search half-width in bins.

    Returns bin_start (nbins_total+1,) CSR offsets of the bins; spos (n,3)
    wrapped positions in bin order (Å); sidx (n,) atom index of each spos
    row; wtab, mtab (3, L) wrapped bin and lattice image of bin ``u - k_a``
    along axis a (wtab = -1 outside a non-periodic range); maxocc, the
    largest bin occupancy.
    """
    n = pos.shape[0]
    nbt = nbins[0] * nbins[1] * nbins[2]
    # counting sort of atoms by bin (serial, O(n + nbt)); atoms keep their
    # input order inside a bin, which makes the output deterministic.
    bin_start = np.zeros(nbt + 1, dtype=np.int64)
    bid = np.empty(n, dtype=np.int64)
    for i in range(n):
        b = (abin[i, 0] * nbins[1] + abin[i, 1]) * nbins[2] + abin[i, 2]
        bid[i] = b
        bin_start[b + 1] += 1
    for b in range(nbt):
        bin_start[b + 1] += bin_start[b]
    fillp = bin_start[:-1].copy()
    sidx = np.empty(n, dtype=np.int64)
    spos = np.empty((n, 3), dtype=np.float64)
    for i in range(n):
        q = fillp[bid[i]]
        fillp[bid[i]] += 1
        sidx[q] = i
        w0 = float(nwrap[i, 0])
        w1 = float(nwrap[i, 1])
        w2 = float(nwrap[i, 2])
        for c in range(3):
            spos[q, c] = pos[i, c] - (w0 * cell[0, c] + w1 * cell[1, c] + w2 * cell[2, c])

    # lookup tables for neighbour-bin offsets (avoid integer divisions)
    ltab = 1
    for a in range(3):
        ltab = max(ltab, nbins[a] + 2 * kmax[a])
    wtab = np.full((3, ltab), -1, dtype=np.int64)
    mtab = np.zeros((3, ltab), dtype=np.int64)
    for a in range(3):
        for u in range(nbins[a] + 2 * kmax[a]):
            t = u - kmax[a]
            if periodic[a]:
                m = t // nbins[a]
                wtab[a, u] = t - m * nbins[a]
                mtab[a, u] = m
            elif t >= 0 and t < nbins[a]:
                wtab[a, u] = t

    maxocc = 1
    for b in range(nbt):
        maxocc = max(maxocc, bin_start[b + 1] - bin_start[b])
    return bin_start, spos, sidx, wtab, mtab, maxocc


@nb.njit(cache=True)
def _csr_arrays(counts):
    """CSR offsets ``first`` (n+1,) from per-atom pair counts, and the (uninitialised) pair
    arrays index, shifts (zero), vectors, distances that the searches fill."""
    n = counts.shape[0]
    first = np.empty(n + 1, dtype=np.int64)
    first[0] = 0
    for i in range(n):
        first[i + 1] = first[i] + counts[i]
    npairs = first[n]
    return (first, np.empty(npairs, dtype=np.int64), np.zeros((npairs, 3), dtype=np.int64),
            np.empty((npairs, 3), dtype=np.float64), np.empty(npairs, dtype=np.float64))


@nb.njit(cache=True, parallel=True)
def _search(pos, cell, nwrap, abin, nbins, kmax, bin_start, spos, sidx, wtab, mtab,
            maxocc, screen2, cut2):
    """Two parallel passes over the atoms: count the pairs of each atom, then
    fill the pre-allocated CSR arrays at the cumulative offsets.

    Arguments as for :func:`_bin_sort` and its results; screen2, cut2 are
    the squared screening radius and the exact squared cutoff (Å^2).
    Returns first, index, shifts, vectors, distances.
    """
    n = pos.shape[0]
    index = np.empty(0, dtype=np.int64)
    shifts = np.empty((0, 3), dtype=np.int64)
    vectors = np.empty((0, 3), dtype=np.float64)
    distances = np.empty(0, dtype=np.float64)

    counts = np.empty(n, dtype=np.int64)
    for i in nb.prange(n):
        counts[i] = _scan_atom(i, pos, cell, nwrap, abin, nbins, kmax, wtab, mtab,
                               bin_start, spos, sidx, maxocc, screen2, cut2,
                               False, 0, index, shifts, vectors, distances)
    first, index, shifts, vectors, distances = _csr_arrays(counts)
    for i in nb.prange(n):
        _scan_atom(i, pos, cell, nwrap, abin, nbins, kmax, wtab, mtab,
                   bin_start, spos, sidx, maxocc, screen2, cut2,
                   True, first[i], index, shifts, vectors, distances)
    return first, index, shifts, vectors, distances


# the same search without threads: for small systems, launching the parallel
# region costs more than the search itself
_search_serial = nb.njit(cache=True)(_search.py_func)

_SMALL = 512          # atoms: below this the serial search is used
_BRUTE = 48           # atoms: molecules below this use the all-pairs search


@nb.njit(cache=True)
def _all_pairs(pos, cut2):
    """O(n²) neighbour search for small non-periodic systems (same output layout)."""
    n = pos.shape[0]
    counts = np.zeros(n, dtype=np.int64)
    for i in range(n):
        for j in range(n):
            if j != i:
                dx = pos[j, 0] - pos[i, 0]
                dy = pos[j, 1] - pos[i, 1]
                dz = pos[j, 2] - pos[i, 2]
                if dx * dx + dy * dy + dz * dz <= cut2:
                    counts[i] += 1
    first, index, shifts, vectors, distances = _csr_arrays(counts)
    for i in range(n):
        q = first[i]
        for j in range(n):
            if j != i:
                dx = pos[j, 0] - pos[i, 0]
                dy = pos[j, 1] - pos[i, 1]
                dz = pos[j, 2] - pos[i, 2]
                d2 = dx * dx + dy * dy + dz * dz
                if d2 <= cut2:
                    index[q] = j
                    vectors[q, 0] = dx
                    vectors[q, 1] = dy
                    vectors[q, 2] = dz
                    distances[q] = math.sqrt(d2)
                    q += 1
    return first, index, shifts, vectors, distances


def _exact_cut2(cutoff):
    """Largest float c2 with sqrt(c2) < cutoff: d2 <= c2 <=> |d| < cutoff exactly."""
    cut2 = cutoff * cutoff
    while math.sqrt(cut2) >= cutoff:
        cut2 = math.nextafter(cut2, 0.0)
    while math.sqrt(math.nextafter(cut2, math.inf)) < cutoff:
        cut2 = math.nextafter(cut2, math.inf)
    return cut2


@nb.njit(cache=True)
def _update(first, index, shifts, pos, cell):
    """vectors (P,3) and distances (P,) from stored index/shifts (Å)."""
    n = first.shape[0] - 1
    npairs = index.shape[0]
    vectors = np.empty((npairs, 3), dtype=np.float64)
    distances = np.empty(npairs, dtype=np.float64)
    for i in range(n):
        px = pos[i, 0]
        py = pos[i, 1]
        pz = pos[i, 2]
        for p in range(first[i], first[i + 1]):
            j = index[p]
            f0 = float(shifts[p, 0])
            f1 = float(shifts[p, 1])
            f2 = float(shifts[p, 2])
            dx = pos[j, 0] + (f0 * cell[0, 0] + f1 * cell[1, 0] + f2 * cell[2, 0]) - px
            dy = pos[j, 1] + (f0 * cell[0, 1] + f1 * cell[1, 1] + f2 * cell[2, 1]) - py
            dz = pos[j, 2] + (f0 * cell[0, 2] + f1 * cell[1, 2] + f2 * cell[2, 2]) - pz
            vectors[p, 0] = dx
            vectors[p, 1] = dy
            vectors[p, 2] = dz
            distances[p] = math.sqrt(dx * dx + dy * dy + dz * dz)
    return vectors, distances


# --------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------
def _as_positions(positions):
    pos = np.ascontiguousarray(np.asarray(positions, dtype=np.float64))
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"positions must have shape (n_atoms, 3), got {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise ValueError("positions contain non-finite values (nan or inf)")
    return pos


def _as_cell(cell):
    c = np.asarray(cell if cell is not None else np.zeros((3, 3)), dtype=np.float64)
    if c.shape == (3,):
        c = np.diag(c)
    if c.shape != (3, 3):
        raise ValueError(f"cell must have shape (3, 3) (or (3,) for an orthorhombic cell), got {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("cell contains non-finite values (nan or inf)")
    return np.ascontiguousarray(c)


def _as_pbc(pbc):
    p = np.asarray(pbc, dtype=bool)
    if p.ndim == 0:
        p = np.repeat(p, 3)
    if p.shape != (3,):
        raise ValueError(f"pbc must be a bool or a sequence of 3 bools, got shape {p.shape}")
    return np.ascontiguousarray(p)


def _min_normalised_singular(vectors):
    """Smallest singular value of the row-normalised vectors (0 if any is 0)."""
    norms = np.linalg.norm(vectors, axis=1)
    if np.any(norms == 0.0):
        return 0.0
    return float(np.linalg.svd(vectors / norms[:, None], compute_uv=False)[-1])


def _effective_cell(cell, pbc):
    """Cell used for binning: the input cell, with degenerate non-periodic
    lattice vectors replaced by orthonormal vectors spanning the complement of
    the periodic ones.  Raises ValueError if the periodic vectors are singular."""
    per = np.flatnonzero(pbc)
    if len(per) > 0 and _min_normalised_singular(cell[per]) < _DEGENERATE_TOL:
        raise ValueError(
            "singular cell along the periodic directions: lattice vectors "
            f"{[int(a) for a in per]} are zero or linearly dependent (zero volume) "
            f"while pbc={pbc.tolist()}"
        )
    if _min_normalised_singular(cell) >= _DEGENERATE_TOL:
        return cell.copy()
    eff = cell.copy()
    nonper = np.flatnonzero(~pbc)
    if len(per) == 0:
        eff[:] = np.eye(3)
    else:
        # right singular vectors beyond the rank span the orthogonal complement
        _, _, vt = np.linalg.svd(cell[per])
        comp = vt[len(per):]
        for a, v in zip(nonper, comp):
            eff[a] = v
    return eff


def _cross_rows(c):
    """(3,3): row a is c[a+1] x c[a+2] (indices mod 3)."""
    b, d = c[[1, 2, 0]], c[[2, 0, 1]]
    return np.stack([b[:, 1] * d[:, 2] - b[:, 2] * d[:, 1],
                     b[:, 2] * d[:, 0] - b[:, 0] * d[:, 2],
                     b[:, 0] * d[:, 1] - b[:, 1] * d[:, 0]], axis=1)


def _empty(n):
    return NeighborList(
        first=np.zeros(n + 1, dtype=np.int64),
        index=np.zeros(0, dtype=np.int64),
        vectors=np.zeros((0, 3), dtype=np.float64),
        shifts=np.zeros((0, 3), dtype=np.int64),
        distances=np.zeros(0, dtype=np.float64),
    )


def neighbor_list(positions, cell, pbc, cutoff):
    """Return NeighborList for all pairs i->j with |r_ij| < cutoff (Å).

    Parameters
    ----------
    positions : array_like, shape (n_atoms, 3)
        Cartesian positions in Å; atoms may lie outside the cell.
    cell : array_like, shape (3, 3)
        Lattice vectors as rows in Å (``ase.Atoms.cell`` works).  May be zero
        or degenerate along non-periodic directions.  A (3,) array is taken as
        an orthorhombic cell.
    pbc : bool or array_like of 3 bools
        Periodicity along each lattice vector.
    cutoff : float
        Cutoff radius in Å (> 0); pairs with ``|r_ij| < cutoff`` are kept.

    Returns
    -------
    NeighborList
        CSR neighbour list (see :class:`NeighborList`).  Every ordered pair
        ``(i, j, shift)`` is included (both directions, all periodic images,
        self-images ``j == i`` with non-zero shift); ``vectors ==
        positions[index] + shifts @ cell - positions[i]``.  The order of the
        neighbours of each centre is deterministic but unspecified.

    Raises
    ------
    ValueError
        For malformed shapes, non-finite positions or cell, ``cutoff <= 0``
        or a singular cell along periodic directions.
    """
    pos = _as_positions(positions)
    cell = _as_cell(cell)
    pbc = _as_pbc(pbc)
    cutoff = float(cutoff)
    if not math.isfinite(cutoff) or cutoff <= 0.0:
        raise ValueError(f"cutoff must be a positive finite number (Å), got {cutoff}")
    n = pos.shape[0]
    if not pbc.any() and 0 < n <= _BRUTE:
        first, index, shifts, vectors, distances = _all_pairs(pos, _exact_cut2(cutoff))
        return NeighborList(first=first, index=index, vectors=vectors, shifts=shifts,
                            distances=distances)
    eff = _effective_cell(cell, pbc)
    if n == 0:
        return _empty(0)

    # fractional coordinates and plane spacings d_a = V / |b x c| of the
    # effective cell (Å per unit fractional coordinate)
    frac = pos @ np.linalg.inv(eff)
    volume = abs(np.linalg.det(eff))
    spacing = volume / np.sqrt(np.sum(_cross_rows(eff) ** 2, axis=1))

    nwrap = np.zeros((n, 3), dtype=np.int64)
    lo = np.zeros(3)
    width = np.ones(3)  # fractional extent binned along each axis
    for a in range(3):
        s = frac[:, a]
        if pbc[a]:
            fl = np.floor(s)
            if np.max(np.abs(fl)) > _MAX_WRAP:
                raise ValueError("positions are too far outside the periodic cell to be wrapped")
            s = s - fl
            over = s >= 1.0  # round-off of s - floor(s) for tiny negative s
            s[over] -= 1.0
            fl[over] += 1.0
            frac[:, a] = s
            nwrap[:, a] = fl.astype(np.int64)
        else:
            lo[a] = s.min()
            width[a] = s.max() - lo[a]
    extent = width * spacing  # Å along the normal of each lattice-plane family
    # cap the number of (mostly empty) bins, e.g. for dilute or vacuum systems
    max_bins = 4 * n + 64
    nbins = [int(x) for x in np.clip(np.floor(extent / cutoff), 1, max_bins)]
    while math.prod(nbins) > max_bins:
        a = int(np.argmax(nbins))
        nbins[a] = max(1, int(nbins[a] * 0.75))

    kmax = [0, 0, 0]
    abin = np.zeros((n, 3), dtype=np.int64)
    for a in range(3):
        if pbc[a]:
            x = min(cutoff * nbins[a] / spacing[a], _MAX_OFFSETS)  # (error below)
            kmax[a] = int(math.ceil(x + _BIN_EPS))
            scaled = frac[:, a] * nbins[a]
        else:
            if nbins[a] == 1:
                continue  # single bin, no search needed along this axis
            x = cutoff * nbins[a] / extent[a]
            kmax[a] = min(int(math.ceil(x + _BIN_EPS)), nbins[a] - 1)
            scaled = (frac[:, a] - lo[a]) * (nbins[a] / width[a])
        abin[:, a] = np.clip(np.floor(scaled), 0, nbins[a] - 1).astype(np.int64)
    n_offsets = math.prod(2 * k + 1 for k in kmax)
    if n_offsets > _MAX_OFFSETS:
        raise ValueError(
            f"cutoff {cutoff} Å is too large for this cell (plane spacings "
            f"{np.round(spacing, 4).tolist()} Å): {n_offsets} bin offsets per atom "
            "would be searched"
        )
    nbins = np.array(nbins, dtype=np.int64)
    kmax = np.array(kmax, dtype=np.int64)

    # exact acceptance d2 <= cut2  <=>  sqrt(d2) < cutoff (sqrt is correctly
    # rounded and monotonic), so the distances are strictly below the cutoff
    cut2 = _exact_cut2(cutoff)
    # screening radius for the wrapped coordinates, with a margin for the
    # round-off of wrapping and of the image translations
    scale = np.abs(pos).max() + np.abs(cell).sum() * (np.abs(nwrap).max() + kmax.max() + 1)
    screen = cutoff * (1.0 + 1e-6) + 1e-12 * scale
    tables = _bin_sort(pos, cell, pbc, nwrap, abin, nbins, kmax)
    search = _search_serial if n < _SMALL else _search
    first, index, shifts, vectors, distances = search(
        pos, cell, nwrap, abin, nbins, kmax, *tables, screen * screen, cut2
    )
    return NeighborList(first=first, index=index, vectors=vectors, shifts=shifts,
                        distances=distances)


def update_vectors(nl, positions, cell):
    """Recompute pair vectors and distances for new positions/cell.

    Uses the stored ``nl.first``, ``nl.index`` and ``nl.shifts`` (no new
    search), e.g. to reuse a list built with ``cutoff + skin`` while atoms
    move less than ``skin / 2``.

    Parameters
    ----------
    nl : NeighborList
    positions : array_like, shape (n_atoms, 3)
        New Cartesian positions in Å (same atoms, same order, *not* re-wrapped).
    cell : array_like, shape (3, 3)
        New cell (Å), rows are lattice vectors.

    Returns
    -------
    vectors : float64 ndarray, shape (n_pairs, 3)
        ``positions[j] + shifts @ cell - positions[i]`` in Å.
    distances : float64 ndarray, shape (n_pairs,)
        Their norms in Å (may now exceed the original cutoff).
    """
    pos = _as_positions(positions)
    cell = _as_cell(cell)
    first = np.ascontiguousarray(nl.first, dtype=np.int64)
    if pos.shape[0] != first.shape[0] - 1:
        raise ValueError(
            f"positions has {pos.shape[0]} atoms but the neighbour list has {first.shape[0] - 1}"
        )
    return _update(first, np.ascontiguousarray(nl.index, dtype=np.int64),
                   np.ascontiguousarray(nl.shifts, dtype=np.int64), pos, cell)
