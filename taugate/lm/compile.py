"""Compile a gated language model in place: every gated FFN block becomes a :class:`CompiledFFN`.

Per gated block: harden the gate; fold each unit's gain gamma into its row of ``down``
transposed (exact: ``down(gamma * h) = (down diag(gamma)) h``); measure on calibration text how
often each unit fires (its hard gate is open and ``phi(z) != 0``) and drop the units that fire on
at most ``min_rate`` of the calibration tokens (default 0: only units that never fire), with their
rows of ``gate`` / ``up`` and ``down``; then swap the block for the drop-in module (for OPT, whose
FFN is inline in the decoder layer, ``fc1`` becomes the compiled block and ``activation_fn`` and
``fc2`` identities). Attention, norms and embeddings stay in torch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from taugate.activations import get_activation
from taugate.errors import TauGateError
from taugate.kernels.ffn import pack_ffn
from taugate.lm.apply import gated_blocks
from taugate.lm.families import FFNBlock, linear_arrays
from taugate.lm.ffn_module import CompiledFFN
from taugate.lm.train import as_ids, lm_logits, max_context
from taugate.nn.gate import TauGate
from taugate.nn.model import harden_


def effective_threshold(gate: TauGate) -> np.ndarray:
    """Open iff ``z > thr``: ``max(tau, 0)`` for ReLU (relu(z) = 0 for z <= 0), else ``tau``."""
    tau = gate.tau.detach().float().cpu().numpy()
    if not gate.gated:
        tau = np.full_like(tau, -np.inf)
    return (
        np.maximum(tau, 0).astype(np.float32)
        if gate.activation == "relu"
        else tau.astype(np.float32)
    )


@torch.no_grad()
def firing_rates(model: nn.Module, blocks: list[FFNBlock], tokens, seq_len: int = 128,
                 max_windows: int = 32) -> list[np.ndarray]:  # fmt: skip
    """Per block, the share of calibration tokens on which each unit fires (hard gates)."""
    ids = as_ids(tokens)
    seq_len = min(seq_len, max_context(model) or seq_len)
    n = min(max_windows, (len(ids) - 1) // seq_len)
    if n < 1:
        raise TauGateError(
            f"calibration text too short: need more than {seq_len} tokens, got {len(ids)}"
        )
    fired = [torch.zeros(b.width, dtype=torch.float64) for b in blocks]
    seen = [0] * len(blocks)

    def hook(k):
        def count(gate, inputs, _out):
            z = inputs[0].detach()
            open_ = (z > gate.tau) & (gate._phi(z) != 0)  # (..., width)
            fired[k] += open_.reshape(-1, gate.width).sum(0).double().cpu()
            seen[k] += open_.numel() // gate.width

        return count

    gates = [getattr(b.owner, b.act) for b in blocks]
    handles = [g.register_forward_hook(hook(k)) for k, g in enumerate(gates)]
    try:
        lm_logits(model.eval(), ids[: n * seq_len].reshape(n, seq_len))  # (n, T)
    finally:
        for h in handles:
            h.remove()
    return [(f / max(1, s)).numpy() for f, s in zip(fired, seen, strict=True)]


def _compiled_block(b: FFNBlock, rate: np.ndarray, min_rate: float, compact: bool) -> CompiledFFN:
    gate: TauGate = getattr(b.owner, b.act)
    wz, bz = linear_arrays(b.z_module, f"{b.name}.{b.gate or b.up}")  # (F, d), (F,)
    wd, bd = linear_arrays(getattr(b.owner, b.down), f"{b.name}.{b.down}")  # (d_out, F), (d_out,)
    gamma = gate.gamma.detach().float().cpu().numpy()  # (F,)
    wdt = wd.T * gamma[:, None]  # (F, d_out): row j = column j of down, times gamma_j
    thr = effective_threshold(gate)
    keep = np.flatnonzero(rate > min_rate) if compact else np.arange(len(rate))
    if len(keep) == 0:  # nothing fires: keep the most active unit so shapes stay >= 1
        keep = np.array([int(np.argmax(rate))])
    wu = bu = None
    if b.gate is not None:
        wu, bu = linear_arrays(getattr(b.owner, b.up), f"{b.name}.{b.up}")
        wu, bu = wu[keep], bu[keep]
    packed = pack_ffn(wz[keep], bz[keep], np.ascontiguousarray(wdt[keep]), bd, thr[keep],
                      act=get_activation(gate.activation).code, wu=wu, bu=bu)  # fmt: skip
    return CompiledFFN(packed, gate.activation, name=b.name, original_width=b.width)


def _swap(model: nn.Module, b: FFNBlock, compiled: CompiledFFN) -> None:
    if b.inline:  # OPT: up(x) -> act -> down happen in the decoder layer's forward
        setattr(b.owner, b.up, compiled)
        setattr(b.owner, b.act, nn.Identity())
        setattr(b.owner, b.down, nn.Identity())
        return
    parent_name, _, child = b.name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, compiled)


def compile_lm_(model: nn.Module, calib_tokens, *, min_rate: float = 0.0, compact: bool = True,
                seq_len: int = 128, max_windows: int = 32) -> dict:  # fmt: skip
    """Compile every gated FFN block of ``model`` in place (see the module docstring) and freeze
    its parameters (it is for inference); returns a report: per block the units kept of the
    original and the mean firing rate."""
    if not 0 <= min_rate < 1:
        raise TauGateError(f"min firing rate must be in [0, 1), got {min_rate!r}")
    blocks = gated_blocks(model)
    if not blocks:
        raise TauGateError(
            f"{type(model).__name__} has no gated FFN block to compile (apply_taugate_ first)"
        )
    harden_(model, True)
    model.requires_grad_(False)  # compiled for inference: no parameter asks for autograd
    rates = firing_rates(model, blocks, calib_tokens, seq_len, max_windows)
    report = {"blocks": [], "min_rate": min_rate, "calib_tokens": int(min(len(as_ids(calib_tokens)) - 1,
                                                                          max_windows * seq_len))}  # fmt: skip
    for b, r in zip(blocks, rates, strict=True):
        compiled = _compiled_block(b, r, min_rate, compact)
        report["blocks"].append({"name": b.name, "kind": b.kind, "activation": compiled.activation,
                                 "units_kept": compiled.width, "units_original": b.width,
                                 "firing_rate_mean": float(r.mean())})  # fmt: skip
        _swap(model, b, compiled)
    return report


def compiled_blocks(model: nn.Module) -> list[CompiledFFN]:
    """The compiled FFN blocks of ``model`` in forward order."""
    return [m for m in model.modules() if isinstance(m, CompiledFFN)]
