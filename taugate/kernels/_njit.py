"""Every Numba function of the row-skipping forward pass (private; the public wrappers, which
validate their inputs, are in :mod:`taugate.kernels.rowskip`).

All of them live in this one file on purpose: Numba's disk cache notices a change only in the file
that defines a cached function, not in the files of the functions it calls (numba/numba#1833), so
a kernel split across files could silently run stale code after an edit.

Weights live in one flat float32 buffer ``p``; layer ``i``'s transposed weight ``WT`` (in, out) is
``p[w_off + j * stride : w_off + j * stride + out]`` for input unit ``j``, with rows padded to
``stride`` (a multiple of 16) by zeros, so every loop below runs over whole 16-float blocks and
LLVM vectorises it without a scalar remainder. Biases are padded the same way.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from taugate.kernels._cache import CACHE_ENABLED

# reassoc/contract let reductions vectorise; no nnan/ninf: thresholds may be +inf, NaN is checked
FASTMATH = {"reassoc", "contract", "nsz"}
ALIGN = 16  # floats per 64-byte cache line; every block and weight row starts aligned
N_IN, N_OUT, W_OFF, STRIDE, B_OFF, T_OFF = range(6)  # columns of the (L, 6) layout table ``meta``


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
    """Nonzero features of x as (idx, vals) (zero features are skipped like shut units); returns
    (count, finite). The finiteness probe is its own loop, which vectorises; the list loop
    branches (measured 0.4-0.5 µs for 784 features of mnist / fashion-mnist images, against
    0.84 µs branch-free: image zeros come in runs the branch predictor follows)."""
    probe = np.float32(0.0)
    for k in range(x.shape[0]):
        probe += x[k] * np.float32(0.0)  # NaN iff some feature is NaN or inf
    n = 0
    for k in range(x.shape[0]):
        v = x[k]
        if v != 0.0:
            idx[n] = k
            vals[n] = v
            n += 1
    return n, probe == 0.0


@njit()
def count_inputs(x):
    """(nonzero features, finite) of x: the statistics of :func:`collect_inputs` without the list,
    in one loop that vectorises (for the batched path, whose layer 0 BLAS already computed)."""
    n = 0
    probe = np.float32(0.0)
    for k in range(x.shape[0]):
        n += x[k] != 0.0
        probe += x[k] * np.float32(0.0)  # NaN iff some feature is NaN or inf
    return n, probe == 0.0


@njit()
def load_bias(p, b_off, z, c0, c1):
    """z[c0:c1] = b[c0:c1] (padding included)."""
    for c in range(c0, c1):
        z[c] = p[b_off + c]


@njit()
def axpy(p, w_off, stride, idx, vals, n, z, c0, c1):
    """z[c0:c1] += sum_t vals[t] * WT[idx[t], c0:c1]; c0, c1 multiples of 16.

    Eight rows per pass, so z is loaded and stored once per eight rows read; the rows are array
    slices (not offsets into ``p``) so that LLVM vectorises the inner loop.
    """
    m = c1 - c0
    zs = z[c0:c1]
    o = w_off + c0
    t = 0
    while t + 8 <= n:
        a0, a1 = o + idx[t] * stride, o + idx[t + 1] * stride
        a2, a3 = o + idx[t + 2] * stride, o + idx[t + 3] * stride
        a4, a5 = o + idx[t + 4] * stride, o + idx[t + 5] * stride
        a6, a7 = o + idx[t + 6] * stride, o + idx[t + 7] * stride
        r0, r1, r2, r3 = p[a0 : a0 + m], p[a1 : a1 + m], p[a2 : a2 + m], p[a3 : a3 + m]
        r4, r5, r6, r7 = p[a4 : a4 + m], p[a5 : a5 + m], p[a6 : a6 + m], p[a7 : a7 + m]
        v0, v1, v2, v3 = vals[t], vals[t + 1], vals[t + 2], vals[t + 3]
        v4, v5, v6, v7 = vals[t + 4], vals[t + 5], vals[t + 6], vals[t + 7]
        for c in range(m):
            zs[c] += (v0 * r0[c] + v1 * r1[c] + v2 * r2[c] + v3 * r3[c]) + (
                v4 * r4[c] + v5 * r5[c] + v6 * r6[c] + v7 * r7[c]
            )
        t += 8
    while t + 2 <= n:
        a0, a1 = o + idx[t] * stride, o + idx[t + 1] * stride
        r0, r1 = p[a0 : a0 + m], p[a1 : a1 + m]
        v0, v1 = vals[t], vals[t + 1]
        for c in range(m):
            zs[c] += v0 * r0[c] + v1 * r1[c]
        t += 2
    if t < n:
        a0 = o + idx[t] * stride
        r0 = p[a0 : a0 + m]
        v0 = vals[t]
        for c in range(m):
            zs[c] += v0 * r0[c]


@njit()
def gate(p, t_off, c0, c1, z, idx, vals):
    """Units j in [c0, c1) with z_j > thr_j (thr = max(tau, 0)) as (idx, vals); returns the count.
    Branch-free like :func:`collect_inputs`; idx / vals need room for c1 - c0 entries."""
    n = 0
    for j in range(c0, c1):
        v = z[j]
        idx[n] = j
        vals[n] = v
        n += v > p[t_off + j]
    return n


@njit()
def layers_from(p, meta, first, z, n, idx, vals, out, stats):
    """Given the active list (idx, vals, n) of layer ``first - 1``, run layers ``first`` .. L-1:
    each starts from its bias, adds the active rows, gates; the last one's sums are the logits."""
    L = meta.shape[0]
    for i in range(first, L):
        s = meta[i, STRIDE]
        load_bias(p, meta[i, B_OFF], z, 0, s)
        axpy(p, meta[i, W_OFF], s, idx, vals, n, z, 0, s)
        if i < L - 1:
            n = gate(p, meta[i, T_OFF], 0, meta[i, N_OUT], z, idx, vals)
            stats[i + 1] = n
    out[:] = z[: out.shape[0]]


@njit()
def one_sample(p, meta, x, out, stats, z, idx, vals, check):
    """Whole forward pass of one sample, serially; stats = [input nonzeros, active per layer].
    Returns 1 if ``check`` and x is not finite (nothing else is computed then), else 0."""
    nz, ok = collect_inputs(x, idx, vals)
    stats[0] = nz
    if check and not ok:
        return 1
    s = meta[0, STRIDE]
    load_bias(p, meta[0, B_OFF], z, 0, s)
    axpy(p, meta[0, W_OFF], s, idx, vals, nz, z, 0, s)
    if meta.shape[0] == 1:
        out[:] = z[: out.shape[0]]
        return 0
    n = gate(p, meta[0, T_OFF], 0, meta[0, N_OUT], z, idx, vals)
    stats[1] = n
    layers_from(p, meta, 1, z, n, idx, vals, out, stats)
    return 0


# -- the three paths (entry points called by rowskip.run) ------------------------------------


@njit()
def one(p, meta, x2, out2, stats2, check):
    """Batch-1 serial path: x (1, n_in), out (1, n_out), stats (1, L); 1 if x is not finite."""
    w = width(meta)
    z, idx, vals = np.empty(w, np.float32), np.empty(w, np.int32), np.empty(w, np.float32)
    return one_sample(p, meta, x2[0], out2[0], stats2[0], z, idx, vals, check)


@njit()
def block(n, parts, t):
    """Start of block ``t`` when splitting range(n), n a multiple of 16, into 16-aligned parts."""
    return (t * (n // 16) // parts) * 16


@njit(parallel=True)
def one_par(p, meta, x2, out2, stats2, check, nth, layer_min):
    """Batch-1 threaded path (see the module docstring): the arguments of :func:`one`, the thread
    count and the work above which a layer after the first two is split across threads."""
    x, out, stats = x2[0], out2[0], stats2[0]
    L = meta.shape[0]
    w = width(meta)
    z, idx, vals = np.empty(w, np.float32), np.empty(w, np.int32), np.empty(w, np.float32)
    nz, ok = collect_inputs(x, idx, vals)
    stats[0] = nz
    if check and not ok:
        return 1
    s0, n0 = meta[0, STRIDE], meta[0, N_OUT]
    s1 = meta[1, STRIDE] if L > 1 else 16
    part = np.zeros((nth, s1), np.float32)  # (threads, out_1): each thread's layer-1 sums
    cnt = np.zeros(nth, np.int64)
    for t in prange(nth):
        c0, c1 = block(s0, nth, t), block(s0, nth, t + 1)
        load_bias(p, meta[0, B_OFF], z, c0, c1)
        axpy(p, meta[0, W_OFF], s0, idx, vals, nz, z, c0, c1)  # this thread's columns of z
        hi = min(c1, n0)
        if L > 1 and hi > c0:
            li, lv = np.empty(hi - c0, np.int32), np.empty(hi - c0, np.float32)
            k = gate(p, meta[0, T_OFF], c0, hi, z, li, lv)
            cnt[t] = k
            axpy(p, meta[1, W_OFF], s1, li, lv, k, part[t], 0, s1)
    if L == 1:
        out[:] = z[: out.shape[0]]
        return 0
    stats[1] = cnt.sum()
    i = 1
    while True:  # z = bias + the threads' partial sums of layer i; gate; next layer
        load_bias(p, meta[i, B_OFF], z, 0, meta[i, STRIDE])
        for t in range(part.shape[0]):
            for c in range(meta[i, STRIDE]):
                z[c] += part[t, c]
        if i == L - 1:
            break
        n = gate(p, meta[i, T_OFF], 0, meta[i, N_OUT], z, idx, vals)
        stats[i + 1] = n
        i += 1
        s = meta[i, STRIDE]
        if n * s < layer_min:  # too little work to share: finish serially
            layers_from(p, meta, i, z, n, idx, vals, out, stats)
            return 0
        part = np.zeros((nth, s), np.float32)  # (threads, out_i)
        for t in prange(nth):
            lo, hi = t * n // nth, (t + 1) * n // nth
            axpy(p, meta[i, W_OFF], s, idx[lo:hi], vals[lo:hi], hi - lo, part[t], 0, s)
    out[:] = z[: out.shape[0]]
    return 0


@njit(parallel=True)
def batch(p, meta, x, z0, out, stats, bad, check, nth):
    """Batched path; chunks of samples run in parallel, each chunk with its own buffers.

    ``z0``: layer 0's pre-activations ``x @ W0.T + b0`` (B, out_0) computed by BLAS, or an empty
    (0, out_0) array: then every sample runs the whole row-skipping pass here, zero inputs skipped.
    """
    B, L = x.shape[0], meta.shape[0]
    given = z0.shape[0] == B
    chunks = min(B, 4 * nth)
    w = width(meta)
    for c in prange(chunks):
        z, idx, vals = np.empty(w, np.float32), np.empty(w, np.int32), np.empty(w, np.float32)
        for b in range(c * B // chunks, (c + 1) * B // chunks):
            xb = x[b]
            if not given:
                bad[b] = one_sample(p, meta, xb, out[b], stats[b], z, idx, vals, check)
                continue
            nz, ok = count_inputs(xb)
            stats[b, 0] = nz
            if check and not ok:
                bad[b] = 1
                continue
            if L == 1:
                out[b, :] = z0[b, :]
                continue
            n = gate(p, meta[0, T_OFF], 0, meta[0, N_OUT], z0[b], idx, vals)
            stats[b, 1] = n
            layers_from(p, meta, 1, z, n, idx, vals, out[b], stats[b])


@njit(parallel=True)
def batch_blocked(p, meta, x, z0, out, stats, bad, check, block_bytes):
    """Batched path, layer by layer over the whole batch, columns in blocks (``rowskip-batched``).

    Per sample the work is the per-sample path's: each layer adds the rows of its sample's open
    units. But a layer's output columns are split into blocks of ``block_bytes`` of every row, and
    all samples go through one block before the next starts: a block's row slices (at most
    ``block_bytes`` in all, sized to stay in the L3 cache) are read from memory once per batch and
    from the cache by every other sample, where the per-sample path reads a wide layer's active rows
    from memory once per sample. Threads take whole column blocks (each writes its own columns
    of every sample's sums), then whole samples for the gate. ``z0`` as in :func:`batch`.
    """
    B, L = x.shape[0], meta.shape[0]
    given = z0.shape[0] == B
    w = width(meta)
    z = np.empty((B, w), np.float32)  # (B, widest padded layer): every sample's sums
    idx, vals = np.empty((B, w), np.int32), np.empty((B, w), np.float32)  # (B, w) open units
    n = np.zeros(B, np.int64)  # (B,) open units (layer 0: nonzero features) per sample
    for b in prange(B):
        if given:
            nz, ok = count_inputs(x[b])
        else:
            nz, ok = collect_inputs(x[b], idx[b], vals[b])
        stats[b, 0] = nz
        bad[b] = check and not ok
        n[b] = 0 if bad[b] else nz
        if given and not bad[b] and L > 1:
            n[b] = gate(p, meta[0, T_OFF], 0, meta[0, N_OUT], z0[b], idx[b], vals[b])
            stats[b, 1] = n[b]
    for i in range(1 if given else 0, L):
        s, k_in = meta[i, STRIDE], meta[i, N_IN]
        cw = max(16, min(s, block_bytes // (4 * k_in) // 16 * 16))  # columns per block
        nblk = (s + cw - 1) // cw
        for c in prange(nblk):
            c0, c1 = c * cw, min(s, (c + 1) * cw)
            for b in range(B):
                zb = z[b]
                load_bias(p, meta[i, B_OFF], zb, c0, c1)
                axpy(p, meta[i, W_OFF], s, idx[b], vals[b], n[b], zb, c0, c1)
        if i < L - 1:
            for b in prange(B):
                n[b] = 0 if bad[b] else gate(p, meta[i, T_OFF], 0, meta[i, N_OUT], z[b], idx[b],
                                             vals[b])  # fmt: skip
                stats[b, i + 1] = n[b]
    for b in range(B):
        out[b, :] = z[b, : out.shape[1]]
