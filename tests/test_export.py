"""ONNX export (``taugate.export``, ``CompiledModel.to_onnx`` / ``export_onnx``, ``taugate export``).

Checks that the exported graph is valid ONNX (full checker) with the documented opset, IR version,
input / output names and dynamic batch, gates as Greater + Where and plain hidden layers as Relu;
that onnxruntime computes the runtime's logits (and the float64 reference's) for random shapes and
thresholds, for compacted models and for a real trained fashion-mnist model on its whole test
split; that the metadata carries the manifest; that exporting never imports torch; and that the
command writes, verifies and refuses exactly what it documents, with one-line errors and no temp
files left behind.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import DATA_DIR, needs_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

import taugate
from taugate.cli import main
from taugate.errors import TauGateError
from taugate.export import check_onnx_destination, export_onnx, to_onnx, written_by_export
from taugate.export_check import verify
from taugate.runtime import CompiledModel, load, random_model

try:
    from reference import reference_compact, reference_forward
    from test_kernels import MODES, build, separate_ties
except ImportError:  # tests/ imported as a package
    from tests.reference import reference_compact, reference_forward
    from tests.test_kernels import MODES, build, separate_ties

PROVIDERS = ["CPUExecutionProvider"]


# -- helpers ------------------------------------------------------------------------------------


def session(model_or_path) -> ort.InferenceSession:
    """An onnxruntime CPU session for an ``onnx.ModelProto`` or a file."""
    if isinstance(model_or_path, onnx.ModelProto):
        return ort.InferenceSession(model_or_path.SerializeToString(), providers=PROVIDERS)
    return ort.InferenceSession(str(model_or_path), providers=PROVIDERS)


def run(sess, x) -> np.ndarray:
    return sess.run(["logits"], {"x": np.ascontiguousarray(x, np.float32)})[0]


def assert_close(got, ref, rel=1e-4):
    """Equal up to float32 rounding, relative to the logits' scale."""
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(got, ref, rtol=0, atol=rel * scale)


def dims(value_info) -> list:
    """A graph input's / output's shape: dim_param names (str) or dim_value sizes (int)."""
    return [
        d.dim_param if d.HasField("dim_param") else d.dim_value
        for d in value_info.type.tensor_type.shape.dim
    ]


def opset_of(model: onnx.ModelProto, domain: str = "") -> int:
    (v,) = [o.version for o in model.opset_import if o.domain == domain]
    return v


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def props(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def mixed_model(seed=0):
    """A 9-7(gated)-6(ungated)-4 model from arrays: taus negative, zero, positive and +inf."""
    rng = np.random.default_rng(seed)
    layers = [
        {"in": 9, "out": 7, "gated": True, "activation": "relu"},
        {"in": 7, "out": 6, "gated": False, "activation": "relu"},
        {"in": 6, "out": 4, "gated": False, "activation": "none"},
    ]
    tensors = {}
    for i, e in enumerate(layers):
        tensors[f"layers.{i}.weight"] = rng.standard_normal((e["out"], e["in"])).astype(np.float32)
        tensors[f"layers.{i}.bias"] = (0.3 * rng.standard_normal(e["out"])).astype(np.float32)
    tensors["layers.0.tau"] = np.array([-1.0, 0.0, 0.4, 1.5, np.inf, -np.inf, 0.9], np.float32)
    extra = {
        "provenance": {"dataset": "fashion-mnist", "angle": 45.0, "method": "taugate", "seed": 3},
        "compile": {"calib_size": 2000, "units_kept": [7, 6], "accuracy_after": 0.8125},
    }
    return layers, tensors, CompiledModel.from_arrays(layers, tensors, extra)


def compacted(seed=0, x=None):
    """An original 12-20-10-4 model with the units outside ``kept`` never firing, and its
    compacted twin (same function; see ``compacted`` in tests/test_runtime.py). With ``x``, the
    thresholds are first moved clear of ties on ``x``."""
    orig = random_model([12, 20, 10, 4], active=0.6, seed=seed)
    t, kept = orig.tensors, [[0, 2, 3, 7, 11, 19], [1, 4, 9]]
    t["layers.0.tau"][np.setdiff1d(np.arange(20), kept[0])] = np.inf
    t["layers.1.tau"][np.setdiff1d(np.arange(10), kept[1])] = np.inf
    if x is not None:
        t = separate_ties(orig.layers, t, x)
    layers, small = reference_compact(orig.layers, t, kept)
    extra = {"kept_units": kept, "original_layers": orig.layers, "provenance": {"seed": seed}}
    return orig.layers, t, CompiledModel.from_arrays(layers, small, extra)


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


# -- 1. the graph ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sizes, active",
    [([3, 2], 0.5), ([784, 64, 64, 10], 0.3), ([20, 16, 1, 8, 5], 0.0), ([5, 300, 7], 1.0)],
)
def test_random_models_export_a_valid_graph(sizes, active):
    model = random_model(sizes, active, seed=7)
    m = model.to_onnx()
    onnx.checker.check_model(m, full_check=True)
    assert opset_of(m) == 17 and len(m.opset_import) == 1
    assert m.ir_version == 8
    g = m.graph
    assert [i.name for i in g.input] == ["x"] and [o.name for o in g.output] == ["logits"]
    assert dims(g.input[0]) == ["batch", sizes[0]]
    assert dims(g.output[0]) == ["batch", sizes[-1]]
    for v in (g.input[0], g.output[0]):
        assert v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    ops = [n.op_type for n in g.node]
    n_hidden = len(sizes) - 2
    assert ops.count("Gemm") == len(sizes) - 1
    assert ops.count("Greater") == ops.count("Where") == n_hidden  # random models: all gated
    assert "Relu" not in ops
    inits = initializers(m)
    for i, (w, b) in enumerate(zip(model.spec.weights, model.spec.biases, strict=True)):
        np.testing.assert_array_equal(inits[f"layers.{i}.weight"], w)  # (out, in), as stored
        np.testing.assert_array_equal(inits[f"layers.{i}.bias"], b)
        assert inits[f"layers.{i}.weight"].dtype == np.float32


def test_a_chosen_opset_is_used_and_bad_ones_are_refused():
    model = random_model([6, 5, 3], 0.5, seed=1)
    for opset in (18, 21):
        m = model.to_onnx(opset=opset)
        onnx.checker.check_model(m, full_check=True)
        assert opset_of(m) == opset and m.ir_version == {18: 8, 21: 10}[opset]  # the spec pairs
        x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
        assert_close(run(session(m), x), model.predict(x, backend="compact"))
    for bad in (16, 22, True, 17.0, "17"):
        with pytest.raises(TauGateError, match="opset must be an integer from 17 to 21"):
            model.to_onnx(opset=bad)


def test_gated_layers_are_greater_and_where_ungated_ones_relu():
    layers, tensors, model = mixed_model()
    m = model.to_onnx()
    onnx.checker.check_model(m, full_check=True)
    g, inits = m.graph, initializers(m)
    assert [n.op_type for n in g.node] == ["Gemm", "Greater", "Where", "Gemm", "Relu", "Gemm"]
    gemm0, greater, where, gemm1, relu, gemm2 = g.node
    for i, gemm in enumerate((gemm0, gemm1, gemm2)):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in gemm.attribute}
        assert attrs == {"transB": 1}  # h W^T + b, alpha = beta = 1, W stored (out, in)
        assert list(gemm.input[1:]) == [f"layers.{i}.weight", f"layers.{i}.bias"]
    # the wiring: x -> Gemm -> Greater(z, thr) + Where(open, z, 0) -> Gemm -> Relu -> Gemm -> logits
    assert gemm0.input[0] == "x" and gemm2.output[0] == "logits"
    z0 = gemm0.output[0]
    assert greater.input[0] == z0
    thr = inits[greater.input[1]]
    np.testing.assert_array_equal(thr, np.maximum(tensors["layers.0.tau"], 0))  # max(tau, 0)
    assert thr.dtype == np.float32 and thr.shape == (7,)
    assert where.input[0] == greater.output[0] and where.input[1] == z0
    zero = inits[where.input[2]]
    assert zero.shape == () and zero == 0.0 and zero.dtype == np.float32
    assert gemm1.input[0] == where.output[0]
    assert relu.input[0] == gemm1.output[0] and gemm2.input[0] == relu.output[0]
    assert [k for k in inits if "threshold" in k or "tau" in k] == [greater.input[1]]  # one gate
    # and it computes the reference, in onnxruntime and in onnx's own reference evaluator
    x = np.random.default_rng(1).standard_normal((50, 9)).astype(np.float32)
    tensors = separate_ties(layers, dict(tensors), x)
    model = CompiledModel.from_arrays(layers, tensors)
    m = model.to_onnx()
    ref = reference_forward(layers, tensors, x)
    assert_close(run(session(m), x), ref)
    from onnx.reference import ReferenceEvaluator

    assert_close(ReferenceEvaluator(m).run(["logits"], {"x": x})[0], ref)


def test_a_single_linear_layer_is_one_gemm():
    layers = [{"in": 4, "out": 3, "gated": False, "activation": "none"}]
    rng = np.random.default_rng(0)
    tensors = {"layers.0.weight": rng.standard_normal((3, 4)), "layers.0.bias": np.ones(3)}
    model = CompiledModel.from_arrays(layers, tensors)  # float64 in, stored as float32
    m = model.to_onnx()
    onnx.checker.check_model(m, full_check=True)
    assert [n.op_type for n in m.graph.node] == ["Gemm"]
    x = rng.standard_normal((5, 4)).astype(np.float32)
    assert_close(run(session(m), x), reference_forward(layers, tensors, x))


# -- 2. onnxruntime == runtime == reference, for random shapes ----------------------------------


@st.composite
def shapes(draw):
    n_hidden = draw(st.integers(1, 3))
    width = st.one_of(st.integers(1, 8), st.integers(1, 300))
    sizes = [draw(width) for _ in range(n_hidden + 2)]
    modes = [draw(st.sampled_from(MODES)) for _ in range(n_hidden)]
    return sizes, modes, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes())
def test_onnxruntime_matches_the_runtime_and_the_reference(case):
    sizes, modes, seed = case
    layers, tensors = build(sizes, modes, seed)  # taus from -1e30 to 1e30 and +inf; some ungated
    x = np.random.default_rng(seed + 1).standard_normal((300, sizes[0])).astype(np.float32)
    tensors = separate_ties(layers, tensors, x)
    model = CompiledModel.from_arrays(layers, tensors)
    sess = session(model.to_onnx())  # one session, three batch sizes: the batch axis is dynamic
    ref = reference_forward(layers, tensors, x)
    runtime = model.predict(x, backend="compact")
    for batch in (1, 7, 300):
        got = run(sess, x[:batch])
        assert got.shape == (batch, sizes[-1]) and got.dtype == np.float32
        assert_close(got, runtime[:batch])
        assert_close(got, ref[:batch])


# -- 3. compacted models ----------------------------------------------------------------------------


def test_a_compacted_model_exports_only_the_compacted_arrays():
    orig_layers, orig_tensors, model = compacted()
    assert model.sizes == [12, 6, 3, 4] and model.original_sizes == [12, 20, 10, 4]
    m = model.to_onnx()
    onnx.checker.check_model(m, full_check=True)
    shapes_ = {k: v.shape for k, v in initializers(m).items() if k != "zero"}
    assert shapes_ == {
        "layers.0.weight": (6, 12),
        "layers.0.bias": (6,),
        "layers.0.threshold": (6,),
        "layers.1.weight": (3, 6),
        "layers.1.bias": (3,),
        "layers.1.threshold": (3,),
        "layers.2.weight": (4, 3),
        "layers.2.bias": (4,),
    }
    assert dims(m.graph.input[0]) == ["batch", 12] and dims(m.graph.output[0]) == ["batch", 4]
    manifest = json.loads(props(m)["taugate.manifest"])
    assert manifest["kept_units"] == [[0, 2, 3, 7, 11, 19], [1, 4, 9]]
    assert manifest["original_layers"] == orig_layers
    x = np.random.default_rng(2).standard_normal((200, 12)).astype(np.float32)
    orig_layers, orig_tensors, model = compacted(x=x)
    got = run(session(model.to_onnx()), x)
    assert_close(got, model.predict(x, backend="compact"))
    assert_close(got, model.predict(x, backend="dense"))  # scattered back to the original sizes
    assert_close(got, reference_forward(orig_layers, orig_tensors, x))


# -- 4. a real trained model on the whole fashion-mnist test split --------------------------------


@needs_data
def test_real_fashion_mnist_model_in_onnxruntime(tmp_path, capsys):
    from taugate.data import load_dataset, rotated_split

    start = time.perf_counter()
    run_dir, art, out = tmp_path / "run", tmp_path / "fmnist.taugate", tmp_path / "fmnist.onnx"
    assert main(["reproduce", "--dataset", "fashion-mnist", "--data-dir", DATA_DIR, "--seeds",
                 "1", "--methods", "taugate", "--no-overlap", "--limit-train", "5000",
                 "--no-paper-steps", "--out", str(run_dir), "-q", "--device", "cpu"]) == 0  # fmt: skip
    ckpt = run_dir / "models/seed0/taugate.safetensors"
    assert main(["compile", str(ckpt), "--out", str(art), "--data-dir", DATA_DIR, "-q"]) == 0
    assert main(["export", str(art), "--out", str(out)]) == 0
    assert "onnxruntime" in capsys.readouterr().out

    model = load(art)
    prov = model.extra["provenance"]
    assert prov["dataset"] == "fashion-mnist" and prov["angle"] == 45.0
    ds = load_dataset("fashion-mnist", DATA_DIR)
    x, y = rotated_split(ds, "test", prov["angle"]), np.asarray(ds.y_test)
    assert x.shape == (10_000, 784)
    got = run(session(out), x)  # the whole split in one call
    ref = model.predict(x, backend="compact")
    scale = float(np.abs(ref).max())
    assert scale > 1.0  # real logits, not all zero
    assert float(np.abs(got - ref).max()) < 1e-4 * scale
    disagree = int((got.argmax(1) != ref.argmax(1)).sum())
    assert disagree <= 3, disagree
    acc_onnx, acc_runtime = float((got.argmax(1) == y).mean()), float((ref.argmax(1) == y).mean())
    assert abs(acc_onnx - acc_runtime) < 0.0005  # < 0.05 percentage points
    assert acc_onnx > 0.3  # well above chance (10 classes): a real model was exported
    # the compile record, which the metadata carries, measured the same accuracy on the same split
    meta = session(out).get_modelmeta().custom_metadata_map
    record = json.loads(meta["taugate.compile"])
    assert record == model.extra["compile"] and record["eval_size"] == 10_000
    assert abs(acc_onnx - record["accuracy_after"]) < 0.0005
    assert json.loads(meta["taugate.provenance"]) == prov
    assert time.perf_counter() - start < 60


# -- 5. metadata ------------------------------------------------------------------------------------


def test_metadata_holds_the_manifest_provenance_and_compile_record(tmp_path):
    _, _, model = mixed_model()
    path = model.export_onnx(tmp_path / "m.onnx")
    m = onnx.load(str(path))
    p = props(m)
    assert set(p) == {
        "taugate.provenance",
        "taugate.compile",
        "taugate.manifest",
        "taugate.version",
        "taugate.written_by",
    }
    assert json.loads(p["taugate.manifest"]) == model.manifest
    assert json.loads(p["taugate.provenance"]) == model.extra["provenance"]
    assert json.loads(p["taugate.provenance"])["angle"] == 45.0
    assert json.loads(p["taugate.compile"]) == model.extra["compile"]
    assert p["taugate.version"] == taugate.__version__
    assert p["taugate.written_by"] == "taugate export"
    assert m.producer_name == "taugate" and m.producer_version == taugate.__version__
    meta = session(path).get_modelmeta()
    assert meta.custom_metadata_map == p  # the same strings through onnxruntime
    assert meta.producer_name == "taugate"
    # a model without a compile record: an empty object, not a missing key
    p2 = props(random_model([4, 3, 2], 0.5, seed=2).to_onnx())
    assert json.loads(p2["taugate.compile"]) == {}
    assert json.loads(p2["taugate.provenance"])["method"] == "random"


def test_to_onnx_takes_a_spec_and_any_manifest():
    spec = random_model([4, 3, 2], 0.5).spec
    bare = to_onnx(spec)  # no manifest at all
    assert json.loads(props(bare)["taugate.manifest"]) == {}
    assert props(bare)["taugate.written_by"] == "taugate export"
    with pytest.raises((TauGateError, ValueError)):
        to_onnx(spec, {"provenance": {"x": float("nan")}})  # never non-standard JSON


# -- 6. no torch --------------------------------------------------------------------------------------


NO_TORCH = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import numpy as np
    import onnx
    import onnxruntime as ort

    from taugate.cli import main
    from taugate.runtime import random_model

    d = Path(sys.argv[1])
    m = random_model([30, 24, 16, 4], active=0.3)
    p = m.export_onnx(d / "api.onnx")
    onnx.checker.check_model(onnx.load(str(p)), full_check=True)
    m.save(d / "m.taugate")
    assert main(["export", str(d / "m.taugate"), "--out", str(d / "cli.onnx")]) == 0
    sess = ort.InferenceSession(str(d / "cli.onnx"), providers=["CPUExecutionProvider"])
    x = np.ones((3, 30), np.float32)
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], m.predict(x, "compact"), atol=1e-4)
    loaded = sorted(k for k in sys.modules if k == "torch" or k.startswith("torch."))
    assert not loaded, f"export imported torch: {loaded[:5]}"
    print("ok")
    """
)


def test_export_never_imports_torch(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "ok"
    assert (tmp_path / "api.onnx").is_file() and (tmp_path / "cli.onnx").is_file()


# -- 7. the command -----------------------------------------------------------------------------------


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


# -- 8. no onnx package -------------------------------------------------------------------------------


def test_missing_onnx_package_says_how_to_install_it(artifact, out_dir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    assert main(["export", str(artifact), "--out", str(out_dir / "m.onnx")]) == 2
    one_line_error(capsys, "needs the onnx package", "pip install 'taugate[onnx]'")
    assert listing(out_dir) == []
    with pytest.raises(TauGateError, match=r"pip install 'taugate\[onnx\]'"):
        random_model([4, 3, 2], 0.5).to_onnx()
