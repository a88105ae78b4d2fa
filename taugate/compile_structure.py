"""Recognise a compilable torch model and read it out as plain float32 arrays (``extract``).

Compilable: an ``nn.Sequential`` (e.g. ``MLP``; nested Sequentials flattened) of Linear / LoRALinear
layers, each but the last followed by one ReLU or TauGate. Dropout and Identity anywhere and a leading
Flatten are skipped (the eval-mode function); anything else is refused, naming module and position.
A subclass counts as its base class only if it does not override ``forward``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from taugate.errors import TauGateError
from taugate.nn.gate import TauGate
from taugate.nn.lora import LoRALinear
from taugate.nn.model import MLP


@dataclass
class Extracted:
    """Plain float32 arrays of one MLP: per linear layer W (out, in), b (out,), and for hidden
    layers the gate's tau (or None when ungated) and gain gamma (or None)."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    taus: list[np.ndarray | None]
    gammas: list[np.ndarray | None]
    method: str = "dense"
    extra: dict = field(default_factory=dict)


def _is(mod: nn.Module, cls: type) -> bool:
    """``mod`` is a ``cls`` that computes what ``cls`` computes (a subclass may not override forward)."""
    return isinstance(mod, cls) and type(mod).forward is cls.forward


def _children(seq: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """(qualified name, module) in forward order; nested plain Sequentials are flattened."""
    out = []
    for name, mod in seq.named_children():
        qual = f"{prefix}{name}"
        if _is(mod, nn.Sequential) or _is(mod, MLP):
            out += _children(mod, f"{qual}.")
        else:
            out.append((qual, mod))
    return out


def _layers(model: nn.Module) -> list[list]:
    """[Linear or LoRALinear, the ReLU / TauGate after it or None] in forward order. Refuses every
    structure the artifact cannot represent, naming the module and its position."""
    if not (_is(model, nn.Sequential) or _is(model, MLP)):
        raise TauGateError(
            f"cannot compile a {type(model).__name__}: expected an nn.Sequential of Linear layers "
            "each followed by one ReLU or TauGate (such as taugate.nn.MLP)"
        )
    pairs: list[list] = []
    rule = "an artifact holds Linear layers each followed by one ReLU or TauGate, the last by none"
    for pos, (name, mod) in enumerate(_children(model)):
        at = f"module {name!r} ({type(mod).__name__}, position {pos})"
        flat = _is(mod, nn.Flatten) and (mod.start_dim, mod.end_dim) == (1, -1)
        if _is(mod, nn.Dropout) or _is(mod, nn.Identity) or (flat and not pairs):
            continue  # identity in eval mode on (B, features) inputs
        if _is(mod, nn.Linear) or (_is(mod, LoRALinear) and _is(mod.base, nn.Linear)):
            if pairs and pairs[-1][1] is None:
                raise TauGateError(f"cannot compile {at}: no ReLU / TauGate before it ({rule})")
            pairs.append([mod, None])
        elif _is(mod, nn.ReLU) or _is(mod, TauGate):
            if not pairs or pairs[-1][1] is not None:
                raise TauGateError(f"cannot compile {at}: it does not follow a Linear ({rule})")
            width, n = getattr(mod, "width", None), pairs[-1][0].out_features
            if width not in (None, n):
                raise TauGateError(f"cannot compile {at}: width {width}, the Linear gives {n}")
            pairs[-1][1] = mod
        else:
            raise TauGateError(f"cannot compile {at}: unsupported module ({rule})")
    if not pairs:
        raise TauGateError("model has no Linear layers to compile")
    if pairs[-1][1] is not None:
        raise TauGateError(
            f"cannot compile: {type(pairs[-1][1]).__name__} after the last Linear "
            "(the last layer of an artifact gives the logits, with no activation)"
        )
    return pairs


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy().copy()


def extract(model: nn.Module) -> Extracted:
    """Read the linear layers and gates of an ``MLP`` (any method) in forward order."""
    ws, bs, taus, gammas = [], [], [], []
    for lin, act in _layers(model):
        w = lin.merged_weight() if isinstance(lin, LoRALinear) else lin.weight
        b = lin.base.bias if isinstance(lin, LoRALinear) else lin.bias
        ws.append(_np(w))  # (out, in)
        bs.append(_np(b) if b is not None else np.zeros(w.shape[0], np.float32))
        gate = act if isinstance(act, TauGate) else None
        taus.append(_np(gate.tau) if gate is not None and gate.gated else None)
        gammas.append(_np(gate.gamma) if gate is not None else None)
    return Extracted(ws, bs, taus, gammas)
