"""Model files: bit-identical round trip, refusal of bad files."""
import json
import pickle
import zipfile

import numpy as np
import pytest

import gapcalc
from gapcalc.io import FORMAT_VERSION, ModelFileError, load_model, read_npz, write_npz_atomic


def test_round_trip_bit_identical(cu_model, cu_frames, tmp_path):
    path = tmp_path / "cu.npz"
    cu_model.save(path)
    calc = gapcalc.load(path)
    for at in cu_frames[30:33]:
        ref = cu_model.evaluate(at)
        got = calc.model.evaluate(at)
        assert got["energy"] == ref["energy"]
        np.testing.assert_array_equal(got["forces"], ref["forces"])
        np.testing.assert_array_equal(got["stress"], ref["stress"])
    assert calc.model.get_params() == cu_model.get_params()
    assert not list(tmp_path.glob(".*tmp"))  # no temporary left behind


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(tmp_path / "none.npz")


def test_truncated_file(cu_model, tmp_path):
    path = tmp_path / "m.npz"
    cu_model.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        load_model(path)


def test_pickled_file(tmp_path):
    path = tmp_path / "p.npz"
    np.savez(path, header=np.array([{"format": "gapcalc-model"}], dtype=object))
    with pytest.raises(ModelFileError, match="pickle"):
        load_model(path)
    raw = tmp_path / "raw.npz"
    raw.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelFileError):
        load_model(raw)


def test_foreign_and_newer_format(tmp_path):
    path = tmp_path / "x.npz"
    write_npz_atomic(path, {"format": "something-else", "format_version": 1}, {"a": np.ones(2)})
    with pytest.raises(ModelFileError, match="is not 'gapcalc-model'"):
        load_model(path)
    write_npz_atomic(path, {"format": "gapcalc-model", "format_version": FORMAT_VERSION + 1},
                     {"a": np.ones(2)})
    with pytest.raises(ModelFileError, match="newer"):
        load_model(path)


def test_checksum_mismatch(cu_model, tmp_path):
    path = tmp_path / "m.npz"
    cu_model.save(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["alpha_0"] = arrays["alpha_0"] + 1e-3
    np.savez(path, **arrays)
    with pytest.raises(ModelFileError, match="checksum"):
        load_model(path)


def test_failed_write_keeps_old_file(cu_model, tmp_path):
    path = tmp_path / "m.npz"
    cu_model.save(path)
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_npz_atomic(path, {"format": "gapcalc-model", "bad": object()}, {"a": np.ones(1)})
    assert path.read_bytes() == before
