"""Check an exported ONNX file in onnxruntime against the runtime, on random inputs."""

from __future__ import annotations

import numpy as np

from taugate.agreement import check_agreement
from taugate.errors import TauGateError


def verify(model, path, rows: int = 65, seed: int = 0) -> dict | None:
    """Run ``path`` in onnxruntime at batch 1 and ``rows - 1`` and compare with
    ``model.predict(backend="compact")`` (see :func:`taugate.agreement.check_agreement`: equal
    but on inputs where a gate ties with its threshold); None when onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    from taugate.export import INPUT

    x = np.random.default_rng(seed).standard_normal((rows, model.n_in)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = np.concatenate([sess.run(None, {INPUT: x[:1]})[0], sess.run(None, {INPUT: x[1:]})[0]])
    ref = model.predict(x, backend="compact")  # (rows, n_out)
    if got.shape != ref.shape:
        raise TauGateError(
            f"{path}: onnxruntime gives logits of shape {got.shape}, the runtime {ref.shape}"
        )
    try:
        check_agreement(model.spec, x, {"the runtime": ref, "onnxruntime": got})
    except TauGateError as e:
        raise TauGateError(f"{path}: {e}") from None
    diff = np.abs(got - ref).max(axis=1)  # (rows,)
    return {"onnxruntime": ort.__version__, "rows": rows, "max_abs_diff": float(diff.max()),
            "argmax_agree": float((got.argmax(1) == ref.argmax(1)).mean())}  # fmt: skip
