"""Mode bank format v1: a ``NAME.taugate-bank/`` directory holding ``manifest.json`` +
``weights.safetensors``: one frozen base MLP, stored once, and N named (tau, gamma) sets.

``manifest.json``:

- ``format``: ``"taugate-mlp-bank"``; ``version``: ``1``;
- ``layers``: the base's linear layers in order, ``{"in", "out", "gated", "activation"}`` as in
  artifact v1 (chained; hidden ones ``"relu"``, the last ``"none"``); ``gated``: every mode has a
  tau and a gamma for this layer;
- ``weights_sha256``: hex sha256 of ``weights.safetensors``;
- ``modes``: the mode names, in order (1-64 letters, digits, ``_``, ``-``; at least one);
- ``kept_units``: per hidden layer, the sorted indices of the original units that were kept (a
  unit is dropped only when it fires in no mode); ``original_layers``: the uncompacted layers;
- ``provenance``: one object per mode name (data set, angle, method, lambda, seed, checkpoint);
- ``build`` (optional): how the bank was built (calibration, units kept, checks).

``weights.safetensors``, float32, no other tensors: the base ``layers.{i}.weight`` (out, in) and
``layers.{i}.bias`` (out,) once, and for every mode ``m`` and gated layer ``i``
``modes.{m}.{i}.tau`` (out,) (may be +-inf, never NaN) and ``modes.{m}.{i}.gamma`` (out,)
(finite). Semantics, in mode ``m``: ``z_i = W_i h_{i-1} + b_i``; a gated layer outputs
``gamma * relu(z_i) * 1[z_i > tau]``, an ungated hidden one ``relu(z_i)``, the last the logits
(:class:`~taugate.bank.spec.BankSpec`). The gains stay separate: folding them into the next
layer, as ``taugate compile`` does, would change the base that all modes share.

Reading checks the format, version, sha256, every layer entry, mode name, tensor name, dtype and
shape; each failure is a one-line :class:`~taugate.errors.TauGateError` naming the file and the
mode, layer or field. Writing validates first and goes through a temp directory (no half bank);
an existing path is replaced only if it is a bank (or an empty directory), else only with
``force``, and never a directory holding other files. Reading never unpickles or executes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from taugate.bank.spec import BankSpec, check_modes
from taugate.errors import TauGateError
from taugate.io import (
    atomic_directory,
    load_safetensors,
    probe_destination,
    read_checked,
)
from taugate.layers import parse_layers

FORMAT = "taugate-mlp-bank"
VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
KEYS = (
    "format",
    "version",
    "layers",
    "weights_sha256",
    "modes",
    "kept_units",
    "original_layers",
    "provenance",
    "build",
)


def _json_object(v, where: str) -> dict:
    if not isinstance(v, dict):
        raise TauGateError(f"{where} must be an object")
    try:
        json.dumps(v, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TauGateError(f"{where} is not JSON-serialisable ({e})") from None
    return v


@dataclass(frozen=True, eq=False)
class Bank:
    """A mode bank in memory: what :func:`write_bank` stores and :func:`read_bank` returns."""

    spec: BankSpec  # the base weights once and every mode's (tau, gamma)
    provenance: dict = field(default_factory=dict)  # mode name -> object; {} for a missing mode
    build: dict = field(default_factory=dict)  # how it was built (free-form JSON object)

    def __post_init__(self) -> None:
        if not isinstance(self.spec, BankSpec):
            raise TauGateError(f"Bank needs a BankSpec, got {type(self.spec).__name__}")
        prov = _json_object(self.provenance, "bank provenance")
        unknown = sorted(set(prov) - set(self.spec.modes))
        if unknown:
            raise TauGateError(
                f"bank provenance names mode {unknown[0]!r}, which is not a mode "
                f"of the bank ({', '.join(self.spec.modes)})"
            )
        full = {
            n: _json_object(prov.get(n, {}), f"provenance of mode {n!r}") for n in self.spec.modes
        }
        object.__setattr__(self, "provenance", full)
        _json_object(self.build, "bank build report")

    @property
    def modes(self) -> tuple[str, ...]:
        return self.spec.modes

    def manifest(self, sha256: str | None = None) -> dict:
        """The manifest dict (``weights_sha256`` only when given)."""
        e = self.spec
        m = {"format": FORMAT, "version": VERSION, "layers": [x.to_json() for x in e.layers]}
        if sha256 is not None:
            m["weights_sha256"] = sha256
        m.update(modes=list(e.modes), **e.compaction_json(), provenance=self.provenance)
        return {**m, "build": self.build} if self.build else m


def manifest_format(p) -> str | None:
    """The ``format`` named by ``p/manifest.json`` (None if there is none to read); nothing else
    is checked."""
    try:
        fmt = json.loads((Path(p) / MANIFEST).read_text(encoding="utf-8")).get("format")
    except (OSError, ValueError, AttributeError):
        return None
    return fmt if isinstance(fmt, str) else None


def is_bank(p) -> bool:
    """``p`` holds a ``manifest.json`` that says it is a bank (the files are not checked)."""
    return manifest_format(p) == FORMAT


def _refuse_overwrite(p: Path, force: bool) -> None:
    """A bank or an empty directory may be replaced; with ``force`` also a file or a directory
    holding nothing but files named like a bank's; never a directory with other files."""
    if not (p.exists() or p.is_symlink()):
        return
    if p.is_dir() and not p.is_symlink():
        names = {c.name for c in p.iterdir()}
        others = sorted(names - {MANIFEST, WEIGHTS})
        if others:
            raise TauGateError(
                f"{p} is a directory holding files that are not part of a mode "
                f"bank (e.g. {others[0]!r}); refusing to replace it, even with "
                "--force"
            )
        if not names or is_bank(p) or force:
            return
    if not force:
        raise TauGateError(
            f"{p} exists and was not written by taugate bank (no bank manifest); "
            "refusing to overwrite it (pass --force to replace it)"
        )


def check_bank_destination(out, *, force: bool = False) -> Path:
    """Refuse, before any work, an ``out`` that :func:`write_bank` would refuse, or a location
    where no directory can be written."""
    p = Path(out)
    _refuse_overwrite(p, force)
    probe_destination(p, "mode bank")  # the writer creates missing parents
    return p


def write_bank(path, bank: Bank, *, force: bool = False) -> Path:
    """Write ``bank`` as a ``NAME.taugate-bank/`` directory, atomically (see the module doc)."""
    from safetensors.numpy import save_file

    if not isinstance(bank, Bank):
        raise TauGateError(f"write_bank needs a Bank, got {type(bank).__name__}")
    p = Path(path)
    _refuse_overwrite(p, force)
    with atomic_directory(p, "mode bank") as tmp:
        save_file(bank.spec.tensors(), str(tmp / WEIGHTS), metadata={"format": FORMAT})
        digest = hashlib.sha256((tmp / WEIGHTS).read_bytes()).hexdigest()
        text = json.dumps(bank.manifest(digest), indent=2, allow_nan=False)
        (tmp / MANIFEST).write_text(text + "\n", encoding="utf-8")
    return p


def read_manifest(path) -> dict:
    """Read and check ``manifest.json`` of the bank at ``path``: format, version, sha256 field,
    key set (the layers, modes and compaction are checked with the tensors)."""
    p = Path(path)
    if not p.is_dir():
        what = "does not exist" if not p.exists() else "is not a directory"
        raise TauGateError(f"mode bank {p} {what} (expected NAME.taugate-bank/ with {MANIFEST})")
    for name in (MANIFEST, WEIGHTS):
        if not (p / name).is_file():
            raise TauGateError(f"mode bank {p} has no {name}")
    where = str(p / MANIFEST)
    try:
        m = json.loads((p / MANIFEST).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TauGateError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(m, dict):
        raise TauGateError(f"{where}: expected a JSON object")
    if m.get("format") != FORMAT:
        hint = (
            " (a single-model artifact, not a mode bank)"
            if m.get("format") == "taugate-mlp"
            else ""
        )
        raise TauGateError(
            f"{where}: unknown format {m.get('format')!r} (expected {FORMAT!r}){hint}"
        )
    v = m.get("version")
    if v != VERSION or isinstance(v, bool):
        raise TauGateError(f"{where}: unsupported version {v!r} (this TauGate reads {VERSION})")
    sha = m.get("weights_sha256")
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise TauGateError(f"{where}: 'weights_sha256' must be 64 lowercase hex digits")
    missing = [k for k in KEYS[:-1] if k not in m]
    unknown = sorted(set(m) - set(KEYS))
    if missing or unknown:
        bad = f"is missing {missing[0]!r}" if missing else f"has unknown key {unknown[0]!r}"
        raise TauGateError(f"{where}: {bad}")
    return m


def read_bank(path) -> Bank:
    """Read and verify (sha256, layers, modes, names, dtypes, shapes, compaction) the bank at
    ``path``."""
    if not isinstance(path, (str, os.PathLike)):
        raise TauGateError(f"mode bank path must be a str or path, got {type(path).__name__}")
    p = Path(path)
    m = read_manifest(p)
    where, wpath = str(p / MANIFEST), p / WEIGHTS
    data = read_checked(wpath, m["weights_sha256"])
    parse_layers(m["layers"], where)  # before the tensors, so that the manifest is named
    check_modes(m["modes"], where)
    tensors = load_safetensors(data, wpath)
    spec = BankSpec.from_tensors(
        m["layers"],
        m["modes"],
        tensors,
        where=where,
        tensors_where=str(wpath),
        kept_units=m["kept_units"],
        original_layers=m["original_layers"],
    )
    prov = m["provenance"]
    if not isinstance(prov, dict) or sorted(prov) != sorted(spec.modes):
        raise TauGateError(f"{where}: 'provenance' must be an object with one entry per mode")
    try:
        return Bank(spec, prov, m.get("build", {}))
    except TauGateError as e:
        raise TauGateError(f"{where}: {e}") from None
