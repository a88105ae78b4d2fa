"""Gate the FFN blocks of a language model in place: each chosen block's activation module becomes
a :class:`~taugate.nn.gate.TauGate` of the block's width and activation (``apply_taugate_``
dispatches here for every model that is not an MLP).

Plain FFN ``down(phi(up x))``: ``h = gamma * phi(z) * g`` with ``z = up x``. Gated-linear FFN
``down(silu(gate x) * up x)`` (Llama, the own GPT's swiglu): the TauGate sits on the gate branch,
``h = gamma * silu(z) * g * up(x)`` with ``z = gate x``, so a shut unit skips its row of ``gate``'s
output, of ``up`` and of ``down``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from taugate.errors import TauGateError
from taugate.lm.families import FFNBlock, ffn_blocks
from taugate.nn.config import TauGateConfig
from taugate.nn.gate import TauGate


def gated_blocks(model: nn.Module) -> list[FFNBlock]:
    """The FFN blocks of ``model`` whose activation is a TauGate, in forward order."""
    return (
        [
            b
            for b in ffn_blocks(model, check_activation=False)
            if isinstance(getattr(b.owner, b.act), TauGate)
        ]
        if _is_lm(model)
        else []
    )


def _is_lm(model: nn.Module) -> bool:
    from taugate.lm.families import family_of

    try:
        family_of(model)
    except TauGateError:
        return False
    return True


def apply_taugate_lm_(model: nn.Module, config: TauGateConfig | None = None,
                      filter_fn: Callable[[str, nn.Module], bool] | None = None) -> list[str]:  # fmt: skip
    """Put a TauGate on every FFN block matching ``config.target_modules`` (a regex on the block's
    module path, e.g. ``r"layers\\.[0-3]\\."``) and ``filter_fn(name, owner)``; returns their names.
    The gates start as the identity (see ``TauGateConfig.tau_start``) on the device and dtype of
    the block's weights."""
    config = config or TauGateConfig()
    blocks = ffn_blocks(model, config.target_modules, filter_fn)
    for b in blocks:
        if isinstance(getattr(b.owner, b.act), TauGate):
            raise TauGateError(f"{b.name}: is gated already")
    for b in blocks:
        w = b.z_module.weight
        gate = TauGate(b.width, config, b.activation).to(device=w.device, dtype=w.dtype)
        setattr(b.owner, b.act, gate)
    return [b.name for b in blocks]
