"""Pair-distance descriptor: gap_fit's ``distance_2b`` as a linear model on Gaussian features.

gap_fit's 2-body term is a sum over pairs of a function of the distance drawn from a GP
with covariance  k(r, r') = δ² f_c(r) f_c(r') exp(-(r − r')² / 2θ²).  Writing the
squared exponential as an overlap of Gaussians of width w = θ/√2 on a dense grid of
centres s_n (spacing Δs ≤ w/2, from −3w to r_c + 3w),

    exp(-(r − r')²/2θ²) ≈ Σ_n G_n(r) G_n(r'),   G_n(r) = (Δs/√π w)^{1/2} exp(-(r − s_n)²/2w²),

turns that GP into a linear (ζ = 1 dot-product) kernel on per-atom features

    q^α_n(i) = Σ_{j∈α, r_ij<r_c} f_c(r_ij) G_n(r_ij)                    (shape S·n_grid),

so that Σ_i ε_i = Σ_i w·q_i = Σ_i Σ_j φ(r_ij) is a pair potential counted over ordered
pairs, exactly as gap_fit's ``distance_2b`` (one descriptor per ordered pair (i, j)), and
δ² Σ_{i,i'} q_i·q_{i'} is gap_fit's covariance of two energies for like-species pairs
(an unlike pair A-B enters through two independent functions, φ_AB in the A-centred
block and φ_BA in the B-centred block). The features are the l = 0 density channel with a
Gaussian-grid radial table, so :class:`~gapcalc.descriptors.TwoBody`'s kernels
(expansion, forward gradients, reverse mode) apply unchanged.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .radial import cosine_cutoff, table_grid
from .species import SpeciesMap
from .spherical import normalisation
from .twobody import Y00, TwoBody
from .soap import _feature_index, _species_feature_lists, check_cutoff


def grid_centres(cutoff: float, theta: float, n_grid: int) -> np.ndarray:
    """Gaussian centres s_n (Å): [−3w, r_c + 3w], so the overlap sum has no edge effects."""
    w = theta / math.sqrt(2.0)
    return np.linspace(-3.0 * w, cutoff + 3.0 * w, n_grid)


@lru_cache(maxsize=16)
def gaussian_grid_table(cutoff: float, theta: float, cutoff_width: float, n_grid: int,
                        spacing: float = 0.005):
    """Tabulate g_n(d) = f_c(d) G_n(d) / Y_00 and its derivative on a uniform grid.

    Same layout as :func:`~gapcalc.descriptors.radial.radial_table`: (h, values,
    derivs, centre) with values/derivs (n_points, n_grid, 1); centre = 0 (no self term).
    """
    w = theta / math.sqrt(2.0)
    centres = grid_centres(cutoff, theta, n_grid)
    ds = centres[1] - centres[0]
    amp = math.sqrt(ds / (math.sqrt(math.pi) * w))
    h, d = table_grid(cutoff, cutoff_width, spacing)
    x = d[:, None] - centres[None, :]
    G = amp * np.exp(-0.5 * x * x / (w * w))
    dG = -x / (w * w) * G
    fc, dfc = cosine_cutoff(d, cutoff, cutoff_width)
    scale = 1.0 / Y00
    values = (scale * fc[:, None] * G)[:, :, None]
    derivs = (scale * (fc[:, None] * dG + dfc[:, None] * G))[:, :, None]
    centre = np.zeros(n_grid)
    for arr in (values, derivs, centre):
        arr.setflags(write=False)
    return h, values, derivs, centre


class PairDistance(TwoBody):
    """Pair-distance features for a gap_fit-style ``distance_2b`` term (use with ζ = 1).

    Parameters
    ----------
    species : atomic numbers or symbols.  cutoff : r_c (Å).  cutoff_width : cosine
    switch width (Å).  theta : length scale θ of the pair kernel (Å, gap_fit's
    ``theta_uniform``).  n_grid : Gaussian centres on [−3w, r_c + 3w], w = θ/√2;
    default spacing ≤ w/2.
    """

    name = "distance_2b"

    def __init__(self, species, cutoff=5.0, theta=1.0, cutoff_width=0.5, n_grid=None):
        self.species = SpeciesMap(species)
        check_cutoff(cutoff, cutoff_width)
        if not theta > 0:
            raise ValueError(f"theta must be > 0, got {theta}")
        self.cutoff = float(cutoff)
        self.cutoff_width = float(cutoff_width)
        self.theta = float(theta)
        if n_grid is None:   # spacing ≤ w/2, w = θ/√2
            w = self.theta / math.sqrt(2.0)
            n_grid = int(math.ceil((self.cutoff + 6.0 * w) / (0.5 * w))) + 1
        if int(n_grid) < 2:
            raise ValueError(f"n_grid must be >= 2, got {n_grid}")
        self.n_grid = int(n_grid)
        # attributes the shared l = 0 kernels read
        self.n_max = self.n_grid
        self.l_max = 0
        self.atom_sigma = self.theta / math.sqrt(2.0)
        self.radial_basis = "gaussian_grid"
        self.normalize = False
        self.centre_weight = 0.0
        self._table = gaussian_grid_table(self.cutoff, self.theta, self.cutoff_width,
                                          self.n_grid)
        self._norm = normalisation(0)
        self._features = _feature_index(len(self.species), self.n_max, 0)
        self._species_features = _species_feature_lists(self._features, len(self.species))

    def to_dict(self) -> dict:
        return {"name": self.name, "species": self.species.numbers.tolist(),
                "cutoff": self.cutoff, "theta": self.theta,
                "cutoff_width": self.cutoff_width, "n_grid": self.n_grid}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "name")
        return f"PairDistance({args})"

    def spectrum(self, c):
        p = np.ascontiguousarray(c[:, :, :, 0].reshape(c.shape[0], -1))
        return p, np.sqrt(np.einsum("ij,ij->i", p, p))
