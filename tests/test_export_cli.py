"""ONNX export, the command (``taugate export``) and ``export_onnx``'s errors.

Checks that the command writes, verifies (against the runtime, in onnxruntime) and prints exactly
what it documents, with ``--opset`` and ``--no-verify``; that it refuses bad opsets, missing or
tampered artifacts and unwritable destinations, and a file it did not write unless ``--force``
(while replacing its own output), with one-line errors and no temp files left behind; and that a
missing onnx package says how to install it. The graph itself is checked in
tests/test_export_graph.py.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from taugate.cli import main
from taugate.errors import TauGateError
from taugate.export import check_onnx_destination, export_onnx, written_by_export
from taugate.export_check import verify
from taugate.runtime import load, random_model

try:
    from export_helpers import assert_close, compacted, dims, opset_of, props, run, session
except ImportError:  # tests/ imported as a package
    from tests.export_helpers import assert_close, compacted, dims, opset_of, props, run, session


# -- helpers ------------------------------------------------------------------------------------


def listing(d: Path) -> list[str]:
    """Every name in ``d`` (hidden temp files included)."""
    return sorted(os.listdir(d))


def one_line_error(capsys, *fragments) -> str:
    """The command's stderr: exactly one ``taugate: error:`` line holding every fragment."""
    cap = capsys.readouterr()
    lines = cap.err.splitlines()
    assert len(lines) == 1, cap.err
    assert lines[0].startswith("taugate: error: "), cap.err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert cap.out == ""
    return lines[0]


# -- 1. the command -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    """A compacted 12-6-3-4 artifact."""
    _, _, model = compacted(seed=5)
    return model.save(tmp_path_factory.mktemp("art") / "m.taugate")


@pytest.fixture
def out_dir(tmp_path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


VERIFIED = re.compile(
    r"^onnxruntime (\S+): max \|logit diff\| vs the runtime (\S+) on 65 random inputs "
    r"\(batch 1 and 64\), argmax agrees on 100\.0 %$"
)


def test_export_writes_verifies_and_prints(artifact, out_dir, capsys):
    out = out_dir / "m.onnx"
    assert main(["export", str(artifact), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, lines
    size_kib = f"{out.stat().st_size / 1024:,.0f} KiB"
    assert lines[0] == f"wrote {out}: 12-6-3-4, opset 17, dynamic batch, {size_kib}"
    match = VERIFIED.match(lines[1])
    assert match, lines[1]
    assert match[1] == ort.__version__ and float(match[2]) < 1e-5
    assert listing(out_dir) == ["m.onnx"]  # no temp or probe file left
    model = load(artifact)
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    assert json.loads(props(m)["taugate.manifest"]) == model.manifest
    x = np.random.default_rng(3).standard_normal((9, 12)).astype(np.float32)
    assert_close(run(session(out), x), model.predict(x, backend="compact"))


def test_export_with_opset_18_and_no_verify(artifact, out_dir, capsys):
    out = out_dir / "m.onnx"
    assert main(["export", str(artifact), "--out", str(out), "--opset", "18", "--no-verify"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "opset 18" in lines[0] and "onnxruntime" not in lines[0]
    assert opset_of(onnx.load(str(out))) == 18
    assert listing(out_dir) == ["m.onnx"]


def test_export_without_onnxruntime_says_it_did_not_verify(artifact, out_dir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    assert main(["export", str(artifact), "--out", str(out_dir / "m.onnx")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "not verified: onnxruntime is not installed (pip install 'taugate[onnx]')"
    assert verify(load(artifact), out_dir / "m.onnx") is None


def test_verify_catches_a_file_of_another_model(artifact, out_dir):
    other = random_model([12, 6, 3, 4], 0.5, seed=99)
    path = other.export_onnx(out_dir / "other.onnx")
    with pytest.raises(
        TauGateError, match=r"other\.onnx: backend onnxruntime disagrees with the runtime"
    ):
        verify(load(artifact), path)
    res = verify(other, path)
    assert res["rows"] == 65 and res["max_abs_diff"] < 1e-5 and res["argmax_agree"] == 1.0


def test_opset_below_17_is_refused_by_argparse(artifact, out_dir, capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", str(artifact), "--out", str(out_dir / "m.onnx"), "--opset", "16"])
    assert e.value.code == 2
    assert "--opset must be >= 17" in capsys.readouterr().err
    assert listing(out_dir) == []


def test_opset_above_21_is_refused_by_argparse(artifact, out_dir, capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", str(artifact), "--out", str(out_dir / "m.onnx"), "--opset", "22"])
    assert e.value.code == 2
    assert "--opset must be from 17 to 21, got '22'" in capsys.readouterr().err
    assert listing(out_dir) == []


def test_missing_artifact(out_dir, capsys):
    missing = out_dir.parent / "nope.taugate"
    assert main(["export", str(missing), "--out", str(out_dir / "m.onnx")]) == 2
    one_line_error(capsys, str(missing), "does not exist")
    assert listing(out_dir) == []


def test_tampered_weights(artifact, tmp_path, out_dir, capsys):
    import shutil

    bad = Path(shutil.copytree(artifact, tmp_path / "bad.taugate"))
    w = bad / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-3] ^= 0x01  # one bit of one weight
    w.write_bytes(bytes(data))
    assert main(["export", str(bad), "--out", str(out_dir / "m.onnx")]) == 2
    one_line_error(capsys, "weights.safetensors", "sha256")
    assert listing(out_dir) == []


def test_output_inside_a_regular_file(artifact, out_dir, capsys):
    (out_dir / "file").write_text("not a folder")
    for out in (out_dir / "file" / "m.onnx", out_dir / "file" / "sub" / "m.onnx"):
        assert main(["export", str(artifact), "--out", str(out)]) == 2
        one_line_error(capsys, "not writable", "is not a directory")
    assert listing(out_dir) == ["file"] and (out_dir / "file").read_text() == "not a folder"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_output_in_an_unwritable_place(artifact, capsys):
    # /proc takes no new files, even for root (who can write into any chmod 0o500 folder)
    for out in ("/proc/taugate-test.onnx", "/proc/taugate-test/m.onnx"):
        assert main(["export", str(artifact), "--out", out]) == 2
        one_line_error(capsys, "not writable")
        assert not os.path.exists(out)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_output_in_a_read_only_folder(artifact, out_dir, capsys):
    ro = out_dir / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["export", str(artifact), "--out", str(ro / "m.onnx")]) == 2
        one_line_error(capsys, "not writable")
        assert listing(ro) == []
    finally:
        ro.chmod(0o700)


def test_output_is_a_directory(artifact, out_dir, capsys):
    (out_dir / "m.onnx").mkdir()
    assert main(["export", str(artifact), "--out", str(out_dir / "m.onnx")]) == 2
    one_line_error(capsys, "is a directory")
    assert listing(out_dir) == ["m.onnx"] and listing(out_dir / "m.onnx") == []


def foreign_onnx(path: Path) -> bytes:
    """A valid ONNX file (Identity) that taugate export did not write."""
    from onnx import TensorProto, helper

    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 12]) for n in ("x", "logits")]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["logits"])], "g", vi[:1], vi[1:]
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    helper.set_model_props(m, {"taugate.written_by": "someone else"})
    data = m.SerializeToString()
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("kind", ["text", "empty", "foreign-onnx"])
def test_a_file_export_did_not_write_is_kept_unless_force(artifact, out_dir, capsys, kind):
    out = out_dir / "m.onnx"
    if kind == "foreign-onnx":
        before = foreign_onnx(out)
    else:
        before = b"my notes\n" if kind == "text" else b""
        out.write_bytes(before)
    assert not written_by_export(out)
    assert main(["export", str(artifact), "--out", str(out)]) == 2
    one_line_error(capsys, str(out), "not written by taugate export", "--force")
    assert out.read_bytes() == before and listing(out_dir) == ["m.onnx"]
    with pytest.raises(TauGateError, match="not written by taugate export"):
        load(artifact).export_onnx(out)
    assert out.read_bytes() == before
    assert main(["export", str(artifact), "--out", str(out), "--force", "--no-verify"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: 12-6-3-4")
    assert written_by_export(out) and listing(out_dir) == ["m.onnx"]
    assert dims(onnx.load(str(out)).graph.input[0]) == ["batch", 12]


def test_a_file_export_wrote_is_replaced_without_force(artifact, out_dir, capsys):
    out = out_dir / "m.onnx"
    random_model([5, 4, 2], 0.5, seed=1).export_onnx(out)  # an earlier export, another model
    assert written_by_export(out)
    assert main(["export", str(artifact), "--out", str(out), "--no-verify"]) == 0
    assert dims(onnx.load(str(out)).graph.input[0]) == ["batch", 12]  # the new model
    assert listing(out_dir) == ["m.onnx"]
    assert check_onnx_destination(out) == out  # and may be replaced again


def test_the_destination_is_checked_before_the_artifact_is_read(out_dir, capsys):
    (out_dir / "m.onnx").write_text("keep me")
    assert main(["export", str(out_dir / "nope.taugate"), "--out", str(out_dir / "m.onnx")]) == 2
    one_line_error(capsys, "not written by taugate export")  # not "does not exist"


def test_export_onnx_api_errors(tmp_path):
    spec = random_model([4, 3, 2], 0.5).spec
    with pytest.raises(TauGateError, match="output path must be a str or path, got int"):
        export_onnx(spec, {}, 123)
    with pytest.raises(TauGateError, match="is a directory"):
        export_onnx(spec, {}, tmp_path)
    with pytest.raises(TauGateError, match="opset must be an integer"):
        export_onnx(spec, {}, tmp_path / "m.onnx", opset=30)
    assert listing(tmp_path) == []  # a bad opset is caught before anything is written


# -- 2. no onnx package -------------------------------------------------------------------------------


def test_missing_onnx_package_says_how_to_install_it(artifact, out_dir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    assert main(["export", str(artifact), "--out", str(out_dir / "m.onnx")]) == 2
    one_line_error(capsys, "needs the onnx package", "pip install 'taugate[onnx]'")
    assert listing(out_dir) == []
    with pytest.raises(TauGateError, match=r"pip install 'taugate\[onnx\]'"):
        random_model([4, 3, 2], 0.5).to_onnx()
