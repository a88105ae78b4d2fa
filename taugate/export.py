"""Export a compiled model to a standard ONNX graph, built from its arrays with the ``onnx`` package
(no torch): ``taugate export`` and ``CompiledModel.export_onnx``.

The graph, opset 17 (``ai.onnx``), input ``x`` float32 ``[batch, n_in]`` with a dynamic ``batch``
axis, output ``logits`` float32 ``[batch, n_out]``; per layer ``i``:

- ``z_i = Gemm(h, W_i, b_i, transB=1)``: ``h W_i^T + b_i`` with ``W_i`` stored (out, in) as in the
  artifact;
- gated hidden layer: ``h = Where(Greater(z_i, thr_i), z_i, 0)`` with ``thr_i = max(tau_i, 0)``:
  exactly ``relu(z) * 1[z > tau]``, the hard gate;
- ungated hidden layer: ``h = Relu(z_i)``;
- the last layer's ``z`` is ``logits``.

The model's ``metadata_props`` hold the manifest (``taugate.manifest``: layers, compaction,
provenance and compile record, as JSON), ``taugate.provenance`` and ``taugate.compile`` (each JSON),
``taugate.version`` and ``taugate.written_by`` (``taugate export``: how an existing file is known
to be one this command may overwrite). Every exported model passes ``onnx.checker`` (full check)
before it is written; the file is written atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from taugate.errors import TauGateError
from taugate.spec import ModelSpec

OPSET = 17  # ai.onnx opset of the graph (Gemm, Greater, Where, Relu are all in it)
IR_VERSION = 8  # the ONNX IR version that goes with opsets 17 and 18, readable by older runtimes
IR_VERSIONS = {19: 9, 20: 9, 21: 10}  # the IR versions the ONNX spec pairs with newer opsets
WRITTEN_BY = "taugate export"
PROTOBUF_LIMIT = (1 << 31) - (1 << 24)  # protobuf's 2 GiB message limit, less room for the graph
INPUT, OUTPUT = "x", "logits"


def require_onnx():
    """The ``onnx`` module, or a one-line error saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise TauGateError(
            "exporting to ONNX needs the onnx package, which is not installed: "
            "pip install 'taugate[onnx]'"
        ) from None
    return onnx


def to_onnx(spec: ModelSpec, manifest: dict | None = None, *, opset: int = OPSET):
    """``spec`` as a checked ``onnx.ModelProto`` (see the module docstring)."""
    onnx = require_onnx()
    from onnx import TensorProto, helper, numpy_helper

    from taugate import __version__

    if not isinstance(opset, int) or isinstance(opset, bool) or not 17 <= opset <= 21:
        raise TauGateError(f"opset must be an integer from 17 to 21, got {opset!r}")
    size = sum(w.nbytes + b.nbytes for w, b in zip(spec.weights, spec.biases, strict=True))
    if size > PROTOBUF_LIMIT:
        raise TauGateError(f"the model's {size / 2**30:.1f} GiB of weights exceed the 2 GiB an ONNX "
                           "file without external data can hold")  # fmt: skip
    nodes, inits = [], [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    h, last = INPUT, len(spec.layers) - 1
    for i, (layer, w, b) in enumerate(zip(spec.layers, spec.weights, spec.biases, strict=True)):
        inits += [numpy_helper.from_array(w, f"layers.{i}.weight"),  # (out, in)
                  numpy_helper.from_array(b, f"layers.{i}.bias")]  # fmt: skip
        z = OUTPUT if i == last else f"z{i}"
        nodes.append(helper.make_node("Gemm", [h, f"layers.{i}.weight", f"layers.{i}.bias"], [z],
                                      name=f"linear{i}", transB=1))  # fmt: skip
        if i == last:
            break
        if layer.gated:
            inits.append(numpy_helper.from_array(spec.thresholds[i], f"layers.{i}.threshold"))
            nodes.append(helper.make_node("Greater", [z, f"layers.{i}.threshold"], [f"open{i}"],
                                          name=f"gate{i}"))  # fmt: skip
            nodes.append(helper.make_node("Where", [f"open{i}", z, "zero"], [f"h{i}"],
                                          name=f"gated{i}"))  # fmt: skip
        else:
            nodes.append(helper.make_node("Relu", [z], [f"h{i}"], name=f"relu{i}"))
        h = f"h{i}"
    graph = helper.make_graph(
        nodes, "taugate",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", spec.sizes[0]])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", spec.sizes[-1]])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="taugate", producer_version=__version__)  # fmt: skip
    model.ir_version = IR_VERSIONS.get(opset, IR_VERSION)
    manifest = dict(manifest or {})
    try:
        meta = {
            "taugate.written_by": WRITTEN_BY,
            "taugate.version": __version__,
            "taugate.manifest": json.dumps(manifest, allow_nan=False),
            "taugate.provenance": json.dumps(manifest.get("provenance", {}), allow_nan=False),
            "taugate.compile": json.dumps(manifest.get("compile", {}), allow_nan=False),
        }
    except (TypeError, ValueError) as e:
        raise TauGateError(f"the manifest is not standard JSON ({e})") from None
    helper.set_model_props(model, meta)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:  # a bug here, not the user's input
        raise TauGateError(
            f"the exported graph fails onnx.checker: {str(e).splitlines()[0]}"
        ) from None
    return model


def written_by_export(path: Path) -> bool:
    """``path`` holds an ONNX model that ``taugate export`` wrote (its metadata says so)."""
    onnx = require_onnx()
    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception:  # not ONNX at all (onnx raises protobuf's DecodeError and others)
        return False
    return any(p.key == "taugate.written_by" and p.value == WRITTEN_BY for p in m.metadata_props)


def check_onnx_destination(out, *, force: bool = False) -> Path:
    """Refuse, before any work, an ``out`` this command may not write: a directory or special
    file, an unwritable folder, or (unless ``force``) a file that ``taugate export`` did not write."""
    from taugate.io import check_output_file

    target = check_output_file(out)
    if target.exists() and not force and not written_by_export(target):
        raise TauGateError(
            f"{out} exists and was not written by taugate export; refusing to overwrite it "
            "(pass --force to replace it)"
        )
    return target


def export_onnx(spec: ModelSpec, manifest: dict | None, out, *, opset: int = OPSET,
                force: bool = False) -> Path:  # fmt: skip
    """Write ``spec`` as an ONNX file at ``out`` (checked first, written atomically)."""
    from taugate.io import atomic_write_bytes

    if not isinstance(out, (str, os.PathLike)):
        raise TauGateError(f"output path must be a str or path, got {type(out).__name__}")
    check_onnx_destination(out, force=force)
    model = to_onnx(spec, manifest, opset=opset)
    return atomic_write_bytes(out, model.SerializeToString())
