"""Base language models on disk: the own GPT as ``config.json`` + ``model.safetensors`` (no pickle),
and a Hugging Face model directory (``save_pretrained``; needs the ``[hf]`` extra) or hub name."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields
from pathlib import Path

from torch import nn

from taugate.errors import TauGateError
from taugate.io import atomic_directory

MARK = "taugate-gpt"  # config.json "format" of the own GPT


def save_gpt(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write the own GPT ``model`` to the directory ``path`` (replacing a checkpoint of ours there,
    refusing anything else)."""
    from safetensors.torch import save_model

    from taugate.lm.gpt import GPT

    if not isinstance(model, GPT):
        raise TauGateError(
            f"save_gpt takes the own GPT, got {type(model).__name__} (use save_pretrained)"
        )
    p = Path(path)
    if (
        p.exists()
        and not (p.is_dir() and _is_gpt_dir(p))
        and any(p.iterdir() if p.is_dir() else [1])
    ):
        raise TauGateError(
            f"{p} exists and is not a TauGate GPT checkpoint; refusing to overwrite it"
        )
    with atomic_directory(p, "checkpoint") as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        meta = {"format": MARK, "config": asdict(model.config)}
        (tmp / "config.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return p


def _is_gpt_dir(p: Path) -> bool:
    try:
        return json.loads((p / "config.json").read_text(encoding="utf-8")).get("format") == MARK
    except (OSError, ValueError, AttributeError):
        return False


def load_lm(path: str | os.PathLike) -> nn.Module:
    """The base model at ``path``: an own GPT checkpoint, else a Hugging Face causal LM directory
    or hub name (``AutoModelForCausalLM.from_pretrained``), in eval mode on the CPU."""
    p = Path(path)
    if p.is_dir() and _is_gpt_dir(p):
        from safetensors.torch import load_model

        from taugate.lm.gpt import GPT, GPTConfig

        raw = json.loads((p / "config.json").read_text(encoding="utf-8"))["config"]
        known = {f.name for f in fields(GPTConfig)}
        model = GPT(GPTConfig(**{k: v for k, v in raw.items() if k in known}))
        try:
            load_model(model, str(p / "model.safetensors"))
        except Exception as e:  # safetensors / torch errors: one line
            raise TauGateError(
                f"{p / 'model.safetensors'}: cannot load ({str(e).splitlines()[0]})"
            ) from None
        return model.eval()
    try:
        from transformers import AutoModelForCausalLM
    except ImportError:
        raise TauGateError(
            f"{p} is not a TauGate GPT checkpoint; loading a Hugging Face model needs transformers: "
            "pip install 'taugate[hf]'"
        ) from None
    try:
        return AutoModelForCausalLM.from_pretrained(str(path)).eval()
    except (OSError, ValueError) as e:
        raise TauGateError(
            f"{path}: not a model directory or hub name ({str(e).splitlines()[0]})"
        ) from None
