"""Alchemical compression of the species channels (seed Eqs. 23-25): learning u_Jα.

The compressed power spectrum of :class:`~gapcalc.descriptors.SOAP` (``compression=u``)
couples d_J "elemental features" J instead of the n_species elements α,

    p^{JJ'}_{nn'l} ∝ Σ_{αα'} u_Jα u_J'α' Σ_m c^α_{nlm} c^{α'}_{n'lm},

so its length grows with d_J² instead of n_species². :func:`learn_compression` finds u from
data by alternating least squares (ALS), as the seed describes (Willatt et al.): with the
total energy modelled as linear in the compressed spectrum summed over the atoms of a
structure,

    E_k ≈ Σ_s b_s N_s(k) + Σ_{JJ'nn'l} W_{JJ'nn'l} Σ_{αα'} u_Jα u_J'α' A^{αα'}_{nn'l}(k),

(A the species-resolved spectrum summed over structure k, N_s(k) its composition), ALS
alternates a ridge solve for the weights W (and b) at fixed u with a ridge solve for u at
fixed W and fixed right factor (the bilinear form is linear in the left u once the right
one is held), the right factor being the previous u. Rows of u are normalised after each
step (their scale is absorbed by W). Initial u: the d_J leading left singular vectors of
the species-unfolded spectra (a PCA of the species channels).
"""
from __future__ import annotations

import logging

import numpy as np

from .soap import SOAP

log = logging.getLogger(__name__)


def _structure_spectra(frames, soap: SOAP):
    """A (n_frames, S, S, n, n, L): species-resolved, unnormalised power spectrum summed over
    every structure's atoms, and the composition N (n_frames, S)."""
    S = len(soap.species)
    n, L = soap.n_max, soap.l_max + 1
    A = np.zeros((len(frames), S, S, n, n, L))
    N = np.zeros((len(frames), S))
    for k, at in enumerate(frames):
        env = soap.environment(at)
        c = soap.expand(env)                         # (atoms, S, n, L2)
        for l in range(L):
            cl = c[:, :, :, l * l:(l + 1) * (l + 1)]
            A[k, :, :, :, :, l] = np.einsum("ianm,ibpm->abnp", cl, cl) / np.sqrt(2 * l + 1)
        N[k] = np.bincount(env.spec, minlength=S)[:S]
    return A, N


def _ridge(X, y, lam):
    """argmin ‖Xw − y‖² + lam ‖w‖² (columns scaled to unit norm first)."""
    scale = np.sqrt(np.einsum("ij,ij->j", X, X)) + 1e-300
    Xs = X / scale
    w = np.linalg.solve(Xs.T @ Xs + lam * np.eye(X.shape[1]), Xs.T @ y)
    return w / scale


def learn_compression(frames, energies, species, d_J, cutoff=5.0, n_max=4, l_max=3,
                      atom_sigma=0.5, cutoff_width=0.5, n_iter=10, ridge=1e-6, seed=0):
    """Learn a (d_J, n_species) alchemical compression matrix u by alternating least squares.

    frames : list of ase.Atoms; energies : (n_frames,) total energies (eV).
    species : the SOAP species (their order defines u's columns).
    cutoff, n_max, l_max, atom_sigma, cutoff_width : the (small) SOAP used for learning.
    n_iter : ALS sweeps.  ridge : relative Tikhonov regularisation of each solve.
    Returns u (d_J, S), rows of unit length, deterministic for a given ``seed``.
    """
    soap = SOAP(species, cutoff=cutoff, n_max=n_max, l_max=l_max, atom_sigma=atom_sigma,
                cutoff_width=cutoff_width, normalize=False)
    S = len(soap.species)
    d_J = int(d_J)
    if not 1 <= d_J:
        raise ValueError(f"d_J must be >= 1, got {d_J}")
    y = np.asarray(energies, dtype=np.float64)
    if len(y) != len(frames):
        raise ValueError(f"{len(frames)} frames but {len(y)} energies")
    A, N = _structure_spectra(frames, soap)
    K, n, L = len(frames), n_max, l_max + 1
    # PCA of the species channels: rows α, columns (frames, α', n, n', l)
    unfold = A.transpose(1, 0, 2, 3, 4, 5).reshape(S, -1)
    Uu, _, _ = np.linalg.svd(unfold, full_matrices=False)
    u = Uu[:, :min(d_J, S)].T.copy()
    if d_J > S:      # more features than elements: pad with seeded random rows
        rng = np.random.default_rng(seed)
        u = np.vstack([u, rng.normal(size=(d_J - S, S))])
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    ystd = y.std() or 1.0
    lam = ridge * K
    for it in range(n_iter):
        # W-step: features F[k, J, J', n, n', l] = Σ_αα' u_Jα u_J'α' A
        F = np.einsum("ja,kabnpl,qb->kjqnpl", u, A, u, optimize=True)
        X = np.hstack([N, F.reshape(K, -1)])
        w = _ridge(X, y, lam)
        b, W = w[:S], w[S:].reshape(d_J, d_J, n, n, L)
        # u-step: E − b·N = Σ_Jα u_Jα B[k, J, α] with the right factor held at u
        B = np.einsum("jqnpl,kabnpl,qb->kja", W, A, u, optimize=True)
        B = B + np.einsum("qjpnl,kbapnl,qb->kja", W, A, u, optimize=True)
        r = y - N @ b
        # the bilinear form counts u twice (left and right): solve for the left half
        uv = _ridge(0.5 * B.reshape(K, -1), r, lam)
        u_new = uv.reshape(d_J, S)
        nrm = np.linalg.norm(u_new, axis=1, keepdims=True)
        u = u_new / np.where(nrm > 0, nrm, 1.0)
        F = np.einsum("ja,kabnpl,qb->kjqnpl", u, A, u, optimize=True)
        X = np.hstack([N, F.reshape(K, -1)])
        w = _ridge(X, y, lam)
        rmse = float(np.sqrt(np.mean((X @ w - y) ** 2)))
        log.info("compression ALS sweep %d/%d: training energy RMSE %.4g eV (std %.3g)",
                 it + 1, n_iter, rmse, ystd)
    # a deterministic sign: largest entry of each row positive
    sign = np.sign(u[np.arange(d_J), np.argmax(np.abs(u), axis=1)])
    return u * sign[:, None]
