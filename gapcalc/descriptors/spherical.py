"""Real spherical harmonics Y_lm(r̂) and their Cartesian gradients (seed Eq. 8).

Index convention: ``lm = l*l + l + m`` for ``m = -l..l``, so an array of length
``(l_max+1)**2`` holds every (l, m). The harmonics are orthonormal on the unit
sphere (∫ Y_lm Y_l'm' dΩ = δ_ll' δ_mm'); the Condon-Shortley phase is omitted,
which does not change any rotational invariant built from them.

Construction (all polynomial in the unit-vector components x, y, z):

* ``Q_lm(z) = P_l^m(z) / sin^m θ`` by the associated-Legendre recursion,
* ``C_m + i S_m = (x + i y)^m = sin^m θ e^{i m φ}``,
* ``Y_l0 = N_l0 Q_l0``, ``Y_lm = √2 N_lm Q_lm C_m`` (m > 0), ``Y_l,-m = √2 N_lm Q_lm S_m``.

Treating these as polynomials f(x, y, z) of the unit vector u = r/|r|, the gradient
with respect to the (unnormalised) vector r is the tangential projection
``∇_r Y = (∇f − u (u·∇f)) / |r|``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit


# 1/k for the Legendre recursion (a constant array for Numba: multiplications, no divisions)
_RECIP = np.concatenate([[0.0], 1.0 / np.arange(1, 128)])


def lm_index(l: int, m: int) -> int:
    """Flat index of (l, m) in arrays of length (l_max+1)**2."""
    return l * l + l + m


def normalisation(l_max: int) -> np.ndarray:
    """N_lm = sqrt((2l+1)/(4π) (l-m)!/(l+m)!) for m >= 0; shape (l_max+1, l_max+1)."""
    norm = np.zeros((l_max + 1, l_max + 1))
    for l in range(l_max + 1):
        for m in range(l + 1):
            norm[l, m] = math.sqrt((2 * l + 1) / (4 * math.pi)
                                   * math.factorial(l - m) / math.factorial(l + m))
    return norm


@njit(cache=True, fastmath=False, nogil=True, inline="always")
def _azimuthal(x, y, l_max, C, S):
    """C_m + i S_m = (x + i y)^m for m = 0..l_max."""
    C[0] = 1.0
    S[0] = 0.0
    for m in range(1, l_max + 1):
        C[m] = x * C[m - 1] - y * S[m - 1]
        S[m] = x * S[m - 1] + y * C[m - 1]


@njit(cache=True, fastmath=False, nogil=True, inline="always")
def _legendre(z, l_max, Q, dQ, with_derivative):
    """Q_lm(z) = P_l^m(z) / sin^m θ by recursion, and dQ_lm/dz when ``with_derivative``."""
    for m in range(l_max + 1):
        if m == 0:
            Q[0, 0] = 1.0
        else:
            Q[m, m] = -(2 * m - 1) * Q[m - 1, m - 1]
        if with_derivative:
            dQ[m, m] = 0.0
        if m + 1 <= l_max:
            Q[m + 1, m] = (2 * m + 1) * z * Q[m, m]
            if with_derivative:
                dQ[m + 1, m] = (2 * m + 1) * Q[m, m]
        for l in range(m + 2, l_max + 1):
            Q[l, m] = ((2 * l - 1) * z * Q[l - 1, m] - (l + m - 1) * Q[l - 2, m]) * _RECIP[l - m]
            if with_derivative:
                dQ[l, m] = ((2 * l - 1) * (Q[l - 1, m] + z * dQ[l - 1, m])
                            - (l + m - 1) * dQ[l - 2, m]) * _RECIP[l - m]


@njit(cache=True, fastmath=False, nogil=True)
def real_spherical_harmonics(u, l_max, norm, Y, dY, Q, dQ, C, S):
    """Evaluate Y_lm(u) and ∇_u f_lm for a unit vector u (no projection).

    u : (3,) unit vector.  norm : (l_max+1, l_max+1) from :func:`normalisation`.
    Y : (L2,) output values.  dY : (L2, 3) output Cartesian derivatives of the
    polynomial f_lm (project with :func:`project_gradient` to get ∇_r Y).
    Q, dQ : (l_max+1, l_max+1) and C, S : (l_max+1,) scratch arrays.
    """
    _azimuthal(u[0], u[1], l_max, C, S)     # (x + i y)^m
    _legendre(u[2], l_max, Q, dQ, True)     # Q_lm(z) and dQ_lm/dz
    sqrt2 = math.sqrt(2.0)
    for l in range(l_max + 1):
        base = l * l + l
        n0 = norm[l, 0]
        Y[base] = n0 * Q[l, 0]
        dY[base, 0] = 0.0
        dY[base, 1] = 0.0
        dY[base, 2] = n0 * dQ[l, 0]
        for m in range(1, l + 1):
            a = sqrt2 * norm[l, m]
            q = Q[l, m]
            dq = dQ[l, m]
            # m > 0: cos part
            Y[base + m] = a * q * C[m]
            dY[base + m, 0] = a * q * m * C[m - 1]
            dY[base + m, 1] = -a * q * m * S[m - 1]
            dY[base + m, 2] = a * dq * C[m]
            # m < 0: sin part
            Y[base - m] = a * q * S[m]
            dY[base - m, 0] = a * q * m * S[m - 1]
            dY[base - m, 1] = a * q * m * C[m - 1]
            dY[base - m, 2] = a * dq * S[m]


# ---- many directions at once -------------------------------------------------------
# The density kernels evaluate the harmonics of all neighbours of one centre together:
# arrays are (index, k) with the neighbour k contiguous, so every recursion step is one
# vectorised loop over neighbours instead of a scalar recursion per neighbour.

@njit(cache=True, nogil=True, fastmath={'reassoc', 'contract'}, inline="always")
def _azimuthal_block(ns, x, y, lp, C, S):
    """C[m, k] + i S[m, k] = (x_k + i y_k)^m for m < lp and k < ns."""
    for k in range(ns):
        C[0, k] = 1.0
        S[0, k] = 0.0
    for m in range(1, lp):
        Cm = C[m]
        Sm = S[m]
        Cp = C[m - 1]
        Sp = S[m - 1]
        for k in range(ns):
            Cm[k] = x[k] * Cp[k] - y[k] * Sp[k]
            Sm[k] = x[k] * Sp[k] + y[k] * Cp[k]


@njit(cache=True, nogil=True, fastmath={'reassoc', 'contract'}, inline="always")
def _legendre_block(ns, z, lp, Q, dQ, with_derivative):
    """Q_lm(z_k) = P_l^m(z_k)/sin^m θ_k in row l·lp + m of Q, and dQ_lm/dz when
    ``with_derivative`` (same recursion as :func:`_legendre`; Q_mm is a constant)."""
    qmm = 1.0
    for m in range(lp):
        if m > 0:
            qmm = -(2 * m - 1) * qmm
        Qm = Q[m * lp + m]
        for k in range(ns):
            Qm[k] = qmm
        if with_derivative:
            dQm = dQ[m * lp + m]
            for k in range(ns):
                dQm[k] = 0.0
        if m + 1 < lp:
            a = (2 * m + 1) * qmm
            Q1 = Q[(m + 1) * lp + m]
            for k in range(ns):
                Q1[k] = a * z[k]
            if with_derivative:
                dQ1 = dQ[(m + 1) * lp + m]
                for k in range(ns):
                    dQ1[k] = a
        for l in range(m + 2, lp):
            a = (2 * l - 1) * _RECIP[l - m]
            b = (l + m - 1) * _RECIP[l - m]
            Ql = Q[l * lp + m]
            Q1 = Q[(l - 1) * lp + m]
            Q2 = Q[(l - 2) * lp + m]
            if with_derivative:
                dQl = dQ[l * lp + m]
                dQ1 = dQ[(l - 1) * lp + m]
                dQ2 = dQ[(l - 2) * lp + m]
                for k in range(ns):
                    dQl[k] = a * (Q1[k] + z[k] * dQ1[k]) - b * dQ2[k]
            for k in range(ns):
                Ql[k] = a * z[k] * Q1[k] - b * Q2[k]


@njit(cache=True, nogil=True, fastmath={'reassoc', 'contract'})
def harmonics_block(ns, x, y, z, l_max, norm, Y, Q, C, S):
    """Y[lm, k] = Y_lm(u_k) for the unit vectors u_k = (x_k, y_k, z_k), k < ns.

    Y : (L2, ≥ns) output.  Q : ((l_max+1)², ≥ns), C, S : (l_max+1, ≥ns) scratch."""
    lp = l_max + 1
    _azimuthal_block(ns, x, y, lp, C, S)
    _legendre_block(ns, z, lp, Q, Q, False)
    sqrt2 = math.sqrt(2.0)
    for l in range(lp):
        base = l * l + l
        n0 = norm[l, 0]
        Ql = Q[l * lp]
        Yb = Y[base]
        for k in range(ns):
            Yb[k] = n0 * Ql[k]
        for m in range(1, l + 1):
            a = sqrt2 * norm[l, m]
            Qlm = Q[l * lp + m]
            Cm = C[m]
            Sm = S[m]
            Yp = Y[base + m]
            Yn = Y[base - m]
            for k in range(ns):
                aq = a * Qlm[k]
                Yp[k] = aq * Cm[k]
                Yn[k] = aq * Sm[k]


@njit(cache=True, nogil=True, fastmath={'reassoc', 'contract'})
def harmonics_contract_block(ns, x, y, z, l_max, norm, A, B, Q, dQ, C, S, ay, t0, t1, t2):
    """For every direction k < ns: ay[k] = Σ_lm A[lm, k] Y_lm(u_k) and
    (t0, t1, t2)[k] = Σ_lm B[lm, k] ∇_u f_lm(u_k), the polynomial gradient (project it
    with ∇_r Y = (∇f − u (u·∇f))/|r|), without storing Y or its derivatives."""
    lp = l_max + 1
    _azimuthal_block(ns, x, y, lp, C, S)
    _legendre_block(ns, z, lp, Q, dQ, True)
    sqrt2 = math.sqrt(2.0)
    for k in range(ns):
        ay[k] = 0.0
        t0[k] = 0.0
        t1[k] = 0.0
        t2[k] = 0.0
    for l in range(lp):
        base = l * l + l
        n0 = norm[l, 0]
        Q0 = Q[l * lp]
        dQ0 = dQ[l * lp]
        A0 = A[base]
        B0 = B[base]
        for k in range(ns):
            ay[k] += n0 * A0[k] * Q0[k]
            t2[k] += n0 * B0[k] * dQ0[k]
        for m in range(1, l + 1):
            a = sqrt2 * norm[l, m]
            am = a * m
            Qlm = Q[l * lp + m]
            dQlm = dQ[l * lp + m]
            Cm = C[m]
            Sm = S[m]
            Cp = C[m - 1]
            Sp = S[m - 1]
            Ap = A[base + m]
            An = A[base - m]
            Bp = B[base + m]
            Bn = B[base - m]
            for k in range(ns):
                q = Qlm[k]
                bc = Bp[k]
                bs = Bn[k]
                ay[k] += a * q * (Ap[k] * Cm[k] + An[k] * Sm[k])
                t0[k] += am * q * (bc * Cp[k] + bs * Sp[k])
                t1[k] += am * q * (bs * Cp[k] - bc * Sp[k])
                t2[k] += a * dQlm[k] * (bc * Cm[k] + bs * Sm[k])


@njit(cache=True, nogil=True)
def project_gradient(u, inv_r, dY, L2):
    """Turn polynomial derivatives dY (L2, 3) into ∇_r Y_lm(r/|r|), in place (1/Å)."""
    for k in range(L2):
        dot = u[0] * dY[k, 0] + u[1] * dY[k, 1] + u[2] * dY[k, 2]
        for a in range(3):
            dY[k, a] = (dY[k, a] - u[a] * dot) * inv_r


def spherical_harmonics(vectors, l_max: int):
    """Vectorised convenience wrapper (tests, analysis): Y (n, L2) and ∇_r Y (n, L2, 3)."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    L2 = (l_max + 1) ** 2
    norm = normalisation(l_max)
    Y = np.zeros((len(vectors), L2))
    dY = np.zeros((len(vectors), L2, 3))
    Q = np.zeros((l_max + 1, l_max + 1))
    dQ = np.zeros_like(Q)
    C = np.zeros(l_max + 1)
    S = np.zeros(l_max + 1)
    for k, v in enumerate(vectors):
        r = np.linalg.norm(v)
        u = v / r
        real_spherical_harmonics(u, l_max, norm, Y[k], dY[k], Q, dQ, C, S)
        project_gradient(u, 1.0 / r, dY[k], L2)
    return Y, dY
