"""Sparse Gaussian-process regression of total energies, forces and virials (seed §III).

The energy is a sum of local contributions from one or more *terms* (SOAP with a
dot-product kernel; optionally a 2-body radial spectrum with a squared-exponential
kernel), each expanded on M_t sparse environments x_m of the same central species:

    E = Σ_i e0(Z_i) + Σ_t Σ_i ε_t(p_i),   ε_t(p) = Σ_m α_m k_t(p, x_m)        (Eqs. 12-15)

Forces and virials are linear functionals of the same GP, so every reference number
gives one row of the design matrix K_NM (its derivative rows built from
∂p/∂r and ∂p/∂ε, :meth:`SparseGPR.design_rows`). The weights solve the regularised
least-squares problem of Eqs. 17-18 through a streaming QR (:mod:`.solver`), and
the triangle R of the solve gives the posterior Σ = R⁻¹R⁻ᵀ used for uncertainty.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from scipy.linalg import cholesky, solve_triangular

from .descriptors import SOAP, PairDistance, TwoBody, SpeciesMap, descriptor_from_dict
from .descriptors.soap import Environment, assemble_forces
from .kernels import DotProduct, SquaredExponential, subtract_rows
from .neighbors import neighbor_list
from .potential import _VOIGT_A, _VOIGT_B, Potential, Term
from .solver import StreamingQR, solve_regularised
from .sparsify import select
from .targets import FrameError, TargetKeys, check_atoms, check_targets, read_targets

log = logging.getLogger(__name__)


class CandidatePool:
    """Sparse-point candidates: a uniform reservoir sample of environments per (term, species).

    items[t][s] = (keys (n,), draw (n,), P (n, D_t)): each environment's random key, the
    position of that key in the random stream (so the drawing order is known whatever
    the merge order), and its features. At most ``cap`` smallest keys are kept, so the
    pool of any set of frames equals the merge of the pools of its parts
    (:meth:`merge`), which is how the Dask fit reproduces the serial sparse points.
    """

    def __init__(self, n_features, n_species, cap, first_draw=0):
        self.cap = int(cap)
        self.n_features = [int(d) for d in n_features]
        self.items = [[(np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros((0, d)))
                       for _ in range(n_species)] for d in n_features]
        self.next_draw = int(first_draw)
        self.complete = True      # False once a part was thinned (candidates_per_chunk)
        self._unique = {}

    def offer(self, ti, s, keys, P):
        """Add environments P (n, D) with their keys (n,), drawn next in the stream."""
        k0, o0, P0 = self.items[ti][s]
        order = np.arange(self.next_draw, self.next_draw + len(keys))
        self.next_draw += len(keys)
        self.items[ti][s] = self._cap(np.concatenate([k0, keys]), np.concatenate([o0, order]),
                                      np.concatenate([P0, P]))
        self._unique = {}

    def _cap(self, keys, order, P):
        if len(keys) > self.cap:   # uniform reservoir: keep the smallest keys
            keep = np.argpartition(keys, self.cap)[:self.cap]
            keys, order, P = keys[keep], order[keep], P[keep]
        return keys, order, P

    def merge(self, other):
        """This pool followed by ``other`` (in place; returns self)."""
        for ti, row in enumerate(other.items):
            for s, (k1, o1, P1) in enumerate(row):
                k0, o0, P0 = self.items[ti][s]
                self.items[ti][s] = self._cap(np.concatenate([k0, k1]),
                                              np.concatenate([o0, o1]), np.concatenate([P0, P1]))
        self.next_draw = max(self.next_draw, other.next_draw)
        self.complete = self.complete and other.complete
        self._unique = {}
        return self

    def fingerprints(self):
        """The pool with every feature row replaced by :func:`row_hashes` of it (keys and
        draws kept): merges like the pool and tells which rows the selection dedupes."""
        import copy
        out = copy.copy(self)
        out.items = [[(k, o, row_hashes(P)) for k, o, P in row] for row in self.items]
        out._unique = {}
        return out

    def thin(self, per_species, method, seed):
        """Keep at most ``per_species`` candidates per (term, species), chosen by ``method``.

        Reduces what a Dask task sends back; the pool is then no longer the complete
        uniform sample, so the sparse points may differ from the serial fit's."""
        for ti, row in enumerate(self.items):
            for s, (keys, order, P) in enumerate(row):
                if len(keys) <= per_species:
                    continue
                srt = np.argsort(keys)
                keys, order, P = keys[srt], order[srt], P[srt]
                idx = select(P, int(per_species), method, seed=seed + s)
                self.items[ti][s] = (keys[idx], order[idx], P[idx])
                self.complete = False
        self._unique = {}
        return self

    @property
    def size(self) -> int:
        return sum(len(k) for row in self.items for k, _, _ in row)

    # --- what the sparse-point selection asks of a pool (also asked of the Dask fit's
    # --- distributed pool, gapcalc.distributed._LeveragePool)

    def unique(self, ti, s) -> np.ndarray:
        """Rows of (term ti, species s) in key order, repeats (equal to 10 decimals) dropped
        after their first appearance: the rows the sparse points are chosen from."""
        if (ti, s) not in self._unique:
            keys, _, P = self.items[ti][s]
            if len(P):
                P = P[np.argsort(keys)]   # deterministic order
                _, uniq = np.unique(np.round(P, 10), axis=0, return_index=True)
                P = P[np.sort(uniq)]
            self._unique[ti, s] = P
        return self._unique[ti, s]

    def unique_count(self, ti, s) -> int:
        return len(self.unique(ti, s))

    def choose(self, wanted, method, seed) -> dict:
        """{(ti, s): sparse points (n, D) in pool order} for wanted {(ti, s): n} by ``method``
        (:func:`~gapcalc.sparsify.select` with seed ``seed + s``)."""
        out = {}
        for (ti, s), n in wanted.items():
            P = self.unique(ti, s)
            out[ti, s] = P[select(P, int(n), method, seed=seed + s)]
        return out

    def n_drawn(self, ti) -> int:
        """Candidates of term ti, all species, repeats included."""
        return sum(len(k) for k, _, _ in self.items[ti])

    def drawn_rows(self, picks) -> dict:
        """{ti: rows idx of term ti's candidates in drawing order (species by species)} for
        picks {ti: idx}."""
        out = {}
        for ti, idx in picks.items():
            parts = [item for item in self.items[ti] if len(item[0])]
            allP = np.vstack([P[np.argsort(o, kind="stable")] for _, o, P in parts])
            out[ti] = allP[idx]
        return out


def row_hashes(P: np.ndarray) -> np.ndarray:
    """64-bit hash (n,) of each row of P (n, D) rounded to 10 decimals, −0 counted as 0:
    rows are equal for :meth:`CandidatePool.unique` exactly when their hashes are (bar a
    collision, ~n²/2⁶⁵)."""
    import hashlib
    R = np.ascontiguousarray(np.round(np.asarray(P, dtype=np.float64), 10) + 0.0)
    out = np.empty(len(R), dtype=np.uint64)
    for i, row in enumerate(R):
        out[i] = int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little")
    return out


@dataclass
class _Evaluated:
    """Descriptor data of one structure for one term."""
    env: Environment
    c: np.ndarray
    p: np.ndarray
    pnorm: np.ndarray


def _force_prior(kernel, p, spec, g, n):
    """Prior variance of every force component: Σ_{i,i'} g_iᵀ ∂²k(p_i,p_i')/∂p∂p' g_i'.

    g_i = ∂p_i/∂r_ja from the forward gradients; pairs of centres of different species
    do not covary. Returns (n, 3)."""
    out = np.zeros((n, 3))
    for j, rows in _gradient_rows_by_atom(g, n):
        c = g.pairs[rows, 0]
        same = spec[c][:, None] == spec[c][None, :]
        out[j] = kernel.force_prior(p[c], g.values[rows], same)
    return out


def _gradient_rows_by_atom(g, n):
    """(j, rows of g with atom j) for every atom j that some centre's features depend on."""
    js = g.pairs[:, 1]
    order = np.argsort(js, kind="stable")
    bounds = np.searchsorted(js[order], np.arange(n + 1))
    for j in range(n):
        rows = order[bounds[j]:bounds[j + 1]]
        if len(rows):
            yield j, rows


def _as_frames(frames):
    """Frames as given, or read from an extxyz path / a list of paths."""
    from pathlib import Path
    if isinstance(frames, (str, Path)):
        frames = [frames]
    frames = list(frames)
    if frames and all(isinstance(f, (str, Path)) for f in frames):
        from ase.io import read
        out = []
        for path in frames:
            out.extend(read(str(path), ":"))
        return out
    return frames


def _force_prior_dot(kernel, p, spec, g, n):
    """:func:`_force_prior` for the dot-product kernel δ²(p̂·p̂')^ζ, same result, fewer flops.

    ∂²k/∂p∂p'ᵀ = A I + B p' pᵀ with A = δ²ζ s^{ζ−1}, B = δ²ζ(ζ−1) s^{ζ−2} (s = p·p'), so
    per atom j and direction a the prior is Σ_{i,i'} A_ii' g_i·g_i' + B_ii' (g_i·p_i')(g_i'·p_i)
    with g_i = ∂p_i/∂r_ja: the kernel factors come from one (N, N) product for all atoms,
    g_i·g_i' from a symmetric rank-k update (half a product) per direction, and the g·p
    products of the three directions from one matrix product."""
    from scipy.linalg.blas import dsyrk
    z, d2 = kernel.zeta, kernel.delta ** 2
    S = p @ p.T
    same = spec[:, None] == spec[None, :]
    A = np.where(same, d2 * z * (S ** (z - 1) if z != 1 else np.ones_like(S)), 0.0)
    B = (np.where(same, d2 * z * (z - 1) * (S ** (z - 2) if z != 2 else np.ones_like(S)), 0.0)
         if z != 1 else None)
    out = np.zeros((n, 3))
    for j, rows in _gradient_rows_by_atom(g, n):
        c = g.pairs[rows, 0]
        G = g.values[rows]                                   # (k, 3, D)
        k = len(c)
        Ac = A[np.ix_(c, c)]
        diagA = np.diag(Ac)
        if B is not None:
            GP = (G.reshape(3 * k, -1) @ p[c].T).reshape(k, 3, k)   # g_ia · p_i'
            Bc = B[np.ix_(c, c)]
        for a in range(3):
            GG = dsyrk(1.0, G[:, a, :])                     # upper triangle of Ga Gaᵀ
            val = 2.0 * np.sum(Ac * GG) - np.dot(diagA, np.diag(GG))
            if B is not None:
                Ga = GP[:, a, :]
                val += np.sum(Bc * Ga * Ga.T)
            out[j, a] = val
    return out


def _std_request(uncertainty):
    """Normalise an ``uncertainty=`` argument to a tuple of "energy" / "forces"."""
    if uncertainty is None or uncertainty is False:
        return ()
    if uncertainty is True or uncertainty == "all":
        return ("energy", "forces")
    if uncertainty in ("energy", "forces"):
        return (uncertainty,)
    if isinstance(uncertainty, (tuple, list, set)) and set(uncertainty) <= {"energy", "forces"}:
        return tuple(sorted(set(uncertainty)))
    raise ValueError(f"uncertainty must be False, True, 'energy' or 'forces', got {uncertainty!r}")


def _describe(term, atoms, nl):
    env = term.descriptor.environment(atoms, nl)
    return _Evaluated(env, *term.descriptor.describe(env))


#: gradient rows per matrix product when design rows are made (a few centres at a time)
_GROUP_ROWS = 512


def _groups(sizes, target):
    """Boundaries [0, ..., len(sizes)] of consecutive groups of about ``target`` in total."""
    bounds, acc = [0], 0
    for k, sz in enumerate(sizes):
        acc += int(sz)
        if acc >= target:
            bounds.append(k + 1)
            acc = 0
    if bounds[-1] != len(sizes):
        bounds.append(len(sizes))
    return bounds


class SparseGPR:
    """Sparse GPR interatomic potential (GAP), scikit-learn style.

    Parameters
    ----------
    descriptor : SOAP, or a list of SOAPs (multi-scale: one additive term per SOAP, each
        with its own kernel and sparse set, e.g. a short and a long cutoff). Default: SOAP
        over the training species with cutoff 5 Å, n_max 8, l_max 6, atom_sigma 0.5 Å.
    zeta, delta : dot-product kernel δ²(p̂·x̂)^ζ on SOAP; δ in eV. With several SOAPs each
        may be a list (one value per SOAP) or one value for all.
    n_sparse : sparse points per species (int, or {symbol: int}); a list with several SOAPs.
    n_features : keep only this many power-spectrum components of each SOAP (feature
        selection among the training environments by ``feature_method``, "cur" or "fps");
        an int, a fraction in (0, 1) of the SOAP's features, None (all), or a list per SOAP.
    sparse_method : "cur" (default), "fps", "uniform", "random".
    sparse_indices : instead of a selection, the sparse points of the SOAP term are these
        training environments: 0-based indices into the atoms of all training frames in
        order (gap_fit's ``print_sparse_index`` file minus 1; the gap_fit recipe key
        ``sparse_method=index_file sparse_file=FILE``). One SOAP term, one species.
    sigma_energy (eV/atom, ×√N), sigma_force (eV/Å), sigma_virial (eV/atom, ×√N): noise.
    e0 : "average" (mean energy per atom, all species), "lstsq" (least-squares fit on
        composition), "isolated" (from one-atom frames), a number, or {symbol: eV}.
    two_body : adds a 2-body term of prior variance delta_2b² (eV²). True or "distance"
        (or a :class:`~gapcalc.descriptors.PairDistance`): gap_fit's ``distance_2b``, a
        pair potential with covariance δ² f_c f_c' exp(-(r−r')²/2θ²), θ = theta_2b Å
        (default 1). "radial" (or a :class:`~gapcalc.descriptors.TwoBody`): the ν = 1
        radial spectrum with a squared-exponential kernel of length theta_2b (feature
        units; None = median distance between candidate environments).
    n_sparse_2b : sparse points per species of the "radial" 2-body term. The
        "distance" term needs none: its sparse points are the unit vectors of its
        Gaussian pair features (an exact GP on the pair potential).
    config_type_sigma : {config_type: {"energy": σ_E, "force": σ_F, "virial": σ_V}}.
    energy_key, force_key, virial_key, stress_key : where targets are read.
    jitter : relative diagonal added to K_MM.  block_rows : rows per QR fold.
    max_candidates : environments per species kept (uniform reservoir) for sparsification.
    min_distance : smallest allowed interatomic distance (Å) in any input.
    seed : random seed for CUR / random selection and the reservoir.
    """

    def __init__(self, descriptor=None, zeta=4, delta=1.0, n_sparse=1000, sparse_method="cur",
                 sigma_energy=0.002, sigma_force=0.1, sigma_virial=0.1, e0="average",
                 two_body=None, delta_2b=0.5, theta_2b=None, n_sparse_2b=50,
                 config_type_sigma=None, energy_key="energy", force_key="forces",
                 virial_key="virial", stress_key="stress", jitter=1e-8, block_rows=4096,
                 max_candidates=50000, min_distance=0.5, seed=0, n_features=None,
                 feature_method="cur", sparse_indices=None):
        self.descriptor = descriptor
        self.sparse_indices = sparse_indices
        self.n_features = n_features
        self.feature_method = feature_method
        self.zeta = zeta
        self.delta = delta
        self.n_sparse = n_sparse
        self.sparse_method = sparse_method
        self.sigma_energy = sigma_energy
        self.sigma_force = sigma_force
        self.sigma_virial = sigma_virial
        self.e0 = e0
        self.two_body = two_body
        self.delta_2b = delta_2b
        self.theta_2b = theta_2b
        self.n_sparse_2b = n_sparse_2b
        self.config_type_sigma = config_type_sigma
        self.energy_key = energy_key
        self.force_key = force_key
        self.virial_key = virial_key
        self.stress_key = stress_key
        self.jitter = jitter
        self.block_rows = block_rows
        self.max_candidates = max_candidates
        self.min_distance = min_distance
        self.seed = seed

    # ------------------------------------------------------------------ params
    _PARAMS = ("zeta", "delta", "n_sparse", "sparse_method", "sigma_energy", "sigma_force",
               "sigma_virial", "e0", "delta_2b", "theta_2b", "n_sparse_2b",
               "config_type_sigma", "energy_key", "force_key", "virial_key", "stress_key",
               "jitter", "block_rows", "max_candidates", "min_distance", "seed", "n_features",
               "feature_method", "sparse_indices")

    def get_params(self) -> dict:
        """Constructor hyper-parameters (JSON-serialisable; descriptors as dicts)."""
        d = {k: getattr(self, k) for k in self._PARAMS}
        if d["sparse_indices"] is not None:
            d["sparse_indices"] = [int(i) for i in d["sparse_indices"]]
        desc = self.descriptor
        d["descriptor"] = (None if desc is None else [x.to_dict() for x in desc]
                           if isinstance(desc, (list, tuple)) else desc.to_dict())
        tb = self.two_body
        d["two_body"] = tb.to_dict() if isinstance(tb, TwoBody) else tb
        return d

    @classmethod
    def from_gap_fit(cls, args=None, *, species=None, radial_basis=None, **keys) -> "SparseGPR":
        """An unfitted model from a gap_fit recipe (see :mod:`gapcalc.gapfit_args`).

        ``args``: a gap_fit command line, or None; gap_fit keys as keywords, e.g.
        ``SparseGPR.from_gap_fit(gap="soap cutoff=5 n_max=8 l_max=6 atom_sigma=0.5 zeta=4
        delta=1 n_sparse=1000 sparse_method=cur_points", default_sigma="0.002 0.1 0.1 0",
        e0_method="average", species=["Si"])``. Unknown keys and keys gapcalc cannot
        honour raise :class:`~gapcalc.gapfit_args.GapFitArgumentError`."""
        from .gapfit_args import gap_fit_kwargs
        return cls(**gap_fit_kwargs(args, species=species, radial_basis=radial_basis, **keys))

    @classmethod
    def from_params(cls, d: dict) -> "SparseGPR":
        d = dict(d)
        if isinstance(d.get("descriptor"), list):
            d["descriptor"] = [descriptor_from_dict(x) for x in d["descriptor"]]
        elif d.get("descriptor") is not None:
            d["descriptor"] = descriptor_from_dict(d["descriptor"])
        if isinstance(d.get("two_body"), dict):
            d["two_body"] = descriptor_from_dict(d["two_body"])
        return cls(**d)

    def _keys(self):
        return TargetKeys(self.energy_key, self.force_key, self.virial_key, self.stress_key)

    def _sigmas(self):
        return {"energy": self.sigma_energy, "force": self.sigma_force,
                "virial": self.sigma_virial}

    # ------------------------------------------------------------------ fitting
    def read(self, frames):
        """Validate frames and read their targets (FrameError names the frame)."""
        targets = []
        for k, at in enumerate(frames):
            check_atoms(at, self.min_distance, where=f"frame {k}")
            targets.append(read_targets(at, k, self._keys(), self._sigmas(),
                                        self.config_type_sigma))
        check_targets(frames, targets)
        return targets

    def fit(self, frames, progress_every: float = 10.0, client=None, chunk_frames=None,
            candidates=None, candidates_per_chunk=None):
        """Learn the model from a list of ase.Atoms carrying energies/forces/virials.

        ``frames`` may also be an extxyz path (or a list of paths). With a Dask
        ``client`` (:mod:`gapcalc.distributed`) the fit runs on the cluster: workers read
        their own frame ranges, and only the (M+1)² triangles travel back; the model equals
        the serial fit (same sparse points, α to rounding). ``chunk_frames`` sets the
        frames per task (default: from the data, never from the number of workers).
        ``candidates`` chooses how the sparse points are found on the cluster:
        "leverage" (default for cur, uniform, random: the workers keep the candidates'
        features and send hashes, one D × D triangle per chunk, keys and the ≈ M chosen
        rows) or "complete" (every chunk sends its candidate pool; the default for fps);
        both give the serial sparse points. ``candidates_per_chunk`` (superseded by
        "leverage") thins each chunk's complete pool to that many candidates per species
        by the sparse method: fewer bytes, but no longer the serial sparse points.
        """
        if client is not None:
            from .distributed import fit_distributed
            return fit_distributed(self, frames, client, chunk_frames=chunk_frames,
                                   candidates_per_chunk=candidates_per_chunk,
                                   progress_every=progress_every, candidates=candidates)
        t_start = time.perf_counter()
        frames, targets, fit_idx, isolated = self._prepare(_as_frames(frames))
        # pass 2: stream the design rows
        acc = self._accumulate(frames, targets, fit_idx, progress_every=progress_every)
        triangles = [acc[t].triangle() for t in ("energy", "force", "virial")]
        self._finish_fit(triangles, {t: acc[t].n_rows for t in acc}, n_frames=len(fit_idx),
                         n_isolated=len(isolated),
                         n_atoms=int(sum(len(frames[k]) for k in fit_idx)),
                         config_types={targets[k].config_type for k in fit_idx},
                         t_start=t_start)
        return self

    def _finish_fit(self, triangles, counts, n_frames, n_isolated, n_atoms, config_types,
                    t_start):
        """Solve from the per-type triangles and write the training summary."""
        alpha, self.R_ = solve_regularised(triangles, self.U_)
        self._set_alpha(alpha)
        self.triangles_ = np.stack(triangles)
        self.training_summary_ = {
            "n_frames": n_frames, "n_isolated_atoms": n_isolated,
            "n_atoms": n_atoms,
            "rows": counts, "n_sparse": self._sparse_summary(),
            "config_types": sorted(config_types),
            "fit_seconds": round(time.perf_counter() - t_start, 3),
        }
        log.info("fit done: %d frames, %s rows, M=%d, %.1f s", n_frames, counts, self.M_,
                 self.training_summary_["fit_seconds"])

    @property
    def M_(self) -> int:
        return sum(t.M for t in self.terms_)

    def _sparse_summary(self):
        """{term name: {symbol: count}}; repeated descriptor names get a suffix _k."""
        out = {}
        for k, t in enumerate(self.terms_):
            name = t.descriptor.name
            out[name if name not in out else f"{name}_{k}"] = self._sparse_counts(t)
        return out

    def _sparse_counts(self, term):
        return {sym: int(term.offsets[s + 1] - term.offsets[s])
                for s, sym in enumerate(term.descriptor.species.symbols)}

    def _set_alpha(self, alpha):
        self.alpha_ = np.asarray(alpha)
        for t in self.terms_:
            t.alpha = self.alpha_[t.columns]

    def _soaps(self, species=None):
        """The SOAP descriptors of the model's many-body terms (a list)."""
        desc = self.descriptor
        if desc is None:
            if species is None:
                raise ValueError("no descriptor given and no species to build the default")
            return [SOAP(species.numbers)]
        soaps = list(desc) if isinstance(desc, (list, tuple)) else [desc]
        if not soaps:
            raise ValueError("descriptor list is empty")
        for x in soaps:
            if not isinstance(x, SOAP) or isinstance(x, TwoBody):
                raise TypeError("descriptor must be a SOAP instance or a list of them")
        if any(list(x.species.numbers) != list(soaps[0].species.numbers) for x in soaps):
            raise ValueError("all SOAP descriptors of a model must have the same species")
        return soaps

    @staticmethod
    def _per_term(value, k, name):
        """value for each of k SOAP terms: a list of k values, or one value for all."""
        if isinstance(value, (list, tuple)):
            if len(value) != k:
                raise ValueError(f"{name} has {len(value)} values for {k} SOAP descriptors")
            return list(value)
        return [value] * k

    def _make_terms(self, species):
        soaps = self._soaps(species)
        k = len(soaps)
        zetas = self._per_term(self.zeta, k, "zeta")
        deltas = self._per_term(self.delta, k, "delta")
        terms = [Term(sp, DotProduct(z, dl), np.zeros((0, sp.n_features)),
                      np.zeros(0, dtype=np.int64)) for sp, z, dl in zip(soaps, zetas, deltas)]
        soap = soaps[0]
        tb = self.two_body
        if tb is True or tb == "distance":
            tb = PairDistance(soap.species.numbers, cutoff=soap.cutoff,
                              theta=self.theta_2b or 1.0, cutoff_width=soap.cutoff_width)
        elif tb == "radial":
            tb = TwoBody(soap.species.numbers, cutoff=soap.cutoff, n_max=soap.n_max,
                         atom_sigma=soap.atom_sigma, cutoff_width=soap.cutoff_width)
        if tb is not None and tb is not False:
            if not isinstance(tb, TwoBody):
                raise TypeError("two_body must be None, True, 'distance', 'radial', or a "
                                "PairDistance / TwoBody descriptor")
            if list(tb.species.numbers) != list(soap.species.numbers):
                raise ValueError("two_body and descriptor must have the same species")
            if isinstance(tb, PairDistance):   # gap_fit distance_2b: linear in pair features
                kernel = DotProduct(1, self.delta_2b)
            else:
                kernel = SquaredExponential(self.theta_2b or 1.0, self.delta_2b)
            terms.append(Term(tb, kernel, np.zeros((0, tb.n_features)),
                              np.zeros(0, dtype=np.int64)))
        return terms

    def _fit_e0(self, frames, targets, isolated, species):
        iso = set(isolated)
        rest = [k for k in range(len(frames)) if k not in iso]
        iso_energy = {}
        for k in isolated:
            iso_energy[frames[k].get_chemical_symbols()[0]] = targets[k].energy
        energy = np.array([targets[k].energy for k in rest], dtype=float)
        n_atoms = np.array([len(frames[k]) for k in rest])
        comp = (np.array([[np.sum(frames[k].numbers == z) for z in species.numbers]
                          for k in rest], dtype=float)
                if self.e0 == "lstsq" else None)
        return self._e0_from_summary(energy, n_atoms, comp, iso_energy, species)

    def _e0_from_summary(self, energy, n_atoms, comp, iso_energy, species):
        """e0 per species from per-frame totals of the non-isolated frames.

        energy, n_atoms : (n,) total energy (eV) and atom count of each frame;
        comp : (n, n_species) atom counts per species (needed for "lstsq" only);
        iso_energy : {symbol: eV} of the isolated-atom frames (last one wins).
        """
        syms = species.symbols
        e0 = self.e0
        if isinstance(e0, dict):
            out = {}
            for s, z in zip(syms, species.numbers):
                val = e0.get(s, e0.get(int(z), e0.get(str(int(z)))))
                if val is None:
                    raise ValueError(f"e0 has no value for species {s}")
                out[s] = float(val)
            return out
        if isinstance(e0, (int, float)) and not isinstance(e0, bool):
            return {s: float(e0) for s in syms}
        if e0 == "isolated":
            out = dict(iso_energy)
            missing = [s for s in syms if s not in out]
            if missing:
                raise ValueError(f"e0='isolated' but no isolated-atom frame for {missing}")
            return out
        if e0 == "average":
            per_atom = np.asarray(energy, dtype=float) / np.asarray(n_atoms)
            return {s: float(np.mean(per_atom)) for s in syms}
        if e0 == "lstsq":
            sol, *_ = np.linalg.lstsq(np.asarray(comp, dtype=float),
                                      np.asarray(energy, dtype=float), rcond=None)
            return {s: float(v) for s, v in zip(syms, sol)}
        raise ValueError(f"unknown e0 {e0!r}: use 'average', 'lstsq', 'isolated', a number "
                         "or a {symbol: eV} dict")

    def _neighbors(self, atoms):
        cut = max(t.descriptor.cutoff for t in self.terms_)
        return neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cut)

    @property
    def n_soap_terms_(self) -> int:
        """Number of SOAP (many-body) terms; they come first in ``terms_``."""
        return sum(not isinstance(t.descriptor, TwoBody) for t in self.terms_)

    def _select_features(self, frames, fit_idx, max_environments=3000):
        """Replace each SOAP term's descriptor by one keeping ``n_features`` components,
        chosen by ``feature_method`` among (up to ``max_environments``) training
        environments of a random, seeded subset of frames."""
        n_soap = self.n_soap_terms_
        wanted = self._per_term(self.n_features, n_soap, "n_features")
        rng = np.random.default_rng(self.seed + 7919)
        order = [fit_idx[i] for i in rng.permutation(len(fit_idx))]
        for ti in range(n_soap):
            want = wanted[ti]
            term = self.terms_[ti]
            if want is None:
                continue
            D = term.descriptor.n_features
            n = int(round(want * D)) if isinstance(want, float) and 0 < want < 1 else int(want)
            if n >= D:
                continue
            rows, count = [], 0
            for k in order:
                rows.append(term.descriptor.compute(frames[k]))
                count += len(frames[k])
                if count >= max_environments:
                    break
            P = np.vstack(rows)[:max_environments]
            desc = term.descriptor.select_features(P, n, method=self.feature_method,
                                                   seed=self.seed + ti)
            log.info("feature selection (%s): term %d keeps %d of %d components",
                     self.feature_method, ti, n, D)
            self.terms_[ti] = Term(desc, term.kernel, np.zeros((0, n)), np.zeros(0, dtype=np.int64))

    def _choose_sparse(self, frames, fit_idx):
        rng = np.random.default_rng(self.seed)
        cand = self._empty_candidates()
        # given sparse environments: checked before the pass, their SOAP rows taken from it
        places = None if self.sparse_indices is None else self._given_places(frames)
        if places is not None:
            X = np.empty((len(self.sparse_indices), self.terms_[0].descriptor.n_features))
        for k in fit_idx:
            try:
                first_term_rows = self._add_candidates(cand, frames[k], rng)
            except FrameError:
                raise
            except ValueError as exc:
                raise FrameError(f"frame {k}: {exc}") from None
            if places and k in places:
                rows, atoms = places.pop(k)
                X[rows] = first_term_rows[atoms]
        for k, (rows, atoms) in (places or {}).items():     # frames outside the fit
            at = frames[k]
            X[rows] = _describe(self.terms_[0], at, self._neighbors(at)).p[atoms]
        self._select_sparse(cand, rng, None if places is None else {(0, 0): X})

    def _given_places(self, frames):
        """{frame k: (rows of the sparse set, atoms of frame k)} of ``sparse_indices``
        (environments counted over all atoms of all frames, in order, as gap_fit does)."""
        if self.n_soap_terms_ != 1 or len(self.species_) != 1:
            raise ValueError("sparse_indices needs one SOAP term and one species (gap_fit "
                             "counts the environments of each centre species apart)")
        idx = np.asarray(self.sparse_indices)
        n_env = sum(len(at) for at in frames)
        if idx.ndim != 1 or not len(idx) or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError("sparse_indices must be a non-empty list of integers")
        if len(np.unique(idx)) != len(idx):
            raise ValueError("sparse_indices has repeated environments")
        if idx.min() < 0 or idx.max() >= n_env:
            raise ValueError(f"sparse_indices must lie in [0, {n_env}) (the atoms of the "
                             f"{len(frames)} training frames), got {idx.min()}..{idx.max()}")
        starts = np.cumsum([0] + [len(at) for at in frames])
        frame_of = np.searchsorted(starts, idx, side="right") - 1
        return {int(k): (np.flatnonzero(frame_of == k), idx[frame_of == k] - starts[k])
                for k in np.unique(frame_of)}

    def _empty_candidates(self, first_draw=0):
        """An empty :class:`CandidatePool` for this model's terms and species."""
        return CandidatePool([t.descriptor.n_features for t in self.terms_],
                             len(self.species_), int(self.max_candidates), first_draw)

    def _add_candidates(self, cand, atoms, rng):
        """Offer every environment of one frame to the pool ``cand`` (in place).

        Each environment gets a uniform random key drawn from ``rng``, term by term and
        species by species (one draw per atom and term); per (term, species) the
        ``max_candidates`` smallest keys are kept — a uniform sample, the same whichever
        way the frames are split and merged (:meth:`CandidatePool.merge`). Returns the
        first term's rows of every atom (n_atoms, D).
        """
        nl = self._neighbors(atoms)
        first = None
        for ti, term in enumerate(self.terms_):
            ev = _describe(term, atoms, nl)
            for s in range(len(self.species_)):
                rows = np.flatnonzero(ev.env.spec == s)
                if len(rows):
                    cand.offer(ti, s, rng.random(len(rows)), ev.p[rows])
            first = ev.p if first is None else first
        return first

    def _select_sparse(self, cand, rng, given=None):
        """Sparse points of every term from the candidate reservoir (sets ``terms_``).

        ``cand`` is a :class:`CandidatePool` (or the Dask fit's distributed pool, which
        answers the same questions). ``rng`` must have made every reservoir draw already
        (it then picks the subset for the 2-body length scale). ``given``: {(term, species):
        sparse points} used as they are instead of a selection."""
        given = given or {}
        S = len(self.species_)
        n_soap = self.n_soap_terms_
        wanted = {}
        for ti, term in enumerate(self.terms_):
            for s, sym in enumerate(self.species_.symbols):
                n_pool = cand.unique_count(ti, s)
                if not n_pool:
                    continue
                n_want = (self._per_term(self.n_sparse, n_soap, "n_sparse")[ti]
                          if ti < n_soap else self.n_sparse_2b)
                if isinstance(n_want, dict):
                    n_want = n_want.get(sym, n_want.get(str(self.species_.numbers[s]), 0))
                n_want = min(int(n_want), n_pool)
                if n_want > 0:
                    wanted[ti, s] = n_want
        # linear kernel on D Gaussian pair features: the unit vectors span the whole
        # function space, so the pair term is the exact (unsparsified) GP, K_MM = δ² I
        pair = [isinstance(t.descriptor, PairDistance) for t in self.terms_]
        chosen = cand.choose({key: n for key, n in wanted.items()
                              if not pair[key[0]] and key not in given},
                             self.sparse_method, self.seed)
        for key, X in given.items():
            wanted[key], chosen[key] = len(X), X
        picks = {}         # the candidates in the order they were drawn (as the serial stream)
        for ti, term in enumerate(self.terms_):
            if isinstance(term.kernel, SquaredExponential) and self.theta_2b is None:
                n = cand.n_drawn(ti)
                if n:
                    picks[ti] = rng.choice(n, min(n, 2000), replace=False)
        subs = cand.drawn_rows(picks) if picks else {}
        for ti, term in enumerate(self.terms_):
            Xs, Ss = [], []
            for s in range(S):
                if (ti, s) not in wanted:
                    continue
                X = np.eye(cand.n_features[ti]) if pair[ti] else chosen[ti, s]
                Xs.append(X)
                Ss.append(np.full(len(X), s))
            if not Xs:
                raise ValueError(f"no sparse points for term {term.descriptor.name}")
            X = np.vstack(Xs)
            if ti in subs:
                sub = subs[ti]
                d = np.sqrt(((sub[:, None, :] - sub[None, :, :]) ** 2).sum(-1))
                term.kernel.theta = float(np.median(d[np.triu_indices(len(sub), 1)]) or 1.0)
            self.terms_[ti] = Term(term.descriptor, term.kernel, X, np.concatenate(Ss))
        lo = 0
        for t in self.terms_:
            t.columns = t.columns + lo
            lo += t.M

    def kmm(self) -> np.ndarray:
        """K_MM over every term's sparse points, in global column order (block diagonal)."""
        K = np.zeros((self.M_, self.M_))
        for t in self.terms_:
            K[np.ix_(t.columns, t.columns)] = t.kmm()
        return K

    def _kmm_factor(self):
        K = self.kmm()
        scale = np.mean(np.diag(K))
        jitter = self.jitter
        for _ in range(8):
            try:
                return cholesky(K + jitter * scale * np.eye(len(K)), lower=False)
            except np.linalg.LinAlgError:
                log.warning("K_MM not positive definite with jitter %.1e; increasing", jitter)
                jitter *= 10
        raise np.linalg.LinAlgError("K_MM is singular even with jitter; reduce n_sparse")

    def _term_rows(self, term, ev, g, forces, virial):
        """Rows of one term: local kernel (N, M_t), force rows (N, 3, M_t), virial (3, 3, M_t).

        Force and virial rows are made centre by centre (the centre's gradient rows — its
        pairs and, for the virial, its strain — times the sparse points, one product of
        (3 n_i + 9) × D by D × M_s): the temporaries stay cache-sized instead of a
        pairs × 3 × M array per structure, which made the fit memory-bound."""
        n = ev.env.n_atoms
        spec = ev.env.spec
        if g is None:
            return term.local_kernel(ev.p, spec), None, None
        K = np.zeros((n, term.M))
        F = np.zeros((n, 3, term.M)) if forces else None
        V = np.zeros((3, 3, term.M)) if virial else None
        pairs, values = g.pairs, g.values
        if len(pairs) > 1 and np.any(pairs[1:, 0] < pairs[:-1, 0]):
            order = np.argsort(pairs[:, 0], kind="stable")
            pairs, values = pairs[order], values[order]
        first = np.searchsorted(pairs[:, 0], np.arange(n + 1))
        if not forces:
            first[:] = 0
        n_pairs = np.diff(first)
        D = ev.p.shape[1]
        extra = 3 if virial else 0            # a centre's strain rows (3, 3, D)
        for s, rows, sl in term.blocks(spec):
            X = term.X[sl]
            Ks, dKs = term.kernel.rows_and_derivative(ev.p[rows], X)
            K[rows, sl] = Ks
            Fs = F[:, :, sl] if forces else None
            Vs = np.zeros((3, 3, Ks.shape[1])) if virial else None
            # centres in groups of ~_GROUP_ROWS gradient rows, one product per group, into
            # buffers made once per structure (no large temporaries per group or centre)
            count = n_pairs[rows] + extra
            bounds = _groups(3 * count, _GROUP_ROWS)
            cum = np.concatenate([[0], np.cumsum(count)])
            most = int(max(cum[hi] - cum[lo] for lo, hi in zip(bounds[:-1], bounds[1:])))
            Gbuf = np.empty((most, 3, D))
            Tbuf = np.empty((3 * most, Ks.shape[1]))
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                at = 0
                for i in rows[lo:hi]:
                    k = int(n_pairs[i])
                    Gbuf[at:at + k] = values[first[i]:first[i + 1]]
                    if virial:
                        Gbuf[at + k:at + k + 3] = g.strain[i]
                    at += k + extra
                if not at:
                    continue
                T = np.matmul(Gbuf[:at].reshape(3 * at, D), X.T, out=Tbuf[:3 * at])
                at = 0
                for r in range(lo, hi):
                    i = rows[r]
                    k = int(n_pairs[i])
                    m = k + extra
                    Tc = term.kernel.contract_centre(Gbuf[at:at + m], X, ev.p[i], Ks[r],
                                                     dKs[r], product=T[3 * at:3 * (at + m)])
                    at += m
                    if k:
                        subtract_rows(Fs, pairs[first[i]:first[i + 1], 1], Tc[:k])
                    if virial:
                        Vs -= Tc[k:]
            if virial:
                V[:, :, sl] = Vs
        return K, F, V

    def design_rows(self, atoms, forces=True, virial=True, nl=None):
        """Rows of K_NM for one structure (seed Eqs. 13-15, derivative functionals).

        Returns (energy_row (M,), force_rows (n_atoms, 3, M) or None,
        virial_rows (3, 3, M) or None); force rows are −∂/∂r_j of the energy row and
        virial rows −∂/∂ε of it (gap_fit sign). M spans all terms.
        """
        nl = self._neighbors(atoms) if nl is None else nl
        parts = []
        for term in self.terms_:
            ev = _describe(term, atoms, nl)
            g = (term.descriptor.gradients(ev.env, ev.c, ev.p, ev.pnorm, strain=virial)
                 if forces or virial else None)
            parts.append(self._term_rows(term, ev, g, forces, virial))
        n = len(atoms)
        E = np.zeros(self.M_)
        F = np.zeros((n, 3, self.M_)) if forces else None
        V = np.zeros((3, 3, self.M_)) if virial else None
        for term, (K, Ft, Vt) in zip(self.terms_, parts):
            E[term.columns] = K.sum(axis=0)
            if forces:
                F[:, :, term.columns] = Ft
            if virial:
                V[:, :, term.columns] = Vt
        return E, F, V

    # ------------------------------------------------------------------ uncertainty
    def _variance_factor(self):
        """The posterior factor of every variance, cached until the model changes.

        Columns are put in *block order* (term by term, species by species), so that the
        rows of a local energy touch one contiguous column range. In that order, with
        K_MM = UᵀU (block diagonal) and Σ = (RᵀR)⁻¹, W = U R⁻¹ has singular values ≤ 1
        and I − WWᵀ = B Bᵀ (B upper triangular, a reversed Cholesky factor). Then, for
        any row l,  l Σ lᵀ − l K_MM⁻¹ lᵀ = −‖E l‖² with E = Bᵀ U⁻ᵀ lower triangular: one
        triangular product per row instead of two triangular solves. Returns a dict:
        "E" (M, M) Fortran-ordered, "triangular", "blocks" {(term, species): (lo, hi)},
        "perm" (M,) global column of each block-ordered column, "species_cols"
        {species: (columns (k,), E rows ≥ start, Eᵀ[columns, start:] (k, M − start))}.
        """
        cache = getattr(self, "_var_cache", None)
        if cache is not None and cache["U"] is self.U_ and cache["R"] is self.R_:
            return cache
        blocks, perm, lo = {}, [], 0
        for ti, term in enumerate(self.terms_):
            for s in range(len(term.offsets) - 1):
                cols = term.columns[term.offsets[s]:term.offsets[s + 1]]
                if len(cols):
                    blocks[(ti, s)] = (lo, lo + len(cols))
                    perm.append(cols)
                    lo += len(cols)
        perm = np.concatenate(perm)
        Kp = (self.U_.T @ self.U_)[np.ix_(perm, perm)]
        Up = np.zeros_like(Kp)
        for a, b in blocks.values():                      # K_MM is block diagonal
            Up[a:b, a:b] = cholesky(Kp[a:b, a:b], lower=False)
        from scipy.linalg import qr
        Rp = qr(self.R_[:, perm], mode="r", check_finite=False)[0]
        WT = solve_triangular(Rp, Up.T, trans="T", check_finite=False)      # (U R⁻¹)ᵀ
        G = np.eye(len(perm)) - WT.T @ WT
        G = 0.5 * (G + G.T)
        try:    # reversed Cholesky: J G J = L Lᵀ  ⇒  G = B Bᵀ with B = J L J upper
            L = cholesky(G[::-1, ::-1], lower=True, check_finite=False)
            B = L[::-1, ::-1]
            E = solve_triangular(Up, B, check_finite=False).T               # Bᵀ U⁻ᵀ
            triangular = True
        except np.linalg.LinAlgError:   # I − WWᵀ singular to working precision
            mu, V = np.linalg.eigh(G)
            E = (np.sqrt(np.maximum(mu, 0.0))[:, None] * V.T)
            E = solve_triangular(Up, E.T, check_finite=False).T
            triangular = False
        E = np.asfortranarray(E)
        species_cols = {}
        for s in range(len(self.species_)):
            cols = [np.arange(*blocks[(ti, s)]) for ti in range(len(self.terms_))
                    if (ti, s) in blocks]
            if cols:
                cols = np.concatenate(cols)
                start = int(cols.min()) if triangular else 0
                species_cols[s] = (cols, start, np.ascontiguousarray(E.T[cols, start:]))
        self._var_cache = {"U": self.U_, "R": self.R_, "E": E, "triangular": triangular,
                           "blocks": blocks, "perm": perm, "species_cols": species_cols}
        return self._var_cache

    def _reduction(self, fac, rows):
        """‖E l‖² for rows l (r, M) in block order (r,); l Σ lᵀ − l K⁻¹ lᵀ = −this."""
        if fac["triangular"]:
            from scipy.linalg.blas import dtrmm
            Y = dtrmm(1.0, fac["E"], np.asfortranarray(rows.T), lower=1)   # E lᵀ (M, r)
        else:
            Y = fac["E"] @ rows.T
        return np.einsum("mr,mr->r", Y, Y)

    def _local_reduction(self, fac, s, rows):
        """As :meth:`_reduction` for local-energy rows of species s (zero outside its columns)."""
        cols, start, ET = fac["species_cols"][s]
        if fac["triangular"] and cols[-1] - cols[0] + 1 == len(cols):
            # one contiguous block [lo, hi): E l = [E[lo:hi, lo:hi] l (triangular); E[hi:, lo:hi] l]
            from scipy.linalg.blas import dtrmm
            lo, hi = int(cols[0]), int(cols[-1]) + 1
            E = fac["E"]
            lt = np.asfortranarray(rows[:, lo:hi].T)
            top = dtrmm(1.0, E[lo:hi, lo:hi], lt, lower=1)
            red = np.einsum("mr,mr->r", top, top)
            if hi < E.shape[0]:
                bot = E[hi:, lo:hi] @ lt
                red += np.einsum("mr,mr->r", bot, bot)
            return red
        Y = rows[:, cols] @ ET
        return np.einsum("rm,rm->r", Y, Y)

    def uncertainty(self, atoms, forces=True, nl=None, energies=True):
        """Posterior standard deviations (projected process / DTC, seed Eqs. 19-20).

        For any linear functional L of the local-energy GP with row l = L k(·, X):
            σ²(L) = L L' k − l K_MM⁻¹ lᵀ + l Σ lᵀ,   Σ = R⁻¹R⁻ᵀ, K_MM = UᵀU,
        applied to every local energy ε_i and the total energy (``energies``), and
        (``forces``) to every force component −∂E/∂r_ja, whose prior term uses the exact
        second derivatives of the kernels. Returns {"energies_std" (N,) eV,
        "energy_std" eV} and/or {"forces_std" (N, 3) eV/Å}: *latent* (noise-free) stds,
        the spread of the fitted function. A new reference calculation would scatter
        around the prediction by the *predictive* std, which adds the model's noise:
        ``forces_std_predictive`` = sqrt(forces_std² + σ_F²) and
        ``energy_std_predictive`` = sqrt(energy_std² + (σ_E √N)²) (``sigma_force``,
        ``sigma_energy`` per atom as in fitting); both are returned too.
        """
        self._check_fitted()
        nl = self._neighbors(atoms) if nl is None else nl
        what = ("energy",) * bool(energies) + ("forces",) * bool(forces)
        return self._predict(atoms, nl, forces=False, stress=False, std=what)["std"]

    def _predict(self, atoms, nl, forces, stress, std=()):
        """Shared pass of :meth:`evaluate` and :meth:`uncertainty`: one description per
        term; the std rows reuse the kernel values of the energy pass."""
        n = len(atoms)
        spec_all = self.species_.indices(atoms.numbers)
        energies = np.array([self.e0_[s] for s in self.species_.symbols])[spec_all]
        F = np.zeros((n, 3))
        W = np.zeros((3, 3))
        want_e, want_f = "energy" in std, "forces" in std
        fac = self._variance_factor() if std else None
        M = self.M_
        Kl = {} if want_e else None                   # species -> (n_s, M) rows, block order
        Lf = np.zeros((n, 3, M)) if want_f else None  # force rows, block order
        prior_local = np.zeros(n)
        prior_total = 0.0
        prior_forces = np.zeros((n, 3))
        need_grad = forces or stress
        for ti, term in enumerate(self.terms_):
            ev = _describe(term, atoms, nl)
            spec = ev.env.spec
            w = np.zeros_like(ev.p) if need_grad else None
            g = (term.descriptor.gradients(ev.env, ev.c, ev.p, ev.pnorm, strain=False)
                 if want_f else None)
            if want_f:
                gfirst = np.searchsorted(g.pairs[:, 0], np.arange(n + 1))
            for s, rows, sl in term.blocks(spec):
                X = term.X[sl]
                eps, w_s, K, dK = term.kernel.energy_gradient_rows(
                    ev.p[rows], X, term.alpha[sl], rows=bool(std), derivative=want_f)
                energies[rows] += eps
                if need_grad:
                    w[rows] = w_s
                if not std:
                    continue
                lo, hi = fac["blocks"][(ti, s)]
                if want_e:
                    blk = Kl.setdefault(s, np.zeros((len(rows), M)))
                    blk[:, lo:hi] = K
                if want_f:
                    L3 = Lf[:, :, lo:hi]
                    for r, i in enumerate(rows):       # per centre: cache-sized temporaries
                        a, b = gfirst[i], gfirst[i + 1]
                        T = term.kernel.contract_centre(g.values[a:b], X, ev.p[i], K[r],
                                                         dK[r])
                        L3[g.pairs[a:b, 1]] -= T
            if need_grad:
                t = term.descriptor.backward(ev.env, ev.c, ev.p, ev.pnorm, w)
                assemble_forces(ev.env.first, ev.env.index, ev.env.vectors, t, F, W)
            if want_e:
                prior_local += term.kernel.diag(ev.p)
                for s in np.unique(spec):
                    P = ev.p[spec == s]
                    prior_total += float(term.kernel(P, P).sum())
            if want_f:
                prior = _force_prior_dot if isinstance(term.kernel, DotProduct) else _force_prior
                prior_forces += prior(term.kernel, ev.p, spec, g, n)
        out = {"energy": float(energies.sum()), "energies": energies}
        if forces:
            out["forces"] = F
        if stress and atoms.pbc.all():
            W = 0.5 * (W + W.T) / atoms.get_volume()
            out["stress"] = W[_VOIGT_A, _VOIGT_B]
        if not std:
            return out
        res = {}
        if want_e:
            var_local = prior_local.copy()
            total_row = np.zeros(M)
            for s, blk in Kl.items():
                var_local[spec_all == s] -= self._local_reduction(fac, s, blk)
                total_row += blk.sum(axis=0)
            var_total = prior_total - float(self._reduction(fac, total_row[None])[0])
            res["energies_std"] = np.sqrt(np.maximum(var_local, 0.0))
            res["energy_std"] = float(np.sqrt(max(var_total, 0.0)))
            res["energy_std_predictive"] = float(np.sqrt(
                res["energy_std"] ** 2 + (self.sigma_energy * np.sqrt(n)) ** 2))
        if want_f:
            var_f = prior_forces.ravel() - self._reduction(fac, Lf.reshape(3 * n, M))
            res["forces_std"] = np.sqrt(np.maximum(var_f, 0.0)).reshape(n, 3)
            res["forces_std_predictive"] = np.sqrt(res["forces_std"] ** 2
                                                   + self.sigma_force ** 2)
        out["std"] = res
        return out

    def _accumulate(self, frames, targets, indices, folds=None, evaluation=False,
                    progress_every=10.0):
        """Stream whitened design rows into StreamingQR accumulators per target type.

        With ``folds`` (fold id per frame index) returns {fold: {type: acc}}. With
        ``evaluation`` also accumulates unwhitened rows in physical error units
        ("eval_energy": eV/atom, "eval_force": eV/Å, "eval_virial": eV/Å³) so that
        held-out RMSEs follow from the triangles alone (see :mod:`gapcalc.tuning`).
        """
        M = self.M_
        kinds = ["energy", "force", "virial"]
        if evaluation:
            kinds += ["eval_energy", "eval_force", "eval_virial"]

        def new():
            return {t: StreamingQR(M, self.block_rows) for t in kinds}
        accs = {} if folds is not None else new()
        t0 = time.perf_counter()
        last = t0
        n_rows = 0
        for count, k in enumerate(indices, 1):
            acc = accs if folds is None else accs.setdefault(int(folds[k]), new())
            try:
                n_rows += self._add_frame_rows(acc, frames[k], targets[k], evaluation)
            except FrameError:
                raise
            except ValueError as exc:
                raise FrameError(f"frame {k}: {exc}") from None
            now = time.perf_counter()
            if now - last > progress_every or count == len(indices):
                log.info("design rows: %d/%d frames, %d rows, %.1f s", count, len(indices),
                         n_rows, now - t0)
                last = now
        return accs

    def _add_frame_rows(self, acc, at, tg, evaluation=False):
        """Fold the whitened design rows of one frame into ``acc`` ({type: StreamingQR}).

        Returns the number of rows added. ValueError for data the descriptors reject."""
        M = self.M_
        e0 = sum(self.e0_[s] for s in at.get_chemical_symbols())
        E, F, V = self.design_rows(at, forces=tg.forces is not None,
                                   virial=tg.virial is not None)
        n = len(at)
        ey = tg.energy - e0
        acc["energy"].add(E[None] / tg.sigma_energy, [ey / tg.sigma_energy])
        if evaluation:
            acc["eval_energy"].add(E[None] / n, [ey / n])
        n_rows = 1
        if F is not None:
            use = slice(None) if tg.force_mask is None else tg.force_mask
            Fr = F[use].reshape(-1, M)
            fy = tg.forces[use].ravel()
            acc["force"].add(Fr / tg.sigma_force, fy / tg.sigma_force)
            if evaluation:
                acc["eval_force"].add(Fr, fy)
            n_rows += len(fy)
        if V is not None:
            # the 6 independent components (as gap_fit): a symmetric virial's
            # off-diagonal entries must not count twice
            Vr = V[_VOIGT_A, _VOIGT_B]
            vy = tg.virial[_VOIGT_A, _VOIGT_B]
            acc["virial"].add(Vr / tg.sigma_virial, vy / tg.sigma_virial)
            if evaluation:
                vol = at.get_volume()
                acc["eval_virial"].add(Vr / vol, vy / vol)
            n_rows += 6
        return n_rows

    def _prepare(self, frames):
        """Validate, fit e0, build terms and sparse points and K_MM: everything before rows."""
        frames = list(frames)
        if not frames:
            raise ValueError("no training frames")
        targets = self.read(frames)
        numbers = np.unique(np.concatenate([at.numbers for at in frames]))
        species = SpeciesMap(numbers) if self.descriptor is None else self._soaps()[0].species
        isolated = [k for k, at in enumerate(frames) if len(at) == 1 and not at.pbc.any()]
        self.e0_ = self._fit_e0(frames, targets, isolated, species)
        fit_idx = [k for k in range(len(frames)) if k not in set(isolated)]
        if not fit_idx:
            raise ValueError("no training frames besides isolated atoms")
        self.terms_ = self._make_terms(species)
        self.species_ = self.terms_[0].descriptor.species
        if self.n_features is not None:
            self._select_features(frames, fit_idx)
        self._choose_sparse(frames, fit_idx)
        self.U_ = self._kmm_factor()
        return frames, targets, fit_idx, isolated

    # ------------------------------------------------------------------ incremental
    def update(self, frames, new_sparse=None, progress_every=60.0, client=None,
               chunk_frames=None):
        """Add training frames (and sparse points) to a fitted model without revisiting old data.

        New rows are folded into the kept per-target QR triangles (cost O(rows · M²),
        independent of how much data the model has seen). ``new_sparse`` — a list of
        (term index, X (k, D), species indices (k,)) candidates, most important first —
        extends the sparse set (see :meth:`extend_sparse`). Returns the number of
        sparse points added. ``frames`` may be extxyz path(s); with a Dask ``client`` the
        rows of a large batch are made on the cluster (:mod:`gapcalc.distributed`).
        """
        self._check_fitted()
        if getattr(self, "triangles_", None) is None:
            raise RuntimeError("this model was saved without its training state; refit it")
        if client is not None:
            from .distributed import update_distributed
            return update_distributed(self, frames, client, new_sparse=new_sparse,
                                      chunk_frames=chunk_frames, progress_every=progress_every)
        frames = list(_as_frames(frames))
        start = int(self.training_summary_.get("n_frames", 0))
        targets = []
        for k, at in enumerate(frames):
            check_atoms(at, self.min_distance, where=f"frame {start + k}")
            targets.append(read_targets(at, start + k, self._keys(), self._sigmas(),
                                        self.config_type_sigma))
        added = self.extend_sparse(new_sparse) if new_sparse else 0
        acc = self._accumulate(frames, targets, range(len(frames)), progress_every=progress_every)
        self._finish_update(acc, len(frames), sum(len(a) for a in frames))
        return added

    def _finish_update(self, acc, n_frames, n_atoms):
        """Fold the kept triangles into the new rows' accumulators ({type: StreamingQR}),
        solve, and update the training summary."""
        triangles = []
        for t, T in zip(("energy", "force", "virial"), self.triangles_):
            a = acc[t]
            a.add_triangle(T)
            triangles.append(a.triangle())
        alpha, self.R_ = solve_regularised(triangles, self.U_)
        self._set_alpha(alpha)
        self.triangles_ = np.stack(triangles)
        summ = self.training_summary_
        summ["n_frames"] = int(summ.get("n_frames", 0)) + int(n_frames)
        summ["n_atoms"] = int(summ.get("n_atoms", 0) + n_atoms)
        rows = summ.setdefault("rows", {})
        for t in ("energy", "force", "virial"):
            rows[t] = int(rows.get(t, 0) + acc[t].n_rows)
        summ["n_sparse"] = self._sparse_summary()
        summ["incremental_updates"] = int(summ.get("incremental_updates", 0)) + 1

    def extend_sparse(self, candidates, min_residual=1e-6):
        """Append sparse points; old data see them through the old sparse set.

        Each candidate x is accepted, in order, if its Nyström residual
        k(x,x) − k_xM K_MM⁻¹ k_Mx exceeds ``min_residual`` · k(x,x) (so near-duplicates
        are skipped). K_MM's Cholesky factor is extended in O(M²) per point. Data already
        folded into the model cannot be re-read, so their rows in the new columns are
        taken as their projection through the old sparse points,
        K_N,new ≈ K_N,old K_old⁻¹ K_old,new (the projected-process view of the old data;
        streaming sparse GPs make the same choice); the triangles are transformed
        accordingly in O(M² k). A :meth:`refit` removes the approximation.
        Returns the number of points added.
        """
        M = self.M_
        jitter = self.jitter * float(np.mean(np.diag(self.U_.T @ self.U_))) if M else self.jitter
        U = self.U_
        cols_new = []          # (term index, x, species)
        for ti, X, spec in candidates:
            term = self.terms_[ti]
            for x, s in zip(np.atleast_2d(X), np.atleast_1d(spec)):
                kx = np.zeros(U.shape[0])
                same = term.X_species == s
                kx[term.columns[same]] = term.kernel(x[None], term.X[same])[0]
                for j, (tj, xj, sj) in enumerate(cols_new):
                    if tj == ti and sj == s:
                        kx[M + j] = term.kernel(x[None], xj[None])[0, 0]
                kxx = float(term.kernel.diag(x[None])[0]) + jitter
                b = solve_triangular(U, kx, trans="T", check_finite=False)
                r = kxx - b @ b
                if r <= min_residual * kxx:
                    continue
                U = np.block([[U, b[:, None]], [np.zeros((1, U.shape[0])), np.sqrt(r)]])
                cols_new.append((ti, np.asarray(x, dtype=float), int(s)))
        k = len(cols_new)
        if not k:
            return 0
        # P = K_old⁻¹ K_old,new from the extended factor: U = [[U0, B], [0, C]], B = U0⁻ᵀ K_old,new
        B = U[:M, M:]
        P = solve_triangular(self.U_, B, check_finite=False)
        T = self.triangles_
        data = T[:, :, :M]
        T = np.concatenate([data, data @ P, T[:, :, M:]], axis=2)
        from .solver import triangularise
        self.triangles_ = np.stack([triangularise(np.asfortranarray(Ti), M + k + 1) for Ti in T])
        self.U_ = U
        for ti, term in enumerate(self.terms_):
            mine = [(M + j, x, s) for j, (tj, x, s) in enumerate(cols_new) if tj == ti]
            if not mine:
                continue
            self.terms_[ti] = Term(term.descriptor, term.kernel,
                                   np.vstack([term.X] + [x[None] for _, x, _ in mine]),
                                   np.concatenate([term.X_species, [s for _, _, s in mine]]),
                                   columns=np.concatenate([term.columns, [c for c, _, _ in mine]]))
        alpha, self.R_ = solve_regularised(list(self.triangles_), self.U_)
        self._set_alpha(alpha)
        log.info("sparse set extended by %d points to M = %d", k, self.M_)
        return k

    def refit(self, frames, progress_every=60.0):
        """Exact refit on ``frames`` with the current sparse points (and e0)."""
        if not hasattr(self, "terms_"):
            raise RuntimeError("refit needs sparse points: call fit() first")
        frames = list(frames)
        targets = self.read(frames)
        self.U_ = self._kmm_factor()
        acc = self._accumulate(frames, targets, range(len(frames)), progress_every=progress_every)
        triangles = [acc[t].triangle() for t in ("energy", "force", "virial")]
        alpha, self.R_ = solve_regularised(triangles, self.U_)
        self._set_alpha(alpha)
        self.triangles_ = np.stack(triangles)
        self.training_summary_.update(
            n_frames=len(frames), n_atoms=int(sum(len(a) for a in frames)),
            rows={t: acc[t].n_rows for t in acc}, incremental_updates=0)
        return self

    # ------------------------------------------------------------------ prediction
    def _check_fitted(self):
        if not hasattr(self, "alpha_"):
            raise RuntimeError("model is not fitted: call fit() or load a model file")

    @property
    def cutoff(self) -> float:
        """Largest cutoff of the fitted terms (Å)."""
        return max(t.descriptor.cutoff for t in self.terms_)

    @property
    def has_posterior(self) -> bool:
        return getattr(self, "R_", None) is not None

    @property
    def potential_(self) -> Potential:
        """The fitted potential (prediction only); shares the terms with this model, so
        it follows later updates. Save it to write a file without the posterior."""
        self._check_fitted()
        return Potential(self.species_, self.e0_, self.terms_, self.min_distance,
                         info={"training": self.training_summary_})

    def evaluate(self, atoms, forces=True, stress=True, nl=None, min_distance=None,
                 check=True, uncertainty=None, virials=False):
        """Energy (eV), per-atom energies (eV), forces (eV/Å), stress (Voigt, eV/Å³).

        Without ``uncertainty`` this is :meth:`Potential.evaluate` (the prediction core).
        ``uncertainty`` adds posterior stds (see :meth:`uncertainty`) from the same
        descriptor pass: None/False (none), "energy" (``energies_std``, ``energy_std``,
        ``energy_std_predictive``), "forces" (``forces_std``, ``forces_std_predictive``)
        or True / "all" (both). ``virials``: per-atom virials (prediction core only).
        """
        self._check_fitted()
        std = _std_request(uncertainty)
        if not std:
            return self.potential_.evaluate(atoms, forces=forces, stress=stress, nl=nl,
                                            min_distance=min_distance, check=check,
                                            virials=virials)
        if virials:
            raise ValueError("per-atom virials are not computed together with uncertainties")
        md = self.min_distance if min_distance is None else min_distance
        if check:
            check_atoms(atoms, md if nl is None else 0.0)
        nl = self._neighbors(atoms) if nl is None else nl
        out = self._predict(atoms, nl, forces, stress, std)
        out.update(out.pop("std"))
        return out

    def predict(self, frames):
        """Energies (n_frames,), forces (list of (n, 3)), stresses: :meth:`Potential.predict`."""
        return self.potential_.predict(frames)

    def calculator(self, **kwargs):
        """An ASE calculator for this model."""
        from .calculator import GAPCalculator
        return GAPCalculator(self, **kwargs)

    def save(self, path, training_state=True):
        """Write the model (``.npz`` without pickles, JSON header inside), atomically."""
        from .io import save_model
        save_model(self, path, training_state=training_state)
