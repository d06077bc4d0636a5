"""Checks shared by the descriptor tests (test_soap, test_representations,
test_representations_quip): test structures, finite-difference gradient errors and the
reverse-mode (backward) path against the forward gradients.

Imported as ``from _checks import ...`` (pytest's default import mode puts tests/ on
sys.path, as tests/ is not a package)."""
import numpy as np
from ase import Atoms


def triclinic_cell(numbers, seed=4):
    """Periodic triclinic cell (about 4.3 Å edges, smaller than a 4 Å cutoff sphere) with
    the atoms ``numbers`` at random positions, pushed apart until no pair is closer than
    1 Å (or 50 tries)."""
    rng = np.random.default_rng(seed)
    cell = np.array([[4.2, 0.0, 0.0], [1.3, 3.9, 0.0], [0.7, -0.9, 4.4]])
    at = Atoms(numbers=numbers, scaled_positions=rng.random((len(numbers), 3)), cell=cell,
               pbc=True)
    for _ in range(50):
        d = at.get_all_distances(mic=True)
        np.fill_diagonal(d, 10)
        i, j = np.unravel_index(np.argmin(d), d.shape)
        if d[i, j] > 1.0:
            break
        at.positions[i] += rng.normal(size=3) * 0.5
    return at


def dense_gradient(grads, n_atoms):
    """Sparse pair gradients as a dense array G[i, j, a, d] = dX_id / dr_ja,
    shape (n_atoms, n_atoms, 3, D)."""
    G = np.zeros((n_atoms, n_atoms, 3, grads.values.shape[-1]))
    for (i, j), v in zip(grads.pairs, grads.values):
        G[i, j] += v
    return G


def position_fd_error(desc, at, G, h=1e-5):
    """Largest |central difference - G[:, j, a]| over all atoms j and directions a, for the
    dense position gradient ``G`` (see :func:`dense_gradient`); step ``h`` in Å."""
    err = 0.0
    for j in range(len(at)):
        for a in range(3):
            plus, minus = at.copy(), at.copy()
            plus.positions[j, a] += h
            minus.positions[j, a] -= h
            fd = (desc.compute(plus) - desc.compute(minus)) / (2 * h)
            err = max(err, np.abs(fd - G[:, j, a]).max())
    return err


def strain_fd_error(desc, at, strain, h=1e-5):
    """Largest |central difference - strain[:, a, b]| over the nine strain components
    (cell and atoms scaled by 1 ± eps), for the strain derivatives ``strain`` of shape
    (n_atoms, 3, 3, D); dimensionless step ``h``."""
    err = 0.0
    for a in range(3):
        for b in range(3):
            eps = np.zeros((3, 3))
            eps[a, b] = h
            plus, minus = at.copy(), at.copy()
            plus.set_cell(at.cell.array @ (np.eye(3) + eps).T, scale_atoms=True)
            minus.set_cell(at.cell.array @ (np.eye(3) - eps).T, scale_atoms=True)
            fd = (desc.compute(plus) - desc.compute(minus)) / (2 * h)
            err = max(err, np.abs(fd - strain[:, a, b]).max())
    return err


def assert_gradients_match_fd(desc, at, h=1e-5, rtol=1e-6):
    """``desc.compute(at, gradients=True)``: features of shape (n_atoms, n_features), and
    position gradients (and, for a periodic ``at``, strain derivatives) equal to central
    differences with step ``h`` to ``rtol`` of their largest magnitude."""
    X, grads = desc.compute(at, gradients=True)
    assert X.shape == (len(at), desc.n_features)
    G = dense_gradient(grads, len(at))
    err, scale = position_fd_error(desc, at, G, h), np.abs(G).max()
    assert err / scale < rtol, (err, scale)
    if at.pbc.any():
        err, scale = strain_fd_error(desc, at, grads.strain, h), np.abs(grads.strain).max()
        assert err / scale < rtol, (err, scale)


def assert_backward_matches_forward(desc, env, c, p, pn, n_atoms):
    """Contract random per-atom weights w (seed 0, shape of ``p``) with the forward pair
    gradients and with ``desc.backward``: forces and the strain derivative agree to
    1e-10 relative."""
    w = np.random.default_rng(0).normal(size=p.shape)
    g = desc.gradients(env, c, p, pn)
    ref = np.zeros((n_atoms, 3))
    np.add.at(ref, g.pairs[:, 1], np.einsum("sad,sd->sa", g.values, w[g.pairs[:, 0]]))
    t = desc.backward(env, c, p, pn, w)
    got = np.zeros((n_atoms, 3))
    np.add.at(got, env.index, t)
    np.add.at(got, np.repeat(np.arange(n_atoms), np.diff(env.first)), -t)
    np.testing.assert_allclose(got, ref, atol=1e-10 * np.abs(ref).max())
    strain = np.einsum("iabd,id->ab", g.strain, w)
    np.testing.assert_allclose(t.T @ env.vectors, strain, atol=1e-10 * np.abs(strain).max())
