"""Deployment runtime: run an artifact v1 with numpy and Numba only (never imports torch).

>>> model = load("mnist.taugate")            # or random_model([784, 4096, 4096, 10], active=0.2)
>>> logits = model.predict(x)                 # (B, n_out) float32; backend="rowskip" by default
>>> model.last_stats["work_cap"]              # dense MACs / MACs row skipping needed for x

Backends compute the same function:

- ``dense``: numpy BLAS on the uncompacted matrices (``h @ W.T + b``), gates as masks. A compacted
  artifact (``kept_units`` + ``original_layers``) is scattered back to full size: dropped units get
  weight 0, bias 0 and tau +inf, so they never fire (original cost, same output).
- ``compact``: numpy BLAS on the compacted matrices.
- ``rowskip``: the Numba kernels of :mod:`taugate.kernels.rowskip` (only active rows are read).

Numba compiles the kernels on first use (seconds) and caches them on disk (``cache=True``): next to
the package if writable, else ``$TAUGATE_CACHE_DIR/numba`` or ``~/.cache/taugate/numba``; a set
``NUMBA_CACHE_DIR`` wins (see :mod:`taugate.kernels._cache`). Call :meth:`CompiledModel.warmup`
before timing anything.
"""

from __future__ import annotations

import time
from pathlib import Path

import numba
import numpy as np

from taugate.artifact import (
    FORMAT,
    VERSION,
    check_extra,
    check_layers,
    check_tensors,
    read_artifact,
    write_artifact,
)
from taugate.errors import TauGateError
from taugate.inputs import as_float32
from taugate.kernels import rowskip
from taugate.kernels.rowskip import check_threads, pack
from taugate.kernels.rowskip import run as rowskip_run

BACKENDS = ("dense", "compact", "rowskip")
# backend="auto": row-skip up to this batch size, compact above: in the README's sweeps row-skip
# won every cell up to batch 8 (1 and 2 threads, widths 128-2048) and lost at batch 256
AUTO_ROWSKIP_MAX_BATCH = 8
_F32 = np.dtype(np.float32)


def load(path) -> CompiledModel:
    """Read and verify the artifact directory at ``path`` (see :mod:`taugate.artifact`)."""
    manifest, tensors = read_artifact(path)
    return CompiledModel(manifest, tensors, path=Path(path))


class CompiledModel:
    """A gated MLP ready to run; build it with :func:`load`, :meth:`from_arrays` or :func:`random_model`."""

    def __init__(self, manifest: dict, tensors: dict[str, np.ndarray], path: Path | None = None):
        # manifest and tensors must already be validated (read_artifact / from_arrays do that)
        self.manifest, self.path = manifest, path
        self.layers: list[dict] = manifest["layers"]
        L = len(self.layers)
        self.sizes: list[int] = [self.layers[0]["in"]] + [e["out"] for e in self.layers]
        self._n_in = self.sizes[0]
        orig = manifest.get("original_layers", self.layers)
        self.original_sizes: list[int] = [orig[0]["in"]] + [e["out"] for e in orig]
        self.dense_macs = sum(e["in"] * e["out"] for e in orig)
        taus = [tensors.get(f"layers.{i}.tau") for i in range(L)]
        self._taus = [None if t is None else t.copy() for t in taus]  # kept for save()
        weights = [tensors[f"layers.{i}.weight"] for i in range(L)]
        biases = [tensors[f"layers.{i}.bias"] for i in range(L)]
        self._packed = pack(weights, biases, self._taus)
        self._full = None  # uncompacted (W^T, b, thr) per layer, built on first dense call
        self._compact_arrays = None  # compacted (W^T, b, thr), contiguous, built on first call
        self._last = None  # (backend, counts (B, L)) of the last call: input nonzeros, actives
        self._run = {"dense": self._dense, "compact": self._compact, "rowskip": self._rowskip}

    @classmethod
    def from_arrays(cls, layers: list[dict], tensors: dict, extra: dict | None = None):
        """Build in memory from a layer list and tensors (same rules as ``write_artifact``)."""
        layers = check_layers(layers, "layers")
        tensors = check_tensors(layers, tensors, "tensors", cast=True)
        extra = check_extra(layers, extra or {}, "extra")
        clash = sorted(set(extra) & {"format", "version", "layers", "weights_sha256"})
        if clash:
            raise TauGateError(f"extra: key {clash[0]!r} is reserved for the manifest itself")
        return cls({"format": FORMAT, "version": VERSION, "layers": layers, **extra}, tensors)

    @property
    def n_in(self) -> int:
        return self.sizes[0]

    @property
    def n_out(self) -> int:
        return self.sizes[-1]

    @property
    def tensors(self) -> dict[str, np.ndarray]:
        """The (compacted) tensors as artifact v1 names them (fresh contiguous copies)."""
        out = {}
        for i in range(len(self.layers)):
            out[f"layers.{i}.weight"] = np.ascontiguousarray(self._packed.weight(i))
            out[f"layers.{i}.bias"] = self._packed.bias(i).copy()
            if self._taus[i] is not None:
                out[f"layers.{i}.tau"] = self._taus[i].copy()
        return out

    def save(self, path) -> Path:
        """Write this model as an artifact directory (see ``write_artifact``)."""
        extra = {k: v for k, v in self.manifest.items() if k not in ("format", "version", "layers")}
        extra.pop("weights_sha256", None)
        return write_artifact(path, self.layers, self.tensors, extra)

    def __repr__(self) -> str:
        where = f", path='{self.path}'" if self.path else ""
        return f"CompiledModel(sizes={self.sizes}{where})"

    # -- inference ---------------------------------------------------------------------------

    def predict(self, x, backend: str = "rowskip", threads: int | None = None, check_finite=True):
        """Logits (B, n_out) float32 for inputs ``x``.

        ``x``: (B, n_in) array-like; a 1-D (n_in,) vector is a batch of one. float64, float16,
        integer and bool inputs are converted to float32; complex, object and string inputs are
        refused. Non-contiguous input is copied to C order. An empty batch, a wrong rank or feature
        count, and (with ``check_finite``, the default) NaN or inf in a row raise
        :class:`TauGateError`; with ``check_finite=False`` such rows give unspecified results.
        ``backend``: one of :data:`BACKENDS`, or ``"auto"`` (row-skip up to
        :data:`AUTO_ROWSKIP_MAX_BATCH` inputs, compact for larger batches). ``threads``: Numba threads for this call (1 to
        ``numba.config.NUMBA_NUM_THREADS``; restored afterwards); numpy backends, and the layer-0
        matmul of batched rowskip calls on one Numba thread, use BLAS's own threads. Batch-1 rowskip calls run on one
        thread (no hand-off overhead) unless ``threads`` > 1 is passed explicitly and the model
        needs more than ``rowskip.PARALLEL_MIN_MACS`` multiply-adds per sample; then the layers
        are split across ``threads``. Gate statistics of the call are in :attr:`last_stats`.
        """
        x = self._input(x)
        if type(backend) is not str:
            raise TauGateError(f"backend must be a string, got {type(backend).__name__}")
        if backend == "auto":  # where each won in the measurements: see AUTO_ROWSKIP_MAX_BATCH
            backend = "rowskip" if x.shape[0] <= AUTO_ROWSKIP_MAX_BATCH else "compact"
        n = None if threads is None else check_threads(threads)
        if backend == "rowskip" and x.shape[0] == 1 and not self._threaded_batch_one(n):
            out, stats = rowskip_run(self._packed, x, False, check_finite, 1)  # the hot path
            self._last = (backend, stats)
            return out
        run = self._run.get(backend)
        if run is None:
            raise TauGateError(
                f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)}, auto)"
            )
        if n is None or backend != "rowskip" or n == (previous := numba.get_num_threads()):
            out, stats = run(x, check_finite, n)
        else:
            numba.set_num_threads(n)
            try:
                out, stats = run(x, check_finite, n)
            finally:
                numba.set_num_threads(previous)
        self._last = (backend, stats)
        return out

    def _input(self, x) -> np.ndarray:
        if (
            type(x) is np.ndarray
            and x.dtype is _F32
            and x.ndim == 2
            and x.shape[1] == self._n_in
            and x.shape[0]
            and x.flags.c_contiguous
        ):
            return x  # already what every backend takes
        if type(x) is not np.ndarray:
            try:
                x = np.asarray(x)
            except (TypeError, ValueError) as e:
                raise TauGateError(f"input is not a numeric array: {e}") from None
        if x.dtype is not _F32 and x.dtype != _F32:
            x = as_float32(x, "input")  # beyond float32 -> inf, refused by check_finite
        if x.ndim == 1:
            x = x.reshape(1, -1)  # (1, n_in)
        elif x.ndim != 2:
            raise TauGateError(
                f"input must be 2-D (batch, {self.n_in}) or 1-D ({self.n_in},), got shape {x.shape}"
            )
        if x.shape[1] != self.n_in:
            raise TauGateError(f"input has {x.shape[1]} features per row, expected {self.n_in}")
        if x.shape[0] == 0:
            raise TauGateError("input batch is empty (0 rows)")
        return x if x.flags.c_contiguous else np.ascontiguousarray(x)

    def _threaded_batch_one(self, threads: int | None) -> bool:
        return (
            threads is not None and threads > 1 and self._packed.macs >= rowskip.PARALLEL_MIN_MACS
        )

    def _rowskip(self, x, check_finite, threads=None):
        nth = numba.get_num_threads() if threads is None else threads
        return rowskip_run(self._packed, x, self._threaded_batch_one(threads), check_finite, nth)

    def arrays(self, dense: bool = False) -> tuple[list, list, list]:
        """Per layer ``W^T`` (in, out), bias (out,) and, per hidden layer, the effective threshold
        ``max(tau, 0)`` (0 for an ungated ReLU). ``dense``: at the original sizes, the units that
        compaction removed as zero weights with threshold +inf (never firing). Built once and
        cached; each ``W^T`` is a view of a contiguous (out, in) copy, so BLAS never sees padding
        strides. Shared by the numpy backends and the benchmarks."""
        if dense and "kept_units" in self.manifest:
            if self._full is None:
                self._full = self._scatter()
            return self._full
        if self._compact_arrays is None:
            p, L = self._packed, len(self.layers)
            mats = [np.ascontiguousarray(p.weight(i)).T for i in range(L)]  # (in, out) views
            biases = [p.bias(i).copy() for i in range(L)]
            thrs = [p.threshold(i).copy() for i in range(L - 1)]
            self._compact_arrays = (mats, biases, thrs)
        return self._compact_arrays

    def _compact(self, x, check_finite, threads=None):
        return _numpy_forward(x, *self.arrays(dense=False), check_finite)

    def _dense(self, x, check_finite, threads=None):
        return _numpy_forward(x, *self.arrays(dense=True), check_finite)

    def _scatter(self):
        """Full-size (W^T, b, thr) with the compacted units at their original indices."""
        kept, p, L = self.manifest["kept_units"], self._packed, len(self.layers)
        mats, biases, thrs = [], [], []
        for i in range(L):
            n_in, n_out = self.original_sizes[i], self.original_sizes[i + 1]
            rows = np.asarray(kept[i]) if i < L - 1 else np.arange(n_out)
            cols = np.asarray(kept[i - 1]) if i > 0 else np.arange(n_in)
            w = np.zeros((n_out, n_in), np.float32)
            w[np.ix_(rows, cols)] = p.weight(i)
            b = np.zeros(n_out, np.float32)
            b[rows] = p.bias(i)
            mats.append(w.T)  # (in, out) view of the row-major (out, in) matrix
            biases.append(b)
            if i < L - 1:
                thr = np.full(n_out, np.inf, np.float32)
                thr[rows] = p.threshold(i)
                thrs.append(thr)
        return mats, biases, thrs

    # -- statistics --------------------------------------------------------------------------

    @property
    def last_stats(self) -> dict | None:
        """Gate statistics of the last :meth:`predict` call (None before the first call).

        ``active_share``: per hidden layer, mean over the batch of the share of the layer's
        ORIGINAL units with nonzero output (the same for every backend); ``active_counts``: per
        hidden layer, the count for each sample; ``dense_macs``: multiply-adds of the uncompacted
        network per sample; ``rowskip_macs``: mean over the batch of ``nnz(x) * out_0 + sum_i
        n_active_{i-1} * out_i`` (compacted sizes; row skipping reads no row for a zero input
        feature or a shut unit); ``work_cap = dense_macs / rowskip_macs``.
        """
        if self._last is None:
            return None
        backend, stats = self._last
        counts = stats[:, 1:]  # (B, L-1) active units per hidden layer; stats[:, 0]: nonzero inputs
        s, widths = self.sizes, self.original_sizes[1:-1]
        per_sample = stats @ np.asarray(s[1:], np.int64)  # (B,) rows read x row length
        rowskip_macs = float(per_sample.mean())
        return {
            "backend": backend,
            "batch": int(counts.shape[0]),
            "active_share": [float(counts[:, i].mean() / w) for i, w in enumerate(widths)],
            "active_counts": counts.T.tolist(),
            "dense_macs": int(self.dense_macs),
            "rowskip_macs": rowskip_macs,
            # an all-zero input to a one-layer model reads no row at all
            "work_cap": self.dense_macs / rowskip_macs if rowskip_macs else float("inf"),
        }

    def warmup(self) -> float:
        """Compile (or load from the disk cache) every Numba path; return the seconds it took."""
        start = time.perf_counter()
        x = np.zeros((2, self.n_in), np.float32)
        rowskip_run(self._packed, x[:1], False, True, 1)
        rowskip_run(self._packed, x[:1], True, True, 2)  # nth=2 compiles the threaded path
        rowskip_run(self._packed, x, False, True, numba.get_num_threads())
        return time.perf_counter() - start


def _numpy_forward(x, mats, biases, thrs, check_finite):
    """``z = h @ mats[i] + b``; hidden layers keep z where z > thr (thr = max(tau, 0)), else 0."""
    if check_finite:
        ok = np.isfinite(x).all(axis=1)  # (B,)
        if not ok.all():
            raise TauGateError(f"input contains NaN or inf at row {int(np.flatnonzero(~ok)[0])}")
        return _numpy_layers(x, mats, biases, thrs)
    with np.errstate(all="ignore"):  # the caller accepted unspecified results for bad rows
        return _numpy_layers(x, mats, biases, thrs)


def _numpy_layers(x, mats, biases, thrs):
    counts = np.empty((x.shape[0], len(thrs) + 1), np.int64)  # (B, L): input nonzeros, actives
    counts[:, 0] = np.count_nonzero(x, axis=1)
    h = x
    for i, (m, b) in enumerate(zip(mats, biases, strict=True)):
        z = h @ m  # (B, out_i)
        z += b
        if i < len(thrs):
            mask = z > thrs[i]
            z *= mask
            counts[:, i + 1] = np.count_nonzero(mask, axis=1)
        h = z
    return h, counts


def random_model(sizes: list[int], active: float, seed: int = 0, calib=None) -> CompiledModel:
    """A random gated MLP whose hidden units each fire on about ``active`` of the inputs.

    Weights are normal / sqrt(fan_in); every hidden layer is gated. Per unit, with ``q`` the
    ``1 - active`` quantile of its pre-activation over the calibration inputs (``calib`` (N, n_in),
    default 512 standard-normal rows drawn from ``seed``): ``tau = max(q, 0)`` and bias
    ``max(-q, 0)``, so the unit fires exactly when ``W h > q`` -- any share in [0, 1] is reachable.
    """
    ok = isinstance(sizes, (list, tuple)) and len(sizes) >= 2
    integer = (int, np.integer)
    if not ok or not all(isinstance(s, integer) and type(s) is not bool and s >= 1 for s in sizes):
        raise TauGateError(f"sizes must be a list of >= 2 positive integers, got {sizes!r}")
    if not isinstance(active, (int, float, np.floating)) or not 0.0 <= active <= 1.0:
        raise TauGateError(f"active must be a share between 0 and 1, got {active!r}")
    rng = np.random.default_rng(seed)
    if calib is None:
        calib = rng.standard_normal((512, sizes[0])).astype(np.float32)
    try:
        calib = np.asarray(calib, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise TauGateError(f"calib is not a numeric (N, {sizes[0]}) array: {e}") from None
    if calib.ndim != 2 or calib.shape[1] != sizes[0] or not len(calib):
        raise TauGateError(f"calib must have shape (N, {sizes[0]}) with N >= 1, got {calib.shape}")
    if not np.isfinite(calib).all():
        raise TauGateError("calib contains NaN or inf")
    layers, tensors, h = [], {}, calib
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        last = i == len(sizes) - 2
        w = (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(np.float32)
        tensors[f"layers.{i}.weight"] = w
        layers.append({"in": n_in, "out": n_out, "gated": not last, "activation": "none"})
        if last:
            tensors[f"layers.{i}.bias"] = np.zeros(n_out, np.float32)
            break
        layers[-1]["activation"] = "relu"
        z = h @ w.T  # (N, n_out)
        if 0 < active < 1:
            q = np.quantile(z, 1.0 - active, axis=0)
        else:  # margins keep "none" / "all" true a little beyond the calibration inputs
            q = z.max(axis=0) + 1.0 if active == 0 else z.min(axis=0) - 1.0
        tensors[f"layers.{i}.bias"] = np.maximum(-q, 0).astype(np.float32)
        tensors[f"layers.{i}.tau"] = np.maximum(q, 0).astype(np.float32)
        z += tensors[f"layers.{i}.bias"]
        h = np.where(z > tensors[f"layers.{i}.tau"], z, np.float32(0))  # (N, n_out)
    prov = {"method": "random", "active": float(active), "seed": int(seed), "n_calib": len(calib)}
    return CompiledModel.from_arrays(layers, tensors, {"provenance": prov})
