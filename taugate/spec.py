"""The one validated description of a compiled gated MLP, and its one forward pass (torch-free).

A :class:`ModelSpec` is what artifact v1 stores, what ``compile`` produces, what the runtime packs
for its kernels, what ``export`` turns into an ONNX graph and what ``random_model`` builds: per
linear layer a :class:`LayerSpec` (sizes, gated, activation) and float32 arrays ``W`` (out, in),
``b`` (out,) and, for gated layers, ``tau`` (out,); optionally how it was compacted
(``kept_units`` of the ``original_layers``).

Semantics per layer: ``z = h W^T + b``; a gated hidden layer outputs ``relu(z) * 1[z > tau]``,
which is ``where(z > max(tau, 0), z, 0)``; an ungated hidden layer ``relu(z)``, i.e. the same with
threshold 0; the last layer (activation ``none``) gives the logits. :meth:`ModelSpec.layer_outputs`
is the only numpy implementation of that pass (``tests/reference.py`` is its independent twin);
the Numba kernels in :mod:`taugate.kernels` are the fast one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from taugate.errors import TauGateError
from taugate.layers import LayerSpec, check_compaction, check_tensors, parse_layers

__all__ = ["LayerSpec", "ModelSpec", "check_tensors", "parse_layers"]


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """A compiled gated MLP; build it with :meth:`from_tensors` (validated) or :meth:`build`."""

    layers: tuple[LayerSpec, ...]  # in forward order; hidden ones "relu", the last "none"
    weights: tuple[np.ndarray, ...]  # per layer (out, in) float32, C order
    biases: tuple[np.ndarray, ...]  # per layer (out,) float32
    taus: tuple[np.ndarray | None, ...]  # per layer (out,) float32 if gated, else None
    kept_units: tuple[np.ndarray, ...] | None = None  # per hidden layer: original indices kept
    original_layers: tuple[LayerSpec, ...] | None = None  # the uncompacted layers (with kept_units)

    @classmethod
    def from_tensors(cls, layers, tensors: dict, *, kept_units=None, original_layers=None,
                     where: str = "layers", tensors_where: str = "tensors",
                     cast: bool = False) -> ModelSpec:  # fmt: skip
        """Validate a manifest layer list and compaction (errors name ``where``) and the
        artifact-named tensors (errors name ``tensors_where``; ``cast``: accept any float dtype)."""
        specs = parse_layers(layers, where)
        kept, orig = check_compaction(specs, kept_units, original_layers, where)
        t = check_tensors(specs, tensors, tensors_where, cast=cast)
        n = len(specs)
        return cls(
            specs,
            tuple(t[f"layers.{i}.weight"] for i in range(n)),
            tuple(t[f"layers.{i}.bias"] for i in range(n)),
            tuple(t.get(f"layers.{i}.tau") for i in range(n)),
            kept,
            orig,
        )

    @classmethod
    def build(cls, weights, biases, taus, *, kept_units=None, original_layers=None) -> ModelSpec:
        """From per-layer arrays: weights (out, in), biases (out,), taus (out,) or None (ungated)."""
        n = len(weights)
        if not (n and len(biases) == n and len(taus) == n):
            raise TauGateError("need one weight, bias and tau (or None) per layer")
        layers = [{"in": int(np.shape(w)[1]), "out": int(np.shape(w)[0]), "gated": t is not None,
                   "activation": "relu" if i < n - 1 else "none"}
                  for i, (w, t) in enumerate(zip(weights, taus, strict=True))]  # fmt: skip
        tensors = {}
        for i, (w, b, t) in enumerate(zip(weights, biases, taus, strict=True)):
            tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"] = (
                np.asarray(w),
                np.asarray(b),
            )
            if t is not None:
                tensors[f"layers.{i}.tau"] = np.asarray(t)
        if original_layers is not None:
            original_layers = [
                e.to_json() if isinstance(e, LayerSpec) else e for e in original_layers
            ]
        return cls.from_tensors(layers, tensors, kept_units=kept_units,
                                original_layers=original_layers, cast=True)  # fmt: skip

    # -- sizes ---------------------------------------------------------------------------------

    @property
    def sizes(self) -> list[int]:
        return [self.layers[0].n_in] + [e.n_out for e in self.layers]

    @property
    def original_sizes(self) -> list[int]:
        orig = self.original_layers or self.layers
        return [orig[0].n_in] + [e.n_out for e in orig]

    @property
    def dense_macs(self) -> int:
        """Multiply-adds per input of the uncompacted network."""
        return sum(e.macs for e in (self.original_layers or self.layers))

    @property
    def compacted(self) -> bool:
        return self.kept_units is not None

    def tensors(self) -> dict[str, np.ndarray]:
        """The arrays by artifact v1 name (``layers.{i}.weight`` / ``.bias`` / ``.tau``)."""
        out = {}
        for i, (w, b, t) in enumerate(zip(self.weights, self.biases, self.taus, strict=True)):
            out[f"layers.{i}.weight"], out[f"layers.{i}.bias"] = w, b
            if t is not None:
                out[f"layers.{i}.tau"] = t
        return out

    def compaction_json(self) -> dict:
        """``kept_units`` / ``original_layers`` for the manifest ({} when not compacted)."""
        if self.kept_units is None:
            return {}
        return {"kept_units": [k.tolist() for k in self.kept_units],
                "original_layers": [e.to_json() for e in self.original_layers]}  # fmt: skip

    @cached_property
    def thresholds(self) -> tuple[np.ndarray, ...]:
        """Per hidden layer the effective threshold: ``max(tau, 0)``, or 0 for an ungated relu.

        ``relu(z) * 1[z > tau]`` equals ``z * 1[z > max(tau, 0)]``, so one comparison gates both."""
        out = []
        for e, t in zip(self.layers[:-1], self.taus, strict=False):
            thr = np.zeros(e.n_out, np.float32) if t is None else np.maximum(t, np.float32(0))
            thr.flags.writeable = False
            out.append(thr)
        return tuple(out)

    # -- the forward pass ----------------------------------------------------------------------

    def _arrays(self, dtype) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """Per layer ``(W^T (in, out), b, threshold or None for the last)`` in ``dtype``, built
        once per dtype (float32: views, no copies)."""
        key = np.dtype(dtype)
        cache = self.__dict__.setdefault("_by_dtype", {})
        if key not in cache:
            thr = [*self.thresholds, None]
            cache[key] = [(w.T.astype(key, copy=False), b.astype(key, copy=False),
                           None if t is None else t.astype(key, copy=False))
                          for w, b, t in zip(self.weights, self.biases, thr, strict=True)]  # fmt: skip
        return cache[key]

    def layer_outputs(
        self, x: np.ndarray, *, dtype=np.float32
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(z_i, h_i)`` for each layer in order, computed in ``dtype``: ``z_i = h_{i-1} W_i^T + b_i``
        (B, out_i); ``h_i = z_i * 1[z_i > threshold_i]`` for hidden layers, ``h_i = z_i`` (the
        logits) for the last. Stop iterating early to get only the first layers."""
        h = x if x.dtype == dtype else np.asarray(x, dtype=dtype)
        for wt, b, thr in self._arrays(dtype):
            z = h @ wt  # (B, in) @ (in, out) -> (B, out)
            z += b  # (B, out) + (out,)
            h = z if thr is None else z * (z > thr)  # (B, out) * (B, out) bool
            yield z, h

    def forward(self, x: np.ndarray, *, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
        """Logits (B, n_out) and counts (B, L) int64: ``counts[:, 0]`` nonzero input features per
        row, ``counts[:, i]`` units of hidden layer ``i - 1`` with nonzero output."""
        counts = np.empty((len(x), len(self.layers)), np.int64)  # (B, L)
        counts[:, 0] = np.count_nonzero(x, axis=1)
        for i, (_z, h) in enumerate(self.layer_outputs(x, dtype=dtype), 1):
            if i < len(self.layers):
                counts[:, i] = np.count_nonzero(h, axis=1)
        return h, counts

    def hidden_outputs(self, x: np.ndarray, *, dtype=np.float32) -> list[np.ndarray]:
        """The output (B, out_i) of every hidden layer."""
        return [h for _z, h in self.layer_outputs(x, dtype=dtype)][:-1]

    # -- compaction ----------------------------------------------------------------------------

    def compact(self, keep: list[np.ndarray]) -> ModelSpec:
        """Keep only units ``keep[i]`` (sorted indices) of hidden layer ``i`` and the matching
        input columns of layer ``i + 1``; records ``kept_units`` against this (uncompacted) spec."""
        if self.compacted:
            raise TauGateError("model is compacted already")
        if len(keep) != len(self.layers) - 1:
            raise TauGateError(f"keep needs {len(self.layers) - 1} index lists, got {len(keep)}")
        ws, bs, taus = list(self.weights), list(self.biases), list(self.taus)
        for i, k in enumerate(keep):
            k = np.asarray(k, np.int64)
            ws[i], bs[i] = ws[i][k], bs[i][k]  # (kept, in), (kept,)
            taus[i] = None if taus[i] is None else taus[i][k]
            ws[i + 1] = ws[i + 1][:, k]  # (out, kept)
        return ModelSpec.build([np.ascontiguousarray(w) for w in ws], bs, taus,
                               kept_units=[np.asarray(k, np.int64).tolist() for k in keep],
                               original_layers=self.layers)  # fmt: skip

    def uncompacted(self) -> ModelSpec:
        """The same function at the original sizes: removed units get weight 0, bias 0 and (gated
        or not) threshold +inf, so they never fire. Returns ``self`` when not compacted."""
        if not self.compacted:
            return self
        L, orig = len(self.layers), self.original_layers
        ws, bs, taus = [], [], []
        for i in range(L):
            n_in, n_out = orig[i].n_in, orig[i].n_out
            rows = self.kept_units[i] if i < L - 1 else np.arange(n_out)
            cols = self.kept_units[i - 1] if i > 0 else np.arange(n_in)
            w = np.zeros((n_out, n_in), np.float32)
            w[np.ix_(rows, cols)] = self.weights[i]
            b = np.zeros(n_out, np.float32)
            b[rows] = self.biases[i]
            ws.append(w)
            bs.append(b)
            if i < L - 1:
                t = np.full(n_out, np.inf, np.float32)
                t[rows] = self.thresholds[i]  # an ungated relu becomes a gate at 0 (same function)
                taus.append(t)
            else:
                taus.append(None)
        return ModelSpec.build(ws, bs, taus)
