"""No command loses a user's files, for the commands that write one file (or one artifact): every
output target is checked before any work.

For each of ``compile --out NAME.taugate``, ``bench --json FILE``, ``export --out FILE.onnx`` and
``predict --output FILE.npy`` this checks

- a new path is written;
- a target holding a user's files that the command did not write (an existing text file, a folder
  that is not an artifact, a JSON file without ``written_by``, an ONNX file not from
  ``taugate export``, an existing .npy) is refused with exit 2 and one line ``taugate: error: ...``
  naming the path and mentioning --force, before any expensive work (the benchmark / loading entry
  point is replaced by one that raises), leaving the user's files byte-for-byte unchanged and no
  temp file behind;
- with ``--force`` the command runs (``compile`` still refuses a folder holding other files than an
  artifact's, and says so);
- a target the command wrote itself is accepted without --force, as each command documents it:
  compile, bench and export replace their own output; predict cannot recognise its .npy and always
  needs --force.

The commands that write a folder (reproduce, sweep) are checked in tests/test_outputs_folders.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from taugate.cli import main

try:
    from outputs_helpers import _assert_refused, _error, _fill, _forbid, _leftovers, _snapshot
except ImportError:  # tests/ imported as a package
    from tests.outputs_helpers import (
        _assert_refused,
        _error,
        _fill,
        _forbid,
        _leftovers,
        _snapshot,
    )

BENCH = ["bench", "--random", "16", "--active", "0.5", "--batch-sizes", "1", "--rounds", "3",
         "--backends", "dense,rowskip"]  # fmt: skip


# ------------------------------------------------------------------------------------ compile

ARTIFACT_FILES = {"manifest.json", "weights.safetensors"}


@pytest.fixture
def checkpoint(tmp_path):
    """A tiny TauGate checkpoint 64-8-10 and an .npy of calibration inputs, in ``tmp_path/in``."""
    import torch

    from taugate.nn import MLP, build_method, save_checkpoint

    d = tmp_path / "in"
    d.mkdir()
    torch.manual_seed(0)
    model = build_method(MLP([64, 8, 10]), "taugate")
    ckpt = save_checkpoint(model, d / "m.safetensors", sizes=[64, 8, 10], method="taugate",
                           provenance={"dataset": "digits", "target_angle": 0.0})  # fmt: skip
    calib = d / "calib.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((20, 64)).astype(np.float32))
    return ckpt, calib


def _compile(files, out, *extra) -> int:
    ckpt, calib = files
    return main(["compile", str(ckpt), "--out", str(out), "--calib-data", str(calib), "--no-eval",
                 "-q", *map(str, extra)])  # fmt: skip


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_compile_writes_a_new_artifact(checkpoint, tmp_path):
    from taugate.artifact import is_artifact

    out = tmp_path / "new" / "dir" / "m.taugate"
    assert _compile(checkpoint, out) == 0
    assert is_artifact(out) and {p.name for p in out.iterdir()} == ARTIFACT_FILES
    assert not _leftovers(tmp_path)


@pytest.mark.parametrize(
    "kind, phrase",
    [
        ("text-file", "was not written by taugate"),
        ("manifest-only-folder", "was not written by taugate"),
        ("folder-with-notes", "even with --force"),
    ],
)
def test_compile_refuses_what_it_did_not_write(
    checkpoint, tmp_path, capsys, monkeypatch, kind, phrase
):
    _forbid(monkeypatch, "taugate.nn.checkpoint.load_checkpoint", "taugate.compile.compile_model")
    out = tmp_path / "m.taugate"
    if kind == "text-file":
        out.write_text("a user's file\n")
    elif kind == "manifest-only-folder":
        _fill(out, {"manifest.json": '{"mine": true}\n'})
    else:
        _fill(out, {"notes.txt": "keep me\n"})
    before = _snapshot(tmp_path)
    _assert_refused(capsys, _compile(checkpoint, out), out, phrase)
    assert _snapshot(tmp_path) == before
    assert not _leftovers(tmp_path)


@pytest.mark.parametrize("kind", ["text-file", "manifest-only-folder", "artifact-named-files"])
def test_compile_force_replaces_a_file_or_a_folder_of_artifact_names(
    checkpoint, tmp_path, capsys, kind
):
    from taugate.artifact import is_artifact

    out = tmp_path / "m.taugate"
    if kind == "text-file":
        out.write_text("a user's file\n")
    elif kind == "manifest-only-folder":
        _fill(out, {"manifest.json": '{"mine": true}\n'})
    else:
        _fill(out, {"manifest.json": "[]", "weights.safetensors": "not tensors"})
    assert _compile(checkpoint, out, "--force") == 0
    assert is_artifact(out)
    assert not _leftovers(tmp_path)


@pytest.mark.parametrize(
    "files",
    [{"notes.txt": "keep me\n"},
     {"manifest.json": '{"mine": true}\n', "weights.safetensors": "w", "sweep.csv": "a,b\n"},
     {"results.csv": "x\n", "sub/deep.txt": "deep"}],
    ids=["notes", "artifact-names-and-more", "nested"],
)  # fmt: skip
def test_compile_refuses_a_folder_with_other_files_even_with_force(
    checkpoint, tmp_path, capsys, monkeypatch, files
):
    _forbid(monkeypatch, "taugate.nn.checkpoint.load_checkpoint", "taugate.compile.compile_model")
    out = _fill(tmp_path / "m.taugate", files)
    before = _snapshot(tmp_path)
    assert _compile(checkpoint, out, "--force") == 2
    err = _error(capsys)
    assert str(out) in err and "even with --force" in err, err
    assert "not part of an artifact" in err, err
    assert _snapshot(tmp_path) == before
    assert not _leftovers(tmp_path)


def test_compile_replaces_its_own_artifact_without_force(checkpoint, tmp_path):
    out = tmp_path / "m.taugate"
    assert _compile(checkpoint, out) == 0
    assert _manifest(out)["compile"]["config"]["compact"] is True
    assert _compile(checkpoint, out, "--no-compact") == 0
    assert _manifest(out)["compile"]["config"]["compact"] is False
    assert {p.name for p in out.iterdir()} == ARTIFACT_FILES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "m.taugate"]


# ------------------------------------------------------------------------------------ bench


def _bench(out, *extra) -> int:
    return main([*BENCH, "--json", str(out), *map(str, extra)])


USER_JSON = {
    "text": "a user's notes\n",
    "json-without-written_by": '{"rows": [1, 2, 3]}\n',
    "json-of-another-command": '{"written_by": "taugate export", "rows": []}\n',
    "json-list": '["taugate bench"]\n',
}


def test_bench_writes_a_new_json(tmp_path, capsys):
    out = tmp_path / "new" / "b.json"
    assert _bench(out) == 0
    data = json.loads(out.read_text())
    assert data["written_by"] == "taugate bench" and data["rows"]
    assert {r["backend"] for r in data["rows"]} == {"dense", "rowskip"}
    assert not _leftovers(tmp_path)


@pytest.mark.parametrize("text", USER_JSON.values(), ids=USER_JSON)
def test_bench_refuses_a_file_it_did_not_write(tmp_path, capsys, monkeypatch, text):
    _forbid(monkeypatch, "taugate.bench.run.bench_model", "taugate.runtime.random_model")
    out = tmp_path / "b.json"
    out.write_text(text)
    _assert_refused(capsys, _bench(out), out, "was not written by taugate bench")
    assert out.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json"]


@pytest.mark.parametrize("text", USER_JSON.values(), ids=USER_JSON)
def test_bench_force_replaces_any_file(tmp_path, capsys, text):
    out = tmp_path / "b.json"
    out.write_text(text)
    assert _bench(out, "--force") == 0
    assert json.loads(out.read_text())["written_by"] == "taugate bench"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json"]


def test_bench_replaces_its_own_json_without_force(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert _bench(out) == 0
    data = json.loads(out.read_text())
    out.write_text(json.dumps({**data, "mark": "from the first run"}))
    assert _bench(out) == 0
    data = json.loads(out.read_text())
    assert data["written_by"] == "taugate bench" and "mark" not in data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json"]


# ------------------------------------------------------------------------------------ export


@pytest.fixture
def artifact(tmp_path):
    from taugate.runtime import random_model

    return random_model([20, 16, 4], 0.5).save(tmp_path / "m.taugate")


def _export(model, out, *extra) -> int:
    return main(["export", str(model), "--out", str(out), *map(str, extra)])


def _foreign_onnx() -> bytes:
    """A valid ONNX model that taugate export did not write (no taugate metadata)."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 20])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 20])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "user", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"author": "a user"})
    return model.SerializeToString()


def _opset(path: Path) -> int:
    import onnx

    return onnx.load(str(path)).opset_import[0].version


def test_export_writes_a_new_onnx(artifact, tmp_path, capsys):
    from taugate.export import written_by_export

    out = tmp_path / "new" / "m.onnx"
    assert _export(artifact, out) == 0
    assert written_by_export(out) and "onnxruntime" in capsys.readouterr().out
    assert not _leftovers(tmp_path)


@pytest.mark.parametrize("kind", ["text", "foreign-onnx", "bytes"])
def test_export_refuses_a_file_it_did_not_write(artifact, tmp_path, capsys, monkeypatch, kind):
    _forbid(monkeypatch, "taugate.runtime.load", "taugate.export.to_onnx")
    data = {"text": b"a user's notes\n", "foreign-onnx": _foreign_onnx(),
            "bytes": bytes(range(256))}[kind]  # fmt: skip
    out = tmp_path / "m.onnx"
    out.write_bytes(data)
    before = _snapshot(tmp_path)
    _assert_refused(capsys, _export(artifact, out), out, "was not written by taugate export")
    assert out.read_bytes() == data and _snapshot(tmp_path) == before
    assert not _leftovers(tmp_path)


@pytest.mark.parametrize("kind", ["text", "foreign-onnx"])
def test_export_force_replaces_any_file(artifact, tmp_path, capsys, kind):
    from taugate.export import written_by_export

    out = tmp_path / "m.onnx"
    out.write_bytes(b"a user's notes\n" if kind == "text" else _foreign_onnx())
    assert _export(artifact, out, "--force", "--no-verify") == 0
    assert written_by_export(out)
    assert not _leftovers(tmp_path)


def test_export_replaces_its_own_onnx_without_force(artifact, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert _export(artifact, out, "--no-verify") == 0
    assert _opset(out) == 17
    assert _export(artifact, out, "--no-verify", "--opset", "18") == 0
    assert _opset(out) == 18
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.taugate"]


# ------------------------------------------------------------------------------------ predict


@pytest.fixture
def inputs(tmp_path):
    x = np.random.default_rng(2).standard_normal((5, 20)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    return tmp_path / "x.npy"


def _predict(model, x, out, *extra) -> int:
    return main(["predict", str(model), "--input", str(x), "--output", str(out),
                 *map(str, extra)])  # fmt: skip


def test_predict_writes_a_new_npy(artifact, inputs, tmp_path, capsys):
    from taugate.runtime import load

    out = tmp_path / "new" / "y.npy"
    assert _predict(artifact, inputs, out) == 0
    y = np.load(out)
    assert y.shape == (5, 4)
    np.testing.assert_allclose(y, load(artifact).predict(np.load(inputs)), rtol=1e-6, atol=1e-6)
    assert not _leftovers(tmp_path)


@pytest.mark.parametrize("kind", ["users-npy", "text", "own-npy"])
def test_predict_refuses_an_existing_file(artifact, inputs, tmp_path, capsys, monkeypatch, kind):
    out = tmp_path / "y.npy"
    if kind == "own-npy":  # predict cannot tell its .npy from a user's: documented, needs --force
        assert _predict(artifact, inputs, out) == 0
        capsys.readouterr()
    elif kind == "users-npy":
        np.save(out, np.arange(7))
    else:
        out.write_text("a user's notes\n")
    _forbid(monkeypatch, "taugate.runtime.load", "taugate.inputs.load_inputs")
    before = _snapshot(tmp_path)
    _assert_refused(capsys, _predict(artifact, inputs, out), out, "refusing to overwrite")
    assert _snapshot(tmp_path) == before
    assert not _leftovers(tmp_path)


@pytest.mark.parametrize("kind", ["users-npy", "text"])
def test_predict_force_replaces_an_existing_file(artifact, inputs, tmp_path, capsys, kind):
    out = tmp_path / "y.npy"
    if kind == "users-npy":
        np.save(out, np.arange(7))
    else:
        out.write_text("a user's notes\n")
    assert _predict(artifact, inputs, out, "--force") == 0
    assert np.load(out).shape == (5, 4)
    assert not _leftovers(tmp_path)
