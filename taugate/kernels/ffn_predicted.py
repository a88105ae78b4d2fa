"""The FFN block with predicted gates (``rowskip-predicted``, approximate), behind the validating
:func:`ffn_forward_predicted`.

The exact block (:mod:`taugate.kernels.ffn`) computes ``z = Wz x + bz`` for all F units, dense,
before it can skip anything: at 20 % active that first pass is most of its work. Here a low-rank
predictor (:class:`taugate.predictor.LowRank`, ``z_hat = (x A) B + bz``, ``r (d_in + F)``
multiply-adds) guesses z first; only the units with ``z_hat_j > thr_j - margin * sigma_j`` (the
*computed* units) get their exact ``z_j``, then the exact gate, up (glu) and down as in the exact
kernel. A truly open unit predicted shut is skipped: the approximation, measured as recall (the
share of truly open units computed). ``margin`` +inf computes every unit: the exact function.

Per token the multiply-adds are ``r (d_in + F) + c F d_in + a F (d_out [+ d_in if glu])``
against the exact kernel's ``F d_in + a F (d_out [+ d_in])`` (c the computed share, a the open
share, c >= a). Mode banks (several threshold sets) are not supported.

Inputs follow :func:`taugate.kernels.ffn.ffn_forward`: x C-contiguous float32 (N, d_in) or
(d_in,), read in place, never copied.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numba
import numpy as np

from taugate.errors import TauGateError
from taugate.kernels import _njit_ffn_predicted as _k
from taugate.kernels.ffn import FFNPacked, _aligned, _up
from taugate.kernels.layout import report_bad_rows
from taugate.kernels.threads import numba_threads
from taugate.predictor import LowRank, check_lowrank, check_margin

__all__ = ["PredictedFFN", "ffn_forward_predicted", "pack_predictor", "predicted_macs", "warmup"]

WHO = "ffn_forward_predicted: "


@dataclass(frozen=True, eq=False)
class PredictedFFN:
    """An FFN block with its low-rank gate predictor laid out for the kernel; build it with
    :func:`pack_predictor`, change the margin with :meth:`with_margin`."""

    packed: FFNPacked  # the exact block (one mode, gains folded)
    lowrank: LowRank  # the predictor as fitted (a (d_in, r), b (r, F), sigma (F,))
    at: np.ndarray  # (r, sin) float32: a transposed, rows padded with zeros, 64-byte aligned
    b: np.ndarray  # (r, sf) float32: b, rows padded to sf = F rounded up to 16
    bzp: np.ndarray  # (sf,) float32: bz padded with zeros (the guess starts from it)
    cut: np.ndarray  # (F,) float32: thr - margin * sigma (-inf everywhere for margin +inf)
    margin: float  # in prediction-error stds; +inf: every unit computed (exact)

    def __post_init__(self) -> None:
        if not isinstance(self.packed, FFNPacked):
            raise TauGateError(f"PredictedFFN: packed must be an FFNPacked, got {self.packed!r}")
        check_margin(self.margin)

    @property
    def rank(self) -> int:
        return int(self.at.shape[0])

    @property
    def every(self) -> bool:
        """True iff every unit is computed (margin +inf)."""
        return self.margin == np.inf

    def with_margin(self, margin: float) -> PredictedFFN:
        """The same block and predictor (arrays shared) at another margin."""
        m = check_margin(margin)
        return dataclasses.replace(self, cut=_cut(self.packed, self.lowrank, m), margin=m)

    def macs(self) -> int:
        """Multiply-adds of one guess (0 when every unit is computed)."""
        return 0 if self.every else self.lowrank.macs()


def _cut(packed: FFNPacked, p: LowRank, margin: float) -> np.ndarray:
    """(F,) float32 ``thr - margin * sigma``; -inf everywhere for margin +inf (so an unreachable
    threshold +inf minus an infinite margin is not NaN)."""
    cut = _aligned(1, packed.n_units)[0]
    if margin == np.inf:
        cut[:] = -np.inf
    else:
        with np.errstate(invalid="ignore", over="ignore"):
            cut[:] = packed.thr[0] - np.float32(margin) * p.sigma  # (F,)
    return cut


def pack_predictor(packed: FFNPacked, lowrank: LowRank, *, margin: float) -> PredictedFFN:
    """Validate ``lowrank`` against ``packed`` (a (d_in, r), b (r, F), sigma (F,) float32, finite,
    1 <= r <= min(d_in, F)) and lay it out for the kernel at ``margin`` (prediction-error stds, or
    +inf: exact). A mode bank (``packed.n_modes`` > 1) is refused."""
    if not isinstance(packed, FFNPacked):
        raise TauGateError(
            f"pack_predictor: expected an FFNPacked block, got {type(packed).__name__}"
        )
    if packed.n_modes > 1 or packed.gain.shape[0]:
        raise TauGateError(
            f"pack_predictor: predicted gates need a one-mode block, got a mode bank of "
            f"{packed.n_modes} modes"
        )
    check_lowrank(lowrank, packed.d_in, packed.n_units, "pack_predictor")
    m = check_margin(margin)
    d_in, F, _ = packed.sizes
    r = lowrank.rank
    at = _aligned(r, _up(d_in))  # (r, sin)
    at[:, :d_in] = lowrank.a.T  # (d_in, r) -> (r, d_in)
    sf = _up(F)
    b = _aligned(r, sf)  # (r, sf)
    b[:, :F] = lowrank.b
    bzp = _aligned(1, sf)[0]  # (sf,)
    bzp[:F] = packed.bz
    return PredictedFFN(packed, lowrank, at, b, bzp, _cut(packed, lowrank, m), m)


def predicted_macs(pred: PredictedFFN, counts, computed) -> float:
    """Mean over tokens of the multiply-adds the predicted kernel needed: the guess, the z row of
    every computed unit, and the up (glu) and WdT rows of every open one."""
    d_in, _, d_out = pred.packed.sizes
    k, c = np.asarray(counts, np.float64), np.asarray(computed, np.float64)
    if k.ndim != 1 or k.size == 0 or c.shape != k.shape:
        raise TauGateError(
            f"predicted_macs: counts and computed must be (N,), got {k.shape}, {c.shape}"
        )
    per_open = (d_in if pred.packed.glu else 0) + d_out
    return float(pred.macs() + c.mean() * d_in + k.mean() * per_open)


def _args(pred: PredictedFFN):
    p = pred.packed
    return (p.wz, p.bz, p.wu, p.bu, p.wdt, p.bd, p.thr[0], p.act, p.glu, pred.at, pred.b,
            pred.bzp, pred.cut, pred.every)  # fmt: skip


def _out(out, shape: tuple):
    if out is None:
        return np.empty(shape, np.float32)
    if not (isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == shape
            and out.flags.c_contiguous and out.flags.writeable):  # fmt: skip
        got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise TauGateError(f"{WHO}out must be writable C-contiguous float32 {shape}, got {got}")
    return out


def ffn_forward_predicted(pred: PredictedFFN, x, *, out=None, check_finite=True, threads=None):
    """``(y, counts, computed)`` of the block with predicted gates for x (N, d_in) float32
    C-contiguous, N >= 1, used in place: y (N, d_out) float32 (written into ``out`` when given),
    counts (N,) int64 the open units per token (computed and exactly open), computed (N,) int64
    the units whose exact z was computed. A 1-D x (d_in,) is one token and gives y (d_out,).
    ``threads``: Numba threads for this call (default: the current count; one token runs
    serially). Non-finite rows raise :class:`TauGateError` when ``check_finite`` (their results
    are unspecified otherwise)."""
    if not isinstance(pred, PredictedFFN):
        raise TauGateError(
            f"{WHO}expected a PredictedFFN (pack_predictor), got {type(pred).__name__}"
        )
    d_in, _, d_out = pred.packed.sizes
    if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim in (1, 2)
            and x.flags.c_contiguous and x.shape[-1] == d_in and x.size > 0):  # fmt: skip
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise TauGateError(f"{WHO}x must be C-contiguous float32 (N, {d_in}), got {got}")
    x2 = x.reshape(1, d_in) if x.ndim == 1 else x  # (N, d_in), a view
    N = x2.shape[0]
    out = _out(out, (d_out,) if x.ndim == 1 else (N, d_out))
    out2 = out.reshape(N, d_out)  # a view
    counts, comp = np.zeros(N, np.int64), np.zeros(N, np.int64)
    check = bool(check_finite)
    if N == 1 and threads is None:  # one token runs serially: no thread-pool calls
        if _k.one(*_args(pred), x2, out2, counts, comp, check) and check:  # (no flag array:
            report_bad_rows(np.ones(1, bool), WHO)  # it would cost more than a small block)
        return out, counts, comp
    else:
        bad = np.zeros(N, np.int8)
        with numba_threads(threads, WHO) as nth:
            if N == 1:
                bad[0] = _k.one(*_args(pred), x2, out2, counts, comp, check)
            else:
                _k.batch(*_args(pred), x2, out2, counts, comp, bad, check, nth)
    if check:
        report_bad_rows(bad, WHO)
    return out, counts, comp


def warmup(pred: PredictedFFN) -> None:
    """Compile (or load from the disk cache) every path for this block's types."""
    x = np.zeros((2, pred.packed.d_in), np.float32)
    for p in (pred, pred.with_margin(np.inf)):
        ffn_forward_predicted(p, x[:1], threads=1)
        ffn_forward_predicted(p, x, threads=1)
        if numba.config.NUMBA_NUM_THREADS > 1:
            ffn_forward_predicted(p, x, threads=2)
