"""Compile a language-model mode bank in place: every gated FFN block of the bank's model becomes
one :class:`~taugate.lm.ffn_module.CompiledFFN` holding all M modes, run by the Numba FFN kernel.

What :func:`taugate.lm.compile.compile_lm_` does for one model, with three differences, since the
base weights are shared by every mode:

- the gains stay unfolded: each mode's gamma is a row of an (M, F) table, applied by the kernel
  in the gate pass (folding them into ``down`` would give one copy of ``down`` per mode);
- the thresholds are an (M, F) table of each mode's effective thresholds;
- compaction drops only the units that fire in no mode: each mode's firing rates are measured on
  the calibration text (hard gates, that mode selected), and a unit is kept when its highest rate
  over the modes exceeds ``min_rate`` (default 0: it fired at least once in some mode).

Every block reads its tokens' modes from the bank's one :class:`~taugate.lm.bank_gate.Selection`,
so ``set_mode``, ``mode=`` and a mixed-mode ``modes=[...]`` batch work as before compiling, with a
KV cache too; the z pass is shared by every mode, and only the open units' rows are read.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from taugate.errors import TauGateError
from taugate.lm.compile import _swap, firing_rates, kept_units, pack_block, thresholds
from taugate.lm.families import ffn_blocks
from taugate.lm.ffn_module import CompiledFFN
from taugate.lm.train import as_ids


@torch.no_grad()
def compile_bank_(bank, calib_tokens, *, min_rate: float = 0.0, seq_len: int = 128,
                  max_windows: int = 32) -> dict:  # fmt: skip
    """Compile the mode bank ``bank`` (:class:`taugate.lm.bank.LMBank`) in place, as the module
    docstring says; its gates become hard and stay so. ``calib_tokens``: the calibration token
    ids of every mode, or ``{mode: token ids}`` with one entry per mode (each mode's rates on its
    own text). Returns a report: per block the units kept of the original, the mean firing rate
    per mode, and how many units fire in no mode."""
    if bank.compiled is not None:
        raise TauGateError("this mode bank is compiled already")
    if not (isinstance(min_rate, (int, float)) and 0 <= min_rate < 1):
        raise TauGateError(f"min firing rate must be in [0, 1), got {min_rate!r}")
    model = bank.model
    have = {b.name: b for b in ffn_blocks(model, check_activation=False)}
    blocks = [have[n] for n in bank.blocks]
    bank.hard = True
    model.requires_grad_(False)  # compiled for inference: no parameter asks for autograd
    texts = _per_mode(bank.modes, calib_tokens)
    per_mode = []  # per mode, per block: (F,) firing rates
    for name in bank.modes:
        with bank.selected(mode=name):
            per_mode.append(firing_rates(model, blocks, texts[name], seq_len, max_windows))
    calib = {m: int(min(len(as_ids(t)) - 1, max_windows * seq_len)) for m, t in texts.items()}
    report = {"blocks": [], "min_rate": min_rate, "calib_tokens": calib, "modes": list(bank.modes)}
    for k, (b, gate) in enumerate(zip(blocks, bank.gates, strict=True)):
        rates = np.stack([r[k] for r in per_mode])  # M x (F,) -> (M, F)
        keep = kept_units(rates.max(0), min_rate, compact=True)
        taus = gate.taus.detach().float().cpu().numpy()  # (M, F)
        thr = thresholds(taus, gate.activation, gated=gate.gated)  # (M, F)
        gain = gate.gammas.detach().float().cpu().numpy()  # (M, F)
        packed = pack_block(b, keep, thr, gate.activation, gain=gain)
        compiled = CompiledFFN(packed, gate.activation, name=b.name, original_width=b.width,
                               selection=bank.selection)  # fmt: skip
        report["blocks"].append({
            "name": b.name, "kind": b.kind, "activation": gate.activation,
            "units_kept": compiled.width, "units_original": b.width,
            "fire_in_no_mode": int((rates.max(0) == 0).sum()),
            "firing_rate_mean": {m: float(r.mean()) for m, r in zip(bank.modes, rates)},
        })  # fmt: skip
        _swap(model, b, compiled)
    bank.compiled = report
    return report


def _per_mode(modes: tuple[str, ...], calib_tokens) -> dict:
    """``{mode: calibration tokens}``: the same tokens for every mode, or the mapping checked to
    name every mode of the bank, and no other."""
    if not isinstance(calib_tokens, Mapping):
        return dict.fromkeys(modes, calib_tokens)
    missing = [m for m in modes if m not in calib_tokens]
    extra = [m for m in calib_tokens if m not in modes]
    if missing or extra:
        what = f"no text for mode(s) {', '.join(missing)}" if missing else (
            f"text for unknown mode(s) {', '.join(map(str, extra))}")  # fmt: skip
        raise TauGateError(f"calibration per mode: {what} (the bank's modes: {', '.join(modes)})")
    return {m: calib_tokens[m] for m in modes}
