"""Random own-GPT models whose gated FFN units fire on a chosen share of tokens (for bench-lm)."""

from __future__ import annotations

import copy

import numpy as np
import torch

from taugate.errors import TauGateError
from taugate.lm.apply import apply_taugate_lm_, gated_blocks
from taugate.nn.config import TauGateConfig
from taugate.nn.model import harden_


def random_lm(*, d_model: int, d_ffn: int, n_layer: int, activation: str, active: float,
              n_head: int | None = None, block_size: int = 256, seed: int = 0,
              calib_tokens: int = 2048):  # fmt: skip
    """(base, gated, calibration token ids): a randomly initialised own GPT and a hard-gated copy
    whose every FFN unit fires on about ``active`` of the tokens of random byte text.

    Layer by layer (later layers see the earlier layers' gates), each unit's threshold is the
    ``1 - active`` quantile of its pre-activation over ``calib_tokens`` random tokens (for ReLU
    at least 0, so at most the share with ``z > 0`` fires)."""
    from taugate.lm.gpt import GPT, GPTConfig

    if not 0.0 < active <= 1.0:
        raise TauGateError(f"active must be a share in (0, 1], got {active!r}")
    torch.manual_seed(seed)
    heads = n_head or max(1, d_model // 64)
    base = GPT(GPTConfig(n_layer=n_layer, n_head=heads, d_model=d_model, d_ffn=d_ffn,
                         activation=activation, block_size=block_size)).eval()  # fmt: skip
    gated = copy.deepcopy(base)
    apply_taugate_lm_(gated, TauGateConfig())
    harden_(gated, True)
    gen = torch.Generator().manual_seed(seed + 1)
    seq = min(block_size, 128)
    ids = torch.randint(0, 256, (max(1, calib_tokens // seq), seq), generator=gen)  # (n, T)
    for b in gated_blocks(gated):
        gate = getattr(b.owner, b.act)
        seen = []
        h = gate.register_forward_hook(lambda _m, inp, _o, seen=seen: seen.append(inp[0].detach()))
        with torch.no_grad():
            gated(ids)
        h.remove()
        z = seen[0].reshape(-1, gate.width).double().numpy()  # (tokens, width)
        q = np.quantile(z, 1.0 - active, axis=0) if active < 1 else z.min(axis=0) - 1.0
        with torch.no_grad():
            gate.tau.copy_(torch.from_numpy(q).to(gate.tau.dtype))
    return base, gated, ids.reshape(-1)
