"""The TauGate activation: an activation phi (ReLU, GELU, SiLU) with a learned per-unit threshold
and gain, put where the activation of a Linear (or of an FFN's gate branch) was."""

from __future__ import annotations

import torch
from torch import nn

from taugate.activations import get_activation
from taugate.nn.activations import torch_activation
from taugate.nn.config import TauGateConfig


class _SmoothGate(torch.autograd.Function):
    """``g = sigmoid(s (z - tau))``; the gradient to ``tau`` is taken at ``clamp(s (z - tau), -w,
    w)`` (the gradient to ``z`` is exact), so a threshold far below every ``z`` still moves."""

    @staticmethod
    def forward(ctx, z, tau, s: float, w: float):
        u = s * (z - tau)  # (..., width) - (width,)
        g = torch.sigmoid(u)
        ctx.save_for_backward(u, g)
        ctx.s, ctx.w = s, w
        return g

    @staticmethod
    def backward(ctx, grad):
        u, g = ctx.saved_tensors
        dz = grad * ctx.s * g * (1 - g)
        gw = torch.sigmoid(u.clamp(-ctx.w, ctx.w))
        dtau = -(grad * ctx.s * gw * (1 - gw)).reshape(-1, u.shape[-1]).sum(0)  # (width,)
        return dz, dtau, None, None


class _Last:
    """The gate and pre-activation of a TauGate's last forward. They carry autograd graphs, which
    ``copy.deepcopy`` cannot copy, and a copy of the module has not run yet: not copied."""

    def __init__(self) -> None:
        self.z: torch.Tensor | None = None
        self.gate: torch.Tensor | None = None

    def __deepcopy__(self, memo) -> _Last:
        return _Last()


class TauGate(nn.Module):
    """Replaces the activation phi that follows ``z = W h + b`` (in an FFN with a gate branch,
    the activation of ``z = gate(x)``).

    soft: ``gamma * phi(z) * sigmoid(s * (z - tau))``; hard: ``gamma * phi(z) * 1[z > tau]``;
    with ``config.gate=False``: ``gamma * phi(z)`` (gain only). ``tau`` starts at
    ``config.tau_start(activation)`` and ``gamma`` at 1, so a new gate is the identity to within
    1e-5 of phi. The last gate and pre-activation of each forward are kept in ``last_gate`` /
    ``last_z`` for the regulariser and the statistics. For activations other than ReLU the
    threshold starts at the floor, where the exact gradient of the smooth gate is 0, so tau's
    gradient is taken in a window (``TauGateConfig.tau_grad_window``, default 4 for them).
    """

    def __init__(
        self, width: int, config: TauGateConfig | None = None, activation: str = "relu"
    ) -> None:
        super().__init__()
        config = config or TauGateConfig()
        self.activation = get_activation(activation).name
        self._phi = torch_activation(self.activation)
        self.width = int(width)
        self.sharpness = float(config.sharpness)
        self.gated = bool(config.gate)
        self.hard = False
        self.tau = nn.Parameter(
            torch.full((width,), config.tau_start(self.activation)), requires_grad=config.train_tau
        )
        self.gamma = nn.Parameter(torch.ones(width), requires_grad=config.train_gamma)
        w = config.tau_grad_window
        self.tau_grad_window = float(
            w if w is not None else 0.0 if self.activation == "relu" else 4.0
        )
        self._last = _Last()  # the last forward's gate and pre-activation (not deep-copied)

    @property
    def last_z(self) -> torch.Tensor | None:
        return self._last.z

    @last_z.setter
    def last_z(self, z: torch.Tensor | None) -> None:
        self._last.z = z

    @property
    def last_gate(self) -> torch.Tensor | None:
        return self._last.gate

    @last_gate.setter
    def last_gate(self, g: torch.Tensor | None) -> None:
        self._last.gate = g

    def gate_values(self, z: torch.Tensor) -> torch.Tensor:
        """Gate g for pre-activation z (B, width): soft sigmoid or hard indicator."""
        if not self.gated:
            return torch.ones_like(z)
        if self.hard:
            return (z > self.tau).to(z.dtype)  # (B, width) vs (width,) broadcast
        if self.tau_grad_window > 0 and torch.is_grad_enabled() and self.tau.requires_grad:
            return _SmoothGate.apply(z, self.tau, self.sharpness, self.tau_grad_window)
        return torch.sigmoid(self.sharpness * (z - self.tau))  # (B, width)

    def open_mask(self, z: torch.Tensor) -> torch.Tensor:
        """Where the hard gate passes a nonzero value (a compiled unit "fires"): ``phi(z) != 0``
        and, if gated, ``z > tau``; bool, z's shape."""
        o = self._phi(z) != 0  # (..., width)
        return o & (z > self.tau) if self.gated else o  # (..., width) vs (width,) broadcast

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.last_z = z
        out = self._phi(z) * self.gamma  # (..., width) * (width,)
        if not self.gated:
            self.last_gate = None
            return out
        g = self.gate_values(z)
        self.last_gate = g
        return out * g

    def extra_repr(self) -> str:
        mode = "hard" if self.hard else "soft" if self.gated else "gain-only"
        return f"width={self.width}, phi={self.activation}, s={self.sharpness:g}, mode={mode}"
