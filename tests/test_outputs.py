"""No command loses a user's files: every output target is checked before any work.

For each of ``reproduce --out DIR``, ``sweep --out DIR``, ``compile --out NAME.taugate``,
``bench --json FILE``, ``export --out FILE.onnx`` and ``predict --output FILE.npy`` this checks

- a new path is written;
- a target holding a user's files that the command did not write (a non-empty folder without the
  command's marker; an existing text file, a JSON file without ``written_by``, an ONNX file not from
  ``taugate export``, an existing .npy) is refused with exit 2 and one line ``taugate: error: ...``
  naming the path and mentioning --force, before any expensive work (the training / benchmark /
  loading entry point is replaced by one that raises), leaving the user's files byte-for-byte
  unchanged and no temp file behind;
- with ``--force`` the command runs (``compile`` still refuses a folder holding other files than an
  artifact's, and says so), and the user's files that are not outputs of the command survive;
- a target the command wrote itself is accepted without --force, as each command documents it:
  reproduce continues a folder holding its ``config.json`` but needs --force once it holds
  ``results.csv``; sweep resumes; compile, bench and export replace their own output; predict
  cannot recognise its .npy and always needs --force;
- a reproduce folder is not a sweep's and vice versa.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from taugate.cli import main

REPRODUCE = ["reproduce", "--dataset", "digits", "--hidden", "8", "--seeds", "1", "--methods",
             "frozen", "--no-overlap", "--limit-train", "300", "--limit-test", "100",
             "--no-paper-steps", "-q", "--device", "cpu"]  # fmt: skip
SWEEP = ["sweep", "--dataset", "digits", "--widths", "8", "--lambdas", "0", "--seeds", "1",
         "--batch-sizes", "1", "--rounds", "3", "--foundation-epochs", "1", "--limit-test", "60",
         "--no-paper-steps", "--backends", "dense,rowskip", "-q"]  # fmt: skip
BENCH = ["bench", "--random", "16", "--active", "0.5", "--batch-sizes", "1", "--rounds", "3",
         "--backends", "dense,rowskip"]  # fmt: skip

# what a user may have left in a folder given as --out (none of it written by the command)
USER_FOLDERS = {
    "sweep.csv": {"sweep.csv": "width,lambda\n8,0\n"},
    "results.csv": {"results.csv": "method,acc\nmine,0.99\n"},
    "notes.txt": {"notes.txt": "keep me\n"},
    "nested": {"data/raw.bin": "\x00\x01binary", "README": "mine"},
}


# ------------------------------------------------------------------------------------ helpers


def _fill(folder: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for a folder)."""
    return {
        str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes())
        for p in sorted(root.rglob("*"))
    }


def _leftovers(root: Path) -> list[str]:
    """Temp files or folders the atomic writers and probes would leave behind."""
    return [
        str(p)
        for p in root.rglob("*")
        if p.name.startswith(".") or p.name.endswith((".tmp", ".old"))
    ]


def _error(capsys) -> str:
    """The one-line error on stderr."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("taugate: error: "), err
    return lines[0]


def _assert_refused(capsys, code: int, target: Path, *phrases: str) -> str:
    assert code == 2
    err = _error(capsys)
    assert str(target) in err, err
    assert "--force" in err, err
    for phrase in phrases:
        assert phrase in err, err
    return err


def _forbid(monkeypatch, *targets: str) -> None:
    def never(*_a, **_k):
        raise AssertionError("expensive work started before the output target was checked")

    for t in targets:
        monkeypatch.setattr(t, never)


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """The conftest's offline settings, also for the module-scoped runs below."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAUGATE_OFFLINE", "1")
        mp.setenv("TAUGATE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


# ------------------------------------------------------------------------------------ reproduce

REPRO_WORK = (
    "taugate.reproduce.run.load_study_data",
    "taugate.reproduce.run.run_seed",
    "taugate.device.select_device",
)


def _results(run: Path) -> list[dict]:
    """results.csv without its timing columns."""
    with open(run / "results.csv", newline="") as f:
        return [
            {k: v for k, v in r.items() if not k.endswith("_seconds")} for r in csv.DictReader(f)
        ]


def _reproduce(out, *extra) -> int:
    return main([*REPRODUCE, "--out", str(out), *map(str, extra)])


@pytest.fixture(scope="module")
def repro_run(tmp_path_factory, offline):
    """A finished reproduce run, into a path that did not exist (nor its parent)."""
    out = tmp_path_factory.mktemp("repro") / "new" / "run"
    assert _reproduce(out) == 0
    return out


def test_reproduce_writes_a_new_folder(repro_run):
    for rel in ("config.json", "results.csv", "tables/main.md", "figures/accuracy.png"):
        assert (repro_run / rel).stat().st_size > 0, rel
    meta = json.loads((repro_run / "config.json").read_text())
    assert isinstance(meta["config"], dict) and "data" in meta  # the marker of its folders
    assert not _leftovers(repro_run)


@pytest.mark.parametrize(
    "files",
    [*USER_FOLDERS.values(), {"config.json": '{"lr": 0.1}\n'}],  # a user's config.json
    ids=[*USER_FOLDERS, "user-config.json"],
)
def test_reproduce_refuses_a_users_folder(tmp_path, capsys, monkeypatch, files):
    _forbid(monkeypatch, *REPRO_WORK)
    out = _fill(tmp_path / "mine", files)
    before = _snapshot(tmp_path)
    _assert_refused(
        capsys, _reproduce(out), out, "was not written by taugate reproduce", "config.json"
    )
    assert _snapshot(tmp_path) == before
    assert not _leftovers(tmp_path)


def test_reproduce_refuses_a_file_as_out_even_with_force(tmp_path, capsys, monkeypatch):
    _forbid(monkeypatch, *REPRO_WORK)
    out = tmp_path / "run"
    out.write_text("a user's file\n")
    assert _reproduce(out, "--force") == 2
    err = _error(capsys)
    assert str(out) in err and "not a directory" in err, err
    assert out.read_text() == "a user's file\n" and not _leftovers(tmp_path)


def test_reproduce_force_writes_into_a_users_folder(tmp_path, capsys):
    out = _fill(tmp_path / "mine", {"notes.txt": "keep me\n", "data/raw.bin": "\x00mine",
                                    "results.csv": "method,acc\nmine,0.99\n"})  # fmt: skip
    assert _reproduce(out, "--force") == 0
    assert (out / "notes.txt").read_text() == "keep me\n"  # not a file the study writes
    assert (out / "data/raw.bin").read_text() == "\x00mine"
    assert (out / "results.csv").read_text().startswith("seed,method,")  # the study's (documented)
    assert "mine,0.99" not in (out / "results.csv").read_text()
    assert json.loads((out / "config.json").read_text())["config"]["hidden"] == [8]
    assert not _leftovers(tmp_path)


def test_reproduce_refuses_its_own_finished_run_without_force(repro_run, capsys, monkeypatch):
    # documented in taugate/reproduce/run.py: a folder it wrote that has no results.csv yet
    _forbid(monkeypatch, *REPRO_WORK)
    before = _snapshot(repro_run)
    _assert_refused(capsys, _reproduce(repro_run), repro_run, "already holds results.csv")
    assert _snapshot(repro_run) == before
    assert not _leftovers(repro_run)


def test_reproduce_continues_its_own_interrupted_run_without_force(tmp_path, capsys, monkeypatch):
    import taugate.reproduce.run as run_mod

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    out = tmp_path / "run"
    with monkeypatch.context() as mp:
        mp.setattr(run_mod, "run_seed", interrupted)
        assert _reproduce(out) == 130
    assert (out / "config.json").is_file() and not (out / "results.csv").exists()
    (out / "notes.txt").write_text("added by the user\n")
    assert _reproduce(out) == 0  # its own folder (config.json), no results yet: no --force
    assert (out / "results.csv").stat().st_size > 0
    assert (out / "notes.txt").read_text() == "added by the user\n"


def test_reproduce_force_replaces_its_own_results(repro_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(repro_run, out)
    (out / "results.csv").write_text("stale\n")
    (out / "notes.txt").write_text("added by the user\n")
    assert _reproduce(out, "--force") == 0
    assert _results(out) == _results(repro_run)  # rewritten, to the same (deterministic) rows
    assert (out / "notes.txt").read_text() == "added by the user\n"
    assert not _leftovers(tmp_path)


def test_reproduce_refuses_a_sweep_folder(sweep_run, tmp_path, capsys, monkeypatch):
    _forbid(monkeypatch, *REPRO_WORK)
    out = tmp_path / "sweep"
    shutil.copytree(sweep_run, out)
    before = _snapshot(out)
    for extra in ([], ["--no-save-models"]):
        _assert_refused(
            capsys, _reproduce(out, *extra), out, "was not written by taugate reproduce"
        )
    assert _snapshot(out) == before and not _leftovers(tmp_path)


# ------------------------------------------------------------------------------------ sweep

SWEEP_WORK = ("taugate.sweep.cells.CellRunner.__init__", "taugate.sweep.cells.CellRunner.run")


def _sweep(out, *extra) -> int:
    return main([*SWEEP, "--out", str(out), *map(str, extra)])


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory, offline):
    out = tmp_path_factory.mktemp("sweep") / "new" / "sweep"
    assert _sweep(out) == 0
    return out


def test_sweep_writes_a_new_folder(sweep_run):
    for rel in ("sweep_config.json", "sweep.csv", "sweep.json", "summary.md"):
        assert (sweep_run / rel).stat().st_size > 0, rel
    assert isinstance(json.loads((sweep_run / "sweep_config.json").read_text())["config"], dict)
    assert len(list((sweep_run / "cells").glob("*.json"))) == 1
    assert not _leftovers(sweep_run)


@pytest.mark.parametrize(
    "files",
    [*USER_FOLDERS.values(), {"sweep_config.json": "[1, 2]\n"}],  # a user's sweep_config.json
    ids=[*USER_FOLDERS, "user-sweep_config.json"],
)
@pytest.mark.parametrize("extra", [[], ["--resume"]], ids=["plain", "resume"])
def test_sweep_refuses_a_users_folder(tmp_path, capsys, monkeypatch, files, extra):
    _forbid(monkeypatch, *SWEEP_WORK)
    out = _fill(tmp_path / "mine", files)
    before = _snapshot(tmp_path)
    _assert_refused(
        capsys, _sweep(out, *extra), out, "was not written by taugate sweep", "sweep_config.json"
    )
    assert _snapshot(tmp_path) == before
    assert not _leftovers(tmp_path)


def test_sweep_refuses_a_file_as_out_even_with_force(tmp_path, capsys, monkeypatch):
    _forbid(monkeypatch, *SWEEP_WORK)
    out = tmp_path / "sweep"
    out.write_text("a user's file\n")
    assert _sweep(out, "--force") == 2
    err = _error(capsys)
    assert str(out) in err and "not a directory" in err, err
    assert out.read_text() == "a user's file\n" and not _leftovers(tmp_path)


def test_sweep_force_starts_over_in_a_users_folder(tmp_path, capsys):
    out = _fill(tmp_path / "mine", {"notes.txt": "keep me\n", "data/raw.bin": "\x00mine",
                                    "sweep.csv": "mine\n", "cells/old.json": "{}"})  # fmt: skip
    assert _sweep(out, "--force") == 0
    assert (out / "notes.txt").read_text() == "keep me\n"  # not a file the sweep writes
    assert (out / "data/raw.bin").read_text() == "\x00mine"
    assert (out / "sweep.csv").read_text().startswith("width,lambda,")
    assert not (out / "cells/old.json").exists()  # documented: --force deletes cells/ and co.
    assert len(list((out / "cells").glob("*.json"))) == 1
    assert not _leftovers(tmp_path)


def test_sweep_resumes_its_own_folder_without_force(sweep_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "sweep"
    shutil.copytree(sweep_run, out)
    (out / "notes.txt").write_text("added by the user\n")
    cells = _snapshot(out / "cells")
    monkeypatch.setattr(
        "taugate.sweep.cells.CellRunner.run",
        lambda *_a: pytest.fail("a finished cell was computed again"),
    )
    assert _sweep(out) == 0
    assert _snapshot(out / "cells") == cells
    assert (out / "notes.txt").read_text() == "added by the user\n"
    assert not _leftovers(tmp_path)


def test_sweep_refuses_its_own_folder_with_other_arguments_before_work(
    sweep_run, tmp_path, capsys, monkeypatch
):
    _forbid(monkeypatch, *SWEEP_WORK)
    out = tmp_path / "sweep"
    shutil.copytree(sweep_run, out)
    before = _snapshot(out)
    code = main([*SWEEP[:-1], "--lambdas", "0,0.1", "-q", "--out", str(out)])
    _assert_refused(capsys, code, out, "different arguments", "--resume")
    assert _snapshot(out) == before


def test_sweep_refuses_a_reproduce_folder(repro_run, tmp_path, capsys, monkeypatch):
    _forbid(monkeypatch, *SWEEP_WORK)
    out = tmp_path / "repro"
    shutil.copytree(repro_run, out)
    before = _snapshot(out)
    for extra in ([], ["--resume"]):
        _assert_refused(capsys, _sweep(out, *extra), out, "was not written by taugate sweep")
    assert _snapshot(out) == before and not _leftovers(tmp_path)


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
