"""Radial basis, smooth cutoff and the tabulated radial integral of SOAP.

The Gaussian-smeared neighbour density (seed Eq. 4) centred at r_ij expands on
real spherical harmonics as (seed Eq. 8)

    c_nlm = Σ_j f_c(r_ij) I_nl(r_ij) Y_lm(r̂_ij),

    I_nl(d) = 4π/(2πσ²)^{3/2} ∫_0^∞ r² R_n(r) exp(-(r² + d²)/(2σ²)) i_l(r d/σ²) dr,

with i_l the modified spherical Bessel function of the first kind. The product
``f_c(d) I_nl(d)`` is computed once per hyper-parameter set by Gauss-Legendre
quadrature (value and d-derivative) on a uniform grid of d and interpolated by a
cubic Hermite spline, whose derivative is the exact derivative of the
interpolated value, so analytic gradients are consistent with it to round-off.

Radial basis ("gto", as featomic): R_n(r) ∝ r^n exp(-r²/(2σ_n²)), σ_n = r_c max(√n, 1)/n_max,
n = 0..n_max-1, orthonormalised on the r² dr measure by Löwdin S^{-1/2}.

QUIP/GAP's radial bases ("quip": EQUISPACED_GAUSS, QUIP's default; "quip_gto": its GTO
option) are tabulated in the same layout by :func:`quip_radial_functions`, following the
specification in the project's notes (quip_soap.md §2, §5), implemented from the
mathematics only. Their coefficients are linear maps of the Gaussian-damped Bessel terms

    G_l(ρ; d) = exp(-α(ρ² + d²)) i_l(2αρd),   α = 1/(2σ²),

sampled at radial nodes ρ_a: c_nl(d) = Σ_a G_l(ρ_a; d) T^{(l)}_an (no 4π, no other
prefactor, exactly QUIP's scale).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import njit
from scipy.special import gammainc, gammaln, ive, spherical_in


def cosine_cutoff(d, cutoff, width):
    """f_c(d): 1 below cutoff-width, ½(1+cos(π (d-cutoff+width)/width)) above, 0 past cutoff.

    Returns (f_c, df_c/dd) for an array of distances d (Å)."""
    d = np.asarray(d, dtype=np.float64)
    f = np.ones_like(d)
    df = np.zeros_like(d)
    if width > 0:
        inner = cutoff - width
        mask = (d > inner) & (d < cutoff)
        t = math.pi * (d[mask] - inner) / width
        f[mask] = 0.5 * (1.0 + np.cos(t))
        df[mask] = -0.5 * math.pi / width * np.sin(t)
    f[d >= cutoff] = 0.0
    df[d >= cutoff] = 0.0
    return f, df


def gto_sigmas(cutoff: float, n_max: int) -> np.ndarray:
    n = np.arange(n_max)
    return cutoff * np.maximum(np.sqrt(n), 1.0) / n_max


def gto_overlap(cutoff: float, n_max: int) -> np.ndarray:
    """Analytic S_nn' = ∫ r² R_n R_n' dr of the raw GTOs r^n exp(-r²/(2σ_n²))."""
    sig = gto_sigmas(cutoff, n_max)
    n = np.arange(n_max)
    a = 0.5 / sig[:, None] ** 2 + 0.5 / sig[None, :] ** 2
    p = (3.0 + n[:, None] + n[None, :]) / 2.0
    # ∫_0^∞ r^{2p-1} exp(-a r²) dr = Γ(p) / (2 a^p)
    return np.exp(gammaln(p) - p * np.log(a)) / 2.0


def gto_orthonormaliser(cutoff: float, n_max: int) -> np.ndarray:
    """Löwdin S^{-1/2}, applied to the raw GTOs, gives an orthonormal basis."""
    S = gto_overlap(cutoff, n_max)
    # normalise first for conditioning
    dn = 1.0 / np.sqrt(np.diag(S))
    Sn = S * dn[:, None] * dn[None, :]
    w, V = np.linalg.eigh(Sn)
    if w.min() <= 1e-12:
        raise ValueError(f"GTO radial basis is numerically singular for n_max={n_max}")
    return (V * w ** -0.5) @ V.T * dn[None, :]


def _scaled_sph_in(l_max: int, x: np.ndarray):
    """e^{-x} i_l(x) and e^{-x} i_l'(x) for l = 0..l_max; arrays (l_max+1, *x.shape)."""
    x = np.asarray(x, dtype=np.float64)
    val = np.empty((l_max + 1,) + x.shape)
    der = np.empty_like(val)
    small = x < 1.0
    xs = x[small]
    big = ~small
    xb = x[big]
    for l in range(l_max + 1):
        v = np.empty(x.shape)
        d = np.empty(x.shape)
        ex = np.exp(-xs)
        v[small] = spherical_in(l, xs) * ex
        d[small] = spherical_in(l, xs, derivative=True) * ex
        pref = np.sqrt(np.pi / (2.0 * xb))
        v[big] = pref * ive(l + 0.5, xb)
        val[l] = v
        der[l] = d
    # derivative for large x: i_0' = i_1, i_l' = i_{l-1} - (l+1)/x i_l
    if big.any():
        if l_max >= 1:
            der[0][big] = val[1][big]
        else:
            der[0][big] = np.sqrt(np.pi / (2.0 * xb)) * ive(1.5, xb)
        for l in range(1, l_max + 1):
            der[l][big] = val[l - 1][big] - (l + 1) / xb * val[l][big]
    return val, der


def table_grid(cutoff: float, cutoff_width: float, spacing: float):
    """Uniform grid d_k = k h covering [0, cutoff] for the splined radial tables (Å).

    h ≤ spacing, chosen so that the cosine switch [cutoff − width, cutoff] spans a whole
    number of steps. Returns (h, d)."""
    if cutoff_width > 0:
        steps = max(1, int(math.ceil(cutoff_width / spacing)))
        h = cutoff_width / steps
    else:
        h = spacing
    return h, np.arange(int(math.ceil(cutoff / h)) + 2) * h


QUIP_BASES = ("quip", "quip_gto")
RADIAL_BASES = ("gto",) + QUIP_BASES


def quip_basis_extent(cutoff: float, atom_sigma: float, basis_error_exponent: float = 10.0):
    """R_b = r_c + σ √(2 ε ln 10) (Å): the radial range of QUIP's bases (quip_soap.md §2)."""
    return cutoff + atom_sigma * math.sqrt(2.0 * basis_error_exponent * math.log(10.0))


def _equispaced_gauss_transform(cutoff, n_max, atom_sigma, basis_error_exponent):
    """Nodes ρ_a (n_max,) and transform T (n_max, n_max) of QUIP's EQUISPACED_GAUSS basis.

    Gaussians g_a(r) = exp(-α(r-ρ_a)²) of width σ at ρ_a = a R_b/n_max (a = 0..n_max-1);
    overlap S_ab = ∫_0^∞ r² g_a g_b dr = L Lᵀ (Cholesky); interpolation matrix
    C_ab = g_a(ρ_b); T = C⁻¹ L, so that c_l = Tᵀ G_l(ρ; d)."""
    alpha = 0.5 / atom_sigma ** 2
    rb = quip_basis_extent(cutoff, atom_sigma, basis_error_exponent)
    rho = np.arange(n_max) * (rb / n_max)
    c = 0.5 * (rho[:, None] + rho[None, :])
    dd = rho[:, None] - rho[None, :]
    beta = 2.0 * alpha
    S = np.exp(-0.5 * alpha * dd ** 2) * (
        c * np.exp(-beta * c ** 2) / (2.0 * beta)
        + (c ** 2 + 0.5 / beta) * 0.5 * math.sqrt(math.pi / beta)
        * (1.0 + np.vectorize(math.erf)(math.sqrt(beta) * c)))
    L = np.linalg.cholesky(S)
    C = np.exp(-alpha * dd ** 2)
    T = np.linalg.solve(C, L)
    return rho, T


def _quip_gto_transforms(cutoff, n_max, l_max, atom_sigma, basis_error_exponent):
    """Nodes ρ_k (3 n_max,) and, per l, P_l (3 n_max, n_max) of QUIP's GTO basis: the
    least-squares fit (pseudo-inverse) of G_l on the fine grid by the orthonormalised
    r^l exp(-β_ln r²) on [0, R_b] (quip_soap.md §5), c_l = P_lᵀ G_l(ρ; d)."""
    rb = quip_basis_extent(cutoff, atom_sigma, basis_error_exponent)
    rho = np.arange(3 * n_max) * (rb / (3 * n_max))
    Rn = np.arange(1, n_max + 1) * (rb / n_max)
    P = []
    for l in range(l_max + 1):
        beta = (l * np.log(Rn) - math.log(1e-3)) / Rn ** 2
        bs = beta[:, None] + beta[None, :]
        a = l + 1.5
        S = 0.5 * bs ** (-a) * gammainc(a, bs * rb * rb) * math.exp(gammaln(a))
        L = np.linalg.cholesky(S)
        B = rho[:, None] ** l * np.exp(-beta[None, :] * rho[:, None] ** 2)
        A = np.linalg.solve(L, B.T).T                 # B L^{-T}
        P.append(np.linalg.pinv(A).T)                  # (3 n_max, n_max)
    return rho, P


def damped_bessel(l_max: int, rho, d, atom_sigma: float):
    """G_l(ρ; d) = exp(-α(ρ² + d²)) i_l(2αρd) and ∂G_l/∂d for l = 0..l_max.

    rho (K,), d (N,) in Å; returns two arrays (l_max+1, N, K). Exact (scipy) modified
    spherical Bessel functions, with the Gaussian damping folded into exp(-x) i_l(x)."""
    alpha = 0.5 / atom_sigma ** 2
    rho = np.asarray(rho, dtype=np.float64)
    d = np.asarray(d, dtype=np.float64)
    x = 2.0 * alpha * d[:, None] * rho[None, :]
    val, der = _scaled_sph_in(l_max, x)           # e^{-x} i_l(x), e^{-x} i_l'(x)
    damp = np.exp(-alpha * (d[:, None] - rho[None, :]) ** 2)
    G = damp[None] * val
    dG = damp[None] * (-2.0 * alpha * d[None, :, None] * val
                       + 2.0 * alpha * rho[None, None, :] * der)
    return G, dG


def quip_radial_functions(d, cutoff: float, n_max: int, l_max: int, atom_sigma: float,
                          radial_basis: str = "quip", basis_error_exponent: float = 10.0):
    """QUIP's radial coefficients c_nl(d) and dc_nl/dd (no cutoff function), each
    (len(d), n_max, l_max+1), for radial_basis "quip" (EQUISPACED_GAUSS) or "quip_gto"."""
    d = np.atleast_1d(np.asarray(d, dtype=np.float64))
    if radial_basis == "quip":
        rho, T = _equispaced_gauss_transform(cutoff, n_max, atom_sigma, basis_error_exponent)
        G, dG = damped_bessel(l_max, rho, d, atom_sigma)
        return np.einsum("lga,an->gnl", G, T), np.einsum("lga,an->gnl", dG, T)
    if radial_basis == "quip_gto":
        rho, P = _quip_gto_transforms(cutoff, n_max, l_max, atom_sigma, basis_error_exponent)
        G, dG = damped_bessel(l_max, rho, d, atom_sigma)
        val = np.empty((len(d), n_max, l_max + 1))
        der = np.empty_like(val)
        for l in range(l_max + 1):
            val[:, :, l] = G[l] @ P[l]
            der[:, :, l] = dG[l] @ P[l]
        return val, der
    raise ValueError(f"unknown QUIP radial_basis {radial_basis!r}; available: {QUIP_BASES}")


@lru_cache(maxsize=16)
def radial_table(cutoff: float, n_max: int, l_max: int, atom_sigma: float,
                 cutoff_width: float, radial_basis: str = "gto", spacing: float | None = None,
                 basis_error_exponent: float = 10.0):
    """Tabulate g_nl(d) = f_c(d) I_nl(d) and its derivative on a uniform grid.

    Returns (h, values, derivs, centre) with ``values``, ``derivs`` of shape
    (n_grid, n_max, l_max+1) (units Å^{-3/2} and Å^{-5/2}), grid d_k = k h for
    k = 0..n_grid-1 covering [0, cutoff], and ``centre`` (n_max,) = I_n0(0), the
    contribution of the central atom itself to c_n00 (times Y_00).
    ``radial_basis``: "gto" (I_nl a projection, module docstring), "quip" or "quip_gto"
    (QUIP's c_nl(d), :func:`quip_radial_functions`; ``basis_error_exponent`` sets their
    extent). For the QUIP bases the table holds c_nl(d) and dc_nl/dd *without* f_c: the
    kernels multiply by the cosine switch per neighbour, which removes the switch's large
    fourth derivative from the interpolation error (≈ 30× smaller), so that vectors match
    quippy's to ~1e-11 relative even on components that cancel to 1e-7 of the largest.
    ``spacing`` (Å): grid step bound, default 0.005 for "gto", 0.002 σ for "quip"
    (cubic-Hermite error ≈ 2e-13 of each function's scale) and 0.001 σ for "quip_gto"
    (whose functions have more structure).
    Cached per hyper-parameter set; returned arrays are read-only.
    """
    if radial_basis not in RADIAL_BASES:
        raise ValueError(f"unknown radial_basis {radial_basis!r}; available: {RADIAL_BASES}")
    if spacing is None:
        spacing = {"gto": 0.005, "quip": 0.002 * atom_sigma,
                   "quip_gto": 0.001 * atom_sigma}[radial_basis]
    h, d = table_grid(cutoff, cutoff_width, spacing)
    if radial_basis in QUIP_BASES:
        values, derivs = quip_radial_functions(d, cutoff, n_max, l_max, atom_sigma,
                                               radial_basis, basis_error_exponent)
        centre = values[0, :, 0].copy()
        for arr in (values, derivs, centre):
            arr.setflags(write=False)
        return h, values, derivs, centre
    values, derivs = _gto_radial_functions(d, cutoff, n_max, l_max, atom_sigma)
    fc, dfc = cosine_cutoff(d, cutoff, cutoff_width)
    derivs = derivs * fc[:, None, None] + values * dfc[:, None, None]
    centre = values[0, :, 0].copy()
    values = values * fc[:, None, None]
    for arr in (values, derivs, centre):
        arr.setflags(write=False)
    return h, values, derivs, centre


def _gto_radial_functions(d, cutoff, n_max, l_max, atom_sigma):
    """I_nl(d) and dI_nl/dd (len(d), n_max, l_max+1) of the "gto" basis by Gauss-Legendre
    quadrature (module docstring)."""
    n_grid = len(d)
    sig2 = atom_sigma ** 2
    # quadrature over r: the integrand lives in [max(0, d-8σ), d+8σ] ⊂ [0, cutoff+8σ]
    r_max = cutoff + 8.0 * atom_sigma
    n_quad = max(200, int(r_max / atom_sigma * 40))
    xg, wg = np.polynomial.legendre.leggauss(n_quad)
    r = 0.5 * r_max * (xg + 1.0)
    w = 0.5 * r_max * wg
    sig_n = gto_sigmas(cutoff, n_max)
    nn = np.arange(n_max)[:, None]
    basis = r[None, :] ** nn * np.exp(-0.5 * r[None, :] ** 2 / sig_n[:, None] ** 2)  # (n, q)
    basis = gto_orthonormaliser(cutoff, n_max) @ basis
    pref = 4.0 * math.pi / (2.0 * math.pi * sig2) ** 1.5
    values = np.zeros((n_grid, n_max, l_max + 1))
    derivs = np.zeros_like(values)
    rb = basis * (w * r * r)[None, :]          # (n, q) quadrature weights folded in
    for k0 in range(0, n_grid, 64):
        dk = d[k0:k0 + 64]
        x = dk[:, None] * r[None, :] / sig2      # (g, q)
        gauss = np.exp(-0.5 * (r[None, :] - dk[:, None]) ** 2 / sig2)
        iv, idv = _scaled_sph_in(l_max, x)        # (l, g, q)
        a = gauss[None] * iv
        b = gauss[None] * (-dk[None, :, None] / sig2 * iv + r[None, None, :] / sig2 * idv)
        values[k0:k0 + 64] = pref * np.einsum("nq,lgq->gnl", rb, a)
        derivs[k0:k0 + 64] = pref * np.einsum("nq,lgq->gnl", rb, b)
    return values, derivs


@njit(cache=True, nogil=True, inline="always")
def _hermite(d, h):
    """Grid cell k of distance d and the cubic-Hermite weights on a grid of spacing h:
    value = h00 y_k + h10 y'_k + h01 y_k+1 + h11 y'_k+1, derivative with e00..e11."""
    s = d / h
    k = int(s)
    t = s - k
    t2 = t * t
    t3 = t2 * t
    return (k, 2 * t3 - 3 * t2 + 1.0, (t3 - 2 * t2 + t) * h, -2 * t3 + 3 * t2, (t3 - t2) * h,
            (6 * t2 - 6 * t) / h, 3 * t2 - 4 * t + 1.0, (-6 * t2 + 6 * t) / h, 3 * t2 - 2 * t)


@njit(cache=True, nogil=True)
def radial_integral(d, h, values, derivs, g, dg):
    """Cubic-Hermite interpolation of the tabulated g_nl(d) = f_c(d) I_nl(d).

    d : distance (Å), must be < cutoff.  g, dg : (n_max, l_max+1) outputs (value, d/dd).
    """
    k, h00, h10, h01, h11, e00, e10, e01, e11 = _hermite(d, h)
    nmax = values.shape[1]
    lp = values.shape[2]
    for n in range(nmax):
        for l in range(lp):
            y0 = values[k, n, l]
            y1 = values[k + 1, n, l]
            m0 = derivs[k, n, l]
            m1 = derivs[k + 1, n, l]
            g[n, l] = h00 * y0 + h10 * m0 + h01 * y1 + h11 * m1
            dg[n, l] = e00 * y0 + e10 * m0 + e01 * y1 + e11 * m1


def transposed_table(table):
    """(h, values_ln, derivs_ln): the radial table laid out (n_grid, (l_max+1)·n_max), l-major
    and n fastest, the order the reverse-mode kernels use (contiguous n lanes, and one
    flat, vectorisable loop per interpolation)."""
    h, values, derivs, _ = table
    n_grid = values.shape[0]
    vt = np.ascontiguousarray(values.transpose(0, 2, 1)).reshape(n_grid, -1)
    dt = np.ascontiguousarray(derivs.transpose(0, 2, 1)).reshape(n_grid, -1)
    vt.setflags(write=False)
    dt.setflags(write=False)
    return h, vt, dt


@njit(cache=True, nogil=True, fastmath={'reassoc', 'contract'})
def radial_integral_ln(d, h, values, derivs, g, dg, with_derivative):
    """As :func:`radial_integral` on a flat (n_grid, (l_max+1)·n_max) table from
    :func:`transposed_table`: g, dg are flat ((l_max+1)·n_max,) outputs (index l·n_max + n).

    ``dg`` is only written when ``with_derivative``."""
    k, h00, h10, h01, h11, e00, e10, e01, e11 = _hermite(d, h)
    v0 = values[k]
    v1 = values[k + 1]
    m0 = derivs[k]
    m1 = derivs[k + 1]
    W = values.shape[1]
    for q in range(W):
        g[q] = h00 * v0[q] + h10 * m0[q] + h01 * v1[q] + h11 * m1[q]
    if with_derivative:
        for q in range(W):
            dg[q] = e00 * v0[q] + e10 * m0[q] + e01 * v1[q] + e11 * m1[q]


# --------------------------------------------------------------------------- radial scaling
RADIAL_SCALINGS = ("inverse_power",)


def radial_scaling_spec(scaling):
    """Canonical record of a radial scaling u(r) of the neighbour density (seed Eq. 22), or None.

    ``{"type": "inverse_power", "r0": r₀ (Å), "m": m, "c": c}`` is
    u(r) = c / (c + (r/r₀)^m)  (c = 1: u = 1/(1 + (r/r₀)^m)); u(0) = 1, so the centre atom's
    own contribution is unchanged. None / {} / {"type": "none"} mean no scaling.
    """
    if scaling is None or scaling is False or scaling == {}:
        return None
    if not isinstance(scaling, dict):
        raise TypeError(f"radial_scaling must be a dict such as {{'type': 'inverse_power', "
                        f"'r0': 2.0, 'm': 4, 'c': 1.0}} or None, got {scaling!r}")
    kind = scaling.get("type", "inverse_power")
    if kind in (None, "none"):
        return None
    if kind not in RADIAL_SCALINGS:
        raise ValueError(f"unknown radial_scaling type {kind!r}; available: {RADIAL_SCALINGS}")
    unknown = set(scaling) - {"type", "r0", "m", "c"}
    if unknown:
        raise ValueError(f"radial_scaling: unknown keys {sorted(unknown)} (type, r0, m, c)")
    try:
        r0 = float(scaling["r0"])
        m = float(scaling["m"])
    except KeyError as exc:
        raise ValueError(f"radial_scaling {kind!r} needs {exc.args[0]!r}") from None
    c = float(scaling.get("c", 1.0))
    if not r0 > 0 or not c > 0 or not m >= 1:
        raise ValueError(f"radial_scaling needs r0 > 0, c > 0 and m >= 1; got r0={r0}, m={m}, "
                         f"c={c}")
    return {"type": kind, "r0": r0, "m": m, "c": c}


def radial_scaling_values(d, scaling):
    """u(d) and du/dd for distances d (Å) and a canonical scaling record (see
    :func:`radial_scaling_spec`)."""
    d = np.asarray(d, dtype=np.float64)
    r0, m, c = scaling["r0"], scaling["m"], scaling["c"]
    x = d / r0
    xm = x ** m
    den = c + xm
    u = c / den
    du = -c * m * x ** (m - 1.0) / r0 / (den * den)
    return u, du


def scale_table(table, scaling):
    """The radial table (h, values, derivs, centre) of g_nl(d) with the density scaled by u(d):
    g̃ = u g and g̃' = u' g + u g' at every grid node (so the cubic-Hermite spline of g̃ is
    exactly differentiable as before, at no cost per pair). ``centre`` is unchanged (u(0) = 1).
    ``scaling`` None returns the table itself. Works on any table in this layout, whatever the
    radial basis that made it."""
    if scaling is None:
        return table
    h, values, derivs, centre = table
    d = np.arange(values.shape[0]) * h
    u, du = radial_scaling_values(d, scaling)
    shape = (-1,) + (1,) * (values.ndim - 1)
    new_v = values * u.reshape(shape)
    new_d = derivs * u.reshape(shape) + values * du.reshape(shape)
    for arr in (new_v, new_d):
        arr.setflags(write=False)
    return h, new_v, new_d, centre
