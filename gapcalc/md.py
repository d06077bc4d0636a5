"""Molecular dynamics driver with progress lines (steps/s, ns/day, T, energy)."""
from __future__ import annotations

import logging
import time

import numpy as np
from ase import units
from ase.md.velocitydistribution import Stationary

log = logging.getLogger(__name__)


def thermalize(atoms, temperature, rng):
    """Maxwell-Boltzmann momenta at ``temperature`` K from ``rng``, zero total momentum."""
    try:                                     # ASE >= 3.29
        from ase.md.velocitydistribution import thermalize_momenta
        thermalize_momenta(atoms, temperature, rng=rng)
    except ImportError:
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)


def make_dynamics(atoms, ensemble="langevin", temperature=300.0, timestep=1.0, pressure=0.0,
                  friction=0.01, seed=0, trajectory=None, interval=10):
    """An ASE dynamics object: "nve" (VelocityVerlet), "langevin", or "npt".

    temperature : K.  timestep : fs.  pressure : GPa (npt, isotropic MTK barostat).
    friction : 1/fs (Langevin).
    """
    dt = timestep * units.fs
    if ensemble == "nve":
        from ase.md.verlet import VelocityVerlet
        return VelocityVerlet(atoms, dt, trajectory=trajectory, loginterval=interval)
    if ensemble == "langevin":
        from ase.md.langevin import Langevin
        return Langevin(atoms, dt, temperature_K=temperature, friction=friction / units.fs,
                        fixcm=False, rng=np.random.default_rng(seed), trajectory=trajectory,
                        loginterval=interval)
    if ensemble == "npt":
        if not atoms.pbc.all():
            raise ValueError("npt needs a 3-D periodic cell")
        try:
            from ase.md.nose_hoover_chain import IsotropicMTKNPT
        except ImportError:  # ASE < 3.25
            from ase.md.nptberendsen import NPTBerendsen
            return NPTBerendsen(atoms, dt, temperature_K=temperature,
                                pressure_au=pressure * units.GPa, compressibility_au=1 / (100 * units.GPa),
                                trajectory=trajectory, loginterval=interval)
        return IsotropicMTKNPT(atoms, dt, temperature_K=temperature,
                               pressure_au=pressure * units.GPa, tdamp=100 * dt, pdamp=1000 * dt,
                               trajectory=trajectory, loginterval=interval)
    raise ValueError(f"unknown ensemble {ensemble!r}: nve, langevin or npt")


def _frame_writer(atoms, path):
    """Observer appending ``atoms`` (with energy, forces, stress) to a text trajectory.

    The format follows the suffix (``.xyz`` → extended XYZ, as ``ase.io.write``); the
    file is started empty."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write
    fmt = "extxyz" if str(path).lower().endswith(".xyz") else None
    open(path, "w").close()

    def write_frame():
        snap = atoms.copy()
        calc = atoms.calc
        res = {k: calc.results[k] for k in ("energy", "forces", "stress")
               if calc is not None and k in calc.results}
        snap.calc = SinglePointCalculator(snap, **res)
        write(path, snap, format=fmt, append=True)
    return write_frame


def run_md(atoms, steps=1000, temperature=300.0, timestep=1.0, ensemble="langevin",
           trajectory=None, log_interval=100, pressure=0.0, seed=0, init_velocities=True,
           trajectory_interval=None, monitor=None):
    """Run MD on ``atoms`` (with a calculator attached); logs progress; returns a summary.

    trajectory : file written every ``trajectory_interval`` steps (default
    ``log_interval``): ASE's binary format for ``.traj``, otherwise the format of the
    suffix (``.xyz``: extended XYZ with energy, forces and stress).
    monitor : optional callable() → str, appended to every progress line (e.g. the
    largest per-atom σ_F).
    """
    if init_velocities and not np.any(atoms.get_momenta()):
        thermalize(atoms, temperature, np.random.default_rng(seed))
    every = int(trajectory_interval or log_interval)
    binary = trajectory is None or str(trajectory).lower().endswith(".traj")
    dyn = make_dynamics(atoms, ensemble, temperature, timestep, pressure, seed=seed,
                        trajectory=trajectory if binary else None, interval=every)
    if not binary:
        dyn.attach(_frame_writer(atoms, trajectory), interval=every)
    n = len(atoms)
    t0 = time.perf_counter()
    state = {"last_t": t0, "last_step": 0}

    def report():
        step = dyn.nsteps
        now = time.perf_counter()
        epot = atoms.get_potential_energy() / n
        ekin = atoms.get_kinetic_energy() / n
        msg = (f"step {step:>7d}  T {atoms.get_temperature():7.1f} K  Epot {epot:10.5f} "
               f"Etot {epot + ekin:10.5f} eV/atom")
        if atoms.pbc.all():
            msg += f"  V {atoms.get_volume() / n:.3f} Å³/atom"
        if step > state["last_step"]:
            rate = (step - state["last_step"]) / max(now - state["last_t"], 1e-12)
            msg += (f"  {rate:7.1f} steps/s  {rate * timestep * 86400e-6:7.3f} ns/day  "
                    f"{1e6 / rate / n:7.1f} µs/atom/step")
        state["last_t"], state["last_step"] = now, step
        if monitor is not None:
            msg += "  " + monitor()
        log.info(msg)

    dyn.attach(report, interval=log_interval)
    dyn.run(steps)
    wall = time.perf_counter() - t0
    summary = {"steps": steps, "wall_s": wall, "us_per_atom_step": wall / max(steps, 1) / n * 1e6,
               "ns_per_day": steps * timestep * 1e-6 / max(wall, 1e-12) * 86400}
    log.info("MD: %d steps of %d atoms in %.1f s = %.1f µs/atom/step, %.3f ns/day", steps, n,
             wall, summary["us_per_atom_step"], summary["ns_per_day"])
    return summary
