"""Deterministic atomic structures shared by the benchmark scripts.

Every function returns freshly built ``ase.Atoms`` (or a list of them) and uses a
fixed random seed, so two runs -- or two codes in the same run -- see exactly the
same positions.

Main descriptor workloads (see ``WORKLOADS``):

* W1 ``si_diamond_216``  diamond Si, 3x3x3 conventional cells, rattled 0.05 A
* W2 ``water_64``        64 H2O at 1 g/cm^3 in a periodic cubic box
* W3 ``ethanol_100``     100 rattled, isolated (non-periodic) ethanol molecules
* W4 ``cu_fcc_256``      fcc Cu, 4x4x4 conventional cells, rattled 0.05 A

Helpers for scaling / MD benchmarks: ``cu_fcc_108``, ``cu_fcc_864``,
``si_diamond_1000`` and the generic ``si_diamond`` / ``cu_fcc``.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import bulk, molecule
from ase.units import _amu

SI_LATTICE = 5.431  # A, diamond Si
CU_LATTICE = 3.615  # A, fcc Cu
RATTLE = 0.05  # A, standard deviation of the Gaussian displacement

# Water monomer geometry.
OH_BOND = 0.96  # A
HOH_ANGLE = 104.5  # degrees
WATER_DENSITY = 1.0  # g/cm^3


def si_diamond(reps: int = 3, rattle: float = RATTLE, seed: int = 0) -> Atoms:
    """Diamond Si, ``reps``^3 conventional (8-atom) cells, Gaussian-rattled."""
    atoms = bulk("Si", "diamond", a=SI_LATTICE, cubic=True) * (reps, reps, reps)
    if rattle:
        atoms.rattle(stdev=rattle, seed=seed)
    return atoms


def cu_fcc(reps: int = 4, rattle: float = RATTLE, seed: int = 0) -> Atoms:
    """fcc Cu, ``reps``^3 conventional (4-atom) cells, Gaussian-rattled."""
    atoms = bulk("Cu", "fcc", a=CU_LATTICE, cubic=True) * (reps, reps, reps)
    if rattle:
        atoms.rattle(stdev=rattle, seed=seed)
    return atoms


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniformly distributed 3x3 rotation matrix (from a random unit quaternion)."""
    w, x, y, z = rng.normal(size=4)
    norm = np.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w / norm, x / norm, y / norm, z / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _water_monomer() -> np.ndarray:
    """O, H, H positions with O at the origin (bisector along +z)."""
    half = np.radians(HOH_ANGLE) / 2
    return np.array(
        [
            [0.0, 0.0, 0.0],
            [OH_BOND * np.sin(half), 0.0, OH_BOND * np.cos(half)],
            [-OH_BOND * np.sin(half), 0.0, OH_BOND * np.cos(half)],
        ]
    )


def water_box(
    grid: int = 4,
    density: float = WATER_DENSITY,
    displacement: float = 0.1,
    min_distance: float = 1.6,
    seed: int = 0,
) -> Atoms:
    """``grid``^3 water molecules in a periodic cubic box at ``density`` g/cm^3.

    Oxygens sit on a simple-cubic grid (plus a uniform random displacement of at
    most ``displacement`` A per axis); each molecule gets a uniformly random
    orientation, redrawn until no intermolecular distance (minimum image) is
    below ``min_distance`` A.  Intramolecular geometry: O-H 0.96 A, HOH 104.5 deg.
    """
    rng = np.random.default_rng(seed)
    n_mol = grid**3
    mass_g = n_mol * (15.999 + 2 * 1.008) * _amu * 1e3  # _amu is in kg
    box = (mass_g / density * 1e24) ** (1.0 / 3.0)  # cm^3 -> A^3 -> A
    spacing = box / grid
    monomer = _water_monomer()

    placed = np.empty((0, 3))
    for i in range(grid):
        for j in range(grid):
            for k in range(grid):
                origin = (np.array([i, j, k]) + 0.5) * spacing
                origin += rng.uniform(-displacement, displacement, size=3)
                for _ in range(1000):
                    candidate = origin + monomer @ _random_rotation(rng).T
                    if len(placed) == 0:
                        break
                    diff = candidate[:, None, :] - placed[None, :, :]
                    diff -= box * np.round(diff / box)
                    if np.sqrt((diff**2).sum(-1)).min() >= min_distance:
                        break
                else:
                    raise RuntimeError("could not place a water molecule")
                placed = np.vstack([placed, candidate])

    atoms = Atoms("OH2" * n_mol, positions=placed, cell=[box] * 3, pbc=True)
    atoms.wrap()
    return atoms


def ethanol_molecules(
    n: int = 100, rattle: float = RATTLE, seed: int = 0
) -> list[Atoms]:
    """``n`` isolated (non-periodic) ethanol molecules, molecule ``i`` rattled
    with seed ``seed + i``."""
    molecules = []
    for i in range(n):
        atoms = molecule("CH3CH2OH")
        atoms.rattle(stdev=rattle, seed=seed + i)
        molecules.append(atoms)
    return molecules


# --- the four descriptor workloads ---------------------------------------------


def w1_si_diamond_216() -> Atoms:
    """W1: diamond Si 3x3x3 conventional cells (216 atoms), rattled 0.05 A."""
    return si_diamond(3)


def w2_water_64() -> Atoms:
    """W2: 64 H2O (192 atoms) at 1 g/cm^3, periodic cubic box."""
    return water_box(4)


def w3_ethanol_100() -> list[Atoms]:
    """W3: 100 rattled ethanol molecules (900 atoms), each non-periodic."""
    return ethanol_molecules(100)


def w4_cu_fcc_256() -> Atoms:
    """W4: fcc Cu 4x4x4 conventional cells (256 atoms), rattled 0.05 A."""
    return cu_fcc(4)


# --- helpers for other benchmarks ----------------------------------------------


def cu_fcc_108() -> Atoms:
    """fcc Cu 3x3x3 conventional cells (108 atoms), rattled 0.05 A."""
    return cu_fcc(3)


def cu_fcc_864() -> Atoms:
    """fcc Cu 6x6x6 conventional cells (864 atoms), rattled 0.05 A."""
    return cu_fcc(6)


def si_diamond_1000() -> Atoms:
    """Diamond Si 5x5x5 conventional cells (1000 atoms), rattled 0.05 A."""
    return si_diamond(5)


WORKLOADS = {
    "W1": ("Si diamond 216 atoms (periodic)", w1_si_diamond_216),
    "W2": ("64 H2O, 192 atoms (periodic)", w2_water_64),
    "W3": ("100 ethanol molecules, 900 atoms (non-periodic)", w3_ethanol_100),
    "W4": ("Cu fcc 256 atoms (periodic)", w4_cu_fcc_256),
}


def as_list(structures: Atoms | list[Atoms]) -> list[Atoms]:
    """Wrap a single ``Atoms`` in a list; pass lists through."""
    return [structures] if isinstance(structures, Atoms) else list(structures)


def n_atoms(structures: Atoms | list[Atoms]) -> int:
    """Total number of atoms in one structure or a list of structures."""
    return sum(len(a) for a in as_list(structures))


def species(structures: Atoms | list[Atoms]) -> list[int]:
    """Sorted atomic numbers present in one structure or a list of them."""
    return sorted({int(z) for a in as_list(structures) for z in a.numbers})
