"""Training targets from ``ase.Atoms`` (extended XYZ) and input validation.

Where each quantity is looked for, in order (key names settable):

* energy (eV, total): ``atoms.info[energy_key]``, else ``atoms.calc.results['energy']``
  when ``energy_key`` is ``"energy"`` (ASE ≥ 3.23 moves extxyz ``energy`` there).
* forces (eV/Å): ``atoms.arrays[force_key]``, else ``atoms.calc.results['forces']``.
* virial (eV, gap_fit convention, virial = −stress × volume, positive when compressed):
  ``atoms.info[virial_key]`` (9 numbers or 3×3); else from a stress (eV/Å³, ASE sign)
  in ``atoms.info[stress_key]`` (6 Voigt or 9) or ``atoms.calc.results['stress']``.

Noise (the σ of each row of the least-squares problem, seed Eq. 17):
σ_E (eV/atom) is multiplied by √N_atoms, σ_F (eV/Å) is per component, σ_V (eV/atom)
is multiplied by √N_atoms, as gap_fit does. They are overridden, in increasing
priority, by ``config_type_sigma[config_type]`` (a dict with keys ``energy``,
``force``, ``virial``) and by the per-frame info keys ``energy_sigma``,
``force_sigma``, ``virial_sigma`` (same units as the defaults). A per-atom boolean
array ``force_mask`` (True = leave this atom's force out, as gap_fit) is honoured.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .neighbors import neighbor_list


class FrameError(ValueError):
    """Bad input, with the index of the offending frame in the message."""


def check_atoms(atoms, min_distance: float = 0.5, where: str = "structure"):
    """Raise FrameError for non-finite or unphysical geometry.

    Checks: finite positions and cell; a non-singular cell along periodic directions;
    no two atoms (including periodic images) closer than ``min_distance`` Å.
    """
    pos = np.asarray(atoms.positions)
    cell = np.asarray(atoms.cell.array)
    if not np.all(np.isfinite(pos)):
        bad = int(np.flatnonzero(~np.isfinite(pos).all(axis=1))[0])
        raise FrameError(f"{where}: non-finite position for atom {bad}")
    if not np.all(np.isfinite(cell)):
        raise FrameError(f"{where}: non-finite cell")
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any():
        per = cell[pbc]
        norms = np.linalg.norm(per, axis=1)
        if np.any(norms == 0) or np.linalg.svd(per / norms[:, None], compute_uv=False).min() < 1e-8:
            raise FrameError(f"{where}: singular (zero-volume) cell {cell.tolist()} "
                             f"with pbc={pbc.tolist()}")
    if min_distance > 0 and len(atoms) > 0:
        try:
            nl = neighbor_list(pos, cell, pbc, min_distance)
        except ValueError as exc:
            raise FrameError(f"{where}: {exc}") from None
        if len(nl.index):
            k = int(np.argmin(nl.distances))
            i = int(np.searchsorted(nl.first, k, side="right") - 1)
            raise FrameError(f"{where}: atoms {i} and {int(nl.index[k])} are "
                             f"{nl.distances[k]:.3f} Å apart, closer than the minimum "
                             f"distance {min_distance} Å")


@dataclass
class Targets:
    """Reference data of one training frame (None where absent)."""
    index: int
    energy: float | None
    forces: np.ndarray | None       # (n, 3) eV/Å
    virial: np.ndarray | None       # (3, 3) eV
    sigma_energy: float             # eV, total for the frame
    sigma_force: float              # eV/Å
    sigma_virial: float             # eV, total for the frame
    force_mask: np.ndarray | None   # (n,) True = use this atom's force
    config_type: str


@dataclass
class TargetKeys:
    energy: str = "energy"
    forces: str = "forces"
    virial: str = "virial"
    stress: str = "stress"


def _calc_result(atoms, name):
    calc = atoms.calc
    if calc is None:
        return None
    results = getattr(calc, "results", {}) or {}
    return results.get(name)


def read_targets(atoms, index: int, keys: TargetKeys, sigma: dict, config_type_sigma=None,
                 require_forces: bool = True) -> Targets:
    """Targets and noise of frame ``index``; FrameError names the frame and the problem."""
    where = f"frame {index}"
    n = len(atoms)
    if n == 0:
        raise FrameError(f"{where}: no atoms")
    energy = atoms.info.get(keys.energy)
    if energy is None and keys.energy in ("energy", "free_energy"):
        energy = _calc_result(atoms, keys.energy)
    forces = atoms.arrays.get(keys.forces)
    if forces is None and keys.forces == "forces":
        forces = _calc_result(atoms, "forces")
    virial = atoms.info.get(keys.virial)
    stress = atoms.info.get(keys.stress)
    if stress is None and keys.stress == "stress":
        stress = _calc_result(atoms, "stress")
    if energy is None:
        raise FrameError(f"{where}: no energy (looked for info[{keys.energy!r}] and the "
                         f"attached calculator's results)")
    try:
        energy = float(energy)
    except (TypeError, ValueError):
        raise FrameError(f"{where}: energy {energy!r} is not a number") from None
    if not np.isfinite(energy):
        raise FrameError(f"{where}: energy is {energy}")
    if forces is None:
        if require_forces and n > 1:
            raise FrameError(f"{where}: no forces (looked for arrays[{keys.forces!r}] and the "
                             f"attached calculator's results)")
    else:
        forces = np.asarray(forces, dtype=np.float64)
        if forces.shape != (n, 3):
            raise FrameError(f"{where}: forces have shape {forces.shape}, expected ({n}, 3)")
        if not np.all(np.isfinite(forces)):
            bad = int(np.flatnonzero(~np.isfinite(forces).all(axis=1))[0])
            raise FrameError(f"{where}: non-finite force on atom {bad}")
    if virial is not None:
        virial = np.asarray(virial, dtype=np.float64)
        if virial.size != 9:
            raise FrameError(f"{where}: virial must have 9 components, got {virial.size}")
        virial = virial.reshape(3, 3)
    elif stress is not None:
        stress = np.asarray(stress, dtype=np.float64).ravel()
        if stress.size == 6:
            xx, yy, zz, yz, xz, xy = stress
            stress = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
        elif stress.size == 9:
            stress = stress.reshape(3, 3)
        else:
            raise FrameError(f"{where}: stress must have 6 or 9 components, got {stress.size}")
        if atoms.pbc.all():
            virial = -stress * atoms.get_volume()
    if virial is not None:
        if not atoms.pbc.all():
            virial = None  # a virial needs a 3-D periodic cell
        elif not np.all(np.isfinite(virial)):
            raise FrameError(f"{where}: non-finite virial/stress")
    config_type = str(atoms.info.get("config_type", "default"))
    s = dict(sigma)
    if config_type_sigma and config_type in config_type_sigma:
        s.update(config_type_sigma[config_type])
    for name in ("energy", "force", "virial"):
        if f"{name}_sigma" in atoms.info:
            s[name] = float(atoms.info[f"{name}_sigma"])
        if not s[name] > 0:
            raise FrameError(f"{where}: {name} sigma must be > 0, got {s[name]}")
    mask = atoms.arrays.get("force_mask")
    use = None if mask is None else ~np.asarray(mask, dtype=bool)
    return Targets(index, energy, forces, virial, s["energy"] * np.sqrt(n), s["force"],
                   s["virial"] * np.sqrt(n), use, config_type)
