"""The MLP backbone and the in-place rewrites that put gates on it (``apply_taugate_``, ``harden_``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch
from torch import nn

from taugate.errors import TauGateError
from taugate.nn.config import TauGateConfig
from taugate.nn.gate import TauGate

FilterFn = Callable[[str, nn.Module], bool]


class MLP(nn.Sequential):
    """``Linear, ReLU, Linear, ReLU, ..., Linear``; sizes such as ``[784, 128, 128, 10]``."""

    def __init__(self, sizes: Sequence[int]) -> None:
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or any(s < 1 for s in sizes):
            raise TauGateError(f"MLP sizes must be >= 2 positive ints, got {list(sizes)}")
        mods: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            mods.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                mods.append(nn.ReLU())
        super().__init__(*mods)
        self.sizes = sizes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(x.shape[0], -1))  # (B, H, W) -> (B, H*W)


def apply_taugate_(
    model: nn.Module, config: TauGateConfig | None = None, filter_fn: FilterFn | None = None
) -> list[str]:
    """Gate ``model`` in place and return the names of what was gated.

    A language model (the own GPT, OPT, GPT-2, Llama; see :mod:`taugate.lm.apply`): the
    activation of every FFN block whose module path matches ``config.target_modules`` (a regex)
    and ``filter_fn(name, owner)``. Any other model: every ReLU that directly follows a Linear in
    an ``nn.Sequential`` becomes a :class:`TauGate` of that Linear's width, selected by
    ``target_modules`` (regex on the ReLU's name) and ``filter_fn(name, module)``."""
    from taugate.lm.apply import _is_lm, apply_taugate_lm_

    if _is_lm(model):
        return apply_taugate_lm_(model, config, filter_fn)
    config = config or TauGateConfig()
    pattern = re.compile(config.target_modules) if config.target_modules else None
    replaced: list[str] = []
    for parent_name, parent in list(model.named_modules()):
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.named_children())
        for k, (child_name, child) in enumerate(children):
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if not isinstance(child, nn.ReLU) or k == 0:
                continue
            prev = children[k - 1][1]
            width = getattr(prev, "out_features", None)
            if width is None:
                continue
            if pattern is not None and not pattern.search(name):
                continue
            if filter_fn is not None and not filter_fn(name, child):
                continue
            setattr(parent, child_name, TauGate(width, config))
            replaced.append(name)
    return replaced


def gates(model: nn.Module) -> list[tuple[str, TauGate]]:
    """All TauGate modules in forward order with their names."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, TauGate)]


def harden_(model: nn.Module, hard: bool = True) -> nn.Module:
    """Switch every gate to the hard indicator ``1[z > tau]`` (or back to soft with ``hard=False``)."""
    for _, g in gates(model):
        g.hard = hard
    return model


def sparsity_penalty(model: nn.Module) -> torch.Tensor:
    """``sum_layers mean(g)`` of the last forward pass (eq. 5 without lambda)."""
    terms = [g.last_gate.mean() for _, g in gates(model) if g.last_gate is not None]
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum()


def pre_activations(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Pre-activations ``z`` (B, width) entering each hidden ReLU / gate, in order."""
    zs: list[torch.Tensor] = []
    hooks = [
        m.register_forward_pre_hook(lambda _m, inp: zs.append(inp[0].detach()))
        for m in model.modules()
        if isinstance(m, (nn.ReLU, TauGate))
    ]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return zs


@torch.no_grad()
def gate_statistics(model: nn.Module, x: torch.Tensor, high_act: float = 0.9) -> list[dict]:
    """Per gated layer: mean smooth gate, share of smooth gates > ``high_act`` ("high-act frac"),
    share of hard gates open (``z > tau``) and share of units with a nonzero hard-gated output."""
    out = []
    for name, g in gates(model):
        if not g.gated:
            continue
        was_hard = g.hard
        g.hard = False
        try:
            model(x)
            z = g.last_z
            soft = g.gate_values(z)  # (B, width)
        finally:
            g.hard = was_hard
        hard_open = z > g.tau  # (B, width)
        out.append(
            {
                "layer": name,
                "mean_gate": float(soft.mean()),
                "high_act_frac": float((soft > high_act).float().mean()),
                "hard_open": float(hard_open.float().mean()),
                "hard_active": float((hard_open & (z > 0)).float().mean()),
            }
        )
    return out


@torch.no_grad()
def high_act_masks(model: nn.Module, x: torch.Tensor, high_act: float = 0.9) -> list[torch.Tensor]:
    """Boolean masks ``g > high_act`` (B, width) of the smooth gates, one per gated layer."""
    masks = []
    for _, g in gates(model):
        if not g.gated:
            continue
        was_hard = g.hard
        g.hard = False
        try:
            model(x)
            masks.append(g.gate_values(g.last_z) > high_act)
        finally:
            g.hard = was_hard
    return masks
