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
