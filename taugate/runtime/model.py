"""The compiled model container: a :class:`~taugate.spec.ModelSpec` plus its manifest extras, and
``predict``, which hands a checked batch to the backend chosen in :mod:`taugate.backends`."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from taugate import backends as registry
from taugate.errors import TauGateError
from taugate.inputs import as_batch
from taugate.kernels.threads import MAX_THREADS, check_threads
from taugate.runtime.stats import gate_stats
from taugate.spec import ModelSpec

# backend="auto" (the measurements behind it: README, "Batched row-skip"):
# - up to this batch size, per-sample row-skip: in the README's sweeps it beat compact in every
#   cell up to batch 8 (1 and 2 threads, widths 128-2048);
AUTO_ROWSKIP_MAX_BATCH = 8
# - above it, row-skip while the previous call measured at most this mean active share of the
#   hidden units (at batch 64 and 256 skipping beat compact and onnxruntime at 10 % active at
#   widths 1024-4096 and lost to onnxruntime at 30 % from width 2048), else compact (also for
#   the first call, whose counts then give the share);
AUTO_SPARSE_MAX_ACTIVE = 0.2
# - and then the blocked batched path when a layer's weights exceed this many bytes (more than
#   the L3 cache holds: at width 4096 it was 1.3-1.5x faster than per-sample row-skip; up to 2048,
#   16 MiB, within 8 % of it either way), else per-sample row-skip.
AUTO_BLOCKED_MIN_BYTES = 32 << 20


class CompiledModel:
    """A gated MLP ready to run; build it from a spec, or with :func:`~taugate.runtime.load`,
    :meth:`from_arrays` or :func:`~taugate.runtime.random_model`."""

    def __init__(self, spec: ModelSpec, extra: dict | None = None, path: Path | None = None, *,
                 predictor=None):  # fmt: skip
        from taugate.artifact import check_extra

        if not isinstance(spec, ModelSpec):
            raise TauGateError(f"CompiledModel needs a ModelSpec, got {type(spec).__name__}")
        self.spec, self.path = spec, path
        self.extra = check_extra(extra)  # provenance, compile, ...: the free-form manifest keys
        self._kernels: dict[str, object] = {}  # backend name -> kernel, built on first use
        self._last = None  # (backend, counts (B, L)) of the last call
        self._predictor = None
        self.predictor = predictor  # an MLPPredictor (rowskip-predicted) or None

    def __getstate__(self) -> dict:
        """Pickled (e.g. sent back from a Ray task) without the kernels built so far: they hold
        packed copies of the weights and are rebuilt on first use."""
        return {**self.__dict__, "_kernels": {}, "_last": None}

    @property
    def predictor(self):
        """The :class:`~taugate.mlp_predictor.MLPPredictor` the approximate ``rowskip-predicted``
        backend runs (None: the model has none; ``taugate compile --predictor RANK`` fits one).
        Setting it (e.g. ``model.predictor = model.predictor.with_margin(3)``) rebuilds that
        backend's kernel on its next call."""
        return self._predictor

    @predictor.setter
    def predictor(self, value) -> None:
        from taugate.mlp_predictor import MLPPredictor

        if value is not None and not isinstance(value, MLPPredictor):
            raise TauGateError(
                f"predictor must be an MLPPredictor or None, got {type(value).__name__}"
            )
        self._predictor = None if value is None else value.check(self.spec)
        for name in [n for n, k in self._kernels.items() if getattr(k, "uses_predictor", False)]:
            del self._kernels[name]

    @classmethod
    def from_arrays(cls, layers: list[dict], tensors: dict, extra: dict | None = None):
        """From a manifest layer list, artifact-named tensors (any float dtype, stored as
        float32) and manifest extras, which may hold ``kept_units`` + ``original_layers``."""
        extra = dict(extra or {})
        spec = ModelSpec.from_tensors(layers, tensors, cast=True, where="extra",
                                      kept_units=extra.pop("kept_units", None),
                                      original_layers=extra.pop("original_layers", None))  # fmt: skip
        return cls(spec, extra)

    # -- what it is --------------------------------------------------------------------------

    @property
    def layers(self) -> list[dict]:
        """The manifest layer list."""
        return [e.to_json() for e in self.spec.layers]

    @property
    def manifest(self) -> dict:
        """The manifest this model has (or would have) as an artifact, without the sha256."""
        from taugate.artifact import manifest_of

        return manifest_of(self.spec, self.extra, predictor=self.predictor)

    @property
    def tensors(self) -> dict[str, np.ndarray]:
        """The (compacted) tensors by artifact v1 name (fresh copies)."""
        return {k: v.copy() for k, v in self.spec.tensors().items()}

    sizes = property(lambda self: self.spec.sizes)
    original_sizes = property(lambda self: self.spec.original_sizes)
    dense_macs = property(lambda self: self.spec.dense_macs)
    n_in = property(lambda self: self.spec.layers[0].n_in)
    n_out = property(lambda self: self.spec.layers[-1].n_out)

    def save(self, path, *, force: bool = False) -> Path:
        """Write this model as an artifact directory (see ``taugate.artifact.write_artifact``)."""
        from taugate.artifact import write_artifact

        return write_artifact(path, self.spec, self.extra, force=force, predictor=self.predictor)

    def to_onnx(self, *, opset: int = 17):
        """This model as an ``onnx.ModelProto`` (see :mod:`taugate.export`); needs ``[onnx]``."""
        from taugate.export import to_onnx

        return to_onnx(self.spec, self.manifest, opset=opset)

    def export_onnx(self, path, *, opset: int = 17, force: bool = False) -> Path:
        """Write this model as a checked ONNX file, atomically (see :mod:`taugate.export`)."""
        from taugate.export import export_onnx

        return export_onnx(self.spec, self.manifest, path, opset=opset, force=force)

    def __repr__(self) -> str:
        where = f", path='{self.path}'" if self.path else ""
        return f"CompiledModel(sizes={self.sizes}{where})"

    # -- inference ---------------------------------------------------------------------------

    def kernel(self, backend: str):
        """The kernel of a runtime backend, built once (see :mod:`taugate.backends`)."""
        k = self._kernels.get(backend)
        if k is None:
            b = registry.get(backend)
            if not b.runtime:
                choices = ", ".join(registry.names(runtime=True))
                raise TauGateError(f"backend {b.name!r} is not a runtime backend (predict takes "
                                   f"{choices}, auto); time it with taugate bench")  # fmt: skip
            k = self._kernels.get(b.name)
            if k is None:  # a missing package or a failed check: the registry's one-line error
                k = self._kernels[b.name] = b.require().load()(self)
            self._kernels[backend] = k  # also under the name as given ("Rowskip", " rowskip")
        return k

    def predict(self, x, backend: str = "rowskip", threads: int | None = None, check_finite=True):
        """Logits (B, n_out) float32 for inputs ``x``.

        ``x``: (B, n_in) array-like; a 1-D (n_in,) vector is a batch of one (input rules:
        :func:`taugate.inputs.as_batch`). ``check_finite`` (default): NaN or inf in a row raises
        :class:`TauGateError`; without it such rows give unspecified results. ``backend``: a
        runtime backend of :mod:`taugate.backends` (dense, compact, rowskip, rowskip-batched) or
        ``"auto"`` (:meth:`auto_backend`: row-skip up to :data:`AUTO_ROWSKIP_MAX_BATCH` inputs;
        above, compact unless the previous call measured a sparse enough network). ``threads``: Numba
        threads for this call (1 to ``NUMBA_NUM_THREADS``; restored afterwards); numpy backends
        use BLAS's own threads. A batch-1 row-skip call splits the layers across threads only when
        ``threads`` > 1 is passed and the model needs more than
        ``taugate.kernels.rowskip.PARALLEL_MIN_MACS`` multiply-adds. Gate statistics of the call
        are in :attr:`last_stats`.
        """
        x = as_batch(x, self.n_in)
        if type(backend) is not str:
            raise TauGateError(f"backend must be a string, got {type(backend).__name__}")
        if backend == "auto":  # where each won in the measurements: see AUTO_ROWSKIP_MAX_BATCH
            backend = self.auto_backend(x.shape[0])
        if threads is not None and not (type(threads) is int and 1 <= threads <= MAX_THREADS):
            check_threads(threads)  # the one-line error
        kernel = self._kernels.get(backend) or self.kernel(backend)
        out, counts = kernel(
            x, check_finite, threads
        )  # a kernel sets Numba's threads if it uses them
        self._last = (backend, counts)
        return out

    def auto_backend(self, batch: int) -> str:
        """The backend ``backend="auto"`` runs a batch of ``batch`` inputs on (the rule at
        :data:`AUTO_ROWSKIP_MAX_BATCH`): the active share is the one the previous call measured."""
        if batch <= AUTO_ROWSKIP_MAX_BATCH:
            return "rowskip"
        if self._last is None or len(self.spec.layers) < 2:
            return "compact"
        active = self._last[1][:, 1:]  # (B', L - 1) active units per hidden layer, last call
        share = float(active.sum(axis=1).mean()) / max(1, sum(self.spec.original_sizes[1:-1]))
        if share > AUTO_SPARSE_MAX_ACTIVE:
            return "compact"
        biggest = max(4 * w.size for w in self.spec.weights)
        return "rowskip-batched" if biggest > AUTO_BLOCKED_MIN_BYTES else "rowskip"

    @property
    def last_stats(self) -> dict | None:
        """Gate statistics of the last :meth:`predict` call (None before the first call); see
        :func:`taugate.runtime.stats.gate_stats`."""
        return None if self._last is None else gate_stats(self.spec, *self._last)

    def warmup(self) -> float:
        """Compile (or load from the disk cache) every Numba path; return the seconds it took."""
        start = time.perf_counter()
        self.kernel("rowskip").warmup()
        return time.perf_counter() - start
