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
    model : SparseGPR, or a path / shipped-potential name passed to :func:`gapcalc.load`.
    uncertainty : also compute posterior standard deviations on every call
        (``energy_std`` eV, ``energies_std`` eV, ``forces_std`` eV/Å); without it they
        are computed only when asked for (``calc.get_property("forces_std", atoms)``).
    skin : Å added to the neighbour-list cutoff; the list is rebuilt only when an atom
        has moved more than skin/2 or the cell, pbc or atoms changed (0 = every call).
    min_distance : smallest interatomic distance accepted (Å); None = the model's.
    """

    default_parameters: dict = {}

    UNCERTAINTY = ("energy_std", "energies_std", "forces_std")

    def __init__(self, model, uncertainty: bool = False, skin: float = 0.5, min_distance=None,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            from . import load_model_file
            model = load_model_file(model)
        if hasattr(model, "_check_fitted"):
            model._check_fitted()
        if uncertainty and not model.has_posterior:
            model.uncertainty(None)          # raises: says how to get a posterior
        self.model = model
        self.skin = float(skin)
        self.min_distance = min_distance
        # a per-instance list (never share the class attribute)
        self.implemented_properties = ["energy", "free_energy", "energies", "forces", "stress",
                                       *self.UNCERTAINTY]
        self.uncertainty = bool(uncertainty)
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
        want_stress = "stress" in properties or self.atoms.pbc.all()
        res = potential.evaluate(self.atoms, forces=True, stress=want_stress, nl=nl,
                                 check=False)
        self.results["energy"] = res["energy"]
        self.results["free_energy"] = res["energy"]
        self.results["energies"] = res["energies"]
        self.results["forces"] = res["forces"]
        if "stress" in res:
            self.results["stress"] = res["stress"]
        elif "stress" in properties:
            from ase.calculators.calculator import PropertyNotImplementedError
            raise PropertyNotImplementedError("stress needs a 3-D periodic cell")
        if self.uncertainty or any(p in self.UNCERTAINTY for p in properties):
            self.results.update(self.model.uncertainty(self.atoms, nl=nl))
