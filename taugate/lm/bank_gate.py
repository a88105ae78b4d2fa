"""The gate module of a language-model mode bank (:mod:`taugate.lm.bank`): a TauGate whose tau and
gamma are one row of per-mode tables, chosen per call.

:class:`BankGate` computes what :class:`~taugate.nn.gate.TauGate` computes (soft
``gamma * phi(z) * sigmoid(s (z - tau))``, hard ``gamma * phi(z) * 1[z > tau]``, gain only
``gamma * phi(z)``), with ``tau`` and ``gamma`` taken from (M, width) tables by a
:class:`Selection` that every gate of one bank shares: one mode index (every row in that mode) or
one mode index per batch row. Switching is writing that index: nothing is copied or reloaded.
Inference only: the tables are buffers, never trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from taugate.errors import TauGateError
from taugate.nn.activations import torch_activation


@dataclass
class Selection:
    """Which mode each row runs in; shared by every :class:`BankGate` of one bank."""

    index: int = 0  # the mode of every row when ``rows`` is None
    rows: torch.Tensor | None = None  # (B,) int64 mode index per batch row, or None: ``index``

    def __post_init__(self) -> None:
        if type(self.index) is not int or self.index < 0:
            raise TauGateError(f"Selection.index must be an integer >= 0, got {self.index!r}")
        if self.rows is not None and (
            not isinstance(self.rows, torch.Tensor)
            or self.rows.dim() != 1
            or self.rows.dtype != torch.long
        ):
            raise TauGateError("Selection.rows must be a (B,) int64 tensor or None")


class BankGate(nn.Module):
    """A TauGate over M modes: ``taus`` and ``gammas`` are (M, width) buffers; ``selection`` picks
    the row (one mode) or the rows (one mode per batch row) each forward uses."""

    def __init__(self, taus: torch.Tensor, gammas: torch.Tensor, activation: str,
                 sharpness: float, gated: bool, selection: Selection) -> None:  # fmt: skip
        super().__init__()
        if taus.dim() != 2 or taus.shape != gammas.shape:
            raise TauGateError(
                f"BankGate needs (M, width) tau and gamma tables of one shape, got "
                f"{tuple(taus.shape)} and {tuple(gammas.shape)}"
            )
        self.register_buffer("taus", taus, persistent=False)  # (M, width)
        self.register_buffer("gammas", gammas, persistent=False)  # (M, width)
        self.activation = activation
        self._phi = torch_activation(activation)
        self.width = int(taus.shape[1])
        self.sharpness = float(sharpness)
        self.gated = bool(gated)
        self.hard = False
        self.selection = selection

    def _params(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Size | None]:
        """tau and gamma broadcastable against ``z`` as reshaped here, and the shape to restore."""
        sel = self.selection
        if sel.rows is None:
            return self.taus[sel.index], self.gammas[sel.index], None  # (width,) views, no copy
        B = sel.rows.numel()
        if z.dim() < 2 or z.numel() % (B * self.width):
            raise TauGateError(
                f"mixed-mode batch of {B} rows, but the gate sees z of shape {tuple(z.shape)} "
                f"(not B sequences of width {self.width})"
            )
        # z is (B, T, width), or (B * T, width) when the model flattens the batch (OPT): batch
        # major either way, so (B, T', width) keeps each sequence's positions together
        tau = self.taus[sel.rows].unsqueeze(1)  # (M, width)[(B,)] -> (B, width) -> (B, 1, width)
        gamma = self.gammas[sel.rows].unsqueeze(1)  # (B, 1, width)
        return tau, gamma, z.shape

    def open_mask(self, z: torch.Tensor) -> torch.Tensor:
        """Where the hard gate of each row's mode passes a nonzero value (as
        :meth:`taugate.nn.gate.TauGate.open_mask`); bool, z's shape."""
        tau, _, shape = self._params(z)
        zz = z if shape is None else z.reshape(tau.shape[0], -1, self.width)  # (B, T', width)
        o = self._phi(zz) != 0
        o = o & (zz > tau) if self.gated else o  # (B, T', width) vs (B, 1, width) or (width,)
        return o if shape is None else o.reshape(shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        tau, gamma, shape = self._params(z)
        if shape is not None:
            z = z.reshape(tau.shape[0], -1, self.width)  # (..., width) -> (B, T', width)
        out = self._phi(z) * gamma  # (B, T', width) * (B, 1, width), or (..., width) * (width,)
        if self.gated:
            if self.hard:
                g = (z > tau).to(z.dtype)  # (B, T', width) vs (B, 1, width) broadcast
            else:
                g = torch.sigmoid(self.sharpness * (z - tau))  # (B, T', width)
            out = out * g
        return out if shape is None else out.reshape(shape)  # (B, T', width) -> z's shape

    def extra_repr(self) -> str:
        mode = "hard" if self.hard else "soft" if self.gated else "gain-only"
        return (
            f"modes={self.taus.shape[0]}, width={self.width}, phi={self.activation}, "
            f"s={self.sharpness:g}, mode={mode}"
        )
