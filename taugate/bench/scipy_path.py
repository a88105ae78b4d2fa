"""The ``scipy-sparse`` backend: layer 0 with BLAS, then the hard-gated activations of each hidden
layer as a ``scipy.sparse`` CSR matrix multiplied into the next (compacted) weight matrix."""

from __future__ import annotations

import itertools

import numpy as np


def csr(model, xs, ctx):
    from scipy import sparse

    spec = model.spec
    wts = [np.ascontiguousarray(w.T) for w in spec.weights]  # (in, out), C order for CSR @ dense
    L = len(wts)
    nxt = itertools.cycle([np.ascontiguousarray(x, np.float32) for x in xs]).__next__

    def run():
        z = nxt() @ wts[0] + spec.biases[0]  # (B, out_0)
        h = np.where(z > spec.thresholds[0], z, np.float32(0)) if L > 1 else z
        for i in range(1, L):
            z = np.asarray(sparse.csr_matrix(h) @ wts[i]) + spec.biases[i]  # (B, out_i)
            h = np.where(z > spec.thresholds[i], z, np.float32(0)) if i < L - 1 else z
        return h

    return run
