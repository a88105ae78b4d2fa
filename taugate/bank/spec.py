"""The one validated description of a mode bank, and its one numpy forward pass (torch-free).

A :class:`BankSpec` is one frozen base MLP (per linear layer a :class:`~taugate.layers.LayerSpec`,
float32 ``W`` (out, in) and ``b`` (out,)) and ``M`` named modes, each holding, for every gated
hidden layer, a threshold ``tau`` (out,) and a gain ``gamma`` (out,); optionally how it was
compacted (``kept_units`` of the ``original_layers``). In mode ``m`` a gated layer outputs
``gamma * relu(z) * 1[z > tau]``, which is ``gamma * z * 1[z > max(tau, 0)]``; an ungated hidden
layer ``relu(z)``; the last layer gives the logits. A mode without a gate on a gated layer (a
plain ReLU there, or a gain-only gate) has ``tau = -inf``; without a gain, ``gamma = 1``.

:meth:`BankSpec.forward` is the only numpy implementation of that pass, with one mode per row
(``tests/reference.py`` has its slow twin, :mod:`taugate.kernels.bank` the fast one).
:meth:`BankSpec.mode_spec` gives one mode as an ordinary :class:`~taugate.spec.ModelSpec`, its
gains folded into the next layer: the single-mode model that each row must equal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from taugate.errors import TauGateError
from taugate.layers import LayerSpec, check_compaction, check_tensors, parse_layers
from taugate.spec import ModelSpec

MODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # no dots: tensor names hold it


def check_modes(modes, where: str = "modes") -> tuple[str, ...]:
    """A non-empty list of distinct mode names (letters, digits, ``_``, ``-``; up to 64)."""
    if not isinstance(modes, (list, tuple)) or not modes:
        raise TauGateError(f"{where}: a bank needs at least one mode, got {modes!r}")
    for name in modes:
        if not isinstance(name, str) or not MODE_NAME.fullmatch(name):
            raise TauGateError(
                f"{where}: mode name {name!r} must be 1-64 letters, digits, '_' "
                "or '-', starting with a letter or digit"
            )
    dup = sorted({n for n in modes if modes.count(n) > 1})
    if dup:
        raise TauGateError(f"{where}: mode {dup[0]!r} appears more than once")
    return tuple(modes)


def mode_index(indices: dict[str, int], name) -> int:
    """``indices[name]`` (mode name -> index); an unknown name is an error listing the known ones.
    Shared by the MLP banks and the language-model banks (:mod:`taugate.lm.bank`)."""
    i = indices.get(name) if isinstance(name, str) else None
    if i is None:
        raise TauGateError(f"unknown mode {name!r} (this bank has: {', '.join(indices)})")
    return i


def row_indices(indices: dict[str, int], modes, batch: int) -> list[int]:
    """The mode index of every batch row for ``modes`` (one mode name per row, as peft's
    ``adapter_names``); one-line errors for a string or non-list, a length that is not
    ``batch``, and an unknown name."""
    if isinstance(modes, str) or not hasattr(modes, "__len__"):
        raise TauGateError(
            f"modes must be a list of mode names, one per row, got {type(modes).__name__}"
        )
    if len(modes) != batch:
        raise TauGateError(
            f"modes has {len(modes)} entries but the batch has {batch} rows (one mode name per row)"
        )
    return [mode_index(indices, n) for n in modes]


def mode_tensor_shapes(layers, name: str) -> dict[str, tuple[int, ...]]:
    """The tensors of mode ``name``: ``modes.{name}.{i}.tau`` / ``.gamma`` per gated layer ``i``."""
    out = {}
    for i, e in enumerate(layers):
        if e.gated:
            out[f"modes.{name}.{i}.tau"] = out[f"modes.{name}.{i}.gamma"] = (e.n_out,)
    return out


def _mode_tensor(a, key: str, mode: str, i: int, n_out: int, where: str, cast: bool):
    kind = key.rsplit(".", 1)[1]
    at = f"{where}: mode {mode!r} layer {i}: {kind} ({key!r})"
    if not isinstance(a, np.ndarray):
        raise TauGateError(f"{at} must be a numpy array, got {type(a).__name__}")
    if a.dtype != np.float32 and not (cast and a.dtype.kind == "f"):
        raise TauGateError(f"{at} has dtype {a.dtype}, expected float32")
    if a.shape != (n_out,):
        raise TauGateError(
            f"{at} has shape {a.shape}, expected ({n_out},) (the base layer's width)"
        )
    a = np.ascontiguousarray(a, np.float32)
    if np.isnan(a).any() if kind == "tau" else not np.isfinite(a).all():
        raise TauGateError(f"{at} contains {'NaN' if kind == 'tau' else 'NaN or inf'}")
    return a


@dataclass(frozen=True, eq=False)
class BankSpec:
    """A mode bank; build it with :meth:`from_tensors` (validated) or :meth:`build`."""

    layers: tuple[LayerSpec, ...]  # base layers in order; gated: per-mode tau and gamma
    weights: tuple[np.ndarray, ...]  # per layer (out, in) float32: the shared frozen base
    biases: tuple[np.ndarray, ...]  # per layer (out,) float32
    modes: tuple[str, ...]  # mode names; a mode's index is its position here
    taus: tuple[tuple[np.ndarray | None, ...], ...]  # [mode][hidden layer] (out,), None: ungated
    gammas: tuple[tuple[np.ndarray | None, ...], ...]  # [mode][hidden layer] (out,), None: ungated
    kept_units: tuple[np.ndarray, ...] | None = None  # per hidden layer: original indices kept
    original_layers: tuple[LayerSpec, ...] | None = None  # the uncompacted layers (with kept)

    @classmethod
    def from_tensors(
        cls,
        layers,
        modes,
        tensors: dict,
        *,
        kept_units=None,
        original_layers=None,
        where: str = "bank",
        tensors_where: str = "tensors",
        cast: bool = False,
    ) -> BankSpec:
        """Validate a layer list, mode names, compaction (errors name ``where``) and the
        bank-named tensors (errors name ``tensors_where``; ``cast``: accept any float dtype)."""
        specs = parse_layers(layers, where)
        names = check_modes(modes, where)
        if not any(e.gated for e in specs):
            raise TauGateError(
                f"{where}: no gated layer; a bank switches the (tau, gamma) of "
                "gated layers, so at least one hidden layer must be gated"
            )
        kept, orig = check_compaction(specs, kept_units, original_layers, where)
        if not isinstance(tensors, dict):
            raise TauGateError(f"{tensors_where}: tensors must be a dict of name -> array")
        base = {k: v for k, v in tensors.items() if k.startswith("layers.")}
        plain = tuple(LayerSpec(e.n_in, e.n_out, False, e.activation) for e in specs)
        t = check_tensors(plain, base, tensors_where, cast=cast)  # base names, dtypes, shapes
        expected = {k for n in names for k in mode_tensor_shapes(specs, n)}
        extra = sorted(k for k in tensors if k not in base and k not in expected)
        if extra:
            raise TauGateError(
                f"{tensors_where}: unexpected tensor {extra[0]!r} (not a base "
                "layer's, nor a tau / gamma of a listed mode and gated layer)"
            )
        taus, gammas = [], []
        for n in names:
            mt, mg = [], []
            for i, e in enumerate(specs[:-1]):
                if not e.gated:
                    mt.append(None)
                    mg.append(None)
                    continue
                for kind, acc in (("tau", mt), ("gamma", mg)):
                    key = f"modes.{n}.{i}.{kind}"
                    if key not in tensors:
                        raise TauGateError(
                            f"{tensors_where}: missing tensor {key!r} (mode {n!r}, "
                            f"layer {i}, expected shape ({e.n_out},))"
                        )
                    acc.append(_mode_tensor(tensors[key], key, n, i, e.n_out, tensors_where, cast))
            taus.append(tuple(mt))
            gammas.append(tuple(mg))
        L = len(specs)
        return cls(
            specs,
            tuple(t[f"layers.{i}.weight"] for i in range(L)),
            tuple(t[f"layers.{i}.bias"] for i in range(L)),
            names,
            tuple(taus),
            tuple(gammas),
            kept,
            orig,
        )

    @classmethod
    def build(cls, weights, biases, modes: dict, *, kept_units=None, original_layers=None):
        """From per-layer base arrays and ``modes``: name -> ``(taus, gammas)``, one entry per
        hidden layer each, an array (out,) or None. A hidden layer is gated when some mode has a
        tau or a gamma there; a mode without one gets ``tau = -inf`` / ``gamma = 1`` there."""
        L = len(weights)
        if not isinstance(modes, dict) or not modes:
            raise TauGateError("a bank needs at least one mode")
        for name, (ts, gs) in modes.items():
            if len(ts) != L - 1 or len(gs) != L - 1:
                raise TauGateError(
                    f"mode {name!r}: need one tau and one gamma (or None) per "
                    f"hidden layer ({L - 1})"
                )
        gated = [
            any(ts[i] is not None or gs[i] is not None for ts, gs in modes.values())
            for i in range(L - 1)
        ] + [False]
        layers = [
            {
                "in": int(np.shape(w)[1]),
                "out": int(np.shape(w)[0]),
                "gated": gated[i],
                "activation": "relu" if i < L - 1 else "none",
            }
            for i, w in enumerate(weights)
        ]
        tensors = {}
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            tensors[f"layers.{i}.weight"] = np.asarray(w)
            tensors[f"layers.{i}.bias"] = np.asarray(b)
        for name, (ts, gs) in modes.items():
            for i in (i for i in range(L - 1) if gated[i]):
                n = layers[i]["out"]
                t = np.full(n, -np.inf, np.float32) if ts[i] is None else np.asarray(ts[i])
                g = np.ones(n, np.float32) if gs[i] is None else np.asarray(gs[i])
                tensors[f"modes.{name}.{i}.tau"], tensors[f"modes.{name}.{i}.gamma"] = t, g
        if original_layers is not None:
            original_layers = [
                e.to_json() if isinstance(e, LayerSpec) else e for e in original_layers
            ]
        return cls.from_tensors(
            layers,
            list(modes),
            tensors,
            kept_units=kept_units,
            original_layers=original_layers,
            cast=True,
        )

    # -- sizes and names -----------------------------------------------------------------------

    # the shape properties of a ModelSpec (the runtime's gate statistics read them)
    sizes = ModelSpec.sizes
    original_sizes = ModelSpec.original_sizes
    dense_macs = ModelSpec.dense_macs
    compacted = ModelSpec.compacted

    def mode_index(self, name) -> int:
        """The index of mode ``name``; an unknown name is an error listing the known ones."""
        return mode_index(self.mode_indices, name)

    @cached_property
    def mode_indices(self) -> dict[str, int]:
        """Mode name -> index (its row in the gate tables)."""
        return {n: i for i, n in enumerate(self.modes)}

    def tensors(self) -> dict[str, np.ndarray]:
        """The arrays by bank name (``layers.{i}.weight`` / ``.bias``, ``modes.{m}.{i}.tau`` /
        ``.gamma``)."""
        out = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"layers.{i}.weight"], out[f"layers.{i}.bias"] = w, b
        for name, ts, gs in zip(self.modes, self.taus, self.gammas, strict=True):
            for i, (t, g) in enumerate(zip(ts, gs, strict=True)):
                if t is not None:
                    out[f"modes.{name}.{i}.tau"], out[f"modes.{name}.{i}.gamma"] = t, g
        return out

    def compaction_json(self) -> dict:
        """``kept_units`` / ``original_layers`` for the manifest (every unit when not compacted)."""
        kept = self.kept_units
        if kept is None:
            kept = tuple(np.arange(e.n_out) for e in self.layers[:-1])
        return {
            "kept_units": [k.tolist() for k in kept],
            "original_layers": [e.to_json() for e in self.original_layers or self.layers],
        }

    # -- the gate tables and the forward pass --------------------------------------------------

    @cached_property
    def tables(self) -> tuple[list[np.ndarray | None], list[np.ndarray | None]]:
        """Per hidden layer ``(thresholds, gains)``, each a read-only float32 (M, out) table: row
        ``m`` is mode ``m``'s ``max(tau, 0)`` and ``gamma``; None for an ungated layer."""
        thr, gain = [], []
        for i, e in enumerate(self.layers[:-1]):
            if not e.gated:
                thr.append(None)
                gain.append(None)
                continue
            t = np.maximum(np.stack([ts[i] for ts in self.taus]), np.float32(0))  # (M, out)
            g = np.stack([gs[i] for gs in self.gammas])  # (M, out)
            t.flags.writeable = g.flags.writeable = False
            thr.append(t)
            gain.append(g)
        return thr, gain

    def layer_outputs(self, x: np.ndarray, rows):
        """``(z_i, open_i, h_i)`` per layer in float32, row ``b`` in mode ``rows[b]`` (an int:
        every row in that mode): ``z_i = h_{i-1} W_i^T + b_i`` (B, out_i); for hidden layers
        ``open_i = z_i > max(tau, 0)`` (B, out_i) and ``h_i = (gamma * z_i) * open_i``; for the
        last ``open_i = None`` and ``h_i = z_i`` (the logits)."""
        thr, gain = self.tables
        h = x if x.dtype == np.float32 else np.asarray(x, np.float32)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            z = h @ w.T  # (B, in) @ (in, out) -> (B, out)
            z += b  # (B, out) + (out,)
            if i == len(self.layers) - 1:
                yield z, None, z
                return
            if thr[i] is None:  # an ungated relu layer
                is_open = z > 0  # (B, out)
                h = z * is_open  # (B, out)
            else:
                is_open = z > thr[i][rows]  # (B, out) vs (B, out), or (out,) for one mode
                h = (z * gain[i][rows]) * is_open  # (B, out)
            yield z, is_open, h

    def forward(self, x: np.ndarray, rows) -> tuple[np.ndarray, np.ndarray]:
        """Logits (B, n_out) and counts (B, L) int64: ``counts[:, 0]`` nonzero input features per
        row, ``counts[:, i]`` open units of hidden layer ``i - 1``; row ``b`` in mode
        ``rows[b]`` (an int: every row in that mode)."""
        counts = np.empty((len(x), len(self.layers)), np.int64)  # (B, L)
        counts[:, 0] = np.count_nonzero(x, axis=1)
        logits = None
        for i, (z, is_open, _h) in enumerate(self.layer_outputs(x, rows), 1):
            if is_open is None:
                logits = z  # the last layer
            else:
                counts[:, i] = is_open.sum(axis=1)
        return logits, counts

    # -- compaction and single modes -----------------------------------------------------------

    def compact(self, keep: list[np.ndarray]) -> BankSpec:
        """Keep only units ``keep[i]`` (sorted indices) of hidden layer ``i`` in every mode, and
        the matching input columns of layer ``i + 1``; records ``kept_units``."""
        if self.compacted:
            raise TauGateError("bank is compacted already")
        if len(keep) != len(self.layers) - 1:
            raise TauGateError(f"keep needs {len(self.layers) - 1} index lists, got {len(keep)}")
        keep = [np.asarray(k, np.int64) for k in keep]
        ws, bs = list(self.weights), list(self.biases)
        for i, k in enumerate(keep):
            ws[i], bs[i] = ws[i][k], bs[i][k]  # (kept, in), (kept,)
            ws[i + 1] = ws[i + 1][:, k]  # (out, kept)
        modes = {
            n: (
                [None if t is None else t[k] for t, k in zip(ts, keep, strict=True)],
                [None if g is None else g[k] for g, k in zip(gs, keep, strict=True)],
            )
            for n, ts, gs in zip(self.modes, self.taus, self.gammas, strict=True)
        }
        return BankSpec.build(
            [np.ascontiguousarray(w) for w in ws],
            bs,
            modes,
            kept_units=[k.tolist() for k in keep],
            original_layers=self.layers,
        )

    def mode_spec(self, name: str) -> ModelSpec:
        """Mode ``name`` alone as a :class:`~taugate.spec.ModelSpec` (an artifact v1's model):
        column ``j`` of layer ``i + 1`` times ``gamma_j`` of layer ``i`` (exact for any sign)."""
        m = self.mode_index(name)
        ws = list(self.weights)
        for i, g in enumerate(self.gammas[m]):
            if g is not None:
                ws[i + 1] = ws[i + 1] * g[None, :]  # (out, in) * (1, in)
        kept = None if self.kept_units is None else [k.tolist() for k in self.kept_units]
        return ModelSpec.build(
            ws,
            self.biases,
            [*self.taus[m], None],
            kept_units=kept,
            original_layers=self.original_layers,
        )
