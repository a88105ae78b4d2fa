"""Row-skipping forward pass of a gated MLP (Numba), behind the validating :func:`forward`.

Every layer is stored transposed, ``WT`` (in, out): one contiguous row per input unit (see
:mod:`taugate.kernels.layout`). Per sample, each layer starts from its bias and adds ``h_j * WT[j, :]``
for the nonzero inputs ``j`` only: for layer 0 the nonzero input features (zero pixels are skipped),
for later layers the units whose gate is open, ``z_j > max(tau_j, 0)`` (exactly those with
``relu(z) * 1[z > tau] != 0``), kept as an ``(index, value)`` list when the gate decision is made.
A shut unit's row is never read. The last layer's sums are the logits.

Three paths, all computing the same function:

- batch 1, serial (:func:`_one`): no threading overhead; the default for one input;
- batch 1, threaded (:func:`_one_par`, ``parallel=True``): one parallel region per call. Thread
  ``t`` computes its own 16-aligned block of layer 0's columns, gates them, and adds the rows of
  *its* active units to a private full-width buffer of layer 1's sums; the buffers are then summed.
  Later layers split their active rows across threads the same way when they are big enough.
- batched (:func:`_batch`): layer 0 for all samples with one BLAS matmul, then ``prange`` over
  chunks of samples, each chunk with its own scratch buffers.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from taugate.errors import TauGateError
from taugate.kernels._blocks import (
    B_OFF,
    N_OUT,
    STRIDE,
    T_OFF,
    W_OFF,
    axpy,
    collect_inputs,
    finite,
    gate,
    layers_from,
    load_bias,
    njit,
    one_sample,
    width,
)
from taugate.kernels.layout import Packed, pack

__all__ = ["LAYER_MIN_MACS", "PARALLEL_MIN_MACS", "Packed", "forward", "pack", "run"]

# the runtime asks for the threaded batch-1 path only for models with more multiply-adds than this
# (e.g. 784-4096-4096-10) and only when the caller sets threads > 1: below it a thread hand-off
# costs more than it saves
PARALLEL_MIN_MACS = 1 << 23
# in the threaded path, a layer after the first two is split across threads only above this much
# work (active rows x row length); read at call time, so tests can force the split with 0
LAYER_MIN_MACS = 1 << 18


@njit()
def _one(p, meta, x2, out2, stats2, check):
    """Batch-1 serial path: x (1, n_in), out (1, n_out), stats (1, L); 1 if x is not finite."""
    w = width(meta)
    z, idx, vals = np.empty(w, np.float32), np.empty(w, np.int32), np.empty(w, np.float32)
    return one_sample(p, meta, x2[0], out2[0], stats2[0], z, idx, vals, check)


@njit()
def _block(n, parts, t):
    """Start of block ``t`` when splitting range(n), n a multiple of 16, into 16-aligned parts."""
    return (t * (n // 16) // parts) * 16


@njit(parallel=True)
def _one_par(p, meta, x2, out2, stats2, check, nth, layer_min):
    """Batch-1 threaded path (see the module docstring): the arguments of :func:`_one`, the thread
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
        c0, c1 = _block(s0, nth, t), _block(s0, nth, t + 1)
        load_bias(p, meta[0, B_OFF], z, c0, c1)
        axpy(p, meta[0, W_OFF], s0, idx, vals, nz, z, c0, c1)  # this thread's columns of z
        hi = min(c1, n0)
        if L > 1 and hi > c0:
            li, lv = np.empty(hi - c0, np.int32), np.empty(hi - c0, np.float32)
            k = gate(p, meta[0, T_OFF], c0, hi, z, li, lv)
            cnt[t] = k
            axpy(p, meta[1, W_OFF], s1, li, lv, k, part[t], 0, s1)
    if L == 1:
        for j in range(out.shape[0]):
            out[j] = z[j]
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
    for j in range(out.shape[0]):
        out[j] = z[j]
    return 0


@njit(parallel=True)
def _batch(p, meta, x, z0, out, stats, bad, check, nth):
    """Batched path: z0 = x @ W0.T + b0 (B, out_0) is given; chunks of samples run in parallel."""
    B, L = x.shape[0], meta.shape[0]
    chunks = min(B, 4 * nth)
    w = width(meta)
    for c in prange(chunks):
        z, idx, vals = np.empty(w, np.float32), np.empty(w, np.int32), np.empty(w, np.float32)
        for b in range(c * B // chunks, (c + 1) * B // chunks):
            xb = x[b]
            nz = 0
            for k in range(xb.shape[0]):
                nz += xb[k] != 0.0
            stats[b, 0] = nz
            if check and not finite(xb):
                bad[b] = 1
                continue
            if L == 1:
                out[b, :] = z0[b, :]
                continue
            n = gate(p, meta[0, T_OFF], 0, meta[0, N_OUT], z0[b], idx, vals)
            stats[b, 1] = n
            layers_from(p, meta, 1, z, n, idx, vals, out[b], stats[b])


def run(packed: Packed, x: np.ndarray, parallel: bool, check_finite: bool, nth: int):
    """:func:`forward` without its input checks (x must be C-contiguous float32 (B, n_in), B >= 1;
    ``nth`` Numba threads). For callers that validated x already, like ``CompiledModel.predict``."""
    B = x.shape[0]
    out = np.empty((B, packed.sizes[-1]), np.float32)  # (B, n_out)
    stats = np.zeros((B, len(packed.sizes) - 1), np.int64)  # (B, L)
    if B == 1:
        if parallel and nth > 1:
            bad = _one_par(
                packed.params, packed.meta, x, out, stats, check_finite, nth, LAYER_MIN_MACS
            )
        else:
            bad = _one(packed.params, packed.meta, x, out, stats, check_finite)
        if bad:
            raise TauGateError("input contains NaN or inf at row 0")
        return out, stats
    with np.errstate(all="ignore"):  # non-finite rows are reported below
        z0 = x @ packed.weight(0).T  # (B, out_0)
        z0 += packed.bias(0)
    bad = np.zeros(B, np.int8)
    _batch(packed.params, packed.meta, x, z0, out, stats, bad, check_finite, nth)
    if check_finite and bad.any():
        raise TauGateError(f"input contains NaN or inf at row {int(np.flatnonzero(bad)[0])}")
    return out, stats


def forward(
    packed: Packed,
    x: np.ndarray,
    parallel: bool = False,
    check_finite: bool = True,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (B, n_out) float32 and counts (B, L) int64 for x (B, n_in) float32 C-order.

    ``counts[:, 0]`` is the number of nonzero input features of each row, ``counts[:, i]`` the
    number of active units of hidden layer ``i - 1``. ``parallel`` (batch 1 only): split each layer
    across ``threads`` (default: the current Numba thread count). Non-finite input rows raise
    :class:`TauGateError` when ``check_finite`` (results for them are unspecified otherwise).
    """
    import numba

    n_in = packed.sizes[0]
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
    top = numba.config.NUMBA_NUM_THREADS
    if threads is not None and not (isinstance(threads, int) and 1 <= threads <= top):
        raise TauGateError(f"rowskip: threads must be an integer from 1 to {top}, got {threads!r}")
    if threads is None:
        return run(packed, x, parallel, check_finite, numba.get_num_threads())
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        return run(packed, x, parallel, check_finite, threads)
    finally:
        numba.set_num_threads(previous)
