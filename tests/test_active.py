"""On-the-fly learning: policy, checkpoints, resume after kill -9, failing oracles."""
import copy
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
    assert again.dyn.nsteps == 60
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
    assert mod.main(["--steps", "20", "--run-dir", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "model.npz").exists()
    # a run started from Python resumes (issue 16: it failed with KeyError 'temperature')
    assert mod.main(["--steps", "26", "--resume", "--run-dir", str(tmp_path / "r")]) == 0
    assert json.loads((tmp_path / "r" / "state.json").read_text())["step"] == 26


# ------------------------------------------------------------------ issue 16 / issue 14 §2
class CountingEMT(EMT):
    """EMT that counts every calculation it is asked for."""
    calls = 0

    def calculate(self, *args, **kwargs):
        type(self).calls += 1
        super().calculate(*args, **kwargs)


def _langevin_run(run, steps, seed=0, **kw):
    """A run started from Python as md_examples/active_learning.py does it."""
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    atoms = cu32()
    atoms.rattle(0.05, seed=seed)
    otf = active.OnTheFly(active.default_model([29]), EMT(), threshold=0.05, run_dir=run,
                          **{**SMALL, **kw})
    atoms.calc = otf
    MaxwellBoltzmannDistribution(atoms, temperature_K=600, rng=np.random.default_rng(1))
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=600, friction=0.01 / units.fs,
                   fixcm=False, rng=np.random.default_rng(0))
    otf.attach(dyn)
    dyn.run(steps)
    otf.checkpoint()
    otf.close()
    return otf


def test_resume_of_a_run_started_from_python(tmp_path):
    run = tmp_path / "run"
    first = _langevin_run(run, 12)
    state = json.loads((run / "state.json").read_text())
    assert state["dynamics"]["type"] == "Langevin"
    assert state["dynamics"]["temperature_K"] == pytest.approx(600)
    with pytest.raises(ValueError, match="oracle"):     # its oracle was a Python object
        active.resume(run, steps=20)
    with pytest.raises(ValueError, match="steps"):      # and it has no step total
        active.resume(run, oracle=EMT())
    again = active.resume(run, oracle=EMT(), steps=20)
    assert again.dyn.nsteps == 20 and again.n_calls_ >= first.n_calls_
    assert json.loads((run / "state.json").read_text())["step"] == 20


def test_counting_oracle_equals_learning_calls_and_no_hidden_validation(tmp_path, monkeypatch,
                                                                         capsys):
    """`--oracle module:factory` from the working directory; the count is the calls reported."""
    from ase.io import write
    from gapcalc.cli import main
    (tmp_path / "countingoracle.py").write_text(
        "from ase.calculators.emt import EMT\n"
        "class C(EMT):\n    calls = 0\n"
        "    def calculate(self, *a, **k):\n        type(self).calls += 1\n"
        "        super().calculate(*a, **k)\n"
        "def make():\n    return C()\n")
    write(tmp_path / "cu.xyz", cu32())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "countingoracle", raising=False)
    args = ["learn", "cu.xyz", "--oracle", "countingoracle:make", "--steps", "25",
            "--temperature", "600", "--threshold", "0.05", "--min-interval", "5",
            "--check-interval", "5", "--n-sparse-initial", "20", "--n-sparse-add", "5",
            "--trajectory-interval", "5", "-o", "run"]
    assert main(args) == 0
    out = capsys.readouterr().out
    counted = sys.modules["countingoracle"].C.calls
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert counted == state["calls"] >= 1          # no validation unless asked for
    assert f"{state['calls']} learning oracle calls" in out
    assert "why the oracle calls stopped" in out
    # resume: the CLI passes --oracle for a run whose spec it cannot rebuild otherwise
    assert main(["learn", "--resume", "run", "--steps", "30"]) == 0
    assert json.loads((tmp_path / "run" / "state.json").read_text())["step"] == 30
    assert sys.modules["countingoracle"].C.calls == json.loads(
        (tmp_path / "run" / "state.json").read_text())["calls"]


def test_cli_resume_flags(tmp_path, capsys):
    from gapcalc.cli import main
    run = tmp_path / "run"
    base = ["learn", "--steps", "15", "--temperature", "600", "--threshold", "0.05",
            "--min-interval", "5", "--check-interval", "5", "--n-sparse-initial", "20",
            "--n-sparse-add", "5", "--validate", "0", "-o", str(run)]
    assert main(base + ["cu_does_not_exist.xyz"]) == 2            # one clear line
    assert "no such file" in capsys.readouterr().err
    assert main(base) == 0
    assert main(base) == 2                                        # folder holds a run
    assert "--resume" in capsys.readouterr().err
    # --steps is the new total; --max-calls and --log-interval are honoured
    assert main(["learn", "--resume", str(run), "--steps", "25", "--max-calls", "7",
                 "--log-interval", "5"]) == 0
    state = json.loads((run / "state.json").read_text())
    assert state["step"] == 25 and state["max_calls"] == 7
    assert state["config"]["log_interval"] == 5 and state["config"]["steps"] == 25
    capsys.readouterr()
    for bad in (["--temperature", "300"], ["--threshold", "0.2"], ["-o", "x"],
                ["--validate", "3"], ["--steps", "5"], ["--oracle", "lj:sigma=2.3,epsilon=0.4"]):
        assert main(["learn", "--resume", str(run), *bad]) == 2, bad
        err = capsys.readouterr().err.strip()
        assert "error:" in err and len(err.splitlines()) == 1, err
    assert json.loads((run / "state.json").read_text())["step"] == 25


def test_cap_is_loud_and_stops_paying_for_checks(tmp_path, caplog):
    import logging
    caplog.set_level(logging.INFO, logger="gapcalc")
    otf = active.learn(cu32(), EMT(), tmp_path / "run", oracle_spec="emt", steps=60,
                       threshold=1e-4, temperature=600, max_calls=2, monitor_interval=0,
                       **SMALL)
    assert otf.n_calls_ == 2 and otf.status_ == "capped"
    cap_step = otf.history_[-1]["step"]
    assert all(step <= cap_step for step, _ in otf.checks_)       # no check after the cap
    assert "CALL CAP REACHED" in otf.stop_reason()
    assert any(r.levelname == "WARNING" and "CALL CAP" in r.getMessage() for r in caplog.records)
    # with monitoring: the fraction above threshold since the cap is stated
    otf = active.learn(cu32(), EMT(), tmp_path / "run2", oracle_spec="emt", steps=60,
                       threshold=1e-4, temperature=600, max_calls=2, monitor_interval=10,
                       **SMALL)
    n, up = otf.since_stop_
    assert n >= 3 and up == n
    assert f"{up} of {n} monitor checks since were above it (100 %)" in otf.stop_reason()


def test_converged_run_says_so(tmp_path):
    otf = active.learn(cu32(), EMT(), tmp_path / "run", oracle_spec="emt", steps=40,
                       threshold=5.0, temperature=600, converge_checks=3, monitor_interval=0,
                       **SMALL)
    assert otf.n_calls_ == 1 and otf.status_ == "converged"
    assert otf.stop_reason().startswith("converged at step")
    assert len(otf.checks_) == 3                   # nothing paid after convergence


def test_adaptive_schedule_spaces_checks_by_headroom():
    otf = active.OnTheFly(active.default_model([29]), EMT(), threshold=0.1, check_interval=100,
                          safety=2.0)
    assert otf._gap_after(0.05, 0.1) == 1           # drift unknown: check the next step
    otf.rates_ = [0.01]
    assert otf._gap_after(0.02, 0.1) == 100         # headroom 8 D ≥ safety·D: the maximum
    assert otf._gap_after(0.09, 0.1) == 25          # (0.01 / 0.02)² · 100
    assert otf._gap_after(0.0999, 0.1) == 1
    assert otf._gap_after(0.085, 0.1) == 56          # (0.015 / 0.02)² · 100 = 56.25
    fixed = active.OnTheFly(active.default_model([29]), EMT(), threshold=0.1, check_interval=7,
                            adaptive=False)
    assert fixed._gap_after(0.0999, 0.1) == 7


def test_adaptive_run_checks_less_than_every_step(tmp_path):
    kw = {**SMALL, "check_interval": 10}
    otf = active.learn(cu32(), EMT(), tmp_path / "run", oracle_spec="emt", steps=60,
                       threshold=0.5, temperature=600, **kw)
    steps = [s for s, _ in otf.checks_]
    assert len(steps) < 60 - 5
    assert max(np.diff(steps)) <= 10                # never more than the user's maximum


def test_lj_oracle_needs_fitting_parameters(tmp_path, caplog):
    from ase.calculators.lj import LennardJones
    with pytest.raises(active.OracleSpecError, match="sigma"):
        active.make_oracle("lj")
    ar = bulk("Ar", "fcc", 5.26, cubic=True) * (2, 2, 2)
    lj = active.make_oracle("lj:sigma=3.405,epsilon=0.0104")
    assert isinstance(lj, LennardJones) and lj.parameters.rc == pytest.approx(3 * 3.405)
    active.check_oracle_fits(lj, ar)                  # fits argon
    with pytest.raises(active.OracleSpecError, match="does not fit"):
        active.check_oracle_fits(lj, cu32())          # not copper
    with pytest.raises(active.OracleSpecError, match="does not fit"):
        active.learn(cu32(), LennardJones(), tmp_path / "r", steps=2, threshold=0.1)
    assert isinstance(active.make_oracle("EMT"), EMT)     # built-in names ignore case


class ZeroForces(EMT):
    def calculate(self, *args, **kwargs):
        super().calculate(*args, **kwargs)
        self.results["forces"] = np.zeros_like(self.results["forces"])


def test_all_zero_forces_warn(tmp_path, caplog):
    import logging
    caplog.set_level(logging.WARNING, logger="gapcalc")
    active.learn(cu32(), ZeroForces(), tmp_path / "r", steps=3, threshold=0.1, **SMALL)
    assert any("all-zero forces" in r.getMessage() for r in caplog.records)


def test_run_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        active.learn(cu32(), EMT(), tmp_path / "run", oracle_spec="emt", steps=12,
                     threshold=0.05, temperature=600, **SMALL)
    finally:
        os.umask(old)
    for name in ("train.xyz", "model.npz", "md_state.xyz", "state.json", "md.traj"):
        mode = (tmp_path / "run" / name).stat().st_mode & 0o777
        assert mode == 0o644, (name, oct(mode))


def test_trajectory_every_k_steps_appended_across_resume(tmp_path):
    from ase.io.trajectory import Trajectory
    run = tmp_path / "run"
    active.learn(cu32(), EMT(), run, oracle_spec="emt", steps=20, threshold=0.05,
                 temperature=600, trajectory_interval=5, **SMALL)
    with Trajectory(str(run / "md.traj")) as tr:
        assert [at.info["step"] for at in tr] == [0, 5, 10, 15, 20]
        assert tr[-1].get_forces().shape == (32, 3)
    # frames written after the last checkpoint (a kill) are dropped on resume
    state = json.loads((run / "state.json").read_text())
    state.update(step=10, trajectory_frames=3, last_trajectory_step=10)
    (run / "state.json").write_text(json.dumps(state))
    active.resume(run, steps=30)
    with Trajectory(str(run / "md.traj")) as tr:
        assert [at.info["step"] for at in tr] == [0, 5, 10, 15, 20, 25, 30]


def test_validation_opt_in_stated_and_never_rerun(tmp_path, capsys):
    from gapcalc.cli import main
    run = tmp_path / "run"
    args = ["learn", "--steps", "10", "--temperature", "600", "--threshold", "0.05",
            "--min-interval", "5", "--n-sparse-initial", "20", "--n-sparse-add", "5",
            "-o", str(run), "--validate", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    cost = active.fresh_frames_cost(2)
    assert f"= {cost} extra oracle calls" in out.splitlines()[0]      # stated before the run
    state = json.loads((run / "state.json").read_text())
    assert state["validation"]["oracle_calls"] == cost and state["validation"]["frames"] == 2
    assert main(["learn", "--resume", str(run), "--steps", "12"]) == 0
    out = capsys.readouterr().out
    assert "not rerun" in out and "extra oracle calls" not in out


def test_run_from_empty_model_refits_exactly_after_every_call(tmp_path):
    """Default policy: a run that starts empty keeps the exact model of its oracle frames
    (incremental updates would see later sparse points only through earlier ones)."""
    run = tmp_path / "run"
    otf = active.learn(cu32(), EMT(), run, oracle_spec="emt", steps=30, threshold=0.02,
                       temperature=600, **SMALL)
    assert otf.n_calls_ >= 2 and otf.refit_interval == 1
    exact = copy.deepcopy(otf.model)  # same sparse points and e0, refitted from scratch
    exact.refit(otf.frames_)
    np.testing.assert_allclose(otf.model.alpha_, exact.alpha_, rtol=1e-8, atol=1e-12)
    state = json.loads((run / "state.json").read_text())
    assert state["started_empty"] is True and state["refit_every"] is None
    again = active.resume(run, steps=40)
    assert again.started_empty_ and again.refit_interval == 1


def test_refits_refused_for_a_run_from_a_fitted_model(tmp_path):
    """A refit uses the run's frames only: from a fitted model it would drop its data."""
    model = active.default_model([29])
    at = cu32()
    at.rattle(0.05, seed=1)
    model.fit([active.label(at, EMT())])
    otf = active.OnTheFly(model, EMT(), threshold=0.05)
    assert otf.refit_interval == 0            # auto: incremental updates
    with pytest.raises(ValueError, match="empty model"):
        active.OnTheFly(model, EMT(), threshold=0.05, refit_every=1)


def test_cli_learn_model_options(tmp_path, capsys):
    """--soap / --sigma-* set the empty model (e.g. a short, sharp SOAP for water)."""
    from gapcalc import load_model_file
    from gapcalc.cli import main
    run = tmp_path / "run"
    args = ["learn", "--steps", "6", "--temperature", "600", "--threshold", "0.05",
            "--min-interval", "5", "--check-interval", "5", "--n-sparse-initial", "10",
            "--validate", "0", "--soap", "cutoff=4 n_max=4 l_max=3 atom_sigma=0.4 zeta=2",
            "--sigma-force", "0.07", "-o", str(run)]
    assert main(args) == 0
    model = load_model_file(run / "model.npz")
    soap = model.descriptor
    assert (soap.cutoff, soap.n_max, soap.l_max, soap.atom_sigma) == (4.0, 4, 3, 0.4)
    assert model.zeta == 2 and model.sigma_force == 0.07
    capsys.readouterr()
    assert main(["learn", "--soap", "n_sparse=5", "-o", str(tmp_path / "x")]) == 2
    assert "not settable" in capsys.readouterr().err
    assert main(["learn", "--resume", str(run), "--soap", "cutoff=5"]) == 2
