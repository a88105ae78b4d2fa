"""The TauGate activation: a ReLU with a learned per-unit threshold and gain."""

from __future__ import annotations

import torch
from torch import nn

from taugate.nn.config import TauGateConfig


class TauGate(nn.Module):
    """Replaces a ReLU that follows ``z = W h + b``.

    soft: ``gamma * relu(z) * sigmoid(s * (z - tau))``; hard: ``gamma * relu(z) * 1[z > tau]``;
    with ``config.gate=False``: ``gamma * relu(z)`` (gain only). The last gate and pre-activation of
    each forward are kept in ``last_gate`` / ``last_z`` for the regulariser and the statistics.
    """

    def __init__(self, width: int, config: TauGateConfig | None = None) -> None:
        super().__init__()
        config = config or TauGateConfig()
        self.width = int(width)
        self.sharpness = float(config.sharpness)
        self.gated = bool(config.gate)
        self.hard = False
        self.tau = nn.Parameter(
            torch.full((width,), config.tau_init), requires_grad=config.train_tau
        )
        self.gamma = nn.Parameter(torch.ones(width), requires_grad=config.train_gamma)
        self.last_gate: torch.Tensor | None = None
        self.last_z: torch.Tensor | None = None

    def gate_values(self, z: torch.Tensor) -> torch.Tensor:
        """Gate g for pre-activation z (B, width): soft sigmoid or hard indicator."""
        if not self.gated:
            return torch.ones_like(z)
        if self.hard:
            return (z > self.tau).to(z.dtype)  # (B, width) vs (width,) broadcast
        return torch.sigmoid(self.sharpness * (z - self.tau))  # (B, width)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.last_z = z
        out = torch.relu(z) * self.gamma  # (B, width) * (width,)
        if not self.gated:
            self.last_gate = None
            return out
        g = self.gate_values(z)
        self.last_gate = g
        return out * g

    def extra_repr(self) -> str:
        mode = "hard" if self.hard else "soft" if self.gated else "gain-only"
        return f"width={self.width}, s={self.sharpness:g}, mode={mode}"
