"""ASE calculator for a fitted gapcalc model."""
from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from .neighbors import neighbor_list


class GAPCalculator(Calculator):
    """Energy, free_energy, per-atom energies, forces and stress of a fitted model.

    The model is a :class:`~gapcalc.gpr.SparseGPR` (uncertainties available) or a
    :class:`~gapcalc.potential.Potential` (e.g. imported from gap_fit; no posterior).

    One call computes everything (reverse-mode forces, virial from the same pair
    terms); results are cached by ASE's ``check_state``. Stress (Voigt, eV/Å³, ASE
    sign) is available for 3-D periodic cells.

    Parameters
    ----------
    model : SparseGPR or Potential, or a path / shipped-potential name passed to
        :func:`gapcalc.load`.
    uncertainty : posterior standard deviations to compute on every call: False (none;
        each is still computed when asked for, e.g. ``calc.get_property("forces_std",
        atoms)``, and then only its own group), "energy" (``energies_std`` eV,
        ``energy_std`` eV, ``energy_std_predictive`` eV; ~1.2-1.5× the cost of energy +
        forces), "forces" (``forces_std``, ``forces_std_predictive``, eV/Å, (N, 3);
        ~40-60× at M = 1000, see below) or True (both).

        ``forces_std``, ``energies_std`` and ``energy_std`` are *latent* stds: the spread
        of the fitted function (noise-free). The on-the-fly learning threshold
        (:mod:`gapcalc.active`) is compared with the latent per-atom σ_F times its running
        calibration factor. A new reference calculation scatters around the prediction by
        the *predictive* std, which adds the model's noise in quadrature:
        ``forces_std_predictive`` = sqrt(forces_std² + σ_F²) and ``energy_std_predictive``
        = sqrt(energy_std² + (σ_E √N)²) with the model's ``sigma_force`` and
        ``sigma_energy`` (per atom, ×√N as in fitting). On the Si test split the latent
        std puts only ~27 % of force errors within 1σ (errors ~3× larger); the predictive
        one is the calibrated error bar (see the README and the model cards).
    skin : Å added to the neighbour-list cutoff; the list is rebuilt only when an atom
        has moved more than skin/2 or the cell, pbc or atoms changed (0 = every call).
    min_distance : smallest interatomic distance accepted (Å); None = the model's.
    """

    default_parameters: dict = {}

    ENERGY_STD = ("energy_std", "energies_std", "energy_std_predictive")
    FORCES_STD = ("forces_std", "forces_std_predictive")
    UNCERTAINTY = ENERGY_STD + FORCES_STD

    def __init__(self, model, uncertainty=False, skin: float = 0.5, min_distance=None,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            from . import load_model_file
            model = load_model_file(model)
        if hasattr(model, "_check_fitted"):
            model._check_fitted()
        self.model = model
        self.skin = float(skin)
        self.min_distance = min_distance
        # a per-instance list (never share the class attribute)
        self.implemented_properties = ["energy", "free_energy", "energies", "forces", "stress",
                                       *self.UNCERTAINTY]
        from .gpr import _std_request
        self.uncertainty = _std_request(uncertainty)   # () / ("energy",) / ("forces",) / both
        if self.uncertainty and not model.has_posterior:
            model.uncertainty(None)          # raises: says how to get a posterior
        self._nl = None
        self._nl_key = None

    def _neighbors(self, atoms):
        cut = self.model.cutoff
        pos = atoms.positions
        key = (len(atoms), atoms.cell.array.tobytes(), atoms.pbc.tobytes(),
               atoms.numbers.tobytes())
        if self.skin > 0 and self._nl is not None and key == self._nl_key:
            disp = np.sqrt(((pos - self._nl_pos) ** 2).sum(axis=1)).max()
            if disp < 0.5 * self.skin:
                from .neighbors import update_vectors
                vec, dist = update_vectors(self._nl, pos, atoms.cell.array)
                return self._nl._replace(vectors=vec, distances=dist)
        nl = neighbor_list(pos, atoms.cell.array, atoms.pbc, cut + self.skin)
        self._nl, self._nl_key, self._nl_pos = nl, key, pos.copy()
        return nl

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        from .targets import check_atoms
        check_atoms(self.atoms, 0.0)          # finite positions and cell, sane cell
        nl = self._neighbors(self.atoms)
        potential = getattr(self.model, "potential_", self.model)
        potential.check_structure(self.atoms, nl, self.min_distance)
        want = set(self.uncertainty)
        if any(p in self.ENERGY_STD for p in properties):
            want.add("energy")
        if any(p in self.FORCES_STD for p in properties):
            want.add("forces")
        if not system_changes and "energy" in self.results:
            # same structure, a std asked for after energy/forces: only the missing stds
            todo = {w for w in want if (self.ENERGY_STD if w == "energy" else
                                        self.FORCES_STD)[0] not in self.results}
            if todo and all(p in self.UNCERTAINTY for p in properties):
                self.results.update(self.model.uncertainty(
                    self.atoms, nl=nl, energies="energy" in todo, forces="forces" in todo))
                return
        if want and not self.model.has_posterior:
            self.model.uncertainty(self.atoms)     # raises: says how to get a posterior
        want_stress = "stress" in properties or self.atoms.pbc.all()
        if want:
            res = self.model.evaluate(self.atoms, forces=True, stress=want_stress, nl=nl,
                                      check=False, uncertainty=tuple(sorted(want)))
        else:
            res = potential.evaluate(self.atoms, forces=True, stress=want_stress, nl=nl,
                                     check=False)
        if "stress" not in res and "stress" in properties:
            from ase.calculators.calculator import PropertyNotImplementedError
            raise PropertyNotImplementedError("stress needs a 3-D periodic cell")
        res["free_energy"] = res["energy"]
        self.results.update(res)
