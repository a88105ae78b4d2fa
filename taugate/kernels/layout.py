"""Memory layout of a gated MLP for the row-skipping kernels: :class:`Packed`, built by :func:`pack`.

All weights, biases and thresholds of a model sit in one flat, 64-byte aligned float32 buffer, each
layer's weight transposed (in, out) so that an input unit's outgoing weights are one contiguous
row, padded with zeros to a multiple of 16 floats (see :mod:`taugate.kernels._njit`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from taugate.errors import TauGateError
from taugate.kernels._njit import ALIGN, B_OFF, N_OUT, T_OFF


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
    return -(-n // ALIGN) * ALIGN


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
    buf = np.zeros(off + ALIGN, np.float32)
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


def check_rows(x, n_in: int, who: str) -> None:
    """A one-line error unless x is a non-empty C-contiguous float32 (B, n_in) array (the
    kernels read it in place, never copied)."""
    if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 2
            and x.flags.c_contiguous and x.shape[1] == n_in and x.shape[0] > 0):  # fmt: skip
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise TauGateError(f"{who}: input must be C-contiguous float32 (B, {n_in}), got {got}")


def report_bad_rows(bad, who: str = "") -> None:
    """The one-line error naming the first row flagged in ``bad`` (B,) (a kernel's non-finite
    rows: int flags or bools), if any; ``who`` prefixes it (``"ffn_forward: "``)."""
    if bad.any():
        raise TauGateError(f"{who}input contains NaN or inf at row {int(np.flatnonzero(bad)[0])}")
