"""Artifact format v1: a ``NAME.taugate/`` directory holding ``manifest.json`` + ``weights.safetensors``.

The manifest lists the linear layers in order (``in``, ``out``, ``gated``, ``activation``) and the
sha256 of the weights file. The weights file holds float32 ``layers.{i}.weight`` (out, in),
``layers.{i}.bias`` (out,) and, for gated layers, ``layers.{i}.tau`` (out,). What they mean, and
every check on them, is :mod:`taugate.spec` (:class:`~taugate.spec.ModelSpec`). Optional manifest
keys: ``kept_units`` (one sorted list of original unit indices per hidden layer) with
``original_layers`` (the uncompacted layer list), ``provenance`` and ``compile`` (free-form dicts),
and ``predictor`` with its ``predictor.*`` tensors (predicted gates; format in
:mod:`taugate.mlp_predictor`). An artifact without a predictor reads as before.

Only numpy and ``safetensors.numpy`` are used: reading never unpickles or executes anything.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from taugate.errors import TauGateError
from taugate.io import (
    atomic_directory,
    load_safetensors,
    probe_destination,
    read_checked,
)
from taugate.spec import ModelSpec, parse_layers

FORMAT = "taugate-mlp"
VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
RESERVED = ("format", "version", "layers", "weights_sha256", "kept_units", "original_layers",
            "predictor")  # fmt: skip


def check_extra(extra: dict | None, where: str = "extra") -> dict:
    """The optional, free-form manifest keys (``provenance``, ``compile``, ...): a JSON-able dict
    that does not redefine what the spec owns."""
    extra = dict(extra or {})
    clash = [k for k in RESERVED if k in extra]
    if clash:
        raise TauGateError(f"{where}: key {clash[0]!r} is reserved for the manifest itself")
    for k in ("provenance", "compile"):
        if k in extra and not isinstance(extra[k], dict):
            raise TauGateError(f"{where}: '{k}' must be an object")
    try:
        json.dumps(extra, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TauGateError(f"{where}: not JSON-serialisable ({e})") from None
    return extra


def manifest_of(spec: ModelSpec, extra: dict | None = None, sha256: str | None = None, *,
                predictor=None) -> dict:  # fmt: skip
    """The manifest dict of ``spec`` with ``extra`` (``weights_sha256`` only when given) and the
    ``predictor`` entry of an :class:`~taugate.mlp_predictor.MLPPredictor`, if any."""
    m = {"format": FORMAT, "version": VERSION, "layers": [e.to_json() for e in spec.layers]}
    if sha256 is not None:
        m["weights_sha256"] = sha256
    pred = {} if predictor is None else {"predictor": predictor.manifest_json()}
    return {**m, **spec.compaction_json(), **pred, **check_extra(extra)}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_artifact(p: Path) -> bool:
    """``p`` is a directory that ``write_artifact`` wrote: only the two artifact files, and a
    manifest that is JSON of this format."""
    try:
        if not p.is_dir() or not {c.name for c in p.iterdir()} <= {MANIFEST, WEIGHTS}:
            return False
        return json.loads((p / MANIFEST).read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _refuse_overwrite(p: Path, force: bool) -> None:
    """An artifact or an empty directory may be replaced; with ``force`` also a file or a directory
    holding nothing but files named like an artifact's; never a directory with other files."""
    if not (p.exists() or p.is_symlink()) or is_artifact(p):
        return
    if p.is_dir() and not p.is_symlink():
        others = sorted(c.name for c in p.iterdir() if c.name not in (MANIFEST, WEIGHTS))
        if not others and (force or not any(p.iterdir())):
            return
        if others:
            raise TauGateError(
                f"{p} is a directory holding files that are not part of an artifact (e.g. "
                f"{others[0]!r}); refusing to replace it, even with --force"
            )
    if not force:
        raise TauGateError(
            f"{p} exists and was not written by taugate (no TauGate manifest); refusing to "
            "overwrite it (pass --force to replace it)"
        )


def check_destination(out: str | Path, *, force: bool = False) -> Path:
    """Refuse, before any work, an ``out`` that ``write_artifact`` would refuse: an existing path
    that is not an artifact (unless ``force``), or a location where no directory can be written."""
    p = Path(out)
    _refuse_overwrite(p, force)
    probe_destination(p, "artifact")  # the writer creates missing parents
    return p


def write_artifact(
    path, spec: ModelSpec, extra: dict | None = None, *, force: bool = False, predictor=None
) -> Path:
    """Write ``spec`` (with the free-form manifest keys ``extra`` and, if given, the
    :class:`~taugate.mlp_predictor.MLPPredictor` ``predictor``) as an artifact directory.

    An existing artifact (or empty directory) at ``path`` is replaced; any other existing path is
    refused unless ``force`` (see :func:`check_destination`). The files are written into a temp
    directory next to ``path`` which is then renamed, so a crash never leaves half an artifact.
    """
    from safetensors.numpy import save_file

    if not isinstance(spec, ModelSpec):
        raise TauGateError(f"write_artifact needs a ModelSpec, got {type(spec).__name__}")
    p = Path(path)
    extra = check_extra(extra)
    tensors = spec.tensors()
    if predictor is not None:
        tensors.update(predictor.check(spec).tensors())
    _refuse_overwrite(p, force)
    with atomic_directory(p, "artifact") as tmp:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        manifest = manifest_of(spec, extra, _sha256(tmp / WEIGHTS), predictor=predictor)
        text = json.dumps(manifest, indent=2, allow_nan=False)
        (tmp / MANIFEST).write_text(text + "\n", encoding="utf-8")
    return p


def read_manifest(path) -> dict:
    """Read and check ``manifest.json`` of the artifact at ``path``: format, version, sha256 field
    (the layers and compaction are checked with the tensors, by :func:`read_artifact`)."""
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
    v = manifest.get("version")
    if v != VERSION or isinstance(v, bool):
        raise TauGateError(
            f"{where}: unsupported version {v!r} (this TauGate reads version {VERSION})"
        )
    sha = manifest.get("weights_sha256")
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise TauGateError(f"{where}: 'weights_sha256' must be 64 lowercase hex digits")
    return manifest


def read_artifact(path) -> tuple[ModelSpec, dict]:
    """Read and verify (sha256, layers, names, dtypes, shapes, compaction) the artifact at ``path``.

    Returns ``(spec, extra)``: the model and the free-form manifest keys (``provenance``, ...)."""
    spec, extra, _ = read_model(path)
    return spec, extra


def read_model(path):
    """:func:`read_artifact` plus the artifact's predictor: ``(spec, extra, MLPPredictor or
    None)``; the predictor is checked against the model (one-line errors naming the manifest)."""
    from taugate.mlp_predictor import from_artifact, split_tensors

    if not isinstance(path, (str, os.PathLike)):
        raise TauGateError(f"artifact path must be a str or path, got {type(path).__name__}")
    p = Path(path)
    manifest = read_manifest(p)
    where, wpath = str(p / MANIFEST), p / WEIGHTS
    data = read_checked(wpath, manifest["weights_sha256"])
    parse_layers(manifest.get("layers"), where)  # before the tensors, so the manifest is named
    tensors, pred_tensors = split_tensors(load_safetensors(data, wpath))
    spec = ModelSpec.from_tensors(manifest["layers"], tensors, where=where, tensors_where=str(wpath),
                                  kept_units=manifest.get("kept_units"),
                                  original_layers=manifest.get("original_layers"))  # fmt: skip
    extra = {k: v for k, v in manifest.items() if k not in RESERVED}
    predictor = None
    if "predictor" in manifest:
        predictor = from_artifact(manifest["predictor"], pred_tensors, spec, where)
    elif pred_tensors:
        raise TauGateError(f"{wpath}: tensor {sorted(pred_tensors)[0]!r} but no 'predictor' in "
                           "the manifest")  # fmt: skip
    return spec, check_extra(extra, where), predictor
