"""Helpers shared by tests/test_export_graph.py and tests/test_export_cli.py.

onnxruntime sessions and runs, the float32 closeness check, reading an exported graph's shapes,
opset and metadata, and a compacted model with its uncompacted twin.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from taugate.runtime import CompiledModel, random_model

try:
    from reference import reference_compact
    from test_kernels import separate_ties
except ImportError:  # tests/ imported as a package
    from tests.reference import reference_compact
    from tests.test_kernels import separate_ties

PROVIDERS = ["CPUExecutionProvider"]


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


def props(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


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
