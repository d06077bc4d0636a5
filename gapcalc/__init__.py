"""gapcalc: sparse-GPR SOAP interatomic potentials (GAP) in Python + Numba, as an ASE calculator."""
__version__ = "0.1.0"

from .descriptors import SOAP, PairDistance, TwoBody  # noqa: E402
from .gpr import SparseGPR  # noqa: E402
from .calculator import GAPCalculator  # noqa: E402


def load_model_file(path):
    """Load a :class:`SparseGPR` from a model file (no calculator)."""
    from .io import load_model
    return load_model(path)


def load(name_or_path, **calc_kwargs):
    """A :class:`GAPCalculator` from a model file, or a shipped potential by name ("Cu", "Si", ...)."""
    from pathlib import Path
    from .potentials import resolve
    return GAPCalculator(load_model_file(resolve(name_or_path)), **calc_kwargs)


__all__ = ["SOAP", "PairDistance", "TwoBody", "SparseGPR", "GAPCalculator", "load", "load_model_file"]
