"""Two-body radial spectrum (ν = 1): the l = 0 channel of the density expansion.

    p^α_n(i) = c^α_{n00}(i) = w_c δ_{α,α_i} I_n0(0) Y_00 + Σ_{j∈α} f_c(r_ij) I_n0(r_ij) Y_00

A cheap, smooth, radial-only descriptor (seed Eq. 8 at l = 0), used beside SOAP the
way gap_fit's ``distance_2b`` complements it. Features are (n_species × n_max),
species-major; by default not normalised (it is used with a squared-exponential
kernel). Same interface as :class:`~gapcalc.descriptors.SOAP`.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .radial import radial_integral
from .soap import SOAP, DescriptorGradients, gradient_slots

Y00 = 0.5 / math.sqrt(math.pi)


@njit(cache=True, parallel=True)
def radial_spectrum_gradients(first, index, vectors, spec, n_species, h, values, derivs,
                              gfirst, pair_slot, centre_slot):
    """∂p_i/∂r_j (n_gpairs, 3, S·n_max) and ∂p_i/∂ε (n_atoms, 3, 3, S·n_max)."""
    n_atoms = first.shape[0] - 1
    n_max = values.shape[1]
    D = n_species * n_max
    grad = np.zeros((gfirst[n_atoms], 3, D))
    strain = np.zeros((n_atoms, 3, 3, D))
    for i in prange(n_atoms):
        g = np.empty((n_max, 1))
        dg = np.empty((n_max, 1))
        ic = centre_slot[i]
        for k in range(first[i], first[i + 1]):
            d = math.sqrt(vectors[k, 0] ** 2 + vectors[k, 1] ** 2 + vectors[k, 2] ** 2)
            radial_integral(d, h, values, derivs, g, dg)
            js = pair_slot[k]
            off = spec[index[k]] * n_max
            for n in range(n_max):
                s = dg[n, 0] * Y00 / d
                for a in range(3):
                    v = s * vectors[k, a]
                    grad[js, a, off + n] += v
                    grad[ic, a, off + n] -= v
                    for b in range(3):
                        strain[i, a, b, off + n] += v * vectors[k, b]
    return grad, strain


@njit(cache=True, parallel=True)
def radial_spectrum_backward(first, index, vectors, spec, dE_dp, h, values, derivs):
    """Reverse mode: pair terms ∂ε_i/∂r_ij (n_pairs, 3) from dE_dp (n_atoms, S·n_max)."""
    n_atoms = first.shape[0] - 1
    n_max = values.shape[1]
    out = np.zeros((vectors.shape[0], 3))
    for i in prange(n_atoms):
        g = np.empty((n_max, 1))
        dg = np.empty((n_max, 1))
        for k in range(first[i], first[i + 1]):
            d = math.sqrt(vectors[k, 0] ** 2 + vectors[k, 1] ** 2 + vectors[k, 2] ** 2)
            radial_integral(d, h, values, derivs, g, dg)
            off = spec[index[k]] * n_max
            s = 0.0
            for n in range(n_max):
                s += dE_dp[i, off + n] * dg[n, 0]
            s *= Y00 / d
            for a in range(3):
                out[k, a] = s * vectors[k, a]
    return out


class TwoBody(SOAP):
    """Radial spectrum descriptor (ν = 1); parameters as :class:`SOAP` without l_max."""

    name = "twobody"

    def __init__(self, species, cutoff=5.0, n_max=8, atom_sigma=0.5, cutoff_width=0.5,
                 radial_basis="gto", normalize=False, centre_weight=1.0):
        super().__init__(species, cutoff=cutoff, n_max=n_max, l_max=0, atom_sigma=atom_sigma,
                         cutoff_width=cutoff_width, radial_basis=radial_basis,
                         normalize=normalize, centre_weight=centre_weight)

    @property
    def n_features(self) -> int:
        return len(self.species) * self.n_max

    def to_dict(self) -> dict:
        d = super().to_dict()
        for key in ("l_max", "central_reference_all_species", "covariance_sigma0",
                    "basis_error_exponent", "layout", "species_Z", "Z"):
            d.pop(key, None)
        return d

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "name")
        return f"TwoBody({args})"

    def features(self, env):
        return self.spectrum(self.expand(env))[0]

    def describe(self, env):
        c = self.expand(env)
        return (c, *self.spectrum(c))

    def spectrum(self, c):
        p = np.ascontiguousarray(c[:, :, :, 0].reshape(c.shape[0], -1))
        pnorm = np.sqrt(np.einsum("ij,ij->i", p, p))
        if self.normalize:
            p = p / pnorm[:, None]
        return p, pnorm

    def gradients(self, env, c, p, pnorm, strain=True) -> DescriptorGradients:
        want_strain = bool(strain)
        h, values, derivs, _ = self._table
        gfirst, gindex, pair_slot, centre_slot = gradient_slots(env.first, env.index)
        grad, strain = radial_spectrum_gradients(env.first, env.index, env.vectors, env.spec,
                                                 len(self.species), h, values, derivs,
                                                 gfirst, pair_slot, centre_slot)
        if self.normalize:
            inv = 1.0 / pnorm
            centres = np.repeat(np.arange(env.n_atoms), np.diff(gfirst))
            dot = np.einsum("sad,sd->sa", grad, p[centres])
            grad = (grad - dot[:, :, None] * p[centres][:, None, :]) * inv[centres, None, None]
            dot = np.einsum("iabd,id->iab", strain, p)
            strain = (strain - dot[..., None] * p[:, None, None, :]) * inv[:, None, None, None]
        centres = np.repeat(np.arange(env.n_atoms), np.diff(gfirst))
        return DescriptorGradients(np.stack([centres, gindex], axis=1), grad,
                                   strain if want_strain else None)

    def backward(self, env, c, p, pnorm, dE_dp) -> np.ndarray:
        dE_dp = np.asarray(dE_dp, dtype=np.float64)
        if self.normalize:
            dot = np.einsum("id,id->i", p, dE_dp)
            dE_dp = (dE_dp - dot[:, None] * p) / pnorm[:, None]
        h, values, derivs, _ = self._table
        return radial_spectrum_backward(env.first, env.index, env.vectors, env.spec,
                                        np.ascontiguousarray(dE_dp), h, values, derivs)
