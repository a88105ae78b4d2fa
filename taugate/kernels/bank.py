"""Row-skipping forward pass of a mode bank (Numba): one shared base, per-row (tau, gamma).

The base weights are laid out once, as for a single model (:func:`taugate.kernels.layout.pack`:
every weight transposed, one contiguous padded row per input unit). Every mode's gates are two
rows of the (M, S) tables of :class:`PackedBank`: the effective thresholds ``max(tau, 0)`` and the
gains ``gamma`` of all hidden layers. Per sample, layer 0 adds the rows of the nonzero input
features; every later layer adds, for the open units ``z_j > thr[m, j]`` of its input layer only,
``gamma[m, j] * z_j`` times unit ``j``'s row, so a shut unit's row is never read and the gain is
applied in the gate pass. Two paths compute the same function:

- batch 1 (:func:`._njit_bank.one`): serial, the mode an index into the tables;
- batched (:func:`._njit_bank.batch`): ``prange`` over chunks of rows, each chunk with its own
  scratch buffers, row ``b`` in mode ``modes[b]`` (a mixed-mode batch). On one thread, layer 0 of
  the whole batch is first one BLAS matmul (the base is shared, so it is the same for every
  mode); on several, each row runs the whole row-skipping pass inside Numba (see
  :mod:`taugate.kernels.rowskip` for why the two thread pools must not take turns).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from taugate.errors import TauGateError
from taugate.kernels import _njit, _njit_bank
from taugate.kernels._njit_bank import batch as _batch
from taugate.kernels._njit_bank import one as _one
from taugate.kernels.layout import Packed, check_rows, pack, report_bad_rows
from taugate.kernels.threads import numba_threads

__all__ = ["PackedBank", "forward", "pack_bank", "run"]

_COLUMNS = ("N_IN", "N_OUT", "W_OFF", "STRIDE", "B_OFF")
if any(getattr(_njit_bank, c) != getattr(_njit, c) for c in _COLUMNS):  # one layout, two files
    raise ImportError(
        "taugate.kernels._njit_bank: layout columns differ from taugate.kernels._njit"
    )


@dataclass(frozen=True, eq=False)
class PackedBank:
    """A bank's base weights and every mode's gate tables, laid out for the kernels; build it
    with :func:`pack_bank`."""

    base: Packed  # the shared weights and biases (its threshold slots are not used)
    thr: np.ndarray  # (M, S) float32: per mode, max(tau, 0) of every hidden unit (0: ungated)
    gain: np.ndarray  # (M, S) float32: per mode, gamma of every hidden unit (1: ungated)
    g_off: np.ndarray  # (L,) int64: column of hidden layer i's first unit in thr / gain; -1 last

    @property
    def n_modes(self) -> int:
        return int(self.thr.shape[0])

    @property
    def sizes(self) -> tuple[int, ...]:
        return self.base.sizes


def _table(v, n_modes: int, n_out: int, what: str) -> np.ndarray | None:
    if v is None:
        return None
    if not (isinstance(v, np.ndarray) and v.dtype == np.float32 and v.shape == (n_modes, n_out)):
        raise TauGateError(f"pack_bank: {what} must be float32 of shape ({n_modes}, {n_out})")
    return v


def pack_bank(weights: list, biases: list, taus: list, gammas: list) -> PackedBank:
    """Lay out the base (float32 weights (out, in), biases (out,) per layer) and the modes' gates.

    ``taus[i]`` / ``gammas[i]``, for each hidden layer ``i``: a float32 (M, out_i) table, one row
    per mode, or None (an ungated relu layer: threshold 0; gain 1). At least one must be a table
    (it gives M). Raises :class:`TauGateError` on any shape / dtype / chaining problem.
    """
    L = len(weights)
    if len(taus) != L - 1 or len(gammas) != L - 1:
        raise TauGateError(
            f"pack_bank: need one tau and one gamma table (or None) per hidden "
            f"layer ({L - 1}), got {len(taus)} and {len(gammas)}"
        )
    base = pack(weights, biases, [None] * L)  # checks shapes, dtypes and chaining
    given = [t for t in (*taus, *gammas) if t is not None]
    if not given or not all(isinstance(t, np.ndarray) and t.ndim == 2 for t in given):
        raise TauGateError("pack_bank: need at least one (M, out) tau or gamma table")
    M = int(given[0].shape[0])
    if M < 1:
        raise TauGateError("pack_bank: the tables have no mode (0 rows)")
    g_off = np.full(L, -1, np.int64)
    S = 0
    for i in range(L - 1):
        g_off[i], S = S, S + -(-base.sizes[i + 1] // _njit.ALIGN) * _njit.ALIGN
    thr = np.full((M, S), np.inf, np.float32)  # (M, S): padding never opens
    gain = np.zeros((M, S), np.float32)  # (M, S)
    for i in range(L - 1):
        n, o = base.sizes[i + 1], int(g_off[i])
        t = _table(taus[i], M, n, f"taus[{i}]")
        g = _table(gammas[i], M, n, f"gammas[{i}]")
        if t is not None and np.isnan(t).any():
            raise TauGateError(f"pack_bank: taus[{i}] contains NaN")
        if g is not None and not np.isfinite(g).all():
            raise TauGateError(f"pack_bank: gammas[{i}] contains NaN or inf")
        thr[:, o : o + n] = 0.0 if t is None else np.maximum(t, np.float32(0.0))  # (M, n)
        gain[:, o : o + n] = 1.0 if g is None else g  # (M, n)
    return PackedBank(base, thr, gain, g_off)


def run(packed: PackedBank, x: np.ndarray, modes, check_finite: bool, nth: int):
    """:func:`forward` without its checks: x C-contiguous float32 (B, n_in), B >= 1; ``modes`` an
    int (every row in that mode) or a C-contiguous int64 (B,) array of valid mode indices; ``nth``
    the Numba threads in use. For callers that validated both, like ``BankModel.predict``."""
    B, base = x.shape[0], packed.base
    out = np.empty((B, base.sizes[-1]), np.float32)  # (B, n_out)
    stats = np.zeros((B, len(base.sizes) - 1), np.int64)  # (B, L)
    if B == 1:
        m = int(modes) if isinstance(modes, (int, np.integer)) else int(modes[0])
        bad = _one(
            base.params,
            base.meta,
            packed.thr,
            packed.gain,
            packed.g_off,
            m,
            x,
            out,
            stats,
            check_finite,
        )
        report_bad_rows(np.array([bad]))
        return out, stats
    if isinstance(modes, (int, np.integer)):
        modes = np.full(B, modes, np.int64)  # (B,): one mode for every row
    if nth > 1:  # Numba's threads do everything (see taugate.kernels.rowskip.run)
        z0 = np.empty((0, base.sizes[1]), np.float32)  # (0, out_0): layer 0 in the kernel
    else:
        with np.errstate(all="ignore"):  # non-finite rows are reported below
            z0 = x @ base.weight(0).T  # (B, out_0)
            z0 += base.bias(0)
    bad = np.zeros(B, np.int8)
    _batch(
        base.params,
        base.meta,
        packed.thr,
        packed.gain,
        packed.g_off,
        modes,
        x,
        z0,
        out,
        stats,
        bad,
        check_finite,
        nth,
    )
    if check_finite:
        report_bad_rows(bad)
    return out, stats


def forward(
    packed: PackedBank,
    x: np.ndarray,
    modes,
    *,
    check_finite: bool = True,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (B, n_out) float32 and counts (B, L) int64 for x (B, n_in) float32 C-order, row
    ``b`` in mode ``modes[b]`` (an int: every row in that mode).

    ``counts[:, 0]`` is the number of nonzero input features of each row, ``counts[:, i]`` the
    number of open units of hidden layer ``i - 1``. ``threads``: Numba threads for a batch
    (default: the current count). Non-finite input rows raise :class:`TauGateError` when
    ``check_finite`` (results for them are unspecified otherwise).
    """
    if not isinstance(packed, PackedBank):
        raise TauGateError(f"bank: expected a PackedBank, got {type(packed).__name__}")
    n_in, M = packed.sizes[0], packed.n_modes
    check_rows(x, n_in, "bank")
    B = x.shape[0]
    if isinstance(modes, (int, np.integer)) and not isinstance(modes, bool):
        if not 0 <= modes < M:
            raise TauGateError(f"bank: mode index {int(modes)} is not in [0, {M})")
    else:
        m = np.asarray(modes)
        if m.shape != (B,) or m.dtype.kind not in "iu":
            raise TauGateError(
                f"bank: modes must be an int or {B} integer mode indices (one per row), got "
                f"{m.dtype} {m.shape}"
            )
        if B and (m.min() < 0 or m.max() >= M):
            raise TauGateError(f"bank: mode indices must be in [0, {M}), got {m.min()}..{m.max()}")
        modes = np.ascontiguousarray(m, np.int64)
    with numba_threads(threads, "bank: ") as n:
        return run(packed, x, modes, check_finite, n)
