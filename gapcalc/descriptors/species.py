"""Mapping between atomic numbers and dense species indices."""
from __future__ import annotations

import numpy as np
from ase.data import atomic_numbers, chemical_symbols


class SpeciesMap:
    """Sorted atomic numbers of the elements a descriptor knows, and Z → index lookup."""

    def __init__(self, species):
        if isinstance(species, SpeciesMap):
            species = species.numbers
        numbers = []
        for s in np.atleast_1d(species).tolist():
            if isinstance(s, str):
                if s not in atomic_numbers:
                    raise ValueError(f"unknown chemical symbol {s!r}")
                numbers.append(atomic_numbers[s])
            else:
                z = int(s)
                if not 0 < z < len(chemical_symbols):
                    raise ValueError(f"invalid atomic number {s!r}")
                numbers.append(z)
        if not numbers:
            raise ValueError("species must name at least one element")
        self.numbers = np.array(sorted(set(numbers)), dtype=np.int64)
        self._lookup = np.full(len(chemical_symbols), -1, dtype=np.int64)
        self._lookup[self.numbers] = np.arange(len(self.numbers))

    def __len__(self):
        return len(self.numbers)

    @property
    def symbols(self):
        return [chemical_symbols[z] for z in self.numbers]

    def indices(self, numbers) -> np.ndarray:
        """Species index of every atom; a ValueError names any element not known."""
        numbers = np.asarray(numbers, dtype=np.int64)
        bad = (numbers <= 0) | (numbers >= len(self._lookup))
        idx = np.full(numbers.shape, -1, dtype=np.int64)
        idx[~bad] = self._lookup[numbers[~bad]]
        if np.any(idx < 0):
            unknown = sorted({int(z) for z in numbers[idx < 0]})
            names = ", ".join(f"{chemical_symbols[z] if 0 < z < len(chemical_symbols) else '?'}"
                              f" (Z={z})" for z in unknown)
            raise ValueError(f"species {names} not in the model's species "
                             f"{self.symbols}")
        return idx
