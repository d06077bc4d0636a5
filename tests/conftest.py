import numpy as np
import pytest

from gapcalc import SOAP, SparseGPR
from gapcalc.datasets import emt_frames

SOAP_SMALL = dict(cutoff=4.5, n_max=6, l_max=4, atom_sigma=0.5, cutoff_width=0.5)


@pytest.fixture(scope="session")
def cu_frames():
    """40 EMT Cu frames (2x2x2 cubic cells, 32 atoms), 800 K, strained."""
    return emt_frames("Cu", n_frames=40, size=(2, 2, 2), temperature=800, interval=5, seed=1)


@pytest.fixture(scope="session")
def cu_model(cu_frames):
    desc = SOAP(["Cu"], **SOAP_SMALL)
    return SparseGPR(desc, n_sparse=150, sigma_energy=0.001, sigma_force=0.02,
                     sigma_virial=0.02).fit(cu_frames[:30])


@pytest.fixture(scope="session")
def cu_ni_frames():
    """4 EMT Cu/Ni frames (2x2x1 cubic fcc cells, 16 atoms, 5 Ni each), rattled 0.08 Å."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    rng = np.random.default_rng(3)
    frames = []
    for k in range(4):
        at = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 1))
        at.numbers[rng.choice(len(at), 5, replace=False)] = 28
        at.rattle(0.08, seed=k)
        at.calc = EMT()
        at.get_forces()
        frames.append(at)
    return frames


@pytest.fixture(scope="session")
def cu_ni_model(cu_ni_frames):
    """A small Cu/Ni SOAP + two-body model fitted to ``cu_ni_frames`` (cutoff 3.6 Å).
    Shared: tests must not change it."""
    soap = SOAP(["Cu", "Ni"], cutoff=3.6, n_max=4, l_max=3, atom_sigma=0.5)
    return SparseGPR(soap, n_sparse=20, two_body=True, sigma_force=0.05).fit(cu_ni_frames)
