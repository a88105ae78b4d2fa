"""ONNX export, the graph (``taugate.export``, ``CompiledModel.to_onnx`` / ``export_onnx``).

Checks that the exported graph is valid ONNX (full checker) with the documented opset, IR version,
input / output names and dynamic batch, gates as Greater + Where and plain hidden layers as Relu;
that onnxruntime computes the runtime's logits (and the float64 reference's) for random shapes and
thresholds, for compacted models and for a real trained fashion-mnist model on its whole test
split; that the metadata carries the manifest; and that exporting never imports torch. The
``taugate export`` command is checked in tests/test_export_cli.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import onnx
import pytest
from conftest import DATA_DIR, needs_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

import taugate
from taugate.cli import main
from taugate.errors import TauGateError
from taugate.export import to_onnx
from taugate.runtime import CompiledModel, load, random_model

try:
    from export_helpers import assert_close, compacted, dims, opset_of, props, run, session
    from reference import reference_forward
    from test_kernels import MODES, build, separate_ties
except ImportError:  # tests/ imported as a package
    from tests.export_helpers import assert_close, compacted, dims, opset_of, props, run, session
    from tests.reference import reference_forward
    from tests.test_kernels import MODES, build, separate_ties


# -- helpers ------------------------------------------------------------------------------------


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


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
