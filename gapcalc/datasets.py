"""Built-in training data made on the spot: EMT molecular-dynamics frames.

No downloads: ASE's EMT (Cu, Ag, Au, Ni, Pd, Pt, Al) is the reference, so the
examples, tests and the README's main job run anywhere.
"""
from __future__ import annotations

import logging

import numpy as np
from ase import units
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution  # noqa: F401

log = logging.getLogger(__name__)


def label(atoms, calc):
    """A copy of ``atoms`` carrying calc's energy, forces (and stress if periodic).

    An ASE calculator is asked once, for every property at the same time (as a DFT code
    computes them in one run): one call of ``calc.calculate`` per frame, so an oracle
    that counts its calls counts one per labelled frame.
    """
    at = atoms.copy()
    at.calc = calc
    props = ["energy", "forces"] + (["stress"] if at.pbc.all() else [])
    if isinstance(calc, Calculator):
        calc.reset()
        calc.calculate(at, props, all_changes)
        got = calc.results
        res = {}
        for name in props:   # anything the calculator left out is asked for the usual way
            res[name] = (np.array(got[name]) if name in got and name != "energy"
                         else got[name] if name in got else calc.get_property(name, at))
        res["energy"] = float(res["energy"])
    else:
        res = {"energy": at.get_potential_energy(), "forces": at.get_forces()}
        if at.pbc.all():
            res["stress"] = at.get_stress()
    at.calc = SinglePointCalculator(at, **res)
    return at


def emt_frames(symbol="Cu", n_frames=50, size=(3, 3, 3), temperature=800.0, interval=10,
               strain=0.02, timestep=2.0, seed=0, config_type=None):
    """Snapshots of Langevin MD with EMT, each with a random cell strain, labelled by EMT.

    symbol : fcc metal known to EMT.  size : repeats of the conventional cubic cell.
    temperature : K.  interval : MD steps between frames.  strain : std of the random
    strain components applied to each frame.  timestep : fs.
    """
    rng = np.random.default_rng(seed)
    atoms = bulk(symbol, cubic=True) * size
    atoms.calc = EMT()
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    dyn = Langevin(atoms, timestep * units.fs, temperature_K=temperature, friction=0.02, fixcm=False,
                   rng=rng)
    frames = []
    for k in range(n_frames):
        dyn.run(interval)
        snap = atoms.copy()
        eps = rng.normal(scale=strain, size=(3, 3))
        eps = 0.5 * (eps + eps.T)
        snap.set_cell(snap.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        frame = label(snap, EMT())
        if config_type:
            frame.info["config_type"] = config_type
        frames.append(frame)
    log.info("generated %d EMT %s frames at %g K", n_frames, symbol, temperature)
    return frames
