"""One layer of a compiled model (:class:`LayerSpec`), and the checks that make a
:class:`~taugate.spec.ModelSpec` valid: the manifest's layer list, the artifact-named tensors and
the compaction record. Every error is one line naming ``where`` (the file or argument) and the
entry, field or tensor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from taugate.errors import TauGateError

ACTIVATIONS = ("relu", "none")


@dataclass(frozen=True)
class LayerSpec:
    """One linear layer of a compiled model."""

    n_in: int  # input features (the previous layer's n_out)
    n_out: int  # output units
    gated: bool  # a hidden layer with a hard gate 1[z > tau] (has a tau tensor)
    activation: str  # "relu" for every hidden layer, "none" for the last (the logits)

    def to_json(self) -> dict:
        """The manifest entry: ``{"in", "out", "gated", "activation"}``."""
        return {
            "in": self.n_in,
            "out": self.n_out,
            "gated": self.gated,
            "activation": self.activation,
        }

    @property
    def macs(self) -> int:
        return self.n_in * self.n_out


def is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def parse_layers(raw, where: str = "layers", key: str = "layers") -> tuple[LayerSpec, ...]:
    """Validate a manifest layer list (types, chaining, activations) into LayerSpec entries.

    Entries may be manifest dicts or ``LayerSpec``; every error names ``where`` and the entry."""
    if not isinstance(raw, (list, tuple)) or not raw:
        raise TauGateError(f"{where}: '{key}' must be a non-empty list of layer entries")
    out: list[LayerSpec] = []
    for i, e in enumerate(raw):
        at = f"{where}: {key}[{i}]"
        if isinstance(e, LayerSpec):
            e = e.to_json()
        if not isinstance(e, dict):
            raise TauGateError(f"{at} must be an object with in, out, gated, activation")
        missing = [k for k in ("in", "out", "gated", "activation") if k not in e]
        if missing:
            raise TauGateError(f"{at} is missing {', '.join(missing)}")
        for k in ("in", "out"):
            if not is_int(e[k]) or e[k] < 1:
                raise TauGateError(f"{at}.{k} must be a positive integer, got {e[k]!r}")
        if not isinstance(e["gated"], (bool, np.bool_)):
            raise TauGateError(f"{at}.gated must be true or false, got {e['gated']!r}")
        if e["activation"] not in ACTIVATIONS:
            raise TauGateError(f"{at}.activation must be 'relu' or 'none', got {e['activation']!r}")
        last = i == len(raw) - 1
        if last and e["activation"] != "none":
            raise TauGateError(f"{at}.activation must be 'none' (the last layer gives logits)")
        if not last and e["activation"] != "relu":
            raise TauGateError(
                f"{at}.activation must be 'relu' (only the last layer may be 'none')"
            )
        if e["gated"] and e["activation"] != "relu":
            raise TauGateError(f"{at} is gated but a gate needs activation 'relu'")
        if i and e["in"] != out[-1].n_out:
            raise TauGateError(
                f"{at}.in is {e['in']} but {key}[{i - 1}].out is {out[-1].n_out}; layers must chain"
            )
        out.append(LayerSpec(int(e["in"]), int(e["out"]), bool(e["gated"]), str(e["activation"])))
    return tuple(out)


def tensor_shapes(layers: tuple[LayerSpec, ...]) -> dict[str, tuple[int, ...]]:
    """Every tensor name artifact v1 requires for ``layers``, with its shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, e in enumerate(layers):
        shapes[f"layers.{i}.weight"] = (e.n_out, e.n_in)
        shapes[f"layers.{i}.bias"] = (e.n_out,)
        if e.gated:
            shapes[f"layers.{i}.tau"] = (e.n_out,)
    return shapes


def check_tensors(layers, tensors, where: str = "tensors", cast: bool = False) -> dict:
    """Names, dtype float32 (with ``cast``: any real float dtype), shapes and finiteness (a tau may
    be +-inf, never NaN); returns C-contiguous float32 copies-or-views by name."""
    if not isinstance(tensors, dict):
        raise TauGateError(f"{where}: tensors must be a dict of name -> array")
    shapes = tensor_shapes(layers)
    extra = sorted(set(tensors) - set(shapes))
    if extra:
        raise TauGateError(f"{where}: unexpected tensor {extra[0]!r} (not part of the layer list)")
    out = {}
    for name, shape in shapes.items():
        if name not in tensors:
            raise TauGateError(f"{where}: missing tensor {name!r} (expected shape {shape})")
        a = tensors[name]
        if not isinstance(a, np.ndarray):
            raise TauGateError(f"{where}: tensor {name!r} must be a numpy array, got {type(a)}")
        if a.dtype != np.float32 and not (cast and a.dtype.kind == "f"):
            raise TauGateError(f"{where}: tensor {name!r} has dtype {a.dtype}, expected float32")
        if a.shape != shape:
            raise TauGateError(f"{where}: tensor {name!r} has shape {a.shape}, expected {shape}")
        a = np.ascontiguousarray(a, dtype=np.float32)
        tau = name.endswith(".tau")
        if np.isnan(a).any() if tau else not np.isfinite(a).all():
            raise TauGateError(
                f"{where}: tensor {name!r} contains {'NaN' if tau else 'NaN or inf'}"
            )
        out[name] = a
    return out


def check_compaction(layers, kept, original, where: str) -> tuple[tuple, tuple] | tuple[None, None]:
    """Validate ``kept_units`` against ``original_layers`` (both or neither); returns them parsed."""
    if (kept is None) != (original is None):
        raise TauGateError(f"{where}: 'kept_units' and 'original_layers' must be given together")
    if kept is None:
        return None, None
    orig = parse_layers(original, where, "original_layers")
    if len(orig) != len(layers):
        raise TauGateError(
            f"{where}: original_layers has {len(orig)} layers, expected {len(layers)}"
        )
    if orig[0].n_in != layers[0].n_in or orig[-1].n_out != layers[-1].n_out:
        raise TauGateError(f"{where}: original_layers must keep the input and output sizes")
    if not isinstance(kept, (list, tuple)) or len(kept) != len(layers) - 1:
        raise TauGateError(f"{where}: kept_units must be a list with {len(layers) - 1} entries")
    clean = []
    for i, (k, o, c) in enumerate(zip(kept, orig, layers, strict=False)):
        at = f"{where}: kept_units[{i}]"
        if o.activation != c.activation:
            raise TauGateError(f"{where}: original_layers[{i}].activation differs from layers[{i}]")
        k = list(k) if isinstance(k, (list, tuple, np.ndarray)) else None
        if k is None or not all(is_int(v) for v in k):
            raise TauGateError(f"{at} must be a list of integers")
        if len(k) != c.n_out:
            raise TauGateError(f"{at} has {len(k)} indices, expected layers[{i}].out = {c.n_out}")
        k = np.asarray(k, np.int64)
        if (len(k) and (k[0] < 0 or k[-1] >= o.n_out)) or not (np.diff(k) > 0).all():
            raise TauGateError(f"{at} must be strictly increasing indices in [0, {o.n_out})")
        k.flags.writeable = False
        clean.append(k)
    return tuple(clean), orig
