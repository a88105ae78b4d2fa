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
    return thresholds(gate.tau.detach().float().cpu().numpy(), gate.activation, gated=gate.gated)


def thresholds(tau: np.ndarray, activation: str, *, gated: bool) -> np.ndarray:
    """The effective thresholds of tau (any shape, e.g. (M, width) for a bank): ``max(tau, 0)``
    for ReLU, tau for the others, -inf everywhere for an ungated (gain-only) gate; float32."""
    if not gated:
        return np.full(tau.shape, -np.inf, np.float32)
    return (np.maximum(tau, 0) if activation == "relu" else tau).astype(np.float32)


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
            open_ = gate.open_mask(inputs[0].detach())  # (..., width) bool
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


def pack_block(b: FFNBlock, keep: np.ndarray, thr: np.ndarray, activation: str, *,
               fold: np.ndarray | None = None, gain: np.ndarray | None = None):  # fmt: skip
    """The kernel layout (:func:`taugate.kernels.ffn.pack_ffn`) of block ``b``'s units ``keep``:
    thresholds ``thr`` ((width,), or (M, width) for M modes), and either the gains ``fold``
    (width,) folded into ``down`` (one model: ``down(gamma * h) = (down diag(gamma)) h``, exact)
    or the (M, width) gains ``gain`` of a bank, applied by the kernel."""
    wz, bz = linear_arrays(b.z_module, f"{b.name}.{b.gate or b.up}")  # (F, d), (F,)
    wd, bd = linear_arrays(getattr(b.owner, b.down), f"{b.name}.{b.down}")  # (d_out, F), (d_out,)
    wdt = wd.T if fold is None else wd.T * fold[:, None]  # (F, d_out): row j = column j of down
    wu = bu = None
    if b.gate is not None:
        wu, bu = linear_arrays(getattr(b.owner, b.up), f"{b.name}.{b.up}")
        wu, bu = wu[keep], bu[keep]
    return pack_ffn(wz[keep], bz[keep], np.ascontiguousarray(wdt[keep]), bd,
                    np.ascontiguousarray(thr[..., keep]), act=get_activation(activation).code,
                    wu=wu, bu=bu,
                    gain=None if gain is None else np.ascontiguousarray(gain[:, keep]))  # fmt: skip


def kept_units(rate: np.ndarray, min_rate: float, compact: bool) -> np.ndarray:
    """The units to keep: those firing on more than ``min_rate`` of the calibration tokens (all
    if not ``compact``; the most active one if none fires, so shapes stay >= 1)."""
    keep = np.flatnonzero(rate > min_rate) if compact else np.arange(len(rate))
    return keep if len(keep) else np.array([int(np.argmax(rate))])


def _compiled_block(b: FFNBlock, rate: np.ndarray, min_rate: float, compact: bool) -> CompiledFFN:
    gate: TauGate = getattr(b.owner, b.act)
    gamma = gate.gamma.detach().float().cpu().numpy()  # (F,)
    keep = kept_units(rate, min_rate, compact)
    packed = pack_block(b, keep, effective_threshold(gate), gate.activation, fold=gamma)
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
