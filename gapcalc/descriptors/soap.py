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
from numba import njit, prange

from ..neighbors import neighbor_list
from .radial import radial_integral, radial_integral_ln, radial_table, transposed_table
from .spherical import (harmonics_contract, normalisation, project_gradient,
                        real_spherical_harmonics, real_spherical_harmonics_values)
from .species import SpeciesMap


# --------------------------------------------------------------------------- kernels
@njit(cache=True, nogil=True, fastmath={'reassoc', 'contract'}, inline="always")
def _accumulate_density(i, first, index, vectors, spec, h, values_ln, derivs_ln, centre,
                        l_max, norm, centre_weight, acc, Y, Q, C, S, g_flat, u):
    """Density coefficients of atom i into acc (S, L2, n_max), n fastest (Eq. 8).

    Y, Q, C, S, g_flat (l_max+1)·n_max, u (3,) are scratch arrays."""
    n_max = acc.shape[2]
    g = g_flat.reshape((l_max + 1, n_max))
    acc[:] = 0.0
    y00 = 0.5 / math.sqrt(math.pi)
    for n in range(n_max):
        acc[spec[i], 0, n] += centre_weight * centre[n] * y00
    for k in range(first[i], first[i + 1]):
        d = math.sqrt(vectors[k, 0] ** 2 + vectors[k, 1] ** 2 + vectors[k, 2] ** 2)
        for a in range(3):
            u[a] = vectors[k, a] / d
        radial_integral_ln(d, h, values_ln, derivs_ln, g_flat, g_flat, False)
        real_spherical_harmonics_values(u, l_max, norm, Y, Q, C, S)
        A = acc[spec[index[k]]]
        for l in range(l_max + 1):
            gl = g[l]
            for lm in range(l * l, (l + 1) * (l + 1)):
                y = Y[lm]
                row = A[lm]
                for n in range(n_max):
                    row[n] += y * gl[n]


@njit(cache=True, nogil=True)
def _coefficients_by_lm(c, i, cT):
    """cT[lm, s·n_max + n] = c[i, s, n, lm]: atom i's coefficients, (species, n) fastest."""
    n_max = c.shape[2]
    for s in range(c.shape[1]):
        for n in range(n_max):
            for lm in range(c.shape[3]):
                cT[lm, s * n_max + n] = c[i, s, n, lm]


@njit(cache=True, nogil=True, fastmath={'reassoc', 'contract'}, inline="always")
def _spectrum_row(cT, G, n_max, f_s1, f_s2, f_n1, f_n2, f_l, f_w, p_row):
    """One atom's power spectrum (Eq. 9) into p_row from cT (L2, S·n_max); returns |p|².

    The Gram matrices G_l[a, b] = Σ_m c_{a,lm} c_{b,lm} (scratch G (l_max+1, W, W)) are
    built as sums of outer products (full rows: a fixed, vectorisable innermost loop),
    then the a ≤ b entries are gathered into the features."""
    W = cT.shape[1]
    G[:] = 0.0
    for l in range(G.shape[0]):
        Gl = G[l]
        for lm in range(l * l, (l + 1) * (l + 1)):
            row = cT[lm]
            for a in range(W):
                va = row[a]
                Ga = Gl[a]
                for b in range(W):
                    Ga[b] += va * row[b]
    sq = 0.0
    for f in range(f_w.shape[0]):
        v = f_w[f] * G[f_l[f], f_s1[f] * n_max + f_n1[f], f_s2[f] * n_max + f_n2[f]]
        p_row[f] = v
        sq += v * v
    return sq


@njit(cache=True, parallel=True, fastmath={'reassoc', 'contract'})
def expansion(first, index, vectors, spec, n_species, h, values_ln, derivs_ln, centre, l_max,
              norm, centre_weight):
    """Density expansion coefficients c (n_atoms, n_species, n_max, (l_max+1)²).

    first, index, vectors : CSR neighbour list (vectors r_ij in Å, |r_ij| < cutoff).
    spec : (n_atoms,) species index of every atom.  h, values_ln, derivs_ln : radial table in the
    flat (n_grid, (l_max+1)·n_max) layout of :func:`.radial.transposed_table`.
    Each centre accumulates in an (S, L2, n_max) buffer so that the innermost loop
    runs over n (contiguous, vectorised), and is written out once.
    """
    n_atoms = first.shape[0] - 1
    n_max = values_ln.shape[1] // (l_max + 1)
    L2 = (l_max + 1) * (l_max + 1)
    c = np.empty((n_atoms, n_species, n_max, L2))
    for i in prange(n_atoms):
        Y = np.empty(L2)
        Q = np.empty((l_max + 1, l_max + 1))
        C = np.empty(l_max + 1)
        S = np.empty(l_max + 1)
        g_flat = np.empty((l_max + 1) * n_max)
        u = np.empty(3)
        acc = np.empty((n_species, L2, n_max))
        _accumulate_density(i, first, index, vectors, spec, h, values_ln, derivs_ln, centre,
                            l_max, norm, centre_weight, acc, Y, Q, C, S, g_flat, u)
        for s in range(n_species):
            for n in range(n_max):
                for lm in range(L2):
                    c[i, s, n, lm] = acc[s, lm, n]
    return c


@njit(cache=True, parallel=True, fastmath={'reassoc', 'contract'})
def power_spectrum(c, f_s1, f_s2, f_n1, f_n2, f_l, f_w):
    """Unnormalised power spectrum p (n_atoms, D) from c; feature f couples
    (f_s1, f_n1) with (f_s2, f_n2) at angular channel f_l with weight f_w (Eq. 9);
    per atom through :func:`_spectrum_row`."""
    n_atoms = c.shape[0]
    n_max = c.shape[2]
    L2 = c.shape[3]
    W = c.shape[1] * n_max
    lp = int(round(math.sqrt(L2)))
    p = np.empty((n_atoms, f_w.shape[0]))
    for i in prange(n_atoms):
        cT = np.empty((L2, W))
        G = np.empty((lp, W, W))
        _coefficients_by_lm(c, i, cT)
        _spectrum_row(cT, G, n_max, f_s1, f_s2, f_n1, f_n2, f_l, f_w, p[i])
    return p


@njit(cache=True, parallel=True, fastmath={'reassoc', 'contract'})
def features_fused(first, index, vectors, spec, n_species, h, values_ln, derivs_ln, centre,
                   l_max, norm, centre_weight, f_s1, f_s2, f_n1, f_n2, f_l, f_w, normalize):
    """Features only: :func:`expansion` and :func:`power_spectrum` fused per atom.

    c_i lives in a per-thread buffer and never goes to memory, so no
    (n_atoms, S, n_max, L2) array is allocated. Returns (p, |p|) as
    :func:`power_spectrum` (p normalised when ``normalize``)."""
    n_atoms = first.shape[0] - 1
    n_max = values_ln.shape[1] // (l_max + 1)
    L2 = (l_max + 1) * (l_max + 1)
    lp = l_max + 1
    W = n_species * n_max
    D = f_w.shape[0]
    p = np.empty((n_atoms, D))
    pnorm = np.empty(n_atoms)
    for i in prange(n_atoms):
        Y = np.empty(L2)
        Q = np.empty((lp, lp))
        C = np.empty(lp)
        S = np.empty(lp)
        g_flat = np.empty(lp * n_max)
        u = np.empty(3)
        acc = np.empty((n_species, L2, n_max))
        cT = np.empty((L2, W))
        G = np.empty((lp, W, W))
        _accumulate_density(i, first, index, vectors, spec, h, values_ln, derivs_ln, centre,
                            l_max, norm, centre_weight, acc, Y, Q, C, S, g_flat, u)
        for s in range(n_species):
            for lm in range(L2):
                src = acc[s, lm]
                dst = cT[lm]
                for n in range(n_max):
                    dst[s * n_max + n] = src[n]
        nrm = math.sqrt(_spectrum_row(cT, G, n_max, f_s1, f_s2, f_n1, f_n2, f_l, f_w, p[i]))
        pnorm[i] = nrm
        if normalize and nrm > 0.0:
            inv = 1.0 / nrm
            for f in range(D):
                p[i, f] *= inv
    return p, pnorm


@njit(cache=True, nogil=True)
def _pair_expansion_gradient(vec, h, values, derivs, l_max, norm, g, dg, Y, dY, Q, dQ, C, S,
                             u, dC):
    """∂/∂r_ij of g_nl(r_ij) Y_lm(r̂_ij) into dC (3, n_max, L2); also fills g, dg, Y."""
    d = math.sqrt(vec[0] ** 2 + vec[1] ** 2 + vec[2] ** 2)
    inv = 1.0 / d
    for a in range(3):
        u[a] = vec[a] * inv
    radial_integral(d, h, values, derivs, g, dg)
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
def _pair_spectrum_gradient(dC, ciT, sj, T, f_s1, f_s2, f_n1, f_n2, f_l, f_w, feats, dp):
    """dp[:, q] = ∂p_{feats[q]}/∂r_ij from dC (3, n_max, L2) = ∂c^{sj}/∂r_ij and c_i.

    ``feats`` lists the features involving species sj (all others have zero gradient).

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
        for a in range(3):
            acc = 0.0
            if s1 == sj:
                acc += T[a, n1, l, s2 * n_max + n2]
            if s2 == sj:
                acc += T[a, n2, l, s1 * n_max + n1]
            dp[a, q] = w * acc


@njit(cache=True, parallel=True, fastmath={'reassoc', 'contract'})
def power_spectrum_gradients(first, index, vectors, spec, c, p, pnorm, h, values, derivs,
                             l_max, norm, f_s1, f_s2, f_n1, f_n2, f_l, f_w, sf_first, sf_index,
                             gfirst, pair_slot, centre_slot, normalize, with_strain=True):
    """Forward-mode gradients of the (normalised) power spectrum.

    Returns ``grad`` (n_gpairs, 3, D) with grad[s] = ∂p̂_i/∂r_j for slot s of the
    centre i (slots gfirst[i]:gfirst[i+1], one per distinct atom j, images summed,
    including j = i at centre_slot[i]), and ``strain`` (n_atoms, 3, 3, D) =
    ∂p̂_i/∂ε_ab (shape (0, 3, 3, D) when ``with_strain`` is False: position gradients
    only, which saves a third of the work). ``pair_slot[k]`` is the slot of
    neighbour-list entry k.

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
            _coefficients_by_lm(c, i, ciT)
            ic = centre_slot[i] - g0
            for k in range(first[i], first[i + 1]):
                _pair_expansion_gradient(vectors[k], h, values, derivs, l_max, norm, g, dg, Y,
                                         dY, Q, dQ, C, S, u, dC)
                sj = spec[index[k]]
                feats = sf_index[sf_first[sj]:sf_first[sj + 1]]
                _pair_spectrum_gradient(dC, ciT, sj, T, f_s1, f_s2, f_n1, f_n2, f_l, f_w, feats,
                                        dp)
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


@njit(cache=True, parallel=True, fastmath={'reassoc', 'contract'})
def backward_pairs(first, index, vectors, spec, c, p, pnorm, dE_dp, h, values_ln, derivs_ln,
                   l_max, norm, f_s1, f_s2, f_n1, f_n2, f_l, f_w, normalize):
    """Reverse mode: pair terms t_k = ∂ε_i/∂r_ij (n_pairs, 3) from w_i = ∂ε_i/∂p̂_i.

    ``p`` is the normalised spectrum when ``normalize`` (p̂, with norms ``pnorm``).
    Forces follow as F_j -= t_k, F_i += t_k; ∂E/∂ε_ab = Σ_k t_k,a r_k,b.
    Radial table in the flat layout of :func:`.radial.transposed_table`; ∂ε_i/∂c_i is held as
    (L2, S·n_max) so the per-pair contractions run over contiguous n.
    """
    n_atoms = first.shape[0] - 1
    n_max = values_ln.shape[1] // (l_max + 1)
    n_species = c.shape[1]
    L2 = (l_max + 1) * (l_max + 1)
    D = f_w.shape[0]
    W = n_species * n_max
    out = np.empty((vectors.shape[0], 3))
    for i in prange(n_atoms):
        Q = np.empty((l_max + 1, l_max + 1))
        dQ = np.empty((l_max + 1, l_max + 1))
        C = np.empty(l_max + 1)
        S = np.empty(l_max + 1)
        g_flat = np.empty((l_max + 1) * n_max)
        dg_flat = np.empty((l_max + 1) * n_max)
        g = g_flat.reshape((l_max + 1, n_max))
        dg = dg_flat.reshape((l_max + 1, n_max))
        u = np.empty(3)
        B = np.empty(L2)
        Ar = np.empty(L2)
        tg = np.empty(3)
        gp = np.empty(D)
        H = np.empty((l_max + 1, W, W))
        cT = np.empty((L2, W))
        Gc = np.empty((L2, W))
        # back through the normalisation
        if normalize:
            dot = 0.0
            for f in range(D):
                dot += p[i, f] * dE_dp[i, f]
            inv = 1.0 / pnorm[i]
            for f in range(D):
                gp[f] = (dE_dp[i, f] - p[i, f] * dot) * inv
        else:
            for f in range(D):
                gp[f] = dE_dp[i, f]
        # back through the power spectrum: with the symmetric weights H_l[a, b] of the
        # flattened (species, n) index, ∂ε_i/∂c_i[a, lm] = Σ_b H_l[a, b] c_i[b, lm];
        # Gc[lm, a] holds it (a = s·n_max + n), built from contiguous row updates
        H.fill(0.0)
        for f in range(D):
            l = f_l[f]
            a1 = f_s1[f] * n_max + f_n1[f]
            a2 = f_s2[f] * n_max + f_n2[f]
            wf = f_w[f] * gp[f]
            H[l, a1, a2] += wf
            H[l, a2, a1] += wf
        _coefficients_by_lm(c, i, cT)
        Gc.fill(0.0)
        for l in range(l_max + 1):
            Hl = H[l]
            for lm in range(l * l, (l + 1) * (l + 1)):
                crow = cT[lm]
                out_row = Gc[lm]
                for b in range(W):
                    cb = crow[b]
                    Hb = Hl[b]
                    for a in range(W):
                        out_row[a] += cb * Hb[a]
        # back to every pair: t = Σ_nlm Gc (g' u Y + g ∇Y)
        for k in range(first[i], first[i + 1]):
            d = math.sqrt(vectors[k, 0] ** 2 + vectors[k, 1] ** 2 + vectors[k, 2] ** 2)
            inv_d = 1.0 / d
            for a in range(3):
                u[a] = vectors[k, a] * inv_d
            radial_integral_ln(d, h, values_ln, derivs_ln, g_flat, dg_flat, True)
            off = spec[index[k]] * n_max
            for l in range(l_max + 1):
                gl = g[l]
                dgl = dg[l]
                for lm in range(l * l, (l + 1) * (l + 1)):
                    row = Gc[lm, off:off + n_max]
                    b = 0.0
                    a = 0.0
                    for n in range(n_max):
                        b += row[n] * gl[n]
                        a += row[n] * dgl[n]
                    B[lm] = b
                    Ar[lm] = a
            # radial part Σ_lm A_lm Y_lm and angular part Σ_lm B_lm ∇f_lm in one sweep
            # of the harmonics recursion; ∇_r Y = (∇f - u(u·∇f))/d
            radial_part = harmonics_contract(u, l_max, norm, Ar, B, Q, dQ, C, S, tg)
            t0 = tg[0]
            t1 = tg[1]
            t2 = tg[2]
            ud = u[0] * t0 + u[1] * t1 + u[2] * t2
            out[k, 0] = radial_part * u[0] + (t0 - u[0] * ud) * inv_d
            out[k, 1] = radial_part * u[1] + (t1 - u[1] * ud) * inv_d
            out[k, 2] = radial_part * u[2] + (t2 - u[2] * ud) * inv_d
    return out


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
    cutoff_width : width of the cosine switch below r_c (Å).
    radial_basis : "gto".  normalize : unit-length spectrum (default True).
    centre_weight : weight of the central atom in its own density (gap_fit: 1).
    """

    name = "soap"

    def __init__(self, species, cutoff=5.0, n_max=8, l_max=6, atom_sigma=0.5,
                 cutoff_width=0.5, radial_basis="gto", normalize=True, centre_weight=1.0):
        self.species = SpeciesMap(species)
        check_cutoff(cutoff, cutoff_width)
        if int(n_max) < 1 or not 0 <= int(l_max) <= 100:
            raise ValueError(f"need n_max >= 1 and 0 <= l_max <= 100, got {n_max}, {l_max}")
        if not atom_sigma > 0:
            raise ValueError(f"atom_sigma must be > 0, got {atom_sigma}")
        self.cutoff = float(cutoff)
        self.n_max = int(n_max)
        self.l_max = int(l_max)
        self.atom_sigma = float(atom_sigma)
        self.cutoff_width = float(cutoff_width)
        self.radial_basis = radial_basis
        self.normalize = bool(normalize)
        self.centre_weight = float(centre_weight)
        self._table = radial_table(self.cutoff, self.n_max, self.l_max, self.atom_sigma,
                                   self.cutoff_width, radial_basis)
        self._norm = normalisation(self.l_max)
        self._features = _feature_index(len(self.species), self.n_max, self.l_max)
        self._species_features = _species_feature_lists(self._features, len(self.species))

    # -- bookkeeping -----------------------------------------------------------
    @property
    def n_features(self) -> int:
        return int(self._features[0].shape[0])

    def to_dict(self) -> dict:
        return {"name": self.name, "species": self.species.numbers.tolist(),
                "cutoff": self.cutoff, "n_max": self.n_max, "l_max": self.l_max,
                "atom_sigma": self.atom_sigma, "cutoff_width": self.cutoff_width,
                "radial_basis": self.radial_basis, "normalize": self.normalize,
                "centre_weight": self.centre_weight}

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
                         self.centre_weight)

    def features(self, env: Environment) -> np.ndarray:
        """Features of an environment without keeping the expansion (fused kernel)."""
        h, values_ln, derivs_ln = self._table_ln
        p, pnorm = features_fused(env.first, env.index, env.vectors, env.spec,
                                  len(self.species), h, values_ln, derivs_ln, self._table[3],
                                  self.l_max, self._norm, self.centre_weight, *self._features,
                                  self.normalize)
        self._check_norms(pnorm)
        return p

    def spectrum(self, c):
        """(p̂, |p|) from expansion coefficients; p̂ = p when normalize is False."""
        p = power_spectrum(c, *self._features)
        pnorm = np.sqrt(np.einsum("ij,ij->i", p, p))
        self._check_norms(pnorm)
        if self.normalize:
            p /= pnorm[:, None]          # in place: no second (n_atoms × D) array
        return p, pnorm

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
        if not gradients:
            return self.features(env)
        c = self.expand(env)
        p, pnorm = self.spectrum(c)
        return p, self.gradients(env, c, p, pnorm, strain=strain)

    def gradients(self, env, c, p, pnorm, strain=True) -> DescriptorGradients:
        h, values, derivs, _ = self._table
        gfirst, gindex, pair_slot, centre_slot = gradient_slots(env.first, env.index)
        grad, st = power_spectrum_gradients(
            env.first, env.index, env.vectors, env.spec, c, p, pnorm, h, values, derivs,
            self.l_max, self._norm, *self._features, *self._species_features, gfirst, pair_slot,
            centre_slot, self.normalize, bool(strain))
        centres = np.repeat(np.arange(env.n_atoms), np.diff(gfirst))
        return DescriptorGradients(np.stack([centres, gindex], axis=1), grad,
                                   st if strain else None)

    def backward(self, env, c, p, pnorm, dE_dp) -> np.ndarray:
        """Pair terms ∂ε_i/∂r_ij (n_pairs, 3) for w_i = ∂ε_i/∂p̂_i given as dE_dp (n_atoms, D)."""
        h, values_ln, derivs_ln = self._table_ln
        return backward_pairs(env.first, env.index, env.vectors, env.spec, c, p, pnorm,
                              np.ascontiguousarray(dE_dp), h, values_ln, derivs_ln, self.l_max,
                              self._norm, *self._features, self.normalize)


def _species_feature_lists(features, n_species):
    """CSR (first (S+1,), index) of the features that involve each species."""
    s1, s2 = features[0], features[1]
    lists = [np.flatnonzero((s1 == s) | (s2 == s)) for s in range(n_species)]
    first = np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)
    return first, np.concatenate(lists).astype(np.int64)


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
