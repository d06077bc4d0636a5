"""A gapcalc potential inside a running LAMMPS instance (``fix external pf/callback``).

:func:`attach` adds to a LAMMPS instance (``from lammps import lammps``; metal units,
box defined)

    pair_style  zero <model cutoff> nocoeff   # only so that LAMMPS' ghost cutoff is rc + skin
    pair_coeff  * *
    fix         gapcalc all external pf/callback 1 1
    fix_modify  gapcalc energy yes virial yes

and registers the callback. On every force evaluation each MPI rank

1. takes its owned atoms (0..nlocal-1) and LAMMPS' ghosts (images and copies of other
   ranks' atoms within rc + skin of its sub-domain);
2. rebuilds its neighbour pairs (owned centre, any atom) within rc + skin in Numba when
   LAMMPS has re-neighboured (``neigh_ago == 0``, or the atom tags changed), otherwise only
   refreshes their vectors (a safety net also rebuilds them if an atom moved more than
   skin/2 since, which happens only if LAMMPS' skin is larger than the coupling's);
3. predicts the local energies of its owned atoms and the pair gradients with
   :meth:`gapcalc.potential.Potential.local_energies` — the same prediction core as the
   ASE calculator — and sums them into forces on owned and ghost atoms and the virial;
4. returns ghost forces to their owners (:class:`~gapcalc.lammps.comm.GhostReturn`);
5. hands LAMMPS the forces on its owned atoms, and the *all-rank* total energy and virial
   (one 8-double Allreduce: ``fix external`` takes each rank's energy as the total and
   averages the virials), and, on the steps where LAMMPS asks for them, per-atom energies
   (``compute pe/atom``) and per-atom virials (``compute stress/atom``).

Errors inside the callback (an atom pair closer than the model's minimum distance, a
model failure, ...) are caught on the rank where they happen, every rank is told in the
same Allreduce, LAMMPS is asked to stop the run (``force_timeout``) and
:meth:`LammpsCoupling.check` (called by the launcher after every run) raises them.

``lammps`` and ``mpi4py`` are imported only when a coupling is made.
"""
from __future__ import annotations

import logging
import os
import sys
import time

import numpy as np

from ..descriptors.soap import Environment
from ..potential import forces_and_virial
from ._kernels import cluster_pairs, max_displacement, per_atom_virials, update_pair_vectors
from .comm import GhostReturn

log = logging.getLogger("gapcalc.lammps")

#: LAMMPS' default neighbour skin in metal units (Å)
DEFAULT_SKIN = 2.0
#: LAMMPS order of the 6 virial components
VIRIAL_ORDER = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))
TIMERS = ("lammps", "plan", "pairs", "model", "forces", "wait", "reverse", "reduce", "peratom")


class GapcalcLammpsError(RuntimeError):
    """A failure inside the gapcalc coupling during a LAMMPS run."""


def import_lammps():
    """(MPI, lammps class), importing mpi4py first: its wheel loads the libmpi that the
    PyPI lammps wheel links against."""
    try:
        from mpi4py import MPI
    except ImportError as exc:          # pragma: no cover - depends on the environment
        raise ImportError("gapcalc.lammps needs mpi4py and the lammps module: "
                          "pip install 'gapcalc[lammps]'") from exc
    try:
        from lammps import lammps
    except ImportError as exc:          # pragma: no cover
        raise ImportError("gapcalc.lammps needs the lammps Python module: "
                          "pip install 'gapcalc[lammps]'") from exc
    return MPI, lammps


def load_potential(model):
    """A :class:`~gapcalc.potential.Potential` from a path, a shipped potential name
    ("Cu"), a fitted :class:`~gapcalc.gpr.SparseGPR` or a Potential."""
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        from .. import load_model_file
        from ..potentials import resolve
        model = load_model_file(resolve(model))
    if hasattr(model, "_check_fitted"):
        model._check_fitted()
    potential = getattr(model, "potential_", model)
    if not hasattr(potential, "local_energies") or not hasattr(potential, "species"):
        raise TypeError(f"not a gapcalc model: {type(model).__name__}")
    return potential


def _species_of_types(potential, elements, ntypes):
    """(ntypes+1,) species index of every LAMMPS type (entry 0 unused)."""
    elements = list(elements)
    if len(elements) != ntypes:
        raise ValueError(f"pair_coeff * * needs one element per atom type: the box has "
                         f"{ntypes} types, got {len(elements)} ({' '.join(elements)})")
    known = potential.species.symbols
    out = np.zeros(ntypes + 1, dtype=np.int64)
    for t, el in enumerate(elements, start=1):
        if el not in known:
            raise ValueError(f"atom type {t} is '{el}', which the model does not know "
                             f"(it has {' '.join(known)})"
                             + ("; NULL types (hybrid pair styles) are not supported"
                                if el.upper() == "NULL" else ""))
        out[t] = known.index(el)
    return out


class LammpsCoupling:
    """gapcalc potential coupled to one LAMMPS instance; made by :func:`attach`.

    Attributes: ``potential``, ``cutoff`` (model, Å), ``skin`` (Å), ``fix_id``,
    ``timers`` (seconds spent per stage on this rank, see :data:`TIMERS`), ``counts``
    (calls, LAMMPS re-neighbourings seen, pair-list rebuilds, safety-net rebuilds, atoms
    that arrived from other ranks), ``error`` (the first error of a run, or None).
    ``reset_timers()`` zeroes both.
    """

    def __init__(self, lmp, model, elements, skin=None, fix_id="gapcalc",
                 reverse="alltoallv", min_distance=None, warm_up=True):
        self.lmp = lmp
        if lmp.extract_global("units") != "metal":
            raise ValueError(f"gapcalc needs 'units metal' (eV, Å), the LAMMPS instance "
                             f"uses '{lmp.extract_global('units')}'")
        if not lmp.extract_setting("box_exist"):
            raise ValueError("define the box (create_box or read_data) before the gapcalc "
                             "pair style")
        self.potential = load_potential(model)
        self.cutoff = float(self.potential.cutoff)
        self.skin = DEFAULT_SKIN if skin is None else float(skin)
        if not self.skin >= 0:
            raise ValueError(f"skin must be >= 0 Å, got {skin}")
        self.min_distance = (self.potential.min_distance if min_distance is None
                             else float(min_distance))
        ntypes = lmp.extract_setting("ntypes")
        self.elements = list(elements)
        self.type_species = _species_of_types(self.potential, self.elements, ntypes)
        self.fix_id = fix_id
        comm = lmp.get_mpi_comm()
        self.comm = comm if comm is not None and comm.Get_size() > 1 else None
        self.size = 1 if self.comm is None else self.comm.Get_size()
        self.ghosts = GhostReturn(self.comm, reverse)
        self.numba_threads = self._share_cores()
        self.timers = dict.fromkeys(TIMERS + ("callback",), 0.0)
        self.counts = dict.fromkeys(("calls", "reneighbour", "rebuilds", "safety_rebuilds",
                                     "arrived", "peratom_energy", "peratom_virial"), 0)
        self.error = None
        self.abort_on_error = False
        #: benchmarks: a barrier before the ghost return, so that waiting for slower ranks
        #: is timed as "wait" and not as communication, and per-call samples
        #: (start, model, wait, callback seconds) in ``samples``
        self.sync_timing = False
        self.samples = []
        self._tags = None
        self._nlocal = -1
        self._plan_ok = False
        self.env = None
        if warm_up:
            self.warm_up()
        lmp.command(f"pair_style zero {self.cutoff!r} nocoeff")
        lmp.command("pair_coeff * *")
        lmp.command(f"fix {fix_id} all external pf/callback 1 1")
        lmp.command(f"fix_modify {fix_id} energy yes virial yes")
        lmp.set_fix_external_callback(fix_id, self._callback, None)

    # ------------------------------------------------------------------ helpers
    def _share_cores(self):
        """Unless NUMBA_NUM_THREADS is set, give each rank an equal share of its node's
        cores for the Numba kernels (ranks × threads ≤ cores); returns the thread count."""
        import numba
        if self.comm is not None and "NUMBA_NUM_THREADS" not in os.environ:
            from mpi4py import MPI
            node = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
            per_node = node.Get_size()
            node.Free()
            numba.set_num_threads(max(1, numba.config.NUMBA_NUM_THREADS // per_node))
        return numba.get_num_threads()

    def warm_up(self):
        """Compile (or load from Numba's cache) every kernel a step uses, on a two-atom
        environment per species, so that ranks do not stall at different times later."""
        x = np.array([[0.0, 0.0, 0.0], [0.45 * self.cutoff, 0.1, 0.0],
                      [3 * self.cutoff, 0, 0]])
        first, index, vectors = cluster_pairs(x, 2, self.cutoff + self.skin)
        update_pair_vectors(x, first, index, vectors)
        max_displacement(x, x)
        for s in range(len(self.potential.species.symbols)):
            env = Environment.from_arrays(first, index, vectors, np.array([s, s, s]))
            eps, t = self.potential.local_energies(env, gradients=True)
            forces_and_virial(env, t, 3)
            per_atom_virials(first, index, vectors, t, 3)
        ret = GhostReturn(None)
        ret.plan(np.array([1, 2, 1]), 2)
        ret.fold(np.zeros((3, 3)))

    def reset_timers(self):
        self.samples = []
        for k in self.timers:
            self.timers[k] = 0.0
        for k in self.counts:
            self.counts[k] = 0

    def check(self):
        """Raise the error that stopped the last run (on every rank), if any."""
        if self.error is not None:
            err, self.error = self.error, None
            raise GapcalcLammpsError(err)

    def summary(self) -> str:
        c, t = self.counts, self.timers
        per = 1e3 / max(c["calls"], 1)
        parts = ", ".join(f"{k} {t[k] * per:.3f}" for k in TIMERS)
        return (f"gapcalc: {c['calls']} force calls, {c['reneighbour']} LAMMPS "
                f"re-neighbourings, {c['rebuilds']} pair-list builds "
                f"({c['safety_rebuilds']} by displacement > skin/2), {c['arrived']} atoms "
                f"arrived from other ranks; ms per call on this rank: callback "
                f"{t['callback'] * per:.3f} = {parts} (+ python)")

    def _abort(self):
        """End every rank (MPI_Abort); the rank that failed has logged the error."""
        try:
            self.lmp.flush_buffers()
        except Exception:
            pass
        sys.stdout.flush()
        sys.stderr.flush()
        self.lmp.get_mpi_comm().Abort(1)
        os._exit(1)        # MPI_Abort of the mpich wheel returns to the caller (measured)

    def _fail(self, exc, where):
        msg = f"{where}: {type(exc).__name__}: {exc}"
        if self.size > 1:
            msg = f"rank {self.comm.Get_rank()}: {msg}"
        log.error("gapcalc: %s", msg)
        return msg

    # ------------------------------------------------------------------ the callback
    def _build_pairs(self, X, nlocal, spec):
        self.x_ref = np.array(X)
        first, index, vectors = cluster_pairs(self.x_ref, nlocal, self.cutoff + self.skin)
        self.env = Environment.from_arrays(first, index, vectors, spec)
        self.counts["rebuilds"] += 1

    def _callback(self, caller, ntimestep, nlocal, tag, x, f):
        t_start = time.perf_counter()
        lmp = self.lmp
        T = self.timers
        self.counts["calls"] += 1
        failure = None
        if self.error is not None:             # a previous call failed: keep stopping
            f[:] = 0.0
            lmp.force_timeout()
            return
        # -- what LAMMPS holds now (local) ----------------------------------------
        t0 = time.perf_counter()
        nghost = lmp.extract_setting("nghost")
        nall = nlocal + nghost
        X = lmp.numpy.extract_atom("x", nelem=nall, dim=3)
        tags = lmp.numpy.extract_atom("id", nelem=nall)
        reneighboured = lmp.extract_setting("neigh_ago") == 0
        changed = (nlocal != self._nlocal or self._tags is None
                   or len(tags) != len(self._tags) or not np.array_equal(tags, self._tags))
        t1 = time.perf_counter()
        T["lammps"] += t1 - t0
        # -- plan the ghost return (collective) -----------------------------------
        if self.comm is not None and not reneighboured:
            from mpi4py import MPI
            changed = self.comm.allreduce(changed, op=MPI.LOR)
        replan = reneighboured or changed
        if replan:
            try:
                self.counts["arrived"] += self.ghosts.plan(tags, nlocal)
                self._plan_ok = True
            except Exception as exc:           # raised on every rank alike
                failure = self._fail(exc, f"step {ntimestep}, ghost plan")
                self._plan_ok = False
            self._tags = np.array(tags)
            self._nlocal = nlocal
            self.counts["reneighbour"] += int(reneighboured)
        t2 = time.perf_counter()
        T["plan"] += t2 - t1
        # -- pairs, model, forces (local) -----------------------------------------
        F = np.zeros((nall, 3))
        W = np.zeros((3, 3))
        eps = np.zeros(nlocal)
        t = None
        t3 = t4 = t5 = t2
        if failure is None:
            try:
                if replan:
                    types = lmp.numpy.extract_atom("type", nelem=nall)
                    self._build_pairs(X, nlocal, self.type_species[types])
                elif max_displacement(X, self.x_ref) > 0.5 * self.skin:
                    self._build_pairs(X, nlocal, self.env.spec)
                    self.counts["safety_rebuilds"] += 1
                env = self.env
                r2min = update_pair_vectors(X, env.first, env.index, env.vectors)
                if r2min < self.min_distance ** 2:
                    self._too_close(ntimestep, tags, r2min)
                t3 = time.perf_counter()
                if nlocal:
                    eps, t = self.potential.local_energies(env, gradients=True)
                else:
                    t = np.zeros((0, 3))
                t4 = time.perf_counter()
                F, W = forces_and_virial(env, t, nall)
                t5 = time.perf_counter()
            except Exception as exc:
                failure = self._fail(exc, f"step {ntimestep}")
                F = np.zeros((nall, 3))
                W = np.zeros((3, 3))
                eps = np.zeros(nlocal)
                t = None
        T["pairs"] += t3 - t2
        T["model"] += t4 - t3
        T["forces"] += t5 - t4
        wait = 0.0
        if self.sync_timing and self.comm is not None:   # measurements: waits apart
            self.comm.Barrier()
            t5b = time.perf_counter()
            wait = t5b - t5
            T["wait"] += wait
            t5 = t5b
        # -- ghost forces to owners (collective) ----------------------------------
        if self._plan_ok:
            F_owned = self.ghosts.fold(F)
        else:                                   # the plan failed, on every rank alike
            F_owned = F[:nlocal]
        t6 = time.perf_counter()
        T["reverse"] += t6 - t5
        # -- totals over ranks (collective) ---------------------------------------
        W = 0.5 * (W + W.T)
        local = np.empty(8)
        local[0] = failure is not None
        local[1] = eps.sum()
        for k, (a, b) in enumerate(VIRIAL_ORDER):
            local[2 + k] = -W[a, b]
        if self.comm is not None:
            from mpi4py import MPI
            total = np.empty(8)
            self.comm.Allreduce(local, total, op=MPI.SUM)
        else:
            total = local
        if total[0]:
            if failure is None:
                failure = "the gapcalc callback failed on another rank (see its message)"
            self.error = failure
            if self.abort_on_error:
                self._abort()
            f[:] = 0.0
            lmp.force_timeout()
            T["callback"] += time.perf_counter() - t_start
            return
        f[:] = F_owned
        lmp.fix_external_set_energy_global(self.fix_id, float(total[1]))
        lmp.fix_external_set_virial_global(self.fix_id, total[2:].tolist())
        t7 = time.perf_counter()
        T["reduce"] += t7 - t6
        # -- per-atom energies and virials, when LAMMPS asks ----------------------
        if lmp.extract_global("eflag_atom") == ntimestep:
            lmp.numpy.fix_external_set_energy_peratom(self.fix_id, np.ascontiguousarray(eps))
            self.counts["peratom_energy"] += 1
        if lmp.extract_global("vflag_atom") == ntimestep:
            env = self.env
            V = per_atom_virials(env.first, env.index, env.vectors, t, nall)
            V_owned = self.ghosts.fold(V)
            lmp.numpy.fix_external_set_virial_peratom(self.fix_id,
                                                      np.ascontiguousarray(V_owned))
            self.counts["peratom_virial"] += 1
        t8 = time.perf_counter()
        T["peratom"] += t8 - t7
        T["callback"] += t8 - t_start
        if self.sync_timing:
            self.samples.append((t_start, t4 - t3, wait, t8 - t_start))

    def _too_close(self, step, tags, r2min):
        env = self.env
        r2 = (env.vectors ** 2).sum(axis=1)
        k = int(np.argmin(r2))
        i = int(np.searchsorted(env.first, k, side="right") - 1)
        raise GapcalcLammpsError(
            f"atoms {int(tags[i])} and {int(tags[env.index[k]])} are {np.sqrt(r2[k]):.3f} Å "
            f"apart, closer than the model's minimum distance {self.min_distance} Å")


def attach(lmp, model, elements, skin=None, fix_id="gapcalc", reverse="alltoallv",
           min_distance=None) -> LammpsCoupling:
    """Make a gapcalc model the potential of a LAMMPS instance driven from Python.

    Parameters
    ----------
    lmp : ``lammps.lammps`` instance with ``units metal`` and its box defined (create mpi4py
        before importing lammps; under MPI every rank calls this).
    model : model file path, shipped potential name ("Cu"), fitted SparseGPR or Potential.
    elements : element of every LAMMPS atom type, in type order (as ``pair_coeff * * Cu Ni``).
    skin : the neighbour skin given to LAMMPS (``neighbor SKIN bin``; LAMMPS' metal default
        2.0 Å when None). Results never depend on it: a smaller value than LAMMPS' only
        makes gapcalc rebuild its pair list more often, a larger one adds unused pairs.
    fix_id : ID of the ``fix external`` that carries the potential. Fixes that modify
        forces in post_force (setforce, aveforce, rigid, shake, ...) must be defined after
        this call.
    reverse : "alltoallv" (default) or "allreduce": how ghost forces return to owners.
    min_distance : smallest interatomic distance accepted (Å); None = the model's.

    Replaces any pair style by ``pair_style zero <cutoff>`` (which only sets LAMMPS' ghost
    cutoff to the model's cutoff + skin). Returns the :class:`LammpsCoupling`; call its
    ``check()`` after each run to raise an error that stopped it.
    """
    return LammpsCoupling(lmp, model, elements, skin=skin, fix_id=fix_id, reverse=reverse,
                          min_distance=min_distance)
