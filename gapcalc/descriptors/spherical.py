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


@njit(cache=True, fastmath=False, nogil=True)
def real_spherical_harmonics_values(u, l_max, norm, Y, Q, C, S):
    """Y_lm(u) only (no derivatives): the forward expansion needs nothing else."""
    _azimuthal(u[0], u[1], l_max, C, S)
    _legendre(u[2], l_max, Q, Q, False)
    sqrt2 = math.sqrt(2.0)
    for l in range(l_max + 1):
        base = l * l + l
        Y[base] = norm[l, 0] * Q[l, 0]
        for m in range(1, l + 1):
            a = sqrt2 * norm[l, m] * Q[l, m]
            Y[base + m] = a * C[m]
            Y[base - m] = a * S[m]


@njit(cache=True, fastmath=False, nogil=True)
def harmonics_contract(u, l_max, norm, A, B, Q, dQ, C, S, grad):
    """Σ_lm A_lm Y_lm(u), returned, and Σ_lm B_lm ∇_u f_lm(u) into ``grad`` (3,), without
    storing Y or its derivatives (same recursion and formulas as
    :func:`real_spherical_harmonics`; project ``grad`` with the tangential projection)."""
    _azimuthal(u[0], u[1], l_max, C, S)
    _legendre(u[2], l_max, Q, dQ, True)
    sqrt2 = math.sqrt(2.0)
    ay = 0.0
    t0 = 0.0
    t1 = 0.0
    t2 = 0.0
    for l in range(l_max + 1):
        base = l * l + l
        n0 = norm[l, 0]
        ay += A[base] * n0 * Q[l, 0]
        t2 += B[base] * n0 * dQ[l, 0]
        for m in range(1, l + 1):
            a = sqrt2 * norm[l, m]
            aq = a * Q[l, m]
            adq = a * dQ[l, m]
            bc = B[base + m]
            bs = B[base - m]
            ay += aq * (A[base + m] * C[m] + A[base - m] * S[m])
            t0 += aq * m * (bc * C[m - 1] + bs * S[m - 1])
            t1 += aq * m * (bs * C[m - 1] - bc * S[m - 1])
            t2 += adq * (bc * C[m] + bs * S[m])
    grad[0] = t0
    grad[1] = t1
    grad[2] = t2
    return ay


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
