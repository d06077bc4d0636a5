"""Reference calculators ("oracles") for on-the-fly learning that need an optional extra.

``gapcalc learn --oracle gapcalc.oracles:make_tblite`` (or any ``module:factory`` whose
factory returns an ASE calculator) points the learning loop at a real quantum-chemistry
code. Nothing here is imported by the rest of the package, and the optional codes are
imported only when a factory is called.

* :func:`make_tblite` — GFN2-xTB / GFN1-xTB / IPEA1-xTB through ``tblite``
  (``pip install gapcalc[xtb]``, i.e. ``pip install tblite``): semi-empirical tight-binding
  DFT, molecules and periodic cells, energies in eV, forces in eV/Å and stress in eV/Å³
  through ASE.
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)

XTB_METHODS = ("GFN2-xTB", "GFN1-xTB", "IPEA1-xTB")


def make_tblite(method: str = "GFN2-xTB", accuracy: float = 1.0,
                electronic_temperature: float = 300.0, max_iterations: int = 250,
                verbosity: int = 0, **kwargs):
    """An ASE calculator running ``method`` with tblite (the ``xtb`` extra).

    method : "GFN2-xTB" (default), "GFN1-xTB" or "IPEA1-xTB".
    accuracy : tblite's numerical accuracy (1.0 default; smaller is tighter).
    electronic_temperature : K, Fermi smearing of the occupations.
    max_iterations : SCC iterations before tblite gives up (the learning loop then
        treats the call as a failed oracle call: see ``on_oracle_error``).
    verbosity : 0 keeps tblite silent (its SCC log would flood an MD run).
    Other keyword arguments go to ``tblite.ase.TBLite`` unchanged (e.g. ``charge``,
    ``multiplicity``).
    """
    if method not in XTB_METHODS:
        raise ValueError(f"unknown xTB method {method!r}; known: {', '.join(XTB_METHODS)}")
    try:
        from tblite.ase import TBLite
    except ImportError as exc:   # the optional extra is missing
        raise ImportError("the tblite oracle needs the xtb extra: pip install 'gapcalc[xtb]' "
                          "(or pip install tblite)") from exc
    return TBLite(method=method, accuracy=accuracy,
                  electronic_temperature=electronic_temperature,
                  max_iterations=max_iterations, verbosity=verbosity, **kwargs)


def make_gfn2():
    """GFN2-xTB with tblite's defaults (a no-argument factory for ``--oracle``)."""
    return make_tblite("GFN2-xTB")


def make_gfn1():
    """GFN1-xTB with tblite's defaults (a no-argument factory for ``--oracle``)."""
    return make_tblite("GFN1-xTB")
