"""The prediction core: a Potential on a neighbour description with explicit ghost atoms."""
import numpy as np
import pytest
from ase.build import bulk

from gapcalc import GAPCalculator, SOAP, SparseGPR, load_model_file
from gapcalc.descriptors.soap import Environment
from gapcalc.potential import Potential, forces_and_virial, pair_virials


def ghost_environment(atoms, cutoff, species):
    """Owned atoms 0..n-1 plus every periodic image within ``cutoff`` as an explicit ghost
    atom (as LAMMPS would hand them over); returns (env, owner of every atom)."""
    from ase.neighborlist import neighbor_list
    i, j, S = neighbor_list("ijS", atoms, cutoff)
    n = len(atoms)
    pos = atoms.positions
    ghosts = {}
    owner = list(range(n))
    gpos = []
    index = np.empty(len(i), dtype=np.int64)
    for k, (a, b, s) in enumerate(zip(i, j, map(tuple, S))):
        if s == (0, 0, 0):
            index[k] = b
            continue
        if (b, s) not in ghosts:
            ghosts[(b, s)] = n + len(gpos)
            gpos.append(pos[b] + np.dot(s, atoms.cell.array))
            owner.append(b)
        index[k] = ghosts[(b, s)]
    allpos = np.vstack([pos] + ([np.array(gpos)] if gpos else []))
    order = np.argsort(i, kind="stable")
    first = np.searchsorted(i[order], np.arange(n + 1))
    index = index[order]
    vectors = allpos[index] - allpos[i[order]]
    spec = species.indices(atoms.numbers[np.array(owner)])
    return Environment.from_arrays(first, index, vectors, spec), np.array(owner)


@pytest.mark.parametrize("cell_small", [False, True])
def test_core_with_ghost_atoms_equals_periodic(cu_ni_model, cell_small):
    """Local energies, forces folded back to owners and the virial from an explicit
    owned + ghost description equal the periodic ASE path (images of the same atom
    included when the cell is smaller than twice the cutoff)."""
    at = bulk("Cu", "fcc", a=3.6) if cell_small else bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)
    at.numbers[0] = 28
    at.rattle(0.05, seed=1)
    pot = cu_ni_model.potential_
    ref = pot.evaluate(at, virials=True)
    env, owner = ghost_environment(at, pot.cutoff + 0.3, pot.species)
    energies, t = pot.local_energies(env)
    F_all, W = forces_and_virial(env, t, len(owner))
    F = np.zeros((len(at), 3))
    np.add.at(F, owner, F_all)
    np.testing.assert_allclose(energies, ref["energies"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(F, ref["forces"], rtol=0, atol=1e-10)
    stress = 0.5 * (W + W.T) / at.get_volume()
    np.testing.assert_allclose(stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]], ref["stress"],
                               rtol=0, atol=1e-10)
    # per-atom virials sum to the global one, on owners after folding
    V = np.zeros((len(at), 3, 3))
    np.add.at(V, owner, -pair_virials(env, t, len(owner)))
    np.testing.assert_allclose(V, ref["virials"], atol=1e-10)
    np.testing.assert_allclose(V.sum(0), -W, atol=1e-10)


def test_potential_file_round_trip_and_no_posterior(cu_ni_model, tmp_path):
    pot = cu_ni_model.potential_
    pot.save(tmp_path / "pot.npz")
    back = load_model_file(tmp_path / "pot.npz")
    assert isinstance(back, Potential) and not back.has_posterior
    at = bulk("Cu", "fcc", a=3.6, cubic=True)
    at.numbers[1] = 28
    at.rattle(0.05, seed=2)
    a, b = cu_ni_model.evaluate(at), back.evaluate(at)
    assert a["energy"] == pytest.approx(b["energy"], abs=1e-12)
    np.testing.assert_allclose(a["forces"], b["forces"], atol=1e-12)
    calc = GAPCalculator(back)
    at.calc = calc
    at.get_forces()
    with pytest.raises(RuntimeError, match="no posterior"):
        calc.get_property("forces_std", at)
    with pytest.raises(RuntimeError, match="refit"):
        GAPCalculator(back, uncertainty=True)


def test_inconsistent_neighbour_arrays_are_refused():
    with pytest.raises(ValueError, match="inconsistent"):
        Environment.from_arrays([0, 2], [1], np.zeros((1, 3)), [0, 0])
    with pytest.raises(ValueError, match="outside"):
        Environment.from_arrays([0, 1], [5], np.zeros((1, 3)), [0, 0])


def test_zeta2_kept_quadratic_form_matches_direct_and_follows_alpha(cu_ni_frames):
    """ζ = 2 terms keep Σ α x xᵀ per species between calls: the same energies and forces as
    the kernel built from (X, α) on every call, and a new α (reassigned, as a refit or an
    on-the-fly update does) is used at once."""
    soap = SOAP(["Cu", "Ni"], cutoff=3.6, n_max=4, l_max=3, atom_sigma=0.5)
    model = SparseGPR(soap, zeta=2, n_sparse=20, sigma_force=0.05).fit(cu_ni_frames)
    pot = model.potential_
    term = pot.terms[0]
    at = cu_ni_frames[0].copy()
    at.rattle(0.02, seed=7)
    env = pot.environment(at)

    def direct(alpha):
        """ε and pair terms with the quadratic form rebuilt from (X, alpha) per species."""
        c, p, pnorm = term.descriptor.describe(env)
        eps, w = np.zeros(len(p)), np.zeros_like(p)
        for _, rows, sl in term.blocks(env.centre_spec):
            eps[rows], w[rows] = term.kernel.energy_and_gradient(p[rows], term.X[sl], alpha[sl])
        return eps, term.descriptor.backward(env, c, p, pnorm, w)

    for _ in range(2):                      # first call builds the forms, the second reuses
        eps, t = term.local_energies(env)
        eps0, t0 = direct(term.alpha)
        np.testing.assert_allclose(eps, eps0, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(t, t0, rtol=1e-12, atol=1e-14)
    assert term._forms
    new_alpha = 1.5 * term.alpha
    term.alpha = new_alpha
    eps, t = term.local_energies(env)
    eps0, t0 = direct(new_alpha)
    np.testing.assert_allclose(eps, eps0, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(t, t0, rtol=1e-12, atol=1e-14)
    assert not np.allclose(eps, direct(new_alpha / 1.5)[0])
