"""Terms of imported gap_fit models: exact gradients (finite differences), locality,
covariance formulas, splines, model-file round trip."""
import numpy as np
import pytest
from ase.build import bulk

from gapcalc.gap_terms import (Angle3bTerm, CovarianceARD, CubicSpline1D, Distance2bTerm,
                               DistanceNbTerm, GlueTerm)
from gapcalc.potential import Potential

SPECIES = [28, 29]


def structure(seed=0, n=(2, 2, 1), cubic=True):
    rng = np.random.default_rng(seed)
    at = bulk("Cu", "fcc", a=3.6, cubic=cubic).repeat(n)
    at.numbers[rng.random(len(at)) < 0.4] = 28
    at.rattle(0.12, seed=seed)
    return at


def covariance(kind, d, M=5, perms=None, seed=0, f0=0.0, scale=3.0, low=1.5, theta=(0.8, 2.0)):
    rng = np.random.default_rng(seed)
    X = rng.uniform(low, scale, size=(M, d))
    perms = np.arange(d)[None] if perms is None else np.asarray(perms)
    th = rng.uniform(*theta, d)
    th = th[perms].mean(axis=0)        # symmetrised over the permutations, as the reader does
    return CovarianceARD(kind, th, 0.7, f0, perms, X,
                         rng.normal(size=M), rng.uniform(0.3, 1.0, M))


def glue_term():
    r = np.linspace(1.5, 4.2, 12)
    return GlueTerm(SPECIES, [
        {"Z": 29, "density": {"a": np.linspace(1.0, 4.0, 8).tolist(),
                              "rho": np.exp(-np.linspace(1.0, 4.0, 8)).tolist()},
         "embedding": {"rho": [0.0, 0.2, 0.5, 1.0, 2.0], "E": [0.0, -0.3, -0.5, -0.6, -0.4]}},
        {"Z": 28, "density": {"a": np.linspace(0.8, 3.8, 9).tolist(),
                              "rho": (0.5 * np.exp(-np.linspace(0.8, 3.8, 9))).tolist(),
                              "spline": True, "y1": -0.4, "yn": 0.0},
         "embedding": {"rho": [0.0, 0.3, 1.0, 2.0], "E": [0.1, -0.2, -0.4, -0.1],
                       "y1": 1e50, "yn": 0.2}}],
        [{"types": (0, 0), "r": r.tolist(), "E": (np.exp(-2 * (r - 1.5)) - 0.01).tolist()},
         {"types": (0, 1), "r": r.tolist(), "E": (0.5 * np.exp(-2 * (r - 1.6))).tolist(),
          "y1": 1e50}])


TERMS = {
    "2b_ard": lambda: Distance2bTerm(SPECIES, covariance("ard_se", 1, f0=0.3), 4.0, 0.5,
                                     Z1=29, Z2=0),
    "2b_pp_exp": lambda: Distance2bTerm(SPECIES, covariance("pp", 2, low=0.05, scale=0.5), 4.0, 1.0,
                                        exponents=[-1.0, -2.0]),
    "2b_tail": lambda: Distance2bTerm(SPECIES, covariance("ard_se", 1), 4.0, 0.5,
                                      tail_range=0.8, tail_exponent=1.0),
    "3b_ard": lambda: Angle3bTerm(SPECIES, covariance("ard_se", 3, scale=4.0), 3.5, 0.5,
                                  Z=29, Z1=29, Z2=28),
    "3b_pp": lambda: Angle3bTerm(SPECIES, covariance("pp", 3, low=0.5, scale=4.0, theta=(3.0, 5.0)),
                                 3.2, 0.5),
    "nb2": lambda: DistanceNbTerm(SPECIES, covariance("ard_se", 1, perms=[[0], [0]]), 3.8,
                                  0.5, order=2, Z=0),
    "nb3": lambda: DistanceNbTerm(SPECIES, covariance(
        "ard_se", 3, perms=[[0, 1, 2], [1, 0, 2], [0, 2, 1], [2, 0, 1], [1, 2, 0], [2, 1, 0]],
        f0=0.2), 3.3, 0.5, order=3, Z=0),
    "nb3_pp": lambda: DistanceNbTerm(SPECIES, covariance(
        "pp", 3, perms=[[0, 1, 2], [1, 0, 2], [0, 2, 1], [2, 0, 1], [1, 2, 0], [2, 1, 0]],
        low=2.0, scale=3.5, theta=(1.5, 2.0)), 3.3, 0.5, order=3, Z=0),
    "glue": glue_term,
}


def energy_of(pot, at):
    return pot.evaluate(at, forces=False, stress=False)["energy"]


@pytest.mark.parametrize("name", sorted(TERMS))
def test_forces_and_stress_are_exact_gradients(name):
    pot = Potential(SPECIES, {}, [TERMS[name]()])
    at = structure(1)
    res = pot.evaluate(at)
    assert np.isfinite(res["energy"]) and abs(res["energy"]) > 0
    h = 1e-5
    fd = np.zeros_like(at.positions)
    for a in range(len(at)):
        for c in range(3):
            p = at.copy()
            p.positions[a, c] += h
            em = at.copy()
            em.positions[a, c] -= h
            fd[a, c] = -(energy_of(pot, p) - energy_of(pot, em)) / (2 * h)
    scale = np.abs(res["forces"]).max()
    assert np.abs(res["forces"] - fd).max() <= 1e-6 * max(scale, 1.0)
    # stress from strain derivatives
    V = at.get_volume()
    fd_s = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            out = []
            for s in (h, -h):
                eps = np.eye(3)
                eps[a, b] += s
                p = at.copy()
                p.set_cell(at.cell.array @ eps.T, scale_atoms=True)
                out.append(energy_of(pot, p))
            fd_s[a, b] = (out[0] - out[1]) / (2 * h) / V
    fd_s = 0.5 * (fd_s + fd_s.T)
    voigt = fd_s[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    assert np.abs(res["stress"] - voigt).max() <= 1e-6 * max(np.abs(voigt).max(), 1e-3)


@pytest.mark.parametrize("name", sorted(TERMS))
def test_extensive_and_record_round_trip(name):
    term = TERMS[name]()
    pot = Potential(SPECIES, {"Cu": -0.1}, [term])
    at = structure(2)
    e1 = pot.evaluate(at)
    e2 = pot.evaluate(at.repeat((1, 1, 2)))
    assert e2["energy"] == pytest.approx(2 * e1["energy"], rel=1e-10)
    np.testing.assert_allclose(e2["energies"][:len(at)], e1["energies"], atol=1e-10)
    rec, arrays = term.to_record()
    back = type(term).from_record(rec, arrays)
    e3 = Potential(SPECIES, {"Cu": -0.1}, [back]).evaluate(at)
    assert e3["energy"] == e1["energy"]
    np.testing.assert_array_equal(e3["forces"], e1["forces"])


def test_permutation_normalised_covariance_formula():
    """k = δ² Σ_p k̃(x_m[p], x) / √(K_mm K_xx) + f0², times c_m: direct numpy check, and the
    gradient by finite differences; invariant under permutations of x."""
    perms = np.array([[0, 1, 2], [1, 0, 2], [0, 2, 1], [2, 0, 1], [1, 2, 0], [2, 1, 0]])
    cov = covariance("ard_se", 3, perms=perms, f0=0.4)
    x = np.array([2.1, 2.6, 3.3])

    def ktilde(a, b):
        return np.exp(-0.5 * np.sum(((a - b) / cov.theta) ** 2))

    kxx = sum(ktilde(x[p], x) for p in perms)
    ref = 0.0
    for Xm, a, c in zip(cov.X, cov.alpha, cov.sparse_cutoff):
        kmm = sum(ktilde(Xm[p], Xm) for p in perms)
        ref += a * c * (cov.delta ** 2 * sum(ktilde(Xm[p], x) for p in perms)
                        / np.sqrt(kmm * kxx) + cov.f0 ** 2)
    e, g = cov.energy(x)
    assert e[0] == pytest.approx(ref, rel=1e-13)
    for p in perms:
        assert cov.energy(x[p])[0][0] == pytest.approx(ref, rel=1e-12)
    h = 1e-6
    fd = [(cov.energy(x + h * np.eye(3)[q])[0][0] - cov.energy(x - h * np.eye(3)[q])[0][0])
          / (2 * h) for q in range(3)]
    np.testing.assert_allclose(g[0], fd, rtol=1e-7, atol=1e-9)


def test_pp_covariance_formula():
    cov = covariance("pp", 3, scale=2.5)
    x = np.array([2.0, 1.9, 2.2])
    j = 3 // 2 + 2
    ref = 0.0
    for Xm, a, c in zip(cov.X, cov.alpha, cov.sparse_cutoff):
        r = np.sqrt(np.sum(((Xm - x) / cov.theta) ** 2))
        k = (1 - r) ** (j + 1) * ((j + 1) * r + 1) if r < 1 else 0.0
        ref += a * c * cov.delta ** 2 * k
    assert cov.energy(x)[0][0] == pytest.approx(ref, rel=1e-13)


def test_spline_ends():
    x = np.array([0.0, 1.0, 2.0, 3.5])
    y = np.array([1.0, 0.5, 0.7, 0.2])
    s = CubicSpline1D(x, y, 0.3, -0.1)
    v, d = s(x)
    np.testing.assert_allclose(v, y, atol=1e-14)
    assert d[0] == pytest.approx(0.3) and d[-1] == pytest.approx(-0.1)
    # linear beyond the ends with the end slopes
    v, d = s([-1.0, 4.5])
    assert v[0] == pytest.approx(1.0 - 0.3) and v[1] == pytest.approx(0.2 - 0.1)
    from scipy.interpolate import CubicSpline
    nat = CubicSpline1D(x, y, 1e50, None)
    ref = CubicSpline(x, y, bc_type="natural")
    t = np.linspace(0, 3.5, 17)
    np.testing.assert_allclose(nat(t)[0], ref(t), atol=1e-13)
    np.testing.assert_allclose(nat(t)[1], ref(t, 1), atol=1e-12)
    v, d = nat([5.0])
    assert d[0] == pytest.approx(ref(3.5, 1)) and v[0] == pytest.approx(0.2 + 1.5 * ref(3.5, 1))


def test_local_energies_only_see_own_neighbours():
    """Each centre's ε depends only on its own neighbour vectors: the same local energies
    and pair terms on a ghost-atom description (as LAMMPS would give it)."""
    from tests.test_potential import ghost_environment
    pot = Potential(SPECIES, {}, [f() for f in TERMS.values()])
    at = structure(3)
    env_ghost, owner = ghost_environment(at, pot.cutoff, pot.species)
    eps_g, t_g = pot.local_energies(env_ghost)
    res = pot.evaluate(at)
    np.testing.assert_allclose(eps_g, res["energies"], atol=1e-12)
    from gapcalc.potential import forces_and_virial
    F, _ = forces_and_virial(env_ghost, t_g, len(owner))
    Fo = np.zeros((len(at), 3))
    np.add.at(Fo, owner, F)
    np.testing.assert_allclose(Fo, res["forces"], atol=1e-10)
