"""Terms of imported gap_fit models besides SOAP: distance_2b, angle_3b, distance_Nb, Glue.

Each class here is a term of :class:`~gapcalc.potential.Potential` (``kind``, ``cutoff``,
``local_energies(env, gradients)`` → (ε (n_centres,) eV, t = ∂E/∂r_ij (n_pairs, 3) eV/Å),
``to_record`` / ``from_record``), implemented from the project's notes on GAP model files
(gap_xml.md §2-3): the mathematics only, no code of GAP or QUIP.

Descriptor instances and their energies (w: covariance-cutoff weight, e(x) = Σ_m α_m k(x, x_m)):

* distance_2b — one instance per ordered pair (i, j), x = r^exponents, w = f_c(r) [tail];
  ε_i = Σ_j w e(x) (each atom of a pair gets the whole w e of its ordered instance, i.e.
  half of the unordered pair's 2 w e, as QUIP's per-atom energies).
* angle_3b — centre i and every ordered pair of different neighbours (j, k),
  x = (r_ij + r_ik, (r_ij − r_ik)², |r_ij − r_ik|), w = f_c(r_ij) f_c(r_ik); ε_i = Σ w e.
* distance_Nb (compact clusters, one species) — centre i plus every set of order−1 distinct
  neighbours with r ≤ r_c, x = all pairwise distances, w = Π f_c(r_ij); ε_i = Σ w e
  (QUIP shares each cluster's energy equally among its atoms instead: totals, forces and
  virials are the same, per-atom energies differ for order ≥ 3).
* Glue (QUIP's ``IP Glue``, an EAM form) — ε_i = F_{t_i}(ρ_i) + ½ Σ_j φ_{t_i t_j}(r_ij),
  ρ_i = Σ_j g_{t_j}(r_ij), cubic splines extrapolated linearly.
* soap without ``species_Z`` in a multi-element model (every element in one neighbour
  channel) — :class:`PooledSpeciesTerm`, a kernel term on a pooled-species environment.

Covariances (``CovarianceARD``) on instance vectors x (d,), sparse points x_m, weights
c_m (``sparseCutoff``) and permutations p of the components:

* ard_se: k̃(a, b) = exp(−½ Σ_k ((a_k − b_k)/θ_k)²);
* pp (piecewise polynomial, q = 1): k̃ = (1 − r)^{j+1} ((j+1) r + 1) for r < 1, 0 beyond,
  r² = Σ_k ((a_k − b_k)/θ_k)², j = ⌊d/2⌋ + 2;
* k(x, x_m) = [δ² Σ_p k̃(x_m[p], x) / √(K_mm K_xx) + f0²] c_m with K_xx = Σ_p k̃(x[p], x)
  (with one identity permutation K = 1: the plain [δ² k̃ + f0²] c_m).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .descriptors.species import SpeciesMap
from .potential import Term, register_term

KINDS = {"ard_se": -1, "pp": 0}


# --------------------------------------------------------------------------- kernels
@njit(cache=True, nogil=True)
def cutoff_switch(r, cutoff, width):
    """(f_c, df_c/dr) of the cosine switch over the last ``width`` Å below ``cutoff``:
    1 for r ≤ r_c − w, ½[1 + cos(π (r − r_c + w)/w)] inside the switch, 0 for r > r_c."""
    if r > cutoff:
        return 0.0, 0.0
    if width <= 0.0 or r <= cutoff - width:
        return 1.0, 0.0
    z = math.pi * (r - cutoff + width) / width
    return 0.5 * (1.0 + math.cos(z)), -0.5 * math.pi / width * math.sin(z)


@njit(cache=True, nogil=True)
def _unit_kernel(r2, pp_j):
    """(k̃, s) for a scaled squared distance r²: ard_se (pp_j < 0) or pp of order j,
    with s defined by ∂k̃(a, b)/∂b_k = s (a_k − b_k)/θ_k² (dimensionless)."""
    if pp_j < 0:
        g = math.exp(-0.5 * r2)
        return g, g
    r = math.sqrt(r2)
    if r >= 1.0:
        return 0.0, 0.0
    om = 1.0 - r
    omj = om ** pp_j
    return omj * om * ((pp_j + 1) * r + 1.0), (pp_j + 1) * (pp_j + 2) * omj


@njit(cache=True, nogil=True)
def covariance_energy(x, X, coef, inv_theta2, delta2, f0_sum, perms, kmm_isqrt, pp_j,
                      normalised, grad, work, with_grad):
    """e(x) = Σ_m coef_m k(x, x_m) in eV, and ∂e/∂x into ``grad`` (d,) when ``with_grad``.

    x (d,) instance vector; X (M, d) sparse points; coef (M,) = α_m c_m (eV);
    inv_theta2 (d,) = 1/θ²; delta2 = δ²; f0_sum = f0² Σ_m coef_m; perms (P, d) 0-based;
    kmm_isqrt (M,) = 1/√K_mm; ``normalised`` selects the permutation-normalised form;
    work (d,) scratch."""
    d = x.shape[0]
    M = X.shape[0]
    if with_grad:
        for q in range(d):
            grad[q] = 0.0
    if not normalised:
        e = f0_sum
        for m in range(M):
            r2 = 0.0
            for q in range(d):
                u = X[m, q] - x[q]
                r2 += u * u * inv_theta2[q]
            g, s = _unit_kernel(r2, pp_j)
            e += delta2 * coef[m] * g
            if with_grad and s != 0.0:
                f = delta2 * coef[m] * s
                for q in range(d):
                    grad[q] += f * (X[m, q] - x[q]) * inv_theta2[q]
        return e
    P = perms.shape[0]
    # K_xx = Σ_p k̃(x[p], x) and its gradient (into work)
    kxx = 0.0
    if with_grad:
        for q in range(d):
            work[q] = 0.0
    for p in range(P):
        r2 = 0.0
        for q in range(d):
            u = x[perms[p, q]] - x[q]
            r2 += u * u * inv_theta2[q]
        g, s = _unit_kernel(r2, pp_j)
        kxx += g
        if with_grad and s != 0.0:
            for q in range(d):
                c = s * (x[perms[p, q]] - x[q]) * inv_theta2[q]
                work[perms[p, q]] -= c
                work[q] += c
    ssum = 0.0
    for m in range(M):
        cm = coef[m] * kmm_isqrt[m]
        for p in range(P):
            r2 = 0.0
            for q in range(d):
                u = X[m, perms[p, q]] - x[q]
                r2 += u * u * inv_theta2[q]
            g, s = _unit_kernel(r2, pp_j)
            ssum += cm * g
            if with_grad and s != 0.0:
                f = cm * s
                for q in range(d):
                    grad[q] += f * (X[m, perms[p, q]] - x[q]) * inv_theta2[q]
    inv = 1.0 / math.sqrt(kxx)
    if with_grad:
        c3 = 0.5 * ssum * inv * inv * inv
        for q in range(d):
            grad[q] = delta2 * (grad[q] * inv - c3 * work[q])
    return f0_sum + delta2 * ssum * inv


@njit(cache=True, nogil=True)
def _pair_energy(r, exponents, cov, x, gx, work, gradients):
    """(e, de/dr) of a distance_2b instance at distance r (Å): e(x) with x = r^exponents."""
    X, coef, inv_theta2, delta2, f0_sum, perms, kmm_isqrt, pp_j, normalised = cov
    d = exponents.shape[0]
    for q in range(d):
        x[q] = r if exponents[q] == 1.0 else r ** exponents[q]
    e = covariance_energy(x, X, coef, inv_theta2, delta2, f0_sum, perms, kmm_isqrt, pp_j,
                          normalised, gx, work, gradients)
    de = 0.0
    if gradients:
        for q in range(d):
            dx = 1.0 if exponents[q] == 1.0 else exponents[q] * r ** (exponents[q] - 1.0)
            de += gx[q] * dx
    return e, de


def se_pair_curve(rs, power, X, coef, theta, delta2, f0_sum):
    """e(r), e'(r), e''(r) (n, 3) of a one-dimensional ard_se distance_2b covariance,
    e = f0_sum + δ² Σ_m coef_m exp(−(x − x_m)²/2θ²) with x = r^power, summed in extended
    precision (np.longdouble) so that the float64 result is correctly rounded even when
    the α_m cancel (tables built from it then carry no summation noise)."""
    ld = np.longdouble
    r = np.asarray(rs, dtype=ld)[:, None]
    p = ld(power)
    if power == 1.0:
        x, x1, x2 = r, ld(1), ld(0)
    else:
        x, x1, x2 = r ** p, p * r ** (p - 1), p * (p - 1) * r ** (p - 2)
    it2 = 1 / ld(theta) ** 2
    u = (x - np.asarray(X[:, 0], dtype=ld)[None, :]) * it2
    g = np.asarray(coef, dtype=ld)[None, :] * np.exp(-0.5 * u * u / it2)
    e = g.sum(axis=1)
    d1 = -(g * u).sum(axis=1)
    d2 = (g * (u * u - it2)).sum(axis=1)
    d = ld(delta2)
    x1 = np.broadcast_to(x1, r.shape)[:, 0]
    x2 = np.broadcast_to(x2, r.shape)[:, 0]
    out = np.stack([ld(f0_sum) + d * e, d * d1 * x1, d * (d2 * x1 * x1 + d1 * x2)], axis=1)
    return np.ascontiguousarray(out.astype(np.float64))


@njit(cache=True, nogil=True)
def _hermite_curve(r, r_lo, h, table):
    """(f, df/dr) of the quintic Hermite interpolant of table (n, 3) = (f, f', f'') at the
    nodes r_lo + k h (Å)."""
    u = (r - r_lo) / h
    k = min(int(u), table.shape[0] - 2)
    t = u - k
    t2 = t * t
    t3 = t2 * t
    t4 = t3 * t
    t5 = t4 * t
    f0, d0, s0 = table[k, 0], table[k, 1] * h, table[k, 2] * h * h
    f1, d1, s1 = table[k + 1, 0], table[k + 1, 1] * h, table[k + 1, 2] * h * h
    f = (f0 * (1 - 10 * t3 + 15 * t4 - 6 * t5) + d0 * (t - 6 * t3 + 8 * t4 - 3 * t5)
         + s0 * (0.5 * t2 - 1.5 * t3 + 1.5 * t4 - 0.5 * t5)
         + f1 * (10 * t3 - 15 * t4 + 6 * t5) + d1 * (-4 * t3 + 7 * t4 - 3 * t5)
         + s1 * (0.5 * t3 - t4 + 0.5 * t5))
    df = ((f1 - f0) * (30 * t2 - 60 * t3 + 30 * t4) + d0 * (1 - 18 * t2 + 32 * t3 - 15 * t4)
          + s0 * (t - 4.5 * t2 + 6 * t3 - 2.5 * t4) + d1 * (-12 * t2 + 28 * t3 - 15 * t4)
          + s1 * (1.5 * t2 - 4 * t3 + 2.5 * t4))
    return f, df / h


@njit(cache=True, nogil=True)
def distance_2b_local(first, index, vectors, spec, pair_ok, cutoff, width, exponents,
                      tail_range, tail_exponent, cov, table, gradients):
    """distance_2b: ε_i = Σ_j w(r_ij) e(r_ij^exponents) (n_centres,) eV and, with
    ``gradients``, t_k = ∂ε_i/∂r_ij (n_pairs, 3) eV/Å. pair_ok (S, S): species filter.
    table = (r_lo, h, curve (n, 3)): e(r), e', e'' tabulated for r ≥ r_lo (n = 0: none)."""
    r_lo, h, curve = table
    use_table = curve.shape[0] > 1
    n = first.shape[0] - 1
    d = exponents.shape[0]
    eps = np.zeros(n)
    t = np.zeros((index.shape[0], 3))
    x = np.empty(d)
    gx = np.empty(d)
    work = np.empty(d)
    for i in range(n):
        si = spec[i]
        for k in range(first[i], first[i + 1]):
            if not pair_ok[si, spec[index[k]]]:
                continue
            r = math.sqrt(vectors[k, 0] ** 2 + vectors[k, 1] ** 2 + vectors[k, 2] ** 2)
            if r >= cutoff:
                continue
            w, dw = cutoff_switch(r, cutoff, width)
            if tail_exponent != 0.0:
                ef = math.erf(tail_range * r) / r
                def_ = (2.0 * tail_range / math.sqrt(math.pi) * math.exp(-(tail_range * r) ** 2)
                        - ef) / r
                tw = ef ** tail_exponent
                dw = dw * tw + w * tail_exponent * ef ** (tail_exponent - 1.0) * def_
                w = w * tw
            if use_table and r >= r_lo:
                e, de = _hermite_curve(r, r_lo, h, curve)
            else:
                e, de = _pair_energy(r, exponents, cov, x, gx, work, gradients)
            eps[i] += w * e
            if gradients:
                g = (dw * e + w * de) / r
                for a in range(3):
                    t[k, a] = g * vectors[k, a]
    return eps, t


@njit(cache=True, nogil=True)
def angle_3b_local(first, index, vectors, spec, centre_ok, pair_ok, cutoff, width, cov,
                   gradients):
    """angle_3b: ε_i = Σ_{(j,k) ordered, j≠k} f_c(r_ij) f_c(r_ik) e(x_ijk) (n_centres,) eV,
    x = (r_ij + r_ik, (r_ij − r_ik)², |r_ij − r_ik|); t (n_pairs, 3) eV/Å.
    centre_ok (S,), pair_ok (S, S) (symmetric): species filters."""
    X, coef, inv_theta2, delta2, f0_sum, perms, kmm_isqrt, pp_j, normalised = cov
    n = first.shape[0] - 1
    eps = np.zeros(n)
    t = np.zeros((index.shape[0], 3))
    x = np.empty(3)
    gx = np.empty(3)
    work = np.empty(3)
    for i in range(n):
        if not centre_ok[spec[i]]:
            continue
        for a in range(first[i], first[i + 1]):
            ra = math.sqrt(vectors[a, 0] ** 2 + vectors[a, 1] ** 2 + vectors[a, 2] ** 2)
            if ra >= cutoff:
                continue
            fa, dfa = cutoff_switch(ra, cutoff, width)
            sa = spec[index[a]]
            # unordered pairs (a, b), b after a, counted twice: (j,k) and (k,j) are equal
            for b in range(a + 1, first[i + 1]):
                if not pair_ok[sa, spec[index[b]]]:
                    continue
                rb = math.sqrt(vectors[b, 0] ** 2 + vectors[b, 1] ** 2 + vectors[b, 2] ** 2)
                if rb >= cutoff:
                    continue
                fb, dfb = cutoff_switch(rb, cutoff, width)
                dx0 = vectors[a, 0] - vectors[b, 0]
                dx1 = vectors[a, 1] - vectors[b, 1]
                dx2 = vectors[a, 2] - vectors[b, 2]
                rab = math.sqrt(dx0 * dx0 + dx1 * dx1 + dx2 * dx2)
                x[0] = ra + rb
                x[1] = (ra - rb) ** 2
                x[2] = rab
                e = covariance_energy(x, X, coef, inv_theta2, delta2, f0_sum, perms,
                                      kmm_isqrt, pp_j, normalised, gx, work, gradients)
                w = fa * fb
                eps[i] += 2.0 * w * e
                if gradients:
                    # ∂/∂r_a and ∂/∂r_b of 2 w e; radial parts along r̂, x3 along r_a − r_b
                    ga = 2.0 * (dfa * fb * e + w * (gx[0] + 2.0 * (ra - rb) * gx[1])) / ra
                    gb = 2.0 * (fa * dfb * e + w * (gx[0] - 2.0 * (ra - rb) * gx[1])) / rb
                    g3 = 2.0 * w * gx[2] / rab
                    t[a, 0] += ga * vectors[a, 0] + g3 * dx0
                    t[a, 1] += ga * vectors[a, 1] + g3 * dx1
                    t[a, 2] += ga * vectors[a, 2] + g3 * dx2
                    t[b, 0] += gb * vectors[b, 0] - g3 * dx0
                    t[b, 1] += gb * vectors[b, 1] - g3 * dx1
                    t[b, 2] += gb * vectors[b, 2] - g3 * dx2
    return eps, t


@njit(cache=True, nogil=True)
def distance_nb_local(first, index, vectors, spec, centre_ok, neighbour_ok, order, cutoff,
                      width, cov, gradients):
    """distance_Nb (compact clusters): ε_i = Σ_clusters Π_a f_c(r_ia) e(x) over every set of
    order−1 distinct neighbour entries of i with r ≤ cutoff; x = the pairwise distances of
    (i, a_1, …) in the order (0,1), (0,2), …, (1,2), …; t (n_pairs, 3) eV/Å."""
    X, coef, inv_theta2, delta2, f0_sum, perms, kmm_isqrt, pp_j, normalised = cov
    n = first.shape[0] - 1
    nn = order - 1
    d = order * (order - 1) // 2
    eps = np.zeros(n)
    t = np.zeros((index.shape[0], 3))
    x = np.empty(d)
    gx = np.empty(d)
    work = np.empty(d)
    pts = np.zeros((order, 3))
    fc = np.empty(order)
    dfc = np.empty(order)
    comb = np.empty(max(nn, 1), dtype=np.int64)
    for i in range(n):
        if not centre_ok[spec[i]]:
            continue
        cand = np.empty(first[i + 1] - first[i], dtype=np.int64)
        nc = 0
        for k in range(first[i], first[i + 1]):
            if not neighbour_ok[spec[index[k]]]:
                continue
            r = math.sqrt(vectors[k, 0] ** 2 + vectors[k, 1] ** 2 + vectors[k, 2] ** 2)
            if r <= cutoff:
                cand[nc] = k
                nc += 1
        if nc < nn:
            continue
        for a in range(nn):
            comb[a] = a
        while True:
            w = 1.0
            for a in range(nn):
                k = cand[comb[a]]
                for c in range(3):
                    pts[a + 1, c] = vectors[k, c]
                r = math.sqrt(vectors[k, 0] ** 2 + vectors[k, 1] ** 2 + vectors[k, 2] ** 2)
                fc[a + 1], dfc[a + 1] = cutoff_switch(r, cutoff, width)
                w *= fc[a + 1]
            q = 0
            for a in range(order):
                for b in range(a + 1, order):
                    x[q] = math.sqrt((pts[b, 0] - pts[a, 0]) ** 2 + (pts[b, 1] - pts[a, 1]) ** 2
                                     + (pts[b, 2] - pts[a, 2]) ** 2)
                    q += 1
            e = covariance_energy(x, X, coef, inv_theta2, delta2, f0_sum, perms, kmm_isqrt,
                                  pp_j, normalised, gx, work, gradients)
            eps[i] += w * e
            if gradients:
                q = 0
                for a in range(order):
                    for b in range(a + 1, order):
                        g = w * gx[q] / x[q]
                        for c in range(3):
                            u = g * (pts[b, c] - pts[a, c])
                            if b > 0:
                                t[cand[comb[b - 1]], c] += u
                            if a > 0:
                                t[cand[comb[a - 1]], c] -= u
                        q += 1
                for a in range(1, order):
                    other = 1.0
                    for b in range(1, order):
                        if b != a:
                            other *= fc[b]
                    k = cand[comb[a - 1]]
                    r = math.sqrt(pts[a, 0] ** 2 + pts[a, 1] ** 2 + pts[a, 2] ** 2)
                    g = other * dfc[a] * e / r
                    for c in range(3):
                        t[k, c] += g * pts[a, c]
            # next combination of nn out of nc (lexicographic)
            a = nn - 1
            while a >= 0 and comb[a] == nc - nn + a:
                a -= 1
            if a < 0:
                break
            comb[a] += 1
            for b in range(a + 1, nn):
                comb[b] = comb[b - 1] + 1
    return eps, t


@njit(cache=True, nogil=True)
def spline_value(x, knots, values, second, lo, hi):
    """(y, dy/dx) of the cubic spline on knots[lo:hi] (values, second derivatives), linear
    beyond the knots with the spline's end slopes."""
    if x < knots[lo] or x > knots[hi - 1]:
        j = lo if x < knots[lo] else hi - 2
        h = knots[j + 1] - knots[j]
        if x < knots[lo]:
            slope = (values[j + 1] - values[j]) / h - h / 3.0 * second[j] - h / 6.0 * second[j + 1]
            return values[lo] + slope * (x - knots[lo]), slope
        slope = (values[j + 1] - values[j]) / h + h / 6.0 * second[j] + h / 3.0 * second[j + 1]
        return values[hi - 1] + slope * (x - knots[hi - 1]), slope
    a, b = lo, hi - 1
    while b - a > 1:
        mid = (a + b) // 2
        if knots[mid] > x:
            b = mid
        else:
            a = mid
    h = knots[b] - knots[a]
    A = (knots[b] - x) / h
    B = 1.0 - A
    y = A * values[a] + B * values[b] + ((A ** 3 - A) * second[a] + (B ** 3 - B) * second[b]) * h * h / 6.0
    dy = ((values[b] - values[a]) / h - (3.0 * A * A - 1.0) / 6.0 * h * second[a]
          + (3.0 * B * B - 1.0) / 6.0 * h * second[b])
    return y, dy


@njit(cache=True, nogil=True)
def glue_local(first, index, vectors, spec, type_of, dens_cut, dens_coef, dens_spline,
               embed_spline, pair_spline, pair_cut, knots, values, second, offsets, gradients):
    """Glue (EAM): ε_i = F_{t_i}(ρ_i) + ½ Σ_j φ_{t_i t_j}(r_ij), ρ_i = Σ_j g_{t_j}(r_ij).

    type_of (S,) glue type of each species (−1: ignored). Per type t: dens_cut R_t (Å),
    dens_coef c_t of g_t = c_t (R_t − r)³ (used when dens_spline[t] < 0, else that spline),
    embed_spline[t] (−1: no embedding). pair_spline (T, T) spline id (−1: none), pair_cut
    (T, T) its last knot. Splines: knots/values/second[offsets[s]:offsets[s+1]]."""
    n = first.shape[0] - 1
    eps = np.zeros(n)
    t = np.zeros((index.shape[0], 3))
    for i in range(n):
        ti = type_of[spec[i]]
        if ti < 0:
            continue
        rho = 0.0
        for k in range(first[i], first[i + 1]):
            tj = type_of[spec[index[k]]]
            if tj < 0:
                continue
            r = math.sqrt(vectors[k, 0] ** 2 + vectors[k, 1] ** 2 + vectors[k, 2] ** 2)
            if r < dens_cut[tj]:
                s = dens_spline[tj]
                if s < 0:
                    rho += dens_coef[tj] * (dens_cut[tj] - r) ** 3
                else:
                    rho += spline_value(r, knots, values, second, offsets[s], offsets[s + 1])[0]
        dF = 0.0
        s = embed_spline[ti]
        if s >= 0:
            F, dF = spline_value(rho, knots, values, second, offsets[s], offsets[s + 1])
            eps[i] += F
        for k in range(first[i], first[i + 1]):
            tj = type_of[spec[index[k]]]
            if tj < 0:
                continue
            r = math.sqrt(vectors[k, 0] ** 2 + vectors[k, 1] ** 2 + vectors[k, 2] ** 2)
            g = 0.0
            s = pair_spline[ti, tj]
            if s >= 0 and r < pair_cut[ti, tj]:
                phi, dphi = spline_value(r, knots, values, second, offsets[s], offsets[s + 1])
                eps[i] += 0.5 * phi
                g += 0.5 * dphi
            if dF != 0.0 and r < dens_cut[tj]:
                s = dens_spline[tj]
                if s < 0:
                    g -= dF * 3.0 * dens_coef[tj] * (dens_cut[tj] - r) ** 2
                else:
                    g += dF * spline_value(r, knots, values, second, offsets[s],
                                           offsets[s + 1])[1]
            if gradients and g != 0.0:
                g /= r
                for a in range(3):
                    t[k, a] = g * vectors[k, a]
    return eps, t


# --------------------------------------------------------------------------- objects
class CovarianceARD:
    """ard_se / pp covariance of a gap_fit coordinate with its sparse points and weights.

    kind : "ard_se" or "pp".  theta (d,) length scales (descriptor units).  delta : δ (eV,
    the file's signal_variance).  f0 : the file's signal_mean (eV).  perms (P, d) 0-based
    permutations.  X (M, d) sparse points.  alpha (M,) weights.  sparse_cutoff (M,) c_m.
    The prediction is e(x) = Σ_m α_m k(x, x_m) (eV), see the module docstring.
    """

    def __init__(self, kind, theta, delta, f0, perms, X, alpha, sparse_cutoff):
        if kind not in KINDS:
            raise ValueError(f"covariance {kind!r} is not one of {sorted(KINDS)}")
        self.kind = kind
        self.X = np.ascontiguousarray(np.asarray(X, dtype=np.float64).reshape(len(alpha), -1))
        d = self.X.shape[1]
        self.theta = np.ascontiguousarray(theta, dtype=np.float64).reshape(d)
        if not np.all(self.theta > 0):
            raise ValueError(f"theta must be > 0, got {self.theta}")
        self.delta = float(delta)
        self.f0 = float(f0)
        self.perms = np.ascontiguousarray(perms, dtype=np.int64).reshape(-1, d)
        if len(self.perms) == 0 or self.perms.min() < 0 or self.perms.max() >= d:
            raise ValueError(f"permutations must index 0..{d - 1}")
        self.alpha = np.ascontiguousarray(alpha, dtype=np.float64)
        self.sparse_cutoff = np.ascontiguousarray(sparse_cutoff, dtype=np.float64)
        ident = np.arange(d)
        self.normalised = bool(len(self.perms) > 1 or np.any(self.perms[0] != ident))
        pp_j = KINDS[kind] if kind == "ard_se" else d // 2 + 2
        coef = self.alpha * self.sparse_cutoff
        inv_theta2 = 1.0 / self.theta ** 2
        if self.normalised:
            kmm = np.zeros(len(self.X))
            for p in self.perms:
                r2 = (((self.X[:, p] - self.X) ** 2) * inv_theta2).sum(axis=1)
                kmm += _unit_kernel_np(r2, pp_j)
            kmm_isqrt = 1.0 / np.sqrt(kmm)
        else:
            kmm_isqrt = np.ones(len(self.X))
        self._packed = (self.X, coef, inv_theta2, self.delta ** 2,
                        self.f0 ** 2 * float(coef.sum()), self.perms, kmm_isqrt,
                        np.int64(pp_j), self.normalised)

    @property
    def d(self) -> int:
        return self.X.shape[1]

    def energy(self, x):
        """e(x) (n,) and ∂e/∂x (n, d) for instance vectors x (n, d) (for tests and tools)."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        e = np.empty(len(x))
        g = np.empty_like(x)
        work = np.empty(self.d)
        for k in range(len(x)):
            e[k] = covariance_energy(np.ascontiguousarray(x[k]), *self._packed, g[k], work, True)
        return e, g

    def to_record(self):
        rec = {"kind": self.kind, "delta": self.delta, "f0": self.f0}
        arrays = {"X": self.X, "alpha": self.alpha, "sparse_cutoff": self.sparse_cutoff,
                  "theta": self.theta, "perms": self.perms}
        return rec, arrays

    @classmethod
    def from_record(cls, rec, arrays):
        return cls(rec["kind"], arrays["theta"], rec["delta"], rec["f0"], arrays["perms"],
                   arrays["X"], arrays["alpha"], arrays["sparse_cutoff"])

    def describe(self) -> str:
        return (f"{self.kind} δ={self.delta:g} f0={self.f0:g} θ={np.round(self.theta, 6).tolist()}"
                f" M={len(self.X)}" + (f" permutations={len(self.perms)}" if self.normalised
                                         else ""))


def _unit_kernel_np(r2, pp_j):
    if pp_j < 0:
        return np.exp(-0.5 * r2)
    r = np.sqrt(r2)
    return np.where(r < 1.0, np.clip(1.0 - r, 0, None) ** (pp_j + 1) * ((pp_j + 1) * r + 1.0),
                    0.0)


def _species_mask(species: SpeciesMap, Z) -> np.ndarray:
    """(S,) True for species matching Z (0 = any)."""
    return np.array([Z == 0 or z == Z for z in species.numbers.tolist()], dtype=np.bool_)


def _pair_mask(species: SpeciesMap, Z1, Z2) -> np.ndarray:
    """(S, S) symmetric filter (Z_a ≅ Z1 ∧ Z_b ≅ Z2) ∨ (Z_a ≅ Z2 ∧ Z_b ≅ Z1), 0 = any."""
    m1, m2 = _species_mask(species, Z1), _species_mask(species, Z2)
    return np.ascontiguousarray((m1[:, None] & m2[None, :]) | (m2[:, None] & m1[None, :]))


def _symbol(z):
    from ase.data import chemical_symbols
    return "*" if z == 0 else chemical_symbols[z]


class _CovarianceTerm:
    """Shared plumbing of the instance terms: species, covariance, model-file records."""

    kind = ""

    def __init__(self, species, covariance: CovarianceARD, cutoff, cutoff_width, label=""):
        self.species = species if isinstance(species, SpeciesMap) else SpeciesMap(species)
        self.covariance = covariance
        self.cutoff_ = float(cutoff)
        self.cutoff_width = float(cutoff_width)
        self.label = str(label)
        if not self.cutoff_ > 0 or not 0 <= self.cutoff_width <= self.cutoff_:
            raise ValueError(f"need cutoff > 0 and 0 <= cutoff_transition_width <= cutoff, "
                             f"got {cutoff}, {cutoff_width}")

    @property
    def cutoff(self) -> float:
        return self.cutoff_

    @property
    def M(self) -> int:
        """Sparse points (for model-file column numbering; no posterior columns)."""
        return 0

    def _params(self) -> dict:
        return {}

    def to_record(self):
        crec, arrays = self.covariance.to_record()
        rec = {"kind": self.kind, "species": self.species.numbers.tolist(),
               "cutoff": self.cutoff_, "cutoff_width": self.cutoff_width, "label": self.label,
               "covariance": crec, **self._params()}
        return rec, arrays

    @classmethod
    def from_record(cls, rec, arrays, first_column=0):
        rec = dict(rec)
        rec.pop("kind", None)
        cov = CovarianceARD.from_record(rec.pop("covariance"), arrays)
        return cls(covariance=cov, **rec)

    def __repr__(self):
        return f"{type(self).__name__}({self.describe()})"


@register_term
class Distance2bTerm(_CovarianceTerm):
    """gap_fit ``distance_2b``: ε_i = Σ_j w(r_ij) e(x(r_ij)) over ordered pairs of the species
    (Z1, Z2) (0 = any), x = r^exponents, w = f_c(r) (erf(t r)/r)^tail_exponent.

    With ``tabulate`` (default) the pair function e(r) is interpolated from a verified
    table (:meth:`table`) instead of summing M kernel terms per pair: the same numbers to
    the direct sum's rounding level, ~10x faster for 20 sparse points."""

    kind = "gap_distance_2b"

    def __init__(self, species, covariance, cutoff, cutoff_width=0.5, Z1=0, Z2=0,
                 exponents=(1.0,), tail_range=1.0, tail_exponent=0.0, label="",
                 tabulate=True):
        super().__init__(species, covariance, cutoff, cutoff_width, label)
        self.Z1, self.Z2 = int(Z1), int(Z2)
        self.exponents = np.ascontiguousarray(exponents, dtype=np.float64)
        if len(self.exponents) != covariance.d:
            raise ValueError(f"distance_2b with {len(self.exponents)} exponents needs "
                             f"{len(self.exponents)}-dimensional sparse points, got "
                             f"{covariance.d}")
        self.tail_range = float(tail_range)
        self.tail_exponent = float(tail_exponent)
        self._pair_ok = _pair_mask(self.species, self.Z1, self.Z2)
        self.tabulate = bool(tabulate)
        self._table = None

    def _params(self):
        return {"Z1": self.Z1, "Z2": self.Z2, "exponents": self.exponents.tolist(),
                "tail_range": self.tail_range, "tail_exponent": self.tail_exponent,
                "tabulate": self.tabulate}

    #: tabulated range starts here (Å); shorter pairs are computed directly
    TABLE_START = 0.3

    def table(self):
        """(r_lo, h, curve): e(r), de/dr and d²e/dr² (curve (n, 3)) on r_lo + k h (Å) up to
        the cutoff (values summed in extended precision, :func:`se_pair_curve`), for
        quintic-Hermite interpolation, with h halved from 4e-3 Å until the interpolant
        agrees with the exact curve at every interval's quarter and mid points to 1e-13 of
        max |e| and 1e-11 of max |de/dr| (+ 8 ε max|e|/h, the nodes' float64 rounding seen
        by the slope); empty (pairs summed directly) if that needs h < 2.5e-4 Å, or for
        other than one-dimensional ard_se covariances. Forces stay the exact derivative of
        the interpolated energy."""
        if self._table is not None:
            return self._table
        cov = self.covariance
        self._table = (0.0, 1.0, np.zeros((0, 3)))
        if (not self.tabulate or self.cutoff_ <= self.TABLE_START or cov.kind != "ard_se"
                or cov.d != 1 or cov.normalised):
            return self._table
        X, coef, _, delta2, f0_sum = cov._packed[:5]
        args = (float(self.exponents[0]), X, coef, float(cov.theta[0]), delta2, f0_sum)
        r_lo = self.TABLE_START
        h = 4e-3
        eps = np.finfo(float).eps
        while h >= 2.5e-4:
            n = int(math.ceil((self.cutoff_ - r_lo) / h)) + 1
            curve = se_pair_curve(r_lo + h * np.arange(n), *args)
            probe = (r_lo + h * np.arange(n - 1)[:, None]
                     + h * np.array([0.25, 0.5, 0.75])[None, :]).ravel()
            exact = se_pair_curve(probe, *args)
            approx = np.array([_hermite_curve(r, r_lo, h, curve) for r in probe])
            e_max = np.abs(curve[:, 0]).max()
            if (np.abs(approx[:, 0] - exact[:, 0]).max() <= 1e-13 * e_max
                    and np.abs(approx[:, 1] - exact[:, 1]).max()
                    <= 1e-11 * np.abs(curve[:, 1]).max() + 8 * eps * e_max / h):
                self._table = (r_lo, h, curve)
                break
            h *= 0.5
        return self._table

    def local_energies(self, env, gradients=True):
        eps, t = distance_2b_local(env.first, env.index, env.vectors, env.spec, self._pair_ok,
                                   self.cutoff_, self.cutoff_width, self.exponents,
                                   self.tail_range, self.tail_exponent,
                                   self.covariance._packed, self.table(), bool(gradients))
        return eps, (t if gradients else None)

    def describe(self):
        return (f"distance_2b {_symbol(self.Z1)}-{_symbol(self.Z2)} cutoff={self.cutoff_:g}, "
                f"{self.covariance.describe()}")


@register_term
class Angle3bTerm(_CovarianceTerm):
    """gap_fit ``angle_3b``: centre species Z, neighbour species (Z1, Z2) (0 = any)."""

    kind = "gap_angle_3b"

    def __init__(self, species, covariance, cutoff, cutoff_width=0.5, Z=0, Z1=0, Z2=0,
                 label=""):
        super().__init__(species, covariance, cutoff, cutoff_width, label)
        if covariance.d != 3:
            raise ValueError(f"angle_3b needs 3-dimensional sparse points, got {covariance.d}")
        self.Z, self.Z1, self.Z2 = int(Z), int(Z1), int(Z2)
        self._centre_ok = _species_mask(self.species, self.Z)
        self._pair_ok = _pair_mask(self.species, self.Z1, self.Z2)

    def _params(self):
        return {"Z": self.Z, "Z1": self.Z1, "Z2": self.Z2}

    def local_energies(self, env, gradients=True):
        eps, t = angle_3b_local(env.first, env.index, env.vectors, env.spec, self._centre_ok,
                                self._pair_ok, self.cutoff_, self.cutoff_width,
                                self.covariance._packed, bool(gradients))
        return eps, (t if gradients else None)

    def describe(self):
        return (f"angle_3b {_symbol(self.Z1)}-{_symbol(self.Z)}-{_symbol(self.Z2)} "
                f"cutoff={self.cutoff_:g}, {self.covariance.describe()}")


@register_term
class DistanceNbTerm(_CovarianceTerm):
    """gap_fit ``distance_Nb`` (compact clusters) for one species Z (0 = any): clusters of a
    centre and order−1 of its neighbours; ε per centre (module docstring)."""

    kind = "gap_distance_nb"

    def __init__(self, species, covariance, cutoff, cutoff_width=0.5, order=2, Z=0, label=""):
        super().__init__(species, covariance, cutoff, cutoff_width, label)
        self.order = int(order)
        if self.order < 2:
            raise ValueError(f"distance_Nb order must be >= 2, got {order}")
        if covariance.d != self.order * (self.order - 1) // 2:
            raise ValueError(f"distance_Nb order {self.order} needs "
                             f"{self.order * (self.order - 1) // 2}-dimensional sparse points, "
                             f"got {covariance.d}")
        self.Z = int(Z)
        self._ok = _species_mask(self.species, self.Z)

    def _params(self):
        return {"order": self.order, "Z": self.Z}

    def local_energies(self, env, gradients=True):
        eps, t = distance_nb_local(env.first, env.index, env.vectors, env.spec, self._ok,
                                   self._ok, self.order, self.cutoff_, self.cutoff_width,
                                   self.covariance._packed, bool(gradients))
        return eps, (t if gradients else None)

    def describe(self):
        return (f"distance_Nb order={self.order} {_symbol(self.Z)} cutoff={self.cutoff_:g}, "
                f"{self.covariance.describe()}")


# --------------------------------------------------------------------------- Glue
class CubicSpline1D:
    """Cubic spline through (x_k, y_k) with end slopes y1, yn (≥ 0.99e30 or None: natural),
    linear beyond the knots with the spline's end slopes."""

    def __init__(self, x, y, y1=None, yn=None):
        self.x = np.ascontiguousarray(x, dtype=np.float64)
        self.y = np.ascontiguousarray(y, dtype=np.float64)
        if self.x.ndim != 1 or len(self.x) < 2 or len(self.x) != len(self.y):
            raise ValueError("a spline needs at least two (x, y) points")
        if np.any(np.diff(self.x) <= 0):
            raise ValueError("spline knots must be strictly increasing")
        self.y1 = None if y1 is None or y1 >= 0.99e30 else float(y1)
        self.yn = None if yn is None or yn >= 0.99e30 else float(yn)
        self.second = _second_derivatives(self.x, self.y, self.y1, self.yn)

    def __call__(self, r):
        r = np.atleast_1d(np.asarray(r, dtype=np.float64))
        out = np.array([spline_value(v, self.x, self.y, self.second, 0, len(self.x)) for v in r])
        return out[:, 0], out[:, 1]


def _second_derivatives(x, y, y1, yn):
    """Second derivatives at the knots of the cubic spline with end slopes y1, yn (None:
    natural end), by the tridiagonal system of spline continuity."""
    n = len(x)
    h = np.diff(x)
    A = np.zeros((n, n))
    b = np.zeros(n)
    for k in range(1, n - 1):
        A[k, k - 1] = h[k - 1] / 6.0
        A[k, k] = (h[k - 1] + h[k]) / 3.0
        A[k, k + 1] = h[k] / 6.0
        b[k] = (y[k + 1] - y[k]) / h[k] - (y[k] - y[k - 1]) / h[k - 1]
    if y1 is None:
        A[0, 0] = 1.0
    else:
        A[0, 0], A[0, 1] = h[0] / 3.0, h[0] / 6.0
        b[0] = (y[1] - y[0]) / h[0] - y1
    if yn is None:
        A[-1, -1] = 1.0
    else:
        A[-1, -2], A[-1, -1] = h[-1] / 6.0, h[-1] / 3.0
        b[-1] = yn - (y[-1] - y[-2]) / h[-1]
    return np.ascontiguousarray(np.linalg.solve(A, b))


@register_term
class GlueTerm:
    """QUIP's ``IP Glue`` core potential (EAM-like), see the module docstring.

    species : the potential's species.  types : list of per-type dicts
    {"Z", "density": {"a", "rho", "y1", "yn", "spline"}, "embedding": {"rho", "E", "y1",
    "yn"} or None}; pairs : list of {"types": (t1, t2) 0-based, "r", "E", "y1", "yn"}.
    """

    kind = "gap_glue"

    def __init__(self, species, types, pairs, label=""):
        self.species = species if isinstance(species, SpeciesMap) else SpeciesMap(species)
        self.types = [dict(t) for t in types]
        self.pairs = [dict(p) for p in pairs]
        self.label = str(label)
        T = len(self.types)
        splines = []
        type_of = np.full(len(self.species), -1, dtype=np.int64)
        dens_cut = np.zeros(T)
        dens_coef = np.zeros(T)
        dens_spline = np.full(T, -1, dtype=np.int64)
        embed_spline = np.full(T, -1, dtype=np.int64)
        for t, td in enumerate(self.types):
            z = int(td["Z"])
            if z in self.species.numbers:
                type_of[self.species.indices([z])[0]] = t
            dens = td["density"]
            a = np.asarray(dens["a"], dtype=np.float64)
            rho = np.asarray(dens["rho"], dtype=np.float64)
            dens_cut[t] = a.max()
            if dens.get("spline"):
                dens_spline[t] = len(splines)
                splines.append(CubicSpline1D(a, rho, dens.get("y1"), dens.get("yn")))
            else:
                # least-squares c of g(r) = c (R − r)³ through the points
                u = (dens_cut[t] - a) ** 3
                dens_coef[t] = float(rho @ u / (u @ u)) if np.any(u) else 0.0
            emb = td.get("embedding")
            if emb is not None:
                embed_spline[t] = len(splines)
                splines.append(CubicSpline1D(emb["rho"], emb["E"], emb.get("y1"),
                                             emb.get("yn")))
        pair_spline = np.full((T, T), -1, dtype=np.int64)
        pair_cut = np.zeros((T, T))
        for p in self.pairs:
            t1, t2 = (int(v) for v in p["types"])
            sp = CubicSpline1D(p["r"], p["E"], p.get("y1", 0.0), p.get("yn", 0.0))
            for a, b in ((t1, t2), (t2, t1)):
                pair_spline[a, b] = len(splines)
                pair_cut[a, b] = sp.x[-1]
            splines.append(sp)
        offsets = np.cumsum([0] + [len(s.x) for s in splines]).astype(np.int64)
        cat = (lambda name: np.ascontiguousarray(np.concatenate([getattr(s, name) for s in splines]))
               if splines else np.zeros(0))
        self._arrays = (type_of, dens_cut, dens_coef, dens_spline, embed_spline, pair_spline,
                        pair_cut, cat("x"), cat("y"), cat("second"), offsets)
        used = type_of >= 0
        cuts = [dens_cut[type_of[used]].max() if used.any() else 0.0]
        if used.any():
            tu = type_of[used]
            cuts.append(pair_cut[np.ix_(tu, tu)].max())
        self.cutoff_ = float(max(cuts))

    @property
    def cutoff(self) -> float:
        """Largest density knot or pair-potential knot among the model's species (Å)."""
        return self.cutoff_

    @property
    def M(self) -> int:
        return 0

    def local_energies(self, env, gradients=True):
        eps, t = glue_local(env.first, env.index, env.vectors, env.spec, *self._arrays,
                            bool(gradients))
        return eps, (t if gradients else None)

    def to_record(self):
        rec = {"kind": self.kind, "species": self.species.numbers.tolist(),
               "types": _jsonable(self.types), "pairs": _jsonable(self.pairs),
               "label": self.label}
        return rec, {}

    @classmethod
    def from_record(cls, rec, arrays, first_column=0):
        return cls(rec["species"], rec["types"], rec["pairs"], rec.get("label", ""))

    def describe(self):
        from ase.data import chemical_symbols
        els = ", ".join(chemical_symbols[int(t["Z"])] for t in self.types)
        return f"Glue core potential ({els}), cutoff={self.cutoff_:g}"

    def __repr__(self):
        return f"GlueTerm({self.describe()})"


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


# --------------------------------------------------------------------------- pooled SOAP


@register_term
class PooledSpeciesTerm(Term):
    """A SOAP kernel term whose descriptor sees every element as one species (QUIP's soap
    without ``species_Z``: one neighbour channel for all atoms), for multi-element models
    such as a SOAP on any atom plus a two-element core potential.

    descriptor : single-species SOAP.  X (M, D), alpha (M,) as for :class:`Term`.
    species : the potential's elements.  centres : elements whose atoms are centres
    (None: every atom)."""

    kind = "kernel_pooled_species"

    def __init__(self, descriptor, kernel, X, alpha, species, centres=None):
        if len(descriptor.species) != 1:
            raise ValueError("a pooled-species term needs a single-species descriptor")
        super().__init__(descriptor, kernel, X, np.zeros(len(X), dtype=np.int64), alpha)
        self.species = species if isinstance(species, SpeciesMap) else SpeciesMap(species)
        self.centres = None if centres is None else sorted(int(z) for z in centres)
        self._centre_ok = (np.ones(len(self.species), dtype=bool) if self.centres is None
                           else np.isin(self.species.numbers, self.centres))

    def local_energies(self, env, gradients=True):
        from .descriptors.soap import Environment
        pooled = Environment.from_arrays(env.first, env.index, env.vectors,
                                         np.zeros_like(env.spec))
        eps, t = super().local_energies(pooled, gradients)
        skip = ~self._centre_ok[env.centre_spec]
        if skip.any():
            eps[skip] = 0.0
            if t is not None:
                t[np.repeat(skip, np.diff(env.first))] = 0.0
        return eps, t

    def to_record(self):
        rec, arrays = super().to_record()
        rec["species"] = self.species.numbers.tolist()
        rec["centres"] = self.centres
        return rec, arrays

    @classmethod
    def from_record(cls, rec, arrays, first_column=0):
        from .descriptors import descriptor_from_dict
        from .kernels import kernel_from_dict
        return cls(descriptor_from_dict(rec["descriptor"]), kernel_from_dict(rec["kernel"]),
                   arrays["X"], arrays["alpha"], rec["species"], rec.get("centres"))

    def describe(self):
        from .gap_xml import _describe_kernel_term
        who = "every atom" if self.centres is None else f"centres Z={self.centres}"
        return _describe_kernel_term(self) + f" (all elements in one channel, {who})"
