"""TauGate adapters: the (tau, gamma) of every gated FFN unit, saved apart from the base model.

An adapter is a directory, as peft saves one: ``adapter.safetensors`` (float32 ``<block>.tau`` and
``<block>.gamma`` per gated block; no pickle) and ``adapter.json``: format and version, the sha256
of the tensors file, the base model's family and FFN blocks (name, kind, width, activation), and
the gate config. Loading checks all of it against the base before touching the model.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn

from taugate.errors import TauGateError
from taugate.io import atomic_directory
from taugate.lm.apply import apply_taugate_lm_, gated_blocks
from taugate.lm.families import family_of, ffn_blocks
from taugate.nn.config import TauGateConfig
from taugate.nn.gate import TauGate

FORMAT, VERSION = "taugate-adapter", 1
TENSORS, MANIFEST = "adapter.safetensors", "adapter.json"


def _describe(blocks) -> list[dict]:
    return [
        {"name": b.name, "kind": b.kind, "width": b.width, "activation": b.activation}
        for b in blocks
    ]


def save_adapter(
    model: nn.Module, path: str | os.PathLike, config: TauGateConfig | None = None
) -> Path:
    """Write the gates of ``model`` as an adapter directory (replacing an adapter there; any other
    existing path is refused). ``config``: the gate config to record (s, lambda, ...)."""
    from safetensors.torch import save_file

    blocks = gated_blocks(model)
    if not blocks:
        raise TauGateError(f"{type(model).__name__} has no gated FFN block to save")
    p = Path(path)
    if p.exists() and not (p.is_dir() and {c.name for c in p.iterdir()} <= {TENSORS, MANIFEST}):
        raise TauGateError(f"{p} exists and is not a TauGate adapter; refusing to overwrite it")
    tensors = {}
    for b in blocks:
        g: TauGate = getattr(b.owner, b.act)
        tensors[f"{b.name}.tau"] = g.tau.detach().float().cpu().contiguous()
        tensors[f"{b.name}.gamma"] = g.gamma.detach().float().cpu().contiguous()
    with atomic_directory(p, "adapter") as tmp:
        save_file(tensors, str(tmp / TENSORS))
        sha = hashlib.sha256((tmp / TENSORS).read_bytes()).hexdigest()
        first: TauGate = getattr(blocks[0].owner, blocks[0].act)
        meta = {"format": FORMAT, "version": VERSION, "tensors_sha256": sha,
                "family": family_of(model).name, "blocks": _describe(blocks),
                "gate_config": (config.to_dict() if config else {"sharpness": first.sharpness})}  # fmt: skip
        (tmp / MANIFEST).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return p


def read_adapter(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """The adapter's description and tensors, checked (format, version, sha256, names, shapes)."""
    from safetensors.torch import load

    p = Path(path)
    for name in (MANIFEST, TENSORS):
        if not (p / name).is_file():
            raise TauGateError(f"adapter {p} has no {name}")
    try:
        meta = json.loads((p / MANIFEST).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise TauGateError(f"{p / MANIFEST}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise TauGateError(f"{p / MANIFEST}: not a {FORMAT} version {VERSION} description")
    data = (p / TENSORS).read_bytes()
    if hashlib.sha256(data).hexdigest() != meta.get("tensors_sha256"):
        raise TauGateError(
            f"{p / TENSORS}: sha256 does not match {MANIFEST} (file modified or corrupted)"
        )
    try:
        tensors = load(data)
    except Exception as e:  # safetensors' own error types
        raise TauGateError(f"{p / TENSORS}: not a valid safetensors file ({e})") from None
    blocks = meta.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        raise TauGateError(f"{p / MANIFEST}: 'blocks' must be a non-empty list")
    for b in blocks:
        for k in ("tau", "gamma"):
            name, t = f"{b.get('name')}.{k}", tensors.get(f"{b.get('name')}.{k}")
            if t is None or tuple(t.shape) != (b.get("width"),):
                raise TauGateError(
                    f"{p / TENSORS}: tensor {name} missing or not ({b.get('width')},)"
                )
            if torch.isnan(t).any() or (k == "gamma" and not torch.isfinite(t).all()):
                raise TauGateError(f"{p / TENSORS}: tensor {name} contains NaN or inf")
    return meta, tensors


def load_adapter_(model: nn.Module, path: str | os.PathLike) -> list[str]:
    """Gate ``model`` (its FFN blocks named in the adapter; gates already there are reused) and load
    the adapter's tau and gamma; an adapter of another base (family, block names, widths or
    activations) is an error naming the first mismatch. Returns the gated block names."""
    meta, tensors = read_adapter(path)
    if meta.get("family") != family_of(model).name:
        raise TauGateError(
            f"{path}: adapter is for a {meta.get('family')} model, not {family_of(model).name}"
        )
    have = {b.name: b for b in ffn_blocks(model)}
    for d in meta["blocks"]:
        b = have.get(d["name"])
        if b is None:
            raise TauGateError(f"{path}: the base model has no FFN block {d['name']!r}")
        for k in ("kind", "width", "activation"):
            if getattr(b, k) != d[k]:
                raise TauGateError(
                    f"{path}: block {d['name']}: adapter {k} {d[k]!r}, base model {getattr(b, k)!r}"
                )
    names = [d["name"] for d in meta["blocks"]]
    todo = [n for n in names if not isinstance(getattr(have[n].owner, have[n].act), TauGate)]
    if todo:
        gc = TauGateConfig(**{k: v for k, v in meta.get("gate_config", {}).items()
                              if k in TauGateConfig.__dataclass_fields__})  # fmt: skip
        apply_taugate_lm_(model, gc, filter_fn=lambda name, _m: name in todo)
    with torch.no_grad():
        for n in names:
            g: TauGate = getattr(have[n].owner, have[n].act)
            g.tau.copy_(tensors[f"{n}.tau"].to(g.tau))
            g.gamma.copy_(tensors[f"{n}.gamma"].to(g.gamma))
    return names
