"""LoRA baseline: ``W x + (alpha / r) * B A x`` on frozen Linear layers, B initialised to zero."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


class LoRALinear(nn.Module):
    """A frozen Linear plus a trainable rank-``r`` update; exactly the base layer at init."""

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float | None = None) -> None:
        super().__init__()
        self.base = base
        self.rank = int(rank)
        self.scaling = float(alpha if alpha is not None else rank) / self.rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.in_features = base.in_features
        self.out_features = base.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scaling  # (B, out)

    def merged_weight(self) -> torch.Tensor:
        """``W + scaling * B A`` (out, in): the plain Linear weight this layer computes."""
        return self.base.weight + self.scaling * (self.lora_B @ self.lora_A)


def apply_lora_(
    model: nn.Module, rank: int = 8, filter_fn: Callable[[str, nn.Module], bool] | None = None
) -> list[str]:
    """Wrap, in place, every selected ``nn.Linear`` in a :class:`LoRALinear`. Returns their names."""
    targets = [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and (filter_fn is None or filter_fn(n, m))
    ]
    for name, mod in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(mod, rank))
    return [n for n, _ in targets]
