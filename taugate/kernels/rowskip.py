"""Row-skipping forward pass of a gated MLP (Numba), behind the validating :func:`forward`.

Every layer is stored transposed, ``WT`` (in, out): one contiguous row per input unit (see
:mod:`taugate.kernels.layout`). Per sample, each layer starts from its bias and adds ``h_j * WT[j, :]``
for the nonzero inputs ``j`` only: for layer 0 the nonzero input features (zero pixels are skipped),
for later layers the units whose gate is open, ``z_j > max(tau_j, 0)`` (exactly those with
``relu(z) * 1[z > tau] != 0``), kept as an ``(index, value)`` list when the gate decision is made.
A shut unit's row is never read. The last layer's sums are the logits.

Four paths, all computing the same function:

- batch 1, serial (:func:`._njit.one`): no threading overhead; the default for one input;
- batch 1, threaded (:func:`._njit.one_par`, ``parallel=True``): one parallel region per call. Thread
  ``t`` computes its own 16-aligned block of layer 0's columns, gates them, and adds the rows of
  *its* active units to a private full-width buffer of layer 1's sums; the buffers are then summed.
  Later layers split their active rows across threads the same way when they are big enough.
- batched (:func:`._njit.batch`): ``prange`` over chunks of samples, each chunk with its own
  scratch buffers. On one thread, layer 0 of all samples is one BLAS matmul first; on several, each
  sample runs the whole row-skipping pass inside Numba, so that BLAS's and Numba's thread pools
  never take turns on the same cores (an idle BLAS worker spins for a while after each call).
- batched and blocked (:func:`._njit.batch_blocked`, ``run(..., blocked=True)``, the
  ``rowskip-batched`` backend): layer by layer over the whole batch, the output columns in blocks
  whose row slices (:data:`BLOCK_BYTES` in all) stay in the L3 cache while every sample adds its
  open units' slices, so a wide layer's weights are read from memory once per batch instead of
  once per sample. Layer 0 is one BLAS matmul on one thread when more than :data:`DENSE_INPUT` of
  the input features are nonzero; otherwise it skips zero features like the other paths.
"""

from __future__ import annotations

import numpy as np

from taugate.kernels._njit import batch as _batch
from taugate.kernels._njit import batch_blocked as _batch_blocked
from taugate.kernels._njit import one as _one
from taugate.kernels._njit import one_par as _one_par
from taugate.kernels.layout import Packed, check_rows, pack, report_bad_rows
from taugate.kernels.threads import check_threads, numba_threads

__all__ = [
    "LAYER_MIN_MACS", "PARALLEL_MIN_MACS", "Packed", "check_threads", "forward", "pack", "run"
]  # fmt: skip

# the runtime asks for the threaded batch-1 path only for models with more multiply-adds than this
# (e.g. 784-4096-4096-10) and only when the caller sets threads > 1: below it a thread hand-off
# costs more than it saves
PARALLEL_MIN_MACS = 1 << 23
# in the threaded path, a layer after the first two is split across threads only above this much
# work (active rows x row length); passed to the kernel at call time (Numba would freeze a global)
LAYER_MIN_MACS = 1 << 18
# the blocked batched path: bytes of every weight row's slices per column block (they stay in the
# L3 cache while the batch goes through the block), and the share of nonzero input features above
# which layer 0 is one BLAS matmul on one thread (below it, zero features are skipped)
BLOCK_BYTES = 8 << 20
DENSE_INPUT = 0.5


def run(packed: Packed, x: np.ndarray, parallel: bool, check_finite: bool, nth: int, *,
        blocked: bool = False):  # fmt: skip
    """:func:`forward` without its input checks (x must be C-contiguous float32 (B, n_in), B >= 1;
    ``nth`` Numba threads). For callers that validated x already, like ``CompiledModel.predict``.
    ``blocked``: the batched path layer by layer over column blocks (:func:`._njit.batch_blocked`),
    for any batch size."""
    B = x.shape[0]
    out = np.empty((B, packed.sizes[-1]), np.float32)  # (B, n_out)
    stats = np.zeros((B, len(packed.sizes) - 1), np.int64)  # (B, L)
    if B == 1 and not blocked:
        if parallel and nth > 1:
            bad = _one_par(
                packed.params, packed.meta, x, out, stats, check_finite, nth, LAYER_MIN_MACS
            )
        else:
            bad = _one(packed.params, packed.meta, x, out, stats, check_finite)
        if bad:  # (a test first: building the flag array costs more than the whole kernel here)
            report_bad_rows(np.ones(1, bool))
        return out, stats
    # several threads: Numba's threads do everything, since a BLAS call first would leave BLAS's
    # worker spinning on the core that Numba's worker needs next (measured: 8 ms instead of
    # 0.14 ms at batch 8); the blocked path also skips zero features of sparse inputs
    blas = nth == 1 and not (blocked and (len(packed.sizes) < 3
                                          or np.count_nonzero(x) <= DENSE_INPUT * x.size))  # fmt: skip
    z0 = np.empty((0, packed.sizes[1]), np.float32)  # (0, out_0): layer 0 in the kernel
    if blas:
        with np.errstate(all="ignore"):  # non-finite rows are reported below
            z0 = x @ packed.weight(0).T  # (B, out_0)
            z0 += packed.bias(0)
    bad = np.zeros(B, np.int8)
    if blocked:
        _batch_blocked(packed.params, packed.meta, x, z0, out, stats, bad, check_finite,
                       BLOCK_BYTES)  # fmt: skip
    else:
        _batch(packed.params, packed.meta, x, z0, out, stats, bad, check_finite, nth)
    if check_finite:
        report_bad_rows(bad)
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
    n_in = packed.sizes[0]
    check_rows(x, n_in, "rowskip")
    with numba_threads(threads, "rowskip: ") as n:
        return run(packed, x, parallel, check_finite, n)
