"""The onnxruntime backend: built from the exported graph, with the benchmark's thread count."""

from __future__ import annotations

import numpy as np

from taugate.bench import ort_path
from taugate.runtime import random_model


def test_onnxruntime_backend_takes_the_threads_of_the_benchmark(monkeypatch):
    """--threads N reaches onnxruntime's session as intra- and inter-op threads (None: its own)."""
    import onnxruntime as ort

    seen = []
    real = ort.InferenceSession

    def spy(model_bytes, options, **kw):
        seen.append((options.intra_op_num_threads, options.inter_op_num_threads))
        return real(model_bytes, options, **kw)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    m = random_model([6, 4, 2], 0.5)
    x = np.zeros((1, 6), np.float32)
    for threads in (1, 2, None):
        ort_path.session(m, [x], type("Ctx", (), {"threads": threads})())()
    assert seen == [(1, 1), (2, 2), (0, 0)]  # 0: onnxruntime picks
