"""predict / bench input and output handling: dtypes, .npz, rows, output paths, flags, pipes.

Random models only (no torch, no training): every test runs in well under a second except the
subprocess and bench ones.
"""

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from taugate.cli import main
from taugate.errors import TauGateError
from taugate.inputs import load_inputs


@pytest.fixture(scope="module")
def model64(tmp_path_factory):
    """A 64-16-10 artifact: fits the built-in 8x8 digits."""
    from taugate.runtime import random_model

    return random_model([64, 16, 10], 0.5, seed=0).save(tmp_path_factory.mktemp("m") / "r.taugate")


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    return err


def _predict(model, x_path, y_path, *extra):
    return main(["predict", str(model), "--input", str(x_path), "--output", str(y_path), *extra])


# ---------------------------------------------------------------- NaN rows (defect 1)


@pytest.mark.parametrize("batch_size", ["100", "1024", "7"])
def test_nan_error_names_the_row_of_the_file(model64, tmp_path, capsys, batch_size):
    x = np.random.default_rng(0).random((1500, 64))
    x[1400, 5] = np.nan
    x[1450, 0] = np.inf
    np.save(tmp_path / "x.npy", x)
    assert (
        _predict(model64, tmp_path / "x.npy", tmp_path / "y.npy", "--batch-size", batch_size) == 2
    )
    assert "NaN or inf at row 1400 (of 1500" in _err(capsys)
    assert not (tmp_path / "y.npy").exists()


def test_value_beyond_float32_is_an_error_without_a_warning(tmp_path):
    x = np.zeros((3, 64))
    x[2, 7] = 1e300
    np.save(tmp_path / "x.npy", x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning would fail here
        with pytest.raises(TauGateError, match=r"x.npy: NaN or inf at row 2 "):
            load_inputs(tmp_path / "x.npy", 64)


# ---------------------------------------------------------------- dtypes and shapes (defect 5)


@pytest.mark.parametrize(
    "dtype", [np.bool_, np.int8, np.int64, np.uint8, np.uint16, np.float16, np.float64, np.float32]
)
def test_real_dtypes_are_converted_like_the_api(model64, tmp_path, dtype):
    from taugate.runtime import load

    x = (np.random.default_rng(1).random((4, 64)) * 3).astype(dtype)
    np.save(tmp_path / "x.npy", x)
    got = load_inputs(tmp_path / "x.npy", 64)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, x.astype(np.float32))
    assert _predict(model64, tmp_path / "x.npy", tmp_path / "y.npy", "--backend", "dense") == 0
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), load(model64).predict(x, "dense"))


@pytest.mark.parametrize(
    "array, dtype",
    [
        (np.zeros((2, 64), np.complex64), "complex64"),
        (np.zeros((2, 64), "m8[s]"), "timedelta64[s]"),
        (np.zeros((2, 64), "M8[D]"), "datetime64[D]"),
        (np.full((2, 64), "a"), "<U1"),
        (np.full((2, 64), b"a"), "|S1"),
        (np.zeros((2, 64), [("a", "f4")]), "[('a', '<f4')]"),
        (np.array([[1.0] * 64, ["x"] * 64], dtype=object), "object"),
    ],
)
def test_other_dtypes_are_refused_naming_file_and_dtype(tmp_path, capsys, model64, array, dtype):
    path = tmp_path / "bad.npy"
    np.save(path, array, allow_pickle=True)
    with pytest.raises(TauGateError) as e:
        load_inputs(path, 64)
    assert str(path) in str(e.value) and f"dtype {dtype} is not supported" in str(e.value)
    assert _predict(model64, path, tmp_path / "y.npy") == 2
    assert f"dtype {dtype} is not supported" in _err(capsys)


def test_one_row_vector_and_images_are_accepted(tmp_path):
    v = np.arange(64, dtype=np.float64)
    np.save(tmp_path / "v.npy", v)
    np.testing.assert_array_equal(load_inputs(tmp_path / "v.npy", 64), v[None].astype(np.float32))
    imgs = np.arange(3 * 64).reshape(3, 8, 8)
    np.save(tmp_path / "i.npy", imgs)
    assert load_inputs(tmp_path / "i.npy", 64).shape == (3, 64)
    np.save(tmp_path / "e.npy", np.zeros((0, 8, 8)))  # empty: reshapes, refused later as empty
    assert load_inputs(tmp_path / "e.npy", 64).shape == (0, 64)
    np.save(tmp_path / "w.npy", np.zeros(63))
    with pytest.raises(TauGateError, match=r"expected shape \(N, 64\), got \(1, 63\)"):
        load_inputs(tmp_path / "w.npy", 64)


# ---------------------------------------------------------------- .npz (defect 3)


def test_npz_with_one_array_is_accepted(model64, tmp_path):
    x = np.random.default_rng(2).random((5, 64)).astype(np.float32)
    np.savez(tmp_path / "x.npz", inputs=x)
    np.testing.assert_array_equal(load_inputs(tmp_path / "x.npz", 64), x)
    assert _predict(model64, tmp_path / "x.npz", tmp_path / "y.npy") == 0
    assert np.load(tmp_path / "y.npy").shape == (5, 10)


@pytest.mark.parametrize(
    "arrays, found", [({"a": np.zeros((2, 64)), "b": np.zeros(3)}, 2), ({}, 0)]
)
def test_npz_with_other_than_one_array_is_refused(model64, tmp_path, capsys, arrays, found):
    np.savez(tmp_path / "x.npz", **arrays)
    assert _predict(model64, tmp_path / "x.npz", tmp_path / "y.npy") == 2
    assert f"x.npz: an .npz input must hold exactly one array, found {found}" in _err(capsys)


def test_npz_and_dtype_rules_are_in_the_help(capsys):
    for cmd in ("predict", "bench"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert ".npz" in text and "one array" in text


def test_bench_random_model_on_an_npz_file(tmp_path, capsys):
    np.savez(tmp_path / "x.npz", np.random.default_rng(3).random((8, 784)))
    assert main(["bench", "--random", "16", "--inputs", str(tmp_path / "x.npz"), "--batch-sizes",
                 "2", "--rounds", "3", "--threads", "1", "--backends", "dense,rowskip"]) == 0  # fmt: skip
    assert f"inputs: file {tmp_path / 'x.npz'}" in capsys.readouterr().out


# ---------------------------------------------------------------- output paths (2, 6, 11)


def test_predict_to_a_directory(model64, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((2, 64)))
    (tmp_path / "outdir").mkdir()
    assert _predict(model64, tmp_path / "x.npy", tmp_path / "outdir") == 2
    assert f"output path {tmp_path / 'outdir'} is a directory" in _err(capsys)
    assert list((tmp_path / "outdir").iterdir()) == []


def test_predict_to_an_unwritable_location_even_as_root(model64, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((2, 64)))
    (tmp_path / "file").write_text("x")  # a path under a regular file stops root too
    assert _predict(model64, tmp_path / "x.npy", tmp_path / "file" / "y.npy") == 2
    err = _err(capsys)
    assert f"{tmp_path / 'file'} is not a directory" in err and "not writable" in err
    assert (tmp_path / "file").read_text() == "x"


def test_predict_checks_the_output_before_loading_anything(model64, tmp_path, capsys, monkeypatch):
    def no_work(*a, **k):
        raise AssertionError("the model was loaded before the output path was checked")

    monkeypatch.setattr("taugate.runtime.load", no_work)
    (tmp_path / "outdir").mkdir()
    assert _predict(model64, tmp_path / "missing.npy", tmp_path / "outdir") == 2
    assert "is a directory" in _err(capsys)


@pytest.mark.parametrize("where", ["dir", "under_file"])
def test_bench_checks_json_path_before_timing(tmp_path, capsys, monkeypatch, where):
    def no_work(*a, **k):
        raise AssertionError("benchmarked before checking --json")

    monkeypatch.setattr("taugate.bench.run.bench_model", no_work)
    (tmp_path / "file").write_text("x")
    (tmp_path / "outdir").mkdir()
    out = tmp_path / ("outdir" if where == "dir" else "file/b.json")
    assert main(["bench", "--random", "8", "--json", str(out)]) == 2
    err = _err(capsys)
    assert str(out if where == "dir" else out.parent) in err


def test_predict_output_through_a_symlink_and_not_onto_a_fifo(model64, tmp_path, capsys):
    import os

    np.save(tmp_path / "x.npy", np.ones((2, 64)))
    (tmp_path / "real.npy").write_bytes(b"old")
    (tmp_path / "link.npy").symlink_to(tmp_path / "real.npy")
    assert _predict(model64, tmp_path / "x.npy", tmp_path / "link.npy") == 2  # exists: refused
    assert (
        "exists; refusing to overwrite it" in _err(capsys)
        and (tmp_path / "real.npy").read_bytes() == b"old"
    )
    assert _predict(model64, tmp_path / "x.npy", tmp_path / "link.npy", "--force") == 0
    assert (tmp_path / "link.npy").is_symlink()
    assert np.load(tmp_path / "real.npy").shape == (2, 10)
    capsys.readouterr()
    os.mkfifo(tmp_path / "fifo")
    assert _predict(model64, tmp_path / "x.npy", tmp_path / "fifo") == 2
    assert "not a regular file" in _err(capsys)


# ---------------------------------------------------------------- bench without torch/dense (7)


def test_bench_without_torch_or_dense_prints_dashes_and_strict_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", "--random", "16,24", "--batch-sizes", "1", "--rounds", "3", "--threads",
                 "1", "--backends", "compact,rowskip", "--json", str(out)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "nan" not in text.lower() and " - " in text

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    res = json.loads(out.read_text(), parse_constant=refuse)
    assert all(r["speedup_vs_torch"] is None and r["speedup_vs_dense"] is None for r in res["rows"])


# ---------------------------------------------------------------- ignored flags (8)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--random", "8", "--dataset", "digits"], "--dataset does not apply to --random"),
        (["--random", "8", "--angle", "30"], "--angle does not apply to --random"),
        (["--random", "8", "--data-dir", "d"], "--data-dir does not apply to --random"),
        (["MODEL", "--active", "0.3"], "--active applies to --random only"),
        (["MODEL", "--hidden-layers", "3"], "--hidden-layers applies to --random only"),
        (["MODEL", "--inputs", "x.npy", "--dataset", "digits"], "--dataset does not apply with"),
        (["MODEL", "--inputs", "x.npy", "--angle", "5"], "--angle does not apply with --inputs"),
    ],
)
def test_bench_refuses_ignored_flags(model64, capsys, args, message):
    args = [str(model64) if a == "MODEL" else a for a in args]
    assert main(["bench", *args]) == 2
    assert message in _err(capsys)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "digits", "--output", "y.npy"], "--output applies to --input only"),
        (
            ["--input", "x.npy", "--output", "y.npy", "--angle", "45"],
            "--angle applies to --dataset",
        ),
        (["--input", "x.npy", "--output", "y.npy", "--data-dir", "d"], "--data-dir applies to"),
    ],
)
def test_predict_refuses_ignored_flags(model64, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(model64), *args]) == 2
    assert message in _err(capsys)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- --angle is used (11)


def test_predict_on_dataset_uses_the_angle(model64, capsys):
    from taugate.data import load_dataset, rotated_split
    from taugate.runtime import load

    ds = load_dataset("digits", None, quiet=True)
    m = load(model64)
    for angle in (0.0, 30.0):
        assert main(["predict", str(model64), "--dataset", "digits", "--angle", f"{angle:g}"]) == 0
        text = capsys.readouterr().out
        acc = (m.predict(rotated_split(ds, "test", angle), "dense").argmax(1) == ds.y_test).mean()
        assert f"digits test at {angle:g}°: accuracy {100 * acc:.2f}%" in text


# ---------------------------------------------------------------- closed stdout (9)


def test_closed_stdout_pipe_exits_quietly(model64, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 64)))
    code = "import sys; from taugate.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["predict", str(model64), "--input", str(tmp_path / "x.npy"), "--output",
            str(tmp_path / "y.npy")]  # fmt: skip
    p = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    p.stdout.close()  # the reader is gone before anything is printed (like `| head -0`)
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 1, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
