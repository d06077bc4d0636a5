"""``mpirun -np N python -m gapcalc.lammps -in in.lmp [-var NAME VALUE ...]``."""
from .script import main

main()
