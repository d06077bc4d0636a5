"""The shipped potentials: load by name, sane predictions, errors as stated on the model card.

The error bounds come from the card's machine-readable summary (written by
potentials/train_*.py): a handful of held-out frames must stay below 2× the card's test
RMSE for their config type.
"""
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

import gapcalc

REPO = Path(__file__).resolve().parents[1]
POT = REPO / "potentials"
DATA = REPO / "benchmarks" / "data"
NAMES = ["Si", "water", "Cu"]
FACTOR = 2.0


def card_summary(name):
    text = (POT / f"{name}.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- gapcalc-card-summary\n(.*?)\n-->", text, re.S)
    assert m, f"{name}.md has no summary block"
    return json.loads(m.group(1))


def sample(name):
    from ase.build import bulk
    if name == "Si":
        at = bulk("Si", "diamond", a=5.47, cubic=True) * (2, 1, 1)
    elif name == "Cu":
        at = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    else:
        import ase.io
        at = ase.io.read(DATA / "water_dpmd" / "water_dpmd.xyz", index=-1)
        at.calc = None
    at.rattle(0.02, seed=1)
    return at


@pytest.fixture(scope="module", params=NAMES)
def name(request):
    return request.param


def test_available():
    from gapcalc.potentials import available
    assert set(NAMES) <= set(available())


def test_load_and_predict(name):
    calc = gapcalc.load(name)
    at = sample(name)
    at.calc = calc
    e = at.get_potential_energy()
    f = at.get_forces()
    s = at.get_stress()
    assert np.isfinite(e) and np.isfinite(f).all() and np.isfinite(s).all()
    assert f.shape == (len(at), 3)
    assert np.abs(f.sum(axis=0)).max() < 1e-8          # local model: Newton's third law
    assert np.abs(f).max() < 20
    assert at.get_potential_energies().sum() == pytest.approx(e, abs=1e-6)
    # energy per atom close to the training data's e0 scale
    e0 = np.mean(list(card_summary(name)["e0"].values()))
    assert abs(e / len(at) - e0) < 1.0


def test_card_matches_file(name):
    s = card_summary(name)
    path = POT / f"{name}.npz"
    assert s["file"] == path.name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == s["sha256"], \
        f"{name}.md does not describe {name}.npz: rerun potentials/train_*.py"
    assert path.stat().st_size < 20e6
    text = (POT / f"{name}.md").read_text(encoding="utf-8")
    for heading in ("## Data", "## Model", "## Errors", "## Speed", "## Intended use",
                    "## Reproduce"):
        assert heading in text, heading
    assert "train_" in text and "python3 potentials/train_" in text


def _held_out(name):
    """A handful of held-out frames and the config_type bounds they are checked against."""
    import ase.io
    if name == "Si":
        test = ase.io.read(DATA / "si_mlearn" / "si_mlearn_test.xyz", ":")
        frames = []
        for ct in ("AIMD-NVT", "Vacancy", "Elastic"):
            frames += [f for f in test if f.info["config_type"] == ct][:3]
        return frames
    if name == "water":
        frames = ase.io.read(DATA / "water_dpmd" / "water_dpmd.xyz", ":")
        return [f for f in frames if f.info["source_system"] == "data_3"][:4]
    from gapcalc.datasets import emt_frames
    return emt_frames("Cu", n_frames=2, size=(3, 3, 3), temperature=800.0, interval=10,
                      seed=101, config_type="fcc_800K")


def test_held_out_errors_as_on_card(name):
    from gapcalc.metrics import error_table
    card = card_summary(name)["test"]["per_config_type"]
    model = gapcalc.load(name).model
    table = error_table(model, _held_out(name))
    for ct, row in table["per_config_type"].items():
        ref = card[ct]
        for key in ("energy_rmse", "force_rmse"):
            # a floor for near-perfect config types (e.g. Elastic forces ~1e-3 eV/Å)
            floor = {"energy_rmse": 1e-3, "force_rmse": 0.02}[key]
            bound = FACTOR * max(ref[key], floor)
            assert row[key] < bound, f"{name} {ct} {key}: {row[key]:.4g} >= {bound:.4g}"
        if ref.get("stress_rmse") and row.get("stress_rmse") is not None:
            assert row["stress_rmse"] < FACTOR * max(ref["stress_rmse"], 2e-4)


def test_shipped_files_are_world_readable(name):
    assert (POT / f"{name}.npz").stat().st_mode & 0o044 == 0o044


def test_shipped_file_reproduces_card_errors(name):
    """The card's "check" record: the shipped file's errors on committed frames, to 1e-6."""
    import ase.io
    from gapcalc.metrics import error_table
    rec = card_summary(name).get("check")
    assert rec, f"{name}.md has no check record: rerun potentials/train_{name.lower()}.py"
    frames = ase.io.read(REPO / rec["data"], ":")
    table = error_table(gapcalc.load(name).model, [frames[i] for i in rec["frames"]])
    for key, ref in rec["overall"].items():
        got = table["overall"][key]
        if ref is None:
            assert got is None, key
        else:
            assert got == pytest.approx(ref, rel=1e-6, abs=1e-12), (name, key)


def test_readme_lists_every_shipped_potential_and_example():
    from gapcalc.potentials import available
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for pot in available():
        assert f'gapcalc.load("{pot}")' in readme, pot
    for ex in sorted((REPO / "md_examples").glob("*.py")):
        assert f"`{ex.name}`" in readme, ex.name


def test_no_stray_index_files():
    """QUIP writes ``*.idx`` beside every xyz it reads (gap_fit runs of the benchmarks do):
    they are ignored, and none is committed."""
    import subprocess
    assert "*.idx" in (REPO / ".gitignore").read_text().splitlines()
    tracked = subprocess.run(["git", "ls-files", "*.idx"], cwd=REPO, capture_output=True,
                             text=True)
    if tracked.returncode == 0:          # a git checkout (not an unpacked sdist)
        assert not tracked.stdout.strip(), tracked.stdout
