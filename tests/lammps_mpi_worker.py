"""Two-rank half of tests/test_lammps.py (not collected by pytest: no test_ prefix).

    mpirun -np 2 python tests/lammps_mpi_worker.py WORKDIR

WORKDIR holds the inputs written by the test (``in.md``, ``in.relax``, ``cuni.data``,
``model.npz``). Runs, in that directory and on every rank:

1. ``in.md`` through the command-line entry point (``python -m gapcalc.lammps`` main):
   100 NVE steps with a small skin and atom sorting, so LAMMPS re-neighbours and atoms move
   between the ranks; ghost forces returned by Alltoallv (tag ``np2``);
2. the same with ``--reverse allreduce`` (tag ``np2ar``);
3. ``in.relax``: minimize with fix box/relax (tag ``np2``).

The test compares the dumps and logs with a one-rank run and with the ASE calculator.
"""
import os
import sys

from mpi4py import MPI  # noqa: F401  (before lammps: loads the MPI library it links)

from gapcalc.lammps.script import main

os.chdir(sys.argv[1])
main(["-in", "in.md", "-var", "tag", "np2", "-log", "log.np2", "-screen", "none"])
main(["-in", "in.md", "-var", "tag", "np2ar", "-log", "log.np2ar", "-screen", "none",
      "--reverse", "allreduce"])
main(["-in", "in.relax", "-var", "tag", "np2", "-log", "log.relax.np2", "-screen", "none"])
