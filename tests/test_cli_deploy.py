"""compile -> predict -> bench through the command line, on a tiny reproduced model."""

import json

import numpy as np
import pytest

from taugate.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    args = ["reproduce", "--dataset", "digits", "--hidden", "24,24", "--seeds", "1", "--methods",
            "taugate,lora", "--no-overlap", "--limit-train", "600", "--foundation-epochs", "4",
            "--out", str(out), "-q", "--device", "cpu", "--no-paper-steps"]  # fmt: skip
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def artifact(run_dir):
    out = run_dir / "taugate.taugate"
    assert main(["compile", str(run_dir / "models/seed0/taugate.safetensors"), "--out", str(out),
                 "--calib-size", "500", "-q"]) == 0  # fmt: skip
    return out


def test_compile_prints_units_and_accuracy(run_dir, capsys, tmp_path):
    out = tmp_path / "lora.taugate"
    assert (
        main(["compile", str(run_dir / "models/seed0/lora.safetensors"), "--out", str(out), "-q"])
        == 0
    )
    text = capsys.readouterr().out
    assert "units kept per hidden layer" in text and "accuracy on 359 test inputs" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["gated"] for e in manifest["layers"]] == [False, False, False]  # dense -> ungated


def test_predict_on_dataset(artifact, capsys):
    assert main(["predict", str(artifact), "--dataset", "digits"]) == 0
    text = capsys.readouterr().out
    assert "digits test at 45°: accuracy" in text and "active share per hidden layer" in text


@pytest.mark.parametrize("backend", ["dense", "compact", "rowskip"])
def test_predict_npy_round_trip(artifact, tmp_path, backend):
    from taugate.runtime import load

    x = np.random.default_rng(0).random((7, 64))  # float64 on purpose: converted to float32
    np.save(tmp_path / "x.npy", x)
    assert main(["predict", str(artifact), "--input", str(tmp_path / "x.npy"),
                 "--output", str(tmp_path / "y.npy"), "--backend", backend]) == 0  # fmt: skip
    y = np.load(tmp_path / "y.npy")
    np.testing.assert_allclose(
        y, load(artifact).predict(x.astype(np.float32), backend="dense"), atol=1e-4
    )


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((3, 63)), "expected shape (N, 64), got (3, 63)"),
        (np.full((2, 64), np.nan), "NaN or inf"),
        (np.zeros((0, 64)), "empty"),
    ],
)
def test_predict_bad_input(artifact, tmp_path, capsys, array, message):
    np.save(tmp_path / "x.npy", array)
    code = main(
        [
            "predict",
            str(artifact),
            "--input",
            str(tmp_path / "x.npy"),
            "--output",
            str(tmp_path / "y.npy"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "y.npy").exists()


def test_predict_needs_output(artifact, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((2, 64)))
    assert main(["predict", str(artifact), "--input", str(tmp_path / "x.npy")]) == 2
    assert "--output" in capsys.readouterr().err


def test_bench_model_json(artifact, tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", str(artifact), "--batch-sizes", "1,5", "--rounds", "3", "--json", str(out),
                 "--backends", "torch,dense,compact,rowskip,scipy-sparse"]) == 0  # fmt: skip
    res = json.loads(out.read_text())
    assert len(res["rows"]) == 10 and res["compile_seconds"] >= 0
    assert {"cpu", "cores", "threads", "blas", "versions", "numba_threading_layer"} <= set(
        res["machine"]
    )
    for r in res["rows"]:
        assert r["median_ms"] > 0 and r["p25_ms"] <= r["median_ms"] <= r["p75_ms"]
        assert r["work_cap"] >= 1 and np.isfinite(r["speedup_vs_torch"])
    torch_rows = [r for r in res["rows"] if r["backend"] == "torch"]
    assert all(r["speedup_vs_torch"] == 1 for r in torch_rows)
    assert "rowskip" in capsys.readouterr().out


def test_bench_random_model(capsys):
    assert main(["bench", "--random", "64", "--active", "0.25", "--batch-sizes", "2", "--rounds", "3",
                 "--threads", "1"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "random 784-64-64-10" in text and "standard normal" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--random", "32", "--backends", "torch,gpu"], "unknown backend 'gpu'"),
        (["--random", "32", "--active", "1.5"], "--active must be a share in [0, 1]"),
        ([], "give either MODEL or --random"),
    ],
)
def test_bench_errors(capsys, args, message):
    assert main(["bench", *args]) == 2
    assert message in capsys.readouterr().err


def test_bench_batch_size_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--random", "8", "--batch-sizes", "1,0"])
    assert "--batch-sizes must be >= 1" in capsys.readouterr().err


def test_compile_errors(tmp_path, capsys, run_dir):
    assert (
        main(
            ["compile", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "m.taugate")]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    ckpt = str(run_dir / "models/seed0/taugate.safetensors")
    assert main(["compile", ckpt, "--out", str(blocker / "m.taugate"), "-q"]) == 2
    err = capsys.readouterr().err  # read once: a second readouterr() is always empty
    assert "not writable" in err or "cannot write" in err, err
    np.save(tmp_path / "c.npy", np.zeros((4, 10)))
    assert (
        main(
            [
                "compile",
                ckpt,
                "--out",
                str(tmp_path / "m.taugate"),
                "--calib-data",
                str(tmp_path / "c.npy"),
            ]
        )
        == 2
    )
    assert "expected shape (N, 64)" in capsys.readouterr().err


def test_compile_refuses_an_artifact_directory(artifact, tmp_path, capsys):
    assert main(["compile", str(artifact), "--out", str(tmp_path / "again.taugate")]) == 2
    assert "is a directory (a compiled artifact?)" in capsys.readouterr().err


def test_data_set_that_does_not_fit_the_model(tmp_path, capsys):
    from taugate.runtime import random_model

    path = random_model([784, 16, 10], 0.5).save(tmp_path / "r.taugate")
    assert main(["predict", str(path), "--dataset", "digits"]) == 2
    assert "data set digits has 64 features but the model expects 784" in capsys.readouterr().err
    # 'mnist' without its training files (offline) falls back to digits: the error says so
    assert main(["predict", str(path), "--dataset", "mnist"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'mnist' is not available here (fell back to the 8x8 digits" in err


def test_predict_command_never_imports_torch(tmp_path):
    """Deployment needs only numpy + numba: the `predict` command (not just the runtime) must work
    in a process that never loads torch."""
    import subprocess
    import sys

    from taugate.runtime import random_model

    art = random_model([784, 16, 10], 0.5).save(tmp_path / "r.taugate")
    np.save(tmp_path / "x.npy", np.zeros((3, 784)))
    code = (
        "import sys; from taugate.cli import main; "
        f"rc = main(['predict', {str(art)!r}, '--input', {str(tmp_path / 'x.npy')!r}, "
        f"'--output', {str(tmp_path / 'y.npy')!r}]); "
        "assert rc == 0 and 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert np.load(tmp_path / "y.npy").shape == (3, 10)
