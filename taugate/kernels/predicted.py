"""Predicted-gate forward pass of a gated MLP (Numba), behind the validating :func:`forward`.

Approximate on purpose: a hidden layer with a low-rank predictor (:mod:`taugate.predictor`)
computes the exact ``z_j`` only of the units whose guess clears ``thr_j - margin * sigma_j``, and
gates those exactly; a unit the predictor marks shut is skipped even if it would have fired. With
margin +inf every unit is computed and the result is the exact row-skip pass's. Layers without a
predictor (and the output layer) run the exact row-skip step. The kernels, and the layout of the
predictor buffer, are in :mod:`taugate.kernels._njit_predicted`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from taugate.errors import TauGateError
from taugate.kernels import _njit_predicted as _k
from taugate.kernels.layout import Packed, check_rows, report_bad_rows
from taugate.kernels.threads import numba_threads
from taugate.predictor import check_lowrank, check_margin

__all__ = ["PredictedPacked", "forward", "pack_predicted", "run"]

ALIGN = 16  # floats per 64-byte line: every row of q starts aligned


def _up(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


@dataclass(frozen=True, eq=False)
class PredictedPacked:
    """An MLP's exact layout plus its predictors; build it with :func:`pack_predicted`."""

    packed: Packed  # the exact row-skip layout (biases, thresholds, unpredicted layers)
    q: np.ndarray  # (Q,) float32: per predicted layer A^T rows, B rows, cut, weight rows
    qmeta: np.ndarray  # (L, 7) int64: see taugate.kernels._njit_predicted (rank 0: none)
    predictors: tuple  # (L - 1,) LowRank or None per hidden layer
    margin: float  # the cut is thr - margin * sigma (+inf: every unit computed, exact)


def pack_predicted(packed: Packed, predictors, *, margin: float) -> PredictedPacked:
    """Lay out ``predictors`` (one :class:`~taugate.predictor.LowRank` or None per hidden layer of
    ``packed``) for the kernel, with cuts at ``margin``. A predictor whose shapes do not fit its
    layer is a one-line error naming the layer and the expected shape."""
    if not isinstance(packed, Packed):
        raise TauGateError(f"pack_predicted needs a Packed model, got {type(packed).__name__}")
    margin = check_margin(margin)
    sizes, L = packed.sizes, len(packed.sizes) - 1
    preds = list(predictors)
    if len(preds) != L - 1:
        raise TauGateError(f"pack_predicted: need {L - 1} predictors (or None), one per hidden "
                           f"layer, got {len(preds)}")  # fmt: skip
    for i, pr in enumerate(preds):
        if pr is not None:
            check_lowrank(pr, sizes[i], sizes[i + 1], f"hidden layer {i} ({sizes[i]} -> {sizes[i + 1]})")  # fmt: skip
    qm = np.zeros((L, 7), np.int64)
    off = 0
    for i, pr in enumerate(preds):
        if pr is None:
            continue
        n_in, n_out, r = sizes[i], sizes[i + 1], pr.rank
        rp, s, sin = _up(r), int(packed.meta[i, _k.STRIDE]), _up(n_in)
        qm[i, : _k.A_OFF] = (r, rp)
        qm[i, _k.A_OFF], off = off, off + r * sin
        qm[i, _k.BQ_OFF], off = off, off + r * s
        qm[i, _k.CUT_OFF], off = off, off + s
        qm[i, _k.WR_OFF], off = off, off + n_out * sin
        qm[i, _k.SIN] = sin
    buf = np.zeros(off + ALIGN, np.float32)
    shift = (-buf.ctypes.data % 64) // 4
    q = buf[shift : shift + off]
    for i, pr in enumerate(preds):
        if pr is None:
            continue
        n_in, n_out, r = sizes[i], sizes[i + 1], pr.rank
        rp, sin, s = int(qm[i, _k.RPAD]), int(qm[i, _k.SIN]), int(packed.meta[i, _k.STRIDE])
        q[qm[i, _k.A_OFF] : qm[i, _k.A_OFF] + r * sin].reshape(r, sin)[:, :n_in] = pr.a.T
        q[qm[i, _k.BQ_OFF] : qm[i, _k.BQ_OFF] + r * s].reshape(r, s)[:, :n_out] = pr.b
        cut = q[qm[i, _k.CUT_OFF] : qm[i, _k.CUT_OFF] + s]
        with np.errstate(invalid="ignore"):  # inf * 0 for a unit with sigma 0 and margin inf
            c = packed.threshold(i) - np.float32(margin) * pr.sigma
        cut[:n_out] = -np.inf if margin == np.inf else c
        cut[n_out:] = np.inf  # padding never a candidate
        rows = q[qm[i, _k.WR_OFF] : qm[i, _k.WR_OFF] + n_out * sin].reshape(n_out, sin)
        rows[:, :n_in] = packed.weight(i)
    return PredictedPacked(packed, q, qm, tuple(preds), margin)


def run(pp: PredictedPacked, x: np.ndarray, check_finite: bool, nth: int = 1):
    """:func:`forward` without its input checks: x C-contiguous float32 (B, n_in), B >= 1."""
    p = pp.packed
    B, L = x.shape[0], len(p.sizes) - 1
    # every entry is written by the kernel (for a finite row; a bad row raises)
    out = np.empty((B, p.sizes[-1]), np.float32)  # (B, n_out)
    stats = np.empty((B, L), np.int64)  # (B, L)
    comp = np.empty((B, max(1, L - 1)), np.int64)  # (B, L - 1) candidates per hidden layer
    if B == 1:
        if _k.one(p.params, p.meta, pp.q, pp.qmeta, x, out, stats, comp, check_finite):
            report_bad_rows(np.ones(1, bool))
        return out, stats, comp if L > 1 else comp[:, :0]
    bad = np.zeros(B, np.int8)
    _k.batch(p.params, p.meta, pp.q, pp.qmeta, x, out, stats, comp, bad, check_finite, nth)
    if check_finite:
        report_bad_rows(bad)
    return out, stats, comp if L > 1 else comp[:, :0]


def forward(pp: PredictedPacked, x: np.ndarray, *, check_finite: bool = True,
            threads: int | None = None):  # fmt: skip
    """``(logits (B, n_out), counts (B, L), computed (B, L - 1))`` for x (B, n_in) float32
    C-order: counts as in :func:`taugate.kernels.rowskip.forward` (open units among those
    computed), ``computed`` the units each hidden layer computed exactly (its width where it has
    no predictor). Approximate unless the margin is +inf (see the module docstring)."""
    if not isinstance(pp, PredictedPacked):
        raise TauGateError(f"forward needs a PredictedPacked, got {type(pp).__name__}")
    check_rows(x, pp.packed.sizes[0], "rowskip-predicted")
    with numba_threads(threads, "rowskip-predicted: ") as n:
        return run(pp, x, check_finite, n)


def warmup(pp: PredictedPacked) -> None:
    x = np.zeros((2, pp.packed.sizes[0]), np.float32)  # (2, n_in)
    run(pp, x[:1], True)
    run(pp, x, True, 1)
