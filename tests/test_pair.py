"""PairDistance (gapcalc/descriptors/pair.py): gap_fit's distance_2b as Gaussian features."""
import math

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from gapcalc import SparseGPR
from gapcalc.descriptors import PairDistance, descriptor_from_dict
from gapcalc.descriptors.radial import cosine_cutoff


def dimer(r, a="Si", b="Si"):
    return Atoms(a + b, positions=[[0, 0, 0], [r, 0.3 * r, -0.2 * r]])


def test_features_are_cutoff_gaussians():
    d = PairDistance(["Si"], cutoff=5.0, theta=1.0)
    w = 1 / math.sqrt(2)
    s = np.linspace(-3 * w, 5 + 3 * w, d.n_grid)
    amp = math.sqrt((s[1] - s[0]) / (math.sqrt(math.pi) * w))
    for r in (1.7, 3.3, 4.8):
        at = dimer(r / math.sqrt(1 + 0.09 + 0.04))
        fc, _ = cosine_cutoff(np.array([r]), 5.0, 0.5)
        expect = fc[0] * amp * np.exp(-0.5 * (r - s) ** 2 / w ** 2)
        q = d.compute(at)
        np.testing.assert_allclose(q[0], expect, atol=1e-12)
        np.testing.assert_allclose(q[1], expect, atol=1e-12)


@pytest.mark.parametrize("theta", [0.5, 1.0, 2.0])
def test_linear_kernel_is_gap_pair_kernel(theta):
    """q(r)·q(r') = exp(-(r-r')²/2θ²) for one pair each (inside the cutoff's flat part)."""
    d = PairDistance(["Si"], cutoff=6.0, theta=theta, cutoff_width=0.5)
    for r1, r2 in ((2.0, 2.4), (2.5, 3.5), (3.0, 4.5)):
        q1 = d.compute(dimer(r1 / math.sqrt(1.13)))[0]
        q2 = d.compute(dimer(r2 / math.sqrt(1.13)))[0]
        assert abs(q1 @ q2 - math.exp(-(r1 - r2) ** 2 / (2 * theta ** 2))) < 1e-6


def test_species_channels_and_round_trip():
    d = PairDistance(["H", "O"], cutoff=4.0, theta=0.8)
    at = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    q = d.compute(at)
    n = d.n_grid
    assert q.shape == (3, 2 * n)
    # H species index 0, O index 1: the O centre sees only H neighbours
    assert np.all(q[0, n:] == 0) and q[0, :n].sum() > 0
    d2 = descriptor_from_dict(d.to_dict())
    assert d2.to_dict() == d.to_dict()
    np.testing.assert_array_equal(d2.compute(at), q)


def test_gradients_finite_difference():
    at = bulk("Si", "diamond", a=5.43, cubic=True)
    at.rattle(0.1, seed=3)
    d = PairDistance(["Si"], cutoff=4.0, theta=1.0)
    X, g = d.compute(at, gradients=True)
    h = 1e-5
    for j in (0, 5):
        for a in range(3):
            p, m = at.copy(), at.copy()
            p.positions[j, a] += h
            m.positions[j, a] -= h
            fd = (d.compute(p) - d.compute(m)) / (2 * h)
            an = np.zeros_like(X)
            for (i, jj), v in zip(g.pairs, g.values):
                if jj == j:
                    an[i] += v[a]
            assert np.abs(fd - an).max() < 1e-6 * np.abs(g.values).max()


def test_model_is_a_pair_potential(cu_frames):
    """The pair term's energy of a trimer is the sum of its dimers' (a pair potential)."""
    from gapcalc import SOAP
    model = SparseGPR(SOAP(["Cu"], cutoff=4.5, n_max=4, l_max=3), n_sparse=30,
                      two_body=True, n_sparse_2b=30).fit(cu_frames[:8])
    term = model.terms_[1]
    assert isinstance(term.descriptor, PairDistance) and term.kernel.zeta == 1
    assert term.M <= term.descriptor.n_features

    def pair_energy(at):
        ev = term.descriptor.compute(at)
        return float(term.kernel(ev, term.X).sum(axis=0) @ term.alpha)

    a, b = 2.4, 3.1
    tri = Atoms("Cu3", positions=[[0, 0, 0], [a, 0, 0], [0, b, 0]])
    c = math.hypot(a, b)
    phi = [pair_energy(Atoms("Cu2", positions=[[0, 0, 0], [r, 0, 0]])) for r in (a, b, c)]
    assert abs(pair_energy(tri) - sum(phi)) < 1e-10
