"""Every Numba function of the mode bank's row-skipping forward pass (private; the validating
public functions are in :mod:`taugate.kernels.bank`).

One file on purpose, like :mod:`taugate.kernels._njit`: Numba's disk cache notices a change only in
the file that defines a cached function (numba/numba#1833), so nothing here calls a function of
another file.

The base weights use the layout of :mod:`taugate.kernels.layout` (one flat buffer ``p``, the
(L, 6) table ``meta``; its thresholds are not used). Each mode's gate lives in two (M, S) tables:
``thr[m, g_off[i] + j]`` is ``max(tau_j, 0)`` of unit ``j`` of hidden layer ``i`` in mode ``m``
(0 for an ungated relu layer) and ``gain[m, g_off[i] + j]`` its gamma (1 when ungated). A unit is
open iff ``z_j > thr``; it then adds ``gain * z_j`` times its row of the next layer, so gains are
applied in the gate pass (they cannot be folded into weights that every mode shares).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from taugate.kernels._cache import CACHE_ENABLED

# the same flags as taugate.kernels._njit: no nnan/ninf, thresholds may be +inf
FASTMATH = {"reassoc", "contract", "nsz"}
# columns of the layout table ``meta`` of taugate.kernels.layout (checked in kernels/bank.py)
N_IN, N_OUT, W_OFF, STRIDE, B_OFF = range(5)


def njit(parallel: bool = False):
    """``numba.njit`` with the project's flags: cached on disk, fastmath as above, no GIL."""
    flags = {"fastmath": FASTMATH, "boundscheck": False, "error_model": "numpy", "nogil": True}
    return numba.njit(cache=CACHE_ENABLED, parallel=parallel, **flags)


@njit()
def width(meta):
    """Scratch length that holds any layer's padded output and layer 0's input list."""
    w = meta[0, N_IN]
    for i in range(meta.shape[0]):
        w = max(w, meta[i, STRIDE])
    return w


@njit()
def collect_inputs(x, idx, vals):
    """Nonzero features of x as (idx, vals); returns (count, finite). Branch-free."""
    n = 0
    probe = np.float32(0.0)
    for k in range(x.shape[0]):
        v = x[k]
        idx[n] = k
        vals[n] = v
        n += v != 0.0
        probe += v * np.float32(0.0)  # NaN iff some feature is NaN or inf
    return n, probe == 0.0


@njit()
def count_inputs(x):
    """(nonzero features, finite) of x, for the batched path whose layer 0 BLAS computed."""
    n = 0
    probe = np.float32(0.0)
    for k in range(x.shape[0]):
        n += x[k] != 0.0
        probe += x[k] * np.float32(0.0)
    return n, probe == 0.0


@njit()
def load_bias(p, b_off, z, s):
    """z[:s] = b[:s] (padding included)."""
    for c in range(s):
        z[c] = p[b_off + c]


@njit()
def axpy(p, w_off, stride, idx, vals, n, z):
    """z[:stride] += sum_t vals[t] * WT[idx[t], :]; eight rows per pass (z loaded and stored once
    per eight rows read), rows as slices so that LLVM vectorises the inner loop."""
    m = stride
    t = 0
    while t + 8 <= n:
        a0, a1 = w_off + idx[t] * m, w_off + idx[t + 1] * m
        a2, a3 = w_off + idx[t + 2] * m, w_off + idx[t + 3] * m
        a4, a5 = w_off + idx[t + 4] * m, w_off + idx[t + 5] * m
        a6, a7 = w_off + idx[t + 6] * m, w_off + idx[t + 7] * m
        r0, r1, r2, r3 = p[a0 : a0 + m], p[a1 : a1 + m], p[a2 : a2 + m], p[a3 : a3 + m]
        r4, r5, r6, r7 = p[a4 : a4 + m], p[a5 : a5 + m], p[a6 : a6 + m], p[a7 : a7 + m]
        v0, v1, v2, v3 = vals[t], vals[t + 1], vals[t + 2], vals[t + 3]
        v4, v5, v6, v7 = vals[t + 4], vals[t + 5], vals[t + 6], vals[t + 7]
        for c in range(m):
            z[c] += (v0 * r0[c] + v1 * r1[c] + v2 * r2[c] + v3 * r3[c]) + (
                v4 * r4[c] + v5 * r5[c] + v6 * r6[c] + v7 * r7[c]
            )
        t += 8
    while t < n:
        a0 = w_off + idx[t] * m
        r0 = p[a0 : a0 + m]
        v0 = vals[t]
        for c in range(m):
            z[c] += v0 * r0[c]
        t += 1


@njit()
def gate(thr_m, gain_m, g0, n_out, z, idx, vals):
    """Units j < n_out with z_j > thr_m[g0 + j] as (idx, gain * z); returns the count.
    Branch-free: every unit is written, the count moves only past open ones."""
    n = 0
    for j in range(n_out):
        v = z[j]
        idx[n] = j
        vals[n] = v * gain_m[g0 + j]
        n += v > thr_m[g0 + j]
    return n


@njit()
def layers_from(p, meta, thr_m, gain_m, g_off, first, z, n, idx, vals, out, stats):
    """Given the open list (idx, vals, n) of layer ``first - 1``, run layers ``first`` .. L-1 in
    the mode whose tables are ``thr_m`` / ``gain_m``; the last one's sums are the logits."""
    L = meta.shape[0]
    for i in range(first, L):
        s = meta[i, STRIDE]
        load_bias(p, meta[i, B_OFF], z, s)
        axpy(p, meta[i, W_OFF], s, idx, vals, n, z)
        if i < L - 1:
            n = gate(thr_m, gain_m, g_off[i], meta[i, N_OUT], z, idx, vals)
            stats[i + 1] = n
    out[:] = z[: out.shape[0]]


@njit()
def one_sample(p, meta, thr_m, gain_m, g_off, x, out, stats, z, idx, vals, check):
    """Whole forward pass of one sample in one mode; stats = [input nonzeros, open per layer].
    Returns 1 if ``check`` and x is not finite (nothing else is computed then), else 0."""
    nz, ok = collect_inputs(x, idx, vals)
    stats[0] = nz
    if check and not ok:
        return 1
    s = meta[0, STRIDE]
    load_bias(p, meta[0, B_OFF], z, s)
    axpy(p, meta[0, W_OFF], s, idx, vals, nz, z)
    if meta.shape[0] == 1:
        out[:] = z[: out.shape[0]]
        return 0
    n = gate(thr_m, gain_m, g_off[0], meta[0, N_OUT], z, idx, vals)
    stats[1] = n
    layers_from(p, meta, thr_m, gain_m, g_off, 1, z, n, idx, vals, out, stats)
    return 0


# -- the two paths (entry points called by kernels.bank.run) ---------------------------------


@njit()
def one(p, meta, thr, gain, g_off, mode, x2, out2, stats2, check):
    """Batch-1 serial path in mode ``mode``: x (1, n_in), out (1, n_out), stats (1, L); returns 1
    if x is not finite."""
    w = width(meta)
    z, idx, vals = np.empty(w, np.float32), np.empty(w, np.int32), np.empty(w, np.float32)
    return one_sample(
        p, meta, thr[mode], gain[mode], g_off, x2[0], out2[0], stats2[0], z, idx, vals, check
    )


@njit(parallel=True)
def batch(p, meta, thr, gain, g_off, modes, x, z0, out, stats, bad, check, nth):
    """Batched path, row ``b`` in mode ``modes[b]``: chunks of rows run in parallel, each chunk
    with its own scratch buffers (each thread writes only its own buffers and its rows of
    ``out`` / ``stats`` / ``bad``).

    ``z0``: layer 0's pre-activations ``x @ W0.T + b0`` (B, out_0) from BLAS (layer 0 is the shared
    base, the same in every mode), or an empty (0, out_0) array: then each row runs the whole
    row-skipping pass here, zero inputs skipped.
    """
    B, L = x.shape[0], meta.shape[0]
    given = z0.shape[0] == B
    chunks = min(B, 4 * nth)
    w = width(meta)
    for c in prange(chunks):
        z, idx, vals = np.empty(w, np.float32), np.empty(w, np.int32), np.empty(w, np.float32)
        for b in range(c * B // chunks, (c + 1) * B // chunks):
            m = modes[b]
            thr_m, gain_m = thr[m], gain[m]
            if not given:
                bad[b] = one_sample(
                    p, meta, thr_m, gain_m, g_off, x[b], out[b], stats[b], z, idx, vals, check
                )
                continue
            nz, ok = count_inputs(x[b])
            stats[b, 0] = nz
            if check and not ok:
                bad[b] = 1
                continue
            if L == 1:
                out[b, :] = z0[b, :]
                continue
            n = gate(thr_m, gain_m, g_off[0], meta[0, N_OUT], z0[b], idx, vals)
            stats[b, 1] = n
            layers_from(p, meta, thr_m, gain_m, g_off, 1, z, n, idx, vals, out[b], stats[b])
