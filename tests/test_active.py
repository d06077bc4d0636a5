"""On-the-fly learning: policy, checkpoints, resume after kill -9, failing oracles."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read

from gapcalc import active

SMALL = dict(check_interval=1, min_interval=5, n_sparse_initial=20, n_sparse_add=5,
             checkpoint_interval=10)


def cu32():
    return bulk("Cu", "fcc", 3.61, cubic=True) * (2, 2, 2)


def test_learn_calls_oracle_and_checkpoints(tmp_path):
    otf = active.learn(cu32(), EMT(), tmp_path / "run", oracle_spec="emt", steps=40,
                       threshold=0.05, temperature=600, log_interval=20, **SMALL)
    assert 1 <= otf.n_calls_ <= 8
    assert otf.history_[0]["reason"] == "empty model"
    frames = read(tmp_path / "run" / "train.xyz", ":")
    assert len(frames) == otf.n_calls_
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["step"] == 40 and state["calls"] == otf.n_calls_
    assert state["threshold_ev"] == 0.05 and state["rng_state"]["bit_generator"] == "PCG64"
    md = read(tmp_path / "run" / "md_state.xyz")
    assert np.any(md.get_momenta())       # dynamics state kept
    # each uncertain call reports its prediction error against the oracle
    assert all("force_mae_vs_oracle" in h for h in otf.history_[1:])


def test_resume_continues_without_repeating(tmp_path):
    run = tmp_path / "run"
    first = active.learn(cu32(), EMT(), run, oracle_spec="emt", steps=30, threshold=0.05,
                         temperature=600, **SMALL)
    n_calls = first.n_calls_
    again = active.resume(run, steps=60)
    assert again.current_step() == 60
    frames = read(run / "train.xyz", ":")
    assert len(frames) == again.n_calls_ >= n_calls
    steps = [f.info["otf_step"] for f in frames]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)   # no call repeated
    with pytest.raises(FileExistsError):
        active.learn(cu32(), EMT(), run, steps=5, threshold=0.05)


def test_threshold_in_sigma_units(tmp_path):
    model = active.default_model([29], sigma_force=0.04)
    otf = active.OnTheFly(model, EMT(), threshold_sigma=1.5)
    assert otf.threshold_ev == pytest.approx(0.06)
    with pytest.raises(ValueError, match="exactly one"):
        active.OnTheFly(model, EMT(), threshold=0.1, threshold_sigma=1.0)


class FlakyEMT(EMT):
    """EMT that fails on its second call."""
    def __init__(self):
        super().__init__()
        self.n = 0

    def calculate(self, *args, **kwargs):
        if not self.results:
            self.n += 1
        if self.n == 2:
            raise RuntimeError("SCF did not converge")
        super().calculate(*args, **kwargs)


def test_failing_oracle_skip_and_stop(tmp_path):
    otf = active.learn(cu32(), FlakyEMT(), tmp_path / "skip", steps=30, threshold=0.01,
                       temperature=600, on_oracle_error="skip", **SMALL)
    assert any(h.get("reason") == "oracle failed" for h in otf.history_)
    assert list((tmp_path / "skip" / "failed").glob("step_*.xyz"))
    with pytest.raises(active.OracleError, match="SCF"):
        active.learn(cu32(), FlakyEMT(), tmp_path / "stop", steps=30, threshold=0.01,
                     temperature=600, on_oracle_error="stop", **SMALL)
    assert (tmp_path / "stop" / "state.json").exists()
    assert len(read(tmp_path / "stop" / "train.xyz", ":")) == 1


@pytest.mark.slow
def test_kill_9_and_resume(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "gapcalc", "learn", "--steps", "150", "--temperature", "600",
           "--threshold", "0.05", "--check-interval", "5", "--min-interval", "5",
           "--n-sparse-initial", "20", "--n-sparse-add", "5", "--validate", "0",
           "--log-interval", "50", "-o", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline:     # wait for a checkpoint with at least two calls
        try:
            if json.loads((run / "state.json").read_text())["calls"] >= 2:
                break
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = read(run / "train.xyz", ":")
    out = subprocess.run([sys.executable, "-m", "gapcalc", "learn", "--resume", str(run),
                          "--validate", "0"], capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-2000:]
    after = read(run / "train.xyz", ":")
    for a, b in zip(before, after):       # no oracle result lost
        np.testing.assert_array_equal(a.get_forces(), b.get_forces())
    steps = [f.info["otf_step"] for f in after]
    assert len(set(steps)) == len(steps)   # no call repeated
    assert json.loads((run / "state.json").read_text())["step"] == 150


def test_active_learning_example(tmp_path):
    import importlib.util
    from pathlib import Path
    path = Path(__file__).parent.parent / "md_examples" / "active_learning.py"
    spec = importlib.util.spec_from_file_location("active_learning_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--steps", "20", "--no-validate", "--run-dir", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "model.npz").exists()
