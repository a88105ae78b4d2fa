"""Artifact format v1: round trip, validation on read and on write, atomic writes."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
from safetensors.numpy import save_file

from taugate.artifact import MANIFEST, WEIGHTS, manifest_of, read_artifact, write_artifact
from taugate.errors import TauGateError
from taugate.spec import ModelSpec


def write(path, layers, tensors, extra=None, **kw):
    """write_artifact of a layer list + tensors + manifest extras (with the compaction keys)."""
    extra = dict(extra or {})
    spec = ModelSpec.from_tensors(layers, tensors, cast=True,
                                  kept_units=extra.pop("kept_units", None),
                                  original_layers=extra.pop("original_layers", None))  # fmt: skip
    return write_artifact(path, spec, extra, **kw)


def read(path):
    """(manifest without the sha256, tensors) of the artifact at ``path``."""
    spec, extra = read_artifact(path)
    return manifest_of(spec, extra), spec.tensors()


def small_model(seed: int = 0, sizes=(5, 4, 3, 2)):
    rng = np.random.default_rng(seed)
    layers, tensors = [], {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        last = i == len(sizes) - 2
        layers.append(
            {"in": n_in, "out": n_out, "gated": not last, "activation": "none" if last else "relu"}
        )
        tensors[f"layers.{i}.weight"] = rng.standard_normal((n_out, n_in)).astype(np.float32)
        tensors[f"layers.{i}.bias"] = rng.standard_normal(n_out).astype(np.float32)
        if not last:
            tensors[f"layers.{i}.tau"] = rng.standard_normal(n_out).astype(np.float32)
    return layers, tensors


@pytest.fixture
def art(tmp_path):
    layers, tensors = small_model()
    return write(tmp_path / "m.taugate", layers, tensors)


def edit_manifest(path, **changes):
    m = json.loads((path / MANIFEST).read_text())
    m.update(changes)
    (path / MANIFEST).write_text(json.dumps(m))


def rewrite_weights(path, tensors):
    """Replace the weights file and fix the manifest's sha256 so only the tensors are wrong."""
    save_file(tensors, str(path / WEIGHTS))
    edit_manifest(path, weights_sha256=hashlib.sha256((path / WEIGHTS).read_bytes()).hexdigest())


def test_round_trip_keeps_tensors_and_extra(tmp_path):
    layers, tensors = small_model()
    extra = {
        "kept_units": [[0, 2, 5, 6], [1, 2, 3]],
        "original_layers": [
            {"in": 5, "out": 8, "gated": True, "activation": "relu"},
            {"in": 8, "out": 4, "gated": True, "activation": "relu"},
            {"in": 4, "out": 2, "gated": False, "activation": "none"},
        ],
        "provenance": {"dataset": "mnist", "seed": 3},
        "compile": {"accuracy_before": 0.9, "accuracy_after": 0.9},
    }
    p = write(tmp_path / "m.taugate", layers, tensors, extra)
    assert sorted(os.listdir(p)) == [MANIFEST, WEIGHTS]
    assert os.listdir(tmp_path) == ["m.taugate"]  # no temp dirs left behind
    manifest, got = read(p)
    assert manifest["format"] == "taugate-mlp" and manifest["version"] == 1
    assert manifest["layers"] == layers
    for k, v in extra.items():
        assert manifest[k] == v
    assert got.keys() == tensors.keys()
    for k in tensors:
        assert got[k].dtype == np.float32
        np.testing.assert_array_equal(got[k], tensors[k])


def test_write_casts_float64_and_overwrites_an_artifact(tmp_path):
    layers, tensors = small_model()
    p = write(tmp_path / "m.taugate", layers, tensors)
    doubled = {k: (2 * v).astype(np.float64) for k, v in tensors.items()}
    write(p, layers, doubled)
    _, got = read(p)
    np.testing.assert_allclose(got["layers.0.weight"], 2 * tensors["layers.0.weight"])
    assert os.listdir(tmp_path) == ["m.taugate"]


def test_tampered_weights_fail_the_checksum(art):
    data = bytearray((art / WEIGHTS).read_bytes())
    data[-1] ^= 0xFF
    (art / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(TauGateError, match=r"weights\.safetensors.*sha256"):
        read(art)


def test_garbage_weights_with_matching_checksum(art):
    (art / WEIGHTS).write_bytes(b"not a safetensors file at all")
    edit_manifest(art, weights_sha256=hashlib.sha256((art / WEIGHTS).read_bytes()).hexdigest())
    with pytest.raises(TauGateError, match=r"weights\.safetensors: not a valid safetensors"):
        read(art)


def test_missing_tensor(art):
    _, tensors = small_model()
    del tensors["layers.1.tau"]
    rewrite_weights(art, tensors)
    with pytest.raises(TauGateError, match=r"missing tensor 'layers\.1\.tau'"):
        read(art)


def test_shape_disagreeing_with_manifest(art):
    _, tensors = small_model()
    tensors["layers.1.weight"] = np.zeros((3, 5), np.float32)
    rewrite_weights(art, tensors)
    with pytest.raises(
        TauGateError, match=r"'layers\.1\.weight' has shape \(3, 5\), expected \(3, 4\)"
    ):
        read(art)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"layers.0.bias": np.zeros(4, np.float64)}, r"'layers\.0\.bias' has dtype float64"),
        ({"layers.9.weight": np.zeros(2, np.float32)}, r"unexpected tensor 'layers\.9\.weight'"),
        ({"layers.0.weight": np.full((4, 5), np.nan, np.float32)}, r"contains NaN"),
    ],
)
def test_bad_tensors(art, change, pattern):
    _, tensors = small_model()
    tensors.update(change)
    rewrite_weights(art, tensors)
    with pytest.raises(TauGateError, match=pattern):
        read(art)


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"format": "onnx"}, r"manifest\.json: unknown format 'onnx'"),
        ({"version": 2}, r"manifest\.json: unsupported version 2"),
        ({"version": "1"}, r"unsupported version '1'"),
        ({"weights_sha256": "abc"}, r"weights_sha256"),
        ({"layers": []}, r"'layers' must be a non-empty list"),
        ({"kept_units": [[0], [0]]}, r"given together"),
    ],
)
def test_bad_manifest(art, changes, pattern):
    edit_manifest(art, **changes)
    with pytest.raises(TauGateError, match=pattern):
        read(art)


def test_manifest_not_json(art):
    (art / MANIFEST).write_text("{not json")
    with pytest.raises(TauGateError, match=r"manifest\.json: not valid JSON"):
        read(art)


@pytest.mark.parametrize(
    ("index", "entry", "pattern"),
    [
        (1, {"in": 3, "out": 3, "gated": True, "activation": "relu"}, r"layers must chain"),
        (1, {"in": "4", "out": 3, "gated": True, "activation": "relu"}, r"layers\[1\]\.in"),
        (1, {"in": 4, "out": 3, "gated": 1, "activation": "relu"}, r"layers\[1\]\.gated"),
        (1, {"in": 4, "out": 3, "gated": True, "activation": "tanh"}, r"activation"),
        (1, {"in": 4, "out": 3, "gated": True}, r"missing activation"),
        (2, {"in": 3, "out": 2, "gated": False, "activation": "relu"}, r"must be 'none'"),
        (0, {"in": 5, "out": 4, "gated": True, "activation": "none"}, r"must be 'relu'"),
    ],
)
def test_bad_layer_entries_on_read_and_write(art, tmp_path, index, entry, pattern):
    layers, tensors = small_model()
    layers[index] = entry
    edit_manifest(art, layers=layers)
    with pytest.raises(TauGateError, match=pattern):
        read(art)
    with pytest.raises(TauGateError, match=pattern):
        write(tmp_path / "other.taugate", layers, tensors)


def test_paths_that_are_not_artifacts(tmp_path):
    with pytest.raises(TauGateError, match="does not exist"):
        read(tmp_path / "nope.taugate")
    (tmp_path / "file").write_text("x")
    with pytest.raises(TauGateError, match="not a directory"):
        read(tmp_path / "file")
    (tmp_path / "half.taugate").mkdir()
    (tmp_path / "half.taugate" / MANIFEST).write_text("{}")
    with pytest.raises(TauGateError, match="has no weights.safetensors"):
        read(tmp_path / "half.taugate")


def test_write_refuses_to_clobber_other_things(tmp_path):
    layers, tensors = small_model()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.txt").write_text("keep me")
    for force in (False, True):  # a folder with other files is never replaced
        with pytest.raises(TauGateError, match="not part of an artifact.*even with --force"):
            write(tmp_path / "data", layers, tensors, force=force)
    assert (tmp_path / "data" / "precious.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(TauGateError, match="not written by taugate.*--force"):
        write(tmp_path / "file", layers, tensors)
    assert (tmp_path / "file").read_text() == "x"
    write(tmp_path / "file", layers, tensors, force=True)  # the user said so
    assert read(tmp_path / "file")[0]["layers"] == layers
    fake = tmp_path / "fake.taugate"  # artifact file names, but not taugate's manifest
    fake.mkdir()
    (fake / MANIFEST).write_text('{"format": "other"}')
    with pytest.raises(TauGateError, match="not written by taugate"):
        write(fake, layers, tensors)
    write(fake, layers, tensors, force=True)
    assert read(fake)[0]["format"] == "taugate-mlp"


def test_write_validates_before_writing(tmp_path):
    layers, tensors = small_model()
    bad = dict(tensors, **{"layers.0.weight": np.full((4, 5), np.inf, np.float32)})
    with pytest.raises(TauGateError, match=r"'layers\.0\.weight' contains NaN or inf"):
        write(tmp_path / "m.taugate", layers, bad)
    with pytest.raises(TauGateError, match="reserved"):
        write(tmp_path / "m.taugate", layers, tensors, {"version": 7})
    kept = {"kept_units": [[0, 1, 1, 2], [0, 1, 2]], "original_layers": layers}
    with pytest.raises(TauGateError, match=r"kept_units\[0\]"):
        write(tmp_path / "m.taugate", layers, tensors, kept)
    with pytest.raises(TauGateError, match="JSON"):
        write(tmp_path / "m.taugate", layers, tensors, {"provenance": {"x": object()}})
    assert os.listdir(tmp_path) == []


def test_crash_mid_write_leaves_nothing(tmp_path, monkeypatch):
    import safetensors.numpy

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.numpy, "save_file", boom)
    layers, tensors = small_model()
    with pytest.raises(TauGateError, match="No space left"):
        write(tmp_path / "m.taugate", layers, tensors)
    assert os.listdir(tmp_path) == []


def test_output_under_a_file_is_unwritable(tmp_path):
    (tmp_path / "file").write_text("x")
    layers, tensors = small_model()
    with pytest.raises(TauGateError, match="not writable"):
        write(tmp_path / "file" / "m.taugate", layers, tensors)


def test_unwritable_output_dir(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user (e.g. root) who can write anyway")
        layers, tensors = small_model()
        with pytest.raises(TauGateError, match="not writable"):
            write(locked / "m.taugate", layers, tensors)
    finally:
        locked.chmod(0o700)
