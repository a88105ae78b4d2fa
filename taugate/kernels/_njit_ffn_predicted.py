"""Every Numba function of the FFN block with predicted gates (private; the validating public side
is :mod:`taugate.kernels.ffn_predicted`).

Self-contained on purpose, like :mod:`taugate.kernels._njit_ffn`: Numba's disk cache notices an
edit only in the file that defines a cached function (numba/numba#1833), so every function a
kernel here calls is defined in this file too (``phi``, ``finite``, ``dots`` and ``axpy`` are
copies of :mod:`taugate.kernels._njit_ffn`'s).

Per token ``x``: ``t = A^T x`` (r contiguous dot products over the rows of ``at`` (r, sin));
``zhat = bz + sum_k t_k B[k]`` (axpys over the F-wide rows of ``b``, eight per pass); the
candidates are the units with ``zhat_j > cut_j`` (``cut = thr - margin * sigma``, fixed at pack
time; with ``every`` (margin +inf) every unit is a candidate and the guess is skipped); for the
candidates only, the exact ``z_j = Wz[j] . x + bz[j]`` (eight scattered rows per pass); then the
exact gate ``z_j > thr_j`` and, for the open units, the up dot product (glu) and the axpy of their
WdT rows into y, as in the exact kernel. A unit predicted shut is never read: the approximation.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from taugate.kernels._cache import CACHE_ENABLED

# the flags of taugate.kernels._njit_ffn (see there)
FASTMATH = {"reassoc", "contract", "nsz"}
ALIGN = 16  # floats per 64-byte cache line; rows are padded to a multiple of it
TOKENS = 64  # tokens per chunk at most of the batched path
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
    e = math.exp(-abs(z))  # in (0, 1]: never overflows
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
    """out[t] = w[idx[t]] . v for t < n, eight rows per pass (then four, then one)."""
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
def axpy(w, idx, h, n, y):
    """y += sum_t h[t] * w[idx[t]]: eight rows per pass, so y is loaded and stored once per eight
    rows read."""
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
def scratch(F, sf, r):
    """Per-thread buffers: rank list and t (r,), zhat (sf,), unit list, z, u, h (F,)."""
    ks, t = np.arange(r), np.empty(r, np.float32)
    zh = np.empty(sf, np.float32)
    idx = np.empty(F, np.int64)
    z, u, h = np.empty(F, np.float32), np.empty(F, np.float32), np.empty(F, np.float32)
    return ks, t, zh, idx, z, u, h


@njit()
def token(wz, bz, wu, bu, wdt, bd, thr, act, glu, at, b, bzp, cut, every, xp, y, s):
    """One token: y (sout,) = the predicted block at xp (d_in,); returns (open, computed)."""
    ks, t, zh, idx, z, u, h = s
    F = wz.shape[0]
    n = 0
    if every:  # margin +inf: every unit is a candidate, no guess needed
        for j in range(F):
            idx[j] = j
        n = F
    else:
        dots(at, xp, ks, at.shape[0], t)  # t = A^T x: r contiguous rows of at
        zh[:] = bzp  # (sf,) padded bias
        axpy(b, ks, t, b.shape[0], zh)  # zhat += sum_k t_k B[k], eight rows per pass
        for j in range(F):  # branch-free candidate list
            idx[n] = j
            n += zh[j] > cut[j]
    c = n
    dots(wz, xp, idx, c, z)  # exact z of the candidates only
    n = 0
    for q in range(c):  # exact gate, compacting the list in place (n <= q)
        j = idx[q]
        v = z[q] + bz[j]
        o = v > thr[j]
        idx[n], z[n] = j, v
        n += o
    if glu:
        dots(wu, xp, idx, n, u)
    for q in range(n):
        v = phi(act, z[q])
        if glu:
            v *= u[q] + bu[idx[q]]
        h[q] = v
    y[:] = bd
    axpy(wdt, idx, h, n, y)
    return n, c


# -- entry points (called by taugate.kernels.ffn_predicted) -------------------------------------


@njit()
def one(wz, bz, wu, bu, wdt, bd, thr, act, glu, at, b, bzp, cut, every, x2, out2, counts, comp,
        check):  # fmt: skip
    """Batch 1, serial: x2 (1, d_in), out2 (1, d_out), counts and comp (1,); 1 if x is not
    finite (with ``check``)."""
    xp = x2[0]  # the caller's row itself, no copy
    if check and not finite(xp):
        return 1
    y = np.empty(wdt.shape[1], np.float32)
    s = scratch(wz.shape[0], b.shape[1], at.shape[0])
    k, c = token(wz, bz, wu, bu, wdt, bd, thr, act, glu, at, b, bzp, cut, every, xp, y, s)
    counts[0], comp[0] = k, c
    out2[0, :] = y[: out2.shape[1]]
    return 0


@njit(parallel=True)
def batch(wz, bz, wu, bu, wdt, bd, thr, act, glu, at, b, bzp, cut, every, x, out, counts, comp,
          bad, check, nth):  # fmt: skip
    """N tokens: ``prange`` over chunks of at most TOKENS tokens (a multiple of the thread count),
    each with its own scratch, every token as in batch 1. ``bad[i]`` = 1 for a non-finite row
    (with ``check`` it is skipped then: y = bd, counts 0)."""
    N, F = x.shape[0], wz.shape[0]
    need = (N + TOKENS - 1) // TOKENS
    chunks = min(N, (need + nth - 1) // nth * nth)
    for ch in prange(chunks):
        t0, t1 = ch * N // chunks, (ch + 1) * N // chunks
        s = scratch(F, b.shape[1], at.shape[0])
        y = np.empty(wdt.shape[1], np.float32)
        for i in range(t0, t1):
            xp = x[i]
            ok = finite(xp)
            bad[i] = not ok
            if check and not ok:
                out[i, :] = bd[: out.shape[1]]
                counts[i], comp[i] = 0, 0
                continue
            k, c = token(wz, bz, wu, bu, wdt, bd, thr, act, glu, at, b, bzp, cut, every, xp, y, s)
            out[i, :] = y[: out.shape[1]]
            counts[i], comp[i] = k, c
