"""Every Numba function of the predicted-gate MLP pass (``rowskip-predicted``; private, behind
:mod:`taugate.kernels.predicted`).

Self-contained on purpose, like :mod:`taugate.kernels._njit`: Numba's disk cache notices an edit
only in the file that defines a cached function (numba/numba#1833), so the few helpers this pass
shares with the exact one are copied here rather than imported.

Two flat float32 buffers: ``p`` and ``meta`` are the exact kernel's (:class:`~.layout.Packed`:
transposed weight rows, biases, thresholds); ``q`` and ``qm`` hold, per hidden layer with a
predictor, the low-rank factors and the layer's weight in row order (one contiguous row per
*output* unit, for the exact dot products of the units the predictor marks):

    qm[i] = (rank, padded rank, A^T rows (rank, sin), B rows (rank, out stride), cut (out stride),
             W rows (out, sin), sin); rank 0: no predictor, the exact row-skip step.

Per sample and predicted layer: ``t = x A`` (rank dot products with the rows of A^T),
``z_hat = b + t B`` (rank axpys of output-wide rows), the candidates ``z_hat_j > cut_j`` (cut =
thr - margin * sigma, -inf for margin +inf: every unit), then for each candidate the exact
``z_j = b_j + W_j . x`` (a dense dot over the zero-padded input) and the exact gate ``z_j > thr_j``.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from taugate.kernels._cache import CACHE_ENABLED

FASTMATH = {"reassoc", "contract", "nsz"}  # as in _njit: thresholds may be +-inf
N_IN, N_OUT, W_OFF, STRIDE, B_OFF, T_OFF = range(6)  # columns of the exact layout ``meta``
RANK, RPAD, A_OFF, BQ_OFF, CUT_OFF, WR_OFF, SIN = range(7)  # columns of ``qm``


def njit(parallel: bool = False):
    flags = {"fastmath": FASTMATH, "boundscheck": False, "error_model": "numpy", "nogil": True}
    return numba.njit(cache=CACHE_ENABLED, parallel=parallel, **flags)


@njit()
def widths(meta, qm):
    """(scratch for any layer's padded output / input list, widest padded input, widest rank)."""
    w, sin, rp = meta[0, N_IN], 16, 16
    for i in range(meta.shape[0]):
        w = max(w, meta[i, STRIDE])
        sin = max(sin, qm[i, SIN])
        rp = max(rp, qm[i, RPAD])
    return w, sin, rp


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
    """(nonzero features, finite) of x, in one loop that vectorises (no list: for a predicted
    layer 0, which reads x densely)."""
    n = 0
    probe = np.float32(0.0)
    for k in range(x.shape[0]):
        n += x[k] != 0.0
        probe += x[k] * np.float32(0.0)  # NaN iff some feature is NaN or inf
    return n, probe == 0.0


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
def dots(q, w_off, sin, rows, nr, xs, out):
    """out[k] = q-row rows[k] . xs over sin floats (rows at w_off + j * sin), k < nr; four rows
    per pass share the loads of xs (each sum one vector chain: about 20 G multiply-adds/s here)."""
    k = 0
    while k < nr:
        j0 = rows[k]
        j1, j2, j3 = rows[min(k + 1, nr - 1)], rows[min(k + 2, nr - 1)], rows[min(k + 3, nr - 1)]
        r0 = q[w_off + j0 * sin : w_off + (j0 + 1) * sin]
        r1 = q[w_off + j1 * sin : w_off + (j1 + 1) * sin]
        r2 = q[w_off + j2 * sin : w_off + (j2 + 1) * sin]
        r3 = q[w_off + j3 * sin : w_off + (j3 + 1) * sin]
        s0 = np.float32(0.0)
        s1 = np.float32(0.0)
        s2 = np.float32(0.0)
        s3 = np.float32(0.0)
        for e in range(sin):
            v = xs[e]
            s0 += r0[e] * v
            s1 += r1[e] * v
            s2 += r2[e] * v
            s3 += r3[e] * v
        out[k] = s0
        if k + 1 < nr:
            out[k + 1] = s1
        if k + 2 < nr:
            out[k + 2] = s2
        if k + 3 < nr:
            out[k + 3] = s3
        k += 4


@njit()
def dots_gate(q, w_off, sin, cand, nc, xs, p, b_off, t_off, idx, vals):
    """The exact z_j = b_j + W_j . x of the candidates cand[:nc] and their exact gate: the open
    ones as (idx, vals), their count returned (vals doubles as the dots' output first)."""
    dots(q, w_off, sin, cand, nc, xs, vals)
    m = 0
    for k in range(nc):  # branch-free; m <= k, so vals[k] is read before it can be overwritten
        j = cand[k]
        zj = vals[k] + p[b_off + j]
        idx[m] = j
        vals[m] = zj
        m += zj > p[t_off + j]
    return m


@njit()
def predicted_layer(p, meta, q, qm, i, xd, idx, vals, n, z, t, seq, cand):
    """Layer ``i`` with a predictor, its input as the list (idx, vals, n) and the dense xd (sin,);
    writes the open units as (idx, vals) and returns (open count, candidates)."""
    r, sin, s = qm[i, RANK], qm[i, SIN], meta[i, STRIDE]
    dots(q, qm[i, A_OFF], sin, seq, r, xd, t)  # t = x A, as r dot products with A^T's rows  (r,)
    b_off = meta[i, B_OFF]
    for c in range(s):
        z[c] = p[b_off + c]
    axpy(q, qm[i, BQ_OFF], s, seq, t, r, z, 0, s)  # z_hat = b + t B  (s,)
    cut = qm[i, CUT_OFF]
    nc = 0
    for j in range(meta[i, N_OUT]):  # branch-free list of the candidates
        cand[nc] = j
        nc += z[j] > q[cut + j]
    w_off, t_off = qm[i, WR_OFF], meta[i, T_OFF]
    xs = xd[:sin]
    m = dots_gate(q, w_off, sin, cand, nc, xs, p, b_off, t_off, idx, vals)
    return m, nc


@njit()
def one_sample(p, meta, q, qm, x, out, stats, comp, z, idx, vals, xd, t, seq, cand, check):
    """The whole pass of one sample; stats = [input nonzeros, open units per hidden layer], comp
    = candidates per hidden layer (the layer's width where it has no predictor). Returns 1 if
    ``check`` and x is not finite (nothing else computed), else 0."""
    L = meta.shape[0]
    if L > 1 and qm[0, RANK] > 0:  # layer 0 predicted: it reads x densely, no input list needed
        nz, ok = count_inputs(x)
    else:
        nz, ok = collect_inputs(x, idx, vals)
    stats[0] = nz
    if check and not ok:
        return 1
    n = nz
    for i in range(L):
        s = meta[i, STRIDE]
        if i < L - 1 and qm[i, RANK] > 0:
            sin = qm[i, SIN]
            xi = xd
            if i == 0 and sin == x.shape[0]:
                xi = x  # (n_in,) a multiple of 16 floats: read in place
            elif i == 0:
                for e in range(x.shape[0]):
                    xd[e] = x[e]
                for e in range(x.shape[0], sin):
                    xd[e] = 0.0
            else:
                for e in range(sin):
                    xd[e] = 0.0
                for k in range(n):
                    xd[idx[k]] = vals[k]
            n, nc = predicted_layer(p, meta, q, qm, i, xi, idx, vals, n, z, t, seq, cand)
            comp[i] = nc
            stats[i + 1] = n
            continue
        b_off = meta[i, B_OFF]
        for c in range(s):
            z[c] = p[b_off + c]
        axpy(p, meta[i, W_OFF], s, idx, vals, n, z, 0, s)
        if i < L - 1:
            t_off = meta[i, T_OFF]
            n = 0
            for j in range(meta[i, N_OUT]):
                v = z[j]
                idx[n] = j
                vals[n] = v
                n += v > p[t_off + j]
            comp[i] = meta[i, N_OUT]
            stats[i + 1] = n
    out[:] = z[: out.shape[0]]
    return 0


@njit()
def _scratch(meta, qm):
    """Every buffer of one sample's pass, in one float32 and one int32 allocation."""
    w, sin, rp = widths(meta, qm)
    f = np.empty(2 * w + sin + rp, np.float32)
    k = np.empty(2 * w + rp, np.int32)
    seq = k[2 * w :]
    for r in range(rp):
        seq[r] = r
    return f[:w], k[:w], f[w : 2 * w], f[2 * w : 2 * w + sin], f[2 * w + sin :], seq, k[w : 2 * w]


@njit()
def one(p, meta, q, qm, x2, out2, stats2, comp2, check):
    """Batch 1, serially: x (1, n_in), out (1, n_out), stats (1, L), comp (1, L - 1)."""
    z, idx, vals, xd, t, seq, cand = _scratch(meta, qm)
    return one_sample(p, meta, q, qm, x2[0], out2[0], stats2[0], comp2[0], z, idx, vals, xd, t,
                      seq, cand, check)  # fmt: skip


@njit(parallel=True)
def batch(p, meta, q, qm, x, out, stats, comp, bad, check, nth):
    """Several samples: ``prange`` over chunks, each chunk with its own scratch buffers."""
    B = x.shape[0]
    chunks = min(B, 4 * nth)
    for c in prange(chunks):
        z, idx, vals, xd, t, seq, cand = _scratch(meta, qm)
        for b in range(c * B // chunks, (c + 1) * B // chunks):
            bad[b] = one_sample(p, meta, q, qm, x[b], out[b], stats[b], comp[b], z, idx, vals,
                                xd, t, seq, cand, check)  # fmt: skip
