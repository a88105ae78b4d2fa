"""Row-skipping forward pass of a gated MLP (Numba), behind the validating :func:`pack` / :func:`forward`.

Every layer is stored transposed, ``WT`` (in, out): one contiguous row per input unit. Per sample,
each layer starts from its bias and adds ``h_j * WT[j, :]`` for the nonzero inputs ``j`` only: for
layer 0 the nonzero input features (zero pixels are skipped), for later layers the units whose gate
is open, ``z_j > max(tau_j, 0)`` (exactly those with ``relu(z) * 1[z > tau] != 0``), kept as an
``(index, value)`` list when the gate decision is made. A shut unit's row is never read. The last
layer's sums are the logits.

Paths: batch 1 runs serially (no threading overhead); on request (``parallel=True``) each layer's
rows / columns are split across the Numba threads instead. Batches compute layer 0 for all samples
with one BLAS matmul, then ``prange`` over chunks of samples, each with its own scratch buffers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from numba import prange

from taugate.errors import TauGateError
from taugate.kernels._cache import CACHE_ENABLED

# reassoc/contract let reductions vectorise; no nnan/ninf: thresholds may be +inf, NaN is checked
_FASTMATH = {"reassoc", "contract", "nsz"}
_ALIGN = 16  # floats per 64-byte cache line; every block and weight row starts aligned
# the runtime asks for the threaded batch-1 path only for models with more multiply-adds than this
# (e.g. 784-4096-4096-10) and only when the caller sets threads > 1: below it a thread hand-off
# costs more than it saves, and any busy core (BLAS threads spin after each call) stalls a region
PARALLEL_MIN_MACS = 1 << 23
N_IN, N_OUT, W_OFF, STRIDE, B_OFF, T_OFF = range(6)  # columns of Packed.meta


def _njit(parallel: bool = False):
    flags = {"fastmath": _FASTMATH, "boundscheck": False, "error_model": "numpy", "nogil": True}
    return numba.njit(cache=CACHE_ENABLED, parallel=parallel, **flags)


@_njit()
def _finite(x):
    s = np.float32(0.0)
    for k in range(x.shape[0]):
        s += x[k] * np.float32(0.0)  # NaN iff some x[k] is NaN or inf
    return s == 0.0


@_njit()
def _nonzero(x, idx, vals):
    """Collect the nonzero inputs of x as (idx, vals); return their count (zero inputs are skipped
    like shut units: their rows of W0^T are never read)."""
    n = 0
    for k in range(x.shape[0]):
        v = x[k]
        if v != 0.0:
            idx[n] = k
            vals[n] = v
            n += 1
    return n


@_njit()
def _axpy(p, w_off, stride, b_off, idx, vals, n, z, c0, c1):
    """z[c0:c1] = b[c0:c1] + sum_t vals[t] * WT[idx[t], c0:c1], four active rows per pass."""
    m = c1 - c0
    zs = z[c0:c1]
    for c in range(m):
        zs[c] = p[b_off + c0 + c]
    t = 0
    while t + 4 <= n:
        b0 = w_off + idx[t] * stride + c0
        b1 = w_off + idx[t + 1] * stride + c0
        b2 = w_off + idx[t + 2] * stride + c0
        b3 = w_off + idx[t + 3] * stride + c0
        r0, r1, r2, r3 = p[b0 : b0 + m], p[b1 : b1 + m], p[b2 : b2 + m], p[b3 : b3 + m]
        v0, v1, v2, v3 = vals[t], vals[t + 1], vals[t + 2], vals[t + 3]
        for c in range(m):
            zs[c] += v0 * r0[c] + v1 * r1[c] + v2 * r2[c] + v3 * r3[c]
        t += 4
    while t < n:
        b0 = w_off + idx[t] * stride + c0
        r0 = p[b0 : b0 + m]
        v0 = vals[t]
        for c in range(m):
            zs[c] += v0 * r0[c]
        t += 1


@_njit()
def _gate(p, t_off, n_out, z, idx, vals):
    """Collect the units with z_j > thr_j (thr = max(tau, 0)) as (idx, vals); return their count."""
    n = 0
    for j in range(n_out):
        v = z[j]
        if v > p[t_off + j]:
            idx[n] = j
            vals[n] = v
            n += 1
    return n


@_njit()
def _rest(p, meta, z0, out, counts, z, idx, vals):
    """Given layer 0's pre-activation z0 (bias included), run the gates and all later layers."""
    L = meta.shape[0]
    if L == 1:
        out[:] = z0[: out.shape[0]]
        return
    n = _gate(p, meta[0, T_OFF], meta[0, N_OUT], z0, idx, vals)
    counts[0] = n
    for i in range(1, L):
        dst = out if i == L - 1 else z
        n_out = meta[i, N_OUT]
        _axpy(p, meta[i, W_OFF], meta[i, STRIDE], meta[i, B_OFF], idx, vals, n, dst, 0, n_out)
        if i < L - 1:
            n = _gate(p, meta[i, T_OFF], n_out, z, idx, vals)
            counts[i] = n


@_njit()
def _one(p, meta, x2, out2, counts2, check):
    """Batch-1 serial path: x (1, n_in), out (1, n_out), counts (1, L-1); 1 if x is not finite."""
    x, out, counts = x2[0], out2[0], counts2[0]
    if check and not _finite(x):
        return 1
    w = max(meta[:, N_OUT].max(), meta[0, N_IN])
    z, idx, vals = np.empty(w, np.float32), np.empty(w, np.int32), np.empty(w, np.float32)
    nz = _nonzero(x, idx, vals)
    _axpy(p, meta[0, W_OFF], meta[0, STRIDE], meta[0, B_OFF], idx, vals, nz, z, 0, meta[0, N_OUT])
    _rest(p, meta, z, out, counts, z, idx, vals)
    return 0


@_njit()
def _bounds(n, parts, blk):
    """Start of block ``blk`` when splitting range(n) into ``parts`` 16-aligned blocks."""
    return n if blk == parts else (blk * n // parts) // 16 * 16


@_njit(parallel=True)
def _one_par(p, meta, x2, out2, counts2, check, nth):
    """Batch-1 threaded path: layer 0's rows and each later layer's columns split across threads."""
    x, out, counts = x2[0], out2[0], counts2[0]
    if check and not _finite(x):
        return 1
    L = meta.shape[0]
    w = max(meta[:, N_OUT].max(), meta[0, N_IN])
    z, idx, vals = np.empty(w, np.float32), np.empty(w, np.int32), np.empty(w, np.float32)
    n_out = meta[0, N_OUT]
    nz = _nonzero(x, idx, vals)
    parts = max(1, min(nth, n_out // 256))
    for blk in prange(parts):  # each thread its own columns of z
        c0, c1 = _bounds(n_out, parts, blk), _bounds(n_out, parts, blk + 1)
        _axpy(p, meta[0, W_OFF], meta[0, STRIDE], meta[0, B_OFF], idx, vals, nz, z, c0, c1)
    if L == 1:
        out[:] = z[:n_out]
        return 0
    n = _gate(p, meta[0, T_OFF], n_out, z, idx, vals)
    counts[0] = n
    for i in range(1, L):
        dst = out if i == L - 1 else z
        m = meta[i, N_OUT]
        parts = min(nth, m // 256, n // 16)  # threads only pay off for enough rows and columns
        if parts <= 1:
            _axpy(p, meta[i, W_OFF], meta[i, STRIDE], meta[i, B_OFF], idx, vals, n, dst, 0, m)
        else:
            for blk in prange(parts):
                c0, c1 = _bounds(m, parts, blk), _bounds(m, parts, blk + 1)
                _axpy(p, meta[i, W_OFF], meta[i, STRIDE], meta[i, B_OFF], idx, vals, n, dst, c0, c1)
        if i < L - 1:
            n = _gate(p, meta[i, T_OFF], m, z, idx, vals)
            counts[i] = n
    return 0


@_njit(parallel=True)
def _batch(p, meta, x, z0, out, counts, bad, check, nth):
    """Batched path: z0 = x @ W0.T + b0 (B, out_0) is given; chunks of samples run in parallel."""
    B = x.shape[0]
    chunks = min(B, 4 * nth)
    w = max(meta[:, N_OUT].max(), meta[0, N_IN])
    for c in prange(chunks):
        z, idx, vals = np.empty(w, np.float32), np.empty(w, np.int32), np.empty(w, np.float32)
        for b in range(c * B // chunks, (c + 1) * B // chunks):
            if check and not _finite(x[b]):
                bad[b] = 1
                continue
            _rest(p, meta, z0[b], out[b], counts[b], z, idx, vals)


@dataclass(frozen=True, eq=False)
class Packed:
    """One model's weights laid out for the kernels; build it with :func:`pack`."""

    params: np.ndarray  # (P,) float32: per layer weight rows, bias, threshold; 64-byte aligned
    meta: np.ndarray  # (L, 6) int64: n_in, n_out, w_off, row stride, b_off, t_off (-1: none)
    sizes: tuple[int, ...]  # (n_in, out_0, ..., out_{L-1})
    macs: int  # dense multiply-adds per sample, sum of in_i * out_i

    def _block(self, i: int) -> np.ndarray:
        n_in, n_out, off, stride = (int(v) for v in self.meta[i, :4])
        rows, cols = n_in, n_out  # transposed (in, out): one contiguous row per input unit
        return self.params[off : off + rows * stride].reshape(rows, stride)[:, :cols]

    def weight(self, i: int) -> np.ndarray:
        """Layer ``i``'s weight (out, in) as a (transposed) view of the stored (in, out) block."""
        return self._block(i).T

    def weight_t(self, i: int) -> np.ndarray:
        """Layer ``i``'s transposed weight (in, out) as a view."""
        return self._block(i)

    def bias(self, i: int) -> np.ndarray:
        off, n = int(self.meta[i, B_OFF]), int(self.meta[i, N_OUT])
        return self.params[off : off + n]

    def threshold(self, i: int) -> np.ndarray:
        """Effective threshold max(tau, 0) of hidden layer ``i`` (0 for ungated relu)."""
        off, n = int(self.meta[i, T_OFF]), int(self.meta[i, N_OUT])
        if off < 0:
            raise TauGateError(f"layer {i} is the output layer and has no threshold")
        return self.params[off : off + n]


def _up(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def pack(weights: list, biases: list, taus: list) -> Packed:
    """Lay out float32 weights (out, in), biases (out,) and taus (out,) or None per layer.

    ``taus[i]`` is None for an ungated relu layer and must be None for the last (output) layer.
    Every layer is stored transposed (in, out), one row per input unit; rows are padded to a
    multiple of 16 floats. Raises :class:`TauGateError` on any shape / dtype / chaining problem.
    """
    L = len(weights)
    if L < 1 or len(biases) != L or len(taus) != L:
        raise TauGateError("pack: need one weight, bias and tau (or None) per layer")
    sizes: list[int] = []
    for i, (w, b, t) in enumerate(zip(weights, biases, taus, strict=True)):
        if not (isinstance(w, np.ndarray) and w.dtype == np.float32 and w.ndim == 2 and w.size):
            raise TauGateError(f"pack: weight {i} must be a non-empty 2-D float32 array")
        if i and w.shape[1] != sizes[-1]:
            raise TauGateError(f"pack: weight {i} has {w.shape[1]} inputs, expected {sizes[-1]}")
        sizes += [w.shape[1], w.shape[0]] if i == 0 else [w.shape[0]]
        for name, v in (("bias", b), ("tau", t)):
            if name == "tau" and v is None:
                continue
            if not (isinstance(v, np.ndarray) and v.dtype == np.float32 and v.shape == w.shape[:1]):
                raise TauGateError(f"pack: {name} {i} must be float32 of shape ({w.shape[0]},)")
        if i == L - 1 and t is not None:
            raise TauGateError("pack: the output layer cannot have a tau")
    meta = np.zeros((L, 6), np.int64)
    off = 0
    for i in range(L):
        n_in, n_out = sizes[i], sizes[i + 1]
        rows, cols = n_in, n_out  # transposed (in, out): one contiguous row per input unit
        stride = _up(cols)
        meta[i] = (n_in, n_out, off, stride, 0, -1)
        off += rows * stride
        meta[i, B_OFF], off = off, off + _up(n_out)
        if i < L - 1:
            meta[i, T_OFF], off = off, off + _up(n_out)
    buf = np.zeros(off + _ALIGN, np.float32)
    shift = (-buf.ctypes.data % 64) // 4
    macs = sum(sizes[i] * sizes[i + 1] for i in range(L))
    packed = Packed(buf[shift : shift + off], meta, tuple(sizes), macs)
    for i in range(L):
        packed.weight(i)[...] = weights[i]
        packed.bias(i)[...] = biases[i]
        if i < L - 1:
            tau = taus[i]
            packed.threshold(i)[...] = 0.0 if tau is None else np.maximum(tau, np.float32(0.0))
    return packed


def forward(
    packed: Packed, x: np.ndarray, parallel: bool = False, check_finite: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (B, n_out) float32 and active counts (B, L-1) int64 for x (B, n_in) float32 C-order.

    ``parallel`` (batch 1 only): split each layer across the current Numba threads. Non-finite input rows raise :class:`TauGateError` when
    ``check_finite`` (results for them are unspecified otherwise).
    """
    n_in, L = packed.sizes[0], len(packed.sizes) - 1
    if not (
        isinstance(x, np.ndarray)
        and x.dtype == np.float32
        and x.ndim == 2
        and x.flags.c_contiguous
        and x.shape[1] == n_in
        and x.shape[0] > 0
    ):
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise TauGateError(f"rowskip: input must be C-contiguous float32 (B, {n_in}), got {got}")
    B = x.shape[0]
    out = np.empty((B, packed.sizes[-1]), np.float32)
    counts = np.zeros((B, L - 1), np.int64)
    if B == 1:
        if parallel:
            nth = numba.get_num_threads()
            bad = _one_par(packed.params, packed.meta, x, out, counts, check_finite, nth)
        else:
            bad = _one(packed.params, packed.meta, x, out, counts, check_finite)
        if bad:
            raise TauGateError("input contains NaN or inf at row 0")
        return out, counts
    with np.errstate(all="ignore"):  # non-finite rows are reported below
        z0 = x @ packed.weight(0).T  # (B, out_0)
        z0 += packed.bias(0)
    bad = np.zeros(B, np.int8)
    nth = numba.get_num_threads()
    _batch(packed.params, packed.meta, x, z0, out, counts, bad, check_finite, nth)
    if check_finite and bad.any():
        raise TauGateError(f"input contains NaN or inf at row {int(np.flatnonzero(bad)[0])}")
    return out, counts
