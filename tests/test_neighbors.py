"""Tests for gapcalc.neighbors (cell-list neighbour list)."""

import itertools

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.neighborlist import neighbor_list as ase_neighbor_list

from gapcalc.neighbors import NeighborList, neighbor_list, update_vectors


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _nl(atoms, cutoff):
    return neighbor_list(atoms.positions, atoms.cell, atoms.pbc, cutoff)


def _as_dict(i, j, S, D):
    """{(i, j, s0, s1, s2): vector}; asserts there are no duplicate keys."""
    out = {}
    for a, b, s, d in zip(i, j, S, D):
        key = (int(a), int(b), int(s[0]), int(s[1]), int(s[2]))
        assert key not in out, f"duplicate pair {key}"
        out[key] = np.asarray(d)
    return out


def _ours_dict(nl):
    return _as_dict(nl.centers, nl.index, nl.shifts, nl.vectors)


def _check_invariants(nl, positions, cell, cutoff):
    n = len(positions)
    assert isinstance(nl, NeighborList)
    assert nl.first.dtype == np.int64 and nl.first.shape == (n + 1,)
    assert nl.index.dtype == np.int64
    assert nl.shifts.dtype == np.int64 and nl.shifts.shape == (nl.n_pairs, 3)
    assert nl.vectors.dtype == np.float64 and nl.vectors.shape == (nl.n_pairs, 3)
    assert nl.distances.dtype == np.float64 and nl.distances.shape == (nl.n_pairs,)
    assert nl.first[0] == 0 and nl.first[-1] == nl.n_pairs
    assert np.all(np.diff(nl.first) >= 0)
    assert np.all((nl.index >= 0) & (nl.index < n))
    i = nl.centers
    ref = positions[nl.index] + nl.shifts @ np.asarray(cell) - positions[i]
    np.testing.assert_allclose(nl.vectors, ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(nl.distances, np.linalg.norm(nl.vectors, axis=1), rtol=1e-14, atol=0)
    assert np.all(nl.distances < cutoff)
    self_zero = (nl.index == i) & np.all(nl.shifts == 0, axis=1)
    assert not np.any(self_zero)


def _compare(nl, ref, atol=1e-10):
    ours = _ours_dict(nl)
    assert set(ours) == set(ref), (
        f"missing {sorted(set(ref) - set(ours))[:5]} extra {sorted(set(ours) - set(ref))[:5]}"
    )
    for k, v in ref.items():
        np.testing.assert_allclose(ours[k], v, rtol=0, atol=atol)


def _compare_ase(atoms, cutoff):
    nl = _nl(atoms, cutoff)
    _check_invariants(nl, atoms.positions, atoms.cell.array, cutoff)
    i, j, S, D = ase_neighbor_list("ijSD", atoms, cutoff)
    _compare(nl, _as_dict(i, j, S, D))
    return nl


def _brute_force(positions, cell, pbc, cutoff, nimg):
    """All (i, j, S) with |r_j + S@cell - r_i| < cutoff, S in [-nimg, nimg]
    along periodic axes (nimg must be large enough for the case at hand)."""
    cell = np.asarray(cell, dtype=float)
    ranges = [range(-nimg, nimg + 1) if p else range(1) for p in pbc]
    out = {}
    for S in itertools.product(*ranges):
        S = np.array(S)
        D = positions[None, :, :] + S @ cell - positions[:, None, :]
        d = np.linalg.norm(D, axis=2)
        for a, b in zip(*np.nonzero(d < cutoff)):
            if a == b and not S.any():
                continue
            out[(int(a), int(b), int(S[0]), int(S[1]), int(S[2]))] = D[a, b]
    return out


# --------------------------------------------------------------------------
# comparisons with ASE / brute force
# --------------------------------------------------------------------------
def test_molecule_without_cell():
    atoms = molecule("C6H6")
    assert not atoms.cell.any()
    nl = _compare_ase(atoms, 3.0)
    assert np.all(nl.shifts == 0)
    # symmetric: every i->j has j->i with the opposite vector
    d = _ours_dict(nl)
    for (i, j, *_), v in d.items():
        np.testing.assert_allclose(d[(j, i, 0, 0, 0)], -v, atol=1e-14)


def test_large_cluster_without_cell_many_bins():
    rng = np.random.default_rng(0)
    pos = rng.uniform(-12.0, 12.0, size=(300, 3))
    atoms = Atoms("Ar300", positions=pos)
    _compare_ase(atoms, 2.7)


def test_nonperiodic_with_nonzero_cell_and_atoms_outside():
    rng = np.random.default_rng(1)
    cell = np.array([[5.0, 0.0, 0.0], [1.0, 4.0, 0.0], [0.5, 0.5, 6.0]])
    pos = rng.uniform(-4.0, 9.0, size=(60, 3))
    atoms = Atoms("Si60", positions=pos, cell=cell, pbc=False)
    nl = _compare_ase(atoms, 3.5)
    assert np.all(nl.shifts == 0)


def test_fcc_cu_bulk():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
    atoms.rattle(0.05, seed=2)
    _compare_ase(atoms, 5.0)


def test_fcc_cu_bulk_many_bins_small_cutoff():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((5, 4, 6))
    atoms.rattle(0.05, seed=3)
    nl = _compare_ase(atoms, 3.0)
    # 12 nearest neighbours per atom for a weakly rattled fcc crystal
    assert np.all(np.diff(nl.first) == 12)


def test_primitive_fcc_single_atom_cutoff_larger_than_cell():
    atoms = bulk("Cu", "fcc", a=3.61)  # 1 atom, plane spacing ~2.08 Å
    nl = _compare_ase(atoms, 5.0)
    # shells at a/sqrt2, a, a*sqrt(3/2): 12 + 6 + 24 images of the atom itself
    assert nl.n_pairs == 42
    assert np.all(nl.index == 0)
    _compare(nl, _brute_force(atoms.positions, atoms.cell.array, atoms.pbc, 5.0, 5))


def test_two_atom_cell_smaller_than_cutoff_self_images():
    cell = np.diag([2.0, 2.5, 3.0])
    atoms = Atoms("CuAu", positions=[[0.1, 0.2, 0.3], [1.1, 1.4, 1.6]], cell=cell, pbc=True)
    cutoff = 4.1
    nl = _compare_ase(atoms, cutoff)
    ref = _brute_force(atoms.positions, cell, atoms.pbc, cutoff, 4)
    _compare(nl, ref)
    # self images (j == i, nonzero shift) and several images of the other atom
    assert np.any(nl.index == nl.centers)
    assert np.sum((nl.centers == 0) & (nl.index == 1)) > 1


def test_random_triclinic_multispecies_atoms_outside_cell():
    rng = np.random.default_rng(4)
    cell = np.array([[6.0, 0.0, 0.0], [2.1, 5.5, 0.0], [-1.3, 1.7, 7.2]])
    n = 40
    frac = rng.uniform(-1.5, 2.5, size=(n, 3))
    symbols = rng.choice(["H", "C", "O", "Si"], size=n)
    atoms = Atoms(symbols=list(symbols), scaled_positions=frac, cell=cell, pbc=True)
    atoms.positions = frac @ cell  # keep the unwrapped positions
    assert (atoms.get_scaled_positions(wrap=False) < 0).any()
    assert (atoms.get_scaled_positions(wrap=False) >= 1).any()
    cutoff = 4.5
    nl = _compare_ase(atoms, cutoff)
    _compare(nl, _brute_force(atoms.positions, cell, atoms.pbc, cutoff, 4))


def test_strongly_skewed_small_cell():
    cell = np.array([[3.0, 0.0, 0.0], [2.8, 0.6, 0.0], [0.4, 0.3, 2.5]])
    atoms = Atoms("Al2", scaled_positions=[[0.0, 0.0, 0.0], [0.4, 0.55, 0.5]], cell=cell, pbc=True)
    cutoff = 4.0
    nl = _compare_ase(atoms, cutoff)
    _compare(nl, _brute_force(atoms.positions, cell, atoms.pbc, cutoff, 12))


def test_slab_pbc_xy_only():
    atoms = fcc111("Cu", size=(3, 3, 4), vacuum=6.0)
    atoms.rattle(0.05, seed=5)
    assert list(atoms.pbc) == [True, True, False]
    # push some atoms outside the cell laterally and below z = 0
    atoms.positions[:5] += atoms.cell[0] * 1.3 - atoms.cell[1] * 2.2
    atoms.positions[5:8, 2] -= 9.0
    nl = _compare_ase(atoms, 5.0)
    assert np.all(nl.shifts[:, 2] == 0)


def test_slab_with_zero_c_vector():
    atoms = fcc111("Cu", size=(2, 2, 3), vacuum=None, periodic=False)
    atoms.pbc = [True, True, False]
    atoms.cell[2] = 0.0
    atoms.rattle(0.02, seed=6)
    cutoff = 5.5  # larger than the 2x2 lateral cell: several lateral images
    nl = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
    _check_invariants(nl, atoms.positions, atoms.cell.array, cutoff)
    _compare(nl, _brute_force(atoms.positions, atoms.cell.array, atoms.pbc, cutoff, 6))


def test_wire_single_periodic_axis():
    rng = np.random.default_rng(7)
    cell = np.array([[2.7, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    pos = rng.uniform(-2.0, 4.0, size=(12, 3))
    cutoff = 3.2
    nl = neighbor_list(pos, cell, [True, False, False], cutoff)
    _check_invariants(nl, pos, cell, cutoff)
    _compare(nl, _brute_force(pos, cell, [True, False, False], cutoff, 6))


def test_dilute_large_cell_bin_cap():
    rng = np.random.default_rng(8)
    cell = np.diag([200.0, 150.0, 300.0])
    pos = rng.uniform(0, 1, size=(30, 3)) @ cell
    pos[1] = pos[0] + [0.5, -0.3, 0.2]
    pos[2] = pos[0] + [-199.5, 0.0, 0.1]  # neighbour of atom 0 through the boundary
    cutoff = 1.0
    nl = neighbor_list(pos, cell, True, cutoff)
    _check_invariants(nl, pos, cell, cutoff)
    _compare(nl, _brute_force(pos, cell, [True] * 3, cutoff, 1))
    assert nl.n_pairs >= 4


def test_pbc_scalar_and_ase_cell_object_accepted():
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    a = neighbor_list(atoms.positions, atoms.cell, True, 3.0)
    b = neighbor_list(atoms.positions, atoms.cell.array, [True, True, True], 3.0)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert np.all(np.diff(a.first) == 4)


# --------------------------------------------------------------------------
# determinism, edge cases, update_vectors
# --------------------------------------------------------------------------
def test_deterministic():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((4, 4, 4))
    atoms.rattle(0.1, seed=9)
    a = _nl(atoms, 4.5)
    b = _nl(atoms, 4.5)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_empty_and_single_atom():
    nl = neighbor_list(np.zeros((0, 3)), np.zeros((3, 3)), False, 3.0)
    assert nl.first.tolist() == [0] and nl.n_pairs == 0
    assert nl.vectors.shape == (0, 3) and nl.shifts.shape == (0, 3)
    nl = neighbor_list(np.zeros((1, 3)), np.zeros((3, 3)), False, 3.0)
    assert nl.first.tolist() == [0, 0] and nl.n_pairs == 0
    # one atom in a big periodic cell: no self image within the cutoff
    nl = neighbor_list(np.zeros((1, 3)), np.eye(3) * 10, True, 3.0)
    assert nl.n_pairs == 0


def test_update_vectors_after_moving_atoms():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
    atoms.rattle(0.05, seed=10)
    cutoff, skin = 4.0, 0.5
    nl = _nl(atoms, cutoff + skin)
    moved = atoms.copy()
    rng = np.random.default_rng(11)
    moved.positions += rng.uniform(-0.1, 0.1, size=moved.positions.shape)
    # atom 0 (at the origin) drifts across the cell boundary: no re-wrap needed
    moved.positions[0] = atoms.positions[0] - [0.15, 0.0, 0.0]
    new_cell = moved.cell.array * 1.01
    moved.set_cell(new_cell, scale_atoms=True)
    assert moved.get_scaled_positions(wrap=False)[0, 0] < 0

    vec, dist = update_vectors(nl, moved.positions, moved.cell)
    i = nl.centers
    ref = moved.positions[nl.index] + nl.shifts @ new_cell - moved.positions[i]
    np.testing.assert_allclose(vec, ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dist, np.linalg.norm(ref, axis=1), rtol=1e-14)
    # the stored list is untouched
    assert not np.allclose(nl.vectors, vec)

    # restricted to the true cutoff, the updated list equals a fresh one
    keep = dist < cutoff
    ours = _as_dict(i[keep], nl.index[keep], nl.shifts[keep], vec[keep])
    fresh = neighbor_list(moved.positions, moved.cell, moved.pbc, cutoff)
    _compare(fresh, ours)
    ai, aj, aS, aD = ase_neighbor_list("ijSD", moved, cutoff)
    ref = _as_dict(ai, aj, aS, aD)
    assert set(ours) == set(ref)
    for k, v in ref.items():
        np.testing.assert_allclose(ours[k], v, atol=1e-10)


def test_update_vectors_wrong_size():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    nl = _nl(atoms, 3.0)
    with pytest.raises(ValueError):
        update_vectors(nl, atoms.positions[:2], atoms.cell)


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------
@pytest.mark.parametrize("cutoff", [0.0, -1.0, np.nan, np.inf])
def test_bad_cutoff(cutoff):
    with pytest.raises(ValueError, match="cutoff"):
        neighbor_list(np.zeros((2, 3)), np.eye(3) * 5, True, cutoff)


def test_non_finite_positions_and_cell():
    pos = np.zeros((3, 3))
    pos[1, 2] = np.nan
    with pytest.raises(ValueError, match="positions"):
        neighbor_list(pos, np.eye(3) * 5, True, 2.0)
    pos[1, 2] = np.inf
    with pytest.raises(ValueError, match="positions"):
        neighbor_list(pos, np.eye(3) * 5, False, 2.0)
    cell = np.eye(3) * 5
    cell[0, 1] = np.inf
    with pytest.raises(ValueError, match="cell"):
        neighbor_list(np.zeros((2, 3)), cell, True, 2.0)


def test_singular_cell_with_pbc():
    with pytest.raises(ValueError, match="singular"):
        neighbor_list(np.zeros((2, 3)), np.zeros((3, 3)), True, 2.0)
    cell = np.array([[3.0, 0.0, 0.0], [6.0, 0.0, 0.0], [0.0, 0.0, 3.0]])  # a || b
    with pytest.raises(ValueError, match="singular"):
        neighbor_list(np.zeros((2, 3)), cell, [True, True, False], 2.0)
    cell = np.diag([3.0, 3.0, 0.0])
    with pytest.raises(ValueError, match="singular"):
        neighbor_list(np.zeros((2, 3)), cell, [False, False, True], 2.0)
    # ...but the same cell is fine when the zero vector is non-periodic
    nl = neighbor_list(np.array([[0.0, 0, 0], [0, 0, 1.0]]), cell, [True, True, False], 2.0)
    assert nl.n_pairs == 2


def test_cutoff_too_large_for_cell():
    with pytest.raises(ValueError, match="too large"):
        neighbor_list(np.zeros((1, 3)), np.eye(3) * 0.01, True, 1e3)


def test_far_apart_nonperiodic_atoms():
    pos = np.array([[0.0, 0.0, 0.0], [1e7, -3e6, 2e7], [1e7 + 1.0, -3e6, 2e7]])
    nl = neighbor_list(pos, np.zeros((3, 3)), False, 2.0)
    _check_invariants(nl, pos, np.zeros((3, 3)), 2.0)
    assert sorted(zip(nl.centers.tolist(), nl.index.tolist())) == [(1, 2), (2, 1)]


def test_bad_shapes():
    with pytest.raises(ValueError, match="positions"):
        neighbor_list(np.zeros((4, 2)), np.eye(3), True, 1.0)
    with pytest.raises(ValueError, match="cell"):
        neighbor_list(np.zeros((4, 3)), np.eye(2), True, 1.0)
    with pytest.raises(ValueError, match="pbc"):
        neighbor_list(np.zeros((4, 3)), np.eye(3), [True, False], 1.0)
