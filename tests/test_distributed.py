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
from gapcalc.chunks import FrameSource, candidates_chunk, merge_pools
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
