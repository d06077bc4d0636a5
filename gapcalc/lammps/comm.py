"""Return what lands on LAMMPS ghost atoms (forces, per-atom virials) to their owners.

``fix external`` runs after LAMMPS' own reverse communication, so the coupling has to do
it: a ghost is a copy (possibly a periodic image) of an atom owned by this rank or by
another one, known by its tag (atom ID). :class:`GhostReturn` is planned once per LAMMPS
re-neighbouring from the tags of the owned and ghost atoms and then used every step:

* ghosts that are images of this rank's own atoms are added locally (no MPI);
* the others are sent to their owners, grouped by owning rank, with one ``Alltoallv``
  (``mode="alltoallv"``, the default). The owners are found when planning through a
  distributed directory: rank ``tag % P`` learns who owns ``tag``. This works for any
  decomposition (brick, tiled, load-balanced) and costs O(ghosts) per step;
* ``mode="allreduce"`` sums a global (max_tag+1, w) array over all ranks instead: simpler,
  but O(N_total) memory and traffic per rank and step (kept for measurements).

mpi4py is imported lazily; with one rank no MPI call is made.
"""
from __future__ import annotations

import numpy as np

from ._kernels import add_rows, gather_rows, scatter_add_rows

MODES = ("alltoallv", "allreduce")


def _alltoallv(comm, sendbuf, sendcounts, recvcounts=None):
    """Exchange a 1-d ``sendbuf`` ordered by destination rank; returns (recv, recvcounts)."""
    P = comm.Get_size()
    sendcounts = np.ascontiguousarray(sendcounts, dtype=np.int64)
    if recvcounts is None:
        recvcounts = np.empty(P, dtype=np.int64)
        comm.Alltoall(sendcounts, recvcounts)
    sdispl = np.zeros(P, dtype=np.int64)
    rdispl = np.zeros(P, dtype=np.int64)
    np.cumsum(sendcounts[:-1], out=sdispl[1:])
    np.cumsum(recvcounts[:-1], out=rdispl[1:])
    recv = np.empty(int(recvcounts.sum()), dtype=sendbuf.dtype)
    comm.Alltoallv([np.ascontiguousarray(sendbuf), (sendcounts.astype(np.int32),
                                                    sdispl.astype(np.int32))],
                   [recv, (recvcounts.astype(np.int32), rdispl.astype(np.int32))])
    return recv, recvcounts


class GhostReturn:
    """Adds rows of per-atom arrays held by ghost atoms onto the owners' rows.

    Parameters
    ----------
    comm : mpi4py communicator of the LAMMPS instance (None or size 1: serial).
    mode : "alltoallv" (default) or "allreduce", see the module docstring.
    """

    def __init__(self, comm=None, mode: str = "alltoallv"):
        if mode not in MODES:
            raise ValueError(f"unknown reverse-communication mode {mode!r}; use one of {MODES}")
        self.comm = comm
        self.size = 1 if comm is None else comm.Get_size()
        self.mode = mode
        self.nlocal = 0
        self.n_remote = 0          # ghost rows sent to other ranks per fold
        self.n_received = 0        # rows received from other ranks per fold
        self.owned_tags = np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------------------ planning
    def plan(self, tags, nlocal: int):
        """Prepare the folds for this set of owned (0..nlocal-1) and ghost atoms.

        tags : (n_all,) atom IDs (owned first). Collective over ``comm`` when P > 1.
        Returns the number of owned atoms that were not owned at the previous plan
        (atoms that arrived from other ranks; 0 with one rank).
        """
        tags = np.asarray(tags, dtype=np.int64)
        owned = tags[:nlocal]
        ghosts = tags[nlocal:]
        arrived = 0
        if self.size > 1 and len(self.owned_tags):
            arrived = int(len(owned) - np.isin(owned, self.owned_tags,
                                               assume_unique=True).sum())
        self.nlocal = nlocal
        self.owned_tags = owned.copy()
        order = np.argsort(owned, kind="stable")
        sorted_owned = owned[order]
        pos = np.searchsorted(sorted_owned, ghosts)
        pos_c = np.minimum(pos, max(len(owned) - 1, 0))
        local = (pos < len(owned)) & (sorted_owned[pos_c] == ghosts) if len(owned) else \
            np.zeros(len(ghosts), dtype=bool)
        self.local_ghost_rows = (nlocal + np.flatnonzero(local)).astype(np.int64)
        self.local_owner_rows = order[pos_c[local]].astype(np.int64)
        remote = np.flatnonzero(~local)
        if self.size == 1:
            if len(remote):
                raise RuntimeError(
                    f"{len(remote)} ghost atoms have tags that no owned atom carries "
                    f"(e.g. {ghosts[remote[:3]].tolist()}): atom IDs must be unique and "
                    "non-zero (atom_modify id yes)")
            self.n_remote = self.n_received = 0
            return arrived
        if self.mode == "allreduce":
            self.remote_rows = (nlocal + remote).astype(np.int64)
            self.remote_tags = ghosts[remote]
            self.max_tag = int(self.comm.allreduce(int(tags.max()) if len(tags) else 0,
                                                   op=_mpi().MAX))
            self.n_remote = len(remote)
            return arrived
        self._plan_alltoallv(owned, order, sorted_owned, ghosts, remote, nlocal)
        return arrived

    def _plan_alltoallv(self, owned, order, sorted_owned, ghosts, remote, nlocal):
        comm, P = self.comm, self.size
        # 1. every owned tag is registered with its directory rank tag % P
        d = owned % P
        o = np.argsort(d, kind="stable")
        dir_tags, dir_counts = _alltoallv(comm, owned[o], np.bincount(d, minlength=P))
        dir_owner = np.repeat(np.arange(P, dtype=np.int64), dir_counts)
        s = np.argsort(dir_tags)
        dir_tags, dir_owner = dir_tags[s], dir_owner[s]
        # 2. the directory tells who owns each remote ghost tag (each tag asked once)
        rtags, inverse = np.unique(ghosts[remote], return_inverse=True)
        d = rtags % P
        o = np.argsort(d, kind="stable")
        qcounts = np.bincount(d, minlength=P)
        qtags, qrc = _alltoallv(comm, rtags[o], qcounts)
        at = np.searchsorted(dir_tags, qtags)
        at_c = np.minimum(at, max(len(dir_tags) - 1, 0))
        ok = (at < len(dir_tags)) & (dir_tags[at_c] == qtags) if len(dir_tags) else \
            np.zeros(len(qtags), dtype=bool)
        answer = np.where(ok, dir_owner[at_c] if len(dir_tags) else -1, -1).astype(np.int64)
        back, _ = _alltoallv(comm, answer, qrc, recvcounts=qcounts)
        owner_of_unique = np.empty(len(rtags), dtype=np.int64)
        owner_of_unique[o] = back
        ghost_owner = owner_of_unique[inverse]
        bad = ghost_owner < 0
        # (collective decision so that no rank is left waiting in a later call)
        nbad = comm.allreduce(int(bad.sum()))
        if nbad:
            raise RuntimeError(f"{nbad} ghost atoms carry tags that no rank owns: atom IDs "
                               "must be unique and non-zero (atom_modify id yes)")
        # 3. ghosts grouped by owner; owners learn which of their atoms each one is
        g = np.argsort(ghost_owner, kind="stable")
        self.send_rows = (nlocal + remote[g]).astype(np.int64)
        self.send_counts = np.bincount(ghost_owner, minlength=P).astype(np.int64)
        got, self.recv_counts = _alltoallv(comm, ghosts[remote[g]], self.send_counts)
        at = np.searchsorted(sorted_owned, got)
        self.recv_rows = order[np.minimum(at, max(len(owned) - 1, 0))].astype(np.int64)
        if len(got) and not np.array_equal(owned[self.recv_rows], got):
            raise RuntimeError("ghost-owner look-up failed: an owner does not own the tag "
                               "it was sent")
        self.n_remote = len(self.send_rows)
        self.n_received = len(got)

    # ------------------------------------------------------------------ every step
    def fold(self, A: np.ndarray) -> np.ndarray:
        """Add every ghost row of ``A`` (n_all, w) onto its owner's row; returns
        ``A[:nlocal]`` (owned rows, now complete). Collective when P > 1."""
        nlocal = self.nlocal
        add_rows(A, self.local_owner_rows, A, self.local_ghost_rows)
        if self.size == 1:
            return A[:nlocal]
        w = A.shape[1]
        if self.mode == "allreduce":
            G = np.zeros((self.max_tag + 1, w))
            scatter_add_rows(G, self.remote_tags, gather_rows(A, self.remote_rows))
            self.comm.Allreduce(_mpi().IN_PLACE, G, op=_mpi().SUM)
            scatter_add_rows(A, np.arange(nlocal, dtype=np.int64),
                             gather_rows(G, self.owned_tags))
            return A[:nlocal]
        send = gather_rows(A, self.send_rows).ravel()
        recv, _ = _alltoallv(self.comm, send, self.send_counts * w,
                             recvcounts=self.recv_counts * w)
        scatter_add_rows(A, self.recv_rows, recv.reshape(-1, w))
        return A[:nlocal]


def _mpi():
    from mpi4py import MPI
    return MPI
