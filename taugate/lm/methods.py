"""The adaptation methods on a language model: TauGate and its halves on the FFN blocks, and the
baselines. LoRA and IA3 come from peft (the ``[hf]`` extra), not from a second hand-written copy:
LoRA on the FFN projections, IA3 scaling the input of each FFN's ``down`` projection (which is
what GainOnly does without a gate)."""

from __future__ import annotations

import copy

from torch import nn

from taugate.errors import TauGateError
from taugate.lm.families import family_of, ffn_blocks
from taugate.nn.config import TauGateConfig

LM_METHODS = ("frozen", "bitfit", "taugate", "gainonly", "tauonly", "lora", "ia3", "fullft")


def require_peft():
    try:
        import peft
    except ImportError:
        raise TauGateError(
            "the LoRA and IA3 baselines on language models need peft, which is not installed: "
            "pip install 'taugate[hf]'"
        ) from None
    return peft


def _ffn_targets(model: nn.Module, target_modules: str | None) -> tuple[list[str], list[str]]:
    """Full module names of the FFN projections (LoRA) and of the ``down`` projections (IA3)."""
    blocks = ffn_blocks(model, target_modules, check_activation=False)  # phi is not adapted
    lora, down = [], []
    for b in blocks:
        for attr in (b.gate, b.up, b.down):
            if attr:
                lora.append(f"{b.name}.{attr}")
        down.append(f"{b.name}.{b.down}")
    return lora, down


def build_lm_method(base: nn.Module, name: str, gate_config: TauGateConfig | None = None, *,
                    lora_rank: int = 8, target_modules: str | None = None) -> nn.Module:  # fmt: skip
    """A copy of ``base`` set up for method ``name`` (one of :data:`LM_METHODS`): everything frozen
    but the method's own parameters. ``target_modules`` (regex on FFN block paths) limits where
    the gates, LoRA and IA3 go; ``gate_config`` supplies s, lambda, ...; LoRA uses alpha = rank."""
    from taugate.nn.methods import method_gate_config
    from taugate.nn.model import apply_taugate_

    if name not in LM_METHODS:
        raise TauGateError(
            f"unknown method {name!r} for a language model; known: {', '.join(LM_METHODS)}"
        )
    if lora_rank < 1:
        raise TauGateError(f"LoRA rank must be >= 1, got {lora_rank}")
    family_of(base)  # a clear error for a model that is not a language model
    model = copy.deepcopy(base)
    for p in model.parameters():
        p.requires_grad_(name == "fullft")
    if name == "bitfit":
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.requires_grad_(True)
    elif name in ("taugate", "gainonly", "tauonly"):
        gc = method_gate_config(name, gate_config)
        if target_modules is not None:
            from dataclasses import replace

            gc = replace(gc, target_modules=target_modules)
        apply_taugate_(model, gc)
    elif name in ("lora", "ia3"):
        peft = require_peft()
        lora_t, down_t = _ffn_targets(model, target_modules)
        if name == "lora":
            cfg = peft.LoraConfig(r=lora_rank, lora_alpha=lora_rank, lora_dropout=0.0,
                                  target_modules=lora_t, bias="none")  # fmt: skip
        else:
            cfg = peft.IA3Config(target_modules=down_t, feedforward_modules=down_t)
        model = peft.get_peft_model(model, cfg)
    return model


def base_model(model: nn.Module) -> nn.Module:
    """The model under a peft wrapper (itself when not wrapped)."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model
