"""The runtime backends' kernels (``dense``, ``compact``, ``rowskip``, ``rowskip-batched`` and the
approximate ``rowskip-predicted``), built by the factories that
:mod:`taugate.backends` names. Each kernel takes a checked float32 (B, n_in) batch and returns
``(logits, counts)``; see ``ModelSpec.forward`` for the counts."""

from __future__ import annotations

import numba
import numpy as np

from taugate.kernels import predicted as kp
from taugate.kernels import rowskip as rs
from taugate.kernels.layout import report_bad_rows
from taugate.kernels.threads import numba_threads
from taugate.spec import ModelSpec


class NumpyKernel:
    """``ModelSpec.forward`` (numpy BLAS, gates as masks) on a fixed spec."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def __call__(self, x: np.ndarray, check_finite: bool, threads: int | None = None):
        """``threads`` is not used: numpy's BLAS has its own pool (see ``bench.machine``)."""
        if not check_finite:
            with np.errstate(all="ignore"):  # the caller accepted unspecified results for bad rows
                return self.spec.forward(x)
        report_bad_rows(~np.isfinite(x).all(axis=1))  # (B,) rows with NaN or inf
        return self.spec.forward(x)


def dense(model) -> NumpyKernel:
    """The uncompacted matrices: what the network costs without skipping (removed units are zero
    rows that never fire, so the function is the same)."""
    return NumpyKernel(model.spec.uncompacted())


def compact(model) -> NumpyKernel:
    return NumpyKernel(model.spec)


class RowSkipKernel:
    """The Numba row-skipping kernels of :mod:`taugate.kernels.rowskip` on the packed weights."""

    def __init__(self, spec: ModelSpec, *, blocked: bool = False) -> None:
        self.packed = rs.pack(list(spec.weights), list(spec.biases), list(spec.taus))
        self.blocked = blocked  # every batch through the blocked batched path (rowskip-batched)

    def threaded_batch_one(self, threads: int | None) -> bool:
        """Split a single input across threads: only when asked for and the model is big."""
        return threads is not None and threads > 1 and self.packed.macs >= rs.PARALLEL_MIN_MACS

    def __call__(self, x: np.ndarray, check_finite: bool, threads: int | None = None):
        blocked = self.blocked
        parallel = not blocked and self.threaded_batch_one(threads)
        if x.shape[0] == 1 and not parallel and not blocked:  # the hot path: serial batch 1
            return rs.run(self.packed, x, False, check_finite, 1)
        previous = numba.get_num_threads()
        if threads is None or threads == previous:  # (no context manager: this is a hot path)
            return rs.run(self.packed, x, parallel, check_finite, previous, blocked=blocked)
        with numba_threads(threads):  # the batched and threaded kernels run on Numba's pool
            return rs.run(self.packed, x, parallel, check_finite, threads, blocked=blocked)

    def warmup(self) -> None:
        """Compile (or load from Numba's disk cache) the serial, threaded and batched paths."""
        x = np.zeros((2, self.packed.sizes[0]), np.float32)  # (2, n_in)
        rs.run(self.packed, x[:1], False, True, 1)
        rs.run(self.packed, x[:1], True, True, 2)  # nth=2 compiles the threaded path
        rs.run(self.packed, x, False, True, numba.get_num_threads())
        rs.run(self.packed, x, False, True, numba.get_num_threads(), blocked=True)


def rowskip(model) -> RowSkipKernel:
    return RowSkipKernel(model.spec)


def rowskip_batched(model) -> RowSkipKernel:
    """The blocked batched path for every batch size (:func:`taugate.kernels._njit.batch_blocked`)."""
    return RowSkipKernel(model.spec, blocked=True)


class PredictedKernel:
    """The approximate predicted-gate kernels of :mod:`taugate.kernels.predicted` on the model's
    packed weights and predictor (at the predictor's margin)."""

    uses_predictor = True  # CompiledModel drops this kernel when its predictor changes

    def __init__(self, model) -> None:
        from taugate.errors import TauGateError

        if model.predictor is None:
            raise TauGateError(
                "rowskip-predicted needs a predictor: compile with `taugate compile --predictor "
                "RANK` (or set CompiledModel.predictor)"
            )
        packed = model.kernel("rowskip").packed  # the exact layout, shared (not packed twice)
        self.pp = kp.pack_predicted(packed, model.predictor.layers, margin=model.predictor.margin)
        self.last_computed: np.ndarray | None = None  # (B, L - 1) units computed, last call

    def __call__(self, x: np.ndarray, check_finite: bool, threads: int | None = None):
        if x.shape[0] == 1:  # the hot path: serial batch 1
            out, counts, self.last_computed = kp.run(self.pp, x, check_finite)
            return out, counts
        with numba_threads(threads) as n:
            out, counts, self.last_computed = kp.run(self.pp, x, check_finite, n)
        return out, counts

    def warmup(self) -> None:
        kp.warmup(self.pp)


def rowskip_predicted(model) -> PredictedKernel:
    return PredictedKernel(model)
