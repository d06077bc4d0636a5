"""Covariance kernels between descriptor vectors and their derivatives (seed Eqs. 13-15).

Every kernel maps features P (N, D) and sparse points X (M, D) to K (N, M), and
offers the two derivative contractions the rest of the package needs:

* :meth:`rows_and_derivative` + :meth:`contract_centre` — forward mode, for
  design-matrix rows: k(p_i, X) and its derivative factor, then, for the gradient rows
  G (n, 3, D) of one centre i (∂p_i/∂r_j or ∂p_i/∂ε), Σ_f G_f ∂k(p_i, x_m)/∂p_f (n, 3, M).
* :meth:`energy_and_gradient` — reverse mode, for prediction: the local energies
  ε_i = Σ_m α_m k(p_i, x_m) and w_i = ∂ε_i/∂p_i (N, D).
"""
from __future__ import annotations

import numpy as np
from numba import njit

_ROWS = 256   # atoms per block in the reverse-mode kernel products


@njit(cache=True)
def subtract_rows(F, index, T):
    """F[index[r]] −= T[r] for every r (F (n, 3, M), index (k,), T (k, 3, M)); repeated
    indices accumulate. In place, no temporaries (the design-row scatter of a centre)."""
    for r in range(index.shape[0]):
        j = index[r]
        for a in range(T.shape[1]):
            for m in range(T.shape[2]):
                F[j, a, m] -= T[r, a, m]


def _power(S, e):
    """S**e; integer exponents by repeated multiplication (numpy's pow is ~10x slower)."""
    if isinstance(e, int) and 0 <= e <= 8:
        if e == 0:
            return np.ones_like(S)
        out = S.copy()
        for _ in range(e - 1):
            out *= S
        return out
    return S ** e


class DotProduct:
    """k(p, x) = δ² (p·x)^ζ on unit-normalised SOAP spectra (δ in eV)."""

    name = "dot_product"

    def __init__(self, zeta: float = 4, delta: float = 1.0):
        if zeta < 1:
            raise ValueError(f"zeta must be >= 1, got {zeta}")
        self.zeta = int(zeta) if float(zeta).is_integer() else float(zeta)
        self.delta = float(delta)

    def to_dict(self):
        return {"name": self.name, "zeta": self.zeta, "delta": self.delta}

    def __call__(self, P, X):
        return self.delta ** 2 * (P @ X.T) ** self.zeta

    def diag(self, P):
        """k(p, p), shape (N,)."""
        return self.delta ** 2 * np.einsum("id,id->i", P, P) ** self.zeta

    def rows_and_derivative(self, P, X):
        """K = k(P, X) (N, M) and dK = δ²ζ (p·x)^{ζ−1} (N, M), the factors of
        :meth:`contract_centre` (∂k/∂p = dK x)."""
        S = P @ X.T
        if self.zeta == 1:
            return self.delta ** 2 * S, np.full_like(S, self.delta ** 2)
        Sz1 = _power(S, self.zeta - 1)
        return self.delta ** 2 * (Sz1 * S), (self.zeta * self.delta ** 2) * Sz1

    def force_prior(self, P, G, mask):
        """Σ_{r,r'} G_rᵀ ∂²k(p_r, p_r')/∂p∂p' G_r' per direction a → (3,).

        P (n, D) centres' features, G (n, 3, D) their gradients w.r.t. one atom,
        mask (n, n) which pairs covary. ∂²k/∂p∂p'ᵀ = δ²ζ[(ζ−1)s^{ζ−2} p' pᵀ + s^{ζ−1} I]."""
        S = P @ P.T
        z = self.zeta
        A = self.delta ** 2 * z * S ** (z - 1) * mask
        B = (self.delta ** 2 * z * (z - 1) * (S ** (z - 2) if z != 2 else np.ones_like(S)) * mask
             if z != 1 else np.zeros_like(S))
        out = np.empty(3)
        for a in range(3):
            Ga = G[:, a, :]
            GP = Ga @ P.T                      # (r, r'): g_r · p_r'
            out[a] = np.sum(A * (Ga @ Ga.T)) + np.sum(B * GP * GP.T)
        return out

    def energy_gradient_rows(self, P, X, alpha, rows=False, derivative=False):
        """:meth:`energy_and_gradient` plus, for uncertainties, the kernel rows.

        Returns ε (N,), w (N, D), K = k(P, X) (N, M) if ``rows`` else None, and
        dK = δ²ζ (p·x)^{ζ−1} (N, M) if ``derivative`` else None (∂k/∂p = dK x); the
        rows reuse the products of the energy pass.
        """
        if not (rows or derivative) or self.zeta in (1, 2) or not isinstance(self.zeta, int):
            eps, w = self.energy_and_gradient(P, X, alpha)
            S = P @ X.T if (rows or derivative) else None
            K = self.delta ** 2 * S ** self.zeta if rows else None
            dK = self.zeta * self.delta ** 2 * S ** (self.zeta - 1) if derivative else None
            return eps, w, K, dK
        S = P @ X.T
        Sz1 = _power(S, self.zeta - 1)
        Sa = Sz1 * alpha
        eps = self.delta ** 2 * np.einsum("im,im->i", Sa, S)
        w = (self.zeta * self.delta ** 2) * (Sa @ X)
        K = (self.delta ** 2) * (Sz1 * S) if rows else None
        dK = (self.zeta * self.delta ** 2) * Sz1 if derivative else None
        return eps, w, K, dK

    def contract_centre(self, G, X, p, k, dk, product=None):
        """Σ_f G[r, a, f] ∂k(p, x_m)/∂p_f for the gradients G (n, 3, D) of one centre with
        features p (D,), k = k(p, X) (M,), dk = δ²ζ (p·x)^{ζ−1} (M,) → (n, 3, M).
        ``product``: G·Xᵀ (3n, M) when the caller made it already (overwritten)."""
        n = G.shape[0]
        T = G.reshape(3 * n, -1) @ X.T if product is None else product
        T *= dk
        return T.reshape(n, 3, -1)

    def quadratic_form(self, X, alpha):
        """A = Σ_m α_m x_m x_mᵀ (D, D), so that with ζ = 2 ε = δ² pᵀ A p. It depends on the
        sparse points and weights only (M·D² to build): callers that predict repeatedly with
        the same X and alpha build it once and pass it to :meth:`energy_and_gradient`."""
        return (X.T * alpha) @ X

    def energy_and_gradient(self, P, X, alpha, form=None):
        """ε (N,) and w = ∂ε/∂P (N, D) for weights alpha (M,). ``form``: with ζ = 2, the
        caller's :meth:`quadratic_form` of (X, alpha) (built here when None)."""
        if self.zeta == 1:
            # linear: ε = δ² p·w with w = Σ_m α_m x_m (no round-off from large, cancelling α)
            w = self.delta ** 2 * (X.T @ alpha)
            return P @ w, np.broadcast_to(w, P.shape).copy()
        if self.zeta == 2:
            # quadratic form: ε = δ² pᵀ (Σ_m α_m x_m x_mᵀ) p, cost D² per atom instead of M·D
            A = self.quadratic_form(X, alpha) if form is None else form
            PA = P @ A
            eps = self.delta ** 2 * np.einsum("id,id->i", PA, P)
            return eps, 2.0 * self.delta ** 2 * PA
        # in row blocks: the (rows × M) temporaries stay cache-sized, so the cost per
        # atom does not grow with the number of atoms
        eps = np.empty(len(P))
        w = np.empty_like(P)
        for lo in range(0, len(P), _ROWS):
            S = P[lo:lo + _ROWS] @ X.T
            Sz1 = _power(S, self.zeta - 1)
            Sz1 *= alpha                                   # α_m s^{ζ-1}
            eps[lo:lo + _ROWS] = np.einsum("im,im->i", Sz1, S)
            np.matmul(Sz1, X, out=w[lo:lo + _ROWS])
        eps *= self.delta ** 2
        w *= self.zeta * self.delta ** 2
        return eps, w


class SquaredExponential:
    """k(p, x) = δ² exp(-|p − x|² / (2θ²)) (δ in eV, θ in feature units)."""

    name = "squared_exponential"

    def __init__(self, theta: float = 1.0, delta: float = 1.0):
        if not theta > 0:
            raise ValueError(f"theta must be > 0, got {theta}")
        self.theta = float(theta)
        self.delta = float(delta)

    def to_dict(self):
        return {"name": self.name, "theta": self.theta, "delta": self.delta}

    def __call__(self, P, X):
        d2 = (np.einsum("id,id->i", P, P)[:, None] + np.einsum("md,md->m", X, X)[None, :]
              - 2.0 * P @ X.T)
        return self.delta ** 2 * np.exp(-0.5 * np.maximum(d2, 0.0) / self.theta ** 2)

    def diag(self, P):
        return np.full(len(P), self.delta ** 2)

    def force_prior(self, P, G, mask):
        """As :meth:`DotProduct.force_prior`; ∂²k/∂p∂p'ᵀ = k/θ² [I − d dᵀ/θ²], d = p − p'."""
        K = self(P, P) * mask
        t2 = self.theta ** 2
        out = np.empty(3)
        for a in range(3):
            Ga = G[:, a, :]
            Gd = Ga @ P.T                      # g_r · p_r'
            gd = np.diag(Gd)[:, None] - Gd     # g_r · (p_r − p_r')
            out[a] = np.sum(K / t2 * ((Ga @ Ga.T) - gd * (-gd.T) / t2))
        return out

    def rows_and_derivative(self, P, X):
        """K = k(P, X) twice: :meth:`contract_centre` needs k (∂k/∂p = k (x−p)/θ²)."""
        K = self(P, X)
        return K, K

    def energy_gradient_rows(self, P, X, alpha, rows=False, derivative=False):
        """As :meth:`DotProduct.energy_gradient_rows`; dK is k itself (∂k/∂p = k (x−p)/θ²)."""
        eps, w = self.energy_and_gradient(P, X, alpha)
        K = self(P, X) if (rows or derivative) else None
        return eps, w, K, K

    def contract_centre(self, G, X, p, k, dk, product=None):
        n = G.shape[0]
        T = G.reshape(3 * n, -1) @ X.T if product is None else product
        T -= (G.reshape(3 * n, -1) @ p)[:, None]
        T *= k / self.theta ** 2
        return T.reshape(n, 3, -1)

    def energy_and_gradient(self, P, X, alpha):
        K = self(P, X)
        Ka = K * alpha
        eps = Ka.sum(axis=1)
        w = (Ka @ X - eps[:, None] * P) / self.theta ** 2      # Σ_m α_m ∂k(p, x_m)/∂p
        return eps, w


def kernel_from_dict(d: dict):
    d = dict(d)
    name = d.pop("name")
    kinds = {DotProduct.name: DotProduct, SquaredExponential.name: SquaredExponential}
    if name not in kinds:
        raise ValueError(f"unknown kernel {name!r}; known: {sorted(kinds)}")
    return kinds[name](**d)
