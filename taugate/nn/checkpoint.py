"""Save and load trained models as safetensors (no pickle) with a JSON description in the header.

A checkpoint holds the state dict plus ``{"sizes", "method", "gate_config", "lora_rank",
"provenance"}`` under the metadata key ``taugate``, enough to rebuild the module and load it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from taugate.errors import TauGateError
from taugate.io import atomic_write_with
from taugate.nn.config import TauGateConfig
from taugate.nn.methods import build_method
from taugate.nn.model import MLP
from taugate.nn.registry import get_method

CHECKPOINT_KEY = "taugate"


def save_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    sizes: list[int],
    method: str = "fullft",
    gate_config: TauGateConfig | None = None,
    lora_rank: int = 8,
    provenance: dict | None = None,
) -> Path:
    """Write ``model`` (an MLP set up by ``build_method``) to ``path`` atomically."""
    meta = {
        "sizes": list(sizes),
        "method": get_method(method).name,
        "gate_config": gate_config.to_dict() if gate_config else None,
        "lora_rank": int(lora_rank),
        "provenance": provenance or {},
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return atomic_write_with(
        path, lambda tmp: save_file(state, tmp, metadata={CHECKPOINT_KEY: json.dumps(meta)})
    )


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    p = Path(path)
    if p.is_dir():
        raise TauGateError(
            f"{p} is a directory (a compiled artifact?); expected a checkpoint .safetensors file "
            "written by `taugate reproduce` or save_checkpoint"
        )
    if not p.is_file():
        raise TauGateError(f"model checkpoint {p} does not exist")
    try:
        with safe_open(str(p), framework="pt") as f:
            raw = (f.metadata() or {}).get(CHECKPOINT_KEY)
    except (SafetensorError, OSError, ValueError) as e:
        raise TauGateError(f"{p}: not a safetensors checkpoint ({e})") from None
    if raw is None:
        raise TauGateError(f"{p}: no '{CHECKPOINT_KEY}' metadata; not a TauGate checkpoint")
    try:
        meta = json.loads(raw)
        meta["sizes"] = [int(s) for s in meta["sizes"]]
        get_method(meta["method"])
    except (ValueError, KeyError, TypeError) as e:
        raise TauGateError(f"{p}: malformed '{CHECKPOINT_KEY}' metadata ({e})") from None
    return meta


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """Rebuild the module described in the checkpoint's metadata and load its weights."""
    meta = read_checkpoint_meta(path)
    gc = TauGateConfig(**meta["gate_config"]) if meta.get("gate_config") else None
    model = build_method(MLP(meta["sizes"]), meta["method"], gc, meta.get("lora_rank", 8))
    state = load_file(str(path))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise TauGateError(
            f"{path}: weights do not match the described model: {first[:2]}"
        ) from None
    model.eval()
    return model, meta
