"""Resampling committee (seed Eq. 21): an alternative uncertainty estimate, for comparison.

N_r models share the sparse points and e0 of a base model but are each fitted on a
random subset of the training frames. One pass of descriptors serves all of them: the
frames are split into chunks, each chunk keeps its QR triangles (as in
:mod:`gapcalc.tuning`), and each member solves from the triangles of its chunks. The
prediction is the committee mean ȳ and its spread σ̄² = Σ_i (y⁽ⁱ⁾ − ȳ)² / (N_r − 1),
optionally scaled by a factor α fitted on validation data (:meth:`Committee.calibrate`),
since subsampled committees are over- or under-dispersed by a roughly constant factor.
Members' forces come from the training-path design rows: one descriptor pass per
structure for all members.
"""
from __future__ import annotations

import numpy as np

from .solver import StreamingQR, solve_regularised

TYPES = ("energy", "force", "virial")


class Committee:
    """Weights of N_r resampled models over one sparse set; see module docstring."""

    def __init__(self, model, alphas):
        self.model = model
        self.alphas = np.asarray(alphas)          # (M, N_r)
        self.scale = 1.0

    @property
    def n_members(self) -> int:
        return self.alphas.shape[1]

    def predict(self, atoms):
        """Mean and committee std of energy (eV) and forces (eV/Å)."""
        E, F, _ = self.model.design_rows(atoms, forces=True, virial=False)
        e0 = sum(self.model.e0_[s] for s in atoms.get_chemical_symbols())
        energies = E @ self.alphas + e0                               # (N_r,)
        forces = np.einsum("jam,mr->jar", F, self.alphas)             # (N, 3, N_r)
        return {"energy": float(energies.mean()),
                "energy_std": float(self.scale * energies.std(ddof=1)),
                "forces": forces.mean(axis=-1),
                "forces_std": self.scale * forces.std(axis=-1, ddof=1)}

    def calibrate(self, frames):
        """Fit α so that force errors / (α σ̄) have unit variance on ``frames``; returns α."""
        ratios = []
        self.scale = 1.0
        for at in frames:
            res = self.predict(at)
            err = res["forces"] - at.get_forces()
            ratios.append((err / np.maximum(res["forces_std"], 1e-12)).ravel() ** 2)
        self.scale = float(np.sqrt(np.mean(np.concatenate(ratios))))
        return self.scale


def resampling_committee(model, frames, n_members=8, fraction=0.5, n_chunks=16, seed=0):
    """Build a :class:`Committee` of ``n_members`` models, each on ``fraction`` of the frames."""
    m = type(model).from_params(model.get_params())
    frames, targets, idx, _ = m._prepare(frames)
    rng = np.random.default_rng(seed)
    n_chunks = min(n_chunks, len(idx))
    chunk = np.full(len(frames), -1)
    chunk[rng.permutation(idx)] = np.arange(len(idx)) % n_chunks
    accs = m._accumulate(frames, targets, idx, folds=chunk)
    tri = {c: [accs[c][t].triangle() for t in TYPES] for c in accs}
    alphas = []
    for _ in range(n_members):
        pick = rng.choice(n_chunks, max(1, int(round(fraction * n_chunks))), replace=False)
        combined = []
        for k in range(len(TYPES)):
            acc = StreamingQR(m.M_, 10 ** 9)
            for c in pick:
                acc.add_triangle(tri[int(c)][k])
            combined.append(acc.triangle())
        alpha, _ = solve_regularised(combined, m.U_)
        alphas.append(alpha)
    # the committee's base model: the fit on all chunks
    allt = []
    for k in range(len(TYPES)):
        acc = StreamingQR(m.M_, 10 ** 9)
        for c in tri:
            acc.add_triangle(tri[c][k])
        allt.append(acc.triangle())
    alpha, m.R_ = solve_regularised(allt, m.U_)
    m._set_alpha(alpha)
    m.triangles_ = np.stack(allt)
    m.training_summary_ = {"n_frames": len(idx), "committee": n_members}
    return Committee(m, np.stack(alphas, axis=1))
