"""Check an exported ONNX file in onnxruntime against the runtime, on random inputs."""

from __future__ import annotations

import numpy as np

from taugate.errors import TauGateError


def verify(model, path, rows: int = 65, seed: int = 0, atol: float = 1e-3) -> dict | None:
    """Run ``path`` in onnxruntime at batch 1 and ``rows - 1`` and compare with
    ``model.predict(backend="compact")``; None when onnxruntime is not installed. A difference
    beyond ``atol`` (relative to the logits' scale) on more than one input in a thousand, where a
    near-threshold unit may flip, is an error."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    from taugate.export import INPUT

    x = np.random.default_rng(seed).standard_normal((rows, model.n_in)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = np.concatenate([sess.run(None, {INPUT: x[:1]})[0], sess.run(None, {INPUT: x[1:]})[0]])
    ref = model.predict(x, backend="compact")  # (rows, n_out)
    scale = max(1.0, float(np.abs(ref).max()))
    diff = np.abs(got - ref).max(axis=1)  # (rows,)
    bad = int((diff > atol * scale).sum())
    if bad > max(0, rows // 1000):
        raise TauGateError(f"{path}: onnxruntime's logits differ from the runtime's on {bad} of "
                           f"{rows} random inputs (max |diff| {diff.max():.3g})")  # fmt: skip
    return {"onnxruntime": ort.__version__, "rows": rows, "max_abs_diff": float(diff.max()),
            "argmax_agree": float((got.argmax(1) == ref.argmax(1)).mean())}  # fmt: skip
