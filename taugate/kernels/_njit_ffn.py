"""Every Numba function of the gated transformer FFN block (private; the validating public side
is :mod:`taugate.kernels.ffn`).

Self-contained on purpose, like :mod:`taugate.kernels._njit`: Numba's disk cache notices an edit
only in the file that defines a cached function (numba/numba#1833), so every function a kernel
here calls is defined in this file too.

Per token ``x`` in mode ``m``: ``z_j = Wz[j] . x + bz[j]`` for every unit (dense); unit ``j`` is
open iff ``z_j > thr[m, j]``; ``h_j = phi(z_j)`` (plain) or ``phi(z_j) * (Wu[j] . x + bu[j])``
(glu), times ``gain[m, j]`` unless the gains are folded into WdT (``gain`` of shape (0, F)), for
open units only; ``y = bd + sum_open h_j * WdT[j, :]``. A single model is one mode (M = 1) with
folded gains; a mode bank (one base, M (tau, gamma) sets) has M rows and its gains unfolded. Weight rows are padded with zeros to a multiple
of 16 floats (``sin`` for Wz / Wu, ``sout`` for WdT / bd), so each starts on a cache line and the
axpy into y runs over whole 16-float blocks; x is read in place (never copied), so the dot
products run over d_in.

The dense twins (``one_dense``, ``batch`` with ``dense=True``) run the very same loops over every
unit: the gate becomes a 0/1 factor (a select, so a shut unit whose phi overflowed cannot turn
into NaN), and every row of Wz, Wu and WdT is read.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from taugate.kernels._cache import CACHE_ENABLED

# reassoc/contract let the dot products and axpys vectorise (they reorder float32 sums: ~1e-6
# relative, like any BLAS); no nnan/ninf, so +-inf thresholds and NaN checks keep their meaning
FASTMATH = {"reassoc", "contract", "nsz"}
ALIGN = 16  # floats per 64-byte cache line; rows are padded to a multiple of it
TOKENS = 64  # tokens per chunk at most: a batch of 64 reads each block's rows once (README)
BLOCK_BYTES = 4 << 20  # bytes of one weight's rows per block of the batched kernel (see batch)
RELU, GELU, GELU_TANH, SILU = range(4)  # activation codes (taugate.activations)


def njit(parallel: bool = False):
    """``numba.njit`` with the project's flags: cached on disk, fastmath as above, no GIL."""
    flags = {"fastmath": FASTMATH, "boundscheck": False, "error_model": "numpy", "nogil": True}
    return numba.njit(cache=CACHE_ENABLED, parallel=parallel, **flags)


@njit()
def phi(code, z):
    """The activation ``code`` at float32 ``z``, in float32 arithmetic."""
    one, half = np.float32(1.0), np.float32(0.5)
    if code == RELU:
        return z if z > 0 else np.float32(0.0)
    if code == GELU:
        return half * z * (one + math.erf(z * np.float32(0.7071067811865476)))
    if code == GELU_TANH:
        inner = np.float32(0.7978845608028654) * (z + np.float32(0.044715) * z * z * z)
        return half * z * (one + math.tanh(inner))
    e = math.exp(-abs(z))  # in (0, 1]: never overflows, unlike exp(-z) for very negative z
    s = one / (one + e)  # sigmoid(|z|)
    return z * (s if z >= 0 else e * s)


@njit()
def finite(x):
    """True iff every feature of x is finite (one vectorised pass, no branch)."""
    probe = np.float32(0.0)
    for k in range(x.shape[0]):
        probe += x[k] * np.float32(0.0)  # NaN iff some feature is NaN or inf
    return probe == 0.0


@njit()
def dots(w, v, idx, n, out):
    """out[t] = w[idx[t]] . v for t < n, eight rows per pass (then four, then one), so each load
    of v serves eight rows and eight scattered rows stream at once (13 % faster than four here)."""
    m = v.shape[0]
    t = 0
    while t + 8 <= n:
        r0, r1, r2, r3 = w[idx[t]], w[idx[t + 1]], w[idx[t + 2]], w[idx[t + 3]]
        r4, r5, r6, r7 = w[idx[t + 4]], w[idx[t + 5]], w[idx[t + 6]], w[idx[t + 7]]
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0.0)
        for k in range(m):
            c = v[k]
            a0, a1, a2, a3 = a0 + r0[k] * c, a1 + r1[k] * c, a2 + r2[k] * c, a3 + r3[k] * c
            a4, a5, a6, a7 = a4 + r4[k] * c, a5 + r5[k] * c, a6 + r6[k] * c, a7 + r7[k] * c
        out[t], out[t + 1], out[t + 2], out[t + 3] = a0, a1, a2, a3
        out[t + 4], out[t + 5], out[t + 6], out[t + 7] = a4, a5, a6, a7
        t += 8
    while t + 4 <= n:
        r0, r1, r2, r3 = w[idx[t]], w[idx[t + 1]], w[idx[t + 2]], w[idx[t + 3]]
        a0 = a1 = a2 = a3 = np.float32(0.0)
        for k in range(m):
            c = v[k]
            a0 += r0[k] * c
            a1 += r1[k] * c
            a2 += r2[k] * c
            a3 += r3[k] * c
        out[t], out[t + 1], out[t + 2], out[t + 3] = a0, a1, a2, a3
        t += 4
    while t < n:
        r0 = w[idx[t]]
        a0 = np.float32(0.0)
        for k in range(m):
            a0 += r0[k] * v[k]
        out[t] = a0
        t += 1


@njit()
def zpass(wz, bz, v, z):
    """z[j] = Wz[j] . v + bz[j] for every row, one row at a time: Wz is read as one sequential
    stream, which the hardware prefetcher serves at close to full bandwidth (1.7x faster here than
    four rows per pass, whose four streams restart the prefetcher at every 4 KB row)."""
    m = v.shape[0]
    for j in range(wz.shape[0]):
        r = wz[j]
        a = np.float32(0.0)
        for k in range(m):
            a += r[k] * v[k]
        z[j] = a + bz[j]


@njit()
def axpy(w, idx, h, n, y):
    """y += sum_t h[t] * w[idx[t]]: eight rows per pass, so y is loaded and stored once per eight
    rows read (as in :func:`taugate.kernels._njit.axpy`)."""
    m = y.shape[0]
    t = 0
    while t + 8 <= n:
        r0, r1, r2, r3 = w[idx[t]], w[idx[t + 1]], w[idx[t + 2]], w[idx[t + 3]]
        r4, r5, r6, r7 = w[idx[t + 4]], w[idx[t + 5]], w[idx[t + 6]], w[idx[t + 7]]
        v0, v1, v2, v3 = h[t], h[t + 1], h[t + 2], h[t + 3]
        v4, v5, v6, v7 = h[t + 4], h[t + 5], h[t + 6], h[t + 7]
        for c in range(m):
            y[c] += (v0 * r0[c] + v1 * r1[c] + v2 * r2[c] + v3 * r3[c]) + (
                v4 * r4[c] + v5 * r5[c] + v6 * r6[c] + v7 * r7[c]
            )
        t += 8
    while t + 2 <= n:
        r0, r1 = w[idx[t]], w[idx[t + 1]]
        v0, v1 = h[t], h[t + 1]
        for c in range(m):
            y[c] += v0 * r0[c] + v1 * r1[c]
        t += 2
    if t < n:
        r0, v0 = w[idx[t]], h[t]
        for c in range(m):
            y[c] += v0 * r0[c]


@njit()
def dots1(w, v, idx, n, out):
    """:func:`dots` one row per pass: the faster order when the rows are consecutive (the dense
    twin), as one sequential stream (see :func:`zpass`)."""
    m = v.shape[0]
    for t in range(n):
        r = w[idx[t]]
        a = np.float32(0.0)
        for k in range(m):
            a += r[k] * v[k]
        out[t] = a


@njit()
def axpy1(w, idx, h, n, y):
    """:func:`axpy` one row per pass (y stays in L1): faster for consecutive rows (the dense
    twin); scattered rows go faster eight at a time."""
    m = y.shape[0]
    for t in range(n):
        r, v = w[idx[t]], h[t]
        for c in range(m):
            y[c] += v * r[c]


@njit()
def hidden(act, glu, wu, bu, gm, xp, idx, z, n, u, h, g, dense):
    """h[t] = phi(z[t]) (times ``Wu[idx[t]] . xp + bu`` if glu, times the gain ``gm[idx[t]]``
    unless gm is empty: gains folded into WdT) for t < n; ``dense``: times the 0/1 gate g[t] (a
    select)."""
    if glu and dense:
        dots1(wu, xp, idx, n, u)
    elif glu:
        dots(wu, xp, idx, n, u)
    for t in range(n):
        v = phi(act, z[t])
        if glu:
            v *= u[t] + bu[idx[t]]
        h[t] = v if (g[t] or not dense) else np.float32(0.0)
    for t in range(n if gm.shape[0] else 0):  # a bank's gains: a loop of its own, none otherwise
        h[t] *= gm[idx[t]]


@njit()
def zblock(wz, bz, xs, live, nl, j0, j1, zb):
    """zb[i, j - j0] = Wz[j] . xs[live[i]] + bz[j] for j0 <= j < j1, i < nl: four rows by four
    tokens per pass (eight loads per sixteen multiply-adds; faster than BLAS at 8 tokens)."""
    m = xs.shape[1]
    j = j0
    while j + 4 <= j1:
        r0, r1, r2, r3 = wz[j], wz[j + 1], wz[j + 2], wz[j + 3]
        i = 0
        while i + 4 <= nl:
            x0, x1, x2, x3 = xs[live[i]], xs[live[i + 1]], xs[live[i + 2]], xs[live[i + 3]]
            a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = np.float32(0.0)
            c0 = c1 = c2 = c3 = d0 = d1 = d2 = d3 = np.float32(0.0)
            for k in range(m):
                w0, w1, w2, w3 = r0[k], r1[k], r2[k], r3[k]
                v0, v1, v2, v3 = x0[k], x1[k], x2[k], x3[k]
                a0, a1, a2, a3 = a0 + v0 * w0, a1 + v0 * w1, a2 + v0 * w2, a3 + v0 * w3
                b0, b1, b2, b3 = b0 + v1 * w0, b1 + v1 * w1, b2 + v1 * w2, b3 + v1 * w3
                c0, c1, c2, c3 = c0 + v2 * w0, c1 + v2 * w1, c2 + v2 * w2, c3 + v2 * w3
                d0, d1, d2, d3 = d0 + v3 * w0, d1 + v3 * w1, d2 + v3 * w2, d3 + v3 * w3
            q = j - j0
            zb[i, q], zb[i, q + 1], zb[i, q + 2], zb[i, q + 3] = a0, a1, a2, a3
            zb[i + 1, q], zb[i + 1, q + 1], zb[i + 1, q + 2], zb[i + 1, q + 3] = b0, b1, b2, b3
            zb[i + 2, q], zb[i + 2, q + 1], zb[i + 2, q + 2], zb[i + 2, q + 3] = c0, c1, c2, c3
            zb[i + 3, q], zb[i + 3, q + 1], zb[i + 3, q + 2], zb[i + 3, q + 3] = d0, d1, d2, d3
            i += 4
        j += 4
    rows = np.arange(j0, j1)
    for i in range(nl):  # the tokens and rows left over: four rows per pass, one token
        i0 = 0 if i >= nl - nl % 4 else j - j0  # tokens of the 4 x 4 passes have rows < j done
        dots(wz, xs[live[i]], rows[i0:], j1 - j0 - i0, zb[i, i0:])
    for i in range(nl):
        for q in range(j1 - j0):
            zb[i, q] += bz[j0 + q]


@njit()
def units(wu, bu, wdt, thr, gain, m, act, glu, xp, zr, j0, j1, y, s, dense):
    """y += the units j0 <= j < j1 of one token (xp (d_in,)) in mode m (row m of the (M, F)
    thr and gain tables; gain (0, F): folded into WdT), given their z (bias included) in
    zr[: j1 - j0]; returns how many are open. ``s``: the caller's scratch (see :func:`scratch`)."""
    idx, z, u, h, g = s
    tm = thr[m]  # (F,) view: this mode's thresholds
    gm = gain[m] if gain.shape[0] else gain.reshape(-1)  # (F,) view, or (0,): gains folded
    n = k = 0
    for jj in range(j1 - j0):  # branch-free gate: every unit is written, n moves past open ones
        v = zr[jj]
        o = v > tm[j0 + jj]
        idx[n], z[n], g[n] = j0 + jj, v, o
        n += o or dense  # dense: every unit stays in the list, gated by g
        k += o
    hidden(act, glu, wu, bu, gm, xp, idx, z, n, u, h, g, dense)
    if dense:
        axpy1(wdt, idx, h, n, y)
    else:
        axpy(wdt, idx, h, n, y)
    return k


@njit()
def token(wz, bz, wu, bu, wdt, bd, thr, gain, m, act, glu, xp, y, s, dense):
    """One token in mode m, serially: y (sout,) = the block at xp (d_in,); returns the open-unit
    count."""
    z = s[1]
    F = wz.shape[0]
    zpass(wz, bz, xp, z)  # the dense z pass, every row of Wz
    y[:] = bd
    return units(wu, bu, wdt, thr, gain, m, act, glu, xp, z, 0, F, y, s, dense)  # z, idx: in place


@njit()
def scratch(F):
    idx = np.empty(F, np.int64)
    z, u, h = np.empty(F, np.float32), np.empty(F, np.float32), np.empty(F, np.float32)
    return idx, z, u, h, np.empty(F, np.bool_)


@njit()
def run_one(wz, bz, wu, bu, wdt, bd, thr, gain, act, glu, m, x2, out2, counts, check, dense):
    xp = x2[0]  # the caller's row itself, no copy
    if check and not finite(xp):
        return 1
    y = np.empty(wdt.shape[1], np.float32)
    s = scratch(wz.shape[0])
    counts[0] = token(wz, bz, wu, bu, wdt, bd, thr, gain, m, act, glu, xp, y, s, dense)
    out2[0, :] = y[: out2.shape[1]]
    return 0


# -- entry points (called by taugate.kernels.ffn) ------------------------------------------------


@njit()
def one(wz, bz, wu, bu, wdt, bd, thr, gain, act, glu, m, x2, out2, counts, check):
    """Batch-1 skipping path in mode m: x2 (1, d_in), out2 (1, d_out), counts (1,); 1 if x is
    not finite."""
    return run_one(wz, bz, wu, bu, wdt, bd, thr, gain, act, glu, m, x2, out2, counts, check, False)


@njit()
def one_dense(wz, bz, wu, bu, wdt, bd, thr, gain, act, glu, m, x2, out2, counts, check):
    """The dense twin of :func:`one`: the same loops over every unit and every row."""
    return run_one(wz, bz, wu, bu, wdt, bd, thr, gain, act, glu, m, x2, out2, counts, check, True)


@njit(parallel=True)
def batch(wz, bz, wu, bu, wdt, bd, thr, gain, act, glu, modes, x, out, counts, bad, check, nth,
          dense, blk):  # fmt: skip
    """Batched path (N tokens): ``prange`` over chunks of at most TOKENS tokens, each chunk with
    its own scratch. A chunk walks the units in blocks of ``blk``: first the z of every token for
    the block, then per token the open units of the block as in batch 1 (up dot products, axpy
    eight rows per pass); a block's rows stay in cache while the chunk's tokens reuse them.
    ``blk`` (the caller's choice, :func:`taugate.kernels.ffn.block_units`) sizes a block to
    BLOCK_BYTES of each weight: 1024 units at d_model 1024 ran 1.2x faster than 64 (fewer short
    runs of open rows per token; the rows of Wz, Wu and WdT, 12 MiB, stay in L3).

    The z pass is done here too (:func:`zblock`), not by a BLAS call first: it is faster (0.9 ms
    against OpenBLAS's 1.5 ms at 8 x 1024 x 4096 on one core), and BLAS's thread pool never takes
    turns with Numba's on the same cores (an idle BLAS worker spins after each call).
    Token i runs in mode ``modes[i]``. ``dense``: the dense twin. ``bad[i]`` = 1 for a non-finite row (with ``check`` the row is
    skipped then: y = bd, count 0).
    """
    N, F = x.shape[0], wz.shape[0]
    need = (N + TOKENS - 1) // TOKENS  # chunks of at most TOKENS tokens
    chunks = min(N, (need + nth - 1) // nth * nth)  # a multiple of the thread count
    for c in prange(chunks):
        t0, t1 = c * N // chunks, (c + 1) * N // chunks
        m = t1 - t0
        xs = x[t0:t1]  # (m, d_in): the caller's rows themselves, no copy
        ys = np.empty((m, wdt.shape[1]), np.float32)  # (m, sout)
        live = np.empty(m, np.int64)  # the tokens that are computed
        cnt = np.zeros(m, np.int64)  # this chunk's counts (a shared array would be false-shared)
        nl = 0
        for t in range(m):
            ok = finite(xs[t])
            bad[t0 + t] = not ok
            ys[t, :] = bd
            live[nl] = t
            nl += ok or not check
        zb = np.empty((m, blk), np.float32)  # (m, blk): z of the block's units per token
        s = scratch(blk)
        for j0 in range(0, F, blk):
            j1 = min(F, j0 + blk)
            zblock(wz, bz, xs, live, nl, j0, j1, zb)
            for i in range(nl):
                t = live[i]
                mo = modes[t0 + t]  # this token's mode: a row of thr and gain
                k = units(wu, bu, wdt, thr, gain, mo, act, glu, xs[t], zb[i], j0, j1, ys[t], s,
                          dense)  # fmt: skip
                cnt[t] += k
        for t in range(m):
            out[t0 + t, :] = ys[t, : out.shape[1]]
            counts[t0 + t] = cnt[t]
