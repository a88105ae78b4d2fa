"""Artifact format v1: a ``NAME.taugate/`` directory holding ``manifest.json`` + ``weights.safetensors``.

The manifest lists the linear layers in order (``in``, ``out``, ``gated``, ``activation``) and the
sha256 of the weights file. The weights file holds float32 ``layers.{i}.weight`` (out, in),
``layers.{i}.bias`` (out,) and, for gated layers, ``layers.{i}.tau`` (out,). Semantics per layer:
``z = W h + b``; gated -> ``relu(z) * 1[z > tau]``; ungated relu -> ``relu(z)``; the last layer
(activation ``none``) gives the logits. Optional manifest keys: ``kept_units`` (one sorted list of
original unit indices per hidden layer), ``original_layers`` (the uncompacted layer list; both or
neither), ``provenance`` and ``compile`` (free-form dicts).

Only numpy and ``safetensors.numpy`` are used: reading never unpickles or executes anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from taugate.errors import TauGateError
from taugate.io import ensure_writable_dir, nearest_existing

FORMAT = "taugate-mlp"
VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
ACTIVATIONS = ("relu", "none")
_RESERVED = ("format", "version", "layers", "weights_sha256")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def check_layers(layers, where: str = MANIFEST, key: str = "layers") -> list[dict]:
    """Validate a layer list (types, chaining, activations); return it as plain dicts."""
    if not isinstance(layers, (list, tuple)) or not layers:
        raise TauGateError(f"{where}: '{key}' must be a non-empty list of layer entries")
    out = []
    for i, e in enumerate(layers):
        at = f"{where}: {key}[{i}]"
        if not isinstance(e, dict):
            raise TauGateError(f"{at} must be an object with in, out, gated, activation")
        missing = [k for k in ("in", "out", "gated", "activation") if k not in e]
        if missing:
            raise TauGateError(f"{at} is missing {', '.join(missing)}")
        for k in ("in", "out"):
            if not _is_int(e[k]) or e[k] < 1:
                raise TauGateError(f"{at}.{k} must be a positive integer, got {e[k]!r}")
        if not isinstance(e["gated"], (bool, np.bool_)):
            raise TauGateError(f"{at}.gated must be true or false, got {e['gated']!r}")
        if e["activation"] not in ACTIVATIONS:
            raise TauGateError(f"{at}.activation must be 'relu' or 'none', got {e['activation']!r}")
        last = i == len(layers) - 1
        if last and e["activation"] != "none":
            raise TauGateError(f"{at}.activation must be 'none' (the last layer gives logits)")
        if not last and e["activation"] != "relu":
            raise TauGateError(
                f"{at}.activation must be 'relu' (only the last layer may be 'none')"
            )
        if e["gated"] and e["activation"] != "relu":
            raise TauGateError(f"{at} is gated but a gate needs activation 'relu'")
        if i and e["in"] != out[-1]["out"]:
            raise TauGateError(
                f"{at}.in is {e['in']} but {key}[{i - 1}].out is {out[-1]['out']}; layers must chain"
            )
        entry = {"in": int(e["in"]), "out": int(e["out"]), "gated": bool(e["gated"])}
        out.append({**entry, "activation": str(e["activation"])})
    return out


def expected_shapes(layers: list[dict]) -> dict[str, tuple[int, ...]]:
    """Every tensor name the layer list requires, with its shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, e in enumerate(layers):
        shapes[f"layers.{i}.weight"] = (e["out"], e["in"])
        shapes[f"layers.{i}.bias"] = (e["out"],)
        if e["gated"]:
            shapes[f"layers.{i}.tau"] = (e["out"],)
    return shapes


def check_tensors(layers: list[dict], tensors, where: str = WEIGHTS, cast: bool = False) -> dict:
    """Check names, dtype float32 (or, with ``cast``, any real float dtype), shapes and finiteness."""
    if not isinstance(tensors, dict):
        raise TauGateError(f"{where}: tensors must be a dict of name -> array")
    shapes = expected_shapes(layers)
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
        bad = np.isnan(a).any() if name.endswith(".tau") else not np.isfinite(a).all()
        if bad:
            what = "NaN" if name.endswith(".tau") else "NaN or inf"
            raise TauGateError(f"{where}: tensor {name!r} contains {what}")
        out[name] = a
    return out


def check_extra(layers: list[dict], extra: dict, where: str = MANIFEST) -> dict:
    """Validate the optional manifest keys; ``kept_units`` comes back as lists of ints."""
    extra = dict(extra)
    for k in ("provenance", "compile"):
        if k in extra and not isinstance(extra[k], dict):
            raise TauGateError(f"{where}: '{k}' must be an object")
    if ("kept_units" in extra) != ("original_layers" in extra):
        raise TauGateError(f"{where}: 'kept_units' and 'original_layers' must be given together")
    if "kept_units" not in extra:
        return extra
    orig = check_layers(extra["original_layers"], where, "original_layers")
    if len(orig) != len(layers):
        raise TauGateError(
            f"{where}: original_layers has {len(orig)} layers, expected {len(layers)}"
        )
    if orig[0]["in"] != layers[0]["in"] or orig[-1]["out"] != layers[-1]["out"]:
        raise TauGateError(f"{where}: original_layers must keep the input and output sizes")
    kept = extra["kept_units"]
    if not isinstance(kept, (list, tuple)) or len(kept) != len(layers) - 1:
        raise TauGateError(f"{where}: kept_units must be a list with {len(layers) - 1} entries")
    clean = []
    for i, (k, o, c) in enumerate(zip(kept, orig, layers, strict=False)):
        at = f"{where}: kept_units[{i}]"
        if o["activation"] != c["activation"]:
            raise TauGateError(f"{where}: original_layers[{i}].activation differs from layers[{i}]")
        k = list(k) if isinstance(k, (list, tuple, np.ndarray)) else None
        if k is None or not all(_is_int(v) for v in k):
            raise TauGateError(f"{at} must be a list of integers")
        k = [int(v) for v in k]
        if len(k) != c["out"]:
            raise TauGateError(f"{at} has {len(k)} indices, expected layers[{i}].out = {c['out']}")
        increasing = all(a < b for a, b in zip(k, k[1:], strict=False))
        if not increasing or (k and (k[0] < 0 or k[-1] >= o["out"])):
            raise TauGateError(f"{at} must be strictly increasing indices in [0, {o['out']})")
        clean.append(k)
    extra["kept_units"], extra["original_layers"] = clean, orig
    return extra


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _is_artifact_dir(p: Path) -> bool:
    names = {c.name for c in p.iterdir()}
    return names <= {MANIFEST, WEIGHTS}


def _refuse_overwrite(p: Path) -> None:
    """An existing artifact (or empty directory) may be replaced; any other existing path not."""
    if p.exists() and not (p.is_dir() and _is_artifact_dir(p)):
        raise TauGateError(f"{p} exists and is not a TauGate artifact; refusing to overwrite it")


def check_destination(out: str | Path) -> Path:
    """Refuse, before any work, an ``out`` that ``write_artifact`` would refuse: an existing path
    that is not an artifact directory, or a location where no directory can be written."""
    p = Path(out)
    _refuse_overwrite(p)
    base = nearest_existing(p.absolute().parent)  # write_artifact creates missing parents
    try:
        if not base.is_dir():
            raise NotADirectoryError("it is not a directory")
        tempfile.TemporaryDirectory(dir=base, prefix=f".{p.name}.").cleanup()
    except OSError as e:
        why = e.strerror or e
        raise TauGateError(f"cannot write artifact {p}: {base} is not writable ({why})") from None
    return p


def write_artifact(path, layers: list[dict], tensors: dict, extra: dict | None = None) -> Path:
    """Validate and write an artifact directory atomically; return its path.

    Float tensors are stored as float32. An existing artifact (or empty directory) at ``path`` is
    replaced; any other existing path is refused. The files are written into a temp directory next
    to ``path`` which is then renamed, so a crash never leaves a half-written artifact.
    """
    from safetensors.numpy import save_file

    p = Path(path)
    layers = check_layers(layers, "layers")
    tensors = check_tensors(layers, tensors, "tensors", cast=True)
    extra = check_extra(layers, extra or {}, "extra")
    clash = [k for k in _RESERVED if k in extra]
    if clash:
        raise TauGateError(f"extra: key {clash[0]!r} is reserved for the manifest itself")
    _refuse_overwrite(p)
    parent = ensure_writable_dir(p.parent if str(p.parent) else Path("."))
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{p.name}.", suffix=".tmp"))
    try:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        sha = _sha256(tmp / WEIGHTS)
        manifest = {"format": FORMAT, "version": VERSION, "layers": layers, "weights_sha256": sha}
        manifest.update(extra)
        try:
            text = json.dumps(manifest, indent=2, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise TauGateError(f"extra: not JSON-serialisable ({e})") from None
        (tmp / MANIFEST).write_text(text + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        if p.exists():
            old = Path(tempfile.mkdtemp(dir=parent, prefix=f".{p.name}.", suffix=".old"))
            os.replace(p, old / "a")
            os.replace(tmp, p)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, p)
    except OSError as e:
        raise TauGateError(f"cannot write artifact {p}: {e.strerror or e}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return p


def read_manifest(path) -> dict:
    """Read and validate ``manifest.json`` of the artifact at ``path`` (not the weights)."""
    p = Path(path)
    if not p.exists():
        raise TauGateError(f"artifact {p} does not exist")
    if not p.is_dir():
        raise TauGateError(
            f"artifact {p} is not a directory (expected NAME.taugate/ with {MANIFEST})"
        )
    for name in (MANIFEST, WEIGHTS):
        if not (p / name).is_file():
            raise TauGateError(f"artifact {p} has no {name}")
    try:
        manifest = json.loads((p / MANIFEST).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TauGateError(f"{p / MANIFEST}: not valid JSON ({e})") from None
    where = str(p / MANIFEST)
    if not isinstance(manifest, dict):
        raise TauGateError(f"{where}: expected a JSON object")
    if manifest.get("format") != FORMAT:
        raise TauGateError(
            f"{where}: unknown format {manifest.get('format')!r} (expected {FORMAT!r})"
        )
    if manifest.get("version") != VERSION or isinstance(manifest.get("version"), bool):
        v = manifest.get("version")
        raise TauGateError(
            f"{where}: unsupported version {v!r} (this TauGate reads version {VERSION})"
        )
    manifest["layers"] = check_layers(manifest.get("layers"), where)
    sha = manifest.get("weights_sha256")
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise TauGateError(f"{where}: 'weights_sha256' must be 64 lowercase hex digits")
    return check_extra(manifest["layers"], manifest, where)


def read_artifact(path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read, verify (sha256, names, dtypes, shapes) and return ``(manifest, tensors)``."""
    from safetensors.numpy import load

    if not isinstance(path, (str, os.PathLike)):
        raise TauGateError(f"artifact path must be a str or path, got {type(path).__name__}")
    p = Path(path)
    manifest = read_manifest(p)
    wpath = p / WEIGHTS
    data = wpath.read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != manifest["weights_sha256"]:
        raise TauGateError(
            f"{wpath}: sha256 {got[:12]}... does not match the manifest's "
            f"{manifest['weights_sha256'][:12]}... (file modified or corrupted)"
        )
    try:
        tensors = load(data)
    except Exception as e:  # safetensors raises its own error types; never leak them
        raise TauGateError(f"{wpath}: not a valid safetensors file ({e})") from None
    return manifest, check_tensors(manifest["layers"], tensors, str(wpath))
