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

Frames with an energy but no forces (common in DFT databases; gap_fit uses them) train on
their energy (and virial) alone. :func:`check_targets` warns about frames without
forces and about physically implausible magnitudes (e.g. a stress in kbar or GPa read
as eV/Å³, forces in eV/bohr·1000, energies in meV), naming the frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import logging

from .neighbors import neighbor_list

log = logging.getLogger(__name__)

SIGMA_KEYS = ("energy", "force", "virial")

# beyond these, a number is almost certainly in the wrong unit (see check_targets)
PLAUSIBLE = {"force": 50.0,            # eV/Å, largest force component
             "stress": 1.0,            # eV/Å³ (160 GPa), largest stress component
             "energy_spread": 20.0}    # eV/atom, spread of per-atom energies in one data set


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
                 require_forces: bool = False) -> Targets:
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
        over = config_type_sigma[config_type]
        bad = sorted(set(over) - set(SIGMA_KEYS)) if isinstance(over, dict) else over
        if bad:
            raise FrameError(f"config_type_sigma[{config_type!r}]: unknown key(s) {bad} "
                             f"(use {list(SIGMA_KEYS)})")
        s.update(over)
    for name in ("energy", "force", "virial"):
        if f"{name}_sigma" in atoms.info:
            s[name] = float(atoms.info[f"{name}_sigma"])
        if not s[name] > 0:
            raise FrameError(f"{where}: {name} sigma must be > 0, got {s[name]}")
    mask = atoms.arrays.get("force_mask")
    use = None if mask is None else ~np.asarray(mask, dtype=bool)
    return Targets(index, energy, forces, virial, s["energy"] * np.sqrt(n), s["force"],
                   s["virial"] * np.sqrt(n), use, config_type)


def check_config_type_sigma(config_type_sigma, config_types):
    """Raise ValueError for unknown config types or keys in ``config_type_sigma``.

    config_types : the config types present in the training frames."""
    if not config_type_sigma:
        return
    if not isinstance(config_type_sigma, dict):
        raise ValueError("config_type_sigma must be a mapping {config_type: {key: sigma}}")
    unknown = sorted(set(config_type_sigma) - set(config_types))
    if unknown:
        raise ValueError(f"config_type_sigma names config type(s) {unknown} that no training "
                         f"frame has (present: {sorted(set(config_types))})")
    for ct, over in config_type_sigma.items():
        if not isinstance(over, dict):
            raise ValueError(f"config_type_sigma[{ct!r}] must be a mapping like "
                             '{"energy": 0.003, "force": 0.15}')
        bad = sorted(set(over) - set(SIGMA_KEYS))
        if bad:
            raise ValueError(f"config_type_sigma[{ct!r}]: unknown key(s) {bad} (use "
                             f"{list(SIGMA_KEYS)})")
        for k, v in over.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
                raise ValueError(f"config_type_sigma[{ct!r}][{k!r}] must be a number > 0, "
                                 f"got {v!r}")


def check_targets(frames, targets) -> list[str]:
    """Warnings (also logged) about targets that are absent or implausible; returns them.

    * frames without forces (trained on energy/virial only);
    * a force component above 50 eV/Å (eV/bohr, kcal/mol/Å, meV/Å?);
    * a stress component above 1 eV/Å³ = 160 GPa (kbar or GPa read as eV/Å³?);
    * per-atom energies spread over more than 20 eV/atom (meV, or mixed references?).
    """
    out = []

    def frames_text(idx):
        idx = [int(i) for i in idx]
        return ", ".join(map(str, idx[:5])) + (f" and {len(idx) - 5} more" if len(idx) > 5 else "")

    no_f = [t.index for k, t in enumerate(targets) if t.forces is None and len(frames[k]) > 1]
    if no_f:
        out.append(f"{len(no_f)} of {len(targets)} frames have no forces (frames "
                   f"{frames_text(no_f)}): they train on their energy (and virial) only")
    big_f = [t.index for t in targets if t.forces is not None and len(t.forces)
             and np.abs(t.forces).max() > PLAUSIBLE["force"]]
    if big_f:
        fmax = max(float(np.abs(t.forces).max()) for t in targets if t.index in set(big_f))
        out.append(f"force components up to {fmax:.3g} eV/Å in frames {frames_text(big_f)}: "
                   f"physically implausible above {PLAUSIBLE['force']:g} eV/Å (forces in "
                   "another unit?)")
    big_s = []
    smax = 0.0
    for k, t in enumerate(targets):
        if t.virial is not None:
            s = np.abs(t.virial).max() / frames[k].get_volume()
            if s > PLAUSIBLE["stress"]:
                big_s.append(t.index)
                smax = max(smax, float(s))
    if big_s:
        out.append(f"stress components up to {smax:.3g} eV/Å³ ({smax * 160.21766:.3g} GPa) in "
                   f"frames {frames_text(big_s)}: implausible above {PLAUSIBLE['stress']:g} "
                   "eV/Å³ — a stress in kbar or GPa read as eV/Å³? (ASE's extxyz stress is "
                   "eV/Å³; set virial_key/stress_key or convert)")
    per_atom = np.array([t.energy / len(frames[k]) for k, t in enumerate(targets)])
    if len(per_atom) > 1 and np.ptp(per_atom) > PLAUSIBLE["energy_spread"]:
        out.append(f"energies per atom span {np.ptp(per_atom):.3g} eV/atom (from "
                   f"{per_atom.min():.4g} to {per_atom.max():.4g}): implausible above "
                   f"{PLAUSIBLE['energy_spread']:g} eV/atom (energies in another unit, or "
                   "references mixed?)")
    for w in out:
        log.warning("training data: %s", w)
    return out
