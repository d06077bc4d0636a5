"""Numba kernels of the LAMMPS coupling: neighbour pairs of an open cluster of owned +
ghost atoms, their vectors between rebuilds, and the bookkeeping that returns what lands
on ghost atoms to the atoms that own them.

Conventions: ``x`` (n_all, 3) Å, owned atoms 0..n_centres-1 first, ghosts after (LAMMPS
order). Pairs are in CSR order by centre: centre i owns ``first[i]:first[i+1]``,
``index[k]`` in 0..n_all-1 is the neighbour, ``vectors[k] = x[index[k]] − x[i]`` (Å).
No periodic images are formed here: LAMMPS' ghosts already are the images.
"""
from __future__ import annotations

import numpy as np
from numba import njit

# most bins per atom of the cluster (caps memory when the atoms are sparse in their box)
_BINS_PER_ATOM = 4


@njit(cache=True)
def _bin_atoms(x, cutoff):
    """Counting sort of the atoms into cubic-ish bins of side ≥ ``cutoff`` (Å) over the
    bounding box of ``x``: (bin of every atom (n,), atoms sorted by bin (n,), bin starts
    (nbins+1,), bins per axis (3,)); bins are made larger when there would be more than
    ``_BINS_PER_ATOM`` per atom."""
    n = x.shape[0]
    lo = np.empty(3)
    hi = np.empty(3)
    for a in range(3):
        lo[a] = x[0, a]
        hi[a] = x[0, a]
    for i in range(1, n):
        for a in range(3):
            v = x[i, a]
            if v < lo[a]:
                lo[a] = v
            if v > hi[a]:
                hi[a] = v
    side = np.empty(3)
    nb = np.empty(3, dtype=np.int64)
    scale = 1.0
    while True:
        total = 1
        for a in range(3):
            ext = hi[a] - lo[a]
            k = int(ext / (cutoff * scale))
            nb[a] = max(1, k)
            side[a] = max(cutoff * scale, ext / nb[a]) if k >= 1 else cutoff * scale
            total *= nb[a]
        if total <= _BINS_PER_ATOM * n + 27:
            break
        scale *= 1.26
    nbins = nb[0] * nb[1] * nb[2]
    atom_bin = np.empty(n, dtype=np.int64)
    counts = np.zeros(nbins + 1, dtype=np.int64)
    for i in range(n):
        b = 0
        for a in range(3):
            c = int((x[i, a] - lo[a]) / side[a])
            if c >= nb[a]:
                c = nb[a] - 1
            elif c < 0:
                c = 0
            b = b * nb[a] + c
        atom_bin[i] = b
        counts[b + 1] += 1
    for b in range(nbins):
        counts[b + 1] += counts[b]
    fill = counts[:-1].copy()
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        b = atom_bin[i]
        order[fill[b]] = i
        fill[b] += 1
    return atom_bin, order, counts, nb


@njit(cache=True)
def _scan_centre(i, x, cut2, atom_bin, order, bin_start, nb, index, vectors, k0, store):
    """Neighbours of centre ``i`` among all atoms (27 bins around its bin); writes them
    from slot ``k0`` when ``store``; returns how many there are."""
    b = atom_bin[i]
    bz = b % nb[2]
    by = (b // nb[2]) % nb[1]
    bx = b // (nb[2] * nb[1])
    k = k0
    for ox in range(max(bx - 1, 0), min(bx + 2, nb[0])):
        for oy in range(max(by - 1, 0), min(by + 2, nb[1])):
            for oz in range(max(bz - 1, 0), min(bz + 2, nb[2])):
                ob = (ox * nb[1] + oy) * nb[2] + oz
                for s in range(bin_start[ob], bin_start[ob + 1]):
                    j = order[s]
                    if j == i:
                        continue
                    d0 = x[j, 0] - x[i, 0]
                    d1 = x[j, 1] - x[i, 1]
                    d2 = x[j, 2] - x[i, 2]
                    if d0 * d0 + d1 * d1 + d2 * d2 < cut2:
                        if store:
                            index[k] = j
                            vectors[k, 0] = d0
                            vectors[k, 1] = d1
                            vectors[k, 2] = d2
                        k += 1
    return k - k0


@njit(cache=True)
def cluster_pairs(x, n_centres, cutoff):
    """Every pair (i, j), i < n_centres, j ≠ i any atom of ``x``, with |x_j − x_i| < cutoff.

    x : (n_all, 3) Å, centres first. Returns first (n_centres+1,) int64, index (n_pairs,)
    int64 and vectors (n_pairs, 3) Å in CSR order by centre, neighbours of a centre in
    bin order (deterministic for a given input order). O(n_all) with bins of side ≥ cutoff.
    """
    n = x.shape[0]
    first = np.zeros(n_centres + 1, dtype=np.int64)
    if n == 0 or n_centres == 0:
        return first, np.zeros(0, dtype=np.int64), np.zeros((0, 3))
    atom_bin, order, bin_start, nb = _bin_atoms(x, cutoff)
    cut2 = cutoff * cutoff
    dummy_i = np.zeros(0, dtype=np.int64)
    dummy_v = np.zeros((0, 3))
    for i in range(n_centres):
        first[i + 1] = first[i] + _scan_centre(i, x, cut2, atom_bin, order, bin_start, nb,
                                               dummy_i, dummy_v, 0, False)
    index = np.empty(first[n_centres], dtype=np.int64)
    vectors = np.empty((first[n_centres], 3))
    for i in range(n_centres):
        _scan_centre(i, x, cut2, atom_bin, order, bin_start, nb, index, vectors, first[i], True)
    return first, index, vectors


@njit(cache=True)
def update_pair_vectors(x, first, index, vectors):
    """vectors[k] = x[index[k]] − x[i] (Å) for every pair k of centre i, in place;
    returns the smallest squared pair length (Å², inf without pairs)."""
    r2min = np.inf
    for i in range(first.shape[0] - 1):
        for k in range(first[i], first[i + 1]):
            j = index[k]
            r2 = 0.0
            for a in range(3):
                d = x[j, a] - x[i, a]
                vectors[k, a] = d
                r2 += d * d
            if r2 < r2min:
                r2min = r2
    return r2min


@njit(cache=True)
def max_displacement(x, x_ref):
    """Largest |x_i − x_ref_i| (Å) over the atoms of both (n, 3) arrays."""
    m = 0.0
    for i in range(x.shape[0]):
        d = 0.0
        for a in range(3):
            e = x[i, a] - x_ref[i, a]
            d += e * e
        if d > m:
            m = d
    return np.sqrt(m)


@njit(cache=True)
def add_rows(dest, dest_rows, src, src_rows):
    """dest[dest_rows[k]] += src[src_rows[k]] for every k (rows of width dest.shape[1])."""
    for k in range(dest_rows.shape[0]):
        d = dest_rows[k]
        s = src_rows[k]
        for a in range(dest.shape[1]):
            dest[d, a] += src[s, a]


@njit(cache=True)
def gather_rows(src, rows):
    """src[rows] as a new contiguous array (len(rows), src.shape[1])."""
    out = np.empty((rows.shape[0], src.shape[1]))
    for k in range(rows.shape[0]):
        for a in range(src.shape[1]):
            out[k, a] = src[rows[k], a]
    return out


@njit(cache=True)
def scatter_add_rows(dest, rows, src):
    """dest[rows[k]] += src[k] for every k."""
    for k in range(rows.shape[0]):
        d = rows[k]
        for a in range(dest.shape[1]):
            dest[d, a] += src[k, a]


@njit(cache=True)
def per_atom_virials(first, index, vectors, pair_grad, n_all):
    """LAMMPS per-atom virials (n_all, 6) eV, order xx yy zz xy xz yz: each pair term's
    −½(t⊗r + r⊗t)/2 goes half to its centre and half to its neighbour, so the rows sum to
    the global virial −sym(∂E/∂ε) (the symmetrised −Σ_k t_k ⊗ r_k)."""
    out = np.zeros((n_all, 6))
    for i in range(first.shape[0] - 1):
        for k in range(first[i], first[i + 1]):
            j = index[k]
            t0 = pair_grad[k, 0]
            t1 = pair_grad[k, 1]
            t2 = pair_grad[k, 2]
            r0 = vectors[k, 0]
            r1 = vectors[k, 1]
            r2 = vectors[k, 2]
            v0 = -0.5 * t0 * r0
            v1 = -0.5 * t1 * r1
            v2 = -0.5 * t2 * r2
            v3 = -0.25 * (t0 * r1 + t1 * r0)
            v4 = -0.25 * (t0 * r2 + t2 * r0)
            v5 = -0.25 * (t1 * r2 + t2 * r1)
            out[i, 0] += v0
            out[i, 1] += v1
            out[i, 2] += v2
            out[i, 3] += v3
            out[i, 4] += v4
            out[i, 5] += v5
            out[j, 0] += v0
            out[j, 1] += v1
            out[j, 2] += v2
            out[j, 3] += v3
            out[j, 4] += v4
            out[j, 5] += v5
    return out
