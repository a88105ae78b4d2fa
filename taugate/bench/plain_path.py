"""The ``plain-numba`` backend: the straightforward Numba kernel a new user would write first, kept
as a peer for row-skip. Layer 0 is one numpy BLAS product (``W0 @ x``: GEMV for one input, GEMM
for a batch); every later layer starts from its bias and adds ``z_j * W.T[j]`` for the units
whose gate is open, one row at a time, sample by sample."""

from __future__ import annotations

import itertools

import numba
import numpy as np

from taugate.kernels._cache import CACHE_ENABLED


@numba.njit(cache=CACHE_ENABLED, fastmath=True, boundscheck=False, nogil=True)
def _rows(z, thr, wt, b):
    """(B, out) = b + sum over units j of z[:, j] with z[:, j] > thr[j] of z[:, j] * wt[j]."""
    out = np.empty((z.shape[0], wt.shape[1]), np.float32)  # (B, out)
    for s in range(z.shape[0]):
        h = b.copy()
        for j in range(z.shape[1]):
            v = z[s, j]
            if v > thr[j]:
                h += v * wt[j]
        out[s] = h
    return out


def plain(model, xs, ctx):
    spec = model.spec
    w0, b0 = spec.weights[0], spec.biases[0]
    wts = [np.ascontiguousarray(w.T) for w in spec.weights[1:]]  # (in, out) per later layer
    thr = [np.asarray(t, np.float32) for t in spec.thresholds]
    nxt = itertools.cycle([np.ascontiguousarray(x, np.float32) for x in xs]).__next__

    def run():
        z = nxt() @ w0.T + b0  # (B, out_0)
        for i, wt in enumerate(wts):
            z = _rows(z, thr[i], wt, spec.biases[i + 1])  # (B, out_{i+1})
        return z

    return run
