"""SOAP power spectrum (seed Eqs. 4, 8, 9) with exact position and strain gradients.

Per atom i and species α the smeared neighbour density (Eq. 4) is expanded as

    c^α_{nlm}(i) = w_c δ_{α,α_i} I_n0(0) Y_00 + Σ_{j∈α, r_ij<r_c} g_nl(r_ij) Y_lm(r̂_ij)       (Eq. 8)

with g_nl = f_c I_nl tabulated in :mod:`.radial` and w_c the centre-atom weight.
The power spectrum (Eq. 9, real harmonics) keeps the unique species pairs α ≤ α'
(and n ≤ n' when α = α'),

    p^{αα'}_{nn'l} = s (2l+1)^{-1/2} Σ_m c^α_{nlm} c^{α'}_{n'lm},   s = √2 for the folded
                                                                    off-diagonal blocks,

so that p·p' equals the dot product of the full (unfolded) spectra; it is then
normalised to unit length, p̂ = p/|p|.

Three Numba kernels do all the work and are shared by training and prediction:

* :func:`expansion`        neighbour list → c, shape (n_atoms, n_species, n_max, (l_max+1)²)
* :func:`power_spectrum_gradients`  forward mode: ∂p̂_i/∂r_j for every (i, j) and ∂p̂_i/∂ε
  (training: design-matrix force and virial rows)
* :func:`backward_pairs`   reverse mode: given w_i = ∂ε_i/∂p̂_i, the pair terms
  ∂ε_i/∂r_ij for every neighbour-list entry (prediction: forces and virial in
  O(pairs × n_max × (l_max+1)²), never forming ∂p/∂r).

Strain convention: positions and cell deform as r → (1+ε) r, so
∂p_i/∂ε_ab = Σ_j ∂p_i/∂r_ij,a r_ij,b. With E = Σ ε_i, ASE's stress is (1/V) ∂E/∂ε and
the gap_fit virial is −∂E/∂ε.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numba import get_num_threads, njit, prange

from ..neighbors import neighbor_list
from .radial import (QUIP_BASES, RADIAL_BASES, _hermite, radial_integral, radial_integral_ln,
                     radial_scaling_spec, radial_table, scale_table, transposed_table)
from .spherical import (harmonics_block, harmonics_contract_block, normalisation,
                        project_gradient, real_spherical_harmonics)
from .species import SpeciesMap


# --------------------------------------------------------------------------- kernels
# Prediction-path kernels work centre by centre on the centre's neighbours held in
# "slots": sorted by species, each species block padded to a multiple of PAD, with the
# neighbour index k contiguous in every per-pair array (radial values G[q, k],
# harmonics Y[lm, k]). Every inner loop then runs over neighbours: long, unit-stride
# and vectorised, instead of over n_max or 2l+1 elements per pair.
_FM = {'reassoc', 'contract'}
PAD = 8


def work_chunks(n_atoms: int) -> int:
    """Number of parallel work items (centre ranges) for the per-centre kernels."""
    return max(1, min(n_atoms, 4 * get_num_threads()))


@njit(cache=True, nogil=True)
def max_neighbours(first):
    """Largest number of neighbour-list entries of any centre."""
    m = 0
    for i in range(first.shape[0] - 1):
        m = max(m, first[i + 1] - first[i])
    return m


@njit(cache=True, nogil=True)
def _neighbour_slots(i, first, index, vectors, spec, n_species, sstart, ks, geo):
    """Lay out the neighbours of centre i in slots; returns the number of slots used.

    sstart (S+1,): species s owns slots [sstart[s], sstart[s+1]) (its count rounded up
    to a multiple of PAD).  ks[slot] : neighbour-list entry (−1 = padding).
    geo (5, slots) : |r_ij| (Å), 1/|r_ij|, and the unit vector (padding: 0, 0, (0, 0, 1))."""
    for s in range(n_species + 1):
        sstart[s] = 0
    for k in range(first[i], first[i + 1]):
        sstart[spec[index[k]] + 1] += 1
    for s in range(n_species):
        sstart[s + 1] = sstart[s] + (sstart[s + 1] + PAD - 1) // PAD * PAD
    ns = sstart[n_species]
    for q in range(ns):
        ks[q] = -1
        geo[0, q] = 0.0
        geo[1, q] = 0.0
        geo[2, q] = 0.0
        geo[3, q] = 0.0
        geo[4, q] = 1.0
    for k in range(first[i], first[i + 1]):
        s = spec[index[k]]
        q = sstart[s]
        while ks[q] >= 0:          # next free slot of species s (blocks are short)
            q += 1
        ks[q] = k
        d = math.sqrt(vectors[k, 0] ** 2 + vectors[k, 1] ** 2 + vectors[k, 2] ** 2)
        inv = 1.0 / d
        geo[0, q] = d
        geo[1, q] = inv
        geo[2, q] = vectors[k, 0] * inv
        geo[3, q] = vectors[k, 1] * inv
        geo[4, q] = vectors[k, 2] * inv
    return ns


@njit(cache=True, nogil=True)
def _slot_buffers(n_species, slots, W):
    """Per-thread slot arrays: sstart (S+1,), ks (slots,), geo (5, slots), G (W, slots)."""
    return (np.empty(n_species + 1, dtype=np.int64), np.empty(slots, dtype=np.int64),
            np.empty((5, slots)), np.empty((W, slots)))


@njit(cache=True, nogil=True, inline="always")
def _cosine_switch(d, fc_cut, fc_width):
    """(f_c, df_c/dd) of the cosine switch on [fc_cut − fc_width, fc_cut] (1, 0 below)."""
    if fc_width <= 0.0 or d <= fc_cut - fc_width:
        return 1.0, 0.0
    if d >= fc_cut:
        return 0.0, 0.0
    t = math.pi * (d - fc_cut + fc_width) / fc_width
    return 0.5 * (1.0 + math.cos(t)), -0.5 * math.pi / fc_width * math.sin(t)


@njit(cache=True, nogil=True, fastmath=_FM)
def _radial_block(ns, ks, geo, h, values_ln, derivs_ln, G, dG, g, dg, with_derivative,
                  fc_cut=0.0, fc_width=0.0):
    """G[q, k] = g_nl(|r_k|) (q = l·n_max + n, Eq. 8 radial part) and dG = d/d|r| when
    ``with_derivative``, by cubic-Hermite interpolation of the flat table
    (:func:`.radial.radial_integral_ln`); zero in padding slots. g, dg ((l_max+1)·n_max,)
    are scratch rows (value and derivative are interpolated as rows, then stored as
    columns: measured faster than two strided passes).
    fc_cut > 0: the table holds I_nl without the cutoff function (QUIP bases, for
    accuracy); f_c(d) of :func:`_cosine_switch` is applied here, per neighbour."""
    W = G.shape[0]
    for k in range(ns):
        if ks[k] < 0:
            for q in range(W):
                G[q, k] = 0.0
            if with_derivative:
                for q in range(W):
                    dG[q, k] = 0.0
            continue
        f = 1.0
        df = 0.0
        if fc_cut > 0.0:
            f, df = _cosine_switch(geo[0, k], fc_cut, fc_width)
        if with_derivative:
            radial_integral_ln(geo[0, k], h, values_ln, derivs_ln, g, dg, True)
            if f == 1.0 and df == 0.0:
                for q in range(W):
                    G[q, k] = g[q]
                for q in range(W):
                    dG[q, k] = dg[q]
            else:
                for q in range(W):
                    G[q, k] = f * g[q]
                for q in range(W):
                    dG[q, k] = f * dg[q] + df * g[q]
        else:
            j, h00, h10, h01, h11, _, _, _, _ = _hermite(geo[0, k], h)
            v0 = values_ln[j]
            v1 = values_ln[j + 1]
            m0 = derivs_ln[j]
            m1 = derivs_ln[j + 1]
            for q in range(W):
                G[q, k] = h00 * v0[q] + h10 * m0[q] + h01 * v1[q] + h11 * m1[q]
            if f != 1.0:
                for q in range(W):
                    G[q, k] *= f


@njit(cache=True, nogil=True, fastmath=_FM)
def _density_block(si, n_species, sstart, G, Y, centre, centre_weight, n_max, l_max, ci):
    """ci (S, n_max, L2): c^s_nlm = w_c δ_{s,si} I_n0(0) Y_00 + Σ_{k∈s} G[l·n_max+n, k] Y[lm, k]
    (Eq. 8), one contiguous dot product over the species' slots per coefficient.
    si < 0 puts the centre term into every species channel (QUIP's
    central_reference_all_species)."""
    for s in range(n_species):
        k0 = sstart[s]
        k1 = sstart[s + 1]
        for l in range(l_max + 1):
            for n in range(n_max):
                Gr = G[l * n_max + n, k0:k1]
                for lm in range(l * l, (l + 1) * (l + 1)):
                    Yr = Y[lm, k0:k1]
                    acc = 0.0
                    for k in range(k1 - k0):
                        acc += Yr[k] * Gr[k]
                    ci[s, n, lm] = acc
    y00 = 0.5 / math.sqrt(math.pi)
    for s in range(n_species):
        if si < 0 or s == si:
            for n in range(n_max):
                ci[s, n, 0] += centre_weight * centre[n] * y00


@njit(cache=True, nogil=True)
def _coefficients_by_lm(ci, cT):
    """cT[lm, a] = ci[a, lm]: one atom's coefficients ci (S·n_max, L2) with the flattened
    (species, n) index a = s·n_max + n fastest."""
    for a in range(ci.shape[0]):
        for lm in range(ci.shape[1]):
            cT[lm, a] = ci[a, lm]


@njit(cache=True, nogil=True, fastmath=_FM)
def _spectrum_from_coefficients(ci, cT, Gram, f_a1, f_a2, f_l, f_w, p_row):
    """One atom's power spectrum (Eq. 9) into p_row from ci (S·n_max, L2); returns |p|².

    The Gram matrices Gram_l[a, b] = Σ_m c[a, lm] c[b, lm] are built as sums of outer
    products of the rows of cT = ciᵀ (L2, S·n_max) (full rows: a vectorised innermost loop
    over b), then feature f = (a1, a2, l) takes w_f Gram_l[a1, a2].
    Scratch: cT (L2, S·n_max), Gram (l_max+1, S·n_max, S·n_max)."""
    W = ci.shape[0]
    _coefficients_by_lm(ci, cT)
    Gram[:] = 0.0
    for l in range(Gram.shape[0]):
        Gl = Gram[l]
        for lm in range(l * l, (l + 1) * (l + 1)):
            row = cT[lm]
            for a in range(W):
                va = row[a]
                Ga = Gl[a]
                for b in range(W):
                    Ga[b] += va * row[b]
    sq = 0.0
    for f in range(f_w.shape[0]):
        v = f_w[f] * Gram[f_l[f], f_a1[f], f_a2[f]]
        p_row[f] = v
        sq += v * v
    return sq


@njit(cache=True, nogil=True, fastmath=_FM)
def _compress_channels(mix, raw, out):
    """out[J] = Σ_s mix[J, s] raw[s] (Eq. 23: species channels projected on the elemental
    features J). mix (d_J, S); raw (S, n_max, L2); out (d_J, n_max, L2)."""
    for J in range(mix.shape[0]):
        oJ = out[J]
        oJ[:] = 0.0
        for s in range(mix.shape[1]):
            u = mix[J, s]
            if u == 0.0:
                continue
            rs = raw[s]
            for n in range(rs.shape[0]):
                for lm in range(rs.shape[1]):
                    oJ[n, lm] += u * rs[n, lm]


@njit(cache=True, nogil=True, fastmath=_FM)
def _expand_adjoint(mix, n_max, Gc_ch, Gc):
    """Gc[lm, s·n_max+n] = Σ_J mix[J, s] Gc_ch[lm, J·n_max+n]: the transpose of
    :func:`_compress_channels` applied to the coefficient adjoint."""
    Gc[:] = 0.0
    for lm in range(Gc.shape[0]):
        for J in range(mix.shape[0]):
            for s in range(mix.shape[1]):
                u = mix[J, s]
                if u == 0.0:
                    continue
                for n in range(n_max):
                    Gc[lm, s * n_max + n] += u * Gc_ch[lm, J * n_max + n]


@njit(cache=True, parallel=True, fastmath=_FM)
def _expand(first, index, vectors, spec, n_species, h, values_ln, derivs_ln, centre, l_max,
            norm, centre_weight, f_a1, f_a2, f_l, f_w, normalize, keep_c, with_p, n_chunks,
            mix, compress, centre_all=False, fc_cut=0.0, fc_width=0.0):
    """Shared driver of :func:`expansion`, :func:`expansion_spectrum`, :func:`features_fused`.

    With ``compress`` the species channels are projected by mix (d_J, S) before the
    spectrum and the kept c has d_J channels. ``centre_all``: the centre term goes into
    every species channel. fc_cut > 0: the cosine switch is applied per neighbour (QUIP
    bases' tables hold I_nl without it)."""
    n_atoms = first.shape[0] - 1
    n_max = values_ln.shape[1] // (l_max + 1)
    lp = l_max + 1
    L2 = lp * lp
    W = values_ln.shape[1]
    D = f_w.shape[0]
    slots = max_neighbours(first) + n_species * PAD
    n_ch = mix.shape[0] if compress else n_species
    c = np.empty((n_atoms if keep_c else 0, n_ch, n_max, L2))
    p = np.empty((n_atoms if with_p else 0, D))
    pnorm = np.empty(n_atoms if with_p else 0)
    for t in prange(n_chunks):
        sstart, ks, geo, G = _slot_buffers(n_species, slots, W)
        Y = np.empty((L2, slots))
        Q = np.empty((lp * lp, slots))
        C = np.empty((lp, slots))
        S = np.empty((lp, slots))
        g = np.empty(W)
        buf = np.empty((n_species, n_max, L2))
        cbuf = np.empty((n_ch, n_max, L2))
        cT = np.empty((L2, n_ch * n_max))
        Gram = np.empty((lp, n_ch * n_max, n_ch * n_max))
        for i in range(t * n_atoms // n_chunks, (t + 1) * n_atoms // n_chunks):
            ns = _neighbour_slots(i, first, index, vectors, spec, n_species, sstart, ks, geo)
            _radial_block(ns, ks, geo, h, values_ln, derivs_ln, G, G, g, g, False, fc_cut,
                          fc_width)
            harmonics_block(ns, geo[2], geo[3], geo[4], l_max, norm, Y, Q, C, S)
            si = -1 if centre_all else spec[i]
            if compress:
                _density_block(si, n_species, sstart, G, Y, centre, centre_weight, n_max,
                               l_max, buf)
                ci = c[i] if keep_c else cbuf
                _compress_channels(mix, buf, ci)
            else:
                ci = c[i] if keep_c else buf
                _density_block(si, n_species, sstart, G, Y, centre, centre_weight, n_max,
                               l_max, ci)
            if with_p:
                nrm = math.sqrt(_spectrum_from_coefficients(
                    ci.reshape((n_ch * n_max, L2)), cT, Gram, f_a1, f_a2, f_l, f_w, p[i]))
                pnorm[i] = nrm
                if normalize and nrm > 0.0:
                    inv = 1.0 / nrm
                    for f in range(D):
                        p[i, f] *= inv
    return c, p, pnorm


_NO_MIX = np.zeros((0, 0))


def _mix_args(mix):
    return (_NO_MIX, False) if mix is None else (np.ascontiguousarray(mix, dtype=np.float64),
                                                 True)


def expansion(first, index, vectors, spec, n_species, h, values_ln, derivs_ln, centre, l_max,
              norm, centre_weight, centre_all=False, fc_cut=0.0, fc_width=0.0, mix=None):
    """Density expansion coefficients c (n_atoms, n_species, n_max, (l_max+1)²) (Eq. 8).

    first, index, vectors : CSR neighbour list (vectors r_ij in Å, |r_ij| < cutoff).
    spec : (n_atoms,) species index of every atom.  h, values_ln, derivs_ln : radial table in
    the flat (n_grid, (l_max+1)·n_max) layout of :func:`.radial.transposed_table`.
    centre : (n_max,) I_n0(0), weighted by centre_weight for the atom itself (in its own
    species channel, or in every channel when ``centre_all``).
    fc_cut, fc_width : when fc_cut > 0 the table holds I_nl without the cutoff function and
    the cosine switch on [fc_cut − fc_width, fc_cut] is applied per neighbour.
    mix : optional (d_J, n_species) alchemical compression (Eq. 23); c then has d_J channels.
    """
    e = np.empty(0, dtype=np.int64)
    return _expand(first, index, vectors, spec, n_species, h, values_ln, derivs_ln, centre,
                   l_max, norm, centre_weight, e, e, e, np.empty(0), False, True, False,
                   work_chunks(len(first) - 1), *_mix_args(mix), centre_all, fc_cut,
                   fc_width)[0]


def expansion_spectrum(first, index, vectors, spec, n_species, h, values_ln, derivs_ln, centre,
                       l_max, norm, centre_weight, f_a1, f_a2, f_l, f_w, normalize,
                       centre_all=False, fc_cut=0.0, fc_width=0.0, mix=None):
    """(c, p, |p|) in one pass: :func:`expansion` and the power spectrum of each centre
    while its coefficients are in cache (p normalised when ``normalize``)."""
    return _expand(first, index, vectors, spec, n_species, h, values_ln, derivs_ln, centre,
                   l_max, norm, centre_weight, f_a1, f_a2, f_l, f_w, normalize, True, True,
                   work_chunks(len(first) - 1), *_mix_args(mix), centre_all, fc_cut, fc_width)


def features_fused(first, index, vectors, spec, n_species, h, values_ln, derivs_ln, centre,
                   l_max, norm, centre_weight, f_a1, f_a2, f_l, f_w, normalize,
                   centre_all=False, fc_cut=0.0, fc_width=0.0, mix=None):
    """Features only: (p, |p|) without allocating the (n_atoms, S, n_max, L2) expansion."""
    _, p, pnorm = _expand(first, index, vectors, spec, n_species, h, values_ln, derivs_ln,
                          centre, l_max, norm, centre_weight, f_a1, f_a2, f_l, f_w, normalize,
                          False, True, work_chunks(len(first) - 1), *_mix_args(mix),
                          centre_all, fc_cut, fc_width)
    return p, pnorm


@njit(cache=True, parallel=True, fastmath=_FM)
def power_spectrum(c, f_a1, f_a2, f_l, f_w):
    """Unnormalised power spectrum p (n_atoms, D) from c (Eq. 9); feature f couples the
    flattened (species, n) rows a1_f and a2_f at angular channel f_l with weight f_w."""
    n_atoms = c.shape[0]
    W = c.shape[1] * c.shape[2]
    L2 = c.shape[3]
    lp = int(round(math.sqrt(L2)))
    p = np.empty((n_atoms, f_w.shape[0]))
    for i in prange(n_atoms):
        cT = np.empty((L2, W))
        Gram = np.empty((lp, W, W))
        _spectrum_from_coefficients(c[i].reshape((W, L2)), cT, Gram, f_a1, f_a2, f_l, f_w, p[i])
    return p


@njit(cache=True, nogil=True)
def _pair_expansion_gradient(vec, h, values, derivs, l_max, norm, g, dg, Y, dY, Q, dQ, C, S,
                             u, dC, fc_cut=0.0, fc_width=0.0):
    """∂/∂r_ij of g_nl(r_ij) Y_lm(r̂_ij) into dC (3, n_max, L2); also fills g, dg, Y."""
    d = math.sqrt(vec[0] ** 2 + vec[1] ** 2 + vec[2] ** 2)
    inv = 1.0 / d
    for a in range(3):
        u[a] = vec[a] * inv
    radial_integral(d, h, values, derivs, g, dg)
    if fc_cut > 0.0:                      # table without the cutoff function
        f, df = _cosine_switch(d, fc_cut, fc_width)
        for n in range(g.shape[0]):
            for l in range(g.shape[1]):
                dg[n, l] = f * dg[n, l] + df * g[n, l]
                g[n, l] *= f
    real_spherical_harmonics(u, l_max, norm, Y, dY, Q, dQ, C, S)
    L2 = (l_max + 1) * (l_max + 1)
    project_gradient(u, inv, dY, L2)
    n_max = g.shape[0]
    for a in range(3):
        ua = u[a]
        for n in range(n_max):
            for l in range(l_max + 1):
                gnl = g[n, l]
                dgu = dg[n, l] * ua
                for lm in range(l * l, (l + 1) * (l + 1)):
                    dC[a, n, lm] = dgu * Y[lm] + gnl * dY[lm, a]


@njit(cache=True, nogil=True, fastmath={'reassoc', 'contract'})
def _pair_spectrum_gradient(dC, ciT, sj, T, f_s1, f_s2, f_n1, f_n2, f_l, f_w, feats, dp, mix):
    """dp[:, q] = ∂p_{feats[q]}/∂r_ij from dC (3, n_max, L2) = ∂c^{sj}/∂r_ij and c_i.

    ``feats`` lists the features involving species sj (all others have zero gradient).
    mix (n_channels, S): weight of species sj in channel s (identity without alchemical
    compression), so that ∂c^s/∂r_ij = mix[s, sj] dC.

    ciT (L2, S·n_max) is c_i transposed so that the innermost loop runs over the
    independent (s', n') lanes (vectorisable, no floating-point dependency chain).
    T[a, n, l, s'·n_max + n'] = Σ_m dC[a, n, lm] c_i[s', n', lm] holds every product
    needed; feature (s1, s2, n1, n2, l) gathers T[n1, l, (s2, n2)] if s1 = sj and
    T[n2, l, (s1, n1)] if s2 = sj.
    """
    n_max = dC.shape[1]
    lp = T.shape[2]
    W = ciT.shape[1]
    for a in range(3):
        for n in range(n_max):
            for l in range(lp):
                row = T[a, n, l]
                for q in range(W):
                    row[q] = 0.0
                for lm in range(l * l, (l + 1) * (l + 1)):
                    d = dC[a, n, lm]
                    src = ciT[lm]
                    for q in range(W):
                        row[q] += d * src[q]
    for q in range(feats.shape[0]):
        f = feats[q]
        s1 = f_s1[f]
        s2 = f_s2[f]
        l = f_l[f]
        n1 = f_n1[f]
        n2 = f_n2[f]
        w = f_w[f]
        u1 = mix[s1, sj]
        u2 = mix[s2, sj]
        for a in range(3):
            acc = 0.0
            if u1 != 0.0:
                acc += u1 * T[a, n1, l, s2 * n_max + n2]
            if u2 != 0.0:
                acc += u2 * T[a, n2, l, s1 * n_max + n1]
            dp[a, q] = w * acc


@njit(cache=True, parallel=True, fastmath={'reassoc', 'contract'})
def power_spectrum_gradients(first, index, vectors, spec, c, p, pnorm, h, values, derivs,
                             l_max, norm, f_s1, f_s2, f_n1, f_n2, f_l, f_w, sf_first, sf_index,
                             gfirst, pair_slot, centre_slot, normalize, with_strain, mix,
                             fc_cut=0.0, fc_width=0.0):
    """Forward-mode gradients of the (normalised) power spectrum.

    Returns ``grad`` (n_gpairs, 3, D) with grad[s] = ∂p̂_i/∂r_j for slot s of the
    centre i (slots gfirst[i]:gfirst[i+1], one per distinct atom j, images summed,
    including j = i at centre_slot[i]), and ``strain`` (n_atoms, 3, 3, D) =
    ∂p̂_i/∂ε_ab (shape (0, 3, 3, D) when ``with_strain`` is False: position gradients
    only, which saves a third of the work). ``pair_slot[k]`` is the slot of
    neighbour-list entry k. ``c`` has n_channels = mix.shape[0] channels; mix (n_channels,
    n_species) maps neighbour species to channels (identity unless compressed, Eq. 23).

    The output is large (slots × 3 × D doubles) and memory traffic, not arithmetic,
    bounds this kernel for many-species spectra: every centre accumulates and
    normalises its slots in a small per-thread buffer and writes each output element
    exactly once (``grad`` is never zero-filled or re-read).
    """
    n_atoms = first.shape[0] - 1
    n_max = values.shape[1]
    n_species = c.shape[1]
    L2 = (l_max + 1) * (l_max + 1)
    D = f_w.shape[0]
    grad = np.empty((gfirst[n_atoms], 3, D))
    strain = np.empty((n_atoms if with_strain else 0, 3, 3, D))
    max_slots = 1
    for i in range(n_atoms):
        max_slots = max(max_slots, gfirst[i + 1] - gfirst[i])
    chunk = 8
    n_chunks = (n_atoms + chunk - 1) // chunk
    for ch in prange(n_chunks):
        Y = np.empty(L2)
        dY = np.empty((L2, 3))
        Q = np.empty((l_max + 1, l_max + 1))
        dQ = np.empty((l_max + 1, l_max + 1))
        C = np.empty(l_max + 1)
        S = np.empty(l_max + 1)
        g = np.empty((n_max, l_max + 1))
        dg = np.empty((n_max, l_max + 1))
        u = np.empty(3)
        dC = np.empty((3, n_max, L2))
        T = np.empty((3, n_max, l_max + 1, n_species * n_max))
        dp = np.empty((3, D))
        loc = np.empty((max_slots, 3, D))
        st = np.empty((3, 3, D) if with_strain else (0, 0, D))
        ciT = np.empty((L2, n_species * n_max))
        for i in range(ch * chunk, min(n_atoms, (ch + 1) * chunk)):
            g0 = gfirst[i]
            nsl = gfirst[i + 1] - g0
            loc[:nsl] = 0.0
            if with_strain:
                st[:] = 0.0
            _coefficients_by_lm(c[i].reshape((n_species * n_max, L2)), ciT)
            ic = centre_slot[i] - g0
            for k in range(first[i], first[i + 1]):
                _pair_expansion_gradient(vectors[k], h, values, derivs, l_max, norm, g, dg, Y,
                                         dY, Q, dQ, C, S, u, dC, fc_cut, fc_width)
                sj = spec[index[k]]
                feats = sf_index[sf_first[sj]:sf_first[sj + 1]]
                _pair_spectrum_gradient(dC, ciT, sj, T, f_s1, f_s2, f_n1, f_n2, f_l, f_w, feats,
                                        dp, mix)
                js = pair_slot[k] - g0
                nf = feats.shape[0]
                for a in range(3):
                    for q in range(nf):
                        f = feats[q]
                        loc[js, a, f] += dp[a, q]
                        loc[ic, a, f] -= dp[a, q]
                    if with_strain:
                        for b in range(3):
                            rb = vectors[k, b]
                            for q in range(nf):
                                st[a, b, feats[q]] += dp[a, q] * rb
            if normalize:
                inv = 1.0 / pnorm[i]
                for s in range(nsl):
                    for a in range(3):
                        dot = 0.0
                        for f in range(D):
                            dot += p[i, f] * loc[s, a, f]
                        for f in range(D):
                            grad[g0 + s, a, f] = (loc[s, a, f] - p[i, f] * dot) * inv
                for a in range(3 if with_strain else 0):
                    for b in range(3):
                        dot = 0.0
                        for f in range(D):
                            dot += p[i, f] * st[a, b, f]
                        for f in range(D):
                            strain[i, a, b, f] = (st[a, b, f] - p[i, f] * dot) * inv
            else:
                for s in range(nsl):
                    for a in range(3):
                        for f in range(D):
                            grad[g0 + s, a, f] = loc[s, a, f]
                for a in range(3 if with_strain else 0):
                    for b in range(3):
                        for f in range(D):
                            strain[i, a, b, f] = st[a, b, f]
    return grad, strain


@njit(cache=True, nogil=True, fastmath=_FM)
def _coefficient_adjoint(pi, pnorm_i, wi, ci, f_a1, f_a2, f_l, f_w, normalize, gp, H, Gc):
    """Gc (L2, S·n_max) = ∂ε_i/∂c_i (transposed) from wi = ∂ε_i/∂p̂_i: back through the
    normalisation p̂ = p/|p| and the power spectrum (Eq. 9). With the symmetric weights
    H_l[a, b] = Σ_{f: l_f = l, {a1_f, a2_f} = {a, b}} w_f ∂ε/∂p_f,
    ∂ε_i/∂c[a, lm] = Σ_b H_l[a, b] c[b, lm], built from contiguous row updates.
    ci (S·n_max, L2); scratch gp (D,), H (l_max+1, S·n_max, S·n_max)."""
    D = f_w.shape[0]
    if normalize:
        dot = 0.0
        for f in range(D):
            dot += pi[f] * wi[f]
        inv = 1.0 / pnorm_i
        for f in range(D):
            gp[f] = (wi[f] - pi[f] * dot) * inv
    else:
        for f in range(D):
            gp[f] = wi[f]
    H[:] = 0.0
    for f in range(D):
        wf = f_w[f] * gp[f]
        H[f_l[f], f_a1[f], f_a2[f]] += wf
        H[f_l[f], f_a2[f], f_a1[f]] += wf
    Gc[:] = 0.0
    W = ci.shape[0]
    for l in range(H.shape[0]):
        Hl = H[l]
        for lm in range(l * l, (l + 1) * (l + 1)):
            out_row = Gc[lm]
            for b in range(W):
                cb = ci[b, lm]
                Hb = Hl[b]
                for a in range(W):
                    out_row[a] += cb * Hb[a]


@njit(cache=True, nogil=True, fastmath=_FM)
def _pair_adjoints(n_species, sstart, Gc, G, dG, n_max, l_max, A, B):
    """A[lm, k] = Σ_n Gc[lm, s_k·n_max+n] dG[l·n_max+n, k] and B likewise with G: the
    adjoints of the radial derivative and of the harmonics for every slot k (species s_k).
    The n sum is taken four radial rows at a time, so each (A, B) row is read and
    written once per four rows."""
    for s in range(n_species):
        k0 = sstart[s]
        k1 = sstart[s + 1]
        nk = k1 - k0
        a0 = s * n_max
        for l in range(l_max + 1):
            q0 = l * n_max
            for lm in range(l * l, (l + 1) * (l + 1)):
                Ar = A[lm, k0:k1]
                Br = B[lm, k0:k1]
                for k in range(nk):
                    Ar[k] = 0.0
                    Br[k] = 0.0
                n = 0
                while n + 4 <= n_max:
                    w0 = Gc[lm, a0 + n]
                    w1 = Gc[lm, a0 + n + 1]
                    w2 = Gc[lm, a0 + n + 2]
                    w3 = Gc[lm, a0 + n + 3]
                    g0 = G[q0 + n, k0:k1]
                    g1 = G[q0 + n + 1, k0:k1]
                    g2 = G[q0 + n + 2, k0:k1]
                    g3 = G[q0 + n + 3, k0:k1]
                    d0 = dG[q0 + n, k0:k1]
                    d1 = dG[q0 + n + 1, k0:k1]
                    d2 = dG[q0 + n + 2, k0:k1]
                    d3 = dG[q0 + n + 3, k0:k1]
                    for k in range(nk):
                        Ar[k] += w0 * d0[k] + w1 * d1[k] + w2 * d2[k] + w3 * d3[k]
                        Br[k] += w0 * g0[k] + w1 * g1[k] + w2 * g2[k] + w3 * g3[k]
                    n += 4
                while n < n_max:
                    w0 = Gc[lm, a0 + n]
                    g0 = G[q0 + n, k0:k1]
                    d0 = dG[q0 + n, k0:k1]
                    for k in range(nk):
                        Ar[k] += w0 * d0[k]
                        Br[k] += w0 * g0[k]
                    n += 1


@njit(cache=True, parallel=True, fastmath=_FM)
def _backward(first, index, vectors, spec, c, p, pnorm, dE_dp, h, values_ln, derivs_ln, l_max,
              norm, f_a1, f_a2, f_l, f_w, normalize, n_chunks, n_species, mix, compress,
              fc_cut=0.0, fc_width=0.0):
    n_atoms = first.shape[0] - 1
    n_max = values_ln.shape[1] // (l_max + 1)
    n_ch = c.shape[1]
    lp = l_max + 1
    L2 = lp * lp
    D = f_w.shape[0]
    Wq = values_ln.shape[1]
    slots = max_neighbours(first) + n_species * PAD
    out = np.empty((vectors.shape[0], 3))
    for t in prange(n_chunks):
        sstart, ks, geo, G = _slot_buffers(n_species, slots, Wq)
        dG = np.empty((Wq, slots))
        A = np.empty((L2, slots))
        B = np.empty((L2, slots))
        Q = np.empty((lp * lp, slots))
        dQ = np.empty((lp * lp, slots))
        C = np.empty((lp, slots))
        S = np.empty((lp, slots))
        ay = np.empty(slots)
        t0 = np.empty(slots)
        t1 = np.empty(slots)
        t2 = np.empty(slots)
        g = np.empty(Wq)
        dg = np.empty(Wq)
        gp = np.empty(D)
        H = np.empty((lp, n_ch * n_max, n_ch * n_max))
        Gc_ch = np.empty((L2, n_ch * n_max))
        Gc = Gc_ch if not compress else np.empty((L2, n_species * n_max))
        for i in range(t * n_atoms // n_chunks, (t + 1) * n_atoms // n_chunks):
            _coefficient_adjoint(p[i], pnorm[i], dE_dp[i], c[i].reshape((n_ch * n_max, L2)),
                                 f_a1, f_a2, f_l, f_w, normalize, gp, H, Gc_ch)
            if compress:
                _expand_adjoint(mix, n_max, Gc_ch, Gc)
            ns = _neighbour_slots(i, first, index, vectors, spec, n_species, sstart, ks, geo)
            _radial_block(ns, ks, geo, h, values_ln, derivs_ln, G, dG, g, dg, True, fc_cut,
                          fc_width)
            _pair_adjoints(n_species, sstart, Gc, G, dG, n_max, l_max, A, B)
            # t_k = Σ_nlm Gc (g' u Y + g ∇Y): radial part Σ_lm A Y, angular part Σ_lm B ∇f
            harmonics_contract_block(ns, geo[2], geo[3], geo[4], l_max, norm, A, B, Q, dQ, C,
                                     S, ay, t0, t1, t2)
            for q in range(ns):
                k = ks[q]
                if k < 0:
                    continue
                inv_d = geo[1, q]
                ux = geo[2, q]
                uy = geo[3, q]
                uz = geo[4, q]
                ud = ux * t0[q] + uy * t1[q] + uz * t2[q]      # ∇_r Y = (∇f − u(u·∇f))/d
                out[k, 0] = ay[q] * ux + (t0[q] - ux * ud) * inv_d
                out[k, 1] = ay[q] * uy + (t1[q] - uy * ud) * inv_d
                out[k, 2] = ay[q] * uz + (t2[q] - uz * ud) * inv_d
    return out


def backward_pairs(first, index, vectors, spec, c, p, pnorm, dE_dp, h, values_ln, derivs_ln,
                   l_max, norm, f_a1, f_a2, f_l, f_w, normalize, fc_cut=0.0, fc_width=0.0,
                   n_species=None, mix=None):
    """Reverse mode: pair terms t_k = ∂ε_i/∂r_ij (n_pairs, 3) from w_i = ∂ε_i/∂p̂_i.

    ``p`` is the normalised spectrum when ``normalize`` (p̂, with norms ``pnorm``);
    feature f couples the flattened (species, n) rows f_a1, f_a2 at channel f_l with weight
    f_w. Forces follow as F_j −= t_k, F_i += t_k; ∂E/∂ε_ab = Σ_k t_k,a r_k,b. Radial table
    in the flat layout of :func:`.radial.transposed_table`. Per centre: ∂ε_i/∂c_i, then
    for all its neighbours at once the radial and angular adjoints and their contraction
    with the harmonics' gradients; O(pairs × n_max × (l_max+1)²), ∂p/∂r never formed.
    With ``mix`` (d_J, n_species) c holds the compressed channels (Eq. 23) and ∂ε/∂c is
    taken back to the species channels by mixᵀ.
    """
    if n_species is None:
        n_species = c.shape[1] if mix is None else np.asarray(mix).shape[1]
    return _backward(first, index, vectors, spec, c, p, pnorm, np.ascontiguousarray(dE_dp), h,
                     values_ln, derivs_ln, l_max, norm, f_a1, f_a2, f_l, f_w, normalize,
                     work_chunks(len(first) - 1), int(n_species), *_mix_args(mix), fc_cut,
                     fc_width)


@njit(cache=True)
def gradient_slots(first, index):
    """Group neighbour-list entries of each centre by neighbour atom.

    Returns gfirst (n_atoms+1,), gindex (n_gpairs,) — the distinct atoms j of centre i,
    sorted, including i itself — pair_slot (n_pairs,) and centre_slot (n_atoms,).
    """
    n_atoms = first.shape[0] - 1
    counts = np.zeros(n_atoms + 1, dtype=np.int64)
    mark = np.full(n_atoms, -1, dtype=np.int64)
    for i in range(n_atoms):
        cnt = 1
        mark[i] = i
        for k in range(first[i], first[i + 1]):
            j = index[k]
            if mark[j] != i:
                mark[j] = i
                cnt += 1
        counts[i + 1] = cnt
    gfirst = np.cumsum(counts)
    gindex = np.empty(gfirst[n_atoms], dtype=np.int64)
    pair_slot = np.empty(index.shape[0], dtype=np.int64)
    centre_slot = np.empty(n_atoms, dtype=np.int64)
    for i in range(n_atoms):
        lo = gfirst[i]
        m = 0
        gindex[lo] = i
        m = 1
        for k in range(first[i], first[i + 1]):
            j = index[k]
            found = False
            for q in range(m):
                if gindex[lo + q] == j:
                    found = True
                    break
            if not found:
                gindex[lo + m] = j
                m += 1
        order = np.argsort(gindex[lo:lo + m])
        tmp = gindex[lo:lo + m][order].copy()
        gindex[lo:lo + m] = tmp
        for q in range(m):
            if tmp[q] == i:
                centre_slot[i] = lo + q
        for k in range(first[i], first[i + 1]):
            j = index[k]
            # binary search in the sorted slots
            a = 0
            b = m - 1
            while a < b:
                mid = (a + b) // 2
                if tmp[mid] < j:
                    a = mid + 1
                else:
                    b = mid
            pair_slot[k] = lo + a
    return gfirst, gindex, pair_slot, centre_slot


@njit(cache=True)
def filter_pairs(first, index, vectors, distances, cutoff):
    """The CSR sub-list of pairs with distance < cutoff (one pass, order kept)."""
    n = first.shape[0] - 1
    keep = 0
    for k in range(index.shape[0]):
        if distances[k] < cutoff:
            keep += 1
    nfirst = np.empty(n + 1, dtype=np.int64)
    nindex = np.empty(keep, dtype=np.int64)
    nvec = np.empty((keep, 3))
    q = 0
    nfirst[0] = 0
    for i in range(n):
        for k in range(first[i], first[i + 1]):
            if distances[k] < cutoff:
                nindex[q] = index[k]
                nvec[q, 0] = vectors[k, 0]
                nvec[q, 1] = vectors[k, 1]
                nvec[q, 2] = vectors[k, 2]
                q += 1
        nfirst[i + 1] = q
    return nfirst, nindex, nvec


@njit(cache=True)
def pairs_within(first, vectors, cutoff):
    """Indices of the pairs shorter than ``cutoff`` (Å), in order, and the CSR ``first``
    (n_centres+1,) of that sub-list."""
    n = first.shape[0] - 1
    c2 = cutoff * cutoff
    kept = np.empty(vectors.shape[0], dtype=np.int64)
    nfirst = np.empty(n + 1, dtype=np.int64)
    q = 0
    nfirst[0] = 0
    for i in range(n):
        for k in range(first[i], first[i + 1]):
            if vectors[k, 0] ** 2 + vectors[k, 1] ** 2 + vectors[k, 2] ** 2 < c2:
                kept[q] = k
                q += 1
        nfirst[i + 1] = q
    return nfirst, kept[:q].copy()


@njit(cache=True)
def assemble_forces(first, index, vectors, t, F, W):
    """Add pair terms t_k = ∂ε_i/∂r_ij to forces (F_j −= t_k, F_i += t_k) and to
    W_ab += Σ_k t_k,a r_k,b (∂E/∂ε), in place."""
    n = first.shape[0] - 1
    for i in range(n):
        for k in range(first[i], first[i + 1]):
            j = index[k]
            for a in range(3):
                ta = t[k, a]
                F[j, a] -= ta
                F[i, a] += ta
                for b in range(3):
                    W[a, b] += ta * vectors[k, b]


# --------------------------------------------------------------------------- objects
def check_cutoff(cutoff, cutoff_width):
    """ValueError unless 0 ≤ cutoff_width < cutoff (Å)."""
    if not cutoff > 0:
        raise ValueError(f"cutoff must be > 0, got {cutoff}")
    if not 0 <= cutoff_width < cutoff:
        raise ValueError(f"cutoff_width must be in [0, cutoff), got {cutoff_width}")


@dataclass
class DescriptorGradients:
    """Gradients of per-atom features.

    pairs  : (n_gpairs, 2) int64, rows (i, j): centre i, atom j (j = i included).
    values : (n_gpairs, 3, D), ∂features[i]/∂positions[j] (1/Å), periodic images summed.
    strain : (n_atoms, 3, 3, D), ∂features[i]/∂ε_ab for r → (1+ε) r (dimensionless);
             None when computed with ``strain=False``.
    """
    pairs: np.ndarray
    values: np.ndarray
    strain: np.ndarray


class Environment:
    """Neighbour data of one structure for one descriptor: CSR pairs within its cutoff.

    ``nl`` may come from a larger cutoff (shared between descriptors, or kept with a
    skin between MD steps); pairs at or beyond ``cutoff`` are then dropped.
    """

    @classmethod
    def batch(cls, frames, cutoff, species: SpeciesMap) -> "Environment":
        """One environment over many structures: atoms numbered consecutively, frame by
        frame (frame k owns atoms ``offsets[k]:offsets[k+1]``), so every kernel runs
        once for the whole batch instead of once per (small) structure."""
        if not frames:
            raise ValueError("no structures given")
        env = cls.__new__(cls)
        firsts, indices, vectors, specs = [], [], [], []
        offsets = [0]
        n_pairs = 0
        for k, at in enumerate(frames):
            try:
                one = cls(at, cutoff, species)
            except ValueError as exc:
                raise ValueError(f"structure {k}: {exc}") from None
            firsts.append(one.first[1:] + n_pairs if k else one.first + n_pairs)
            indices.append(one.index + offsets[-1])
            vectors.append(one.vectors)
            specs.append(one.spec)
            n_pairs += len(one.index)
            offsets.append(offsets[-1] + one.n_atoms)
        env.n_atoms = offsets[-1]
        env.spec = np.concatenate(specs)
        env.first = np.concatenate(firsts).astype(np.int64)
        env.index = np.concatenate(indices).astype(np.int64)
        env.vectors = np.ascontiguousarray(np.concatenate(vectors), dtype=np.float64)
        env.offsets = np.asarray(offsets, dtype=np.int64)
        return env

    @classmethod
    def from_arrays(cls, first, index, vectors, spec) -> "Environment":
        """A neighbour description given directly (the prediction core's input).

        first : (n_centres+1,) int64 CSR offsets; centre i owns pairs first[i]:first[i+1].
        index : (n_pairs,) int64 neighbour atom of each pair, in 0..n_all-1; centres are
            atoms 0..n_centres-1, atoms beyond are neighbours only (e.g. LAMMPS ghosts).
        vectors : (n_pairs, 3) r_j − r_i (Å), images included.
        spec : (n_all,) int64 species index of every atom (centres and neighbours).
        """
        env = cls.__new__(cls)
        env.first = np.ascontiguousarray(first, dtype=np.int64)
        env.index = np.ascontiguousarray(index, dtype=np.int64)
        env.vectors = np.ascontiguousarray(vectors, dtype=np.float64).reshape(-1, 3)
        env.spec = np.ascontiguousarray(spec, dtype=np.int64)
        env.n_atoms = len(env.first) - 1
        if len(env.index) != len(env.vectors) or env.first[-1] != len(env.index):
            raise ValueError("inconsistent neighbour arrays: first[-1], index and vectors "
                             "must all count the same pairs")
        if len(env.spec) < env.n_atoms or (len(env.index) and
                                           (env.index.min() < 0 or
                                            env.index.max() >= len(env.spec))):
            raise ValueError("neighbour index outside the atoms whose species are given")
        return env

    @property
    def n_centres(self) -> int:
        """Atoms whose local energies are computed (0..n_centres-1)."""
        return len(self.first) - 1

    @property
    def centre_spec(self) -> np.ndarray:
        """(n_centres,) species index of the centres."""
        return self.spec[:self.n_centres]

    def within(self, cutoff):
        """(sub-environment of the pairs shorter than ``cutoff``, their indices in this
        one); (self, None) when every pair is already shorter."""
        nfirst, kept = pairs_within(self.first, self.vectors, float(cutoff))
        if len(kept) == len(self.index):
            return self, None
        sub = Environment.from_arrays(nfirst, self.index[kept], self.vectors[kept], self.spec)
        return sub, kept

    def __init__(self, atoms, cutoff, species: SpeciesMap, nl=None):
        self.n_atoms = len(atoms)
        self.spec = species.indices(atoms.numbers)
        if nl is None:
            nl = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
            first, index, vectors = nl.first, nl.index, nl.vectors
        else:
            first, index, vectors = nl.first, nl.index, nl.vectors
            if len(nl.distances) and nl.distances.max() >= cutoff:
                first, index, vectors = filter_pairs(first, index, vectors, nl.distances,
                                                     float(cutoff))
        self.first = first
        self.index = index
        self.vectors = vectors


class SOAP:
    """Smooth overlap of atomic positions power spectrum (seed Eq. 9).

    Parameters
    ----------
    species : atomic numbers or symbols of every element that may appear.
    cutoff : r_c (Å).  n_max : radial functions.  l_max : max angular momentum.
    atom_sigma : Gaussian width σ of the smeared density (Å).
    cutoff_width : width of the cosine switch below r_c (Å) (QUIP: cutoff_transition_width).
    radial_basis : "gto" (default; gapcalc's own), "quip" (QUIP/GAP's default basis,
        EQUISPACED_GAUSS) or "quip_gto" (QUIP's radial_basis=GTO). With a QUIP basis and
        the "quip" layout, :meth:`compute` equals quippy's ``Descriptor("soap ...")``.
    normalize : unit-length spectrum (default True; alias ``normalise``).
    centre_weight : weight of the central atom in its own density (gap_fit: 1; alias
        ``central_weight``).
    central_reference_all_species : put the centre's Gaussian into every species channel
        (QUIP's rule; default True for one neighbour species, else False: its own channel).
    covariance_sigma0 : constant appended as the last feature after normalisation (QUIP);
        only with the "quip" layout.
    basis_error_exponent : ε of QUIP's bases, extent R_b = r_c + σ√(2 ε ln 10) (default 10).
    layout : "gapcalc" (species-sorted channel pairs, the default for "gto") or "quip"
        (QUIP's order: channels I = (species, n) in ``species_Z`` order, pairs J ≤ I, l
        fastest, plus the covariance_sigma0 element; the default for the QUIP bases).
        With ``compression`` the channels are the d_J elemental channels, in order.
    species_Z : neighbour species channels of the "quip" layout, in order (default:
        ``species`` in the order given). Neighbours of other species are ignored.
    Z : centre species (default: every atom is a centre). Only :meth:`compute` filters by
        it (its rows are the centres in atom order, as quippy's); models select centres by
        species themselves.
    l_factor : weight each l by (2l+1)^{-1/2} (default); False reproduces gap_fit files
        older than gap_version 1423143769, which lack it.
    radial_scaling : None, or u(r) scaling every neighbour's density (seed Eq. 22),
        ``{"type": "inverse_power", "r0": Å, "m": m, "c": c}``: u = c/(c + (r/r0)^m).
        Works with every radial basis (it multiplies the tabulated radial functions).
    compression : None, or a (d_J, n_species) matrix u_Jα projecting the species channels
        of c on d_J "elemental features" (alchemical compression, seed Eq. 23); features
        then count ∝ d_J² instead of n_species². See :func:`learn_compression`.
    features : None (all), or the indices of the power-spectrum components to keep (into
        the full feature list of this descriptor: feature selection, seed §IV; see
        :meth:`select_features`). Only those are computed, normalised and differentiated.
        In the "quip" layout the covariance_sigma0 element is the last full feature.
    """

    name = "soap"
    # defaults for subclasses that set their attributes themselves (PairDistance)
    layout = "gapcalc"
    Z = None
    central_reference_all_species = False
    covariance_sigma0 = 0.0
    l_factor = True
    _fc = (0.0, 0.0)
    _mix = None        # (d_J, S) compression, None = species channels as they are
    _constant_kept = True
    selected = None
    radial_scaling = None

    def __init__(self, species, cutoff=5.0, n_max=8, l_max=6, atom_sigma=0.5,
                 cutoff_width=0.5, radial_basis="gto", normalize=True, centre_weight=1.0,
                 central_reference_all_species=None, covariance_sigma0=0.0,
                 basis_error_exponent=10.0, layout=None, species_Z=None, Z=None, *,
                 normalise=None, central_weight=None, l_factor=True,
                 radial_scaling=None, compression=None, features=None):
        if normalise is not None:
            normalize = normalise
        if central_weight is not None:
            centre_weight = central_weight
        given = [SpeciesMap([z]).numbers[0] for z in np.atleast_1d(species).tolist()] \
            if not isinstance(species, SpeciesMap) else species.numbers.tolist()
        self.species = SpeciesMap(species)
        check_cutoff(cutoff, cutoff_width)
        if int(n_max) < 1 or not 0 <= int(l_max) <= 100:
            raise ValueError(f"need n_max >= 1 and 0 <= l_max <= 100, got {n_max}, {l_max}")
        if not atom_sigma > 0:
            raise ValueError(f"atom_sigma must be > 0, got {atom_sigma}")
        if radial_basis not in RADIAL_BASES:
            raise ValueError(f"unknown radial_basis {radial_basis!r}; available: "
                             f"{', '.join(RADIAL_BASES)}")
        if not basis_error_exponent > 0:
            raise ValueError(f"basis_error_exponent must be > 0, got {basis_error_exponent}")
        self.cutoff = float(cutoff)
        self.n_max = int(n_max)
        self.l_max = int(l_max)
        self.atom_sigma = float(atom_sigma)
        self.cutoff_width = float(cutoff_width)
        self.radial_basis = radial_basis
        self.normalize = bool(normalize)
        self.centre_weight = float(centre_weight)
        self.basis_error_exponent = float(basis_error_exponent)
        if layout is None:
            layout = "quip" if radial_basis in QUIP_BASES else "gapcalc"
        if layout not in ("gapcalc", "quip"):
            raise ValueError(f"layout must be 'gapcalc' or 'quip', got {layout!r}")
        self.layout = layout
        if species_Z is None:
            species_Z = list(dict.fromkeys(int(z) for z in given))
        else:
            species_Z = [int(SpeciesMap([z]).numbers[0]) for z in np.atleast_1d(species_Z)]
            if len(set(species_Z)) != len(species_Z):
                raise ValueError(f"species_Z has repeated elements: {species_Z}")
            missing = [z for z in species_Z if z not in self.species.numbers]
            if missing:
                raise ValueError(f"species_Z {missing} not in species {self.species.symbols}")
            if layout != "quip" and sorted(species_Z) != self.species.numbers.tolist():
                raise ValueError("species_Z (a subset or order of species) needs layout='quip'")
        self.species_Z = species_Z
        if central_reference_all_species is None:
            central_reference_all_species = len(species_Z) == 1
        self.central_reference_all_species = bool(central_reference_all_species)
        self.covariance_sigma0 = float(covariance_sigma0)
        if self.covariance_sigma0 != 0 and layout != "quip":
            raise ValueError("covariance_sigma0 needs layout='quip'")
        self.Z = None if Z is None else sorted(int(SpeciesMap([z]).numbers[0])
                                               for z in np.atleast_1d(Z))
        self.radial_scaling = radial_scaling_spec(radial_scaling)
        self._table = scale_table(radial_table(self.cutoff, self.n_max, self.l_max,
                                               self.atom_sigma, self.cutoff_width, radial_basis,
                                               basis_error_exponent=self.basis_error_exponent),
                                  self.radial_scaling)
        # QUIP bases: the table holds I_nl without f_c (f_c applied per neighbour, which
        # makes the cubic-Hermite table ~30x more accurate for the same size)
        self._fc = ((self.cutoff, self.cutoff_width) if radial_basis in QUIP_BASES
                    else (0.0, 0.0))
        self._norm = normalisation(self.l_max)
        S = len(self.species)
        if compression is not None:
            mix = np.array(compression, dtype=np.float64)
            if mix.ndim != 2 or mix.shape[1] != S or mix.shape[0] < 1:
                raise ValueError(f"compression must be a (d_J, n_species={S}) matrix, got "
                                 f"shape {mix.shape}")
            if not np.all(np.isfinite(mix)):
                raise ValueError("compression matrix has non-finite entries")
            if sorted(species_Z) != self.species.numbers.tolist():
                raise ValueError("compression mixes every species: it cannot be combined "
                                 "with a species_Z subset")
            mix.setflags(write=False)
            self._mix = mix
        n_ch = S if self._mix is None else self._mix.shape[0]
        if layout == "quip":
            channels = (self.species.indices(species_Z) if self._mix is None
                        else np.arange(n_ch))
            full = _feature_index_quip(channels, self.n_max, self.l_max)
        else:
            full = _feature_index(n_ch, self.n_max, self.l_max)
        self.l_factor = bool(l_factor)
        if not self.l_factor:
            # gap_fit files older than gap_version 1423143769: no (2l+1)^{-1/2} weight
            s1, s2, n1, n2, fl, fw = full
            full = (s1, s2, n1, n2, fl, np.ascontiguousarray(fw * np.sqrt(2.0 * fl + 1.0)))
        self._n_features_full = int(len(full[0]))
        self.selected = None
        if features is not None:
            sel = np.asarray(features, dtype=np.int64).ravel()
            if (len(sel) == 0 or sel.min() < 0 or sel.max() >= len(full[0])
                    or len(np.unique(sel)) != len(sel)):
                raise ValueError(f"features must be distinct indices in 0..{len(full[0]) - 1}")
            sel = np.sort(sel)
            self.selected = sel
            full = tuple(np.ascontiguousarray(a[sel]) for a in full)
            # the "quip" layout's constant (last full feature) stays last if kept
            self._constant_kept = bool(sel[-1] == self._n_features_full - 1)
        self._features = full
        s1, s2, n1, n2, fl, fw = self._features
        # (a1, a2, l, w): the features over flattened (species, n) rows, for the
        # per-centre kernels
        self._pairs = (s1 * self.n_max + n1, s2 * self.n_max + n2, fl, fw)
        self._species_features = _species_feature_lists(self._features, S, self._mix)
        # (n_channels, S): channel weight of each neighbour species, for the forward gradients
        self._mix_fwd = np.eye(S) if self._mix is None else self._mix

    @property
    def compression(self):
        """(d_J, n_species) alchemical compression matrix, or None."""
        return None if self._mix is None else np.array(self._mix)

    @property
    def n_channels(self) -> int:
        """Chemical channels of the expansion: n_species, or d_J when compressed."""
        return len(self.species) if self._mix is None else self._mix.shape[0]

    @property
    def n_features_full(self) -> int:
        """Features before selection."""
        return self._n_features_full

    def with_options(self, **changes) -> "SOAP":
        """A copy of this descriptor with some constructor arguments changed."""
        d = self.to_dict()
        d.pop("name", None)
        d.update(changes)
        return type(self)(**d)

    def select_features(self, P, n_features, method="cur", seed=0) -> "SOAP":
        """A copy keeping ``n_features`` of this descriptor's current features, chosen among the
        columns of P (N, D) (features of training environments from this descriptor) by CUR
        leverage sampling or farthest-point sampling of the columns (seed §IV)."""
        from ..sparsify import select
        P = np.asarray(P, dtype=np.float64)
        if P.ndim != 2 or P.shape[1] != self.n_features:
            raise ValueError(f"P must be (N, {self.n_features}), got {P.shape}")
        n_features = int(n_features)
        if not 1 <= n_features <= self.n_features:
            raise ValueError(f"n_features must be in 1..{self.n_features}, got {n_features}")
        cols = select(P.T, n_features, method, seed=seed)
        current = np.arange(self.n_features) if self.selected is None else self.selected
        return self.with_options(features=current[cols].tolist())

    # -- bookkeeping -----------------------------------------------------------
    @property
    def n_features(self) -> int:
        return int(self._features[0].shape[0])

    @property
    def _has_constant(self) -> bool:
        """The "quip" layout ends with the covariance_sigma0 element (not normalised),
        unless feature selection dropped it."""
        return self.layout == "quip" and self._constant_kept

    def to_dict(self) -> dict:
        d = {"name": self.name, "species": self.species.numbers.tolist(),
             "cutoff": self.cutoff, "n_max": self.n_max, "l_max": self.l_max,
             "atom_sigma": self.atom_sigma, "cutoff_width": self.cutoff_width,
             "radial_basis": self.radial_basis, "normalize": self.normalize,
             "centre_weight": self.centre_weight}
        # the QUIP options, recorded only where they differ from what the constructor
        # derives from the keys above (so records of gapcalc's own SOAP keep their
        # original keys; records with every key, as written before, load the same)
        species_Z = list(self.species_Z)
        if species_Z != self.species.numbers.tolist():
            d["species_Z"] = species_Z
        if self.central_reference_all_species != (len(species_Z) == 1):
            d["central_reference_all_species"] = self.central_reference_all_species
        if self.covariance_sigma0 != 0.0:
            d["covariance_sigma0"] = self.covariance_sigma0
        if self.basis_error_exponent != 10.0:
            d["basis_error_exponent"] = self.basis_error_exponent
        if self.layout != ("quip" if self.radial_basis in QUIP_BASES else "gapcalc"):
            d["layout"] = self.layout
        if self.Z is not None:
            d["Z"] = list(self.Z)
        if not self.l_factor:
            d["l_factor"] = False
        d.update(self._option_dict())
        return d

    def _option_dict(self) -> dict:
        """The optional representation settings, recorded only when set (older files,
        which lack them, load with the defaults)."""
        d = {}
        if getattr(self, "radial_scaling", None) is not None:
            d["radial_scaling"] = dict(self.radial_scaling)
        if self._mix is not None:
            d["compression"] = self._mix.tolist()
        if getattr(self, "selected", None) is not None:
            d["features"] = self.selected.tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SOAP":
        d = dict(d)
        name = d.pop("name", cls.name)
        if name != cls.name:
            raise ValueError(f"descriptor record is {name!r}, not {cls.name!r}")
        return cls(**d)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "name")
        return f"SOAP({args})"

    # -- computation -----------------------------------------------------------
    def environment(self, atoms, nl=None) -> Environment:
        return Environment(atoms, self.cutoff, self.species, nl)

    @cached_property
    def _table_ln(self):
        """The radial table in the flat (n_grid, (l_max+1)·n_max) layout."""
        return transposed_table(self._table)

    def expand(self, env: Environment) -> np.ndarray:
        h, values_ln, derivs_ln = self._table_ln
        return expansion(env.first, env.index, env.vectors, env.spec, len(self.species), h,
                         values_ln, derivs_ln, self._table[3], self.l_max, self._norm,
                         self.centre_weight, self.central_reference_all_species, *self._fc,
                         mix=self._mix)

    def features(self, env: Environment) -> np.ndarray:
        """Features of an environment without keeping the expansion (fused kernel)."""
        h, values_ln, derivs_ln = self._table_ln
        p, pnorm = features_fused(env.first, env.index, env.vectors, env.spec,
                                  len(self.species), h, values_ln, derivs_ln, self._table[3],
                                  self.l_max, self._norm, self.centre_weight, *self._pairs,
                                  self.normalize, self.central_reference_all_species,
                                  *self._fc, mix=self._mix)
        self._check_norms(pnorm)
        self._set_constant(p)
        return p

    def describe(self, env: Environment):
        """(c, p̂, |p|): expansion coefficients and spectrum in one pass (prediction path)."""
        h, values_ln, derivs_ln = self._table_ln
        c, p, pnorm = expansion_spectrum(env.first, env.index, env.vectors, env.spec,
                                         len(self.species), h, values_ln, derivs_ln,
                                         self._table[3], self.l_max, self._norm,
                                         self.centre_weight, *self._pairs, self.normalize,
                                         self.central_reference_all_species, *self._fc,
                                         mix=self._mix)
        self._check_norms(pnorm)
        self._set_constant(p)
        return c, p, pnorm

    def spectrum(self, c):
        """(p̂, |p|) from expansion coefficients; p̂ = p when normalize is False."""
        p = power_spectrum(c, *self._pairs)
        pnorm = np.sqrt(np.einsum("ij,ij->i", p, p))
        self._check_norms(pnorm)
        if self.normalize:
            p /= pnorm[:, None]          # in place: no second (n_atoms × D) array
        self._set_constant(p)
        return p, pnorm

    def _set_constant(self, p):
        """QUIP layout: the last feature is covariance_sigma0, set after normalisation
        (the kernels give it weight 0, so it is 0 in p and in |p|)."""
        if self._has_constant:
            p[:, -1] = self.covariance_sigma0

    def _check_norms(self, pnorm):
        if self.normalize and np.any(pnorm == 0):
            raise ValueError("zero power spectrum (isolated atom with centre_weight=0?)")

    def compute(self, atoms, gradients=False, nl=None, strain=True):
        """Features (n_atoms, n_features); with gradients=True also :class:`DescriptorGradients`.

        ``atoms`` may also be a list of structures: they are computed as one batch
        (one kernel call, no per-structure overhead) and the rows of structure k are
        ``offsets[k]:offsets[k+1]`` with ``offsets = np.cumsum([0] + [len(a) for a in
        atoms])``; gradient pairs then use the same global atom numbering.
        ``strain=False`` skips the strain gradients (``grads.strain`` is then None).
        """
        if isinstance(atoms, (list, tuple)):
            if nl is not None:
                raise ValueError("nl cannot be given for a batch of structures")
            env = Environment.batch(atoms, self.cutoff, self.species)
        else:
            env = self.environment(atoms, nl)
        if self.Z is None:
            if not gradients:
                return self.features(env)
            c = self.expand(env)
            p, pnorm = self.spectrum(c)
            return p, self.gradients(env, c, p, pnorm, strain=strain)
        numbers = (np.concatenate([a.numbers for a in atoms])
                   if isinstance(atoms, (list, tuple)) else atoms.numbers)
        rows = np.flatnonzero(np.isin(numbers, self.Z))
        if not gradients:
            return self.features(env)[rows]
        c = self.expand(env)
        p, pnorm = self.spectrum(c)
        g = self.gradients(env, c, p, pnorm, strain=strain)
        keep = np.isin(g.pairs[:, 0], rows)
        return p[rows], DescriptorGradients(g.pairs[keep], g.values[keep],
                                            None if g.strain is None else g.strain[rows])

    def gradients(self, env, c, p, pnorm, strain=True) -> DescriptorGradients:
        h, values, derivs, _ = self._table
        gfirst, gindex, pair_slot, centre_slot = gradient_slots(env.first, env.index)
        grad, st = power_spectrum_gradients(
            env.first, env.index, env.vectors, env.spec, c, p, pnorm, h, values, derivs,
            self.l_max, self._norm, *self._features, *self._species_features, gfirst, pair_slot,
            centre_slot, self.normalize, bool(strain), self._mix_fwd, *self._fc)
        if self._has_constant:          # the constant is outside the normalisation
            grad[:, :, -1] = 0.0
            if strain:
                st[..., -1] = 0.0
        centres = np.repeat(np.arange(env.n_atoms), np.diff(gfirst))
        return DescriptorGradients(np.stack([centres, gindex], axis=1), grad,
                                   st if strain else None)

    def backward(self, env, c, p, pnorm, dE_dp) -> np.ndarray:
        """Pair terms ∂ε_i/∂r_ij (n_pairs, 3) for w_i = ∂ε_i/∂p̂_i given as dE_dp (n_atoms, D)."""
        h, values_ln, derivs_ln = self._table_ln
        if self._has_constant and self.covariance_sigma0 != 0:
            dE_dp = np.array(dE_dp, dtype=np.float64)   # the constant has no gradient
            dE_dp[:, -1] = 0.0
        return backward_pairs(env.first, env.index, env.vectors, env.spec, c, p, pnorm,
                              dE_dp, h, values_ln, derivs_ln, self.l_max, self._norm,
                              *self._pairs, self.normalize, *self._fc,
                              n_species=len(self.species), mix=self._mix)


def _species_feature_lists(features, n_species, mix=None):
    """CSR (first (S+1,), index) of the features that involve each species (through a
    channel it contributes to, when compressed by mix (d_J, S))."""
    s1, s2 = features[0], features[1]
    if mix is None:
        lists = [np.flatnonzero((s1 == s) | (s2 == s)) for s in range(n_species)]
    else:
        lists = [np.flatnonzero((mix[s1, s] != 0) | (mix[s2, s] != 0)) for s in range(n_species)]
    first = np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)
    return first, np.concatenate(lists).astype(np.int64)


def _feature_index_quip(channels, n_max: int, l_max: int):
    """QUIP's feature order (quip_soap.md §4): channels I = (species channels[I // n_max],
    n = I % n_max), pairs J ≤ I, l innermost; weight √2 for I ≠ J and (2l+1)^{-1/2};
    plus a final weight-0 feature (the covariance_sigma0 slot)."""
    rows = []
    K = len(channels) * n_max
    for I in range(K):
        for J in range(I + 1):
            for l in range(l_max + 1):
                fold = 1.0 if I == J else math.sqrt(2.0)
                rows.append((channels[I // n_max], channels[J // n_max], I % n_max, J % n_max,
                             l, fold / math.sqrt(2 * l + 1)))
    rows.append((channels[0], channels[0], 0, 0, 0, 0.0))
    arr = np.array(rows, dtype=np.float64)
    ints = [np.ascontiguousarray(arr[:, k].astype(np.int64)) for k in range(5)]
    return (*ints, np.ascontiguousarray(arr[:, 5]))


def _feature_index(n_species: int, n_max: int, l_max: int):
    """Index arrays (s1, s2, n1, n2, l, weight) of the unique power-spectrum features."""
    rows = []
    for s1 in range(n_species):
        for s2 in range(s1, n_species):
            for n1 in range(n_max):
                for n2 in range(n1 if s1 == s2 else 0, n_max):
                    for l in range(l_max + 1):
                        fold = 1.0 if (s1 == s2 and n1 == n2) else math.sqrt(2.0)
                        rows.append((s1, s2, n1, n2, l, fold / math.sqrt(2 * l + 1)))
    arr = np.array(rows, dtype=np.float64)
    ints = [np.ascontiguousarray(arr[:, k].astype(np.int64)) for k in range(5)]
    return (*ints, np.ascontiguousarray(arr[:, 5]))
