"""The adaptation methods compared in the paper, as one registry.

Each method takes the frozen foundation MLP and returns a copy in which only its own parameters are
trainable. peft's feed-forward IA3 scales the same post-activation units as ``gainonly`` (see
``tests/test_nn_methods.py``), so it is not a separate method here.
"""

from __future__ import annotations

import copy
from dataclasses import replace

from torch import nn

from taugate.errors import TauGateError
from taugate.nn.config import TauGateConfig
from taugate.nn.lora import apply_lora_
from taugate.nn.model import apply_taugate_
from taugate.nn.registry import METHODS, Method, get_method  # noqa: F401  (re-exported)


def method_gate_config(name: str, base: TauGateConfig | None = None) -> TauGateConfig | None:
    """The TauGateConfig a gated method uses (``base`` supplies s, lambda, ...)."""
    base = base or TauGateConfig()
    m = get_method(name).name
    if m == "taugate":
        return replace(base, gate=True, train_tau=True, train_gamma=True)
    if m == "tauonly":
        return replace(base, gate=True, train_tau=True, train_gamma=False)
    if m == "gainonly":
        return replace(base, gate=False, train_tau=False, train_gamma=True, sparsity=0.0)
    return None


def build_method(
    foundation: nn.Module,
    name: str,
    gate_config: TauGateConfig | None = None,
    lora_rank: int = 8,
    copy_model: bool = True,
) -> nn.Module:
    """Copy ``foundation`` and set it up for method ``name``: freeze, then add / unfreeze only the
    method's parameters."""
    m = get_method(name)
    if lora_rank < 1:
        raise TauGateError(f"LoRA rank must be >= 1, got {lora_rank}")
    model = copy.deepcopy(foundation) if copy_model else foundation
    for p in model.parameters():
        p.requires_grad_(m.name == "fullft")
    if m.name == "bitfit":
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.requires_grad_(True)
    elif m.name == "lora":
        apply_lora_(model, lora_rank)
        for n, p in model.named_parameters():
            p.requires_grad_("lora_" in n)
    elif m.gated:
        apply_taugate_(model, method_gate_config(m.name, gate_config))
    return model
