"""The fitted potential and its one prediction core.

A :class:`Potential` holds what a fitted model needs to predict and nothing of how it was
fitted: the species, the isolated-atom energies e0, and a list of additive *terms*. The
prediction core is :meth:`Potential.local_energies`; its input is a neighbour description
(:class:`~gapcalc.descriptors.soap.Environment`): centres 0..n_centres-1, their pairs in
CSR order (neighbour index into 0..n_all-1, vector r_ij = r_j − r_i), and the species of
every atom. Its output is

    ε_i      local energy of every centre (e0 included), eV, shape (n_centres,)
    t_k      ∂E/∂r_ij for every pair k = (i, j), eV/Å, shape (n_pairs, 3)

from which forces (F_j −= t_k, F_i += t_k) and the virial (∂E/∂ε_ab = Σ_k t_k,a r_k,b)
follow by summation (:func:`forces_and_virial`, :func:`pair_virials`). The ASE calculator
(neighbours from a periodic list), the LAMMPS coupling (owned + ghost atoms) and imported
gap_fit models all predict through it; :class:`~gapcalc.gpr.SparseGPR` fits the terms.

A term is any object with ``cutoff`` (Å), ``local_energies(env, gradients)`` → (ε, t) as
above (without e0), and ``to_record()`` / ``from_record(rec, arrays)`` for model files,
registered in :data:`TERM_KINDS` under its ``kind``. :class:`Term` is the kernel term of
sparse GPR: ε_i = Σ_m α_m k(p_i, x_m) over the sparse points x_m of the centre's species.
"""
from __future__ import annotations

import numpy as np

from .descriptors import SpeciesMap, descriptor_from_dict
from .descriptors.soap import Environment, assemble_forces
from .kernels import kernel_from_dict
from .neighbors import neighbor_list
from .targets import FrameError, check_atoms

VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
_VOIGT_A = np.array([a for a, _ in VOIGT])
_VOIGT_B = np.array([b for _, b in VOIGT])


class Term:
    """Kernel term of sparse GPR: descriptor, kernel, sparse points, weights.

    X : (M_t, D) sparse environments sorted by species; X_species : (M_t,) species index;
    offsets : (n_species+1,), the sparse points of species s are offsets[s]:offsets[s+1].
    alpha : (M_t,) weights (eV). columns : (M_t,) the global column (index into the
    model's α, R, U) of each sparse point; columns are numbered in order of creation, so
    sparse points added later (on-the-fly learning) extend every matrix at the end.
    X is fixed once the term is made; ``alpha`` may be reassigned (not changed in place):
    assigning it drops the ζ = 2 quadratic forms the term keeps for prediction.
    """

    kind = "kernel"

    def __init__(self, descriptor, kernel, X, X_species, alpha=None, columns=None):
        X_species = np.asarray(X_species, dtype=np.int64)
        order = np.argsort(X_species, kind="stable")
        self.descriptor = descriptor
        self.kernel = kernel
        self.X = np.ascontiguousarray(np.asarray(X)[order], dtype=np.float64)
        self.X_species = X_species[order]
        cols = np.arange(len(order)) if columns is None else np.asarray(columns, dtype=np.int64)
        self.columns = cols[order]
        n_species = len(descriptor.species)
        self.offsets = np.searchsorted(self.X_species, np.arange(n_species + 1))
        self.alpha = None if alpha is None else np.asarray(alpha, dtype=np.float64)[order]

    @property
    def alpha(self):
        return self._alpha

    @alpha.setter
    def alpha(self, value):
        self._alpha = value
        self._forms = {}

    def _form(self, s, sl):
        """{"form": A_s} with the kept ζ = 2 quadratic form Σ_m α_m x_m x_mᵀ of species s's
        sparse points (built on first use; M·D² once instead of on every call), or {} for
        other kernels."""
        if getattr(self.kernel, "zeta", None) != 2 or not hasattr(self.kernel, "quadratic_form"):
            return {}
        A = self._forms.get(s)
        if A is None:
            A = self._forms[s] = self.kernel.quadratic_form(self.X[sl], self.alpha[sl])
        return {"form": A}

    @property
    def M(self) -> int:
        return len(self.X)

    @property
    def cutoff(self) -> float:
        return self.descriptor.cutoff

    def blocks(self, spec):
        """(species s, atom indices of s, sparse slice of s) for species present in both."""
        for s in range(len(self.offsets) - 1):
            lo, hi = self.offsets[s], self.offsets[s + 1]
            rows = np.flatnonzero(spec == s)
            if hi > lo and len(rows):
                yield s, rows, slice(lo, hi)

    def kmm(self) -> np.ndarray:
        """K_MM of this term in its own (species-sorted) order."""
        K = np.zeros((self.M, self.M))
        for s in range(len(self.offsets) - 1):
            sl = slice(self.offsets[s], self.offsets[s + 1])
            K[sl, sl] = self.kernel(self.X[sl], self.X[sl])
        return K

    def local_kernel(self, p, spec) -> np.ndarray:
        """k(p_i, x_m) for every atom and sparse point, zero across species: (N, M_t)."""
        K = np.zeros((len(p), self.M))
        for _, rows, sl in self.blocks(spec):
            K[rows, sl] = self.kernel(p[rows], self.X[sl])
        return K

    def local_energies(self, env: Environment, gradients: bool = True):
        """ε_i = Σ_m α_m k(p_i, x_m) (n_centres,) and, with ``gradients``, the pair terms
        ∂ε_i/∂r_ij (n_pairs, 3) on ``env``'s pairs (reverse mode, ∂p/∂r never formed)."""
        sub, kept = env.within(self.cutoff)
        c, p, pnorm = self.descriptor.describe(sub)
        eps = np.zeros(sub.n_centres)
        w = np.zeros_like(p) if gradients else None
        for s, rows, sl in self.blocks(sub.centre_spec):
            e, w_s = self.kernel.energy_and_gradient(p[rows], self.X[sl], self.alpha[sl],
                                                     **self._form(s, sl))
            eps[rows] = e
            if gradients:
                w[rows] = w_s
        if not gradients:
            return eps, None
        t = self.descriptor.backward(sub, c, p, pnorm, w)
        if kept is not None:
            full = np.zeros((len(env.index), 3))
            full[kept] = t
            t = full
        return eps, t

    # -- model files ------------------------------------------------------------
    def to_record(self):
        """(JSON-able header record, arrays) for a model file."""
        rec = {"kind": self.kind, "descriptor": self.descriptor.to_dict(),
               "kernel": self.kernel.to_dict()}
        arrays = {"X": self.X, "X_species": self.X_species, "alpha": self.alpha,
                  "columns": self.columns}
        return rec, arrays

    @classmethod
    def from_record(cls, rec, arrays, first_column=0):
        cols = arrays.get("columns")
        if cols is None:   # files written before sparse sets could grow: columns term by term
            cols = np.arange(first_column, first_column + len(arrays["X"]))
        return cls(descriptor_from_dict(rec["descriptor"]), kernel_from_dict(rec["kernel"]),
                   arrays["X"], arrays["X_species"], arrays["alpha"], cols)


#: term kinds a model file may hold (``kind`` → class with ``from_record``)
TERM_KINDS = {Term.kind: Term}


def register_term(cls):
    """Class decorator: make a term kind loadable from model files."""
    TERM_KINDS[cls.kind] = cls
    return cls


# --------------------------------------------------------------------------- summations
def forces_and_virial(env: Environment, pair_grad: np.ndarray, n_atoms: int):
    """Forces (n_atoms, 3) eV/Å on every atom that appears in ``env`` (centres and
    neighbours; n_atoms ≥ len(env.spec) atoms may be asked for) and ∂E/∂ε (3, 3) eV, the
    negative gap_fit virial, from the pair terms t_k = ∂E/∂r_ij."""
    F = np.zeros((n_atoms, 3))
    W = np.zeros((3, 3))
    if len(env.index):
        assemble_forces(env.first, env.index, env.vectors, np.ascontiguousarray(pair_grad),
                        F, W)
    return F, W


def pair_virials(env: Environment, pair_grad: np.ndarray, n_atoms: int) -> np.ndarray:
    """Per-atom contributions to ∂E/∂ε (n_atoms, 3, 3) eV: each pair term's t_k ⊗ r_k
    split half to the centre and half to the neighbour; they sum to the global one."""
    half = 0.5 * np.einsum("ka,kb->kab", pair_grad, env.vectors)
    out = np.zeros((n_atoms, 3, 3))
    centres = np.repeat(np.arange(env.n_centres), np.diff(env.first))
    np.add.at(out, centres, half)
    np.add.at(out, env.index, half)
    return out


class Potential:
    """A fitted interatomic potential: species, e0 and additive terms; predicts only.

    Parameters
    ----------
    species : elements the potential knows (symbols or atomic numbers).
    e0 : {symbol: eV} isolated-atom energy added to every local energy.
    terms : list of terms (see the module docstring), e.g. :class:`Term`.
    min_distance : smallest interatomic distance accepted in inputs (Å).
    info : JSON-able description (origin, training summary, ...), kept in model files.

    ``has_posterior`` is False: a potential alone has no uncertainties (a fitted
    :class:`~gapcalc.gpr.SparseGPR` has them).
    """

    has_posterior = False

    def __init__(self, species, e0, terms, min_distance: float = 0.5, info=None):
        self.species = species if isinstance(species, SpeciesMap) else SpeciesMap(species)
        self.e0 = {s: float(e0.get(s, 0.0)) for s in self.species.symbols}
        unknown = set(e0) - set(self.species.symbols)
        if unknown:
            raise ValueError(f"e0 given for species {sorted(unknown)} the potential does "
                             f"not know ({self.species.symbols})")
        self.terms = list(terms)
        if not self.terms:
            raise ValueError("a potential needs at least one term")
        self.min_distance = float(min_distance)
        self.info = dict(info or {})

    @property
    def cutoff(self) -> float:
        """Largest cutoff of any term (Å): the neighbour-list cutoff the potential needs."""
        return max(t.cutoff for t in self.terms)

    def _e0_by_species(self) -> np.ndarray:
        return np.array([self.e0[s] for s in self.species.symbols])

    # -- the prediction core ------------------------------------------------------
    def local_energies(self, env: Environment, gradients: bool = True):
        """Local energies ε_i (n_centres,) eV, e0 included, and pair terms
        t_k = ∂E/∂r_ij (n_pairs, 3) eV/Å (None without ``gradients``), summed over terms."""
        energies = self._e0_by_species()[env.centre_spec]
        t = np.zeros((len(env.index), 3)) if gradients else None
        for term in self.terms:
            e, g = term.local_energies(env, gradients)
            energies = energies + e
            if gradients:
                t += g
        return energies, t

    # -- structures -------------------------------------------------------------
    def neighbors(self, atoms, skin: float = 0.0):
        """Periodic neighbour list of ``atoms`` for the potential's cutoff (+ skin)."""
        return neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, self.cutoff + skin)

    def environment(self, atoms, nl=None) -> Environment:
        nl = self.neighbors(atoms) if nl is None else nl
        return Environment.from_arrays(nl.first, nl.index, nl.vectors,
                                       self.species.indices(atoms.numbers))

    def check_structure(self, atoms, nl, min_distance=None):
        """FrameError unless every interatomic distance is ≥ min_distance (Å)."""
        md = self.min_distance if min_distance is None else min_distance
        if md > 0 and len(nl.distances) and nl.distances.min() < md:
            k = int(np.argmin(nl.distances))
            i = int(np.searchsorted(nl.first, k, side="right") - 1)
            raise FrameError(f"structure: atoms {i} and {int(nl.index[k])} are "
                             f"{nl.distances[k]:.3f} Å apart, closer than the minimum "
                             f"distance {md} Å")

    def evaluate(self, atoms, forces=True, stress=True, nl=None, min_distance=None,
                 check=True, virials=False):
        """Energy (eV), per-atom energies (eV), forces (eV/Å), stress (Voigt, eV/Å³).

        ``stress`` is returned only for 3-D periodic structures. ``virials`` adds the
        per-atom virials (n_atoms, 3, 3) eV (−∂E/∂ε per atom, gap_fit sign). ``check=False``
        skips the input checks (for callers that have just made them).
        """
        if check:
            check_atoms(atoms, 0.0)
        nl = self.neighbors(atoms) if nl is None else nl
        if check:
            self.check_structure(atoms, nl, min_distance)
        env = self.environment(atoms, nl)
        need_grad = forces or stress or virials
        energies, t = self.local_energies(env, gradients=need_grad)
        out = {"energy": float(energies.sum()), "energies": energies}
        if need_grad:
            F, W = forces_and_virial(env, t, len(atoms))
            if forces:
                out["forces"] = F
            if stress and atoms.pbc.all():
                W = 0.5 * (W + W.T) / atoms.get_volume()
                out["stress"] = W[_VOIGT_A, _VOIGT_B]
            if virials:
                out["virials"] = -pair_virials(env, t, len(atoms))
        return out

    def predict(self, frames):
        """Energies (n_frames,), forces (list of (n, 3)), stresses (list of (6,) or None)."""
        res = [self.evaluate(at) for at in frames]
        return {"energy": np.array([r["energy"] for r in res]),
                "forces": [r["forces"] for r in res],
                "stress": [r.get("stress") for r in res]}

    def uncertainty(self, atoms, *args, **kwargs):
        raise RuntimeError(
            "this potential has no posterior, so no uncertainties (models imported from "
            "gap_fit XML or saved without the posterior carry none); refit it with its "
            "training data (`gapcalc fit train.xyz ...` or SparseGPR(...).fit(frames)) to "
            "get energy and force standard deviations")

    def calculator(self, **kwargs):
        """An ASE calculator for this potential."""
        from .calculator import GAPCalculator
        return GAPCalculator(self, **kwargs)

    def save(self, path):
        """Write the potential (``.npz`` without pickles, JSON header), atomically."""
        from .io import save_model
        save_model(self, path)

    def __repr__(self):
        kinds = ", ".join(type(t).__name__ for t in self.terms)
        return f"Potential(species={self.species.symbols}, terms=[{kinds}])"
