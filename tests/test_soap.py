"""SOAP descriptor: finite-difference gradients, invariances, quadrature cross-check."""
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from gapcalc.descriptors import SOAP, TwoBody, descriptor_from_dict
from gapcalc.descriptors.radial import radial_table
from gapcalc.descriptors.spherical import spherical_harmonics

from _checks import assert_backward_matches_forward, assert_gradients_match_fd, triclinic_cell

SMALL = dict(cutoff=4.0, n_max=4, l_max=3, atom_sigma=0.5, cutoff_width=1.0)


def ethanol():
    at = molecule("CH3CH2OH")
    at.rattle(0.05, seed=1)
    return at


def si_bulk():
    at = bulk("Si", "diamond", 5.43, cubic=True)
    at.rattle(0.05, seed=2)
    return at


def small_cell():
    """Two-atom fcc Cu primitive cell: much smaller than the cutoff sphere."""
    at = Atoms(
        "CuAu", positions=[[0, 0, 0], [1.1, 0.9, 1.0]],
        cell=[[0.0, 1.9, 1.9], [1.9, 0.0, 1.9], [1.9, 1.9, 0.0]], pbc=True)
    at.rattle(0.02, seed=3)
    return at


def triclinic():
    at = triclinic_cell([1, 8, 8, 6, 1, 6, 8, 1])
    at.positions[0] += at.cell[0] * 1.0  # one atom outside the cell
    return at


CASES = {
    "molecule": (ethanol, ["H", "C", "O"]),
    "bulk": (si_bulk, ["Si"]),
    "small_cell": (small_cell, ["Cu", "Au"]),
    "triclinic": (triclinic, ["H", "C", "O"]),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("kind", ["soap", "twobody"])
def test_position_and_strain_gradients(name, kind):
    make, species = CASES[name]
    at = make()
    desc = SOAP(species, **SMALL) if kind == "soap" else TwoBody(
        species, **{k: v for k, v in SMALL.items() if k != "l_max"})
    assert_gradients_match_fd(desc, at, h=1e-5, rtol=1e-6)


def test_invariances():
    at = triclinic()
    desc = SOAP(["H", "C", "O"], **SMALL)
    X = desc.compute(at)
    # translation (periodic: also wrapping)
    t = at.copy()
    t.translate([0.37, -1.2, 2.9])
    np.testing.assert_allclose(desc.compute(t), X, atol=1e-12)
    t.wrap()
    np.testing.assert_allclose(desc.compute(t), X, atol=1e-12)
    # rotation of positions and cell together
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    r = at.copy()
    r.set_cell(at.cell.array @ q.T, scale_atoms=False)
    r.positions = at.positions @ q.T
    np.testing.assert_allclose(desc.compute(r), X, atol=1e-12)
    # permutation
    perm = rng.permutation(len(at))
    np.testing.assert_allclose(desc.compute(at[perm]), X[perm], atol=1e-12)
    # molecule rotation
    m = ethanol()
    dm = SOAP(["H", "C", "O"], **SMALL)
    Xm = dm.compute(m)
    m2 = m.copy()
    m2.positions = m.positions @ q.T + 3.0
    np.testing.assert_allclose(dm.compute(m2), Xm, atol=1e-12)


def test_supercell_matches_primitive():
    prim = bulk("Cu", "fcc", 3.6)  # one-atom cell, much smaller than the cutoff sphere
    desc = SOAP(["Cu"], cutoff=5.0, n_max=6, l_max=4, atom_sigma=0.5)
    Xp = desc.compute(prim)
    sup = prim * (2, 3, 2)
    Xs = desc.compute(sup)
    np.testing.assert_allclose(Xs, np.repeat(Xp, len(sup), axis=0), atol=1e-12)
    cubic = bulk("Cu", "fcc", 3.6, cubic=True) * (2, 2, 2)
    np.testing.assert_allclose(desc.compute(cubic), np.repeat(Xp, len(cubic), axis=0),
                               atol=1e-12)


def test_smooth_at_cutoff():
    desc = SOAP(["Ar"], cutoff=4.0, n_max=4, l_max=3, atom_sigma=0.4, cutoff_width=0.5)
    xs = np.linspace(3.9, 4.1, 81)
    feats = []
    for x in xs:
        at = Atoms("Ar3", positions=[[0, 0, 0], [2.5, 0, 0], [0, x, 0.1]])
        feats.append(desc.compute(at)[0])
    feats = np.array(feats)
    steps = np.abs(np.diff(feats, axis=0)).max(axis=1)
    # no jump: consecutive steps change gradually, and shrink to zero at the cutoff
    assert np.abs(np.diff(steps)).max() < 0.05 * steps.max()
    i_cut = np.searchsorted(xs, 4.0)
    assert steps[i_cut - 2] < 0.05 * steps.max() and steps[i_cut:].max() == 0.0
    # beyond the cutoff the third atom does not matter at all
    ref = desc.compute(Atoms("Ar2", positions=[[0, 0, 0], [2.5, 0, 0]]))[0]
    np.testing.assert_allclose(feats[-1], ref, atol=1e-14)


def test_expansion_against_quadrature():
    """c_nlm from the tabulated fast path equals a direct 3-D quadrature of the density."""
    desc = SOAP(["C", "O"], cutoff=3.0, n_max=3, l_max=2, atom_sigma=0.5, cutoff_width=0.5,
                centre_weight=0.0)
    at = Atoms("COC", positions=[[0, 0, 0], [1.1, 0.3, -0.2], [-0.4, 1.2, 0.8]])
    env = desc.environment(at)
    c = desc.expand(env)
    # quadrature: r on Gauss-Legendre, angles on Gauss-Legendre x trapezoid
    from gapcalc.descriptors.radial import gto_orthonormaliser, gto_sigmas, cosine_cutoff
    rq, wr = np.polynomial.legendre.leggauss(120)
    rmax = 3.0 + 4.0
    r = 0.5 * rmax * (rq + 1)
    wr = 0.5 * rmax * wr
    ct, wt = np.polynomial.legendre.leggauss(40)
    phi = np.linspace(0, 2 * np.pi, 80, endpoint=False)
    st = np.sqrt(1 - ct ** 2)
    dirs = np.stack([np.outer(st, np.cos(phi)), np.outer(st, np.sin(phi)),
                     np.outer(ct, np.ones_like(phi))], -1).reshape(-1, 3)
    wang = np.outer(wt, np.full(phi.size, 2 * np.pi / phi.size)).ravel()
    Y, _ = spherical_harmonics(dirs, 2)
    sig = gto_sigmas(3.0, 3)
    R = gto_orthonormaliser(3.0, 3) @ (r[None] ** np.arange(3)[:, None]
                                       * np.exp(-0.5 * r[None] ** 2 / sig[:, None] ** 2))
    s2 = 0.25
    for centre in range(3):
        pts = r[:, None, None] * dirs[None]          # (r, ang, 3)
        for spec, z in enumerate([6, 8]):
            rho = np.zeros(pts.shape[:2])
            for j in range(3):
                if j == centre or at.numbers[j] != z:
                    continue
                v = at.positions[j] - at.positions[centre]
                fc, _ = cosine_cutoff(np.linalg.norm(v), 3.0, 0.5)
                rho += fc * np.exp(-((pts - v) ** 2).sum(-1) / (2 * s2)) / (2 * np.pi * s2) ** 1.5
            cq = np.einsum("nr,r,ra,a,al->nl", R, wr * r ** 2, rho, wang, Y)
            np.testing.assert_allclose(c[centre, spec], cq, atol=1e-7 * np.abs(cq).max() + 1e-12)


def test_unknown_species_named():
    desc = SOAP(["Si"], **SMALL)
    with pytest.raises(ValueError, match="Ge"):
        desc.compute(bulk("Ge", "diamond", 5.6))


def test_dict_round_trip():
    for desc in (SOAP(["O", "H"], **SMALL), TwoBody([8, 1], cutoff=4.0, n_max=5)):
        again = descriptor_from_dict(desc.to_dict())
        assert again.to_dict() == desc.to_dict()
        at = molecule("H2O")
        np.testing.assert_array_equal(again.compute(at), desc.compute(at))


def test_radial_table_is_cached_and_readonly():
    t1 = radial_table(4.0, 4, 3, 0.5, 1.0)
    t2 = radial_table(4.0, 4, 3, 0.5, 1.0)
    assert t1 is t2
    with pytest.raises(ValueError):
        t1[1][0, 0, 0] = 1.0


def test_spherical_harmonics_orthonormal_and_gradient():
    x, w = np.polynomial.legendre.leggauss(30)
    phi = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    st = np.sqrt(1 - x ** 2)
    dirs = np.stack([np.outer(st, np.cos(phi)), np.outer(st, np.sin(phi)),
                     np.outer(x, np.ones_like(phi))], -1).reshape(-1, 3)
    wang = np.outer(w, np.full(phi.size, 2 * np.pi / phi.size)).ravel()
    Y, _ = spherical_harmonics(dirs, 6)
    np.testing.assert_allclose((Y * wang[:, None]).T @ Y, np.eye(49), atol=1e-12)
    v = np.array([0.3, -1.2, 0.7])
    _, dY = spherical_harmonics(v, 6)
    h = 1e-6
    for a in range(3):
        e = np.eye(3)[a] * h
        fd = (spherical_harmonics(v + e, 6)[0] - spherical_harmonics(v - e, 6)[0]) / (2 * h)
        np.testing.assert_allclose(dY[0, :, a], fd[0], atol=1e-8)


def test_backward_matches_forward():
    """Reverse-mode pair terms contract to the same forces as forward-mode gradients."""
    at = triclinic()
    for desc in (SOAP(["H", "C", "O"], **SMALL), TwoBody(["H", "C", "O"], cutoff=4.0)):
        env = desc.environment(at)
        c = desc.expand(env)
        p, pn = desc.spectrum(c)
        assert_backward_matches_forward(desc, env, c, p, pn, len(at))


def test_batch_of_structures_equals_one_by_one():
    """compute(list) runs the kernels once for all structures, with identical results."""
    frames = [ethanol() for _ in range(3)]
    for k, at in enumerate(frames):
        at.rattle(0.05, seed=k)
    frames += [si_bulk(), small_cell()]
    species = ["H", "C", "O", "Si", "Cu", "Au"]
    for desc in (SOAP(species, **SMALL), TwoBody(species, cutoff=4.0, n_max=5)):
        X, g = desc.compute(frames, gradients=True)
        off = np.cumsum([0] + [len(a) for a in frames])
        for k, at in enumerate(frames):
            Xk, gk = desc.compute(at, gradients=True)
            np.testing.assert_allclose(X[off[k]:off[k + 1]], Xk, atol=1e-14)
            sel = (g.pairs[:, 0] >= off[k]) & (g.pairs[:, 0] < off[k + 1])
            np.testing.assert_array_equal(g.pairs[sel] - off[k], gk.pairs)
            np.testing.assert_allclose(g.values[sel], gk.values, atol=1e-14)
            np.testing.assert_allclose(g.strain[off[k]:off[k + 1]], gk.strain, atol=1e-14)
    with pytest.raises(ValueError, match="structure 1"):
        bad = ethanol()
        bad.positions[0, 0] = np.nan
        SOAP(species, **SMALL).compute([ethanol(), bad])


def test_position_gradients_without_strain():
    at = triclinic()
    for desc in (SOAP(["H", "C", "O"], **SMALL), TwoBody(["H", "C", "O"], cutoff=4.0)):
        X, g = desc.compute(at, gradients=True)
        X2, g2 = desc.compute(at, gradients=True, strain=False)
        assert g2.strain is None
        np.testing.assert_array_equal(X2, X)
        np.testing.assert_array_equal(g2.pairs, g.pairs)
        np.testing.assert_allclose(g2.values, g.values, rtol=0, atol=1e-15)


def test_fused_features_equal_expansion_then_spectrum():
    for at, species in ((triclinic(), ["H", "C", "O"]), (si_bulk(), ["Si"]), (ethanol(), ["H", "C", "O"])):
        for normalize in (True, False):
            desc = SOAP(species, normalize=normalize, **SMALL)
            env = desc.environment(at)
            p, _ = desc.spectrum(desc.expand(env))
            np.testing.assert_allclose(desc.compute(at), p, rtol=1e-12, atol=1e-14)


def test_harmonics_over_many_directions_match_one_by_one():
    """harmonics_block / harmonics_contract_block (neighbours vectorised) equal the
    per-direction harmonics and their gradients, poles and padding slots included."""
    from gapcalc.descriptors.spherical import (harmonics_block, harmonics_contract_block,
                                               normalisation)
    rng = np.random.default_rng(5)
    l_max = 6
    L2 = (l_max + 1) ** 2
    v = rng.normal(size=(21, 3))
    v[3] = [0.0, 0.0, 2.0]                     # the poles: sin θ = 0
    v[4] = [0.0, 0.0, -0.7]
    u = v / np.linalg.norm(v, axis=1)[:, None]
    ns, slots = len(u), 24                     # the last slots are never touched
    x, y, z = (np.ascontiguousarray(np.r_[u[:, a], np.zeros(slots - ns)]) for a in range(3))
    norm = normalisation(l_max)
    Q = np.empty((L2, slots))
    dQ = np.empty((L2, slots))
    C = np.empty((l_max + 1, slots))
    S = np.empty((l_max + 1, slots))
    Y = np.full((L2, slots), np.nan)
    harmonics_block(ns, x, y, z, l_max, norm, Y, Q, C, S)
    Yref, dYref = spherical_harmonics(v, l_max)            # ∇_r Y of r = v (1/Å)
    np.testing.assert_allclose(Y[:, :ns].T, Yref, atol=1e-13)
    assert np.isnan(Y[:, ns:]).all()
    A = rng.normal(size=(L2, slots))
    B = rng.normal(size=(L2, slots))
    ay, t0, t1, t2 = (np.empty(slots) for _ in range(4))
    harmonics_contract_block(ns, x, y, z, l_max, norm, A, B, Q, dQ, C, S, ay, t0, t1, t2)
    np.testing.assert_allclose(ay[:ns], np.einsum("kl,lk->k", Yref, A[:, :ns]), atol=1e-12)
    t = np.stack([t0, t1, t2], axis=1)[:ns]
    # project the polynomial gradient: ∇_r (Σ B Y) = (t − u (u·t)) / |r|
    proj = (t - u * np.einsum("ka,ka->k", u, t)[:, None]) / np.linalg.norm(v, axis=1)[:, None]
    np.testing.assert_allclose(proj, np.einsum("kla,lk->ka", dYref, B[:, :ns]), atol=1e-11)


def test_describe_equals_expand_then_spectrum_with_lonely_atoms():
    """The one-pass prediction kernel (c, p̂, |p|) equals expansion then spectrum, for
    several species, an atom without neighbours and a species absent from an atom's
    neighbourhood (empty slot blocks)."""
    at = Atoms("OH2CO", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0],
                                   [12.0, 12.0, 12.0], [3.0, 0.2, 0.1]], cell=[25] * 3,
               pbc=False)
    for species in (["H", "C", "O"], ["H", "C", "N", "O"]):
        desc = SOAP(species, **SMALL)
        env = desc.environment(at)
        c, p, pn = desc.describe(env)
        c2 = desc.expand(env)
        p2, pn2 = desc.spectrum(c2.copy())
        np.testing.assert_allclose(c, c2, rtol=0, atol=1e-14)
        np.testing.assert_allclose(p, p2, rtol=0, atol=1e-14)
        np.testing.assert_allclose(pn, pn2, rtol=1e-14)
        # the isolated C atom: only its own centre term, in its own species block
        s_c = desc.species.indices(np.array([6]))[0]
        assert np.abs(np.delete(c[3], s_c, axis=0)).max() == 0.0
        assert np.abs(c[3, s_c, :, 1:]).max() == 0.0 and np.abs(c[3, s_c, :, 0]).max() > 0
