"""The Dask fit (gapcalc.distributed) on a 2-process LocalCluster equals the serial fit.

Data: 16 EMT Cu/Ni alloy frames (2x2x2 fcc, 32 atoms, ~35 % Ni, rattled and strained;
energies, forces, stresses) and one isolated Ni atom, written to extxyz so that the
workers read their own frame ranges and the serial fit reads the same numbers.
"""
import logging
import os
import signal
import sys

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read, write

from gapcalc import SOAP, SparseGPR
from gapcalc import sparsify
from gapcalc.chunks import (FrameSource, candidates_chunk, merge_pools, merge_top,
                            merge_triangles, payload_bytes)
from gapcalc.gpr import row_hashes
from gapcalc.solver import PackedTrapezoid, triangularise
from gapcalc.datasets import label
from gapcalc.targets import FrameError

distributed = pytest.importorskip("distributed")

from gapcalc.distributed import connect  # noqa: E402


def alloy_frames(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        at = bulk("Cu", "fcc", 3.6, cubic=True) * (2, 2, 2)
        at.numbers[rng.random(len(at)) < 0.35] = 28
        at.rattle(0.08, seed=int(rng.integers(1 << 30)))
        eps = rng.normal(scale=0.02, size=(3, 3))
        eps = 0.5 * (eps + eps.T)
        at.set_cell(at.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        out.append(label(at, EMT()))
    out.insert(3, label(Atoms("Ni", positions=[[0, 0, 0]]), EMT()))
    return out


@pytest.fixture(scope="module")
def alloy(tmp_path_factory):
    path = tmp_path_factory.mktemp("dask") / "alloy.xyz"
    write(path, alloy_frames(12))
    return path, read(path, ":")


@pytest.fixture(scope="module")
def client():
    with connect(workers=2) as c:
        yield c


def _model(**kw):
    args = dict(n_sparse=40, max_candidates=150, sigma_energy=0.002, sigma_force=0.05,
                sigma_virial=0.05)
    args.update(kw)
    return SparseGPR(SOAP(["Cu", "Ni"], cutoff=4.0, n_max=4, l_max=3), **args)


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(a)


def _row_signs_fixed(R):
    return R * np.sign(np.diag(R))[:, None]


def assert_same_model(a, b, tol=1e-10):
    for ta, tb in zip(a.terms_, b.terms_):
        np.testing.assert_array_equal(ta.X, tb.X)           # identical sparse points
        np.testing.assert_array_equal(ta.X_species, tb.X_species)
    assert a.e0_ == b.e0_
    assert _rel(a.alpha_, b.alpha_) < tol
    assert _rel(_row_signs_fixed(a.R_), _row_signs_fixed(b.R_)) < tol
    for key in ("n_frames", "n_isolated_atoms", "n_atoms", "rows", "n_sparse", "config_types"):
        assert a.training_summary_[key] == b.training_summary_[key]


@pytest.fixture(scope="module")
def serial(alloy):
    return _model(two_body="distance").fit(alloy[1])


def test_pool_of_parts_is_serial_pool(alloy):
    """Chunk pools with the advanced random stream merge into the serial reservoir."""
    frames = [f for f in alloy[1] if len(f) > 1][:6]
    m = _model(max_candidates=70)
    m.species_ = m._make_terms(m.descriptor.species)[0].descriptor.species
    m.terms_ = m._make_terms(m.descriptor.species)
    rng = np.random.default_rng(m.seed)
    whole = m._empty_candidates()
    for at in frames:
        m._add_candidates(whole, at, rng)
    src = FrameSource(frames)
    chunks = src.chunks(chunk_frames=2)
    parts = [candidates_chunk(c, src.load(c), m, np.zeros(c.count, bool), 32 * c.start)
             for c in chunks]
    merged = merge_pools(merge_pools(parts[0], parts[1]), parts[2])
    for row_a, row_b in zip(whole.items, merged.items):
        for (ka, oa, Pa), (kb, ob, Pb) in zip(row_a, row_b):
            ia, ib = np.argsort(ka), np.argsort(kb)
            np.testing.assert_array_equal(ka[ia], kb[ib])
            np.testing.assert_array_equal(oa[ia], ob[ib])
            np.testing.assert_array_equal(Pa[ia], Pb[ib])
    assert merged.next_draw == whole.next_draw


def test_distributed_fit_equals_serial(alloy, serial, client):
    """Files read by frame range on 2 workers; small chunks; reservoir overflowing."""
    dist = _model(two_body="distance").fit(str(alloy[0]), client=client, chunk_frames=3)
    assert dist.training_summary_["dask"]["chunks"] == 5          # 13 frames, 3 per chunk
    assert serial.training_summary_["n_isolated_atoms"] == 1
    assert_same_model(serial, dist)
    # in-memory frames, default chunking
    mem = _model(two_body="distance").fit(alloy[1], client=client)
    assert_same_model(serial, mem)


def test_given_sparse_indices_need_the_serial_fit(alloy, client):
    with pytest.raises(ValueError, match="serial fit"):
        _model(sparse_indices=[0, 1, 2]).fit(alloy[1], client=client)


def test_update_with_workers_equals_serial(alloy, client):
    frames = [f for f in alloy[1] if len(f) > 1]
    a = _model().fit(frames[:8])
    b = _model().fit(frames[:8])
    a.update(frames[8:])
    b.update(frames[8:], client=client, chunk_frames=2)
    assert_same_model(a, b)
    assert b.training_summary_["incremental_updates"] == 1


def test_cv_with_workers_equals_serial(alloy, client):
    from gapcalc.tuning import cross_validate
    kw = dict(k=3, sigma_force=[0.03, 0.1])
    a = cross_validate(_model(), alloy[1], **kw)
    b = cross_validate(_model(), str(alloy[0]), client=client, chunk_frames=4, **kw)
    for ra, rb in zip(a["results"], b["results"]):
        for key in ("energy_rmse", "force_rmse", "stress_rmse"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-9)
    assert a["best"]["sigma_force"] == b["best"]["sigma_force"]
    assert _rel(a["model"].alpha_, b["model"].alpha_) < 1e-9


def test_learning_curve_with_workers_equals_serial(alloy, client):
    from gapcalc.tuning import learning_curve
    frames = [f for f in alloy[1] if len(f) > 1]
    a = learning_curve(_model(n_sparse=20), frames[:6], frames[9:11], [2, 6])
    b = learning_curve(_model(n_sparse=20), frames[:6], frames[9:11], [2, 6], client=client)
    for ra, rb in zip(a, b):
        assert ra["n_train"] == rb["n_train"]
        assert ra["force_rmse"] == pytest.approx(rb["force_rmse"], rel=1e-8)


@pytest.fixture(scope="module")
def repeats(alloy):
    """The alloy frames and a perfect Cu and Ni crystal (32 identical environments each)."""
    frames = list(alloy[1])
    frames.insert(5, label(bulk("Cu", "fcc", 3.6, cubic=True) * (2, 2, 2), EMT()))
    frames.insert(9, label(bulk("Ni", "fcc", 3.52, cubic=True) * (2, 2, 2), EMT()))
    return frames


def _serial_pool(m, frames):
    """The candidate pool of a serial fit of ``frames`` (isolated atoms left out)."""
    m.terms_ = m._make_terms(m.descriptor.species)
    m.species_ = m.terms_[0].descriptor.species
    rng = np.random.default_rng(m.seed)
    pool = m._empty_candidates()
    for at in frames:
        if len(at) > 1:
            m._add_candidates(pool, at, rng)
    return pool


@pytest.fixture(scope="module")
def serial_repeats(repeats):
    return _model(two_body="distance").fit(repeats)


def test_leverage_selection_equals_serial(repeats, serial_repeats, client):
    """candidates="leverage" (the default for CUR) gives the serial sparse points with the
    reservoir overflowing (cap 150 < environments of each species) and repeated
    environments in it (deduplicated as the serial selection does); so does "complete"."""
    pool = _serial_pool(_model(two_body="distance"), repeats)
    for s in range(2):
        keys, _, _ = pool.items[0][s]
        assert len(keys) == 150                                   # the cap is reached
        assert pool.unique_count(0, s) < len(keys)                # repeats in the reservoir
    ser = serial_repeats
    dist = _model(two_body="distance").fit(repeats, client=client, chunk_frames=3)
    assert dist.training_summary_["dask"]["candidates"] == "leverage"
    assert_same_model(ser, dist)
    full = _model(two_body="distance").fit(repeats, client=client, chunk_frames=3,
                                           candidates="complete")
    assert full.training_summary_["dask"]["candidates"] == "complete"
    assert_same_model(ser, full)
    tr = dist.training_summary_["dask"]["sparse_traffic"]
    assert tr["to_client"] > 0 and tr["between_workers"] > 0


@pytest.mark.parametrize("method", ["random", "fps"])
def test_leverage_protocol_other_methods(repeats, client, method):
    """random: indices from the pool size alone; fps: the distinct candidates' rows."""
    ser = _model(sparse_method=method).fit(repeats)
    dist = _model(sparse_method=method).fit(repeats, client=client, chunk_frames=4,
                                            candidates="leverage")
    assert_same_model(ser, dist)


def test_leverage_fallback_when_rounding_could_decide(repeats, serial_repeats, client,
                                                     monkeypatch, caplog):
    """When the rank cut or the keys at the cut are within the rounding bound, the
    distinct candidates' rows are fetched and CUR runs as in the serial fit."""
    ser = serial_repeats
    monkeypatch.setattr(sparsify, "CUR_SAFETY", 1e30)       # client side: rank uncertain
    with caplog.at_level(logging.INFO, logger="gapcalc.distributed"):
        a = _model(two_body="distance").fit(repeats, client=client, chunk_frames=4)
    assert caplog.text.count("within rounding of the rank cut") == 2
    assert_same_model(ser, a)
    monkeypatch.undo()
    top = sparsify.top_certain
    monkeypatch.setattr(sparsify, "top_certain", lambda *a: (top(*a)[0], False))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gapcalc.distributed"):
        b = _model(two_body="distance").fit(repeats, client=client, chunk_frames=4)
    assert caplog.text.count("two keys at the cut are within rounding") == 2
    assert_same_model(ser, b)


def test_cur_in_parts_equals_cur():
    """TSQR basis + per-part keys + merged tops = sparsify.cur, the keys within the bound."""
    rng = np.random.default_rng(3)
    D, N, M = 24, 400, 60
    B = rng.normal(size=(N, 18)) @ rng.normal(size=(18, D))          # rank 18 ...
    P = B + 1e-9 * rng.normal(size=(N, D))                           # ... plus tiny directions
    P /= np.linalg.norm(P, axis=1, keepdims=True)
    parts = np.array_split(np.arange(N), 5)
    tri = [{"p": (triangularise(np.asfortranarray(P[i]), D)[:min(len(i), D)], len(i))}
           for i in parts]
    while len(tri) > 1:
        tri = [merge_triangles(tri[i], tri[i + 1]) if i + 1 < len(tri) else tri[i]
               for i in range(0, len(tri), 2)]
    assert isinstance(tri[0]["p"][0], PackedTrapezoid)               # half the bytes travel
    _, s, Vt = np.linalg.svd(tri[0]["p"][0].array(), full_matrices=False)
    k, certain = sparsify.cur_rank(s, M)
    _, s_ser, Vt_ser = np.linalg.svd(P, full_matrices=False)
    assert certain and k == sparsify.cur_rank(s_ser, M)[0] == 24
    u = np.random.default_rng(0).random(N)                          # cur's stream, seed 0
    # the serial keys (sparsify.cur's arithmetic)
    U = (P @ Vt_ser[:k].T) / s_ser[:k]
    lev = np.einsum("ij,ij->i", U, U) / k
    ser_keys = np.log(u) / np.maximum(lev / lev.sum(), 1e-300)
    tops = []
    for i in parts:
        keys, err = sparsify.cur_keys(P[i], u[i], s, Vt[:k], k)
        assert np.all(np.abs(keys - ser_keys[i]) <= err)
        assert np.max(err / np.abs(keys)) < 1e-4
        tops.append({"p": _top_of(i, keys, err, M)})
    top = tops[0]
    for t in tops[1:]:
        top = merge_top(top, t)
    draws, keys, err, rest, n = top["p"]
    sel, certain = sparsify.top_certain(keys, err, n, rest)
    assert certain
    np.testing.assert_array_equal(np.sort(draws[sel]), sparsify.cur(P, M, seed=0))
    # two equal keys at the cut are never "certain"
    keys = np.array([-1.0, -2.0, -2.0, -3.0])
    assert not sparsify.top_certain(keys, np.zeros(4), 2)[1]
    assert sparsify.top_certain(keys, np.zeros(4), 1)[1]
    assert not sparsify.top_certain(keys, np.full(4, 0.6), 1)[1]


def _top_of(draws, keys, err, n):
    from gapcalc.chunks import _top
    return _top((np.asarray(draws), keys, err, -np.inf, n))


def test_row_hashes_match_the_selection_dedupe():
    P = np.array([[0.0, 0.5, 1.0], [-0.0, 0.5, 1.0], [1e-12, 0.5, 1.0 + 2e-12],
                  [1e-8, 0.5, 1.0], [-1e-12, 0.5, 1.0]])
    h = row_hashes(P)
    assert h[0] == h[1] == h[2] == h[4] != h[3]         # equal to 10 decimals, -0 = 0
    _, first = np.unique(np.round(P, 10), axis=0, return_index=True)
    _, first_h = np.unique(h, return_index=True)
    np.testing.assert_array_equal(np.sort(first), np.sort(first_h))


class _KillOnProgress(logging.Handler):
    """Kills one worker process at the first design-rows progress line (tasks pending)."""

    def __init__(self, client):
        super().__init__()
        self.client = client
        self.killed = None

    def emit(self, record):
        msg = record.getMessage()
        if self.killed is None and msg.startswith("design rows:"):
            done, total = (int(x) for x in msg.split()[2].rstrip(",").split("/"))
            if done < total:
                busy = [w for w, keys in self.client.processing().items() if keys]
                busy = busy or sorted(self.client.scheduler_info()["workers"])
                pids = self.client.run(os.getpid, workers=busy[:1])
                (addr, pid), = pids.items()
                os.kill(pid, signal.SIGKILL)
                self.killed = (addr, done, total)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_worker_killed_mid_fit_gives_identical_model(alloy, serial, client):
    ref = _model(two_body="distance").fit(str(alloy[0]), client=client, chunk_frames=1)
    handler = _KillOnProgress(client)
    logger = logging.getLogger("gapcalc.distributed")
    old = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        got = _model(two_body="distance").fit(str(alloy[0]), client=client, chunk_frames=1,
                                              progress_every=0.0)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    assert handler.killed is not None, "no worker was killed"
    assert handler.killed[1] < handler.killed[2]
    # the same bits as an undisturbed distributed fit, and the serial model to rounding
    np.testing.assert_array_equal(ref.alpha_, got.alpha_)
    np.testing.assert_array_equal(ref.R_, got.R_)
    assert_same_model(serial, got)
    client.wait_for_workers(2, timeout=60)


def test_bad_frame_names_file_and_frame(alloy, client, tmp_path):
    frames = read(alloy[0], ":")
    bad = frames[9].copy()
    bad.positions[5] = bad.positions[4] + [0.1, 0.0, 0.0]     # atoms 0.1 Å apart
    bad.calc = frames[9].calc
    frames[9] = bad
    frames[12].calc.results["forces"][2, 1] = np.nan
    path = tmp_path / "bad.xyz"
    write(path, frames[5:])          # frame 9 of the set is frame 4 of this file
    with pytest.raises(FrameError, match=r"bad\.xyz: frame 4: atoms (4 and 5|5 and 4)"):
        _model().fit([str(alloy[0]), str(path)], client=client, chunk_frames=2)


def test_cli_fit_with_scheduler(alloy, client, tmp_path):
    from gapcalc import load_model_file
    from gapcalc.cli import main
    out = tmp_path / "m.npz"
    args = ["fit", str(alloy[0]), "-o", str(out), "--cutoff", "4.0", "--n-max", "4",
            "--l-max", "3", "--n-sparse", "40", "--sigma-force", "0.05", "--sigma-virial",
            "0.05", "--scheduler", client.scheduler.address]
    assert main(args) in (0, None)
    m = load_model_file(out)
    ref = SparseGPR(SOAP(["Cu", "Ni"], cutoff=4.0, n_max=4, l_max=3), n_sparse=40,
                    sigma_force=0.05, sigma_virial=0.05).fit(alloy[1])
    assert_same_model(ref, m)
    assert m.training_summary_["dask"]["candidates"] == "leverage"
    assert main(args + ["--candidates", "complete"]) in (0, None)
    m = load_model_file(out)
    assert m.training_summary_["dask"]["candidates"] == "complete"
    assert_same_model(ref, m)


def test_packed_trapezoid_round_trip_and_merge():
    """Chunk triangles travel packed (entries on and above the diagonal only): exact
    round trip, and merging packed or plain triangles gives the same triangle."""
    rng = np.random.default_rng(5)
    for r, n in [(0, 4), (1, 4), (3, 7), (7, 7)]:
        R = np.triu(rng.normal(size=(r, n)))
        p = PackedTrapezoid(R)
        np.testing.assert_array_equal(p.array(), R)
        assert p.values.size == r * n - r * (r - 1) // 2
    with pytest.raises(ValueError, match="rows"):
        PackedTrapezoid(np.zeros((5, 4)))
    n = 60
    A, B = rng.normal(size=(80, n)), rng.normal(size=(30, n))
    Ra = np.linalg.qr(A, mode="r")
    Rb = np.linalg.qr(B, mode="r")[:30]
    plain = merge_triangles({"f": (Ra, 80)}, {"f": (Rb, 30)})
    packed = merge_triangles({"f": (PackedTrapezoid(Ra), 80)}, {"f": (PackedTrapezoid(Rb), 30)})
    R, rows = packed["f"]
    assert rows == 110 and isinstance(R, PackedTrapezoid)
    np.testing.assert_array_equal(plain["f"][0].array(), R.array())
    G = np.vstack([A, B])
    np.testing.assert_allclose(R.array().T @ R.array(), G.T @ G, atol=1e-10)
    assert payload_bytes(R) <= 8 * (n * (n + 1) // 2 + 2)             # half of n², not n²


def test_workers_without_dask_is_a_clear_error(alloy, tmp_path, monkeypatch, capsys):
    from gapcalc.cli import main
    monkeypatch.setitem(sys.modules, "distributed", None)
    rc = main(["fit", str(alloy[0]), "-o", str(tmp_path / "m.npz"), "--workers", "2"])
    assert rc == 2
    assert "gapcalc[dask]" in capsys.readouterr().err


def test_multiscale_feature_selection_and_coordinate_cv_with_workers(alloy, client):
    """Issue 15's options on the cluster: two SOAP terms (one radially scaled), feature
    selection (its frames read on the client), coordinate-descent CV; equal to serial."""
    from gapcalc.tuning import cross_validate

    def make():
        sp = ["Cu", "Ni"]
        return SparseGPR([SOAP(sp, cutoff=3.0, n_max=3, l_max=2),
                          SOAP(sp, cutoff=4.0, n_max=4, l_max=3,
                               radial_scaling={"type": "inverse_power", "r0": 2.5, "m": 4})],
                         n_sparse=[15, 30], delta=[0.3, 1.0], n_features=[None, 0.5],
                         max_candidates=150, sigma_energy=0.002, sigma_force=0.05,
                         sigma_virial=0.05)
    a = make().fit(alloy[1])
    b = make().fit(str(alloy[0]), client=client, chunk_frames=3)
    assert b.terms_[1].descriptor.n_features == round(0.5 * b.terms_[1].descriptor.n_features_full)
    np.testing.assert_array_equal(a.terms_[1].descriptor.selected, b.terms_[1].descriptor.selected)
    assert_same_model(a, b)
    kw = dict(k=3, sigma_force=[0.02, 0.05, 0.1], delta=[0.5, 1.0], search="coordinate",
              refit=False)
    ca = cross_validate(make(), alloy[1], **kw)
    cb = cross_validate(make(), str(alloy[0]), client=client, chunk_frames=4, **kw)
    assert len(ca["results"]) == len(cb["results"]) <= 6
    for ra, rb in zip(ca["results"], cb["results"]):
        assert (ra["sigma_force"], ra["delta"]) == (rb["sigma_force"], rb["delta"])
        assert ra["force_rmse"] == pytest.approx(rb["force_rmse"], rel=1e-9)
