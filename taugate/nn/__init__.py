"""Torch side of TauGate: the gate, the backbone, the methods and their checkpoints.

Names load lazily so that ``taugate.nn.config`` / ``taugate.nn.registry`` stay importable without
torch (the command line parses arguments before anything heavy is imported).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "DEFAULT_SHARPNESS": "config",
    "TauGateConfig": "config",
    "METHODS": "registry",
    "Method": "registry",
    "get_method": "registry",
    "TauGate": "gate",
    "LoRALinear": "lora",
    "apply_lora_": "lora",
    "build_method": "methods",
    "method_gate_config": "methods",
    "MLP": "model",
    "apply_taugate_": "model",
    "gate_statistics": "model",
    "gates": "model",
    "harden_": "model",
    "high_act_masks": "model",
    "pre_activations": "model",
    "sparsity_penalty": "model",
    "count_parameters": "parameters",
    "print_trainable_parameters": "parameters",
    "trainable_parameters_line": "parameters",
    "load_checkpoint": "checkpoint",
    "read_checkpoint_meta": "checkpoint",
    "save_checkpoint": "checkpoint",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"taugate.nn.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'taugate.nn' has no attribute {name!r}")
