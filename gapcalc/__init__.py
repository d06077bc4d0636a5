"""gapcalc: sparse-GPR SOAP interatomic potentials (GAP) in Python + Numba, as an ASE calculator."""
__version__ = "0.1.0"

import os as _os

# Numba's OpenMP threads otherwise spin-wait after every parallel region and take the
# core (or SMT sibling) from the serial numpy/BLAS work that follows: measured on a
# 2-CPU machine (Cu 864, OPENBLAS_NUM_THREADS=1), an MD call took 84.2 µs/atom with 1
# Numba thread, 84.6 with 2, and 60.5 with 2 waiting passively. Read by libgomp when
# Numba first starts its thread pool; a value set by the user wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .descriptors import SOAP, PairDistance, TwoBody  # noqa: E402
from .potential import Potential  # noqa: E402
from .gpr import SparseGPR  # noqa: E402
from .calculator import GAPCalculator  # noqa: E402


def load_model_file(path):
    """A model from a file (no calculator): a :class:`SparseGPR` when the file holds the
    posterior, else a :class:`Potential`; a gap_fit XML file (``.xml``) is imported as a
    :class:`Potential` (see :mod:`gapcalc.gap_xml`)."""
    from .gap_xml import is_gap_xml, load_gap_xml
    if is_gap_xml(path):
        return load_gap_xml(path)
    from .io import load_model
    return load_model(path)


def load(name_or_path, **calc_kwargs):
    """A :class:`GAPCalculator` from a model file (gapcalc ``.npz`` or gap_fit ``.xml``), or a
    shipped potential by name ("Cu", "Si", ...)."""
    from .potentials import resolve
    return GAPCalculator(load_model_file(resolve(name_or_path)), **calc_kwargs)


__all__ = ["SOAP", "PairDistance", "TwoBody", "Potential", "SparseGPR", "GAPCalculator", "load", "load_model_file"]
