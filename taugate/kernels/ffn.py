"""Gated transformer FFN block (Numba), behind the validating :func:`ffn_forward`.

Per token x (d_in,): ``z = Wz x + bz`` for all F units (dense: nothing predicts which fire; Wz is
``up`` of a plain FFN, ``gate`` of a gated-linear / SwiGLU one); unit j is open iff
``z_j > thr_j`` (+inf: never, -inf: always); ``h_j = phi(z_j)`` (plain) or
``phi(z_j) * (Wu[j] . x + bu[j])`` (glu) for open units only; ``y = bd + sum_open h_j WdT[j]``,
with ``WdT`` (F, d_out) the ``down`` weight transposed (gains already folded in). A shut unit's
rows of Wu and WdT are never read.

A mode bank (one frozen base, M named (tau, gamma) sets) is one block with an (M, F) threshold
table and an (M, F) gain table: the gains cannot be folded into weights every mode shares, so
they multiply ``h_j`` in the gate pass; token i runs in mode ``modes[i]`` (a mixed-mode batch),
and the z pass, shared by every mode, is done once per token as for one model.

Paths (all in :mod:`taugate.kernels._njit_ffn`, all computing the same function):

- batch 1 (``one``): serial; the z pass over the rows of Wz, one row after the other (one
  sequential stream, which the hardware prefetcher serves at close to full bandwidth), a
  branch-free gate that lists the open units, then their ``up`` dot products (glu) and the axpy
  of their WdT rows into y, eight scattered rows per pass;
- batched (``batch``): ``prange`` over chunks of at most 64 tokens (a multiple of the thread
  count), each with its own scratch; a chunk walks the units in blocks (:func:`block_units`,
  4 MiB of each weight's rows): the z of all its tokens for the block (four Wz rows by four
  tokens per pass, faster here than one BLAS call first, and BLAS's and Numba's thread pools then
  never take turns on the same cores), then per token the block's open units as in batch 1,
  while the block's rows stay in cache for every token;
- ``dense=True``: the dense twins, the same function over every unit and row (the gate a 0/1
  factor), the baseline the work cap is measured against. Their rows are consecutive, so their
  ``up`` dot products and axpys run one row per pass, the faster order for consecutive rows.

Large weights start on a 2 MiB boundary, so with Linux's transparent huge pages (which numpy
requests for large arrays) every row lies in a huge page: a shut block's scattered rows then cost
no TLB misses.

Inputs are used in place, never copied: x must be C-contiguous float32 (a contiguous CPU float32
torch tensor's ``.numpy()`` qualifies); anything else (float64, a strided view) is refused with a
one-line error rather than copied behind the caller's back (``np.ascontiguousarray(x, np.float32)``
makes a qualifying copy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from taugate.errors import TauGateError
from taugate.kernels import _njit_ffn as _k
from taugate.kernels.layout import report_bad_rows
from taugate.kernels.threads import numba_threads

__all__ = ["FFNPacked", "block_units", "ffn_forward", "ffn_macs", "pack_ffn", "warmup"]


@dataclass(frozen=True, eq=False)
class FFNPacked:
    """One FFN block laid out for the kernels; build it with :func:`pack_ffn`.

    Weight rows are padded with zeros to ``sin`` / ``sout`` floats (d_in / d_out rounded up to a
    multiple of 16) and start on 64-byte boundaries; :meth:`view` gives the unpadded arrays.
    """

    wz: np.ndarray  # (F, sin) float32: gate (glu) or up (plain) weight, rows padded
    bz: np.ndarray  # (F,) float32
    wu: np.ndarray  # (F, sin) float32 up weight if glu, else (0, sin)
    bu: np.ndarray  # (F,) float32 if glu, else (0,)
    wdt: np.ndarray  # (F, sout) float32: down weight transposed (gains folded in if gain is
    #   empty), rows padded
    bd: np.ndarray  # (sout,) float32 down bias, padded with zeros
    thr: np.ndarray  # (M, F) float32 effective thresholds per mode (may be +-inf); M = 1: one model
    gain: np.ndarray  # (M, F) float32 gains per mode (a mode bank), or (0, F): folded into wdt
    act: int  # activation code: relu 0, gelu 1, gelu-tanh 2, silu 3 (taugate.activations)
    glu: bool  # gated-linear FFN (h = phi(z) * up)
    sizes: tuple[int, int, int]  # (d_in, F, d_out)
    macs_dense: int  # multiply-adds per token of the dense FFN

    @property
    def n_modes(self) -> int:
        return int(self.thr.shape[0])

    @property
    def d_in(self) -> int:
        return self.sizes[0]

    @property
    def n_units(self) -> int:
        return self.sizes[1]

    @property
    def d_out(self) -> int:
        return self.sizes[2]

    def view(self, name: str) -> np.ndarray:
        """The unpadded array ``name`` (wz, wu, wdt, bd; others as stored), a view."""
        arr = getattr(self, name)
        if name in ("wz", "wu"):
            return arr[:, : self.d_in]
        if name == "wdt":
            return arr[:, : self.d_out]
        return arr[: self.d_out] if name == "bd" else arr


HUGE = 2 << 20  # bytes of a transparent huge page (x86-64 and arm64 Linux)


def _aligned(rows: int, cols: int) -> np.ndarray:
    """A zeroed (rows, cols) float32 C array starting on a 64-byte boundary, or for a weight of
    at least one huge page on a 2 MiB boundary: numpy asks Linux for transparent huge pages on
    large arrays, and an aligned start puts every row in one, so the scattered rows of a shut
    block cost no TLB misses (8-10 % faster skipping at 4096 x 1024 here; without huge pages the
    alignment does nothing, and costs at most 2 MiB per weight)."""
    n = rows * cols
    align = HUGE if 4 * n >= HUGE else 64
    buf = np.zeros(n + align // 4, np.float32)
    shift = (-buf.ctypes.data % align) // 4
    return buf[shift : shift + n].reshape(rows, cols)


def _vec(a: np.ndarray) -> np.ndarray:
    """An aligned copy of the 1-D float32 array a."""
    v = _aligned(1, a.shape[0])[0]
    v[:] = a
    return v


def _up(n: int) -> int:
    return -(-n // _k.ALIGN) * _k.ALIGN


def _check(name: str, a, shape: tuple, inf_ok: bool = False) -> None:
    want = "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
    if not (isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape == shape):
        got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        raise TauGateError(f"pack_ffn: {name} must be float32 of shape {want}, got {got}")
    if np.isnan(a).any():
        raise TauGateError(f"pack_ffn: {name} contains NaN")
    if not inf_ok and np.isinf(a).any():
        raise TauGateError(f"pack_ffn: {name} contains inf")


def pack_ffn(wz, bz, wdt, bd, thr, *, act: int, wu=None, bu=None, gain=None) -> FFNPacked:
    """Validate and lay out one FFN block: wz (F, d_in), bz (F,), wdt (F, d_out), bd (d_out,),
    thr (F,) or (M, F) for M modes (may be +-inf, never NaN), and for a glu block wu (F, d_in),
    bu (F,); all float32. ``act`` is an activation code
    (``taugate.activations.get_activation(name).code``). ``gain``: None (the gains are folded into
    wdt), or the (M, F) gains per mode of a mode bank (shape of thr as (M, F)), applied in the
    gate pass."""
    if not (isinstance(wz, np.ndarray) and wz.ndim == 2 and wz.shape[0] and wz.shape[1]):
        got = getattr(wz, "shape", type(wz).__name__)
        raise TauGateError(f"pack_ffn: wz must be a non-empty float32 (F, d_in) array, got {got}")
    F, d_in = wz.shape
    if not (isinstance(wdt, np.ndarray) and wdt.ndim == 2 and wdt.shape[1]):
        got = getattr(wdt, "shape", type(wdt).__name__)
        raise TauGateError(f"pack_ffn: wdt must be a float32 ({F}, d_out) array, got {got}")
    d_out = wdt.shape[1]
    if (wu is None) != (bu is None):
        raise TauGateError("pack_ffn: a glu block needs both wu and bu (a plain one neither)")
    glu = wu is not None
    arrays = [("wz", wz, (F, d_in)), ("bz", bz, (F,)), ("wdt", wdt, (F, d_out))]
    arrays += [("bd", bd, (d_out,))] + ([("wu", wu, (F, d_in)), ("bu", bu, (F,))] if glu else [])
    for name, a, shape in arrays:
        _check(name, a, shape)
    thr2 = thr[None, :] if isinstance(thr, np.ndarray) and thr.ndim == 1 else thr  # (1, F)
    M = thr2.shape[0] if isinstance(thr2, np.ndarray) and thr2.ndim == 2 and thr2.shape[0] else 1
    _check("thr", thr2, (M, F), inf_ok=True)
    if gain is not None:
        gain = gain[None, :] if isinstance(gain, np.ndarray) and gain.ndim == 1 else gain
        _check("gain", gain, (M, F))
    codes = (_k.RELU, _k.GELU, _k.GELU_TANH, _k.SILU)
    if (
        isinstance(act, (bool, np.bool_))
        or not isinstance(act, (int, np.integer))
        or act not in codes
    ):
        raise TauGateError(f"pack_ffn: act must be an activation code 0-3, got {act!r}")
    sin, sout = _up(d_in), _up(d_out)
    pz, pu, pd = _aligned(F, sin), _aligned(F if glu else 0, sin), _aligned(F, sout)
    pz[:, :d_in] = wz
    pd[:, :d_out] = wdt
    if glu:
        pu[:, :d_in] = wu
    pbd = _aligned(1, sout)[0]
    pbd[:d_out] = bd
    macs = F * d_in * (2 if glu else 1) + F * d_out
    table = _aligned(M, F)
    table[:] = thr2
    gains = _aligned(0 if gain is None else M, F)
    gains[:] = 0 if gain is None else gain
    return FFNPacked(
        pz, _vec(bz), pu, _vec(bu) if glu else np.zeros(0, np.float32), pd, pbd, table, gains,
        int(act), glu, (d_in, F, d_out), macs,
    )  # fmt: skip


def ffn_macs(packed: FFNPacked, counts) -> float:
    """Mean over tokens of the multiply-adds the skipping path needs: the dense z pass plus, per
    open unit, its ``up`` row (glu) and its WdT row."""
    d_in, F, d_out = packed.sizes
    c = np.asarray(counts, np.float64)
    if c.ndim != 1 or c.size == 0:
        raise TauGateError(f"ffn_macs: counts must be a non-empty (N,) array, got {c.shape}")
    per_open = (d_in if packed.glu else 0) + d_out
    return float(F * d_in + c.mean() * per_open)


def _args(p: FFNPacked):
    return p.wz, p.bz, p.wu, p.bu, p.wdt, p.bd, p.thr, p.gain, p.act, p.glu


def _modes(p: FFNPacked, modes, n: int) -> np.ndarray:
    """The (n,) int64 mode index per token of ``modes``: None (a one-mode block), one int for
    every token, or one per token."""
    M = p.n_modes
    if modes is None:
        if M > 1:
            raise TauGateError(
                f"ffn_forward: the block has {M} modes; give modes= (one index, or one per token)"
            )
        return np.zeros(n, np.int64)
    if isinstance(modes, (int, np.integer)) and not isinstance(modes, (bool, np.bool_)):
        if not 0 <= modes < M:
            raise TauGateError(f"ffn_forward: mode {modes} is out of range for {M} modes")
        return np.full(n, modes, np.int64)
    arr = np.asarray(modes)
    if arr.shape != (n,) or arr.dtype.kind not in "iu":
        raise TauGateError(
            f"ffn_forward: modes must be an int or ({n},) integers (one per token), got "
            f"{arr.dtype} {arr.shape}"
        )
    if n and not (0 <= arr.min() and arr.max() < M):
        bad = int(np.flatnonzero((arr < 0) | (arr >= M))[0])
        raise TauGateError(f"ffn_forward: modes[{bad}] = {arr[bad]} is out of range for {M} modes")
    return arr.astype(np.int64, copy=False)


def block_units(packed: FFNPacked) -> int:
    """Units per block of the batched path: BLOCK_BYTES of a weight's rows, a multiple of 16, at
    least 16 and at most the block's width."""
    rows = _k.BLOCK_BYTES // (4 * packed.wz.shape[1]) // 16 * 16
    return int(min(packed.n_units, max(16, rows)))


def _run(p: FFNPacked, x2, out2, counts, modes, dense: bool, check: bool, nth: int,
         blk: int) -> None:  # fmt: skip
    """The kernels on validated x2 (N, d_in), out2 (N, d_out), counts (N,), modes (N,)."""
    N = x2.shape[0]
    if N == 1:
        kernel = _k.one_dense if dense else _k.one
        if kernel(*_args(p), int(modes[0]), x2, out2, counts, check) and check:  # (a test
            report_bad_rows(np.ones(1, bool), "ffn_forward: ")  # first: no flag array)
        return
    bad = np.zeros(N, np.int8)
    _k.batch(*_args(p), modes, x2, out2, counts, bad, check, nth, dense, blk)
    if check:
        report_bad_rows(bad, "ffn_forward: ")


def ffn_forward(packed: FFNPacked, x, *, modes=None, out=None, dense=False, check_finite=True,
                threads=None, block=None):  # fmt: skip
    """``(y, counts)`` of the FFN block for x (N, d_in) float32 C-contiguous, N >= 1, used in
    place: y (N, d_out) float32 (written into ``out`` when given), counts (N,) int64 the open units
    per token. A 1-D x (d_in,) is one token and gives y (d_out,). ``modes``: for a block of
    several modes (a bank), the mode of every token (an int) or of each (N,); a one-mode block
    needs none. ``dense``: the dense twin.
    ``threads``: Numba threads for this call (default: the current count; one token always runs
    serially, N >= 2 split into chunks of tokens across them). ``block``: units per block of the
    batched path (default :func:`block_units`; a tuning knob, the result does not depend on it).
    Non-finite rows raise :class:`TauGateError` when ``check_finite`` (their results are
    unspecified otherwise)."""
    d_in, F, d_out = packed.sizes
    if block is None:
        block = block_units(packed)
    elif (
        isinstance(block, (bool, np.bool_)) or not isinstance(block, (int, np.integer)) or block < 1
    ):
        raise TauGateError(f"ffn_forward: block must be a positive unit count, got {block!r}")
    blk = int(min(block, F))
    if not (
        isinstance(x, np.ndarray)
        and x.dtype == np.float32
        and x.ndim in (1, 2)
        and x.flags.c_contiguous
        and x.shape[-1] == d_in
        and x.size > 0
    ):
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise TauGateError(f"ffn_forward: x must be C-contiguous float32 (N, {d_in}), got {got}")
    x2 = x.reshape(1, d_in) if x.ndim == 1 else x  # a view
    shape = (d_out,) if x.ndim == 1 else (x.shape[0], d_out)
    if out is None:
        out = np.empty(shape, np.float32)
    elif not (
        isinstance(out, np.ndarray)
        and out.dtype == np.float32
        and out.shape == shape
        and out.flags.c_contiguous
        and out.flags.writeable
    ):
        got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise TauGateError(
            f"ffn_forward: out must be writable C-contiguous float32 {shape}, got {got}"
        )
    out2 = out.reshape(x2.shape[0], d_out)  # a view
    counts = np.zeros(x2.shape[0], np.int64)
    m = _modes(packed, modes, x2.shape[0])  # (N,) int64
    if x2.shape[0] == 1 and threads is None:  # one token runs serially: no thread-pool calls
        _run(packed, x2, out2, counts, m, bool(dense), bool(check_finite), 1, blk)
        return out, counts
    with numba_threads(threads, "ffn_forward: ") as nth:
        _run(packed, x2, out2, counts, m, bool(dense), bool(check_finite), nth, blk)
    return out, counts


def warmup(packed: FFNPacked) -> None:
    """Compile (or load from the disk cache) every path for this block's types."""
    x = np.zeros((2, packed.d_in), np.float32)
    for dense in (False, True):
        ffn_forward(packed, x[:1], modes=0, dense=dense, threads=1)
        ffn_forward(packed, x, modes=0, dense=dense, threads=1)
        if numba.config.NUMBA_NUM_THREADS > 1:
            ffn_forward(packed, x, modes=0, dense=dense, threads=2)
