"""The ``onnxruntime`` backend: the graph of ``taugate export`` in onnxruntime's CPU provider.

The session is what a deploying user would create: graph optimisations on (the default), intra-op
and inter-op threads set to the benchmark's ``--threads`` (left to onnxruntime when not given),
sequential execution, and ``session.run`` on a numpy array per call.
"""

from __future__ import annotations

import itertools

import numpy as np


def make_session(model, threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` of ``model``'s exported graph (built in memory)."""
    import onnxruntime as ort

    proto = model.to_onnx()
    opts = ort.SessionOptions()
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = threads
    return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def session(model, xs, ctx):
    from taugate.export import INPUT, OUTPUT

    sess = make_session(model, ctx.threads)
    nxt = itertools.cycle([np.ascontiguousarray(x, np.float32) for x in xs]).__next__
    outputs = [OUTPUT]
    return lambda: sess.run(outputs, {INPUT: nxt()})[0]
