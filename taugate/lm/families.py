"""Where the FFN blocks of each supported model family are, and how their parts are read.

One :class:`Family` per family is the only place that knows module names: the project's own GPT
(``taugate.lm.gpt``), OPT (``fc1`` / ``activation_fn`` / ``fc2`` inline in each decoder layer),
GPT-2 (``mlp.c_fc`` / ``mlp.act`` / ``mlp.c_proj``, Conv1D weights stored (in, out)) and Llama
(``mlp.gate_proj`` / ``mlp.up_proj`` / ``mlp.down_proj`` / ``mlp.act_fn``, SwiGLU). Gating an FFN
replaces its activation module with a ``TauGate`` (:mod:`taugate.lm.apply`); compiling it replaces
the block with a drop-in module (:mod:`taugate.lm.compile`). Adding a family is one entry in
:data:`FAMILIES`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import nn

from taugate.activations import get_activation
from taugate.errors import TauGateError
from taugate.nn.gate import TauGate

# activation module class -> activation name (an HF ``ACT2FN`` class or a torch module)
_ACT_CLASSES = {"ReLU": "relu", "GELUActivation": "gelu", "NewGELUActivation": "gelu-tanh",
                "GELUTanh": "gelu-tanh", "PytorchGELUTanh": "gelu-tanh", "SiLU": "silu",
                "SiLUActivation": "silu"}  # fmt: skip


@dataclass(frozen=True)
class FFNBlock:
    """One FFN block of a model: the module holding its parts and their attribute names."""

    name: str  # module path of the owner, e.g. "model.layers.0.mlp"; what target_modules matches
    owner: nn.Module  # the module whose attributes are the parts
    up: str  # attribute of the projection to the FFN width (plain: its output is z)
    down: str  # attribute of the projection back to the model width
    act: str  # attribute of the activation module (replaced by a TauGate when gated)
    gate: str | None  # glu only: attribute of the gate branch (its output is z)
    inline: bool  # the owner is the whole decoder layer (OPT): compile swaps up/act/down, not it

    @property
    def kind(self) -> str:
        return "plain" if self.gate is None else "glu"

    @property
    def z_module(self) -> nn.Module:
        """The projection whose output the gate sees."""
        return getattr(self.owner, self.gate or self.up)

    @property
    def width(self) -> int:
        """Units of the block (from the projection's shape; no weights copied)."""
        mod = self.z_module
        return int(_weight_out_in(mod, f"{self.name}.{self.gate or self.up}").shape[0])

    @property
    def activation(self) -> str:
        return activation_of(getattr(self.owner, self.act), f"{self.name}.{self.act}")


def activation_of(mod: nn.Module, where: str) -> str:
    """The activation name of an activation module (a TauGate knows its own)."""
    if isinstance(mod, TauGate):
        return mod.activation
    name = _ACT_CLASSES.get(type(mod).__name__)
    if type(mod).__name__ == "GELU":  # torch's: exact or tanh
        name = "gelu-tanh" if getattr(mod, "approximate", "none") == "tanh" else "gelu"
    if name is None:
        raise TauGateError(
            f"{where}: unsupported activation module {type(mod).__name__} (TauGate gates relu, "
            "gelu, gelu-tanh and silu)"
        )
    return get_activation(name).name


def _weight_out_in(mod: nn.Module, where: str):
    """The weight tensor of an ``nn.Linear``, or of an HF ``Conv1D`` transposed, as (out, in) (a
    view, no copy)."""
    w = getattr(mod, "weight", None)
    if isinstance(mod, nn.Linear):
        return w
    if type(mod).__name__ == "Conv1D" and w is not None and w.dim() == 2:
        return w.T  # (in, out) -> (out, in)
    raise TauGateError(f"{where}: expected a Linear or Conv1D projection, got {type(mod).__name__}")


def linear_arrays(mod: nn.Module, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(W (out, in), b (out,))`` float32 copies of an ``nn.Linear`` or an HF ``Conv1D`` (which
    stores its weight (in, out)); a missing bias is zeros."""
    w = getattr(mod, "weight", None)
    if isinstance(mod, nn.Linear):
        w_out_in = w.detach().float().cpu().numpy()
    elif type(mod).__name__ == "Conv1D" and w is not None and w.dim() == 2:
        w_out_in = w.detach().float().cpu().numpy().T  # (in, out) -> (out, in)
    else:
        raise TauGateError(
            f"{where}: expected a Linear or Conv1D projection, got {type(mod).__name__}"
        )
    b = getattr(mod, "bias", None)
    b = np.zeros(w_out_in.shape[0], np.float32) if b is None else b.detach().float().cpu().numpy()
    return np.ascontiguousarray(w_out_in, np.float32), np.ascontiguousarray(b, np.float32)


@dataclass(frozen=True)
class Family:
    """A model family: how to recognise it and where its FFN blocks are."""

    name: str  # "taugate-gpt" | "opt" | "gpt2" | "llama"
    block_class: str  # class name of the module owning an FFN's parts
    up: str  # attribute names of the parts on that module
    down: str
    act: str
    gate: str | None = None  # glu families: the gate branch
    inline: bool = False  # the owner is a decoder layer, not an FFN module of its own

    def blocks(self, model: nn.Module) -> list[FFNBlock]:
        return [FFNBlock(name, mod, self.up, self.down, self.act, self.gate, self.inline)
                for name, mod in model.named_modules() if type(mod).__name__ == self.block_class]  # fmt: skip


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("taugate-gpt", "MLP", "up", "down", "act"),
        Family("opt", "OPTDecoderLayer", "fc1", "fc2", "activation_fn", inline=True),
        Family("gpt2", "GPT2MLP", "c_fc", "c_proj", "act"),
        Family("llama", "LlamaMLP", "up_proj", "down_proj", "act_fn", gate="gate_proj"),
    )
}


def _own_gpt_blocks(model: nn.Module) -> list[FFNBlock]:
    """The own GPT's MLPs decide per model whether they have a gate branch."""
    out = []
    for b in FAMILIES["taugate-gpt"].blocks(model):
        glu = getattr(b.owner, "kind", "plain") == "glu"
        out.append(FFNBlock(b.name, b.owner, b.up, b.down, b.act, "gate" if glu else None, False))
    return out


def family_of(model: nn.Module) -> Family:
    """The family of ``model``, or an error naming what was expected."""
    from taugate.lm.gpt import GPT

    if isinstance(model, GPT):
        return FAMILIES["taugate-gpt"]
    found = {type(m).__name__ for m in model.modules()}
    for f in FAMILIES.values():
        if f.name != "taugate-gpt" and f.block_class in found:
            return f
    raise TauGateError(
        f"{type(model).__name__}: not a supported language model (the own GPT, OPT, GPT-2 or "
        "Llama: no FFN block of theirs found)"
    )


def ffn_blocks(model: nn.Module, target_modules: str | None = None,
               filter_fn: Callable[[str, nn.Module], bool] | None = None, *,
               check_activation: bool = True) -> list[FFNBlock]:  # fmt: skip
    """The FFN blocks of ``model`` whose name matches ``target_modules`` (a regex searched in the
    block's module path) and ``filter_fn(name, owner)``; an error when none does, and (unless
    ``check_activation`` is False: LoRA / IA3 adapt the projections whatever phi is) when a
    chosen block's activation is not one TauGate gates."""
    family = family_of(model)
    blocks = _own_gpt_blocks(model) if family.name == "taugate-gpt" else family.blocks(model)
    pattern = re.compile(target_modules) if target_modules else None
    chosen = [b for b in blocks if (pattern is None or pattern.search(b.name))
              and (filter_fn is None or filter_fn(b.name, b.owner))]  # fmt: skip
    if not chosen:
        have = ", ".join(b.name for b in blocks[:3]) + (", ..." if len(blocks) > 3 else "")
        what = f"target_modules {target_modules!r}" if pattern else "the filter"
        raise TauGateError(f"{what} matches none of the {len(blocks)} FFN blocks ({have})")
    for b in chosen:
        for attr in (b.up, b.down, b.act, *([b.gate] if b.gate else [])):
            if not hasattr(b.owner, attr):
                raise TauGateError(f"{b.name}: has no {attr!r}; cannot gate this FFN block")
        if check_activation:
            b.activation  # noqa: B018  (an unsupported activation is an error naming the module)
    return chosen
